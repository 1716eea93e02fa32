//! Tasks on the host: the [`executor`] that carries out intents in log order and records their
//! outcomes, start-up [`recovery`] (observe → pure plan → apply), the per-task [`monitor`] and
//! its [`task_dir`], the [`runc`] command line, the OCI runtime [`spec`], the [`etc_files`] a
//! container gets in its bundle, and what a task's [`cgroup`] says after its end.

pub mod cgroup;
pub mod etc_files;
pub mod executor;
pub mod monitor;
pub mod mounts;
pub mod output_log;
mod reconcile;
pub mod recovery;
mod removal;
pub mod runc;
pub mod spec;
pub mod task_dir;
