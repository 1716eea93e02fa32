//! A real container's life through berthd, the CLI and runc: output, exit codes, environment,
//! working directory, kill, wait, namespaces, and its history read back from the log.

use std::time::Duration;

use berth_tests::{eventually, Daemon};

#[test]
fn run_captures_output_and_exit_code() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let output = daemon.cli(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "out\n");
    assert!(String::from_utf8_lossy(&output.stderr).contains("err"));

    let output = daemon.cli(&["run", "--rm", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(output.status.code(), Some(7));
    // --rm left nothing behind: no container, no runc state.
    assert!(daemon.ps().is_empty());
    assert!(daemon.runc_list().is_empty());
}

#[test]
fn env_working_dir_and_user_are_honoured() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let out = daemon.ok(&[
        "run",
        "--rm",
        "--env",
        "GREETING=hi there",
        "--workdir",
        "/tmp",
        "busybox",
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd; id -u; hostname",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["hi there", "/tmp", "0"], "{out}");
    let out = daemon.ok(&["run", "--rm", "--name", "named-one", "busybox", "hostname"]);
    assert_eq!(out.trim(), "named-one");
}

#[test]
fn kill_wait_logs_and_remove() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let id = daemon.ok(&["run", "-d", "--name", "sleeper", "busybox", "sh", "-c", "echo started; exec sleep 1000"]);
    assert_eq!(id.trim(), "sleeper");
    let ps = daemon.ps();
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0]["task"]["status"], "running", "{ps:?}");
    eventually(Duration::from_secs(60), "the container's first output", || {
        daemon.ok(&["logs", "sleeper"]).contains("started").then_some(())
    });
    daemon.ok(&["kill", "-s", "KILL", "sleeper"]);
    assert_eq!(daemon.ok(&["wait", "sleeper"]).trim(), "137");
    let ps = daemon.ps();
    assert_eq!(ps[0]["task"]["status"], "stopped");
    assert_eq!(ps[0]["task"]["exit_code"], 137);
    // A stopped task cannot be signalled; the error says so.
    let output = daemon.cli(&["kill", "sleeper"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no process to signal"));
    daemon.ok(&["rm", "sleeper"]);
    assert!(daemon.ps().is_empty());
    assert!(daemon.runc_list().is_empty());
}

/// The rootfs is unmounted and the bundle removed once the deletion is recorded, after `rm`'s
/// answer (off the client's wait): they go all the same, and a container of the same name runs
/// at once over a fresh bundle.
#[test]
fn a_removed_tasks_rootfs_is_unmounted_and_its_bundle_removed() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "--name", "short", "busybox", "sh", "-c", "echo data > /kept"]);
    let bundle = daemon.bundle_dir("short");
    assert!(Daemon::mounted_under(&bundle.join("rootfs")), "the stopped task's rootfs stays mounted until rm");
    daemon.ok(&["rm", "short"]);
    eventually(Duration::from_secs(10), "the bundle's removal", || {
        (!bundle.exists() && !Daemon::mounted_under(&bundle)).then_some(())
    });
    // Removed and made again in a row, many times: each run finds its own fresh layer.
    for round in 0..5 {
        let stdout =
            daemon.ok(&["run", "--rm", "--name", "short", "busybox", "sh", "-c", "cat /kept 2>&1; echo round"]);
        assert!(
            stdout.contains("No such file"),
            "round {round}: an earlier container's layer showed through: {stdout}"
        );
    }
    eventually(Duration::from_secs(10), "the last bundle's removal", || {
        (!bundle.exists() && !Daemon::mounted_under(&bundle)).then_some(())
    });
    assert!(daemon.ps().is_empty());
}

#[test]
fn force_remove_kills_a_running_container() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "victim", "busybox", "sleep", "1000"]);
    let output = daemon.cli(&["rm", "victim"]);
    assert!(!output.status.success(), "rm without -f must refuse a running container");
    assert!(String::from_utf8_lossy(&output.stderr).contains("rm -f"));
    daemon.ok(&["rm", "-f", "victim"]);
    assert!(daemon.ps().is_empty());
    assert!(daemon.runc_list().is_empty());
}

