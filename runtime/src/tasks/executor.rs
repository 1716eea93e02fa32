//! The executor: consumes intents in log order and drives the host (snapshots, bundles, the
//! monitor, runc), then records each outcome as a command of its own.
//!
//! Each container has one worker task, so the actions on one container happen in log order
//! while different containers proceed in parallel. Exits observed by the monitor go through the
//! same worker. Every outcome is a `RecordOutcome` command (`outcomes.rs`): the store refuses an
//! outcome for an intent that is no longer pending, which is what keeps a crash between doing
//! the work and recording it from producing a duplicate.
//!
//! On start-up [`Executor::recover`] looks at every task the projections say exists and at the
//! host, finishes or rolls back each intent that has no outcome, re-adopts running containers,
//! records the exits that happened while berthd was down, and removes what nothing accounts for.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_commands::DeleteContainer;
use berth_log::Seq;
use berth_projections::{ContainerRecord, Event, ExitCause, Origin, PendingIntent};
use tokio::sync::mpsc;

use crate::daemon::layout::Layout;
use crate::daemon::store::{CommittedReceiver, CommittedRecord, Store};
use crate::images::content::ContentStore;
use crate::images::snapshot::Snapshotter;
use crate::network::attach::PendingRelease;
use crate::network::spare::TaskNetwork;
use crate::secrets::keys::KeyStore;
use crate::secrets::SecretsPolicy;
use crate::sys::failpoint;
use crate::tasks::cgroup;
use crate::tasks::cgroup_warmup;
use crate::tasks::etc_files;
use crate::tasks::monitor::{self, ExitReport, Launch, MonitorPaths, TaskIo};
use crate::tasks::monitor_standby::MonitorStandby;
use crate::tasks::network_gate::{self, NetworkGate};
use crate::tasks::output_log::OutputLimits;
use crate::tasks::policies;
use crate::tasks::removals_after_delete::ASKING_METHOD;
use crate::tasks::runc::Runc;
use crate::tasks::spec::{self, SpecInput};
use crate::tasks::task_dir::{ExitStatus, MonitorIdentity};

type WorkerKey = (String, String);

/// What the log says is no longer needed on disk.
#[derive(Debug)]
pub(super) enum Garbage {
    Blob(String),
    Snapshot(String),
}

/// Work for one container's worker.
#[derive(Debug)]
pub(super) enum Job {
    /// `start_too`: a create whose record also asks to start the task.
    /// The event is boxed: a `ContainerCreated` is large and most jobs are small.
    Intent {
        seq: Seq,
        event: Box<Event>,
        start_too: bool,
    },
    /// The exit a monitor reported; `monitor_pid` says which task it belongs to, so a late report
    /// from an earlier task of a re-created container is not taken for the current one.
    /// `still_exiting`: the monitor reported it early and is making `exit.json` durable; the
    /// worker waits for it to be gone before a job that empties or removes the container's
    /// directories (its next task's create, its removal), not before the others (the task's
    /// deletion, which a `run --rm` waits for).
    Exited {
        status: ExitStatus,
        monitor_pid: i32,
        still_exiting: Option<MonitorIdentity>,
    },
    /// The exit an exec's monitor reported.
    ExecExited {
        exec_id: String,
        status: ExitStatus,
        still_exiting: Option<MonitorIdentity>,
    },
    ContainerDeleted,
}

pub struct Executor {
    pub(super) store: Arc<Store>,
    pub(super) layout: Layout,
    pub(super) runc_binary: PathBuf,
    pub(super) monitor_binary: PathBuf,
    pub(super) content: Arc<ContentStore>,
    pub(super) snapshotter: Arc<Snapshotter>,
    pub(super) workers: Mutex<HashMap<WorkerKey, mpsc::UnboundedSender<Job>>>,
    /// Shared by imports (from writing blobs and layers until their record is durable) and
    /// taken exclusively to delete them, so a removal never deletes what an import in flight
    /// is about to record as present.
    pub(super) gc_lock: Arc<tokio::sync::RwLock<()>>,
    pub(super) output_limits: OutputLimits,
    /// Containers' secret keys: a record's sealed environment is opened with them only to
    /// write the bundle's spec (`secrets`).
    pub(super) keys: Arc<KeyStore>,
    pub(super) secrets: SecretsPolicy,
    /// CNI: attaches and releases tasks' networks.
    pub(super) network: Arc<crate::network::Networking>,
    /// The next monitor, started ahead of need (`monitor_standby`).
    pub(super) monitor_standby: Arc<MonitorStandby>,
    /// Container removals to record with a task's deletion (`removals_after_delete`).
    pub(super) removals_after_delete: Arc<crate::tasks::removals_after_delete::RemovalsAfterDelete>,
}

