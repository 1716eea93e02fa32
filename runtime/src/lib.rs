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
