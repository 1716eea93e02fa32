//! Integration tests for runc.rs, monitor.rs and berth-monitor against real runc (root required):
//! output capture, exit codes, kills, a monitor outliving the process that started it, exits that
//! happen while nobody watches, and the create failures berthd must report clearly.

#[path = "common/monitor_fixture.rs"]
mod monitor_fixture;

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_log::{Seq, Timestamp};
use berth_runtime::tasks::monitor::{self, wait_exit, Launch, MonitorError, MonitorPaths, TaskIo};
use berth_runtime::tasks::output_log::raw_output_since;
use berth_runtime::tasks::runc::{Runc, RuncError};
use berth_runtime::tasks::task_dir::{ExitStatus, MonitorIdentity, TaskDir, UNKNOWN_EXIT_CODE};
use monitor_fixture::{TestTask, RUNC_BINARY};

/// Upper bound for things that take well under a second; generous because the machine is shared.
const GENEROUS_TIMEOUT: Duration = Duration::from_secs(60);

async fn wait_exit_with_timeout(task: &TestTask, monitor_identity: &MonitorIdentity) -> ExitStatus {
    tokio::time::timeout(GENEROUS_TIMEOUT, wait_exit(&task.task_dir, monitor_identity))
        .await
        .expect("the container should have exited")
}

/// SIGKILLs the container through runc and returns the exit the monitor recorded for it, which
/// must say killed by signal 9.
async fn sigkill_and_wait_exit(task: &TestTask, monitor_identity: &MonitorIdentity) -> ExitStatus {
    task.paths.runc.kill(&task.runc_id, libc::SIGKILL, false).await.expect("runc kill");
    let exit_status = wait_exit_with_timeout(task, monitor_identity).await;
    assert_eq!((exit_status.code, exit_status.signal), (137, 9));
    exit_status
}

