//! A standby monitor (`tasks::monitor_standby`) against real runc (root required): it becomes the
//! task's monitor with the task's lock, a dead one is replaced by a spawned monitor, one let go
//! exits, and one given a broken assignment refuses it.

#[path = "common/monitor_fixture.rs"]
mod monitor_fixture;

use std::io::{IoSlice, Read};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_log::Seq;
use berth_runtime::sys::process::read_process_stat;
use berth_runtime::tasks::monitor::{self, Launch, TaskIo};
use berth_runtime::tasks::monitor_standby::{MonitorStandby, STANDBY_COMMAND};
use berth_runtime::tasks::output_log::raw_output_since;
use monitor_fixture::TestTask;
use nix::sys::socket::{sendmsg, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

const GENEROUS_TIMEOUT: Duration = Duration::from_secs(60);

fn monitor_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth-monitor"))
}

/// Starts a standby and returns its pid once it waits.
async fn waiting_standby(standby: &Arc<MonitorStandby>) -> u32 {
    standby.replenish();
    let deadline = Instant::now() + GENEROUS_TIMEOUT;
    loop {
        if let Some(pid) = standby.waiting_pid() {
            return pid;
        }
        assert!(Instant::now() < deadline, "no standby monitor started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn policy(pid: u32) -> libc::c_int {
    // SAFETY: sched_getscheduler only reads the policy of `pid`.
    let policy = unsafe { libc::sched_getscheduler(pid as libc::pid_t) };
    assert!(policy >= 0, "sched_getscheduler({pid}): {}", std::io::Error::last_os_error());
    policy
}

fn is_running(pid: u32) -> bool {
    read_process_stat(pid as i32).is_some_and(|stat| stat.is_running())
}

async fn wait_until_gone(pid: u32, why: &str) {
    let deadline = Instant::now() + GENEROUS_TIMEOUT;
    while is_running(pid) {
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_standby_becomes_the_tasks_monitor_holding_its_lock_and_the_next_one_starts() {
    let mut task = TestTask::new("standby", &["sh", "-c", "echo from-standby; sleep 1; exit 3"]);
    let standby = MonitorStandby::new(monitor_binary());
    let standby_pid = waiting_standby(&standby).await;
    assert_eq!(policy(standby_pid), libc::SCHED_IDLE, "a waiting standby takes only idle CPU");
    task.paths.standby = Some(Arc::clone(&standby));

    let (monitor_identity, exit_report) = monitor::spawn_monitor(
        &task.paths,
        &task.runc_id,
        &task.bundle,
        &task.task_dir,
        Launch::CreateAndStart,
        Seq(7),
        &TaskIo::default(),
    )
    .await
    .expect("the standby starts the container");
    assert_eq!(monitor_identity.monitor_pid as u32, standby_pid, "the waiting standby is the task's monitor");
    assert_eq!(monitor_identity.intent_seq, Seq(7));
    // `ps` shows what the monitor does, not that it was a standby.
    let command_line = std::fs::read(format!("/proc/{standby_pid}/cmdline")).unwrap();
    let command_line = String::from_utf8_lossy(&command_line).replace('\0', " ");
    assert!(command_line.starts_with("berth-monitor --id "), "{command_line}");
    assert!(command_line.contains(&format!("--id {} ", task.runc_id)), "{command_line}");
    assert!(command_line.contains(" --start "), "{command_line}");
    // At work it has the ordinary policy again, and so has the container it started.
    assert_eq!(policy(standby_pid), libc::SCHED_OTHER);
    assert_eq!(policy(monitor_identity.init_pid), libc::SCHED_OTHER);
    // The lock came with the assignment: nobody else can take it while the monitor lives.
    assert!(task.task_dir.take_lock().is_err(), "the monitor holds the task's lock");

    let next_pid = waiting_standby(&standby).await;
    assert_ne!(next_pid, standby_pid, "a new standby waits for the next task");

    let reported = tokio::time::timeout(GENEROUS_TIMEOUT, monitor::read_exit_report(Some(exit_report)))
        .await
        .expect("the exit comes")
        .expect("the exit is reported on the readiness pipe");
    assert_eq!((reported.code, reported.signal), (3, 0));
    let output = raw_output_since(&task.task_dir.stdout_path(), 0);
    assert_eq!(String::from_utf8_lossy(&output), "from-standby\n");
    wait_until_gone(standby_pid, "the monitor exits after its task").await;
    assert!(task.task_dir.take_lock().is_ok(), "the lock is free once the monitor is gone");
}

#[tokio::test]
async fn a_killed_standby_is_passed_over_for_a_spawned_monitor() {
    let mut task = TestTask::new("standby-killed", &["true"]);
    let standby = MonitorStandby::new(monitor_binary());
    let standby_pid = waiting_standby(&standby).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(standby_pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    // The kill lands before the standby is taken (it is reaped only by its Child's owner).
    let deadline = Instant::now() + GENEROUS_TIMEOUT;
    while read_process_stat(standby_pid as i32).is_some_and(|stat| stat.state != 'Z') {
        assert!(Instant::now() < deadline, "SIGKILL did not end the standby");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.paths.standby = Some(Arc::clone(&standby));

    let (monitor_identity, _) = monitor::spawn_monitor(
        &task.paths,
        &task.runc_id,
        &task.bundle,
        &task.task_dir,
        Launch::CreateAndStart,
        Seq(1),
        &TaskIo::default(),
    )
    .await
    .expect("a spawned monitor starts the container");
    assert_ne!(monitor_identity.monitor_pid as u32, standby_pid);
}

#[tokio::test]
async fn a_standby_let_go_exits_without_doing_anything() {
    monitor_fixture::require_root_and_runc();
    let standby = MonitorStandby::new(monitor_binary());
    let standby_pid = waiting_standby(&standby).await;
    drop(standby);
    wait_until_gone(standby_pid, "a standby whose channel closed should exit").await;
}

/// A message without its final NUL (not a whole assignment) is refused with a message, and
/// nothing is started.
#[test]
fn a_broken_assignment_is_refused() {
    monitor_fixture::require_root_and_runc();
    let (ours, theirs) =
        socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).expect("socketpair");
    let mut child = Command::new(monitor_binary())
        .arg(STANDBY_COMMAND)
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a standby");
    sendmsg::<()>(ours.as_raw_fd(), &[IoSlice::new(b"--id\0c1")], &[], MsgFlags::empty(), None).expect("send");
    let status = child.wait().expect("the standby exits");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("standby") && stderr.contains("not whole"), "{stderr}");
    assert_eq!(stdout, "", "no readiness report for work never started");
}
