//! The daemon's side of the per-task monitor process (`berth-monitor`): start one, learn whether
//! it is still alive after berthd restarts, and wait for the container's exit status it records.
//!
//! ## Why a separate process
//! berthd may be SIGKILLed at any instant. The container must keep running, its output must keep
//! being captured, and its exit status must still be known when berthd comes back. So every task
//! gets a `berth-monitor` that is the container's parent (a child subreaper), lives in its own
//! process group, and writes what it learns into the task directory, which is the only channel
//! back:
//!
//! What the monitor writes, and how berthd reads it, is in `task_dir.rs`.
//!
//! **Invariant:** `exit.json` exists only after the container's init has exited; the monitor
//! deletes a stale one before it runs `runc create`.
//!
//! ## Readiness
//! berthd starts the monitor with its stdout connected to a pipe. The monitor writes one report
//! and points its stdout at `/dev/null` and its stderr at `monitor.log`:
//! - `ok <init_pid>\n` once `runc create` succeeded and `monitor.json` is in place, or
//! - `error <message>` (the message may span lines, up to end of stream) when it failed, after
//!   which the monitor exits non-zero.
//!
//! [`spawn_monitor`] reads the first line, and after anything but `ok` the pipe to end of stream.
//! End of stream without a report means the monitor died early (bad arguments, missing library);
//! its stderr, piped until the report, explains why.
//!
//! ## The exit's early report
//! After `ok` the monitor keeps the pipe (through a close-on-exec duplicate nothing it starts
//! inherits). Once the init has exited and its output is drained, it writes
//! `exit <exit.json's JSON>\n`, closes the pipe, and only then writes `exit.json` durably
//! (fsync, rename, fsync of the directory) and exits. berthd records the exit as soon as the
//! line comes ([`read_exit_report`]), instead of after the monitor's two fsyncs and its exit,
//! and waits for the monitor to be gone before the container's next job that empties or
//! removes its directories (`Executor::worker`). The log's record is
//! durable when the exit is acted on; `exit.json` still covers a berthd that is not there to
//! read the line (killed, restarting), as before. End of stream without the line (the monitor
//! was killed) falls back to waiting for the monitor and reading `exit.json`.
//!
//! A process that has ended before its monitor reports readiness (a short one often ends while
//! runc is still returning; the monitor looks without waiting) gets both lines in one write,
//! `ok <pid>\nexit <JSON>\n`, after its output is drained. berthd then finds the exit in what it
//! read with the `ok` ([`ExitReport::take_if_reported`]) and records it in the same record as
//! the create's (or exec's start's) outcome: one fdatasync, and one hop of the container's
//! worker, fewer per short process.
//!
//! ## Detaching
//! The monitor is put in a process group of its own before it execs (so a SIGKILL to berthd's
//! process group never reaches it; it ignores the SIGHUP of a closing terminal) and makes one
//! itself if it was started some other way. It stays in berthd's session: every new session is
//! a scheduling autogroup of its own, which made each runc the monitor starts measurably slower.
//! berthd keeps the `Child` in a tokio task that waits for it, so a monitor that exits while berthd
//! runs is reaped rather than left a zombie; if berthd dies first, the monitor is reparented and
//! reaped by init.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_log::{Seq, Timestamp};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use crate::sys::fs::absolute_or_same;
use crate::sys::process::{inheritable_duplicate, open_pidfd, spawn_lock};
use crate::tasks::runc::Runc;
use crate::tasks::task_dir::{
    ExitStatus, MonitorIdentity, TaskDir, MONITOR_LOCK_FILE, MONITOR_LOG_FILE, MONITOR_STATE_FILE, RUNC_LOG_FILE,
};

pub const MONITOR_BINARY_NAME: &str = "berth-monitor";

