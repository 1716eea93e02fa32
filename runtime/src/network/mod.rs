//! Networking with CNI: berthd makes each task's network namespace (a bind-mounted file under
//! `<state>/netns`), runs the CNI plugins itself and records what they gave (`NetworkAttached`,
//! `NetworkReleased`, recovery's `NetworkDetached`).
//!
//! - [`config`] — the networks as CNI sees them: the default `bridge` network from berthd's
//!   flags, user-defined ones from the log, each turned into a conflist (bridge + host-local,
//!   portmap, firewall) kept under `<root>/networks`;
//! - [`cni`] — plugin invocation as the CNI spec says (environment, stdin, `prevResult`,
//!   capabilities, error objects);
//! - [`netns`] — namespace files: made by unshare + bind mount, removed by unmount + unlink;
//! - [`attach`] — `Networking`: attach (netns, durable ADD cache, loopback + ADD at once) and
//!   detach (DEL from the cache, netns and cache removed), never both at once for one id;
//! - [`spare`] — the default network's spare attachment, made ahead of need and handed to the
//!   next task that fits (its ADD cache renamed to the task's key);
//! - [`rules`] — after DEL, the iptables rules still marked with the container's CNI id (left
//!   by a DEL a crash cut off) removed;
//! - [`hosts`] — a container's `/etc/hosts`, with its peers on the same network by name;
//! - [`teardown`] — what start-up does with leftovers of a crash, a pure plan, table-tested.

pub mod attach;
pub mod cni;
pub mod config;
pub mod hosts;
pub mod netns;
pub mod rules;
pub mod spare;
pub mod teardown;

pub use attach::Networking;
