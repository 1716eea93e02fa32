//! berthd itself: [`run`] assembles it (open the log, replay, recover, serve), [`store`] owns the
//! log, the projections and the command thread, [`config`] reads flags and the TOML file, and
//! [`layout`] is the one place every on-disk path comes from, [`permissions`] who may read them,
//! [`socket`] who may open the API socket, [`disk_usage`] what `system df` measures there,
//! [`logging`] how berthd's own log is written, [`archiver`] moves old log segments to the
//! archive, [`checkpoint`] the projection checkpoints start-up begins from, [`log_lock`] who
//! holds the log's lock when start-up cannot take it.

pub mod archiver;
pub mod checkpoint;
pub mod config;
pub mod disk_usage;
pub mod layout;
pub mod log_lock;
pub mod logging;
pub mod permissions;
mod run;
pub mod socket;
pub mod store;

pub use run::{archive_now, run, salvage, DaemonError, DaemonOptions};
