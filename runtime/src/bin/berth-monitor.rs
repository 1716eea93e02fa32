//! berth-monitor: the per-task monitor process. It runs `runc create`, stays the container's parent
//! for the container's whole life, and records the exit status durably in the task directory so
//! that berthd can be killed and restarted at any moment without losing it.
//!
//! Usage: `berth-monitor --id ID --bundle DIR --runc PATH --runc-root DIR --task-dir DIR [--kept-dir DIR] [--start]
//! [--intent-seq SEQ] [--lock-fd FD] [--stdin-fifo PATH] [--tty]`, or, as runc's hook for a task
//! on a CNI network, `berth-monitor await-network GATE` (`berth_runtime::tasks::network_gate`), or,
//! started ahead of need, `berth-monitor standby`, which reads those arguments from stdin
//! (`berth_runtime::tasks::monitor_standby`).
//! The readiness protocol on stdout and the files it writes are described in
//! `berth_runtime::tasks::monitor`. Deliberately synchronous and small: it spends its life in waitpid.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use berth_log::{Seq, Timestamp};
use berth_runtime::sys::fs::{remove_file_durably, write_file_atomically, write_file_durably};
use berth_runtime::sys::process::{is_open_descriptor, read_process_stat, set_close_on_exec};
use berth_runtime::tasks::console::{self, ConsoleCopiers};
use berth_runtime::tasks::output_log::{self, OutputLimits, RotatingWriter};
use berth_runtime::tasks::runc::{self, Runc, RuncError};
use berth_runtime::tasks::task_dir::{
    ExitStatus, MonitorIdentity, TaskDir, EXEC_PID_FILE, EXEC_PROCESS_FILE, EXIT_FILE, MONITOR_LOCK_FILE,
    MONITOR_LOG_FILE, MONITOR_STATE_FILE, RUNC_LOG_FILE, STDERR_FILE, STDOUT_FILE,
};
use berth_runtime::tasks::{monitor_standby, network_gate};
use clap::Parser;
use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How much of runc's fresh stderr output to quote when create fails and runc.log says nothing.
const MAX_QUOTED_STDERR_BYTES: u64 = 4096;

/// Signals caught with a no-op handler so they cannot kill the monitor: SIGHUP from a closing terminal or session, SIGINT from
/// a Ctrl-C aimed at berthd, SIGPIPE from writing the readiness report to a berthd that died.
const CAUGHT_SIGNALS: [Signal; 3] = [Signal::SIGHUP, Signal::SIGINT, Signal::SIGPIPE];

#[derive(Parser, Debug)]
#[command(name = "berth-monitor", about = "berth's per-container monitor process (started by berthd)")]
struct MonitorArgs {
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
    /// The task directory: monitor.json, monitor.lock, monitor.log, runc.log, the FIFOs.
    #[arg(long)]
    task_dir: PathBuf,
    /// Where what outlives the host goes: stdout.log, stderr.log and exit.json (default: the
    /// task directory).
    #[arg(long)]
    kept_dir: Option<PathBuf>,
    /// Start the container too (`runc run --detach`) instead of leaving it created.
    #[arg(long)]
    start: bool,
    /// The seq of the create intent this monitor answers, kept in monitor.json for recovery.
    #[arg(long, default_value_t = 0)]
    intent_seq: u64,
    /// An inherited descriptor on task_dir/monitor.lock whose lock berthd already took; without
    /// it the monitor takes the lock itself.
    #[arg(long)]
    lock_fd: Option<i32>,
    /// The container's stdin FIFO (`-i`), made by berthd; without it stdin is /dev/null.
    #[arg(long)]
    stdin_fifo: Option<PathBuf>,
    /// Give the process a pseudo-terminal (the spec says `terminal: true`): receive its master
    /// from runc and serve it (`berth_runtime::tasks::console`).
    #[arg(long)]
    tty: bool,
    /// Run `runc exec` of task_dir/process.json in the running container `--id` instead of
    /// creating one (the task directory is then the exec's own).
    #[arg(long, conflicts_with = "start")]
    exec: bool,
    /// Rotate stdout.log and stderr.log at about this size.
    #[arg(long, default_value_t = output_log::DEFAULT_MAX_FILE_BYTES)]
    output_max_file_bytes: u64,
    /// Keep this many files per stream, the current one included.
    #[arg(long, default_value_t = output_log::DEFAULT_MAX_FILES)]
    output_max_files: u32,
}

