//! The daemon's side of the per-task monitor process (`berth-shim`): start one, learn whether
//! it is still alive after berthd restarts, and wait for the container's exit status it records.
//!
//! ## Why a separate process
//! berthd may be SIGKILLed at any instant. The container must keep running, its output must keep
//! being captured, and its exit status must still be known when berthd comes back. So every task
//! gets a `berth-shim` that is the container's parent (a child subreaper), lives in its own
//! process group, and writes what it learns into the task directory, which is the only channel
//! back:
//!
//! | file in `task_dir` | written by | meaning |
//! |---|---|---|
//! | `shim.json`   | shim, atomically, after `runc create` succeeded | [`ShimState`] |
//! | `exit.json`   | shim, atomically and fsynced, when the container's init was reaped | [`ExitStatus`] |
//! | `stdout.log`, `stderr.log` | the container itself (it inherits the open files) | output |
//! | `runc.log`    | runc (`--log`, json lines) | runc's own diagnostics |
//! | `shim.log`    | shim | the shim's diagnostics |
//! | `shim.lock`   | berthd takes its flock before spawning the shim and hands the descriptor over (`--lock-fd`); the shim holds it until it exits | a monitor is at work |
//!
//! **Invariant:** `exit.json` exists only after the container's init has exited; the shim
//! deletes a stale one before it runs `runc create`.
//!
//! ## Readiness
//! berthd starts the shim with its stdout connected to a pipe. The shim writes exactly one
//! report and then closes the pipe (it points its stdout at `/dev/null` and its stderr at
//! `shim.log`):
//! - `ok <init_pid>\n` once `runc create` succeeded and `shim.json` is in place, or
//! - `error <message>` (the message may span lines, up to end of stream) when it failed, after
//!   which the shim exits non-zero.
//!
//! [`spawn_shim`] reads the pipe to end of stream. End of stream without a report means the shim
//! died early (bad arguments, missing library); its stderr, also piped until then, explains why.
//!
//! ## Detaching
//! The shim is put in a process group of its own before it execs (so a SIGKILL to berthd's
//! process group never reaches it; it ignores the SIGHUP of a closing terminal) and makes one
//! itself if it was started some other way. It stays in berthd's session: every new session is
//! a scheduling autogroup of its own, which made each runc the shim starts measurably slower.
//! berthd keeps the `Child` in a tokio task that waits for it, so a shim that exits while berthd
//! runs is reaped rather than left a zombie; if berthd dies first, the shim is reparented and
//! reaped by init.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::runc::Runc;

pub const SHIM_BINARY_NAME: &str = "berth-shim";
pub const SHIM_STATE_FILE: &str = "shim.json";
pub const EXIT_FILE: &str = "exit.json";
pub const STDOUT_FILE: &str = "stdout.log";
pub const STDERR_FILE: &str = "stderr.log";
pub const RUNC_LOG_FILE: &str = "runc.log";
pub const SHIM_LOG_FILE: &str = "shim.log";

/// The exit code reported when the shim died without recording the container's exit (someone
/// SIGKILLed it, or it could not write `exit.json`). The real status is then unknowable.
pub const UNKNOWN_EXIT_CODE: i32 = 255;

/// How long `runc create` (run by the shim) may take before berthd gives up on the task.
/// Creation is normally well under a second; the margin covers a loaded machine.
const SHIM_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often to look at `/proc` when a pidfd cannot be used to wait for the shim.
const SHIM_POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// `runc create` (or the shim around it) failed; `message` carries runc's own words.
    #[error("could not create the container: {message}")]
    CreateFailed { message: String },

    #[error(
        "runc already has a container with id {runc_id} (status {status}): delete it first or use another id"
    )]
    AlreadyExists { runc_id: String, status: String },

    #[error("could not create task directory {}: {source}; check that berthd's root directory is writable", path.display())]
    TaskDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("could not take the monitor lock {}: {source}; another monitor may still be at work on this task, check with `berth ps -a`", path.display())]
    ShimLock {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("could not start the shim at {}: {source}; install berth-shim next to berthd or set shim_path in berthd's config", path.display())]
    ShimSpawn {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What berthd needs to start shims: the shim executable and the runc it should drive.
#[derive(Debug, Clone)]
pub struct MonitorPaths {
    pub shim_binary: PathBuf,
    pub runc: Runc,
}

/// Contents of `shim.json`. `shim_start_time` (field 22 of `/proc/<pid>/stat`, in clock ticks
/// since boot) distinguishes the shim from an unrelated process that later got the same pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimState {
    pub shim_pid: i32,
    pub shim_start_time: u64,
    pub init_pid: u32,
    pub runc_id: String,
    /// The seq of the create intent this monitor answers (0 when started outside berthd), so
    /// recovery never takes a previous task's files for the current one.
    #[serde(default)]
    pub intent_seq: u64,
}

