//! Processes and descriptors: the spawn lock every child of berthd is started under,
//! close-on-exec and inheritable duplicates, flock, pidfds, `/proc/<pid>/stat`, and the lower
//! CPU priority of background children (through `nice`).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Held by berthd around every spawn of a child process (a monitor, runc). While it is held, the
/// lock descriptor of the monitor being started may be inheritable; at no other time is any
/// descriptor of berthd's inheritable.
static SPAWN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`SPAWN_LOCK`]; hold the guard across `spawn()`.
pub fn spawn_lock() -> std::sync::MutexGuard<'static, ()> {
    SPAWN_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The niceness of work berthd does in the background (a deleted task's network release): the
/// lowest, so that it takes what CPU the host's other work leaves and does not slow a
/// container's start on a busy host. Still a weight (not SCHED_IDLE): it cannot starve.
pub const BACKGROUND_NICENESS: i32 = 19;

/// coreutils' `nice`: it changes its own niceness and execs the program, so every thread the
/// program starts has it (Linux keeps a niceness per thread).
const NICE: &str = "/usr/bin/nice";

/// A command that runs `program` with `niceness` added to berthd's own (0: as berthd).
///
/// Through `nice`, not a `pre_exec` hook: a hook makes the spawn fork berthd, and the forked
/// child keeps every descriptor of berthd — the log's lock among them — until its exec. Lowered
/// before that exec, on a busy host it could wait long enough for a berthd restarted after a
/// kill -9 to find its log still locked. Spawned as is, the child execs `nice` at once.
pub fn command_at_niceness(program: impl AsRef<std::ffi::OsStr>, niceness: i32) -> tokio::process::Command {
    if niceness == 0 || !std::path::Path::new(NICE).is_file() {
        return tokio::process::Command::new(program);
    }
    let mut command = tokio::process::Command::new(NICE);
    command.arg(format!("--adjustment={niceness}")).arg("--").arg(program);
    command
}

/// What `nice` exits with when it cannot run the program (coreutils: 126 found but not run,
/// 127 not found).
pub const NICE_COMMAND_NOT_FOUND: i32 = 127;

/// Marks `fd` close-on-exec, keeping its other descriptor flags.
pub fn set_close_on_exec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD only read and change the descriptor's flags; on a descriptor that
    // is not open they fail with EBADF, which is returned.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `fd` is an open descriptor of this process.
pub fn is_open_descriptor(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only inspects the descriptor number; it fails with EBADF when it is not open.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// A duplicate of `file` without close-on-exec, numbered 3 or above (0-2 are stdio). Make it
/// only while holding [`spawn_lock`], and drop it before releasing the lock.
pub fn inheritable_duplicate(file: &File) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD on a descriptor `file` keeps open for the duration of the call; the new
    // descriptor is returned to the caller, who becomes its only owner.
    let duplicate = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD, 3) };
    if duplicate < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor and nothing else refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(duplicate) })
}

/// `flock(LOCK_EX | LOCK_NB)`: fails with EWOULDBLOCK when another open file description holds it.
pub fn flock_exclusive_nonblocking(file: &File) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor this function borrows for the duration of the call.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A pidfd for `pid`: it pins the process, so a pid checked after opening it cannot be reused.
pub fn open_pidfd(pid: i32) -> std::io::Result<OwnedFd> {
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

/// Every pid in `/proc` (a snapshot: processes come and go meanwhile).
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|entries| entries.flatten().filter_map(|entry| entry.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// Sends `signal` through `pidfd`, so never to a recycled pid; a process already gone is Ok.
pub fn signal_pidfd(pidfd: &OwnedFd, signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd, a plain signal number and no siginfo.
    let result = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    if result < 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ESRCH) {
            return Err(error);
        }
    }
    Ok(())
}

/// The fields of `/proc/<pid>/stat` berth cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStat {
    /// Field 3: R, S, D, Z, X, ...
    pub state: char,
    /// Field 4: the parent's pid.
    pub parent_pid: i32,
    /// Field 22: start time in clock ticks after boot.
    pub start_time: u64,
}

