//! berth-shim: the per-task monitor process. It runs `runc create`, stays the container's parent
//! for the container's whole life, and records the exit status durably in the task directory so
//! that berthd can be killed and restarted at any moment without losing it.
//!
//! Usage: `berth-shim --id ID --bundle DIR --runc PATH --runc-root DIR --task-dir DIR [--start]
//! [--intent-seq SEQ] [--lock-fd FD]`.
//! The readiness protocol on stdout and the files it writes are described in
//! `berth_runtime::monitor`. Deliberately synchronous and small: it spends its life in waitpid.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use berth_runtime::monitor::{
    self, ExitStatus, ShimState, EXIT_FILE, RUNC_LOG_FILE, SHIM_LOG_FILE,
    SHIM_STATE_FILE, STDERR_FILE, STDOUT_FILE, UNKNOWN_EXIT_CODE,
};
use berth_runtime::runc::{self, Runc, RuncError};
use clap::Parser;
use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How much of runc's fresh stderr output to quote when create fails and runc.log says nothing.
const MAX_QUOTED_STDERR_BYTES: u64 = 4096;

/// Signals that must not kill the shim: SIGHUP from a closing terminal or session, SIGINT from
/// a Ctrl-C aimed at berthd, SIGPIPE from writing the readiness report to a berthd that died.
const IGNORED_SIGNALS: [Signal; 3] = [Signal::SIGHUP, Signal::SIGINT, Signal::SIGPIPE];

#[derive(Parser, Debug)]
#[command(
    name = "berth-shim",
    about = "berth's per-container monitor process (started by berthd)"
)]
struct ShimArgs {
    /// Container id as runc knows it.
    #[arg(long)]
    id: String,
    /// OCI bundle directory (config.json and rootfs).
    #[arg(long)]
    bundle: PathBuf,
    /// The runc executable.
    #[arg(long)]
    runc: PathBuf,
    /// runc's --root state directory.
    #[arg(long)]
    runc_root: PathBuf,
    /// Persistent task directory for logs, shim.json and exit.json.
    #[arg(long)]
    task_dir: PathBuf,
    /// Start the container too (`runc run --detach`) instead of leaving it created.
    #[arg(long)]
    start: bool,
    /// The seq of the create intent this monitor answers, kept in shim.json for recovery.
    #[arg(long, default_value_t = 0)]
    intent_seq: u64,
    /// An inherited descriptor on task_dir/shim.lock whose lock berthd already took; without
    /// it the shim takes the lock itself.
    #[arg(long)]
    lock_fd: Option<i32>,
}

fn main() -> ExitCode {
    let shim_args = absolute_args(ShimArgs::parse());
    let mut shim_log = ShimLog::open(&shim_args.task_dir);
    // Held until this process exits: recovery reads a held lock as "a monitor is at work here".
    let _shim_lock = match hold_shim_lock(&shim_args) {
        Ok(lock) => lock,
        Err(error) => {
            let message = format!("another monitor holds {}: {error}", shim_args.task_dir.join(monitor::SHIM_LOCK_FILE).display());
            shim_log.line(&message);
            report_readiness(&format!("error {message}\n"), &mut shim_log);
            return ExitCode::FAILURE;
        }
    };
    detach_from_berthd(&mut shim_log);

    let (init_pid, init_start_time) = match create_container(&shim_args, &mut shim_log) {
        Ok(created) => created,
        Err(message) => {
            shim_log.line(&format!("create failed: {message}"));
            report_readiness(&format!("error {message}\n"), &mut shim_log);
            return ExitCode::FAILURE;
        }
    };
    report_readiness(&format!("ok {init_pid}\n"), &mut shim_log);

    // exit.json names this monitor, so that it identifies its task even without shim.json.
    let exit_status = ExitStatus {
        shim_pid: Some(std::process::id() as i32),
        ..reap_until_init_exits(init_pid, init_start_time, &mut shim_log)
    };
    shim_log.line(&format!(
        "init {init_pid} exited: code {} signal {}",
        exit_status.code, exit_status.signal
    ));
    let exit_json = serde_json::to_vec(&exit_status).expect("exit status serializes");
    if let Err(write_error) =
        monitor::write_file_durably(&shim_args.task_dir, EXIT_FILE, &exit_json)
    {
        // berthd will see a shim gone without exit.json and report an unknown exit code.
        shim_log.line(&format!("could not write {EXIT_FILE}: {write_error}"));
        return ExitCode::FAILURE;
    }
    reap_leftover_zombies();
    ExitCode::SUCCESS
}