/// Held (flock, exclusive) by a monitor for its whole life, from before it runs runc: a held
/// lock with no `shim.json` yet means "still creating", not "never started".
pub const SHIM_LOCK_FILE: &str = "shim.lock";

/// Held by berthd around every spawn of a child process (the shim here, runc in `runc.rs`).
/// While it is held, the lock descriptor of the shim being started may be inheritable.
static SPAWN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`SPAWN_LOCK`]; hold the guard across `spawn()`.
pub(crate) fn spawn_lock() -> std::sync::MutexGuard<'static, ()> {
    SPAWN_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Marks `fd` close-on-exec, keeping its other descriptor flags.
pub fn set_close_on_exec(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD only read and change the descriptor's flags; on a descriptor that
    // is not open they fail with EBADF, which is returned.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A duplicate of `file` without close-on-exec, numbered 3 or above (0-2 are stdio).
fn inheritable_duplicate(file: &File) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD on a descriptor `file` keeps open for the duration of the call; the new
    // descriptor is returned to the caller, who becomes its only owner.
    let duplicate = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD, 3) };
    if duplicate < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor and nothing else refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(duplicate) })
}

/// Take the monitor's lock in `task_dir`; it is held while the returned file stays open. The
/// descriptor is close-on-exec, so runc and the container do not inherit it.
pub fn take_shim_lock(task_dir: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(task_dir.join(SHIM_LOCK_FILE))?;
    flock_exclusive_nonblocking(&file)?;
    Ok(file)
}

/// Whether a live monitor holds the lock in `task_dir`.
pub fn shim_lock_held(task_dir: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(task_dir.join(SHIM_LOCK_FILE)) else {
        return false;
    };
    // Taking it ourselves (released again when `file` drops) means nobody holds it.
    matches!(flock_exclusive_nonblocking(&file), Err(error) if error.raw_os_error() == Some(libc::EWOULDBLOCK))
}

fn flock_exclusive_nonblocking(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function borrows for the duration of the call.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Contents of `exit.json`. A death by signal N is recorded as `code: 128 + N, signal: N`, the
/// shell's convention, so `code` alone is always meaningful.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub code: i32,
    pub signal: i32,
    /// Wall-clock time (nanoseconds since the Unix epoch) at which the shim reaped the init.
    pub exited_at_ns: i64,
    /// The pid of the monitor that wrote it. exit.json is fsynced and shim.json is not, so after
    /// a power loss exit.json may be all that is left to say which task's monitor it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shim_pid: Option<i32>,
}