impl Executor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        layout: Layout,
        runc_binary: PathBuf,
        monitor_binary: PathBuf,
        content: Arc<ContentStore>,
        snapshotter: Arc<Snapshotter>,
        gc_lock: Arc<tokio::sync::RwLock<()>>,
        output_limits: OutputLimits,
        keys: Arc<KeyStore>,
        secrets: SecretsPolicy,
        network: Arc<crate::network::Networking>,
    ) -> Arc<Executor> {
        Arc::new(Executor {
            store,
            layout,
            runc_binary,
            monitor_standby: MonitorStandby::new(monitor_binary.clone()),
            monitor_binary,
            content,
            snapshotter,
            workers: Mutex::new(HashMap::new()),
            gc_lock,
            output_limits,
            keys,
            secrets,
            network,
            removals_after_delete: Arc::default(),
        })
    }

    pub fn runc(&self, namespace: &str) -> Runc {
        Runc::new(self.runc_binary.clone(), self.layout.runc_root(namespace))
    }

    pub(super) fn monitor_paths(&self, namespace: &str) -> MonitorPaths {
        MonitorPaths {
            monitor_binary: self.monitor_binary.clone(),
            runc: self.runc(namespace),
            output_limits: self.output_limits,
            standby: Some(Arc::clone(&self.monitor_standby)),
        }
    }

    /// Consume committed records forever, dispatching intents to container workers.
    pub async fn run(self: Arc<Self>, mut committed: CommittedReceiver) {
        self.monitor_standby.replenish();
        while let Some(record) = committed.recv().await {
            self.dispatch(&record);
        }
    }

    fn dispatch(self: &Arc<Self>, record: &CommittedRecord) {
        let namespace = &record.envelope.namespace;
        let starts_in_record = |id: &str| {
            record
                .envelope
                .events
                .iter()
                .any(|other| matches!(other, Event::TaskStartRequested { container_id } if container_id == id))
        };
        for event in &record.envelope.events {
            if matches!(event, Event::TaskCreateRequested { .. } | Event::ExecRequested { .. }) {
                // runc will move a process into a cgroup: also for what berthd asks itself
                // (restarts, recovery). After a client's request, which kicked already, this
                // one is folded into that write or keeps its head start open a little longer.
                cgroup_warmup::kick();
            }
            match event {
                Event::TaskCreateRequested { container_id } => {
                    let start_too = starts_in_record(container_id);
                    self.send(
                        namespace,
                        container_id,
                        Job::Intent { seq: record.seq, event: Box::new(event.clone()), start_too },
                    );
                }
                Event::TaskStartRequested { container_id }
                | Event::TaskKillRequested { container_id, .. }
                | Event::TaskDeleteRequested { container_id, .. }
                | Event::ExecRequested { container_id, .. } => {
                    if matches!(event, Event::TaskDeleteRequested { .. }) && asked_by_container_delete(record) {
                        self.removals_after_delete.claim(namespace, container_id, record.seq);
                    }
                    self.send(
                        namespace,
                        container_id,
                        Job::Intent { seq: record.seq, event: Box::new(event.clone()), start_too: false },
                    );
                }
                Event::ContainerDeleted { id } => {
                    self.send(namespace, id, Job::ContainerDeleted);
                    self.forget_secrets_if_asked(namespace, id, record.seq);
                }
                // A container has a restart policy or auto-removal, never both (`CreateContainer`
                // refuses that): each of these acts only on its own.
                Event::TaskExited { container_id, .. } => {
                    self.consider_restart(namespace, container_id);
                    self.auto_remove_if_asked(namespace, container_id);
                }
                Event::TaskCreateFailed { container_id, .. } | Event::TaskStartFailed { container_id, .. } => {
                    self.consider_restart(namespace, container_id)
                }
                Event::TaskDeleted { container_id, .. } => self.continue_restart(namespace, container_id),
                Event::ContentRemoved { digest } => self.collect_garbage(Garbage::Blob(digest.clone())),
                Event::SnapshotRemoved { chain_id } => self.collect_garbage(Garbage::Snapshot(chain_id.clone())),
                Event::VolumeRemoved { name } => self.remove_volume(namespace, name),
                _ => {}
            }
        }
    }

    /// Delete a blob or layer snapshot the log no longer records (a removal or prune recorded
    /// it gone, `berth_commands::references` decided which), unless an import recorded it
    /// again meanwhile (imports hold `gc_lock` shared until their record is durable).
    fn collect_garbage(self: &Arc<Self>, garbage: Garbage) {
        let executor = Arc::clone(self);
        tokio::spawn(async move {
            if let Garbage::Snapshot(chain_id) = &garbage {
                executor.wait_while_layer_mounted(chain_id).await;
            }
            // Under the lock: the check, and making the thing unnameable (a blob's unlink, a
            // layer's rename into `snapshots/tmp`). The long part, deleting a layer's tree, runs
            // after it, so an import or pull is not held up for as long as a big layer takes
            // to delete. Both run on blocking threads: a tree of thousands of files takes
            // seconds on a busy disk.
            let moved_aside = {
                let _exclusive = executor.gc_lock.write().await;
                let recorded_again = {
                    let state = executor.store.state();
                    match &garbage {
                        Garbage::Blob(digest) => state.content.contains_key(digest),
                        Garbage::Snapshot(chain_id) => state.snapshots.contains_key(chain_id),
                    }
                };
                if recorded_again {
                    return;
                }
                // Recorded as removed, not yet deleted: the start-up clean-up deletes what no
                // projection accounts for, so a crash here loses nothing and leaves nothing.
                failpoint("collection-recorded");
                let content = Arc::clone(&executor.content);
                let snapshotter = Arc::clone(&executor.snapshotter);
                let garbage_for_thread = format!("{garbage:?}");
                let result = tokio::task::spawn_blocking(move || match garbage {
                    Garbage::Blob(digest) => content.remove(&digest).map(|()| None).map_err(|error| error.to_string()),
                    Garbage::Snapshot(chain_id) => {
                        snapshotter.move_committed_aside(&chain_id).map_err(|error| error.to_string())
                    }
                })
                .await
                .unwrap_or_else(|join_error| Err(join_error.to_string()));
                match result {
                    Ok(moved_aside) => moved_aside,
                    Err(error) => {
                        tracing::warn!(garbage = garbage_for_thread, %error, "removing it failed; start-up clean-up retries");
                        return;
                    }
                }
            };
            if let Some(doomed) = moved_aside {
                let snapshotter = Arc::clone(&executor.snapshotter);
                let deleted = tokio::task::spawn_blocking(move || snapshotter.delete_moved_aside(&doomed))
                    .await
                    .map_err(|join_error| join_error.to_string())
                    .and_then(|result| result.map_err(|error| error.to_string()));
                if let Err(error) = deleted {
                    tracing::warn!(%error, "deleting a removed layer failed; start-up clean-up retries");
                }
            }
        });
    }

    pub(super) fn send(self: &Arc<Self>, namespace: &str, container_id: &str, job: Job) {
        let key = (namespace.to_string(), container_id.to_string());
        let mut workers = self.workers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let sender = workers.entry(key.clone()).or_insert_with(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let executor = Arc::clone(self);
            tokio::spawn(async move { executor.worker(key, receiver).await });
            sender
        });
        if sender.send(job).is_err() {
            tracing::error!(namespace, container_id, "container worker is gone; its job is dropped");
        }
    }

    async fn worker(self: Arc<Self>, key: WorkerKey, mut jobs: mpsc::UnboundedReceiver<Job>) {
        let (namespace, container_id) = key.clone();
        // Monitors that reported their exit early and may still be writing exit.json.
        let mut exiting: Vec<MonitorIdentity> = Vec::new();
        while let Some(job) = jobs.recv().await {
            let empties_directories = match &job {
                Job::Intent { event, .. } => matches!(**event, Event::TaskCreateRequested { .. }),
                Job::ContainerDeleted => true,
                Job::Exited { .. } | Job::ExecExited { .. } => false,
            };
            if empties_directories {
                for monitor in exiting.drain(..) {
                    monitor::wait_for_monitor_to_go(&monitor).await;
                }
            }
            match job {
                Job::Intent { seq, event, start_too } => {
                    if self.intent_pending(&namespace, &container_id, seq, &event) {
                        let still_exiting = self.handle_intent(&namespace, &container_id, seq, *event, start_too).await;
                        exiting.extend(still_exiting);
                    }
                }
                Job::Exited { status, monitor_pid, still_exiting } => {
                    let current_monitor = self
                        .store
                        .state()
                        .container(&namespace, &container_id)
                        .and_then(|container| container.task.as_ref().map(|task| task.monitor_pid));
                    if current_monitor == Some(monitor_pid) {
                        self.record_exit(&namespace, &container_id, status).await;
                    } else {
                        tracing::debug!(
                            container_id,
                            monitor_pid,
                            ?current_monitor,
                            "exit of an earlier task; ignored"
                        );
                    }
                    exiting.extend(still_exiting);
                }
                Job::ExecExited { exec_id, status, still_exiting } => {
                    self.record_exec_exit(&namespace, &container_id, &exec_id, status).await;
                    exiting.extend(still_exiting);
                }
                Job::ContainerDeleted => {
                    self.remove_container_files(&namespace, &container_id);
                    // Retire, unless a container with the same id was already created and has
                    // work queued behind this job. Senders hold the map lock while sending, so
                    // an empty queue seen under it stays empty once the entry is gone.
                    let mut workers = self.workers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if jobs.is_empty() {
                        workers.remove(&key);
                        return;
                    }
                }
            }
        }
    }

    fn container_record(&self, namespace: &str, container_id: &str) -> Option<ContainerRecord> {
        self.store.state().container(namespace, container_id).map(|container| container.record.clone())
    }

    /// Whether the intent recorded at `seq` still waits for its outcome (it may have been
    /// answered already: by recovery, or together with the create it was recorded with).
    fn intent_pending(&self, namespace: &str, container_id: &str, seq: Seq, event: &Event) -> bool {
        let state = self.store.state();
        let Some(task) = state.container(namespace, container_id).and_then(|container| container.task.as_ref()) else {
            return false;
        };
        task.pending.iter().any(|intent| {
            intent.seq() == seq
                && matches!(
                    (intent, event),
                    (PendingIntent::Create { .. }, Event::TaskCreateRequested { .. })
                        | (PendingIntent::Start { .. }, Event::TaskStartRequested { .. })
                        | (PendingIntent::Kill { .. }, Event::TaskKillRequested { .. })
                        | (PendingIntent::Delete { .. }, Event::TaskDeleteRequested { .. })
                        | (PendingIntent::Exec { .. }, Event::ExecRequested { .. })
                )
        })
    }

    /// Carries out an intent and records its outcome. Returns a monitor that reported its
    /// process's exit with its readiness and may still be writing `exit.json`.
    async fn handle_intent(
        self: &Arc<Self>,
        namespace: &str,
        container_id: &str,
        seq: Seq,
        event: Event,
        start_too: bool,
    ) -> Option<MonitorIdentity> {
        tracing::debug!(container_id, seq = seq.get(), kind = event.kind(), start_too, "intent");
        match event {
            Event::TaskCreateRequested { .. } => {
                let outcome = match self.create_task(namespace, container_id, seq, start_too).await {
                    Ok((monitor, mut exit_report, attachment)) => {
                        failpoint("task-created");
                        let network_name = attachment.as_ref().map(|attachment| attachment.network.clone());
                        let mut events: Vec<Event> = attachment
                            .into_iter()
                            .map(|attachment| Event::NetworkAttached {
                                container_id: container_id.to_string(),
                                attachment,
                            })
                            .collect();
                        events.push(Event::TaskCreated {
                            container_id: container_id.to_string(),
                            pid: monitor.init_pid,
                            monitor_pid: monitor.monitor_pid,
                        });
                        let mut already_exited = false;
                        if start_too {
                            events.push(Event::TaskStarted {
                                container_id: container_id.to_string(),
                                pid: monitor.init_pid,
                            });
                            // A short process may have ended while runc was still starting it: its
                            // exit goes into the same record, and there is nothing left to watch.
                            let exit = exit_report
                                .take_if_reported()
                                .or_else(|| self.layout.task_dir(namespace, container_id).exit_status());
                            if let Some(status) = exit {
                                let cause = self.exit_cause(namespace, container_id, &status);
                                events.push(exit_event(container_id, status, cause));
                                already_exited = true;
                            }
                        }
                        let reason = if start_too { "task created and started" } else { "task created" };
                        let recorded = self.record_together(namespace, Some(seq), reason, events).await;
                        if recorded {
                            if let Some(network) = network_name {
                                self.refresh_peer_hosts(namespace, &network);
                            }
                        }
                        if already_exited {
                            return Some(monitor);
                        }
                        if recorded {
                            self.watch_exit(namespace, container_id, monitor, Some(exit_report));
                        }
                        return None;
                    }
                    Err(error) => {
                        self.roll_back_create(namespace, container_id).await;
                        Event::TaskCreateFailed { container_id: container_id.to_string(), error }
                    }
                };
                self.record(namespace, Some(seq), "task create failed", outcome).await;
            }
            Event::TaskStartRequested { .. } => {
                let outcome = match self.runc(namespace).start(container_id).await {
                    Ok(()) => {
                        failpoint("task-started");
                        let pid = self
                            .store
                            .state()
                            .container(namespace, container_id)
                            .and_then(|container| container.task.as_ref().map(|task| task.pid))
                            .unwrap_or_default();
                        Event::TaskStarted { container_id: container_id.to_string(), pid }
                    }
                    Err(error) => {
                        Event::TaskStartFailed { container_id: container_id.to_string(), error: error.to_string() }
                    }
                };
                self.record(namespace, Some(seq), "task start", outcome).await;
            }
            Event::TaskKillRequested { signal, all, .. } => {
                let outcome = match self.runc(namespace).kill(container_id, signal, all).await {
                    Ok(()) => Event::TaskKillDelivered { container_id: container_id.to_string(), signal },
                    Err(error) => Event::TaskKillFailed {
                        container_id: container_id.to_string(),
                        signal,
                        error: error.to_string(),
                    },
                };
                self.record(namespace, Some(seq), "task kill", outcome).await;
            }
            Event::TaskDeleteRequested { force, .. } => {
                let (outcome, network, release) = match self.delete_task(namespace, container_id, force).await {
                    Ok((exit_code, release)) => {
                        let network = release.network.clone();
                        let deleted = Event::TaskDeleted { container_id: container_id.to_string(), exit_code };
                        (deleted, network, Some(release))
                    }
                    Err(error) => {
                        (Event::TaskDeleteFailed { container_id: container_id.to_string(), error }, None, None)
                    }
                };
                // A published host port is free once `rm` returns: its DEL runs before the
                // deletion is recorded, and its `NetworkDetached` goes into the same record.
                // Other releases run after the record.
                let (detached, release) = match release {
                    Some(release) if release.publishes_ports => {
                        (self.release_network_now(namespace, container_id, release).await, None)
                    }
                    other => (None, other),
                };
                let deleted = matches!(outcome, Event::TaskDeleted { .. });
                let events: Vec<Event> = detached.into_iter().chain([outcome]).collect();
                // A `Containers/Delete` that asked for this delete removes the container in the
                // same record; should that be refused, the deletion is recorded alone and the
                // API removes the container itself.
                let then_remove = self
                    .removals_after_delete
                    .take(seq)
                    .filter(|_| deleted)
                    .map(|remove_volumes| DeleteContainer { id: container_id.to_string(), remove_volumes });
                let recorded = match then_remove {
                    Some(remove) => {
                        let reason = "task delete, then the container's removal it was asked with";
                        self.record_outcome(namespace, Some(seq), reason, events.clone(), Some(remove)).await
                            || self.record_together(namespace, Some(seq), "task delete", events).await
                    }
                    None => self.record_together(namespace, Some(seq), "task delete", events).await,
                };
                // The rootfs unmount (the kernel syncs the writable layer's file system as the
                // overlay goes) and the bundle's removal come after the record, off the client's
                // wait. This worker does them before any later job of the container (its next
                // task, its removal); a crash in between leaves a bundle start-up removes.
                if deleted {
                    failpoint("task-delete-recorded");
                    self.remove_bundle(namespace, container_id);
                }
                if let Some(network) = network.filter(|_| recorded) {
                    self.refresh_peer_hosts(namespace, &network);
                }
                if let Some(release) = release {
                    self.release_network_in_background(namespace, container_id, release);
                }
            }
            Event::ExecRequested { exec_id, process, .. } => {
                return self.start_exec(namespace, container_id, seq, &exec_id, &process).await;
            }
            other => tracing::warn!(kind = other.kind(), "not an intent; ignored"),
        }
        None
    }

    /// Prepare the rootfs and bundle, and start the monitor, which runs `runc create`.
    async fn create_task(
        &self,
        namespace: &str,
        container_id: &str,
        intent_seq: Seq,
        start_too: bool,
    ) -> Result<(MonitorIdentity, ExitReport, Option<berth_projections::NetworkAttachment>), String> {
        let record = self
            .container_record(namespace, container_id)
            .ok_or_else(|| format!("container {container_id:?} vanished before its task was created"))?;
        let bundle = self.layout.bundle_dir(namespace, container_id);
        let rootfs = bundle.join("rootfs");
        crate::sys::fs::create_private_dir_all(&rootfs)
            .map_err(|error| format!("cannot create bundle {}: {error}", bundle.display()))?;
        let active = self
            .snapshotter
            .prepare_active(namespace, &record.snapshot_key, &record.lowers)
            .map_err(|error| format!("cannot prepare the container's snapshot: {error}"))?;
        self.snapshotter.mount(&active, &rootfs).map_err(|error| format!("cannot mount the rootfs: {error}"))?;
        let input = SpecInput {
            args: record.args.clone(),
            env: self.keys.container_environment(namespace, &record).map_err(|error| error.to_string())?,
            working_dir: record.working_dir.clone(),
            user: record.user.clone(),
            hostname: record.hostname.clone(),
            cgroups_path: self.layout.cgroups_path(namespace, container_id),
            terminal: record.tty,
        };
        let mut runtime_spec = spec::generate_spec(&input, &rootfs).map_err(|error| error.to_string())?;
        policies::apply_policies(&mut runtime_spec, &record.policies, &rootfs).map_err(|error| error.to_string())?;
        let network = self.prepare_network(namespace, &record, &mut runtime_spec).await?;
        // `hosts` names the task's address: the spare's now, or once ADD gave one (`attach_beside_create`).
        let (network_name, address) =
            (network.as_ref().map(TaskNetwork::network), network.as_ref().and_then(TaskNetwork::address));
        self.write_task_etc_files(namespace, &record, &bundle, network_name, address)
            .map_err(|error| format!("cannot write /etc files into the bundle {}: {error}", bundle.display()))?;
        let mut mounts = runtime_spec.mounts().clone().unwrap_or_default();
        mounts.extend(etc_files::etc_mounts(&bundle).map_err(|error| error.to_string())?);
        mounts.extend(
            crate::tasks::mounts::container_mounts(&self.layout, namespace, &record, &rootfs)
                .map_err(|error| error.to_string())?,
        );
        runtime_spec.set_mounts(Some(mounts));
        if record.read_only_rootfs {
            if let Some(root) = runtime_spec.root_mut() {
                root.set_readonly(Some(true));
            }
        }
        // A task dir left by an earlier task of this container holds its old exit status.
        let earlier = self.layout.task_dir(namespace, container_id);
        earlier
            .remove()
            .map_err(|error| format!("cannot empty the task directory {}: {error}", earlier.path().display()))?;
        // Asked again: one an older berth laid out under the root alone is gone now.
        let task_dir = self.layout.task_dir(namespace, container_id);
        // So are the exec directories of an earlier task (they live under the state directory).
        let execs_dir = self.layout.task_execs_dir(namespace, container_id);
        crate::sys::fs::remove_dir_all_if_present(&execs_dir)
            .map_err(|error| format!("cannot empty the exec directories {}: {error}", execs_dir.display()))?;
        // A task on a CNI network: its attach to finish, and the gate its process waits at.
        let (gated, attached) = match network {
            Some(TaskNetwork::Prepared(prepared)) => {
                let gate = NetworkGate::open(&task_dir).map_err(|error| {
                    format!("cannot make the network gate in {}: {error}", task_dir.path().display())
                })?;
                network_gate::add_hook(&mut runtime_spec, &self.monitor_binary, gate.path())?;
                (Some((prepared, gate)), None)
            }
            Some(TaskNetwork::Attached(attachment)) => (None, Some(attachment)),
            None => (None, None),
        };
        spec::write_bundle(&bundle, &runtime_spec).map_err(|error| error.to_string())?;
        let stdin_fifo = if record.open_stdin {
            Some(crate::tasks::stdin::make_stdin_fifo(&task_dir).map_err(|error| error.to_string())?)
        } else {
            None
        };
        if record.tty {
            crate::tasks::console::make_resize_fifo(&task_dir).map_err(|error| error.to_string())?;
        }
        tracing::debug!(container_id, "bundle ready; starting the monitor");
        let launch = if start_too { Launch::CreateAndStart } else { Launch::Create };
        let monitor_paths = self.monitor_paths(namespace);
        let task_io = TaskIo { stdin_fifo, tty: record.tty };
        let spawn = async {
            monitor::spawn_monitor(&monitor_paths, container_id, &bundle, &task_dir, launch, intent_seq, &task_io)
                .await
                .map_err(|error| error.to_string())
        };
        let ((monitor, exit_report), attachment) = match gated {
            Some((prepared, gate)) => {
                let (spawned, attachment) =
                    self.attach_beside_create(namespace, &record, &bundle, prepared, gate, spawn).await?;
                (spawned, Some(attachment))
            }
            None => (spawn.await?, attached),
        };
        tracing::debug!(container_id, "monitor reported");
        Ok((monitor, exit_report, attachment))
    }

    /// Undo whatever a failed or interrupted create left: the runc container, the mount, the
    /// bundle. Idempotent.
    pub(super) async fn roll_back_create(&self, namespace: &str, container_id: &str) {
        if let Err(error) = self.runc(namespace).delete(container_id, true).await {
            tracing::warn!(container_id, %error, "runc delete during roll-back failed");
        }
        // Nothing was recorded of the attachment (it goes into the create's record).
        self.release_network(namespace, container_id).await;
        self.remove_bundle(namespace, container_id);
    }

    pub(super) fn remove_bundle(&self, namespace: &str, container_id: &str) {
        let bundle = self.layout.bundle_dir(namespace, container_id);
        if let Err(error) = Snapshotter::unmount(&bundle.join("rootfs")) {
            tracing::warn!(container_id, %error, "unmounting the rootfs failed");
        }
        if let Err(error) = std::fs::remove_dir_all(&bundle) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(container_id, %error, "removing the bundle failed; start-up clean-up retries");
            }
        }
    }

    /// runc delete (the caller unmounts and removes the bundle once the deletion is recorded). A
    /// live task is killed first when forced.
    /// The exit code is `None` for a task that never ran: there is none to report. With it, the
    /// task's network, held for its release once the deletion is recorded.
    async fn delete_task(
        &self,
        namespace: &str,
        container_id: &str,
        force: bool,
    ) -> Result<(Option<i32>, PendingRelease), String> {
        let task = self.store.state().container(namespace, container_id).and_then(|container| container.task.clone());
        let mut exit_code = task.as_ref().and_then(|task| task.exit.map(|exit| exit.exit_code));
        let runc = self.runc(namespace);
        let task_dir = self.layout.task_dir(namespace, container_id);
        if force && task.as_ref().is_some_and(|task| task.exit.is_none()) {
            if let Some(monitor) = task_dir.monitor_identity() {
                if monitor.is_alive() {
                    if let Err(error) = runc.kill(container_id, libc::SIGKILL, true).await {
                        tracing::warn!(container_id, %error, "SIGKILL for a forced delete failed; waiting for the exit anyway");
                    }
                    let status = monitor::wait_exit(&task_dir, &monitor).await;
                    exit_code = Some(status.code);
                    // Recorded here because this worker is busy with the delete; the exit
                    // watcher's own report will then be refused as already recorded.
                    self.record_exit(namespace, container_id, status).await;
                }
            }
        }
        // The init has exited by now in every case but a failed forced kill, which
        // delete_exited hands to `runc delete --force`.
        runc.delete_exited(container_id).await.map_err(|error| error.to_string())?;
        let attachment = task.as_ref().and_then(|task| task.network.as_ref());
        let release = self.hold_network_for_release(namespace, container_id, attachment).await;
        failpoint("task-deleted");
        Ok((exit_code, release))
    }

    fn remove_container_files(&self, namespace: &str, container_id: &str) {
        self.remove_bundle(namespace, container_id);
        if let Err(error) = self.snapshotter.remove_active(namespace, container_id) {
            tracing::warn!(container_id, %error, "removing the container's snapshot failed; start-up clean-up retries");
        }
        if let Err(error) = self.layout.task_dir(namespace, container_id).remove() {
            tracing::warn!(container_id, %error, "removing the task directory failed; start-up clean-up retries");
        }
        if let Err(error) =
            crate::sys::fs::remove_dir_all_if_present(&self.layout.task_execs_dir(namespace, container_id))
        {
            tracing::warn!(container_id, %error, "removing the exec directories failed; start-up clean-up retries");
        }
    }

    /// Waits for the task's exit: the monitor's early report when berthd has its pipe
    /// (`exit_report`, only for a monitor this berthd started), else the monitor's end.
    pub(super) fn watch_exit(
        self: &Arc<Self>,
        namespace: &str,
        container_id: &str,
        monitor: MonitorIdentity,
        exit_report: Option<ExitReport>,
    ) {
        let executor = Arc::clone(self);
        let namespace = namespace.to_string();
        let container_id = container_id.to_string();
        let task_dir = self.layout.task_dir(&namespace, &container_id);
        tokio::spawn(async move {
            let monitor_pid = monitor.monitor_pid;
            let (status, still_exiting) = monitor::await_exit(exit_report, &task_dir, monitor).await;
            if still_exiting.is_none() && task_dir.exit_status().is_none() {
                // The monitor died without recording an exit: the container may still run,
                // with nothing left to report its end. Stop it.
                tracing::warn!(namespace, container_id, "the task's monitor died; killing the container it watched");
                if let Err(error) = executor.runc(&namespace).kill(&container_id, libc::SIGKILL, true).await {
                    tracing::error!(namespace, container_id, %error, "could not kill the container its dead monitor watched");
                }
            }
            executor.send(&namespace, &container_id, Job::Exited { status, monitor_pid, still_exiting });
        });
    }

    pub(super) async fn record_exit(&self, namespace: &str, container_id: &str, status: ExitStatus) {
        let cause = self.exit_cause(namespace, container_id, &status);
        self.record(namespace, None, "task exited", exit_event(container_id, status, cause)).await;
    }

    /// Why a task ended, for the log: without an `exit.json` its monitor was lost (and the code
    /// is made up); with OOM kills counted in its memory cgroup, the OOM killer ended it (or a
    /// process in it). Read before the task is deleted, while the cgroup still exists.
    pub(super) fn exit_cause(&self, namespace: &str, container_id: &str, status: &ExitStatus) -> ExitCause {
        // The monitor's own word (its early report names it; exit.json, from monitors that
        // predate the field, may not): anything else was made up for a lost monitor.
        let from_monitor =
            status.monitor_pid.is_some() || self.layout.task_dir(namespace, container_id).exit_status().is_some();
        if !from_monitor {
            return ExitCause::MonitorLost;
        }
        match cgroup::oom_kill_count(&self.layout.cgroups_path(namespace, container_id)) {
            Some(n_kills) if n_kills > 0 => ExitCause::OomKilled,
            _ => ExitCause::Exited,
        }
    }
}

/// Whether a client's `Containers/Delete` recorded this (with `delete_task`).
fn asked_by_container_delete(record: &CommittedRecord) -> bool {
    matches!(&record.envelope.origin, Origin::Client { method, .. } if method == ASKING_METHOD)
}

pub(super) fn exit_event(container_id: &str, status: ExitStatus, cause: ExitCause) -> Event {
    Event::TaskExited {
        container_id: container_id.to_string(),
        exit_code: status.code,
        signal: status.signal,
        exited_at_ns: status.exited_at_ns,
        cause,
    }
}
