//! OS plumbing shared by every domain of the daemon and by the monitor binary: durable file
//! writes, descriptors and locks, `/proc` reads, the service manager's readiness datagram,
//! crash points for tests. Nothing here knows about containers, images or the log.

pub mod disk_usage;
pub mod fs;
pub mod io;
pub mod mountinfo;
pub mod notify;
pub mod process;

/// The failpoint named by `BERTHD_FAILPOINT`, read once: one sits on the command thread's path
/// for every batch, where a getenv per batch would be wasted work.
fn armed_failpoint() -> Option<&'static str> {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ARMED.get_or_init(|| std::env::var("BERTHD_FAILPOINT").ok()).as_deref()
}

/// Crash points for tests: with `BERTHD_FAILPOINT=<name>` berthd aborts at that point, after
/// the side effect and before its outcome is recorded — the window recovery must close.
pub(crate) fn failpoint(name: &str) {
    if armed_failpoint() == Some(name) {
        eprintln!("berthd: failpoint {name} reached; aborting");
        std::process::abort();
    }
}

/// True when `BERTHD_FAILPOINT` names `name`: for a crash point that needs work of its own
/// first (a removal stopped half-way).
pub(crate) fn failpoint_armed(name: &str) -> bool {
    armed_failpoint() == Some(name)
}

/// Like [`failpoint`], but panics instead of aborting: for code whose panic handling is tested.
pub(crate) fn failpoint_panic(name: &str) {
    if armed_failpoint() == Some(name) {
        panic!("failpoint {name} reached");
    }
}