/// The monitor lock, held until this process exits: adopted from berthd's `--lock-fd`, or
/// taken here when the shim was started some other way.
fn hold_shim_lock(shim_args: &ShimArgs) -> std::io::Result<File> {
    let Some(lock_fd) = shim_args.lock_fd else {
        return monitor::take_shim_lock(&shim_args.task_dir);
    };
    // SAFETY: fcntl(F_GETFD) only inspects the descriptor number; it fails with EBADF when
    // nothing is open there, which is checked before the descriptor is adopted.
    if lock_fd < 0 || unsafe { libc::fcntl(lock_fd, libc::F_GETFD) } < 0 {
        return Err(std::io::Error::other(format!("--lock-fd {lock_fd} is not an open descriptor")));
    }
    // It must be task_dir/shim.lock, not some other descriptor a wrong number would name.
    let lock_path = shim_args.task_dir.join(monitor::SHIM_LOCK_FILE);
    let expected = std::fs::metadata(&lock_path)?;
    // SAFETY: the descriptor is open (checked above) and nothing closes it while borrowed here.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(lock_fd) };
    let inherited = nix::sys::stat::fstat(borrowed).map_err(std::io::Error::from)?;
    if (inherited.st_dev, inherited.st_ino) != (std::os::unix::fs::MetadataExt::dev(&expected), std::os::unix::fs::MetadataExt::ino(&expected)) {
        return Err(std::io::Error::other(format!("--lock-fd {lock_fd} is not {}", lock_path.display())));
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this process for it
    // alone; nothing else in the shim refers to it, so the File becomes its sole owner.
    let lock_file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(lock_fd) };
    // runc and the container must not inherit it, or they would hold the lock too.
    monitor::set_close_on_exec(lock_fd)?;
    Ok(lock_file)
}

/// The shim changes directory, so every path it was given is made absolute first. A bare runc
/// name without a slash is left alone for `exec` to find on PATH.
fn absolute_args(shim_args: ShimArgs) -> ShimArgs {
    let make_absolute = |path: PathBuf| std::path::absolute(&path).unwrap_or(path);
    let runc = if shim_args.runc.components().count() > 1 {
        make_absolute(shim_args.runc)
    } else {
        shim_args.runc
    };
    ShimArgs {
        id: shim_args.id,
        bundle: make_absolute(shim_args.bundle),
        runc,
        runc_root: make_absolute(shim_args.runc_root),
        task_dir: make_absolute(shim_args.task_dir),
        start: shim_args.start,
        intent_seq: shim_args.intent_seq,
        lock_fd: shim_args.lock_fd,
    }
}

extern "C" fn shrug_off_signal(_signal: libc::c_int) {}

/// Makes the shim independent of berthd: own process group, parent of orphaned container processes,
/// immune to the signals that accompany berthd's death, stdin and cwd not pinning anything.
fn detach_from_berthd(shim_log: &mut ShimLog) {
    // berthd already gave us a process group of our own before exec; make one only when
    // started by someone else.
    let own_pid = nix::unistd::getpid();
    if nix::unistd::getpgrp() != own_pid {
        if let Err(setpgid_error) = nix::unistd::setpgid(own_pid, own_pid) {
            shim_log.line(&format!("setpgid failed: {setpgid_error}"));
        }
    }
    // Without this, runc's init would be reparented to pid 1 when `runc create` exits, and the
    // exit status would be lost to whoever reaps it there.
    if let Err(prctl_error) = nix::sys::prctl::set_child_subreaper(true) {
        shim_log.line(&format!("PR_SET_CHILD_SUBREAPER failed: {prctl_error}"));
    }
    // A handler that does nothing rather than SIG_IGN: an ignored signal stays ignored across
    // exec, so runc and the container would inherit it, while a caught one is reset to the
    // default by exec. That spares a pre_exec hook to reset them, and with it a fork of the
    // shim for every runc it starts (std spawns with posix_spawn when there is no hook).
    let shrug = SigAction::new(SigHandler::Handler(shrug_off_signal), SaFlags::SA_RESTART, SigSet::empty());
    for ignored_signal in IGNORED_SIGNALS {
        // SAFETY: the handler does nothing at all, so it cannot interrupt anything in an unsafe
        // state.
        if let Err(signal_error) = unsafe { sigaction(ignored_signal, &shrug) } {
            shim_log.line(&format!(
                "could not ignore {ignored_signal}: {signal_error}"
            ));
        }
    }
    if let Err(open_error) = File::open("/dev/null")
        .and_then(|dev_null| nix::unistd::dup2_stdin(&dev_null).map_err(std::io::Error::from))
    {
        shim_log.line(&format!("could not point stdin at /dev/null: {open_error}"));
    }
}

