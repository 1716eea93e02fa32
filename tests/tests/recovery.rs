//! berthd killed with SIGKILL at any moment comes back knowing what was asked, what happened
//! and what still runs: containers keep running under their monitors, exits that happened
//! while it was down are recorded with their true code and time, and intents caught between
//! side effect and outcome are finished or rolled back — exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_tests::{bin, eventually, Daemon};

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn task_of<'a>(ps: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    &ps.iter().find(|container| container["id"] == id).unwrap_or_else(|| panic!("{id} not listed: {ps:?}"))["task"]
}

/// Without `last_seq` (each start appends a DaemonStarted record).
fn projections(daemon: &Daemon) -> serde_json::Value {
    let mut dump = daemon.state_dump();
    dump.as_object_mut().unwrap().remove("last_seq");
    dump
}

/// Every intent in the log is answered at most once. A record may hold two intents (create
/// and start), so answers are counted per (intent seq, kind of intent); an event that rides in
/// an outcome's record (`NetworkAttached`, or `TaskExited` for a process that ended before its
/// start was recorded) is counted under its own kind, so it too may appear once per intent.
fn assert_no_duplicate_outcomes(daemon: &Daemon) {
    let output = daemon.replay(&["events", "--json"]);
    assert!(output.status.success());
    let intent_of = |kind: &str| match kind {
        "TaskCreated" | "TaskCreateFailed" => "create".to_string(),
        "TaskStarted" | "TaskStartFailed" => "start".to_string(),
        "TaskKillDelivered" | "TaskKillFailed" => "kill".to_string(),
        "TaskDeleted" | "TaskDeleteFailed" => "delete".to_string(),
        other => other.to_string(),
    };
    let mut answers: BTreeMap<(u64, String), Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(seq) = event["origin"]["answers"].as_u64() {
            let kind = event["kind"].as_str().unwrap_or_default().to_string();
            answers.entry((seq, intent_of(&kind))).or_default().push(kind);
        }
    }
    assert!(!answers.is_empty(), "no outcome found in the log: the check would prove nothing");
    for (seq, kinds) in answers {
        assert_eq!(kinds.len(), 1, "intent {seq:?} answered more than once: {kinds:?}");
    }
}

#[test]
fn running_containers_survive_sigkill_of_berthd() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "one", "busybox", "sleep", "1000"]);
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "two",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    // The TERM below must find the trap set, or the shell (pid 1 of its namespace) ignores it.
    eventually(Duration::from_secs(60), "the trap is set", || {
        daemon.ok(&["logs", "two"]).contains("ready").then_some(())
    });
    let before = daemon.ps();
    daemon.restart();
    let after = daemon.ps();
    for id in ["one", "two"] {
        assert_eq!(task_of(&after, id)["status"], "running");
        assert_eq!(task_of(&after, id)["pid"], task_of(&before, id)["pid"], "same process, re-adopted");
    }
    daemon.ok(&["kill", "two"]);
    assert_eq!(daemon.ok(&["wait", "two"]).trim(), "42");
    daemon.ok(&["kill", "-s", "9", "one"]);
    assert_eq!(daemon.ok(&["wait", "one"]).trim(), "137");
    daemon.ok(&["rm", "one", "two"]);
    assert!(daemon.runc_list().is_empty());
}

#[test]
fn exits_while_berthd_is_down_are_recorded_with_code_and_time() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 1; exit 3"]);
    daemon.kill9();
    let killed_at = now_ns();
    // Restart only once the monitor has recorded the exit, however slow the machine is.
    let exit_file = daemon.root.join("tasks/default/short/exit.json");
    eventually(Duration::from_secs(60), "the monitor records the exit", || exit_file.exists().then_some(()));
    let restarted_at = now_ns();
    daemon.start_again();
    assert_eq!(daemon.ok(&["wait", "short"]).trim(), "3");
    let ps = daemon.ps();
    let task = task_of(&ps, "short");
    assert_eq!(task["status"], "stopped");
    assert_eq!(task["exit_code"], 3);
    // The recorded exit time is when it happened (while berthd was down), not the restart.
    let dump = daemon.state_dump();
    let exited_at =
        dump["namespaces"]["default"]["containers"]["short"]["task"]["exit"]["exited_at_ns"].as_i64().unwrap();
    assert!(
        exited_at > killed_at - 2_000_000_000 && exited_at < restarted_at,
        "exited_at {exited_at} not between {killed_at} and {restarted_at}"
    );
    daemon.ok(&["rm", "short"]);
}