/// `berth-shim` next to the running executable (or next to its parent directory when running
/// from cargo's `deps/`), else the first one on `PATH`, else the bare name for `exec` to resolve.
pub fn default_shim_binary() -> PathBuf {
    if let Ok(current_exe) = std::env::current_exe() {
        if let Some(exe_dir) = current_exe.parent() {
            let beside_exe = exe_dir.join(SHIM_BINARY_NAME);
            if beside_exe.is_file() {
                return beside_exe;
            }
            if exe_dir.file_name().is_some_and(|name| name == "deps") {
                if let Some(beside_deps) = exe_dir.parent().map(|dir| dir.join(SHIM_BINARY_NAME)) {
                    if beside_deps.is_file() {
                        return beside_deps;
                    }
                }
            }
        }
    }
    if let Some(search_path) = std::env::var_os("PATH") {
        for path_dir in std::env::split_paths(&search_path) {
            let candidate = path_dir.join(SHIM_BINARY_NAME);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(SHIM_BINARY_NAME)
}

pub fn stdout_path(task_dir: &Path) -> PathBuf {
    task_dir.join(STDOUT_FILE)
}

pub fn stderr_path(task_dir: &Path) -> PathBuf {
    task_dir.join(STDERR_FILE)
}

/// Starts a shim that runs `runc create` for `runc_id`, and returns once the container is
/// created (but not started: the caller runs `runc start`). On failure no runc container with
/// that id is left behind.
pub async fn spawn_shim(
    paths: &MonitorPaths,
    runc_id: &str,
    bundle: &Path,
    task_dir: &Path,
) -> Result<ShimState, MonitorError> {
    spawn_shim_and_start(paths, runc_id, bundle, task_dir, false, 0).await
}

/// [`spawn_shim`], and with `start` the shim runs `runc run --detach`, so the container is
/// running when this returns (one runc invocation instead of two).
pub async fn spawn_shim_and_start(
    paths: &MonitorPaths,
    runc_id: &str,
    bundle: &Path,
    task_dir: &Path,
    start: bool,
    intent_seq: u64,
) -> Result<ShimState, MonitorError> {
    tokio::fs::create_dir_all(task_dir)
        .await
        .map_err(|source| MonitorError::TaskDir {
            path: task_dir.to_path_buf(),
            source,
        })?;

    // runc refuses a duplicate id by itself, but the cleanup below (`delete --force` after a
    // failed create) would then destroy the existing container. Checking first keeps the
    // cleanup safe; ids are chosen by the caller, so there is no race in practice.
    if paths.runc.has_container(runc_id) {
        let status = match paths.runc.state(runc_id).await {
            Ok(Some(existing)) => existing.status,
            Ok(None) => "unknown".to_string(),
            Err(runc_error) => return Err(MonitorError::CreateFailed { message: runc_error.to_string() }),
        };
        return Err(MonitorError::AlreadyExists { runc_id: runc_id.to_string(), status });
    }

    // berthd takes the monitor's lock and hands the descriptor to the shim (`--lock-fd`), so the
    // lock is held from before the shim exists: a berthd killed right after the spawn comes back
    // to a held lock ("a monitor is at work") rather than a free one ("none started").
    let lock_error = |source| MonitorError::ShimLock { path: task_dir.join(SHIM_LOCK_FILE), source };
    let shim_lock = take_shim_lock(task_dir).map_err(lock_error)?;
    let mut command = tokio::process::Command::new(&paths.shim_binary);
    command
        .arg("--id")
        .arg(runc_id)
        .arg("--bundle")
        .arg(absolute_or_same(bundle))
        .arg("--runc")
        .arg(&paths.runc.binary)
        .arg("--runc-root")
        .arg(absolute_or_same(&paths.runc.root))
        .arg("--task-dir")
        .arg(absolute_or_same(task_dir))
        .args(start.then_some("--start"))
        .arg("--intent-seq")
        .arg(intent_seq.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A process group of its own, so that a signal to berthd's group never reaches it. Not a
    // session of its own: with the scheduler's autogroups, each new session is a new scheduling
    // group, and runc started from one took ~6 ms longer per container here.
    command.process_group(0);
    let spawned = {
        // The shim gets the lock through an inheritable duplicate that exists only while
        // SPAWN_LOCK is held, so no other child of berthd inherits it. (Passing it at a fixed
        // number would need a pre_exec hook, which makes the spawn fork berthd: ~1.5 ms more
        // per container here than the posix_spawn this keeps.)
        let _spawning = spawn_lock();
        let inheritable_lock = inheritable_duplicate(&shim_lock).map_err(lock_error)?;
        command.arg("--lock-fd").arg(inheritable_lock.as_raw_fd().to_string());
        command.spawn()
    };
    // The shim holds the lock through its own descriptor now (or it never started).
    drop(shim_lock);
    let mut shim_child = spawned.map_err(|source| MonitorError::ShimSpawn {
        path: paths.shim_binary.clone(),
        source,
    })?;
    crate::failpoint("shim-spawned");
    let shim_pid = shim_child.id().map(|pid| pid as i32);

    let mut readiness_pipe = shim_child.stdout.take().expect("stdout was piped");
    let mut shim_stderr = shim_child.stderr.take().expect("stderr was piped");
    // Both streams are read together: the shim closes them at the same moment, and reading
    // only one could leave the shim blocked on a full pipe for the other.
    let read_both = async {
        let mut report_bytes = Vec::new();
        let mut stderr_bytes = Vec::new();
        let (_, _) = tokio::join!(
            readiness_pipe.read_to_end(&mut report_bytes),
            shim_stderr.read_to_end(&mut stderr_bytes)
        );
        (report_bytes, stderr_bytes)
    };
    let failure_message = match tokio::time::timeout(SHIM_READY_TIMEOUT, read_both).await {
        Err(_elapsed) => {
            let _ = shim_child.start_kill();
            format!(
                "berth-shim did not report readiness within {} seconds, runc create may be stuck: see {}",
                SHIM_READY_TIMEOUT.as_secs(),
                task_dir.join(RUNC_LOG_FILE).display()
            )
        }
        Ok((report_bytes, stderr_bytes)) => {
            let report_text = String::from_utf8_lossy(&report_bytes);
            if let Some(init_pid_text) = report_text.strip_prefix("ok ") {
                match check_ready_state(task_dir, shim_pid, init_pid_text) {
                    Ok(shim_state) => {
                        // Reap the shim whenever it exits while berthd runs, so it never
                        // lingers as berthd's zombie.
                        tokio::spawn(async move {
                            let _ = shim_child.wait().await;
                        });
                        return Ok(shim_state);
                    }
                    Err(message) => {
                        // The container exists but berthd cannot track it: better to remove it
                        // now than to leak an unmonitored container.
                        let _ = shim_child.start_kill();
                        message
                    }
                }
            } else if let Some(runc_message) = report_text.strip_prefix("error ") {
                runc_message.trim().to_string()
            } else {
                let stderr_text = String::from_utf8_lossy(&stderr_bytes);
                format!(
                    "berth-shim exited before reporting readiness: {}; see {}",
                    first_nonempty(&[stderr_text.trim(), report_text.trim()])
                        .unwrap_or("(no output)"),
                    task_dir.join(SHIM_LOG_FILE).display()
                )
            }
        }
    };

    let _ = shim_child.wait().await;
    if let Err(cleanup_error) = paths.runc.delete(runc_id, true).await {
        tracing::warn!(runc_id, %cleanup_error, "could not remove the runc container after a failed create");
    }
    Err(MonitorError::CreateFailed {
        message: failure_message,
    })
}

/// Checks the shim's `ok <init_pid>` report against the `shim.json` it wrote.
fn check_ready_state(
    task_dir: &Path,
    shim_pid: Option<i32>,
    init_pid_text: &str,
) -> Result<ShimState, String> {
    let reported_init_pid: u32 = init_pid_text
        .trim()
        .parse()
        .map_err(|_| format!("berth-shim reported an unreadable init pid {init_pid_text:?}"))?;
    let shim_state = read_shim_state(task_dir).ok_or_else(|| {
        format!(
            "berth-shim reported success but {} is missing or unreadable",
            task_dir.join(SHIM_STATE_FILE).display()
        )
    })?;
    if shim_state.init_pid != reported_init_pid || Some(shim_state.shim_pid) != shim_pid {
        return Err(format!(
            "{} does not match the shim that was just started (stale file?): {shim_state:?}",
            task_dir.join(SHIM_STATE_FILE).display()
        ));
    }
    Ok(shim_state)
}

pub fn read_shim_state(task_dir: &Path) -> Option<ShimState> {
    read_json(&task_dir.join(SHIM_STATE_FILE))
}

pub fn read_exit(task_dir: &Path) -> Option<ExitStatus> {
    read_json(&task_dir.join(EXIT_FILE))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// True when the shim recorded in `state` is still running: its pid exists, is not a zombie,
/// and started at the recorded time (so a recycled pid is not mistaken for the shim).
pub fn shim_alive(state: &ShimState) -> bool {
    match read_process_stat(state.shim_pid) {
        Some(process_stat) => {
            process_stat.start_time == state.shim_start_time
                && process_stat.state != 'Z'
                && process_stat.state != 'X'
        }
        None => false,
    }
}

/// Waits until the shim has exited and returns the exit status it recorded.
///
/// If the shim died without writing `exit.json` (it was SIGKILLed, or its disk was full), this
/// returns `code: UNKNOWN_EXIT_CODE, signal: 0` stamped with the current time and logs a
/// warning. In that case the container itself may well still be running (it was reparented to
/// init): the caller should consult `runc state` and kill/delete the container.
pub async fn wait_exit(task_dir: &Path, state: &ShimState) -> ExitStatus {
    if let Some(exit_status) = read_exit(task_dir) {
        return exit_status;
    }
    wait_for_shim_to_go(state).await;
    match read_exit(task_dir) {
        Some(exit_status) => exit_status,
        None => {
            tracing::warn!(
                runc_id = %state.runc_id,
                shim_pid = state.shim_pid,
                task_dir = %task_dir.display(),
                "berth-shim exited without recording the container's exit status; reporting code {UNKNOWN_EXIT_CODE}"
            );
            ExitStatus {
                code: UNKNOWN_EXIT_CODE,
                signal: 0,
                exited_at_ns: unix_time_ns(),
                shim_pid: None,
            }
        }
    }
}

async fn wait_for_shim_to_go(state: &ShimState) {
    let pidfd = match open_pidfd(state.shim_pid) {
        Ok(pidfd) => pidfd,
        // ESRCH: no such process, nothing to wait for.
        Err(open_error) if open_error.raw_os_error() == Some(libc::ESRCH) => return,
        Err(open_error) => {
            tracing::warn!(%open_error, "pidfd_open failed, polling /proc for the shim instead");
            return poll_until_shim_gone(state).await;
        }
    };
    // The pid was checked only now that the pidfd pins the process: if the start time matches,
    // the pidfd refers to our shim and not to a process that reused its pid.
    if !shim_alive(state) {
        return;
    }
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the descriptor stays open and
    // refers to this pidfd until the AsyncFd is dropped at the end of this function.
    let registration = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    };
    match registration {
        Ok(async_pidfd) => {
            // A pidfd becomes readable when the process exits; errors here are not expected
            // and polling is the safe fallback.
            if async_pidfd.readable().await.is_err() {
                poll_until_shim_gone(state).await;
            }
        }
        Err(register_error) => {
            tracing::warn!(%register_error, "could not watch the shim's pidfd, polling /proc instead");
            poll_until_shim_gone(state).await;
        }
    }
}

async fn poll_until_shim_gone(state: &ShimState) {
    while shim_alive(state) {
        tokio::time::sleep(SHIM_POLL_INTERVAL).await;
    }
}

fn open_pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    if pid <= 0 {
        // pidfd_open rejects these anyway; refusing early keeps 0 and -1 from ever meaning
        // "some other process".
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new fd or -1; no memory
    // is passed in.
    let raw_fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw_fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw_fd as i32) })
}