impl MonitorArgs {
    /// `--kept-dir`, else the task directory.
    fn kept_dir(&self) -> &Path {
        self.kept_dir.as_deref().unwrap_or(&self.task_dir)
    }
}

/// `berth-monitor await-network GATE`, run by runc as the `createRuntime` hook of a task on a
/// CNI network: returns once berthd says the network is attached (see
/// `berth_runtime::tasks::network_gate`). runc shows what it prints when it fails.
fn await_network(gate: Option<std::ffi::OsString>) -> ExitCode {
    let Some(gate) = gate else {
        eprintln!("berth-monitor {}: the gate's path is missing", network_gate::HOOK_COMMAND);
        return ExitCode::FAILURE;
    };
    // runc writes the container's state to our stdin: read it all, as a hook is expected to.
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    match network_gate::await_gate(Path::new(&gate)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("berth-monitor {}: {message}", network_gate::HOOK_COMMAND);
            ExitCode::FAILURE
        }
    }
}

/// How long the exit waits for the output copiers to drain what the container wrote last. They
/// end at once when the container's processes are gone; only a process outside the container
/// holding its pipe open (none should) could keep them longer.
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let mut arguments = std::env::args_os().skip(1);
    let first_argument = arguments.next();
    if first_argument.as_ref().is_some_and(|first| first == network_gate::HOOK_COMMAND) {
        return await_network(arguments.next());
    }
    let command_line = if first_argument.is_some_and(|first| first == monitor_standby::STANDBY_COMMAND) {
        // Started ahead of need: the arguments and the lock come on stdin when there is work.
        match monitor_standby::receive_assignment(libc::STDIN_FILENO) {
            Ok(Some(assignment)) => {
                let command_line = monitor_standby::monitor_command_line(assignment);
                // `ps` and tools that find a monitor by its `--id` see the task's arguments.
                if let Err(error) = monitor_standby::show_command_line(&command_line) {
                    eprintln!("berth-monitor: cannot show the task's arguments in /proc: {error}");
                }
                command_line
            }
            Ok(None) => return ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("berth-monitor {}: {message}", monitor_standby::STANDBY_COMMAND);
                return ExitCode::FAILURE;
            }
        }
    } else {
        std::env::args_os().collect()
    };
    let monitor_args = absolute_args(MonitorArgs::parse_from(command_line));
    let mut monitor_log = MonitorLog::open(&monitor_args.task_dir);
    // Held until this process exits: recovery reads a held lock as "a monitor is at work here".
    let _monitor_lock = match hold_monitor_lock(&monitor_args) {
        Ok(lock) => lock,
        Err(error) => {
            let message =
                format!("another monitor holds {}: {error}", monitor_args.task_dir.join(MONITOR_LOCK_FILE).display());
            monitor_log.line(&message);
            report_readiness(&format!("error {message}\n"), &mut monitor_log);
            return ExitCode::FAILURE;
        }
    };
    detach_from_berthd(&mut monitor_log);

    let (init_pid, init_start_time, output_copiers, console_copiers) =
        match create_container(&monitor_args, &mut monitor_log) {
            Ok(created) => created,
            Err(message) => {
                monitor_log.line(&format!("create failed: {message}"));
                report_readiness(&format!("error {message}\n"), &mut monitor_log);
                return ExitCode::FAILURE;
            }
        };
    let ready_line = format!("ok {init_pid}\n");
    // A short process has often ended while runc was still returning: its exit then goes out
    // with the readiness (below), and berthd records both in one record.
    let ended_already = init_exit_if_over(init_pid);
    let reported_with_readiness = ended_already.is_some();
    let exit_report = if reported_with_readiness {
        None
    } else {
        // The pipe stays open, as the exit's early report (see `berth_runtime::tasks::monitor`).
        let exit_report = keep_readiness_pipe(&mut monitor_log);
        report_readiness(&ready_line, &mut monitor_log);
        exit_report
    };

    // exit.json names this monitor, so that it identifies its task even without monitor.json.
    let exit_status = ExitStatus {
        monitor_pid: Some(std::process::id() as i32),
        ..ended_already.unwrap_or_else(|| reap_until_init_exits(init_pid, init_start_time, &mut monitor_log))
    };
    monitor_log.line(&format!("init {init_pid} exited: code {} signal {}", exit_status.code, exit_status.signal));
    // The last output is on disk before the exit is: a reader that sees the exit has it all
    // (with a terminal, all it wrote to the terminal too).
    output_copiers.drain(OUTPUT_DRAIN_LIMIT, &mut monitor_log);
    if let Some(console_copiers) = console_copiers {
        console_copiers.finish();
    }
    let exit_json = serde_json::to_string(&exit_status).expect("exit status serializes");
    let exit_line = format!("exit {exit_json}\n");
    // berthd hears of the exit before exit.json is made durable, and records it in its log
    // meanwhile; exit.json is still written for a berthd that is not there to hear it.
    if reported_with_readiness {
        // One write (well under PIPE_BUF, so berthd reads both lines at once).
        report_readiness(&format!("{ready_line}{exit_line}"), &mut monitor_log);
    } else if let Some(mut exit_report) = exit_report {
        if let Err(write_error) = exit_report.write_all(exit_line.as_bytes()) {
            // berthd died or let the pipe go: it reads exit.json instead.
            monitor_log.line(&format!("could not report the exit early: {write_error}"));
        }
    }
    if let Err(write_error) = write_file_durably(monitor_args.kept_dir(), EXIT_FILE, exit_json.as_bytes()) {
        // berthd will see a monitor gone without exit.json and report an unknown exit code.
        monitor_log.line(&format!("could not write {EXIT_FILE}: {write_error}"));
        return ExitCode::FAILURE;
    }
    reap_leftover_zombies();
    ExitCode::SUCCESS
}

