//! Tasks on the host: the [`executor`] that carries out intents in log order and records their
//! outcomes, start-up [`recovery`] (observe → pure plan → apply), the restart policy carried out
//! (`restart`), `berth exec`'s processes (`exec`), the per-task [`monitor`] and its [`task_dir`],
//! a `-i` task's [`stdin`] FIFO and a `-t` task's [`console`], the [`runc`] command line, the OCI
//! runtime [`spec`] with a container's [`policies`] in it (limits, capabilities, devices and the
//! [`seccomp`] profile), the [`etc_files`] a container gets in its bundle, its [`mounts`]
//! (binds, volumes, tmpfs), its network (`networking`: the `network` domain's CNI attachment
//! run beside runc's create, the process held at the [`network_gate`] until it is there, and
//! released after delete), its [`output_log`] (the record files every output goes through —
//! pipes, a terminal, an exec's), removals the log asks for (`removal`: volumes, `--rm`), and
//! what a task's [`cgroup`] says after its end; the kernel's cgroup migration wait started ahead of
//! runc's ([`cgroup_warmup`]).

pub mod cgroup;
pub mod cgroup_stats;
pub mod cgroup_warmup;
pub mod console;
pub mod etc_files;
mod exec;
pub mod executor;
pub mod monitor;
pub mod monitor_standby;
pub mod mounts;
pub mod network_gate;
mod networking;
mod outcomes;
pub mod output_log;
pub mod output_watch;
pub mod policies;
mod reconcile;
pub mod recovery;
pub mod removal;
pub mod removals_after_delete;
mod restart;
pub mod runc;
pub mod seccomp;
pub mod spec;
pub mod stdin;
pub mod stop_signal;
pub mod task_dir;
