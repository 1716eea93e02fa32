//! berth-runtime: the daemon side of berth — gRPC services, the executor that drives runc, the
//! monitor, the content store and the overlay snapshotter. The binaries in `bin/` are thin.

pub mod api;
pub mod client;
pub mod content;
pub mod image_import;
pub mod monitor;
pub mod runc;
pub mod snapshot;
pub mod spec;
pub mod unpack;
pub mod config;
pub mod daemon;
pub mod executor;
pub mod server;
pub mod store;

/// Crash points for tests: with `BERTHD_FAILPOINT=<name>` berthd aborts at that point, after
/// the side effect and before its outcome is recorded — the window recovery must close.
pub(crate) fn failpoint(name: &str) {
    if std::env::var("BERTHD_FAILPOINT").is_ok_and(|wanted| wanted == name) {
        eprintln!("berthd: failpoint {name} reached; aborting");
        std::process::abort();
    }
}