/// The monitor lock, held until this process exits: adopted from berthd's `--lock-fd`, or
/// taken here when the monitor was started some other way.
fn hold_monitor_lock(monitor_args: &MonitorArgs) -> std::io::Result<File> {
    let Some(lock_fd) = monitor_args.lock_fd else {
        return TaskDir::new(monitor_args.task_dir.clone()).take_lock();
    };
    if !is_open_descriptor(lock_fd) {
        return Err(std::io::Error::other(format!("--lock-fd {lock_fd} is not an open descriptor")));
    }
    // It must be task_dir/monitor.lock, not some other descriptor a wrong number would name.
    let lock_path = monitor_args.task_dir.join(MONITOR_LOCK_FILE);
    let expected = std::fs::metadata(&lock_path)?;
    // SAFETY: the descriptor is open (checked above) and nothing closes it while borrowed here.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(lock_fd) };
    let inherited = nix::sys::stat::fstat(borrowed).map_err(std::io::Error::from)?;
    if (inherited.st_dev, inherited.st_ino)
        != (std::os::unix::fs::MetadataExt::dev(&expected), std::os::unix::fs::MetadataExt::ino(&expected))
    {
        return Err(std::io::Error::other(format!("--lock-fd {lock_fd} is not {}", lock_path.display())));
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this process for it
    // alone; nothing else in the monitor refers to it, so the File becomes its sole owner.
    let lock_file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(lock_fd) };
    // runc and the container must not inherit it, or they would hold the lock too.
    set_close_on_exec(lock_fd)?;
    Ok(lock_file)
}

