//! Start-up reconciliation, the side that touches the host: observe each task, carry out the
//! [`recovery`](crate::tasks::recovery) plan and record every answer, then remove what no
//! projection accounts for (runc containers, bundles, task directories, snapshots, blobs,
//! spooled uploads) — each removal recorded or, when it failed, said so.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_commands::{Command, RecordDaemonEvent};
use berth_log::Timestamp;
use berth_projections::{Event, ExecStatus, Origin, PendingIntent, TaskState};

use crate::sys::fs::list_dir_names;
use crate::tasks::executor::{Executor, Job};
use crate::tasks::recovery::{self, ExecStep, ExitStep, Observed, ObservedExec, RuncStatus, Step};
use crate::tasks::task_dir::ExitStatus;

/// How long recovery waits for a monitor that is still creating a container when berthd came
/// back (it took the lock but has not written `monitor.json` yet).
const CREATING_MONITOR_WAIT: Duration = Duration::from_secs(60);

type ContainerKey = (String, String);

impl Executor {
    /// Start-up reconciliation: make the host and the log agree, recording every decision.
    pub async fn recover(self: &Arc<Self>) {
        // Before anything here runs a CNI DEL: no plugin of a killed berthd goes on adding.
        self.network.kill_plugins_left_running().await;
        let tasks: Vec<(String, String, TaskState)> = {
            let state = self.store.state();
            state
                .containers()
                .filter_map(|(namespace, container)| {
                    container.task.clone().map(|task| (namespace.to_string(), container.record.id.clone(), task))
                })
                .collect()
        };
        for (namespace, container_id, task) in tasks {
            self.recover_task(&namespace, &container_id, task.clone()).await;
            self.recover_execs(&namespace, &container_id, &task).await;
        }
        // `-d --rm` containers whose exit was recorded but who were not removed yet (berthd
        // stopped in between): their removal is what the user asked for.
        let exited_auto_remove: Vec<(String, String)> = {
            let state = self.store.state();
            state
                .containers()
                .filter(|(_, container)| container.record.auto_remove)
                .filter(|(_, container)| {
                    container.task.as_ref().is_some_and(|task| task.exit.is_some() && task.pending.is_empty())
                })
                .map(|(namespace, container)| (namespace.to_string(), container.record.id.clone()))
                .collect()
        };
        for (namespace, container_id) in exited_auto_remove {
            self.auto_remove_if_asked(&namespace, &container_id);
        }
        self.remove_orphans().await;
        self.reconcile_networks().await;
    }

    /// Settles every exec of the task that the log left without an exit.
    async fn recover_execs(self: &Arc<Self>, namespace: &str, container_id: &str, task: &TaskState) {
        for (exec_id, exec) in &task.execs {
            if exec.exit.is_some() || exec.status == ExecStatus::Failed {
                continue;
            }
            let pending_intent = task.pending.iter().find_map(|intent| match intent {
                PendingIntent::Exec { seq, exec_id: id } if id == exec_id => Some(*seq),
                _ => None,
            });
            let exec_dir = self.layout.existing_exec_dir(namespace, container_id, exec_id);
            // A monitor may still be starting the exec (berthd died after spawning it).
            let deadline = Instant::now() + CREATING_MONITOR_WAIT;
            while pending_intent.is_some()
                && exec_dir.lock_held()
                && exec_dir.monitor_identity().is_none()
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let monitor = exec_dir.monitor_identity().filter(|monitor| monitor.intent_seq == exec.requested_seq);
            let observed = ObservedExec {
                monitor_alive: monitor.as_ref().is_some_and(|monitor| monitor.is_alive()),
                monitor,
                exit: exec_dir.exit_status(),
            };
            let steps = recovery::plan_exec(pending_intent, &observed);
            tracing::debug!(namespace, container_id, exec_id, ?observed, ?steps, "exec recovery plan");
            for step in steps {
                match step {
                    ExecStep::RecordStarted { intent_seq, pid } => {
                        let event = Event::ExecStarted {
                            container_id: container_id.to_string(),
                            exec_id: exec_id.clone(),
                            pid,
                        };
                        self.record(namespace, Some(intent_seq), "recovery: the monitor had started the exec", event)
                            .await;
                    }
                    ExecStep::RecordStartFailed { intent_seq } => {
                        let event = Event::ExecStartFailed {
                            container_id: container_id.to_string(),
                            exec_id: exec_id.clone(),
                            error: "berthd stopped before the exec was started: run it again".into(),
                        };
                        self.record(namespace, Some(intent_seq), "recovery: exec never started", event).await;
                    }
                    ExecStep::RecordExit(status) => {
                        self.record_exec_exit(namespace, container_id, exec_id, status).await;
                    }
                    ExecStep::Watch(monitor) => self.watch_exec_exit(namespace, container_id, exec_id, monitor, None),
                    ExecStep::RecordLost => {
                        let status = ExitStatus::unknown(Timestamp::now());
                        self.record_exec_exit(namespace, container_id, exec_id, status).await;
                    }
                }
            }
        }
    }