/// How long `runc create` (run by the monitor) may take before berthd gives up on the task.
/// Creation is normally well under a second; the margin covers a loaded machine.
const MONITOR_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often to look at `/proc` when a pidfd cannot be used to wait for the monitor.
const MONITOR_POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// `runc create` (or the monitor around it) failed; `message` carries runc's own words.
    #[error("could not create the container: {message}")]
    CreateFailed { message: String },

    #[error("runc already has a container with id {runc_id} (status {status}): delete it first or use another id")]
    AlreadyExists { runc_id: String, status: String },

    #[error("could not create task directory {}: {source}; check that berthd's root directory is writable", path.display())]
    TaskDir { path: PathBuf, source: std::io::Error },

    #[error("could not take the monitor lock {}: {source}; another monitor may still be at work on this task, check with `berth ps -a`", path.display())]
    MonitorLock { path: PathBuf, source: std::io::Error },

    #[error("could not start the monitor at {}: {source}; install berth-monitor next to berthd or set `monitor` in berthd's config file", path.display())]
    MonitorSpawn { path: PathBuf, source: std::io::Error },
}

/// What berthd needs to start monitors: the monitor executable and the runc it should drive.
#[derive(Debug, Clone)]
pub struct MonitorPaths {
    pub monitor_binary: PathBuf,
    pub runc: Runc,
    /// How much output the monitor keeps (`--output-max-file-bytes`, `--output-max-files`).
    pub output_limits: crate::tasks::output_log::OutputLimits,
    /// A monitor started ahead of need, taken instead of spawning one when it waits.
    pub standby: Option<std::sync::Arc<crate::tasks::monitor_standby::MonitorStandby>>,
}

/// `berth-monitor` next to the running executable (or next to its parent directory when running
/// from cargo's `deps/`), else the first one on `PATH`, else the bare name for `exec` to resolve.
pub fn default_monitor_binary() -> PathBuf {
    if let Ok(current_exe) = std::env::current_exe() {
        if let Some(exe_dir) = current_exe.parent() {
            let beside_exe = exe_dir.join(MONITOR_BINARY_NAME);
            if beside_exe.is_file() {
                return beside_exe;
            }
            if exe_dir.file_name().is_some_and(|name| name == "deps") {
                if let Some(beside_deps) = exe_dir.parent().map(|dir| dir.join(MONITOR_BINARY_NAME)) {
                    if beside_deps.is_file() {
                        return beside_deps;
                    }
                }
            }
        }
    }
    if let Some(search_path) = std::env::var_os("PATH") {
        for path_dir in std::env::split_paths(&search_path) {
            let candidate = path_dir.join(MONITOR_BINARY_NAME);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(MONITOR_BINARY_NAME)
}

/// What the monitor does once runc has created the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// `runc create`: the container is created, not started; the caller runs `runc start`.
    Create,
    /// `runc run --detach`: created and started in one runc invocation instead of two.
    CreateAndStart,
    /// `runc exec --detach` of the process in the task directory's `process.json`, in the
    /// running container `runc_id`: the monitor is that process's reaper as it is a task's.
    Exec,
}

/// How the task's process is wired to its clients: stdio files only (the default), a stdin FIFO
/// (`-i`), a terminal (`-t`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskIo {
    pub stdin_fifo: Option<PathBuf>,
    pub tty: bool,
}

