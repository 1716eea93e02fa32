//! The subcommands, one file each; each writes to any `Write` so tests can capture it.

pub mod checkpoints;
pub mod diff;
pub mod events;
pub mod forget;
pub mod history;
pub mod state;
pub mod stats;
pub mod verify;