    /// What the host shows for one task, narrowed to this task.
    async fn observe(&self, namespace: &str, container_id: &str, task: &TaskState) -> Observed {
        let task_dir = self.layout.task_dir(namespace, container_id);
        if let Some(pending_create) = recovery::pending_create_seq(task) {
            // A monitor may still be creating the container (berthd died after starting it):
            // wait for it to finish one way or the other before deciding.
            let deadline = Instant::now() + CREATING_MONITOR_WAIT;
            while task_dir.lock_held()
                && task_dir.monitor_identity().is_none_or(|monitor| monitor.intent_seq != pending_create)
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let monitor_file = task_dir.monitor_identity();
        let monitor_alive = monitor_file.as_ref().is_some_and(|monitor| monitor.is_alive());
        let mut observed = Observed::narrow(task, monitor_file, monitor_alive, task_dir.exit_status());
        if recovery::needs_runc_status(task, &observed) {
            observed.runc_status = match self.runc(namespace).state(container_id).await {
                Ok(state) => state.map(|state| RuncStatus::parse(&state.status)),
                Err(error) => {
                    tracing::warn!(namespace, container_id, %error, "runc state failed; taking the container as gone");
                    None
                }
            };
        }
        observed
    }

    async fn recover_task(self: &Arc<Self>, namespace: &str, container_id: &str, task: TaskState) {
        let observed = self.observe(namespace, container_id, &task).await;
        let steps = recovery::plan(&task, &observed);
        tracing::debug!(namespace, container_id, ?observed, ?steps, "recovery plan");
        let id = container_id.to_string();
        for step in steps {
            match step {
                Step::RecordCreated { intent_seq, pid, monitor_pid } => {
                    let event = Event::TaskCreated { container_id: id.clone(), pid, monitor_pid };
                    self.record(namespace, Some(intent_seq), "recovery: the monitor had created the task", event).await;
                }
                Step::RollBackCreate { intent_seq } => {
                    self.roll_back_create(namespace, container_id).await;
                    let event = Event::TaskCreateFailed {
                        container_id: id.clone(),
                        error: "berthd stopped before the task was created; rolled back: create it again".into(),
                    };
                    self.record(namespace, Some(intent_seq), "recovery: create rolled back", event).await;
                }
                Step::Start { intent_seq, pid } => {
                    let event = match self.runc(namespace).start(container_id).await {
                        Ok(()) => Event::TaskStarted { container_id: id.clone(), pid },
                        Err(error) => Event::TaskStartFailed { container_id: id.clone(), error: error.to_string() },
                    };
                    self.record(namespace, Some(intent_seq), "recovery: start finished", event).await;
                }
                Step::RemoveUnwatched { intent_seq } => {
                    let mut error =
                        "the task's monitor is gone, so it was not started; delete it and create it again".to_string();
                    if let Err(delete_error) = self.runc(namespace).delete(container_id, true).await {
                        error.push_str(&format!(" (removing the created container failed too: {delete_error})"));
                    }
                    let event = Event::TaskStartFailed { container_id: id.clone(), error };
                    self.record(namespace, Some(intent_seq), "recovery: start finished", event).await;
                }
                Step::RecordStarted { intent_seq, pid } => {
                    let event = Event::TaskStarted { container_id: id.clone(), pid };
                    self.record(namespace, Some(intent_seq), "recovery: start finished", event).await;
                }
                Step::RecordStartFailed { intent_seq } => {
                    let event = Event::TaskStartFailed {
                        container_id: id.clone(),
                        error: "berthd stopped while starting the task and the container is gone".into(),
                    };
                    self.record(namespace, Some(intent_seq), "recovery: start finished", event).await;
                }
                Step::Kill { intent_seq, signal, all } => {
                    let event = match self.runc(namespace).kill(container_id, signal, all).await {
                        Ok(()) => Event::TaskKillDelivered { container_id: id.clone(), signal },
                        Err(error) => {
                            Event::TaskKillFailed { container_id: id.clone(), signal, error: error.to_string() }
                        }
                    };
                    self.record(namespace, Some(intent_seq), "recovery: kill re-delivered", event).await;
                }
                Step::RecordKillDelivered { intent_seq, signal } => {
                    let event = Event::TaskKillDelivered { container_id: id.clone(), signal };
                    self.record(namespace, Some(intent_seq), "recovery: kill re-delivered", event).await;
                }
                Step::SettleExit => self.settle_exit(namespace, container_id, &observed).await,
                Step::RequeueDelete { intent_seq, force } => {
                    let event = Event::TaskDeleteRequested { container_id: id.clone(), force };
                    self.send(
                        namespace,
                        container_id,
                        Job::Intent { seq: intent_seq, event: Box::new(event), start_too: false },
                    );
                }
            }
        }
    }

    /// The exit, whether it happened while berthd was down or is still to come, decided from
    /// the task as the recorded answers left it.
    async fn settle_exit(self: &Arc<Self>, namespace: &str, container_id: &str, observed: &Observed) {
        let task_now =
            self.store.state().container(namespace, container_id).and_then(|container| container.task.clone());
        let Some(task_now) = task_now else { return };
        match recovery::plan_exit(&task_now, observed) {
            ExitStep::Nothing => {}
            ExitStep::Record(status) => self.record_exit(namespace, container_id, status).await,
            ExitStep::Watch(monitor) => self.watch_exit(namespace, container_id, monitor, None),
            ExitStep::Abandon { kill_container } => {
                if kill_container {
                    tracing::warn!(
                        namespace,
                        container_id,
                        "the task's monitor is gone but the container runs; killing it"
                    );
                    if let Err(error) = self.runc(namespace).kill(container_id, libc::SIGKILL, true).await {
                        tracing::error!(namespace, container_id, %error, "could not kill the unwatched container: kill it by hand (`runc --root {} kill {container_id} KILL`)", self.layout.runc_root(namespace).display());
                    }
                }
                tracing::warn!(namespace, container_id, "the task's monitor is gone without an exit status (host reboot, or the monitor was killed); recorded as exit 255");
                self.record_exit(namespace, container_id, ExitStatus::unknown(Timestamp::now())).await;
            }
        }
    }

    /// Remove runc containers, mounts, snapshots, blobs, task dirs and spooled uploads that no
    /// projection accounts for (left by a crash between doing and recording).
    async fn remove_orphans(&self) {
        let (known_tasks, known_containers, known_snapshots, known_content) = {
            let state = self.store.state();
            let tasks: BTreeSet<ContainerKey> = state
                .containers()
                .filter(|(_, container)| container.task.is_some())
                .map(|(namespace, container)| (namespace.to_string(), container.record.id.clone()))
                .collect();
            let containers: BTreeSet<ContainerKey> = state
                .containers()
                .map(|(namespace, container)| (namespace.to_string(), container.record.id.clone()))
                .collect();
            let snapshots: BTreeSet<String> = state.snapshots.keys().cloned().collect();
            let content: BTreeSet<String> = state.content.keys().cloned().collect();
            (tasks, containers, snapshots, content)
        };
        for namespace in list_dir_names(&self.layout.runc_dir()) {
            let runc = self.runc(&namespace);
            let listed = match runc.list().await {
                Ok(listed) => listed,
                Err(error) => {
                    tracing::warn!(namespace, %error, "runc list failed; its containers were not checked for orphans");
                    continue;
                }
            };
            for runc_container in listed {
                if known_tasks.contains(&(namespace.clone(), runc_container.id.clone())) {
                    continue;
                }
                tracing::warn!(namespace, id = runc_container.id, "removing a runc container no task accounts for");
                match runc.delete(&runc_container.id, true).await {
                    Ok(()) => self.record_orphan(&namespace, "runc container", &runc_container.id).await,
                    // Not recorded as removed: it was not. The next start tries again.
                    Err(error) => tracing::error!(
                        namespace,
                        id = runc_container.id,
                        %error,
                        "could not remove a runc container no task accounts for; it is left as it is: remove it with `runc --root {} delete --force {}`",
                        runc.root.display(),
                        runc_container.id
                    ),
                }
            }
        }
        for (namespace, id) in unknown_entries(&self.layout.bundles_dir(), &known_tasks) {
            self.remove_bundle(&namespace, &id);
        }
        // A task's two directories: either may be left without the other.
        let mut orphan_task_dirs = unknown_entries(&self.layout.tasks_dir(), &known_containers);
        orphan_task_dirs.extend(unknown_entries(&self.layout.task_state_dir(), &known_containers));
        for (namespace, id) in orphan_task_dirs {
            warn_if_failed("task directory", &id, self.layout.task_dir(&namespace, &id).remove());
        }
        for (namespace, id) in unknown_entries(&self.layout.execs_dir(), &known_tasks) {
            let removed = crate::sys::fs::remove_dir_all_if_present(&self.layout.task_execs_dir(&namespace, &id));
            warn_if_failed("exec directories", &id, removed);
        }
        match self.snapshotter.list_active() {
            Ok(active) => {
                for (namespace, key) in active {
                    if !known_containers.contains(&(namespace.clone(), key.clone())) {
                        warn_if_failed("active snapshot", &key, self.snapshotter.remove_active(&namespace, &key));
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "listing active snapshots failed; orphans among them stay"),
        }
        match self.snapshotter.list_committed() {
            Ok(committed) => {
                for chain_id in committed.into_iter().filter(|chain_id| !known_snapshots.contains(chain_id)) {
                    warn_if_failed("layer snapshot", &chain_id, self.snapshotter.remove_committed(&chain_id));
                }
            }
            Err(error) => tracing::warn!(%error, "listing layer snapshots failed; orphans among them stay"),
        }
        warn_if_failed("snapshot scratch directory", "tmp", self.snapshotter.clean_tmp());
        match self.content.list() {
            Ok(blobs) => {
                for digest in blobs.into_iter().filter(|digest| !known_content.contains(digest)) {
                    warn_if_failed("blob", &digest, self.content.remove(&digest));
                }
            }
            Err(error) => tracing::warn!(%error, "listing blobs failed; orphans among them stay"),
        }
        // Volume directories whose removal was recorded just before berthd stopped.
        let volumes_dir = self.layout.volumes_dir();
        for namespace in list_dir_names(&volumes_dir) {
            for name in list_dir_names(&volumes_dir.join(&namespace)) {
                if self.store.state().volume(&namespace, &name).is_none() {
                    warn_if_failed(
                        "volume directory",
                        &name,
                        crate::tasks::mounts::remove_volume_dir(&self.layout, &namespace, &name),
                    );
                }
            }
        }
        // Uploads and blobs being written when berthd stopped; no import runs yet.
        warn_if_failed("ingest directory", "content/ingest", self.content.clean_ingest());
    }

    async fn record_orphan(&self, namespace: &str, what: &str, id: &str) {
        let origin = Origin::Daemon { reason: "recovery: orphan removed".into(), answers: None };
        let event = Event::OrphanRemoved { what: what.to_string(), id: id.to_string() };
        if let Err(error) =
            self.store.submit(namespace, origin, Command::RecordDaemonEvent(RecordDaemonEvent { event })).await
        {
            tracing::warn!(namespace, what, id, %error, "the orphan was removed but its record was refused");
        }
    }
}

/// Each `<dir>/<namespace>/<id>` whose `(namespace, id)` is not in `known`.
fn unknown_entries(dir: &std::path::Path, known: &BTreeSet<ContainerKey>) -> BTreeSet<ContainerKey> {
    list_dir_names(dir)
        .into_iter()
        .flat_map(|namespace| list_dir_names(&dir.join(&namespace)).into_iter().map(move |id| (namespace.clone(), id)))
        .filter(|key| !known.contains(key))
        .collect()
}

fn warn_if_failed<E: std::fmt::Display>(what: &str, id: &str, result: Result<(), E>) {
    if let Err(error) = result {
        tracing::warn!(what, id, %error, "removing an orphan failed; the next start tries again");
    }
}