/// The monitor changes directory, so every path it was given is made absolute first. A bare runc
/// name without a slash is left alone for `exec` to find on PATH.
fn absolute_args(monitor_args: MonitorArgs) -> MonitorArgs {
    let make_absolute = |path: PathBuf| std::path::absolute(&path).unwrap_or(path);
    let runc =
        if monitor_args.runc.components().count() > 1 { make_absolute(monitor_args.runc) } else { monitor_args.runc };
    MonitorArgs {
        id: monitor_args.id,
        bundle: make_absolute(monitor_args.bundle),
        runc,
        runc_root: make_absolute(monitor_args.runc_root),
        task_dir: make_absolute(monitor_args.task_dir),
        kept_dir: monitor_args.kept_dir.map(make_absolute),
        start: monitor_args.start,
        intent_seq: monitor_args.intent_seq,
        lock_fd: monitor_args.lock_fd,
        stdin_fifo: monitor_args.stdin_fifo.map(make_absolute),
        tty: monitor_args.tty,
        exec: monitor_args.exec,
        output_max_file_bytes: monitor_args.output_max_file_bytes,
        output_max_files: monitor_args.output_max_files,
    }
}

extern "C" fn shrug_off_signal(_signal: libc::c_int) {}

/// Makes the monitor independent of berthd: own process group, parent of orphaned container processes,
/// immune to the signals that accompany berthd's death, stdin and cwd not pinning anything.
fn detach_from_berthd(monitor_log: &mut MonitorLog) {
    // berthd already gave us a process group of our own before exec; make one only when
    // started by someone else.
    let own_pid = nix::unistd::getpid();
    if nix::unistd::getpgrp() != own_pid {
        if let Err(setpgid_error) = nix::unistd::setpgid(own_pid, own_pid) {
            monitor_log.line(&format!("setpgid failed: {setpgid_error}"));
        }
    }
    // Without this, runc's init would be reparented to pid 1 when `runc create` exits, and the
    // exit status would be lost to whoever reaps it there.
    if let Err(prctl_error) = nix::sys::prctl::set_child_subreaper(true) {
        monitor_log.line(&format!("PR_SET_CHILD_SUBREAPER failed: {prctl_error}"));
    }
    // A handler that does nothing rather than SIG_IGN: an ignored signal stays ignored across
    // exec, so runc and the container would inherit it, while a caught one is reset to the
    // default by exec. That spares a pre_exec hook to reset them, and with it a fork of the
    // monitor for every runc it starts (std spawns with posix_spawn when there is no hook).
    let shrug = SigAction::new(SigHandler::Handler(shrug_off_signal), SaFlags::SA_RESTART, SigSet::empty());
    for caught_signal in CAUGHT_SIGNALS {
        // SAFETY: the handler does nothing at all, so it cannot interrupt anything in an unsafe
        // state.
        if let Err(signal_error) = unsafe { sigaction(caught_signal, &shrug) } {
            monitor_log.line(&format!("could not ignore {caught_signal}: {signal_error}"));
        }
    }
    if let Err(handler_error) = berth_runtime::tasks::stdin::install_close_stdin_handler() {
        monitor_log.line(&format!("could not install the close-stdin handler: {handler_error}"));
    }
    if let Err(open_error) =
        File::open("/dev/null").and_then(|dev_null| nix::unistd::dup2_stdin(&dev_null).map_err(std::io::Error::from))
    {
        monitor_log.line(&format!("could not point stdin at /dev/null: {open_error}"));
    }
}

/// Runs `runc create` and returns the container init's pid and start time, or the message to
/// report when it failed.
/// The threads copying the container's stdout and stderr from their pipes into the rotated
/// record files (`tasks::output_log`); each says on `finished` when its pipe reached its end.
struct OutputCopiers {
    finished: std::sync::mpsc::Receiver<()>,
    n_running: usize,
}