#[test]
fn namespaces_do_not_see_each_other() {
    let mut daemon = Daemon::start();
    daemon.namespace = "team-a".into();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "a1", "busybox", "sleep", "1000"]);
    daemon.namespace = "team-b".into();
    assert!(daemon.ps().is_empty());
    let output = daemon.cli(&["run", "--rm", "busybox", "true"]);
    assert!(!output.status.success(), "team-b has no busybox image");
    assert!(String::from_utf8_lossy(&output.stderr).contains("not found in namespace \"team-b\""));
    daemon.namespace = "team-a".into();
    daemon.ok(&["rm", "-f", "a1"]);
}

#[test]
fn history_from_the_log_says_who_did_what() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let run = daemon.cli(&["run", "--name", "audited", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(run.status.code(), Some(3));
    let output = daemon.replay(&["history", "--container", "audited"]);
    let history = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for expected in [
        "via Containers/Create",
        "created the container from image busybox:latest",
        "asked to create the task",
        "task created: pid",
        "asked to start the task",
        "task started",
        "task exited with code 3",
        "uid 0",
        "now stopped",
    ] {
        assert!(history.contains(expected), "history lacks {expected:?}:\n{history}");
    }
    // `run` asks for the container and its task's create and start in one request and record.
    let intents: Vec<&str> = history.lines().filter(|line| line.contains("asked to")).collect();
    assert_eq!(intents.len(), 2, "{history}");
    let container_seq = history.lines().find(|line| line.contains("created the container")).unwrap();
    for intent in intents {
        assert!(intent.contains("via Containers/Create"), "{intent}");
        assert_eq!(intent.split('.').next(), container_seq.split('.').next(), "same record:\n{history}");
    }
    // The same events reach a resumable subscriber: from seq 1, all of them; from the last, one.
    let events = daemon.ok(&["events", "--since", "1", "--output", "json"]);
    let seqs: Vec<u64> = events
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|pair| pair[0] <= pair[1]), "events in log order");
    let last = *seqs.last().unwrap();
    let tail = daemon.ok(&["events", "--since", &last.to_string(), "--output", "json"]);
    assert!(tail.lines().all(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"] == last));
    // The log verifies.
    let verify = daemon.replay(&["verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

#[test]
fn a_container_gets_its_cgroups_under_the_daemons_cgroup_parent() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "grouped", "busybox", "sleep", "1000"]);
    let pid = daemon.ps().into_iter().find(|row| row["id"] == "grouped").expect("listed")["task"]["pid"]
        .as_u64()
        .expect("a pid");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let wanted = format!("{}/default/grouped", daemon.cgroup_parent());
    assert!(cgroups.lines().any(|line| line.ends_with(&format!(":{wanted}"))), "{wanted} not in\n{cgroups}");
    daemon.ok(&["rm", "-f", "grouped"]);
}

/// The names of a process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the daemon's threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

/// berthd starts the kernel's cgroup-migration wait when a run comes (`tasks::cgroup_warmup`):
/// its warm-up thread exists only from then, writes (its debug line says so), is still there a
/// moment after the containers ran (anything wrong would have ended it), and berthd is in the
/// cgroups it was in before. This needs what CI has: root on a host whose cgroup file system
/// berthd may write.
#[test]
fn a_run_warms_cgroup_migrations_up_without_moving_berthd() {
    let daemon = Daemon::start_with_env(&[("RUST_LOG", "berth_runtime::tasks::cgroup_warmup=debug")]);
    daemon.import_busybox();
    let cgroups_before = std::fs::read_to_string(format!("/proc/{}/cgroup", daemon.pid())).unwrap();
    assert!(!thread_names(daemon.pid()).iter().any(|name| name == "cgroup-warmup"), "started before any run");
    daemon.ok(&["run", "--rm", "busybox", "true"]);
    daemon.ok(&["run", "--rm", "busybox", "true"]);
    std::thread::sleep(Duration::from_millis(300));
    let names = thread_names(daemon.pid());
    assert!(names.iter().any(|name| name == "cgroup-warmup"), "no warm-up thread (or it ended): {names:?}");
    let berthd_log = daemon.daemon_log();
    assert!(berthd_log.contains("cgroup migration lock warmed"), "{berthd_log}");
    assert!(!berthd_log.contains("no longer warmed up") && !berthd_log.contains("not warmed up"), "{berthd_log}");
    assert_eq!(std::fs::read_to_string(format!("/proc/{}/cgroup", daemon.pid())).unwrap(), cgroups_before);
}