impl ProcessStat {
    /// Neither a zombie nor dead.
    pub fn is_running(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// Reads `/proc/<pid>/stat`. Returns `None` when the process does not exist.
pub fn read_process_stat(pid: i32) -> Option<ProcessStat> {
    if pid <= 0 {
        return None;
    }
    let stat_text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_stat(&stat_text)
}

fn parse_process_stat(stat_text: &str) -> Option<ProcessStat> {
    let fields = StatFields::of(stat_text)?;
    let state = fields.get(3)?.chars().next()?;
    let parent_pid = fields.get(4)?.parse().ok()?;
    let start_time = fields.get(22)?.parse().ok()?;
    Some(ProcessStat { state, parent_pid, start_time })
}

/// The fields of a `/proc/<pid>/stat` text after the command name, numbered as proc(5) numbers
/// them. Field 2 (the command name) is in parentheses and may itself contain spaces and `)`,
/// so fields are counted from the last `)`.
struct StatFields<'a>(Vec<&'a str>);

impl<'a> StatFields<'a> {
    fn of(stat_text: &'a str) -> Option<StatFields<'a>> {
        let after_name = &stat_text[stat_text.rfind(')')? + 1..];
        Some(StatFields(after_name.split_whitespace().collect()))
    }

    /// Field `number` (3 or more: the state is the first after the name).
    fn get(&self, number: usize) -> Option<&'a str> {
        self.0.get(number.checked_sub(3)?).copied()
    }
}

/// `struct prctl_mm_map` of `<linux/prctl.h>`, for `prctl(PR_SET_MM, PR_SET_MM_MAP, …)`.
#[repr(C)]
struct PrctlMmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: *const u64,
    auxv_size: u32,
    exe_fd: u32,
}

const PR_SET_MM_MAP: libc::c_int = 14;

/// Points this process's `/proc/self/cmdline` at `text` (arguments each ended by a NUL byte).
/// `PR_SET_MM_MAP` rather than `PR_SET_MM_ARG_START`, which needs CAP_SYS_RESOURCE; the map
/// repeats the process's other addresses as `/proc/self/stat` gives them. The text is leaked on
/// the heap: the kernel reads it from there for as long as the process lives, and only from
/// anonymous memory. Call it while the process has a single thread: nothing may move the
/// program break between its reading and the call.
pub fn replace_command_line(text: Vec<u8>) -> std::io::Result<()> {
    if text.last() != Some(&0) {
        return Err(std::io::Error::other("a command line ends with a NUL byte"));
    }
    let text: &'static [u8] = Box::leak(text.into_boxed_slice());
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields = StatFields::of(&stat).ok_or_else(|| std::io::Error::other("/proc/self/stat is unreadable"))?;
    let field = |number: usize| fields.get(number).and_then(|field| field.parse().ok()).unwrap_or(0);
    let mut map = PrctlMmMap {
        start_code: field(26),
        end_code: field(27),
        start_data: field(45),
        end_data: field(46),
        start_brk: field(47),
        brk: 0,
        start_stack: field(28),
        arg_start: text.as_ptr() as u64,
        arg_end: text.as_ptr() as u64 + text.len() as u64,
        env_start: field(50),
        env_end: field(51),
        auxv: std::ptr::null(),
        auxv_size: 0,
        exe_fd: u32::MAX,
    };
    // SAFETY: sbrk(0) only reads the current break. The kernel takes `brk` as the new break, so
    // it is read last, with no allocation after it.
    map.brk = unsafe { libc::sbrk(0) } as u64;
    // SAFETY: the map is a valid prctl_mm_map of the size given; the kernel copies it and checks
    // every address against the process's own mappings before it changes anything.
    let done = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            PR_SET_MM_MAP as libc::c_ulong,
            &map as *const PrctlMmMap as libc::c_ulong,
            std::mem::size_of::<PrctlMmMap>() as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_at_a_niceness_has_it_and_none_of_our_descriptors() {
        // A descriptor of ours would show in the child's /proc/self/fd under the file's name.
        let dir = tempfile::tempdir().unwrap();
        let kept = std::fs::File::create(dir.path().join("kept-by-the-parent")).unwrap();
        let output = command_at_niceness("sh", 7).args(["-c", "nice; ls -l /proc/self/fd"]).output().await.unwrap();
        drop(kept);
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(text.lines().next(), Some("7"), "{text}");
        assert!(!text.contains("kept-by-the-parent"), "{text}");
        let same = command_at_niceness("sh", 0).args(["-c", "nice"]).output().await.unwrap();
        assert_eq!(String::from_utf8_lossy(&same.stdout).trim(), "0");
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let stat_text = "4242 (we ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_process_stat(stat_text), Some(ProcessStat { state: 'S', parent_pid: 1, start_time: 987654 }));
    }

    #[test]
    fn own_start_time_is_readable() {
        let own_pid = std::process::id() as i32;
        assert!(read_process_stat(own_pid).is_some_and(|stat| stat.is_running()));
    }
}
