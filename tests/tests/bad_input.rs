//! Bad input gets a clear error that says what to do, and nothing already recorded is lost.

use std::process::Command;

use berth_tests::{berthd_in, bin, test_images, Daemon};

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn refusals_are_clear_and_lose_nothing() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "web", "busybox", "sleep", "1000"]);
    let before = daemon.state_dump();

    let unknown = daemon.cli(&["run", "--rm", "no-such-image", "true"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr_of(&unknown).contains("image \"no-such-image\" (that is no-such-image:latest) not found")
            && stderr_of(&unknown).contains("berth image import"),
        "{}",
        stderr_of(&unknown)
    );

    let duplicate = daemon.cli(&["run", "-d", "--name", "web", "busybox", "true"]);
    assert!(!duplicate.status.success());
    assert!(stderr_of(&duplicate).contains("already exists"), "{}", stderr_of(&duplicate));

    let bad_id = daemon.cli(&["run", "--rm", "--name", "../escape", "busybox", "true"]);
    assert!(!bad_id.status.success());
    assert!(stderr_of(&bad_id).contains("invalid container id"), "{}", stderr_of(&bad_id));

    let garbage = daemon.dir.path().join("garbage.tar");
    std::fs::write(&garbage, b"this is not a tar archive at all").unwrap();
    let malformed = daemon.cli(&["image", "import", garbage.to_str().unwrap(), "--name", "junk"]);
    assert!(!malformed.status.success());
    assert!(stderr_of(&malformed).contains("OCI image layout"), "{}", stderr_of(&malformed));

    let truncated = daemon.dir.path().join("truncated.tar");
    let full = std::fs::read(test_images().join("busybox-oci.tar")).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let cut = daemon.cli(&["image", "import", truncated.to_str().unwrap(), "--name", "cut"]);
    assert!(!cut.status.success(), "a truncated archive must be refused");

    let start_deleted = daemon.cli(&["start", "never-was"]);
    assert!(!start_deleted.status.success());
    assert!(stderr_of(&start_deleted).contains("not found"), "{}", stderr_of(&start_deleted));

    // Nothing recorded before was lost or changed by the refusals.
    let mut after = daemon.state_dump();
    after["last_seq"] = before["last_seq"].clone();
    assert_eq!(after, before);
    assert_eq!(daemon.ps()[0]["task"]["status"], "running");
    daemon.ok(&["rm", "-f", "web"]);
}

#[test]
fn berthd_refuses_to_start_without_runc_or_on_a_held_root() {
    let daemon = Daemon::start();
    // A second daemon on the same root.
    let second = Command::new(bin("berthd"))
        .arg("--root")
        .arg(&daemon.root)
        .arg("--state")
        .arg(daemon.dir.path().join("state2"))
        .arg("--address")
        .arg(daemon.dir.path().join("second.sock"))
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(stderr_of(&second).contains("another berthd holds"), "{}", stderr_of(&second));
    // Missing runc.
    let dir = tempfile::tempdir().unwrap();
    let no_runc = berthd_in(dir.path(), &["--runc", "/nonexistent/runc"]);
    assert!(!no_runc.status.success());
    assert!(
        stderr_of(&no_runc).contains("runc not found") && stderr_of(&no_runc).contains("apt-get install runc"),
        "{}",
        stderr_of(&no_runc)
    );
    // A cgroup parent that is not an absolute path of plain names.
    let bad_cgroup = berthd_in(dir.path(), &["--cgroup-parent", "../escape"]);
    assert!(!bad_cgroup.status.success());
    assert!(
        stderr_of(&bad_cgroup).contains("\"../escape\" is not an absolute cgroup path"),
        "{}",
        stderr_of(&bad_cgroup)
    );
    // The first daemon is unaffected.
    daemon.ok(&["version"]);
}

#[test]
fn cli_without_a_daemon_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        Command::new(bin("berth")).arg("--address").arg(dir.path().join("none.sock")).arg("ps").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_of(&output).contains("cannot reach berthd"), "{}", stderr_of(&output));
}

/// A log lock held by something that is not a berthd (as a child a killed berthd forked may hold
/// it until its exec): berthd waits up to 5 s for it, and comes up once it lets go; held longer,
/// berthd gives up naming the holders and what to do. Holders here: util-linux's `flock`.
#[test]
fn a_log_lock_held_by_a_process_that_is_not_berthd_is_waited_for_then_named() {
    let mut daemon = Daemon::start();
    daemon.stop();
    let lock = daemon.root.join("log").join("LOCK");
    let mut brief = Command::new("flock").arg(&lock).args(["sleep", "1"]).spawn().unwrap();
    // flock has it once the file shows as held; then a start waits for the second to pass.
    berth_tests::eventually(std::time::Duration::from_secs(10), "flock holding the log's lock", || {
        Command::new("flock").args(["-n"]).arg(&lock).arg("true").status().ok().filter(|status| !status.success())
    });
    daemon.start_again();
    assert!(daemon.daemon_log().contains("waiting up to 5 s for it to let go"), "{}", daemon.daemon_log());
    brief.wait().unwrap();
    daemon.ok(&["ps", "-a"]);
    daemon.stop();

    let mut long = Command::new("flock").arg(&lock).args(["sleep", "60"]).spawn().unwrap();
    berth_tests::eventually(std::time::Duration::from_secs(10), "flock holding the log's lock", || {
        Command::new("flock").args(["-n"]).arg(&lock).arg("true").status().ok().filter(|status| !status.success())
    });
    let refused = daemon.berthd_command().output().unwrap();
    let _ = Command::new("pkill").args(["-P", &long.id().to_string()]).status();
    let _ = long.kill();
    let _ = long.wait();
    assert!(!refused.status.success());
    let message = stderr_of(&refused);
    assert!(
        message.contains("stayed locked for 5 s") && message.contains("(flock)") && message.contains("kill it"),
        "{message}"
    );
}
