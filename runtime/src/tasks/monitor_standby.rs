//! A monitor started before it is needed: `berth-monitor standby` loads, then waits for its
//! assignment, so a task's or an exec's monitor is ready at once instead of ~1.5 ms of exec and
//! start-up later on the path of every `run` and `exec` (see BENCHMARKS.md, issue 9).
//!
//! ## The channel
//! berthd starts the standby with its stdin one end of a `SOCK_SEQPACKET` socket pair (both
//! ends close-on-exec in berthd, so no other child holds it) and its stdout and stderr piped, as
//! for any monitor. The assignment is one message: the monitor's arguments, each ended by a NUL
//! byte, with the task's monitor lock as an `SCM_RIGHTS` descriptor. The monitor appends
//! `--lock-fd N` for the descriptor it received and carries on as a monitor started with those
//! arguments: from there on, readiness and everything after are as in [`crate::tasks::monitor`].
//!
//! ## Invariants
//! - The lock is held from before the assignment leaves berthd (berthd's own descriptor until
//!   the message is sent, then the one in flight and the monitor's), so recovery never finds a
//!   free lock while a monitor may be at work, as with a spawned monitor.
//! - A standby that reads end of stream (berthd died or let it go) exits without doing
//!   anything; a message that is not whole (truncated, no NUL at its end) is refused the same
//!   way, with a line on stderr.
//! - A standby is used once. A dead one (killed while it waited) is noticed when it is taken and
//!   thrown away; the caller then spawns a monitor as before.

