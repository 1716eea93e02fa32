//! A task's directory: the only channel from a monitor back to berthd, and what recovery
//! observes. One type names every file in it and reads each. It is two directories
//! (`Layout::task_dir`): the monitor's working files in `<state>/tasks/<namespace>/<id>/` (a
//! tmpfs on `/run` by default: they mean nothing once the host has restarted), and what outlives
//! the host — output and `exit.json` — in `<root>/tasks/<namespace>/<id>/` (the *kept*
//! directory). An exec's directory (`<state>/execs/<namespace>/<id>/<exec id>/`,
//! `Layout::exec_dir`) is one directory holding both, with `process.json` (berthd's, for `runc
//! exec --process`; the monitor removes it once runc has read it, since it holds the exec's
//! opened environment) and `exec.pid` (runc's `--pid-file`) besides: an exec's exit is
//! recorded at once from the early report, and an exec does not outlive its host.
//!
//! | file | where | written by | meaning |
//! |---|---|---|---|
//! | `monitor.json` | state | monitor, atomically (not fsynced), after runc created the container | [`MonitorIdentity`] |
//! | `exit.json`    | kept | monitor, atomically and fsynced, when the container's init was reaped (after its early report on the readiness pipe, `tasks::monitor`) | [`ExitStatus`] |
//! | `stdout.log`, `stderr.log` (and rotated `.1`, `.2`, …) | kept | the monitor's copier threads, from the container's pipes — with `-t`, its terminal, into `stdout.log` — as `tasks::output_log` records | output |
//! | `runc.log`     | state | runc (`--log`, json lines) | runc's own diagnostics |
//! | `monitor.log`  | state | monitor | the monitor's diagnostics |
//! | `stdin` | state | berthd (a FIFO, with `-i`); the monitor holds a keeper write end until signalled | the container's stdin (`tasks::stdin`) |
//! | `resize` | state | berthd (a FIFO, with `-t`), read by the monitor | window sizes for the terminal (`tasks::console`) |
//! | `console.sock` | state | the monitor, for runc to send the pty master to; removed once received | (`-t` only) |
//! | `monitor.lock` | state | berthd takes its flock before spawning the monitor and hands the descriptor over (`--lock-fd`); the monitor holds it until it exits | a monitor is at work |
//!
//! **Invariant:** `exit.json` exists only after the container's init has exited; both
//! directories of a task are emptied before each new task's monitor starts.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use berth_log::{Seq, Timestamp};
use serde::{Deserialize, Serialize};

use crate::sys::process::{flock_exclusive_nonblocking, read_process_stat};

pub const MONITOR_STATE_FILE: &str = "monitor.json";
/// An exec's OCI process (`runc exec --process`), written by berthd into the exec's directory.
pub const EXEC_PROCESS_FILE: &str = "process.json";
/// Where `runc exec --pid-file` writes the exec process's pid.
pub const EXEC_PID_FILE: &str = "exec.pid";
pub const EXIT_FILE: &str = "exit.json";
pub const STDOUT_FILE: &str = "stdout.log";
pub const STDERR_FILE: &str = "stderr.log";
pub const RUNC_LOG_FILE: &str = "runc.log";
pub const MONITOR_LOG_FILE: &str = "monitor.log";
/// Held (flock, exclusive) by a monitor for its whole life, from before it runs runc: a held
/// lock with no `monitor.json` yet means "still creating", not "never started".
pub const MONITOR_LOCK_FILE: &str = "monitor.lock";

/// The exit code reported when the monitor died without recording the container's exit (someone
/// SIGKILLed it, or it could not write `exit.json`). The real status is then unknowable.
pub const UNKNOWN_EXIT_CODE: i32 = 255;

/// Contents of `monitor.json`. `monitor_start_time` (field 22 of `/proc/<pid>/stat`, in clock
/// ticks since boot) distinguishes the monitor from an unrelated process that later got its pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorIdentity {
    pub monitor_pid: i32,
    pub monitor_start_time: u64,
    pub init_pid: u32,
    pub runc_id: String,
    /// The seq of the create intent this monitor answers (0 when started outside berthd), so
    /// recovery never takes a previous task's files for the current one.
    #[serde(default)]
    pub intent_seq: Seq,
}

