//! `berth exec` on the host: the exec's OCI process (the container's own process from its
//! bundle, with the exec's arguments and overrides), a monitor of its own that runs `runc exec`
//! and stays the process's reaper (so its exit is recorded even across a berthd restart, as a
//! task's is), and the outcome events. An exec's directory is `execs/<exec id>/` in the task
//! directory, laid out as a task directory.

use std::sync::Arc;

use berth_log::Seq;
use berth_projections::{Event, ExecProcess};

use crate::tasks::executor::{Executor, Job};
use crate::tasks::monitor::{self, ExitReport, Launch, TaskIo};
use crate::tasks::spec;
use crate::tasks::task_dir::{ExitStatus, MonitorIdentity, TaskDir, EXEC_PROCESS_FILE};

impl Executor {
    /// Answers an `ExecRequested`: prepares and starts the exec under its monitor, records
    /// `ExecStarted` (with `ExecExited` in the same record when it was already over) or
    /// `ExecStartFailed`, and watches for the exit. Returns the monitor when it reported the exit
    /// with its readiness (it may still be writing `exit.json`).
    pub(super) async fn start_exec(
        self: &Arc<Self>,
        namespace: &str,
        container_id: &str,
        intent_seq: Seq,
        exec_id: &str,
        process: &ExecProcess,
    ) -> Option<MonitorIdentity> {
        let exec_dir = self.layout.exec_dir(namespace, container_id, exec_id);
        let started = self.spawn_exec_monitor(namespace, container_id, intent_seq, &exec_dir, process).await;
        let (events, monitor, ended) = match started {
            Ok((monitor, mut exit_report)) => {
                let mut events = vec![Event::ExecStarted {
                    container_id: container_id.to_string(),
                    exec_id: exec_id.to_string(),
                    pid: monitor.init_pid,
                }];
                let exit = exit_report.take_if_reported().or_else(|| exec_dir.exit_status());
                if let Some(status) = exit.clone() {
                    events.push(exec_exited_event(container_id, exec_id, status));
                }
                match exit {
                    Some(_) => (events, None, Some(monitor)),
                    None => (events, Some((monitor, exit_report)), None),
                }
            }
            Err(error) => (
                vec![Event::ExecStartFailed {
                    container_id: container_id.to_string(),
                    exec_id: exec_id.to_string(),
                    error,
                }],
                None,
                None,
            ),
        };
        if self.record_together(namespace, Some(intent_seq), "exec start", events).await {
            if let Some((monitor, exit_report)) = monitor {
                self.watch_exec_exit(namespace, container_id, exec_id, monitor, Some(exit_report));
            }
        }
        ended
    }

    async fn spawn_exec_monitor(
        &self,
        namespace: &str,
        container_id: &str,
        intent_seq: Seq,
        exec_dir: &TaskDir,
        process: &ExecProcess,
    ) -> Result<(MonitorIdentity, ExitReport), String> {
        let bundle = self.layout.bundle_dir(namespace, container_id);
        let exec_env =
            self.keys.exec_environment(namespace, container_id, process).map_err(|error| error.to_string())?;
        let process_json = exec_process_json(&bundle, process, &exec_env)?;
        exec_dir
            .remove()
            .map_err(|error| format!("cannot empty the exec directory {}: {error}", exec_dir.path().display()))?;
        crate::sys::fs::create_private_dir_all(exec_dir.path())
            .map_err(|error| format!("cannot make the exec directory {}: {error}", exec_dir.path().display()))?;
        crate::sys::fs::write_file_atomically(exec_dir.path(), EXEC_PROCESS_FILE, &process_json)
            .map_err(|error| format!("cannot write {}: {error}", exec_dir.file(EXEC_PROCESS_FILE).display()))?;
        let stdin_fifo = if process.open_stdin {
            Some(crate::tasks::stdin::make_stdin_fifo(exec_dir).map_err(|error| error.to_string())?)
        } else {
            None
        };
        if process.tty {
            crate::tasks::console::make_resize_fifo(exec_dir).map_err(|error| error.to_string())?;
        }
        let io = TaskIo { stdin_fifo, tty: process.tty };
        monitor::spawn_monitor(
            &self.monitor_paths(namespace),
            container_id,
            &bundle,
            exec_dir,
            Launch::Exec,
            intent_seq,
            &io,
        )
        .await
        .map_err(|error| error.to_string().replace("could not create the container", "could not start the exec"))
    }

    pub(super) fn watch_exec_exit(
        self: &Arc<Self>,
        namespace: &str,
        container_id: &str,
        exec_id: &str,
        monitor: MonitorIdentity,
        exit_report: Option<ExitReport>,
    ) {
        let executor = Arc::clone(self);
        let namespace = namespace.to_string();
        let container_id = container_id.to_string();
        let exec_id = exec_id.to_string();
        let exec_dir = self.layout.existing_exec_dir(&namespace, &container_id, &exec_id);
        tokio::spawn(async move {
            let (status, still_exiting) = monitor::await_exit(exit_report, &exec_dir, monitor).await;
            executor.send(&namespace, &container_id, Job::ExecExited { exec_id, status, still_exiting });
        });
    }

    pub(super) async fn record_exec_exit(
        &self,
        namespace: &str,
        container_id: &str,
        exec_id: &str,
        status: ExitStatus,
    ) {
        self.record(namespace, None, "exec exited", exec_exited_event(container_id, exec_id, status)).await;
    }
}

pub(super) fn exec_exited_event(container_id: &str, exec_id: &str, status: ExitStatus) -> Event {
    Event::ExecExited {
        container_id: container_id.to_string(),
        exec_id: exec_id.to_string(),
        exit_code: status.code,
        signal: status.signal,
        exited_at_ns: status.exited_at_ns,
    }
}

/// The exec's process: the container's own from its bundle's `config.json` (capabilities,
/// rlimits, no-new-privileges, environment), with the exec's arguments, environment overrides,
/// working directory, user (names resolved in the container's rootfs) and terminal. `exec_env`
/// is the exec's own environment, opened from its sealed form.
fn exec_process_json(bundle: &std::path::Path, exec: &ExecProcess, exec_env: &[String]) -> Result<Vec<u8>, String> {
    let config_path = bundle.join("config.json");
    let container_spec = oci_spec::runtime::Spec::load(&config_path)
        .map_err(|error| format!("cannot read the container's spec {}: {error}", config_path.display()))?;
    let mut process = container_spec
        .process()
        .clone()
        .ok_or_else(|| format!("the container's spec {} has no process", config_path.display()))?;
    process.set_args(Some(exec.args.clone()));
    let container_env = process.env().clone().unwrap_or_default();
    let mut env = spec::merge_env(&container_env, exec_env);
    if exec.tty && !env.iter().any(|entry| entry.starts_with("TERM=")) {
        env.push("TERM=xterm".to_string());
    }
    process.set_env(Some(env));
    if !exec.working_dir.is_empty() {
        process.set_cwd(exec.working_dir.clone().into());
    }
    if !exec.user.is_empty() {
        let resolved = spec::resolve_user(&bundle.join("rootfs"), &exec.user).map_err(|error| error.to_string())?;
        let mut user = process.user().clone();
        user.set_uid(resolved.uid);
        user.set_gid(resolved.gid);
        user.set_additional_gids((!resolved.additional_gids.is_empty()).then_some(resolved.additional_gids));
        process.set_user(user);
    }
    process.set_terminal(Some(exec.tty));
    serde_json::to_vec(&process).map_err(|error| format!("cannot write the exec's process: {error}"))
}
