//! berthd itself: [`run`] assembles it (open the log, replay, recover, serve), [`store`] owns the
//! log, the projections and the command thread, [`config`] reads flags and the TOML file, and
//! [`layout`] is the one place every on-disk path comes from, [`permissions`] who may read them,
//! [`disk_usage`] what `system df` measures there, [`checkpoint`] the projection checkpoints
//! start-up begins from.

pub mod checkpoint;
pub mod config;
pub mod disk_usage;
pub mod layout;
pub mod permissions;
mod run;
pub mod store;

pub use run::{run, salvage, DaemonError, DaemonOptions};