/// Waits until the monitor process has gone. The monitor writes `exit.json` before it exits, so a
/// caller that saw the exit file may still find the monitor alive for a moment.
async fn wait_until_monitor_gone(monitor_identity: &MonitorIdentity, why: &str) {
    let deadline = std::time::Instant::now() + GENEROUS_TIMEOUT;
    while monitor_identity.is_alive() {
        assert!(std::time::Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn echo_output_lands_in_the_log_files_and_exit_is_recorded() {
    let task = TestTask::new("echo", &["sh", "-c", "echo out; echo err >&2"]);
    let (monitor_identity, exit_report) = monitor::spawn_monitor(
        &task.paths,
        &task.runc_id,
        &task.bundle,
        &task.task_dir,
        Launch::Create,
        Seq(0),
        &TaskIo::default(),
    )
    .await
    .expect("spawn the monitor");
    assert_eq!(task.task_dir.monitor_identity(), Some(monitor_identity.clone()));
    assert!(monitor_identity.is_alive());
    let created = task.paths.runc.state(&task.runc_id).await.unwrap().expect("runc knows it");
    assert_eq!(created.status, "created");
    assert_eq!(created.pid, monitor_identity.init_pid);
    assert_eq!(task.task_dir.exit_status(), None, "no exit before the container ran");

    let before_start_ns = Timestamp::now();
    task.paths.runc.start(&task.runc_id).await.expect("runc start");
    // The early report on the readiness pipe, then the same status in the durable exit.json.
    let reported = tokio::time::timeout(Duration::from_secs(30), monitor::read_exit_report(Some(exit_report)))
        .await
        .expect("the exit is reported within 30 s")
        .expect("the monitor reports the exit on its pipe");
    assert_eq!(reported.monitor_pid, Some(monitor_identity.monitor_pid), "the report names its monitor");
    let exit_status = wait_exit_with_timeout(&task, &monitor_identity).await;
    assert_eq!(exit_status, reported, "exit.json says what the early report said");
    let after_exit_ns = Timestamp::now();

    assert_eq!((exit_status.code, exit_status.signal), (0, 0));
    assert!(
        before_start_ns <= exit_status.exited_at_ns && exit_status.exited_at_ns <= after_exit_ns,
        "exit time {} outside [{before_start_ns}, {after_exit_ns}]",
        exit_status.exited_at_ns
    );
    assert_eq!(task.task_dir.exit_status(), Some(exit_status));
    assert_eq!(raw_output_since(&task.task_dir.stdout_path(), 0), b"out\n");
    assert_eq!(raw_output_since(&task.task_dir.stderr_path(), 0), b"err\n");
}

#[tokio::test]
async fn the_container_does_not_inherit_the_signals_the_monitor_shrugs_off() {
    let task = TestTask::new("sigdfl", &["grep", "^SigIgn:", "/proc/self/status"]);
    let monitor_identity = spawn_and_start(&task).await;
    let exit_status = wait_exit_with_timeout(&task, &monitor_identity).await;
    assert_eq!(exit_status.code, 0);
    let line = String::from_utf8(raw_output_since(&task.task_dir.stdout_path(), 0)).unwrap();
    let ignored = u64::from_str_radix(line.trim().trim_start_matches("SigIgn:").trim(), 16).expect("a hex mask");
    for signal in [libc::SIGHUP, libc::SIGINT, libc::SIGPIPE] {
        assert_eq!(ignored & (1 << (signal - 1)), 0, "signal {signal} is ignored in the container: {line}");
    }
}

#[tokio::test]
async fn exit_code_is_reported() {
    let task = TestTask::new("exitcode", &["sh", "-c", "exit 7"]);
    let monitor_identity = spawn_and_start(&task).await;
    let exit_status = wait_exit_with_timeout(&task, &monitor_identity).await;
    assert_eq!((exit_status.code, exit_status.signal), (7, 0));
}

#[tokio::test]
async fn killed_container_reports_the_signal_and_can_be_deleted() {
    let task = TestTask::new("kill", &["sleep", "1000"]);
    let monitor_identity = spawn_and_start(&task).await;
    let running = task.paths.runc.state(&task.runc_id).await.unwrap().expect("runc knows it");
    assert_eq!(running.status, "running");
    let listed = task.paths.runc.list().await.expect("runc list");
    assert_eq!(listed.iter().map(|state| state.id.as_str()).collect::<Vec<_>>(), [task.runc_id.as_str()]);

    sigkill_and_wait_exit(&task, &monitor_identity).await;
    wait_until_monitor_gone(&monitor_identity, "the monitor exits once it recorded the exit").await;

    let stopped = task.paths.runc.state(&task.runc_id).await.unwrap().expect("runc still knows it");
    assert_eq!(stopped.status, "stopped");
    task.paths.runc.delete(&task.runc_id, false).await.expect("runc delete");
    assert_eq!(task.paths.runc.state(&task.runc_id).await.unwrap(), None);
    task.paths.runc.delete(&task.runc_id, false).await.expect("deleting twice is fine");
    assert!(task.paths.runc.list().await.unwrap().is_empty());
}

/// The cgroup directories runc made for a container, from its state file.
fn runc_cgroup_dirs(task: &TestTask) -> Vec<PathBuf> {
    let state_file = task.runc_root.join(&task.runc_id).join("state.json");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).expect("runc wrote its state file"))
            .expect("runc's state file is JSON");
    state["cgroup_paths"]
        .as_object()
        .expect("runc records its cgroup paths")
        .values()
        .map(|path| PathBuf::from(path.as_str().expect("a cgroup path is a string")))
        .collect()
}

#[tokio::test]
async fn an_exited_container_is_removed_without_runc_and_leaves_no_cgroups() {
    let task = TestTask::new("delexited", &["sh", "-c", "exit 4"]);
    let monitor_identity = spawn_and_start(&task).await;
    let exit_status = wait_exit_with_timeout(&task, &monitor_identity).await;
    assert_eq!(exit_status.code, 4);
    let cgroup_dirs = runc_cgroup_dirs(&task);
    assert!(!cgroup_dirs.is_empty());
    assert!(cgroup_dirs.iter().all(|dir| dir.is_dir()), "cgroups exist before: {cgroup_dirs:?}");

    // A runc that cannot be started proves the in-place path did the work.
    let unusable_runc = Runc::new(PathBuf::from("/nonexistent/berth-test/runc"), task.runc_root.clone());
    unusable_runc.delete_exited(&task.runc_id).await.expect("removed in place");

    assert_eq!(task.paths.runc.state(&task.runc_id).await.unwrap(), None, "runc no longer knows it");
    assert!(!task.runc_root.join(&task.runc_id).exists());
    let left: Vec<_> = cgroup_dirs.iter().filter(|dir| dir.exists()).collect();
    assert!(left.is_empty(), "cgroup directories left behind: {left:?}");
    // Twice is fine, as with `runc delete`.
    unusable_runc.delete_exited(&task.runc_id).await.expect("already gone");
}

#[tokio::test]
async fn a_running_container_is_left_to_runc_delete_force() {
    let task = TestTask::new("delrunning", &["sleep", "1000"]);
    let monitor_identity = spawn_and_start(&task).await;
    let cgroup_dirs = runc_cgroup_dirs(&task);

    let unusable_runc = Runc::new(PathBuf::from("/nonexistent/berth-test/runc"), task.runc_root.clone());
    let refused = unusable_runc.delete_exited(&task.runc_id).await;
    assert!(matches!(refused, Err(RuncError::NotFound { .. })), "went to runc: {refused:?}");
    assert!(task.runc_root.join(&task.runc_id).join("state.json").exists(), "a running container is not touched");
    assert!(cgroup_dirs.iter().all(|dir| dir.is_dir()));

    task.paths.runc.delete_exited(&task.runc_id).await.expect("runc delete --force");
    let exit_status = wait_exit_with_timeout(&task, &monitor_identity).await;
    assert_eq!((exit_status.code, exit_status.signal), (137, 9));
    assert_eq!(task.paths.runc.state(&task.runc_id).await.unwrap(), None);
}

/// What the helper process needs to start a monitor; passed through the environment as JSON.
#[derive(serde::Serialize, serde::Deserialize)]
struct HelperOrder {
    bundle: PathBuf,
    task_dir: TaskDir,
    runc_root: PathBuf,
    runc_id: String,
    monitor_binary: PathBuf,
}

const HELPER_ORDER_ENV: &str = "BERTH_MONITOR_TEST_HELPER_ORDER";
const HELPER_MARKER: &str = "BERTH-HELPER started-at-ns ";

/// Not a test on its own: `monitor_survives_the_death_of_the_process_that_started_it` re-runs this
/// test binary with only this function selected and the environment variable set, to get a
/// stand-in for berthd that it can SIGKILL. Without the variable it does nothing.
#[test]
fn helper_process_playing_berthd() {
    let Ok(order_json) = std::env::var(HELPER_ORDER_ENV) else {
        return;
    };
    let order: HelperOrder = serde_json::from_str(&order_json).expect("parse helper order");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let paths = MonitorPaths {
            monitor_binary: order.monitor_binary.clone(),
            runc: Runc::new(PathBuf::from(RUNC_BINARY), order.runc_root.clone()),
            output_limits: Default::default(),
            standby: None,
        };
        monitor::spawn_monitor(
            &paths,
            &order.runc_id,
            &order.bundle,
            &order.task_dir,
            Launch::Create,
            Seq(0),
            &TaskIo::default(),
        )
        .await
        .expect("helper: spawn the monitor");
        let started_at_ns = Timestamp::now();
        paths.runc.start(&order.runc_id).await.expect("helper: runc start");
        println!("{HELPER_MARKER}{}", started_at_ns.as_ns());
        // Wait to be killed, still holding the monitor as a child like berthd would.
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

#[tokio::test]
async fn monitor_survives_the_death_of_the_process_that_started_it() {
    // The container runs until the test ends it, so a slow machine cannot make it exit before
    // the checks below have looked at it.
    let task = TestTask::new("orphan", &["sleep", "1000"]);
    let order = HelperOrder {
        bundle: task.bundle.clone(),
        task_dir: task.task_dir.clone(),
        runc_root: task.runc_root.clone(),
        runc_id: task.runc_id.clone(),
        monitor_binary: task.paths.monitor_binary.clone(),
    };
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_process_playing_berthd", "--nocapture", "--test-threads=1"])
        .env(HELPER_ORDER_ENV, serde_json::to_string(&order).unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Its own process group, so the whole group can be SIGKILLed the way a service manager
        // kills a daemon's cgroup or a terminal kills a foreground job.
        .process_group(0)
        .spawn()
        .expect("start the helper process");
    let helper_pid = helper.id() as i32;

    let helper_stdout = helper.stdout.take().unwrap();
    let (line_sender, line_receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(helper_stdout).lines().map_while(Result::ok) {
            // libtest prints "test NAME ... " without a newline first, so the marker can sit
            // in the middle of a line.
            if let Some(marker_start) = line.find(HELPER_MARKER) {
                let started_text = &line[marker_start + HELPER_MARKER.len()..];
                let _ = line_sender.send(Timestamp::from_ns(started_text.trim().parse::<u64>().unwrap()));
                return;
            }
        }
    });
    let started_at_ns =
        tokio::task::spawn_blocking(move || line_receiver.recv_timeout(GENEROUS_TIMEOUT)).await.unwrap();
    let started_at_ns = match started_at_ns {
        Ok(started_at_ns) => started_at_ns,
        Err(receive_error) => {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(helper_pid), nix::sys::signal::Signal::SIGKILL);
            let _ = helper.wait();
            panic!("the helper never reported a started container: {receive_error}");
        }
    };

    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(helper_pid), nix::sys::signal::Signal::SIGKILL)
        .expect("SIGKILL the helper's process group");
    let helper_status = helper.wait().expect("reap the helper");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&helper_status), Some(libc::SIGKILL));

    // A restarted berthd knows only the task directory.
    let monitor_identity = task.task_dir.monitor_identity().expect("monitor.json written by the monitor");
    assert!(monitor_identity.is_alive(), "the monitor must outlive the process that started it");
    let running = task.paths.runc.state(&task.runc_id).await.unwrap().expect("runc knows it");
    assert_eq!(running.status, "running");

    let killed_at_ns = Timestamp::now();
    assert!(killed_at_ns >= started_at_ns);
    let exit_status = sigkill_and_wait_exit(&task, &monitor_identity).await;
    assert!(
        exit_status.exited_at_ns >= killed_at_ns,
        "exit at {} is before the kill at {killed_at_ns}",
        exit_status.exited_at_ns
    );
    assert_eq!(task.task_dir.exit_status(), Some(exit_status));
}