/// Starts a monitor for `runc_id` and returns once it reported: the container is created (and
/// running, with [`Launch::CreateAndStart`]), with the pipe its exit's early report comes on.
/// On failure no runc container with that id is left behind. `intent_seq` is the create intent the monitor answers, kept in `monitor.json`.
pub async fn spawn_monitor(
    paths: &MonitorPaths,
    runc_id: &str,
    bundle: &Path,
    task_dir: &TaskDir,
    launch: Launch,
    intent_seq: Seq,
    io: &TaskIo,
) -> Result<(MonitorIdentity, ExitReport), MonitorError> {
    for dir in [task_dir.path(), task_dir.kept_dir()] {
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(crate::sys::fs::PRIVATE_DIR_MODE)
            .create(dir)
            .await
            .map_err(|source| MonitorError::TaskDir { path: dir.to_path_buf(), source })?;
    }

    // runc refuses a duplicate id by itself, but the cleanup below (`delete --force` after a
    // failed create) would then destroy the existing container. Checking first keeps the
    // cleanup safe; ids are chosen by the caller, so there is no race in practice.
    if launch != Launch::Exec && paths.runc.has_container(runc_id) {
        let status = match paths.runc.state(runc_id).await {
            Ok(Some(existing)) => existing.status,
            Ok(None) => "unknown".to_string(),
            Err(runc_error) => return Err(MonitorError::CreateFailed { message: runc_error.to_string() }),
        };
        return Err(MonitorError::AlreadyExists { runc_id: runc_id.to_string(), status });
    }

    // berthd takes the monitor's lock and hands the descriptor to the monitor (`--lock-fd`), so the
    // lock is held from before the monitor exists: a berthd killed right after the spawn comes back
    // to a held lock ("a monitor is at work") rather than a free one ("none started").
    let lock_error = |source| MonitorError::MonitorLock { path: task_dir.file(MONITOR_LOCK_FILE), source };
    let monitor_lock = task_dir.take_lock().map_err(lock_error)?;
    let arguments = monitor_arguments(paths, runc_id, bundle, task_dir, launch, intent_seq, io);
    // A standby takes the lock with its arguments (`monitor_standby`); else a monitor is spawned.
    let from_standby = paths.standby.as_ref().and_then(|standby| standby.assign(&arguments, &monitor_lock));
    let spawned = match from_standby {
        Some(monitor_child) => Ok(monitor_child),
        None => spawn_monitor_process(&paths.monitor_binary, &arguments, &monitor_lock).map_err(lock_error)?,
    };
    // The monitor holds the lock through its own descriptor now (or it never started).
    drop(monitor_lock);
    let mut monitor_child =
        spawned.map_err(|source| MonitorError::MonitorSpawn { path: paths.monitor_binary.clone(), source })?;
    crate::sys::failpoint("monitor-spawned");
    let monitor_pid = monitor_child.id().map(|pid| pid as i32);

    let mut readiness_pipe = tokio::io::BufReader::new(monitor_child.stdout.take().expect("stdout was piped"));
    let mut monitor_stderr = monitor_child.stderr.take().expect("stderr was piped");
    // Both streams are read together: the monitor lets them go at the same moment, and reading
    // only one could leave the monitor blocked on a full pipe for the other.
    let read_both = async {
        let mut report_bytes = Vec::new();
        let mut stderr_bytes = Vec::new();
        let read_report = async {
            let _ = readiness_pipe.read_until(b'\n', &mut report_bytes).await;
            // The pipe stays open after `ok` (the exit's early report comes there); any other
            // report ends with the stream.
            if !report_bytes.starts_with(b"ok ") {
                let _ = readiness_pipe.read_to_end(&mut report_bytes).await;
            }
        };
        let (_, _) = tokio::join!(read_report, monitor_stderr.read_to_end(&mut stderr_bytes));
        (report_bytes, stderr_bytes)
    };
    let failure_message = match tokio::time::timeout(MONITOR_READY_TIMEOUT, read_both).await {
        Err(_elapsed) => {
            let _ = monitor_child.start_kill();
            format!(
                "berth-monitor did not report readiness within {} seconds, runc create may be stuck: see {}",
                MONITOR_READY_TIMEOUT.as_secs(),
                task_dir.file(RUNC_LOG_FILE).display()
            )
        }
        Ok((report_bytes, stderr_bytes)) => {
            let report_text = String::from_utf8_lossy(&report_bytes);
            if let Some(init_pid_text) = report_text.strip_prefix("ok ") {
                match check_ready_state(task_dir, monitor_pid, init_pid_text) {
                    Ok(monitor_identity) => {
                        // Reap the monitor whenever it exits while berthd runs, so it never
                        // lingers as berthd's zombie.
                        tokio::spawn(async move {
                            let _ = monitor_child.wait().await;
                        });
                        return Ok((monitor_identity, ExitReport(readiness_pipe)));
                    }
                    Err(message) => {
                        // The container exists but berthd cannot track it: better to remove it
                        // now than to leak an unmonitored container.
                        let _ = monitor_child.start_kill();
                        message
                    }
                }
            } else if let Some(runc_message) = report_text.strip_prefix("error ") {
                runc_message.trim().to_string()
            } else {
                let stderr_text = String::from_utf8_lossy(&stderr_bytes);
                format!(
                    "berth-monitor exited before reporting readiness: {}; see {}",
                    first_nonempty(&[stderr_text.trim(), report_text.trim()]).unwrap_or("(no output)"),
                    task_dir.file(MONITOR_LOG_FILE).display()
                )
            }
        }
    };

    let _ = monitor_child.wait().await;
    if launch == Launch::Exec {
        // A failed exec leaves the container as it was; it is not this monitor's to remove.
        return Err(MonitorError::CreateFailed { message: failure_message });
    }
    if let Err(cleanup_error) = paths.runc.delete(runc_id, true).await {
        tracing::warn!(runc_id, %cleanup_error, "could not remove the runc container after a failed create");
    }
    Err(MonitorError::CreateFailed { message: failure_message })
}