/// The two fields of `/proc/<pid>/stat` the monitor cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStat {
    /// Field 3: R, S, D, Z, X, ...
    pub state: char,
    /// Field 22: start time in clock ticks after boot.
    pub start_time: u64,
}

/// Reads `/proc/<pid>/stat`. Returns `None` when the process does not exist.
pub fn read_process_stat(pid: i32) -> Option<ProcessStat> {
    if pid <= 0 {
        return None;
    }
    let stat_text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_stat(&stat_text)
}

/// Field 2 (the command name) is in parentheses and may itself contain spaces and `)`, so
/// fields are counted from the last `)`.
fn parse_process_stat(stat_text: &str) -> Option<ProcessStat> {
    let after_name = &stat_text[stat_text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    Some(ProcessStat { state, start_time })
}

/// Wall-clock nanoseconds since the Unix epoch.
pub fn unix_time_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since_epoch| since_epoch.as_nanos() as i64)
        .unwrap_or(0)
}

/// Replaces `dir/file_name` with `contents` so that after a crash the file is either the old
/// version or the new one, and the new one survives power loss once this returns: write a
/// temporary file, fsync it, rename it over the target, fsync the directory.
pub fn write_file_durably(dir: &Path, file_name: &str, contents: &[u8]) -> std::io::Result<()> {
    write_file_by_rename(dir, file_name, contents, true)
}