#[tokio::test]
async fn exit_is_recorded_while_nobody_waits() {
    let task = TestTask::new("unwatched", &["sh", "-c", "exit 5"]);
    let monitor_identity = monitor::spawn_monitor(
        &task.paths,
        &task.runc_id,
        &task.bundle,
        &task.task_dir,
        Launch::Create,
        Seq(0),
        &TaskIo::default(),
    )
    .await
    .expect("spawn the monitor")
    .0;
    let before_start_ns = Timestamp::now();
    task.paths.runc.start(&task.runc_id).await.expect("runc start");

    // Nobody calls wait_exit; only watch from the outside until the monitor is gone.
    wait_until_monitor_gone(&monitor_identity, "the monitor should exit after the container").await;
    let after_monitor_gone_ns = Timestamp::now();

    let exit_status = task.task_dir.exit_status().expect("exit.json written before the monitor exited");
    assert_eq!((exit_status.code, exit_status.signal), (5, 0));
    assert!(
        before_start_ns <= exit_status.exited_at_ns && exit_status.exited_at_ns <= after_monitor_gone_ns,
        "exit time {} outside [{before_start_ns}, {after_monitor_gone_ns}]",
        exit_status.exited_at_ns
    );
    // A late wait_exit on a monitor that is long gone answers from the file at once.
    assert_eq!(wait_exit_with_timeout(&task, &monitor_identity).await, exit_status);
}