#[test]
fn an_exit_survives_the_loss_of_the_monitors_working_files() {
    // After a power loss the fsynced exit.json under the root may be all that is left of a
    // monitor's files: monitor.json, its lock and logs are under the state directory (a tmpfs by
    // default). The exit code must still be the real one.
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "lost", "busybox", "sh", "-c", "sleep 1; exit 6"]);
    daemon.kill9();
    let kept_dir = daemon.root.join("tasks/default/lost");
    eventually(Duration::from_secs(60), "the monitor records the exit", || {
        kept_dir.join("exit.json").exists().then_some(())
    });
    let working_dir = daemon.state.join("tasks/default/lost");
    assert!(working_dir.join("monitor.json").is_file(), "monitor.json was written under the state directory");
    assert!(!kept_dir.join("monitor.json").exists(), "monitor.json is not kept under the root");
    std::fs::remove_dir_all(&working_dir).unwrap();
    daemon.start_again();
    assert_eq!(daemon.ok(&["wait", "lost"]).trim(), "6");
    assert_eq!(task_of(&daemon.ps(), "lost")["exit_code"], 6);
    daemon.ok(&["rm", "lost"]);
}

/// A task whose monitor files are all under the root, as berth kept them before the monitor's
/// working files moved to the state directory (a berthd upgraded while the task ran): the new
/// berthd finds its monitor at work, records its exit, removes it with the container, and the
/// next container of that name is laid out in the two directories.
#[test]
fn a_task_laid_out_by_an_older_berth_is_followed_after_the_upgrade() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    let script = "trap 'exit 9' TERM; echo ready; while true; do sleep 0.1; done";
    daemon.ok(&["run", "-d", "--name", "old", "busybox", "sh", "-c", script]);
    eventually(Duration::from_secs(60), "the trap is set", || {
        daemon.ok(&["logs", "old"]).contains("ready").then_some(())
    });
    daemon.kill9();
    // What an older berth left. Renames keep each file's inode (root and state are on one file
    // system here), so the monitor still holds its lock.
    let working = daemon.state.join("tasks/default/old");
    let kept = daemon.root.join("tasks/default/old");
    for entry in std::fs::read_dir(&working).unwrap() {
        let entry = entry.unwrap();
        std::fs::rename(entry.path(), kept.join(entry.file_name())).unwrap();
    }
    std::fs::remove_dir(&working).unwrap();
    assert!(kept.join("monitor.lock").is_file() && kept.join("monitor.json").is_file());

    daemon.start_again();
    assert_eq!(task_of(&daemon.ps(), "old")["status"], "running");
    daemon.ok(&["kill", "old"]);
    assert_eq!(daemon.ok(&["wait", "old"]).trim(), "9");
    assert!(kept.join("exit.json").is_file(), "the monitor kept writing where it was told");
    daemon.ok(&["rm", "old"]);
    eventually(Duration::from_secs(30), "the old task directory to go with the container", || {
        (!kept.exists()).then_some(())
    });

    daemon.ok(&["run", "-d", "--name", "old", "busybox", "sleep", "1000"]);
    assert!(working.join("monitor.json").is_file());
    assert!(!kept.join("monitor.json").exists() && kept.join("stdout.log").is_file());
    daemon.ok(&["rm", "-f", "old"]);
}

#[test]
fn restart_without_change_rebuilds_identical_projections() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "keep", "busybox", "sleep", "1000"]);
    assert_eq!(daemon.cli(&["run", "--name", "done", "busybox", "sh", "-c", "exit 4"]).status.code(), Some(4));
    daemon.ok(&["create", "--name", "idle", "busybox", "true"]);
    let before = projections(&daemon);
    let ps_before = daemon.ps();
    daemon.restart();
    assert_eq!(projections(&daemon), before, "projections after a restart with no change");
    // What clients see is the same too (the task columns; "status" text holds relative times).
    let tasks = |ps: &[serde_json::Value]| ps.iter().map(|c| (c["id"].clone(), c["task"].clone())).collect::<Vec<_>>();
    assert_eq!(tasks(&daemon.ps()), tasks(&ps_before));
    daemon.stop();
    daemon.start_again();
    assert_eq!(projections(&daemon), before, "projections after a clean stop and start");
    daemon.ok(&["rm", "-f", "keep", "done", "idle"]);
}