/// The copiers' pipes and files, opened before runc runs; their threads start once runc is
/// spawned (`PendingCopiers::start`), off the path to runc's start: nothing is read from the
/// pipes before the container writes, and until then a pipe holds what it writes.
struct PendingCopiers {
    streams: Vec<(&'static str, OwnedFd, RotatingWriter)>,
}

impl PendingCopiers {
    fn start(self) -> Result<OutputCopiers, String> {
        let (sender, finished) = std::sync::mpsc::channel();
        let n_running = self.streams.len();
        for (file_name, read_end, mut writer) in self.streams {
            let sender = sender.clone();
            std::thread::Builder::new()
                .name(format!("copy {file_name}"))
                // Small: the copier holds a 16 KiB buffer and little else.
                .stack_size(64 * 1024)
                .spawn(move || {
                    let _ = output_log::copy_stream(File::from(read_end), &mut writer);
                    let _ = sender.send(());
                })
                .map_err(|error| format!("could not start the output copier: {error}"))?;
        }
        Ok(OutputCopiers { finished, n_running })
    }
}

impl OutputCopiers {
    /// Opens one pipe and record file per stream written through a pipe; returns the copiers
    /// to start and the write ends to give runc. With a terminal (`--tty`) the container's
    /// output is the terminal's, one stream kept in `stdout.log`: that file's writer is
    /// returned for the console copier (`tasks::console`), so it goes through the same records
    /// and rotation, and runc's own stdout and stderr both go to the stderr pipe.
    fn prepare(monitor_args: &MonitorArgs) -> Result<(PendingCopiers, OutputEnds), String> {
        let limits = OutputLimits {
            max_file_bytes: monitor_args.output_max_file_bytes,
            max_files: monitor_args.output_max_files,
        };
        let open_writer = |file_name: &str| {
            let path = monitor_args.kept_dir().join(file_name);
            RotatingWriter::open(&path, limits).map_err(|error| format!("could not open {}: {error}", path.display()))
        };
        let terminal_writer = if monitor_args.tty { Some(open_writer(STDOUT_FILE)?) } else { None };
        let piped_files: &[&'static str] = if monitor_args.tty { &[STDERR_FILE] } else { &[STDOUT_FILE, STDERR_FILE] };
        let mut streams = Vec::new();
        let mut write_ends = Vec::new();
        for &file_name in piped_files {
            let writer = open_writer(file_name)?;
            let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|error| format!("could not make the output pipe: {error}"))?;
            streams.push((file_name, read_end, writer));
            write_ends.push(write_end);
        }
        let stderr_write = write_ends.pop().expect("a stderr pipe");
        let stdout_write = match write_ends.pop() {
            Some(stdout_write) => stdout_write,
            None => stderr_write.try_clone().map_err(|error| format!("could not share the output pipe: {error}"))?,
        };
        Ok((
            PendingCopiers { streams },
            OutputEnds { stdout: stdout_write, stderr: stderr_write, terminal: terminal_writer },
        ))
    }

    fn drain(mut self, limit: Duration, monitor_log: &mut MonitorLog) {
        let deadline = std::time::Instant::now() + limit;
        while self.n_running > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.finished.recv_timeout(left).is_err() {
                monitor_log.line(
                    "output copiers still running at the exit: something outside the container holds its output pipe",
                );
                return;
            }
            self.n_running -= 1;
        }
    }
}

/// The write ends runc gets as its stdout and stderr, and with a terminal the writer of
/// `stdout.log` for the terminal's output.
struct OutputEnds {
    stdout: OwnedFd,
    stderr: OwnedFd,
    terminal: Option<RotatingWriter>,
}

/// What `create_container` leaves running: the init's pid and start time, the output copiers,
/// and with a terminal its copiers.
type Created = (u32, u64, OutputCopiers, Option<ConsoleCopiers>);

