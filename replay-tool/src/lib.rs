//! berth-replay's library part: reading a berth log read-only and telling what happened —
//! verify the chain, list events, tell a container's history, fold the state at any past seq
//! or time, tell what changed between two moments, and measure the log.
//!
//! Invariant: nothing here opens a file for writing; `forget` deletes one key file. The log is opened only with
//! `berth_log::open_read_only` (no lock, no repair), and output goes to the `Write` passed in.

pub mod cmd;
pub mod diff;
pub mod error;
pub mod fold;
pub mod location;
pub mod prefilter;
pub mod render;
pub mod secrets;
pub mod time;

pub use error::ReplayError;
pub use fold::{fold_to, resolve_point, FoldPoint, Folded, RecordStamp, END_OF_LOG};
pub use location::{open_log, resolve_log_dir, DEFAULT_ROOT};
pub use render::state_json;
