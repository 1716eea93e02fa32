//! berth-runtime: the daemon side of berth, split by domain so the tree answers "where is X":
//!
//! - [`daemon`] — berthd's assembly, the store (log + projections + the command thread), the
//!   configuration and the on-disk [`daemon::layout::Layout`];
//! - [`api`] — the gRPC services, one file per service, thin adapters over the other domains;
//! - [`images`] — the content store, image archives, layer unpacking and the snapshotter;
//! - [`metrics`] — the Prometheus endpoint and what it collects;
//! - [`tasks`] — the executor, start-up recovery, the monitor, runc and the OCI runtime spec;
//! - [`network`] — CNI: network namespaces, plugin invocation, networks and their teardown;
//! - [`secrets`] — containers' key files and forgetting them (docs/secrets.md);
//! - [`sys`] — OS plumbing shared by all of them;
//! - [`client`] — the client library the `berth` CLI is built on.
//!
//! Of the binaries in `bin/`, `berthd` parses flags and calls [`daemon::run`], and `berth` (the
//! CLI, one file per verb group) uses only [`client`] and the generated [`api`] types;
//! `berth-monitor` is a small synchronous program of its own that uses [`sys`] and [`tasks`]
//! types and starts no async runtime.

pub mod api;
pub mod client;
pub mod daemon;
pub mod images;
pub mod metrics;
pub mod network;
pub mod secrets;
pub mod sys;
pub mod tasks;