/// Writes `dir/file_name` so that readers see the old contents or the new, never a mix, without
/// forcing it to disk: for files that mean nothing after a reboot (`shim.json` names processes).
pub fn write_file_atomically(dir: &Path, file_name: &str, contents: &[u8]) -> std::io::Result<()> {
    write_file_by_rename(dir, file_name, contents, false)
}

fn write_file_by_rename(dir: &Path, file_name: &str, contents: &[u8], durable: bool) -> std::io::Result<()> {
    let temporary_path = dir.join(format!(".{file_name}.tmp"));
    {
        let mut temporary_file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temporary_path)?;
        temporary_file.write_all(contents)?;
        if durable {
            temporary_file.sync_all()?;
        }
    }
    std::fs::rename(&temporary_path, dir.join(file_name))?;
    if durable {
        sync_directory(dir)?;
    }
    Ok(())
}

/// Removes `dir/file_name` if present and makes the removal durable.
pub fn remove_file_durably(dir: &Path, file_name: &str) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(file_name)) {
        Ok(()) => sync_directory(dir),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

fn sync_directory(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn absolute_or_same(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn first_nonempty<'a>(candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .copied()
        .find(|candidate| !candidate.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let stat_text = "4242 (we ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(
            parse_process_stat(stat_text),
            Some(ProcessStat {
                state: 'S',
                start_time: 987654
            })
        );
    }

    #[test]
    fn own_start_time_is_readable() {
        let own_pid = std::process::id() as i32;
        assert!(read_process_stat(own_pid).is_some());
    }
}