/// Runs `runc create` and returns the container init's pid and start time, or the message to
/// report when it failed.
fn create_container(shim_args: &ShimArgs, shim_log: &mut ShimLog) -> Result<(u32, u64), String> {
    let task_dir = &shim_args.task_dir;
    std::env::set_current_dir(task_dir).map_err(|error| {
        format!(
            "could not enter task directory {}: {error}",
            task_dir.display()
        )
    })?;
    // A task directory may be reused for a new run: exit.json from the old one would make
    // berthd think the new container had already exited.
    for stale_file in [EXIT_FILE, SHIM_STATE_FILE] {
        monitor::remove_file_durably(task_dir, stale_file)
            .map_err(|error| format!("could not remove stale {stale_file}: {error}"))?;
    }

    let stdout_file = open_for_append(&task_dir.join(STDOUT_FILE))?;
    let stderr_file = open_for_append(&task_dir.join(STDERR_FILE))?;
    let runc_log_path = task_dir.join(RUNC_LOG_FILE);
    // Only what runc writes during this create is quoted in an error; the files accumulate
    // across restarts of the task.
    let stderr_length_before = file_length(&task_dir.join(STDERR_FILE));
    let runc_log_length_before = file_length(&runc_log_path);

    let runc = Runc::new(shim_args.runc.clone(), shim_args.runc_root.clone());
    let mut create_command = runc.create_command(
        &shim_args.id,
        &shim_args.bundle,
        &runc_log_path,
        shim_args.start,
    );
    create_command
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_file))
        .stderr(Stdio::from(stderr_file));
    shim_log.line(&format!("running {create_command:?}"));
    let create_status = match create_command.status() {
        Ok(create_status) => create_status,
        Err(spawn_error) if spawn_error.kind() == ErrorKind::NotFound => {
            return Err(RuncError::NotFound {
                path: shim_args.runc.clone(),
            }
            .to_string());
        }
        Err(spawn_error) => {
            return Err(RuncError::Spawn {
                path: shim_args.runc.clone(),
                source: spawn_error,
            }
            .to_string());
        }
    };
    if !create_status.success() {
        let mut explanation =
            runc::runc_log_errors_since(&runc_log_path, runc_log_length_before, 3).join("; ");
        if explanation.is_empty() {
            explanation = runc::runc_error_text(&read_tail(
                &task_dir.join(STDERR_FILE),
                stderr_length_before,
            ));
        }
        if explanation.is_empty() {
            explanation = format!("no message, see {}", runc_log_path.display());
        }
        let how_it_ended = match create_status.code() {
            Some(code) => format!("exit code {code}"),
            None => format!("{create_status}"),
        };
        return Err(format!(
            "runc create failed with {how_it_ended}: {explanation}"
        ));
    }

    // The start time is kept for the fallback in reap_until_init_exits, which must tell the
    // init from a later process that reused its pid.
    let (init_pid, init_start_time) = runc
        .recorded_init(&shim_args.id)
        .ok_or_else(|| format!("runc create succeeded but its state file in {} names no init process", shim_args.runc_root.display()))?;

    let own_stat = monitor::read_process_stat(std::process::id() as i32)
        .ok_or_else(|| "could not read /proc/self/stat".to_string())?;
    let shim_state = ShimState {
        shim_pid: std::process::id() as i32,
        shim_start_time: own_stat.start_time,
        init_pid,
        runc_id: shim_args.id.clone(),
        intent_seq: shim_args.intent_seq,
    };
    let shim_json = serde_json::to_vec(&shim_state).expect("shim state serializes");
    // Not fsynced: it names processes, which a reboot ends anyway; berthd's own crash leaves
    // it in the page cache.
    monitor::write_file_atomically(task_dir, SHIM_STATE_FILE, &shim_json)
        .map_err(|error| format!("could not write {SHIM_STATE_FILE}: {error}"))?;
    shim_log.line(&format!("created: {shim_state:?}"));
    Ok((init_pid, init_start_time))
}