#[tokio::test]
async fn missing_runc_is_reported_with_its_path() {
    let task = TestTask::new("norunc", &["true"]);
    let bogus_runc_path = PathBuf::from("/nonexistent/berth-test/runc");
    let bogus_runc = Runc::new(bogus_runc_path.clone(), task.runc_root.clone());
    match bogus_runc.check() {
        Err(RuncError::NotFound { path }) => assert_eq!(path, bogus_runc_path),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let real_version = task.paths.runc.check().expect("the real runc answers --version");
    assert!(real_version.starts_with("runc version"), "{real_version}");

    let bogus_paths = MonitorPaths {
        monitor_binary: task.paths.monitor_binary.clone(),
        runc: bogus_runc,
        output_limits: Default::default(),
        standby: None,
    };
    match monitor::spawn_monitor(
        &bogus_paths,
        &task.runc_id,
        &task.bundle,
        &task.task_dir,
        Launch::Create,
        Seq(0),
        &TaskIo::default(),
    )
    .await
    {
        Err(MonitorError::CreateFailed { message }) => {
            assert!(message.contains("/nonexistent/berth-test/runc"), "{message}");
            assert!(message.contains("apt-get install runc"), "{message}");
        }
        other => panic!("expected CreateFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_monitor_binary_is_reported() {
    let task = TestTask::new("nomonitor", &["true"]);
    let paths = MonitorPaths {
        monitor_binary: PathBuf::from("/nonexistent/berth-test/berth-monitor"),
        runc: task.paths.runc.clone(),
        output_limits: Default::default(),
        standby: None,
    };
    match monitor::spawn_monitor(
        &paths,
        &task.runc_id,
        &task.bundle,
        &task.task_dir,
        Launch::Create,
        Seq(0),
        &TaskIo::default(),
    )
    .await
    {
        Err(MonitorError::MonitorSpawn { path, .. }) => {
            assert_eq!(path, PathBuf::from("/nonexistent/berth-test/berth-monitor"))
        }
        other => panic!("expected MonitorSpawn, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_executable_in_the_bundle_fails_create_and_leaves_nothing() {
    let task = TestTask::new("noexec", &["/no/such/binary"]);
    match monitor::spawn_monitor(
        &task.paths,
        &task.runc_id,
        &task.bundle,
        &task.task_dir,
        Launch::Create,
        Seq(0),
        &TaskIo::default(),
    )
    .await
    {
        Err(MonitorError::CreateFailed { message }) => {
            assert!(message.contains("/no/such/binary"), "{message}");
            assert!(message.contains("runc create"), "{message}");
        }
        other => panic!("expected CreateFailed, got {other:?}"),
    }
    assert_eq!(task.paths.runc.state(&task.runc_id).await.unwrap(), None);
    assert!(task.paths.runc.list().await.unwrap().is_empty());
    assert_eq!(task.task_dir.monitor_identity(), None);
    assert_eq!(task.task_dir.exit_status(), None);
}

#[tokio::test]
async fn missing_rootfs_fails_create_and_leaves_nothing() {
    let task = TestTask::new("norootfs", &["true"]);
    std::fs::remove_dir_all(task.bundle.join("rootfs")).unwrap();
    match monitor::spawn_monitor(
        &task.paths,
        &task.runc_id,
        &task.bundle,
        &task.task_dir,
        Launch::Create,
        Seq(0),
        &TaskIo::default(),
    )
    .await
    {
        Err(MonitorError::CreateFailed { message }) => {
            assert!(message.contains("rootfs"), "{message}");
        }
        other => panic!("expected CreateFailed, got {other:?}"),
    }
    assert_eq!(task.paths.runc.state(&task.runc_id).await.unwrap(), None);
    assert!(task.paths.runc.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn duplicate_id_is_refused_without_harming_the_existing_container() {
    let task = TestTask::new("duplicate", &["sleep", "1000"]);
    let monitor_identity = monitor::spawn_monitor(
        &task.paths,
        &task.runc_id,
        &task.bundle,
        &task.task_dir,
        Launch::Create,
        Seq(0),
        &TaskIo::default(),
    )
    .await
    .expect("spawn the first monitor")
    .0;
    let second_task_dir = TaskDir::new(task.temp_dir.path().join("second-task"));
    match monitor::spawn_monitor(
        &task.paths,
        &task.runc_id,
        &task.bundle,
        &second_task_dir,
        Launch::Create,
        Seq(0),
        &TaskIo::default(),
    )
    .await
    {
        Err(MonitorError::AlreadyExists { runc_id, status }) => {
            assert_eq!(runc_id, task.runc_id);
            assert_eq!(status, "created");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let still_there = task.paths.runc.state(&task.runc_id).await.unwrap().expect("first container kept");
    assert_eq!(still_there.pid, monitor_identity.init_pid);
    assert!(monitor_identity.is_alive());

    // Killing a container that was never started is also an exit the monitor records.
    sigkill_and_wait_exit(&task, &monitor_identity).await;
}

#[tokio::test]
async fn monitor_killed_before_the_container_exits_reports_an_unknown_exit() {
    let task = TestTask::new("monitorkilled", &["sleep", "1000"]);
    let monitor_identity = spawn_and_start(&task).await;
    let before_kill_ns = Timestamp::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor_identity.monitor_pid), nix::sys::signal::Signal::SIGKILL)
        .expect("SIGKILL the monitor");

    let exit_status = wait_exit_with_timeout(&task, &monitor_identity).await;
    assert_eq!((exit_status.code, exit_status.signal), (UNKNOWN_EXIT_CODE, 0));
    assert!(exit_status.exited_at_ns >= before_kill_ns);
    assert_eq!(task.task_dir.exit_status(), None);
    // As documented on wait_exit: the container outlives its monitor and is the caller's to clean up
    // (here the fixture's Drop does it).
    let orphaned = task.paths.runc.state(&task.runc_id).await.unwrap().expect("runc knows it");
    assert_eq!(orphaned.status, "running");
}

/// Spawns the task's monitor (which runs `runc create`) and starts the container.
async fn spawn_and_start(task: &TestTask) -> MonitorIdentity {
    let monitor_identity = monitor::spawn_monitor(
        &task.paths,
        &task.runc_id,
        &task.bundle,
        &task.task_dir,
        Launch::Create,
        Seq(0),
        &TaskIo::default(),
    )
    .await
    .expect("spawn the monitor")
    .0;
    task.paths.runc.start(&task.runc_id).await.expect("runc start");
    monitor_identity
}