/// The monitor's arguments for this task, `--lock-fd` aside (it differs between a spawned
/// monitor and a standby's).
fn monitor_arguments(
    paths: &MonitorPaths,
    runc_id: &str,
    bundle: &Path,
    task_dir: &TaskDir,
    launch: Launch,
    intent_seq: Seq,
    io: &TaskIo,
) -> Vec<OsString> {
    let mut arguments: Vec<OsString> = vec![
        "--id".into(),
        runc_id.into(),
        "--bundle".into(),
        absolute_or_same(bundle).into(),
        "--runc".into(),
        paths.runc.binary.clone().into(),
        "--runc-root".into(),
        absolute_or_same(&paths.runc.root).into(),
        "--task-dir".into(),
        absolute_or_same(task_dir.path()).into(),
    ];
    if task_dir.kept_dir() != task_dir.path() {
        arguments.extend(["--kept-dir".into(), absolute_or_same(task_dir.kept_dir()).into()]);
    }
    match launch {
        Launch::Create => {}
        Launch::CreateAndStart => arguments.push("--start".into()),
        Launch::Exec => arguments.push("--exec".into()),
    }
    arguments.extend(["--intent-seq".into(), intent_seq.to_string().into()]);
    if io.tty {
        arguments.push("--tty".into());
    }
    if let Some(fifo_path) = &io.stdin_fifo {
        arguments.extend(["--stdin-fifo".into(), fifo_path.clone().into()]);
    }
    arguments.extend([
        "--output-max-file-bytes".into(),
        paths.output_limits.max_file_bytes.to_string().into(),
        "--output-max-files".into(),
        paths.output_limits.max_files.to_string().into(),
    ]);
    arguments
}

/// Spawns a monitor with `arguments` and the lock at `--lock-fd`. The outer error is the
/// lock's duplicate; the inner the spawn's.
fn spawn_monitor_process(
    monitor_binary: &Path,
    arguments: &[OsString],
    monitor_lock: &std::fs::File,
) -> std::io::Result<std::io::Result<tokio::process::Child>> {
    let mut command = tokio::process::Command::new(monitor_binary);
    command.args(arguments).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // A process group of its own, so that a signal to berthd's group never reaches it. Not a
    // session of its own: with the scheduler's autogroups, each new session is a new scheduling
    // group, and runc started from one took ~6 ms longer per container here.
    command.process_group(0);
    // The monitor gets the lock through an inheritable duplicate that exists only while
    // SPAWN_LOCK is held, so no other child of berthd inherits it. (Passing it at a fixed number
    // would need a pre_exec hook, which makes the spawn fork berthd: ~1.5 ms more per container
    // here than the posix_spawn this keeps.)
    let _spawning = spawn_lock();
    let inheritable_lock = inheritable_duplicate(monitor_lock)?;
    command.arg("--lock-fd").arg(inheritable_lock.as_raw_fd().to_string());
    Ok(command.spawn())
}

