//! OS plumbing shared by every domain of the daemon and by the monitor binary: durable file
//! writes, descriptors and locks, `/proc` reads, the wall clock, crash points for tests. Nothing
//! here knows about containers, images or the log.

pub mod fs;
pub mod io;
pub mod process;

/// Crash points for tests: with `BERTHD_FAILPOINT=<name>` berthd aborts at that point, after
/// the side effect and before its outcome is recorded — the window recovery must close.
pub(crate) fn failpoint(name: &str) {
    if std::env::var("BERTHD_FAILPOINT").is_ok_and(|wanted| wanted == name) {
        eprintln!("berthd: failpoint {name} reached; aborting");
        std::process::abort();
    }
}

/// Like [`failpoint`], but panics instead of aborting: for code whose panic handling is tested.
pub(crate) fn failpoint_panic(name: &str) {
    if std::env::var("BERTHD_FAILPOINT").is_ok_and(|wanted| wanted == name) {
        panic!("failpoint {name} reached");
    }
}
