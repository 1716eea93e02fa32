//! `berth run --rm` whose task fails to start: the user is told what failed and that the
//! container is gone (not to remove it), and the log says the task never ran rather than
//! "exit code 0". `berth start` on a failing task still says how to remove what is kept.

use berth_tests::Daemon;

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn run_rm_after_a_failed_start_says_the_container_is_gone_and_the_log_says_it_never_ran() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let failed = daemon.cli(&["run", "--rm", "--name", "gone", "busybox", "/no/such/program"]);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = stderr_of(&failed);
    assert!(stderr.contains("/no/such/program") && stderr.contains("no such file"), "{stderr}");
    assert!(stderr.contains("container gone was removed (--rm)"), "{stderr}");
    assert!(!stderr.contains("rm -f"), "told to remove a container that is already gone: {stderr}");
    assert!(daemon.ps().is_empty());

    let told = daemon.history("gone");
    assert!(told.contains("task deleted (it never ran, so it has no exit code)"), "{told}");
    assert!(!told.contains("exit code 0"), "{told}");

    // A task that did run keeps its real exit code in the same place.
    let ran = daemon.cli(&["run", "--rm", "--name", "ran", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(ran.status.code(), Some(3), "{}", stderr_of(&ran));
    let told = daemon.history("ran");
    assert!(told.contains("task deleted (exit code 3)"), "{told}");
    // One request removes both (Containers/Delete with delete_task), in one record: the
    // deletion's outcome and the container's removal share a sequence number.
    let record_of = |what: &str| {
        let line = told.lines().find(|line| line.contains(what)).unwrap_or_else(|| panic!("no {what:?} in:\n{told}"));
        line.split('.').next().unwrap().to_string()
    };
    assert_eq!(record_of("task deleted"), record_of("deleted the container"), "{told}");
    assert!(told.contains("via Containers/Delete"), "{told}");
}

#[test]
fn start_of_a_failing_task_keeps_the_container_and_says_how_to_remove_it() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["create", "--name", "kept", "busybox", "/no/such/program"]);
    let failed = daemon.cli(&["start", "kept"]);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = stderr_of(&failed);
    assert!(stderr.contains("no such file") && stderr.contains("berth rm -f kept"), "{stderr}");
    assert_eq!(daemon.ps().len(), 1);
    daemon.ok(&["rm", "-f", "kept"]);
}