use std::ffi::{OsStr, OsString};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::socket::{recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::socket::{SockFlag, SockType};

/// The first argument that makes `berth-monitor` a standby.
pub const STANDBY_COMMAND: &str = "standby";

/// The largest assignment a standby takes: far more than any monitor's arguments.
pub const MAX_ASSIGNMENT_BYTES: usize = 64 * 1024;

/// berthd's standby monitor: at most one waits at a time.
#[derive(Debug)]
pub struct MonitorStandby {
    monitor_binary: PathBuf,
    ready: Mutex<Option<Standby>>,
    starting: AtomicBool,
    /// The scheduling policy and priority a spawned monitor would have had: berthd's own.
    policy: (libc::c_int, libc::c_int),
}

#[derive(Debug)]
struct Standby {
    child: tokio::process::Child,
    assignments: OwnedFd,
}

impl MonitorStandby {
    pub fn new(monitor_binary: PathBuf) -> Arc<MonitorStandby> {
        Arc::new(MonitorStandby {
            monitor_binary,
            ready: Mutex::new(None),
            starting: AtomicBool::new(false),
            policy: own_policy(),
        })
    }

    /// Starts a standby in the background unless one waits or is being started. Call from
    /// inside the tokio runtime.
    ///
    /// It is made `SCHED_IDLE` as soon as it is spawned, so its loading and start-up take only
    /// CPU nothing else wants — on a small machine, the moments runc spends waiting in the
    /// kernel — instead of competing with the task being started. The spawn itself is berthd's
    /// ordinary work: it holds `SPAWN_LOCK`, which every start of a task waits for, so it must
    /// not be done at idle priority. [`MonitorStandby::assign`] gives the standby berthd's own
    /// policy back before any work.
    pub fn replenish(self: &Arc<Self>) {
        if self.lock_ready().is_some() || self.starting.swap(true, Ordering::AcqRel) {
            return;
        }
        let standby = Arc::clone(self);
        tokio::spawn(async move {
            match start_standby(&standby.monitor_binary) {
                Ok(started) => *standby.lock_ready() = Some(started),
                Err(error) => {
                    tracing::debug!(%error, "could not start a standby monitor; monitors are spawned as needed")
                }
            }
            standby.starting.store(false, Ordering::Release);
        });
    }

    /// Hands `arguments` and `lock` to the waiting standby and returns it as the monitor, or
    /// `None` (nothing sent) when no live standby waits. Starts the next standby either way.
    pub fn assign(self: &Arc<Self>, arguments: &[OsString], lock: &std::fs::File) -> Option<tokio::process::Child> {
        let taken = self.lock_ready().take();
        self.replenish();
        let mut standby = taken?;
        if !matches!(standby.child.try_wait(), Ok(None)) {
            return None;
        }
        // Back to berthd's own policy before it does anything (its runc and the container
        // inherit it); a standby that cannot be given it is not used.
        let (policy, priority) = self.policy;
        let given = match standby.child.id() {
            Some(pid) => set_policy(pid as libc::pid_t, policy, priority),
            None => Err(std::io::Error::other("the standby has no pid")),
        };
        if let Err(error) = given {
            tracing::debug!(%error, "could not give a standby monitor the ordinary scheduling policy; spawning one instead");
            let _ = standby.child.start_kill();
            return None;
        }
        let message = encode_assignment(arguments);
        let descriptors = [lock.as_raw_fd()];
        let sent = sendmsg::<()>(
            standby.assignments.as_raw_fd(),
            &[IoSlice::new(&message)],
            &[ControlMessage::ScmRights(&descriptors)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        );
        match sent {
            Ok(n_bytes) if n_bytes == message.len() => Some(standby.child),
            outcome => {
                tracing::debug!(?outcome, "a standby monitor did not take its assignment; spawning one instead");
                let _ = standby.child.start_kill();
                None
            }
        }
    }

    /// The pid of the standby waiting now, if any (for tests and diagnostics).
    pub fn waiting_pid(&self) -> Option<u32> {
        self.lock_ready().as_ref().and_then(|standby| standby.child.id())
    }

    fn lock_ready(&self) -> std::sync::MutexGuard<'_, Option<Standby>> {
        self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The calling thread's scheduling policy and priority (`SCHED_OTHER`, 0 unless berthd was
/// started with another).
fn own_policy() -> (libc::c_int, libc::c_int) {
    // SAFETY: both calls only read the calling thread's scheduling; sched_getparam writes the
    // parameters it is given.
    unsafe {
        let policy = libc::sched_getscheduler(0);
        let mut parameters = libc::sched_param { sched_priority: 0 };
        if policy < 0 || libc::sched_getparam(0, &mut parameters) != 0 {
            return (libc::SCHED_OTHER, 0);
        }
        (policy, parameters.sched_priority)
    }
}

/// Sets `policy` at `priority` for process `pid` (0: the calling thread); a standby has a
/// single thread, so its process is that thread.
fn set_policy(pid: libc::pid_t, policy: libc::c_int, priority: libc::c_int) -> std::io::Result<()> {
    let parameters = libc::sched_param { sched_priority: priority };
    // SAFETY: sched_setscheduler reads the parameters and changes only the scheduling of `pid`.
    if unsafe { libc::sched_setscheduler(pid, policy, &parameters) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Spawns `berth-monitor standby` with the assignment socket as its stdin, in a process group
/// of its own as every monitor is (`tasks::monitor`).
fn start_standby(monitor_binary: &Path) -> std::io::Result<Standby> {
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(std::io::Error::from)?;
    let mut command = tokio::process::Command::new(monitor_binary);
    command
        .arg(STANDBY_COMMAND)
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = {
        let _spawning = crate::sys::process::spawn_lock();
        command.spawn()?
    };
    // posix_spawn returned once it had exec'd: all of its loading and start-up is still ahead.
    if let Some(pid) = child.id() {
        if let Err(error) = set_policy(pid as libc::pid_t, libc::SCHED_IDLE, 0) {
            tracing::debug!(%error, "a standby monitor keeps the ordinary policy while it waits");
        }
    }
    Ok(Standby { child, assignments: ours })
}

/// The arguments, each followed by a NUL byte.
pub fn encode_assignment(arguments: &[OsString]) -> Vec<u8> {
    let mut message = Vec::new();
    for argument in arguments {
        message.extend_from_slice(argument.as_bytes());
        message.push(0);
    }
    message
}

/// What a standby was given: its arguments and the monitor lock's descriptor.
#[derive(Debug)]
pub struct Assignment {
    pub arguments: Vec<OsString>,
    pub lock: Option<OwnedFd>,
}

/// The standby's side: waits on `channel` (its stdin) for the one assignment. `Ok(None)` is end
/// of stream: berthd let the standby go.
pub fn receive_assignment(channel: RawFd) -> Result<Option<Assignment>, String> {
    let mut buffer = vec![0u8; MAX_ASSIGNMENT_BYTES];
    let mut control = nix::cmsg_space!([RawFd; 1]);
    let (n_bytes, truncated, lock) = loop {
        let mut io_slices = [std::io::IoSliceMut::new(&mut buffer)];
        match recvmsg::<()>(channel, &mut io_slices, Some(&mut control), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(message) => {
                let mut lock = None;
                for control_message in message.cmsgs().map_err(|error| format!("unreadable assignment: {error}"))? {
                    if let ControlMessageOwned::ScmRights(fds) = control_message {
                        for fd in fds {
                            // SAFETY: the kernel just installed this descriptor in our table for
                            // us alone; the first is kept, any other is closed on drop.
                            let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                            lock.get_or_insert(owned);
                        }
                    }
                }
                let truncated = message.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                break (message.bytes, truncated, lock);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => return Err(format!("cannot read the assignment: {error}")),
        }
    };
    if n_bytes == 0 && lock.is_none() {
        return Ok(None);
    }
    if truncated {
        return Err(format!("the assignment is larger than {MAX_ASSIGNMENT_BYTES} bytes"));
    }
    let arguments = decode_assignment(&buffer[..n_bytes])?;
    Ok(Some(Assignment { arguments, lock }))
}

/// The arguments of an assignment; every one must be ended by its NUL byte.
pub fn decode_assignment(message: &[u8]) -> Result<Vec<OsString>, String> {
    let Some(body) = message.strip_suffix(&[0]) else {
        return Err("the assignment does not end with a NUL byte: it is not whole".to_string());
    };
    Ok(body.split(|byte| *byte == 0).map(|argument| OsStr::from_bytes(argument).to_os_string()).collect())
}

/// The monitor's command line (its program name first) for `assignment`, with `--lock-fd` for
/// the received lock. The descriptor is let go here: from now on it belongs to whoever takes
/// `--lock-fd` (the monitor adopts it as its lock file).
pub fn monitor_command_line(assignment: Assignment) -> Vec<OsString> {
    let mut command_line = vec![OsString::from(super::monitor::MONITOR_BINARY_NAME)];
    command_line.extend(assignment.arguments);
    if let Some(lock) = assignment.lock {
        command_line.push("--lock-fd".into());
        command_line.push(std::os::fd::IntoRawFd::into_raw_fd(lock).to_string().into());
    }
    command_line
}

/// Makes `/proc/self/cmdline` (what `ps` and every tool that finds a monitor by its `--id`
/// reads) show `command_line` instead of `berth-monitor standby`.
pub fn show_command_line(command_line: &[OsString]) -> std::io::Result<()> {
    crate::sys::process::replace_command_line(encode_assignment(command_line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_round_trips_with_odd_bytes_and_empty_arguments() {
        let arguments: Vec<OsString> =
            vec!["--id".into(), "a b".into(), "".into(), OsStr::from_bytes(b"\xff\xfe").to_os_string()];
        assert_eq!(decode_assignment(&encode_assignment(&arguments)).unwrap(), arguments);
    }

    #[test]
    fn a_message_without_its_last_nul_is_refused() {
        assert!(decode_assignment(b"--id\0abc").unwrap_err().contains("not whole"));
        assert!(decode_assignment(b"").unwrap_err().contains("not whole"));
    }

    #[test]
    fn the_lock_travels_with_the_arguments_and_end_of_stream_is_none() {
        let (ours, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap();
        let lock_file = tempfile::tempfile().unwrap();
        let message = encode_assignment(&["--id".into(), "c1".into()]);
        let descriptors = [lock_file.as_raw_fd()];
        sendmsg::<()>(
            ours.as_raw_fd(),
            &[IoSlice::new(&message)],
            &[ControlMessage::ScmRights(&descriptors)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let assignment = receive_assignment(theirs.as_raw_fd()).unwrap().expect("an assignment");
        let command_line = monitor_command_line(assignment);
        assert_eq!(&command_line[..3], &[OsString::from("berth-monitor"), "--id".into(), "c1".into()]);
        assert_eq!(command_line[3], "--lock-fd");
        let lock_fd: RawFd = command_line[4].to_str().unwrap().parse().unwrap();
        // SAFETY: monitor_command_line let the received descriptor go; the test owns it now.
        let lock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(lock_fd) };
        let same_file = |fd: RawFd| {
            // SAFETY: both descriptors are open for the whole test.
            let stat = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).unwrap();
            (stat.st_dev, stat.st_ino)
        };
        assert_eq!(same_file(lock.as_raw_fd()), same_file(lock_file.as_raw_fd()));
        drop(ours);
        assert!(receive_assignment(theirs.as_raw_fd()).unwrap().is_none());
    }
}