/// Checks the monitor's `ok <init_pid>` report against the `monitor.json` it wrote.
fn check_ready_state(
    task_dir: &TaskDir,
    monitor_pid: Option<i32>,
    init_pid_text: &str,
) -> Result<MonitorIdentity, String> {
    let reported_init_pid: u32 = init_pid_text
        .trim()
        .parse()
        .map_err(|_| format!("berth-monitor reported an unreadable init pid {init_pid_text:?}"))?;
    let monitor_identity = task_dir.monitor_identity().ok_or_else(|| {
        format!(
            "berth-monitor reported success but {} is missing or unreadable",
            task_dir.file(MONITOR_STATE_FILE).display()
        )
    })?;
    if monitor_identity.init_pid != reported_init_pid || Some(monitor_identity.monitor_pid) != monitor_pid {
        return Err(format!(
            "{} does not match the monitor that was just started (stale file?): {monitor_identity:?}",
            task_dir.file(MONITOR_STATE_FILE).display()
        ));
    }
    Ok(monitor_identity)
}

/// Waits until the monitor has exited and returns the exit status it recorded.
///
/// If the monitor died without writing `exit.json` (it was SIGKILLed, or its disk was full), this
/// returns `code: UNKNOWN_EXIT_CODE, signal: 0` stamped with the current time and logs a
/// warning. In that case the container itself may well still be running (it was reparented to
/// init): the caller should consult `runc state` and kill/delete the container.
pub async fn wait_exit(task_dir: &TaskDir, state: &MonitorIdentity) -> ExitStatus {
    if let Some(exit_status) = task_dir.exit_status() {
        return exit_status;
    }
    wait_for_monitor_to_go(state).await;
    match task_dir.exit_status() {
        Some(exit_status) => exit_status,
        None => {
            tracing::warn!(
                runc_id = %state.runc_id,
                monitor_pid = state.monitor_pid,
                task_dir = %task_dir.path().display(),
                "berth-monitor exited without recording the container's exit status; reporting code {}",
                crate::tasks::task_dir::UNKNOWN_EXIT_CODE
            );
            ExitStatus::unknown(Timestamp::now())
        }
    }
}

/// The rest of a monitor's readiness pipe after its `ok`: where `exit <JSON>\n` comes.
#[derive(Debug)]
pub struct ExitReport(tokio::io::BufReader<tokio::process::ChildStdout>);

impl ExitReport {
    /// The exit, when the monitor sent it with its readiness (a process that had ended before
    /// runc returned): both lines came in one write, so it is in what was read already. Never
    /// waits; `None` leaves the report to [`read_exit_report`].
    pub fn take_if_reported(&mut self) -> Option<ExitStatus> {
        let buffered = self.0.buffer();
        let line_end = buffered.iter().position(|byte| *byte == b'\n')?;
        let status = parse_exit_line(std::str::from_utf8(&buffered[..line_end]).ok()?)?;
        std::pin::Pin::new(&mut self.0).consume(line_end + 1);
        Some(status)
    }
}

/// The exit the monitor reports early on its pipe, once it comes. `None` without a pipe (a
/// monitor found at start-up) or when the pipe ended without it (the monitor was killed): wait
/// for the monitor with [`wait_exit`] then.
pub async fn read_exit_report(report: Option<ExitReport>) -> Option<ExitStatus> {
    let ExitReport(mut pipe) = report?;
    let mut line = String::new();
    match pipe.read_line(&mut line).await {
        Ok(n_bytes) if n_bytes > 0 => {}
        _ => return None,
    }
    let status = parse_exit_line(&line);
    if status.is_none() {
        tracing::warn!(line = line.trim_end(), "berth-monitor's exit report is unreadable; reading exit.json instead");
    }
    status
}

/// `exit <exit.json's JSON>`, with or without its newline.
fn parse_exit_line(line: &str) -> Option<ExitStatus> {
    line.strip_prefix("exit ").and_then(|json| serde_json::from_str(json.trim_end()).ok())
}