impl MonitorIdentity {
    /// True when this monitor is still running: its pid exists, is not a zombie, and started at
    /// the recorded time (so a recycled pid is not mistaken for it).
    pub fn is_alive(&self) -> bool {
        read_process_stat(self.monitor_pid)
            .is_some_and(|stat| stat.start_time == self.monitor_start_time && stat.is_running())
    }
}

/// Contents of `exit.json`. A death by signal N is recorded as `code: 128 + N, signal: N`, the
/// shell's convention, so `code` alone is always meaningful.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub code: i32,
    pub signal: i32,
    /// Wall-clock time (nanoseconds since the Unix epoch) at which the monitor reaped the init.
    pub exited_at_ns: Timestamp,
    /// The pid of the monitor that wrote it. exit.json is fsynced and monitor.json is not, so
    /// after a power loss exit.json may be all that is left to say which monitor it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_pid: Option<i32>,
}

impl ExitStatus {
    /// What is recorded when nothing recorded the real exit: [`UNKNOWN_EXIT_CODE`], now.
    pub fn unknown(now: Timestamp) -> ExitStatus {
        ExitStatus { code: UNKNOWN_EXIT_CODE, signal: 0, exited_at_ns: now, monitor_pid: None }
    }
}

/// One task's (or exec's) directory, and where what it keeps past the host's life goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDir {
    /// The monitor's working files: monitor.json, monitor.lock, monitor.log, runc.log, FIFOs.
    path: PathBuf,
    /// Output and `exit.json`: the same directory, or one under the root (`Layout::task_dir`).
    kept: PathBuf,
}

impl TaskDir {
    /// Everything in one directory (an exec's; a monitor started by hand).
    pub fn new(path: PathBuf) -> TaskDir {
        TaskDir { kept: path.clone(), path }
    }

    /// The monitor's working files in `path`, output and `exit.json` in `kept`.
    pub fn split(path: PathBuf, kept: PathBuf) -> TaskDir {
        TaskDir { path, kept }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where output and `exit.json` are (the same as [`TaskDir::path`] unless split).
    pub fn kept_dir(&self) -> &Path {
        &self.kept
    }

    pub fn file(&self, file_name: &str) -> PathBuf {
        self.path.join(file_name)
    }

    /// Makes FIFO `file_name` (0600) in the directory (made 0700 if missing), replacing one an
    /// earlier task left; its path.
    pub fn make_fifo(&self, file_name: &str) -> std::io::Result<PathBuf> {
        let path = self.file(file_name);
        crate::sys::fs::create_private_dir_all(&self.path)?;
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)?;
        Ok(path)
    }

    pub fn stdout_path(&self) -> PathBuf {
        self.kept.join(STDOUT_FILE)
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.kept.join(STDERR_FILE)
    }

    pub fn exit_path(&self) -> PathBuf {
        self.kept.join(EXIT_FILE)
    }

    /// `monitor.json`, if present and readable.
    pub fn monitor_identity(&self) -> Option<MonitorIdentity> {
        read_json(&self.file(MONITOR_STATE_FILE))
    }

    /// `exit.json`, if present and readable.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        read_json(&self.exit_path())
    }

    /// Take the monitor's lock; it is held while the returned file stays open. The descriptor is
    /// close-on-exec, so runc and the container do not inherit it.
    pub fn take_lock(&self) -> std::io::Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(crate::sys::fs::PRIVATE_FILE_MODE)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.file(MONITOR_LOCK_FILE))?;
        flock_exclusive_nonblocking(&file)?;
        Ok(file)
    }

    /// Whether a live monitor holds the lock.
    pub fn lock_held(&self) -> bool {
        let Ok(file) = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(self.file(MONITOR_LOCK_FILE))
        else {
            return false;
        };
        // Taking it ourselves (released again when `file` drops) means nobody holds it.
        matches!(flock_exclusive_nonblocking(&file), Err(error) if error.raw_os_error() == Some(libc::EWOULDBLOCK))
    }

    /// Empties the directory away (a new task starts from nothing). Absent is fine.
    pub fn remove(&self) -> std::io::Result<()> {
        crate::sys::fs::remove_dir_all_if_present(&self.path)?;
        crate::sys::fs::remove_dir_all_if_present(&self.kept)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}