/// Writes the one readiness report, then lets go of berthd's pipes: stdout to /dev/null, stderr
/// to shim.log (so a panic later is still recorded somewhere).
fn report_readiness(report: &str, shim_log: &mut ShimLog) {
    let mut stdout = std::io::stdout().lock();
    if let Err(write_error) = stdout
        .write_all(report.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // berthd died meanwhile; it will find shim.json when it comes back.
        shim_log.line(&format!("could not report readiness: {write_error}"));
    }
    drop(stdout);
    match File::options().write(true).open("/dev/null") {
        Ok(dev_null) => {
            if let Err(dup_error) = nix::unistd::dup2_stdout(&dev_null) {
                shim_log.line(&format!("could not close the readiness pipe: {dup_error}"));
            }
            let dup_result = match &shim_log.file {
                Some(shim_log_file) => nix::unistd::dup2_stderr(shim_log_file),
                None => nix::unistd::dup2_stderr(&dev_null),
            };
            if let Err(dup_error) = dup_result {
                shim_log.line(&format!("could not detach stderr: {dup_error}"));
            }
        }
        Err(open_error) => shim_log.line(&format!("could not open /dev/null: {open_error}")),
    }
}

/// Reaps every child (the shim is a subreaper, so orphaned container processes land here too)
/// until the container's init is among them, and returns its status.
fn reap_until_init_exits(
    init_pid: u32,
    init_start_time: u64,
    shim_log: &mut ShimLog,
) -> ExitStatus {
    let init_pid = Pid::from_raw(init_pid as i32);
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == init_pid => {
                return ExitStatus {
                    code,
                    signal: 0,
                    exited_at_ns: monitor::unix_time_ns(),
                    shim_pid: None,
                };
            }
            Ok(WaitStatus::Signaled(pid, killing_signal, _core_dumped)) if pid == init_pid => {
                let signal_number = killing_signal as i32;
                return ExitStatus {
                    code: 128 + signal_number,
                    signal: signal_number,
                    exited_at_ns: monitor::unix_time_ns(),
                    shim_pid: None,
                };
            }
            Ok(_other_child_or_event) => continue,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => {
                // init is not our child: reparenting to this subreaper did not happen. Its
                // status cannot be collected, only its disappearance observed.
                shim_log.line(&format!(
                    "init {init_pid} is not a child of the shim; waiting for it to disappear"
                ));
                while monitor::read_process_stat(init_pid.as_raw()).is_some_and(|process_stat| {
                    process_stat.start_time == init_start_time && process_stat.state != 'Z'
                }) {
                    std::thread::sleep(Duration::from_millis(250));
                }
                return ExitStatus {
                    code: UNKNOWN_EXIT_CODE,
                    signal: 0,
                    exited_at_ns: monitor::unix_time_ns(),
                    shim_pid: None,
                };
            }
            Err(wait_error) => {
                shim_log.line(&format!("waitpid failed: {wait_error}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Other processes of the container may have been reparented to us and died alongside init.
fn reap_leftover_zombies() {
    while let Ok(wait_status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if wait_status == WaitStatus::StillAlive {
            break;
        }
    }
}

fn open_for_append(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|error| format!("could not open {}: {error}", path.display()))
}

fn file_length(path: &Path) -> u64 {
    std::fs::metadata(path)
        .map(|metadata| metadata.len())
        .unwrap_or(0)
}

/// Up to `MAX_QUOTED_STDERR_BYTES` written to `path` after offset `since`.
fn read_tail(path: &Path, since: u64) -> Vec<u8> {
    let mut tail_bytes = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let end = file_length(path);
        let start = since.max(end.saturating_sub(MAX_QUOTED_STDERR_BYTES));
        if file.seek(SeekFrom::Start(start)).is_ok() {
            let _ = file
                .take(MAX_QUOTED_STDERR_BYTES)
                .read_to_end(&mut tail_bytes);
        }
    }
    tail_bytes
}

/// The shim's own diagnostics, appended to task_dir/shim.log. Logging must never stop the shim,
/// so every failure to log is ignored.
struct ShimLog {
    file: Option<File>,
}

impl ShimLog {
    fn open(task_dir: &Path) -> ShimLog {
        let _ = std::fs::create_dir_all(task_dir);
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(task_dir.join(SHIM_LOG_FILE))
            .ok();
        ShimLog { file }
    }

    fn line(&mut self, message: &str) {
        if let Some(file) = self.file.as_mut() {
            let now_ns = monitor::unix_time_ns();
            let _ = writeln!(
                file,
                "{}.{:09} berth-shim[{}]: {message}",
                now_ns / 1_000_000_000,
                now_ns % 1_000_000_000,
                std::process::id()
            );
        }
    }
}