/// The exit of a monitor's process: its early report when berthd has the pipe, else the
/// monitor's end and its `exit.json` ([`wait_exit`]). With the report the monitor comes back
/// too, as it may still be making `exit.json` durable.
pub async fn await_exit(
    report: Option<ExitReport>,
    task_dir: &TaskDir,
    monitor: MonitorIdentity,
) -> (ExitStatus, Option<MonitorIdentity>) {
    match read_exit_report(report).await {
        Some(status) => (status, Some(monitor)),
        None => (wait_exit(task_dir, &monitor).await, None),
    }
}

/// Waits until the monitor is gone (at once if it already is).
pub async fn wait_for_monitor_to_go(state: &MonitorIdentity) {
    let pidfd = match open_pidfd(state.monitor_pid) {
        Ok(pidfd) => pidfd,
        // ESRCH: no such process, nothing to wait for.
        Err(open_error) if open_error.raw_os_error() == Some(libc::ESRCH) => return,
        Err(open_error) => {
            tracing::warn!(%open_error, "pidfd_open failed, polling /proc for the monitor instead");
            return poll_until_monitor_gone(state).await;
        }
    };
    // The pid was checked only now that the pidfd pins the process: if the start time matches,
    // the pidfd refers to our monitor and not to a process that reused its pid.
    if !state.is_alive() {
        return;
    }
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the descriptor stays open and
    // refers to this pidfd until the AsyncFd is dropped at the end of this function.
    let registration =
        unsafe { tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) };
    match registration {
        Ok(async_pidfd) => {
            // A pidfd becomes readable when the process exits; errors here are not expected
            // and polling is the safe fallback.
            if async_pidfd.readable().await.is_err() {
                poll_until_monitor_gone(state).await;
            }
        }
        Err(register_error) => {
            tracing::warn!(%register_error, "could not watch the monitor's pidfd, polling /proc instead");
            poll_until_monitor_gone(state).await;
        }
    }
}

async fn poll_until_monitor_gone(state: &MonitorIdentity) {
    while state.is_alive() {
        tokio::time::sleep(MONITOR_POLL_INTERVAL).await;
    }
}

fn first_nonempty<'a>(candidates: &[&'a str]) -> Option<&'a str> {
    candidates.iter().copied().find(|candidate| !candidate.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What spawn_monitor leaves after reading `ok <pid>`: the rest of a pipe `sh` wrote `text`
    /// into at once.
    async fn report_after_ok(text: &str) -> ExitReport {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", &format!("printf '{text}'")])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = tokio::io::BufReader::new(child.stdout.take().unwrap());
        child.wait().await.unwrap();
        let mut ok_line = Vec::new();
        pipe.read_until(b'\n', &mut ok_line).await.unwrap();
        assert_eq!(ok_line, b"ok 42\n");
        ExitReport(pipe)
    }

    #[tokio::test]
    async fn an_exit_sent_with_the_readiness_is_taken_at_once_and_only_once() {
        let exit = r#"exit {"code":3,"signal":0,"exited_at_ns":7,"monitor_pid":9}"#;
        let mut report = report_after_ok(&format!("ok 42\\n{exit}\\n")).await;
        let status = report.take_if_reported().expect("the exit came with the readiness");
        assert_eq!((status.code, status.monitor_pid), (3, Some(9)));
        assert_eq!(report.take_if_reported(), None);
        // Nothing more comes: the later wait sees the end of the pipe, not the same exit again.
        assert_eq!(read_exit_report(Some(report)).await, None);
    }

    #[tokio::test]
    async fn without_an_exit_in_what_was_read_nothing_is_taken_and_the_later_report_is_read_whole() {
        let exit = r#"exit {"code":0,"signal":9,"exited_at_ns":7}"#;
        let mut report = report_after_ok("ok 42\\n").await;
        assert_eq!(report.take_if_reported(), None);
        // An unfinished line is not taken either; read_exit_report waits for the rest.
        let mut partial = report_after_ok(&format!("ok 42\\n{exit}")).await;
        assert_eq!(partial.take_if_reported(), None);
        let status = read_exit_report(Some(partial)).await.expect("the line without its newline at the pipe's end");
        assert_eq!(status.signal, 9);
    }
}