fn create_container(monitor_args: &MonitorArgs, monitor_log: &mut MonitorLog) -> Result<Created, String> {
    let task_dir = &monitor_args.task_dir;
    std::env::set_current_dir(task_dir)
        .map_err(|error| format!("could not enter task directory {}: {error}", task_dir.display()))?;
    // A task directory may be reused for a new run: exit.json from the old one would make
    // berthd think the new container had already exited.
    for (dir, stale_file) in [(monitor_args.kept_dir(), EXIT_FILE), (task_dir.as_path(), MONITOR_STATE_FILE)] {
        remove_file_durably(dir, stale_file)
            .map_err(|error| format!("could not remove stale {stale_file}: {error}"))?;
    }

    let runc_log_path = task_dir.join(RUNC_LOG_FILE);
    // Only what runc writes during this create is quoted in an error; the files accumulate
    // across restarts of the task.
    let stderr_length_before = file_length(&monitor_args.kept_dir().join(STDERR_FILE));
    let runc_log_length_before = file_length(&runc_log_path);

    let runc = Runc::new(monitor_args.runc.clone(), monitor_args.runc_root.clone());
    let stdin_reader = match &monitor_args.stdin_fifo {
        Some(fifo_path) => Some(
            berth_runtime::tasks::stdin::open_for_container(fifo_path)
                .map_err(|error| format!("could not open the stdin fifo {}: {error}", fifo_path.display()))?,
        ),
        None => None,
    };
    // With a terminal, stdin goes to the terminal's master, and runc's own stdio is not the
    // container's.
    let (container_stdin, terminal_input) = match stdin_reader {
        Some(reader) if monitor_args.tty => (Stdio::null(), Some(reader)),
        Some(reader) => (Stdio::from(reader), None),
        None => (Stdio::null(), None),
    };
    let console_listener = if monitor_args.tty {
        Some(
            console::listen_for_console(task_dir)
                .map_err(|error| format!("could not make the console socket: {error}"))?,
        )
    } else {
        None
    };
    let (pending_copiers, output_ends) = OutputCopiers::prepare(monitor_args)?;
    let console_socket = console_listener.as_ref().map(|(_, socket_path)| socket_path.as_path());
    let exec_pid_path = task_dir.join(EXEC_PID_FILE);
    let mut create_command = if monitor_args.exec {
        runc.exec_command(
            &monitor_args.id,
            &task_dir.join(EXEC_PROCESS_FILE),
            &exec_pid_path,
            &runc_log_path,
            console_socket,
        )
    } else {
        runc.create_command(&monitor_args.id, &monitor_args.bundle, &runc_log_path, monitor_args.start, console_socket)
    };
    create_command
        .stdin(container_stdin)
        .stdout(Stdio::from(output_ends.stdout))
        .stderr(Stdio::from(output_ends.stderr));
    let spawned = create_command.spawn();
    monitor_log.line(&format!("running {create_command:?}"));
    // The write ends now belong to runc and the container alone: their exit ends the copiers.
    drop(create_command);
    let output_copiers = match pending_copiers.start() {
        Ok(output_copiers) => output_copiers,
        Err(message) => {
            // Nothing would read the container's output: stop runc (berthd rolls the create back).
            if let Ok(mut child) = spawned {
                let _ = child.kill();
                let _ = child.wait();
            }
            return Err(message);
        }
    };
    let create_status = spawned.and_then(|mut child| child.wait());
    if monitor_args.exec {
        // runc has read it, and it holds the exec's environment opened from its sealed form: it
        // is not left on disk for as long as the exec directory stays.
        if let Err(remove_error) = std::fs::remove_file(task_dir.join(EXEC_PROCESS_FILE)) {
            monitor_log.line(&format!("could not remove {EXEC_PROCESS_FILE}: {remove_error}"));
        }
    }
    let create_status = match create_status {
        Ok(create_status) => create_status,
        Err(spawn_error) if spawn_error.kind() == ErrorKind::NotFound => {
            return Err(RuncError::NotFound { path: monitor_args.runc.clone() }.to_string());
        }
        Err(spawn_error) => {
            return Err(RuncError::Spawn { path: monitor_args.runc.clone(), source: spawn_error }.to_string());
        }
    };
    if !create_status.success() {
        output_copiers.drain(OUTPUT_DRAIN_LIMIT, monitor_log);
        let mut explanation = runc::runc_log_errors_since(&runc_log_path, runc_log_length_before, 3).join("; ");
        if explanation.is_empty() {
            explanation =
                runc::runc_error_text(&read_tail(&monitor_args.kept_dir().join(STDERR_FILE), stderr_length_before));
        }
        if explanation.is_empty() {
            explanation = format!("no message, see {}", runc_log_path.display());
        }
        let how_it_ended = match create_status.code() {
            Some(code) => format!("exit code {code}"),
            None => format!("{create_status}"),
        };
        return Err(format!("runc create failed with {how_it_ended}: {explanation}"));
    }

    // The start time is kept for the fallback in reap_until_init_exits, which must tell the
    // init from a later process that reused its pid.
    let recorded = if monitor_args.exec { exec_process(&exec_pid_path) } else { runc.recorded_init(&monitor_args.id) };
    let (init_pid, init_start_time) = recorded.ok_or_else(|| {
        format!(
            "runc create succeeded but its state file in {} names no init process",
            monitor_args.runc_root.display()
        )
    })?;

    let own_stat =
        read_process_stat(std::process::id() as i32).ok_or_else(|| "could not read /proc/self/stat".to_string())?;
    let monitor_identity = MonitorIdentity {
        monitor_pid: std::process::id() as i32,
        monitor_start_time: own_stat.start_time,
        init_pid,
        runc_id: monitor_args.id.clone(),
        intent_seq: Seq(monitor_args.intent_seq),
    };
    let monitor_json = serde_json::to_vec(&monitor_identity).expect("monitor state serializes");
    // Not fsynced: it names processes, which a reboot ends anyway; berthd's own crash leaves
    // it in the page cache.
    write_file_atomically(task_dir, MONITOR_STATE_FILE, &monitor_json)
        .map_err(|error| format!("could not write {MONITOR_STATE_FILE}: {error}"))?;
    monitor_log.line(&format!("created: {monitor_identity:?}"));
    let console_copiers = match (console_listener, output_ends.terminal) {
        (Some((listener, socket_path)), Some(terminal_output)) => {
            let master = console::receive_console(listener, &socket_path).map_err(|error| error.to_string())?;
            let copiers =
                ConsoleCopiers::start(master, terminal_output, terminal_input, &task_dir.join(console::RESIZE_FIFO))
                    .map_err(|error| format!("could not serve the terminal: {error}"))?;
            Some(copiers)
        }
        _ => None,
    };
    Ok((init_pid, init_start_time, output_copiers, console_copiers))
}