#[test]
fn crash_between_create_and_its_outcome_is_recovered_once() {
    let mut daemon = Daemon::start_with_env(&[("BERTHD_FAILPOINT", "task-created")]);
    daemon.import_busybox();
    daemon.ok(&["create", "--name", "torn", "busybox", "sleep", "1000"]);
    // `berth start` on a container without a task: Tasks/Create (no start), then Tasks/Start.
    let output = daemon.cli(&["start", "torn"]);
    assert!(!output.status.success(), "berthd died before answering");
    let status = daemon.wait_for_exit(Duration::from_secs(60));
    assert!(!status.success());
    daemon.set_env(&[]);
    daemon.start_again();
    // The monitor had created the container: recovery records TaskCreated; it can be started.
    let ps = daemon.ps();
    assert_eq!(task_of(&ps, "torn")["status"], "created", "{ps:?}");
    daemon.ok(&["start", "torn"]);
    assert_eq!(task_of(&daemon.ps(), "torn")["status"], "running");
    assert_no_duplicate_outcomes(&daemon);
    daemon.ok(&["rm", "-f", "torn"]);
    assert!(daemon.runc_list().is_empty());
}

#[test]
fn crash_right_after_the_monitor_is_spawned_waits_for_it() {
    // berthd dies the moment the monitor process exists. A wrapper holds the monitor back until
    // the test lets it go, so the restarted berthd finds a monitor that has done nothing yet: no
    // monitor.json, and a monitor lock that is held only because berthd took it and handed it over
    // before the spawn. Recovery must wait for that monitor instead of rolling the create back
    // under its feet (which would leave a container running that no task accounts for).
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    let slow_monitor = daemon.dir.path().join("slow-monitor.sh");
    let go = daemon.dir.path().join("go");
    std::fs::write(
        &slow_monitor,
        format!(
            "#!/bin/sh\nfor _ in $(seq 1200); do [ -e {} ] && break; sleep 0.05; done\nexec {} \"$@\"\n",
            go.display(),
            bin("berth-monitor").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow_monitor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    daemon.set_config(&format!("monitor = {:?}\n", slow_monitor.display().to_string()));
    daemon.kill9();
    daemon.set_env(&[("BERTHD_FAILPOINT", "monitor-spawned")]);
    daemon.start_again();
    // No network: on a CNI network a create cut off before its ADD is done fails at runc's
    // network gate once berthd is gone (tests/tests/network.rs), so there is nothing to wait for.
    assert!(!daemon
        .cli(&["run", "-d", "--name", "early", "--network", "none", "busybox", "sleep", "1000"])
        .status
        .success());
    daemon.wait_for_exit(Duration::from_secs(60));
    assert!(!daemon.state.join("tasks/default/early/monitor.json").exists(), "the monitor must not have got going yet");
    std::fs::write(&go, "").unwrap();
    daemon.set_env(&[]);
    daemon.start_again();
    let task = task_of(&daemon.ps(), "early").clone();
    assert_eq!(task["status"], "running", "{task}");
    assert_eq!(daemon.runc_list(), ["early"]);
    assert_no_duplicate_outcomes(&daemon);
    daemon.ok(&["rm", "-f", "early"]);
    assert!(daemon.runc_list().is_empty());
}

#[test]
fn crash_inside_a_create_and_start_is_recovered_once() {
    // `run -d` asks for create and start in one record; berthd dies after the monitor ran
    // `runc run --detach` and before anything was recorded.
    let mut daemon = Daemon::start_with_env(&[("BERTHD_FAILPOINT", "task-created")]);
    daemon.import_busybox();
    let output = daemon.cli(&["run", "-d", "--name", "both", "busybox", "sleep", "1000"]);
    assert!(!output.status.success());
    daemon.wait_for_exit(Duration::from_secs(60));
    daemon.set_env(&[]);
    daemon.start_again();
    assert_eq!(task_of(&daemon.ps(), "both")["status"], "running");
    assert_no_duplicate_outcomes(&daemon);
    daemon.ok(&["rm", "-f", "both"]);
    assert!(daemon.runc_list().is_empty());
}

#[test]
fn crash_between_start_and_its_outcome_is_recovered_once() {
    let mut daemon = Daemon::start_with_env(&[("BERTHD_FAILPOINT", "task-started")]);
    daemon.import_busybox();
    // The separate path: Tasks/Create, then Tasks/Start (runc start) dies before its outcome.
    daemon.ok(&["create", "--name", "half", "busybox", "sleep", "1000"]);
    let output = daemon.cli(&["start", "half"]);
    assert!(!output.status.success());
    daemon.wait_for_exit(Duration::from_secs(60));
    daemon.set_env(&[]);
    daemon.start_again();
    assert_eq!(task_of(&daemon.ps(), "half")["status"], "running");
    assert_no_duplicate_outcomes(&daemon);
    daemon.ok(&["rm", "-f", "half"]);
}

/// berthd killed after a task's deletion is recorded but before its rootfs is unmounted and
/// its bundle removed (that work now follows the record): start-up finds the bundle no task
/// accounts for and removes it, unmounting the rootfs, and the name is free for a new run.
#[test]
fn crash_between_a_deletions_record_and_its_bundle_removal_is_cleaned_at_start_up() {
    let mut daemon = Daemon::start_with_env(&[("BERTHD_FAILPOINT", "task-delete-recorded")]);
    daemon.import_busybox();
    daemon.ok(&["run", "--name", "gone", "busybox", "true"]);
    let bundle = daemon.bundle_dir("gone");
    let _ = daemon.cli(&["rm", "gone"]);
    daemon.wait_for_exit(Duration::from_secs(60));
    assert!(Daemon::mounted_under(&bundle.join("rootfs")), "the failpoint is before the unmount");
    daemon.set_env(&[]);
    daemon.start_again();
    assert!(!bundle.exists(), "start-up left the deleted task's bundle");
    assert!(!Daemon::mounted_under(&bundle), "start-up left the deleted task's rootfs mounted");
    // The deletion was recorded before the crash: whether or not `rm` also removed the
    // container, a new one of that name runs once it is gone.
    let _ = daemon.cli(&["rm", "gone"]);
    assert_eq!(daemon.ok(&["run", "--rm", "--name", "gone", "busybox", "echo", "again"]), "again\n");
    assert_no_duplicate_outcomes(&daemon);
}

#[test]
fn crash_during_a_burst_of_runs_leaves_nothing_half_done() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    let socket = daemon.socket.clone();
    let berth = berth_tests::bin("berth");
    let clients: Vec<_> = (0..12)
        .map(|index| {
            std::process::Command::new(&berth)
                .arg("--address")
                .arg(&socket)
                .args(["run", "-d", "--name", &format!("burst-{index}"), "busybox", "sleep", "1000"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Killed once the burst has reached the log (a task asked for), not after a fixed time: on a
    // loaded machine 300 ms could pass before any client was heard, and then nothing is tested.
    eventually(Duration::from_secs(60), "a first task asked for in the burst", || {
        daemon.ps().iter().any(|container| container["task"]["status"].as_str().is_some()).then_some(())
    });
    daemon.kill9();
    for mut client in clients {
        let _ = client.wait();
    }
    daemon.start_again();
    let ps = daemon.ps();
    // No task is left waiting for an outcome, and what runc has is exactly what is live.
    let mut live = Vec::new();
    for container in &ps {
        let status = container["task"]["status"].as_str().unwrap_or("none").to_string();
        assert!(
            !["creating", "starting", "deleting"].contains(&status.as_str()),
            "{} stuck in {status}",
            container["id"]
        );
        if ["created", "running"].contains(&status.as_str()) {
            live.push(container["id"].as_str().unwrap().to_string());
        }
    }
    let mut runc = daemon.runc_list();
    runc.sort();
    live.sort();
    assert_eq!(runc, live, "runc containers must be exactly the live tasks");
    assert_no_duplicate_outcomes(&daemon);
    for container in &ps {
        daemon.ok(&["rm", "-f", container["id"].as_str().unwrap()]);
    }
    eventually(Duration::from_secs(60), "all runc containers gone", || daemon.runc_list().is_empty().then_some(()));
}

#[test]
fn a_killed_monitor_is_recorded_and_its_container_stopped() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    let monitor_pid = |daemon: &Daemon, id: &str| -> i32 {
        let dump = daemon.state_dump();
        dump["namespaces"]["default"]["containers"][id]["task"]["monitor_pid"].as_i64().unwrap() as i32
    };
    let kill =
        |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    // While berthd runs.
    daemon.ok(&["run", "-d", "--name", "live", "busybox", "sleep", "1000"]);
    kill(monitor_pid(&daemon, "live"));
    assert_eq!(daemon.ok(&["wait", "live"]).trim(), "255");
    // While berthd is down.
    daemon.ok(&["run", "-d", "--name", "down", "busybox", "sleep", "1000"]);
    daemon.kill9();
    kill(monitor_pid(&daemon, "down"));
    daemon.start_again();
    assert_eq!(daemon.ok(&["wait", "down"]).trim(), "255");
    // Neither container is left running unwatched.
    eventually(Duration::from_secs(60), "runc containers stopped", || {
        let output = std::process::Command::new("runc")
            .arg("--root")
            .arg(daemon.state.join("runc/default"))
            .args(["list", "--format", "json"])
            .output()
            .unwrap();
        let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        let running = listed.as_array().map(|all| all.iter().filter(|c| c["status"] == "running").count()).unwrap_or(0);
        (running == 0).then_some(())
    });
    daemon.ok(&["rm", "live", "down"]);
    assert!(daemon.runc_list().is_empty());
}

#[test]
fn a_previous_tasks_files_are_not_taken_for_a_new_create() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    // c1 ran and exited 7; its task was deleted, its files stay until the container goes.
    assert_eq!(daemon.cli(&["run", "--name", "c1", "busybox", "sh", "-c", "exit 7"]).status.code(), Some(7));
    let delete = delete_task_only(&daemon, "c1");
    assert!(delete, "task of c1 deleted");
    // A new create was recorded, and berthd died before acting on it.
    daemon.kill9();
    daemon.inject("default", vec![berth_projections::Event::TaskCreateRequested { container_id: "c1".into() }]);
    daemon.start_again();
    let ps = daemon.ps();
    let task = task_of(&ps, "c1");
    assert_eq!(task["status"], "failed", "the create was rolled back, not invented from old files: {task}");
    assert!(daemon.runc_list().is_empty());
    daemon.ok(&["rm", "-f", "c1"]);
}

/// Deletes only the task, keeping the container (the CLI's `rm` removes both), through the API.
fn delete_task_only(daemon: &Daemon, id: &str) -> bool {
    let rt = tokio_runtime();
    rt.block_on(async {
        let client = berth_runtime::client::BerthClient::connect(&daemon.socket, "default").await.unwrap();
        let mut tasks = berth_runtime::api::tasks_client::TasksClient::new(client.channel.clone());
        tasks
            .delete(client.request(berth_runtime::api::DeleteTaskRequest { container_id: id.into(), force: false }))
            .await
            .is_ok()
    })
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn recovery_does_not_start_a_container_whose_monitor_is_gone() {
    let mut daemon = Daemon::start_with_env(&[("BERTHD_FAILPOINT", "task-created")]);
    daemon.import_busybox();
    daemon.ok(&["create", "--name", "c2", "busybox", "sh", "-c", "echo RAN > /ran; sleep 100"]);
    assert!(!daemon.cli(&["start", "c2"]).status.success());
    daemon.wait_for_exit(Duration::from_secs(60));
    daemon.set_env(&[]);
    daemon.start_again();
    assert_eq!(task_of(&daemon.ps(), "c2")["status"], "created");
    // berthd and the monitor both die; a start had been recorded.
    let monitor_pid = daemon.state_dump()["namespaces"]["default"]["containers"]["c2"]["task"]["monitor_pid"]
        .as_i64()
        .unwrap() as i32;
    daemon.kill9();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor_pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    // SIGKILL is delivered asynchronously: recovery must find the monitor gone, not dying.
    eventually(Duration::from_secs(60), "the monitor is gone", || {
        let stat = std::fs::read_to_string(format!("/proc/{monitor_pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
        matches!(state, None | Some('Z') | Some('X')).then_some(())
    });
    daemon.inject("default", vec![berth_projections::Event::TaskStartRequested { container_id: "c2".into() }]);
    daemon.start_again();
    let task = task_of(&daemon.ps(), "c2").clone();
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        !daemon.root.join("snapshots/active/default/c2/upper/ran").exists(),
        "the workload must not have run unwatched"
    );
    assert!(daemon.runc_list().is_empty());
    daemon.ok(&["rm", "-f", "c2"]);
}

#[test]
fn a_recovered_create_and_start_keeps_the_real_pid() {
    let mut daemon = Daemon::start_with_env(&[("BERTHD_FAILPOINT", "task-created")]);
    daemon.import_busybox();
    assert!(!daemon.cli(&["run", "-d", "--name", "p1", "busybox", "sleep", "1000"]).status.success());
    daemon.wait_for_exit(Duration::from_secs(60));
    daemon.set_env(&[]);
    daemon.start_again();
    let task = task_of(&daemon.ps(), "p1").clone();
    assert_eq!(task["status"], "running");
    let pid = task["pid"].as_u64().unwrap();
    assert!(pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists(), "{task}");
    daemon.ok(&["rm", "-f", "p1"]);
}

#[test]
fn a_container_recreated_while_the_old_one_is_cleaned_up_still_runs() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    // Enough files in the writable layer that removing it takes a while.
    daemon.ok(&["run", "--name", "big", "busybox", "sh", "-c", "for i in $(seq 60); do cp -a /bin /b$i; done"]);
    daemon.ok(&["rm", "big"]);
    let out = daemon.ok(&["run", "--rm", "--name", "big", "busybox", "echo", "second"]);
    assert_eq!(out, "second\n");
}

#[test]
fn importing_while_removing_a_sharing_image_leaves_every_recorded_file_in_place() {
    let daemon = Daemon::start();
    let archive = berth_tests::test_images().join("busybox-oci.tar");
    for round in 0..4 {
        daemon.ok(&["image", "import", archive.to_str().unwrap(), "--name", "busybox"]);
        let socket = daemon.socket.clone();
        let archive_for_import = archive.clone();
        let importer = std::thread::spawn(move || {
            std::process::Command::new(berth_tests::bin("berth"))
                .arg("--address")
                .arg(&socket)
                .args(["image", "import", archive_for_import.to_str().unwrap(), "--name", "bb2"])
                .output()
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(5 + 10 * round));
        daemon.ok(&["image", "rm", "busybox"]);
        assert!(importer.join().unwrap().status.success());
        // Whatever the interleaving, bb2 runs: its blobs and layer are on disk.
        assert_eq!(daemon.ok(&["run", "--rm", "bb2", "echo", "ok"]), "ok\n", "round {round}");
        daemon.ok(&["image", "rm", "bb2"]);
    }
}

#[test]
fn a_panic_on_the_command_thread_ends_berthd_and_loses_nothing_recorded() {
    // A panic while a command is being decided must not leave berthd serving state that may not
    // be in the log, nor answering "stopping" for ever: it exits 70, like a failed append, and
    // the next start replays exactly what was recorded.
    let mut daemon = Daemon::start();
    daemon.ok(&["namespace", "create", "kept"]);
    daemon.kill9();
    daemon.set_env(&[("BERTHD_FAILPOINT", "client-command")]);
    daemon.start_again();
    let refused = daemon.cli(&["namespace", "create", "lost"]);
    assert!(!refused.status.success(), "the command whose decision panicked must not be acknowledged");
    let status = daemon.wait_for_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(70), "{}", daemon.daemon_log());
    assert!(daemon.daemon_log().contains("the command thread panicked"), "{}", daemon.daemon_log());
    daemon.set_env(&[]);
    daemon.start_again();
    let namespaces = daemon.ok(&["namespace", "ls"]);
    assert!(namespaces.contains("kept") && !namespaces.contains("lost"), "{namespaces}");
    let verify = daemon.replay(&["verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}