/// A close-on-exec duplicate of the readiness pipe (stdout), kept after stdout itself is pointed
/// at /dev/null, so that nothing started later inherits it. `None` if it cannot be had: berthd
/// then learns of the exit from exit.json alone.
fn keep_readiness_pipe(monitor_log: &mut MonitorLog) -> Option<File> {
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(duplicate) => Some(File::from(duplicate)),
        Err(dup_error) => {
            monitor_log.line(&format!("could not keep the readiness pipe for the exit report: {dup_error}"));
            None
        }
    }
}

/// Writes the one readiness report, then lets go of berthd's pipes: stdout to /dev/null, stderr
/// to monitor.log (so a panic later is still recorded somewhere).
fn report_readiness(report: &str, monitor_log: &mut MonitorLog) {
    let mut stdout = std::io::stdout().lock();
    if let Err(write_error) = stdout.write_all(report.as_bytes()).and_then(|()| stdout.flush()) {
        // berthd died meanwhile; it will find monitor.json when it comes back.
        monitor_log.line(&format!("could not report readiness: {write_error}"));
    }
    drop(stdout);
    match File::options().write(true).open("/dev/null") {
        Ok(dev_null) => {
            if let Err(dup_error) = nix::unistd::dup2_stdout(&dev_null) {
                monitor_log.line(&format!("could not close the readiness pipe: {dup_error}"));
            }
            let dup_result = match &monitor_log.file {
                Some(monitor_log_file) => nix::unistd::dup2_stderr(monitor_log_file),
                None => nix::unistd::dup2_stderr(&dev_null),
            };
            if let Err(dup_error) = dup_result {
                monitor_log.line(&format!("could not detach stderr: {dup_error}"));
            }
        }
        Err(open_error) => monitor_log.line(&format!("could not open /dev/null: {open_error}")),
    }
}

/// The exit a wait status says `pid` made, if it says `pid` ended: a death by signal N is code
/// 128 + N, as `ExitStatus` records it.
fn ended(pid: Pid, wait_status: WaitStatus) -> Option<ExitStatus> {
    let (code, signal) = match wait_status {
        WaitStatus::Exited(ended_pid, code) if ended_pid == pid => (code, 0),
        WaitStatus::Signaled(ended_pid, killing_signal, _core_dumped) if ended_pid == pid => {
            (128 + killing_signal as i32, killing_signal as i32)
        }
        _ => return None,
    };
    Some(ExitStatus { code, signal, exited_at_ns: Timestamp::now(), monitor_pid: None })
}

/// The init's exit when it is over already, reaped without waiting; `None` while it runs (or
/// when it is not this monitor's child, which `reap_until_init_exits` deals with).
fn init_exit_if_over(init_pid: u32) -> Option<ExitStatus> {
    let init_pid = Pid::from_raw(init_pid as i32);
    loop {
        match waitpid(init_pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(wait_status) => return ended(init_pid, wait_status),
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Reaps every child (the monitor is a subreaper, so orphaned container processes land here too)
/// until the container's init is among them, and returns its status.
fn reap_until_init_exits(init_pid: u32, init_start_time: u64, monitor_log: &mut MonitorLog) -> ExitStatus {
    let init_pid = Pid::from_raw(init_pid as i32);
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(wait_status) => {
                // Else another child (an orphan reparented here) ended, or something else: go on.
                if let Some(status) = ended(init_pid, wait_status) {
                    return status;
                }
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => {
                // init is not our child: reparenting to this subreaper did not happen. Its
                // status cannot be collected, only its disappearance observed.
                monitor_log
                    .line(&format!("init {init_pid} is not a child of the monitor; waiting for it to disappear"));
                while read_process_stat(init_pid.as_raw())
                    .is_some_and(|process_stat| process_stat.start_time == init_start_time && process_stat.state != 'Z')
                {
                    std::thread::sleep(Duration::from_millis(250));
                }
                return ExitStatus::unknown(Timestamp::now());
            }
            Err(wait_error) => {
                monitor_log.line(&format!("waitpid failed: {wait_error}"));
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

/// The exec process runc started: its pid from `--pid-file` and its start time, read while it is
/// our child (reparented to this subreaper), so the pid cannot have been reused yet.
fn exec_process(pid_path: &Path) -> Option<(u32, u64)> {
    let pid: u32 = std::fs::read_to_string(pid_path).ok()?.trim().parse().ok()?;
    let process_stat = read_process_stat(pid as i32)?;
    Some((pid, process_stat.start_time))
}

fn file_length(path: &Path) -> u64 {
    std::fs::metadata(path).map(|metadata| metadata.len()).unwrap_or(0)
}

/// The last `MAX_QUOTED_STDERR_BYTES` the container (or runc) wrote to the stream file at
/// `path` after its byte `since`.
fn read_tail(path: &Path, since: u64) -> Vec<u8> {
    let written = output_log::raw_output_since(path, since);
    written[written.len().saturating_sub(MAX_QUOTED_STDERR_BYTES as usize)..].to_vec()
}

/// The monitor's own diagnostics, appended to task_dir/monitor.log. Logging must never stop the monitor,
/// so every failure to log is ignored.
struct MonitorLog {
    file: Option<File>,
}

impl MonitorLog {
    fn open(task_dir: &Path) -> MonitorLog {
        let _ = berth_runtime::sys::fs::create_private_dir_all(task_dir);
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(berth_runtime::sys::fs::PRIVATE_FILE_MODE)
            .open(task_dir.join(MONITOR_LOG_FILE))
            .ok();
        MonitorLog { file }
    }

    fn line(&mut self, message: &str) {
        if let Some(file) = self.file.as_mut() {
            let _ = writeln!(file, "{} berth-monitor[{}]: {message}", Timestamp::now(), std::process::id());
        }
    }
}
