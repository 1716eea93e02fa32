//! The executor: consumes intents in log order and drives the host (snapshots, bundles, the
//! monitor, runc), then records each outcome as a command of its own.
//!
//! Each container has one worker task, so the actions on one container happen in log order
//! while different containers proceed in parallel. Exits observed by the monitor go through the
//! same worker. Every outcome is a `RecordOutcome` command: the store refuses an outcome for an
//! intent that is no longer pending, which is what keeps a crash between doing the work and
//! recording it from producing a duplicate.
//!
//! On start-up [`Executor::recover`] looks at every task the projections say exists and at the
//! host, finishes or rolls back each intent that has no outcome, re-adopts running containers,
//! records the exits that happened while berthd was down, and removes what nothing accounts for.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_commands::{Command, RecordOutcome};
use berth_projections::{ContainerRecord, Event, Origin, PendingIntent, TaskStatus};
use tokio::sync::mpsc;

use crate::config::Layout;
use crate::content::ContentStore;
use crate::failpoint;
use crate::monitor::{self, MonitorPaths, ShimState};
use crate::runc::Runc;
use crate::snapshot::Snapshotter;
use crate::spec::{self, SpecInput};
use crate::store::{CommittedReceiver, CommittedRecord, Store, SubmitError};

type WorkerKey = (String, String);

/// What the log says is no longer needed on disk.
#[derive(Debug)]
enum Garbage {
    Blob(String),
    Snapshot(String),
}

/// Work for one container's worker.
#[derive(Debug)]
enum Job {
    /// `start_too`: a create whose record also asks to start the task.
    Intent { seq: u64, event: Event, start_too: bool },
    /// The exit a monitor reported; `shim_pid` says which task it belongs to, so a late report
    /// from an earlier task of a re-created container is not taken for the current one.
    Exited { status: monitor::ExitStatus, shim_pid: i32 },
    ContainerDeleted,
}

pub struct Executor {
    store: Arc<Store>,
    layout: Layout,
    runc_binary: PathBuf,
    shim_binary: PathBuf,
    content: Arc<ContentStore>,
    snapshotter: Arc<Snapshotter>,
    workers: Mutex<HashMap<WorkerKey, mpsc::UnboundedSender<Job>>>,
    /// Shared by imports (from writing blobs and layers until their record is durable) and
    /// taken exclusively to delete them, so a removal never deletes what an import in flight
    /// is about to record as present.
    gc_lock: Arc<tokio::sync::RwLock<()>>,
}

impl Executor {
    pub fn new(
        store: Arc<Store>,
        layout: Layout,
        runc_binary: PathBuf,
        shim_binary: PathBuf,
        content: Arc<ContentStore>,
        snapshotter: Arc<Snapshotter>,
        gc_lock: Arc<tokio::sync::RwLock<()>>,
    ) -> Arc<Executor> {
        Arc::new(Executor {
            store,
            layout,
            runc_binary,
            shim_binary,
            content,
            snapshotter,
            workers: Mutex::new(HashMap::new()),
            gc_lock,
        })
    }

    pub fn runc(&self, namespace: &str) -> Runc {
        Runc::new(self.runc_binary.clone(), self.layout.runc_root(namespace))
    }

    fn monitor_paths(&self, namespace: &str) -> MonitorPaths {
        MonitorPaths { shim_binary: self.shim_binary.clone(), runc: self.runc(namespace) }
    }

    /// Consume committed records forever, dispatching intents to container workers.
    pub async fn run(self: Arc<Self>, mut committed: CommittedReceiver) {
        while let Some(record) = committed.recv().await {
            self.dispatch(&record);
        }
    }

    fn dispatch(self: &Arc<Self>, record: &CommittedRecord) {
        let namespace = &record.envelope.namespace;
        let starts_in_record = |id: &str| {
            record.envelope.events.iter().any(|other| matches!(other, Event::TaskStartRequested { container_id } if container_id == id))
        };
        for event in &record.envelope.events {
            match event {
                Event::TaskCreateRequested { container_id } => {
                    let start_too = starts_in_record(container_id);
                    self.send(namespace, container_id, Job::Intent { seq: record.seq, event: event.clone(), start_too });
                }
                Event::TaskStartRequested { container_id }
                | Event::TaskKillRequested { container_id, .. }
                | Event::TaskDeleteRequested { container_id, .. } => {
                    self.send(namespace, container_id, Job::Intent { seq: record.seq, event: event.clone(), start_too: false });
                }
                Event::ContainerDeleted { id } => self.send(namespace, id, Job::ContainerDeleted),
                Event::ContentRemoved { digest } => self.collect_garbage(Garbage::Blob(digest.clone())),
                Event::SnapshotRemoved { chain_id } => self.collect_garbage(Garbage::Snapshot(chain_id.clone())),
                _ => {}
            }
        }
    }

    /// Delete a blob or layer snapshot the log no longer records, unless an import recorded it
    /// again meanwhile (imports hold `gc_lock` shared until their record is durable).
    fn collect_garbage(self: &Arc<Self>, garbage: Garbage) {
        let executor = Arc::clone(self);
        tokio::spawn(async move {
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
            let result = match &garbage {
                Garbage::Blob(digest) => executor.content.remove(digest).map_err(|error| error.to_string()),
                Garbage::Snapshot(chain_id) => executor.snapshotter.remove_committed(chain_id).map_err(|error| error.to_string()),
            };
            if let Err(error) = result {
                tracing::warn!(?garbage, %error, "removing it failed; start-up clean-up retries");
            }
        });
    }

    fn send(self: &Arc<Self>, namespace: &str, container_id: &str, job: Job) {
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
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Intent { seq, event, start_too } => {
                    if self.intent_pending(&namespace, &container_id, seq, &event) {
                        self.handle_intent(&namespace, &container_id, seq, event, start_too).await;
                    }
                }
                Job::Exited { status, shim_pid } => {
                    let current_shim = self
                        .store
                        .state()
                        .container(&namespace, &container_id)
                        .and_then(|container| container.task.as_ref().map(|task| task.shim_pid));
                    if current_shim == Some(shim_pid) {
                        self.record_exit(&namespace, &container_id, status).await;
                    } else {
                        tracing::debug!(container_id, shim_pid, ?current_shim, "exit of an earlier task; ignored");
                    }
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
    fn intent_pending(&self, namespace: &str, container_id: &str, seq: u64, event: &Event) -> bool {
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
                )
        })
    }

    async fn handle_intent(self: &Arc<Self>, namespace: &str, container_id: &str, seq: u64, event: Event, start_too: bool) {
        tracing::debug!(container_id, seq, kind = event.kind(), start_too, "intent");
        match event {
            Event::TaskCreateRequested { .. } => {
                let outcome = match self.create_task(namespace, container_id, seq, start_too).await {
                    Ok(shim) => {
                        failpoint("task-created");
                        let mut events = vec![Event::TaskCreated {
                            container_id: container_id.to_string(),
                            pid: shim.init_pid,
                            shim_pid: shim.shim_pid,
                        }];
                        let mut already_exited = false;
                        if start_too {
                            events.push(Event::TaskStarted { container_id: container_id.to_string(), pid: shim.init_pid });
                            // A short process may have ended while runc was still starting it: its
                            // exit goes into the same record, and there is nothing left to watch.
                            if let Some(status) = monitor::read_exit(&self.layout.task_dir(namespace, container_id)) {
                                events.push(exit_event(container_id, status));
                                already_exited = true;
                            }
                        }
                        let reason = if start_too { "task created and started" } else { "task created" };
                        if self.record_together(namespace, Some(seq), reason, events).await && !already_exited {
                            self.watch_exit(namespace, container_id, shim);
                        }
                        return;
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
                        let pid = self.store.state().container(namespace, container_id)
                            .and_then(|container| container.task.as_ref().map(|task| task.pid))
                            .unwrap_or_default();
                        Event::TaskStarted { container_id: container_id.to_string(), pid }
                    }
                    Err(error) => Event::TaskStartFailed { container_id: container_id.to_string(), error: error.to_string() },
                };
                self.record(namespace, Some(seq), "task start", outcome).await;
            }
            Event::TaskKillRequested { signal, all, .. } => {
                let outcome = match self.runc(namespace).kill(container_id, signal, all).await {
                    Ok(()) => Event::TaskKillDelivered { container_id: container_id.to_string(), signal },
                    Err(error) => {
                        Event::TaskKillFailed { container_id: container_id.to_string(), signal, error: error.to_string() }
                    }
                };
                self.record(namespace, Some(seq), "task kill", outcome).await;
            }
            Event::TaskDeleteRequested { force, .. } => {
                let outcome = match self.delete_task(namespace, container_id, force).await {
                    Ok(exit_code) => Event::TaskDeleted { container_id: container_id.to_string(), exit_code },
                    Err(error) => Event::TaskDeleteFailed { container_id: container_id.to_string(), error },
                };
                self.record(namespace, Some(seq), "task delete", outcome).await;
            }
            other => tracing::warn!(kind = other.kind(), "not an intent; ignored"),
        }
    }

    /// Prepare the rootfs and bundle, and start the monitor, which runs `runc create`.
    async fn create_task(&self, namespace: &str, container_id: &str, intent_seq: u64, start_too: bool) -> Result<ShimState, String> {
        let record = self
            .container_record(namespace, container_id)
            .ok_or_else(|| format!("container {container_id:?} vanished before its task was created"))?;
        let bundle = self.layout.bundle_dir(namespace, container_id);
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(|error| format!("cannot create bundle {}: {error}", bundle.display()))?;
        let active = self
            .snapshotter
            .prepare_active(namespace, &record.snapshot_key, &record.lowers)
            .map_err(|error| format!("cannot prepare the container's snapshot: {error}"))?;
        self.snapshotter.mount(&active, &rootfs).map_err(|error| format!("cannot mount the rootfs: {error}"))?;
        let input = SpecInput {
            args: record.args.clone(),
            env: record.env.clone(),
            working_dir: record.working_dir.clone(),
            user: record.user.clone(),
            hostname: record.hostname.clone(),
            cgroups_path: self.layout.cgroups_path(namespace, container_id),
        };
        let runtime_spec = spec::generate_spec(&input, &rootfs).map_err(|error| error.to_string())?;
        spec::write_bundle(&bundle, &runtime_spec).map_err(|error| error.to_string())?;
        let task_dir = self.layout.task_dir(namespace, container_id);
        // A task dir left by an earlier task of this container holds its old exit status.
        let _ = std::fs::remove_dir_all(&task_dir);
        tracing::debug!(container_id, "bundle ready; starting the monitor");
        let shim = monitor::spawn_shim_and_start(&self.monitor_paths(namespace), container_id, &bundle, &task_dir, start_too, intent_seq)
            .await
            .map_err(|error| error.to_string());
        tracing::debug!(container_id, ok = shim.is_ok(), "monitor reported");
        shim
    }

    /// Undo whatever a failed or interrupted create left: the runc container, the mount, the
    /// bundle. Idempotent.
    async fn roll_back_create(&self, namespace: &str, container_id: &str) {
        if let Err(error) = self.runc(namespace).delete(container_id, true).await {
            tracing::warn!(container_id, %error, "runc delete during roll-back failed");
        }
        self.remove_bundle(namespace, container_id);
    }

    fn remove_bundle(&self, namespace: &str, container_id: &str) {
        let bundle = self.layout.bundle_dir(namespace, container_id);
        if let Err(error) = Snapshotter::unmount(&bundle.join("rootfs")) {
            tracing::warn!(container_id, %error, "unmounting the rootfs failed");
        }
        let _ = std::fs::remove_dir_all(&bundle);
    }

    /// runc delete, unmount, remove the bundle. A live task is killed first when forced.
    async fn delete_task(&self, namespace: &str, container_id: &str, force: bool) -> Result<i32, String> {
        let task = self
            .store
            .state()
            .container(namespace, container_id)
            .and_then(|container| container.task.clone());
        let mut exit_code = task.as_ref().and_then(|task| task.exit.map(|exit| exit.exit_code)).unwrap_or(0);
        let runc = self.runc(namespace);
        let task_dir = self.layout.task_dir(namespace, container_id);
        if force && task.as_ref().is_some_and(|task| task.exit.is_none()) {
            if let Some(shim) = monitor::read_shim_state(&task_dir) {
                if monitor::shim_alive(&shim) {
                    let _ = runc.kill(container_id, libc::SIGKILL, true).await;
                    let status = monitor::wait_exit(&task_dir, &shim).await;
                    exit_code = status.code;
                    // Recorded here because this worker is busy with the delete; the exit
                    // watcher's own report will then be refused as already recorded.
                    self.record_exit(namespace, container_id, status).await;
                }
            }
        }
        // The init has exited by now in every case but a failed forced kill, which
        // delete_exited hands to `runc delete --force`.
        runc.delete_exited(container_id).await.map_err(|error| error.to_string())?;
        self.remove_bundle(namespace, container_id);
        failpoint("task-deleted");
        Ok(exit_code)
    }

    fn remove_container_files(&self, namespace: &str, container_id: &str) {
        self.remove_bundle(namespace, container_id);
        if let Err(error) = self.snapshotter.remove_active(namespace, container_id) {
            tracing::warn!(container_id, %error, "removing the container's snapshot failed; start-up clean-up retries");
        }
        let _ = std::fs::remove_dir_all(self.layout.task_dir(namespace, container_id));
    }

    fn watch_exit(self: &Arc<Self>, namespace: &str, container_id: &str, shim: ShimState) {
        let executor = Arc::clone(self);
        let namespace = namespace.to_string();
        let container_id = container_id.to_string();
        let task_dir = self.layout.task_dir(&namespace, &container_id);
        tokio::spawn(async move {
            let status = monitor::wait_exit(&task_dir, &shim).await;
            if monitor::read_exit(&task_dir).is_none() {
                // The monitor died without recording an exit: the container may still run,
                // with nothing left to report its end. Stop it.
                tracing::warn!(namespace, container_id, "the task's monitor died; killing the container it watched");
                let _ = executor.runc(&namespace).kill(&container_id, libc::SIGKILL, true).await;
            }
            executor.send(&namespace, &container_id, Job::Exited { status, shim_pid: shim.shim_pid });
        });
    }

    async fn record_exit(&self, namespace: &str, container_id: &str, status: monitor::ExitStatus) {
        self.record(namespace, None, "task exited", exit_event(container_id, status)).await;
    }

    /// Record an outcome. Returns false when the store refused it (already answered).
    async fn record(&self, namespace: &str, answers: Option<u64>, reason: &str, event: Event) -> bool {
        self.record_together(namespace, answers, reason, vec![event]).await
    }

    /// Record outcomes that happened together as one record (one fdatasync). Returns false
    /// when the store refused them (any one already answered).
    async fn record_together(&self, namespace: &str, answers: Option<u64>, reason: &str, events: Vec<Event>) -> bool {
        let origin = Origin::Daemon { reason: reason.to_string(), answers };
        let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
        tracing::debug!(?kinds, ?answers, "recording outcome");
        match self.store.submit(namespace, origin, Command::RecordOutcome(RecordOutcome { answers, events })).await {
            Ok(_) => true,
            Err(SubmitError::Rejected(error)) => {
                tracing::debug!(?kinds, %error, "outcome not recorded: already answered");
                false
            }
            Err(SubmitError::Stopping) => false,
        }
    }

    /// Start-up reconciliation: make the host and the log agree, recording every decision.
    pub async fn recover(self: &Arc<Self>) {
        let tasks: Vec<(String, String, berth_projections::TaskState)> = {
            let state = self.store.state();
            state
                .containers()
                .filter_map(|(namespace, container)| {
                    container.task.clone().map(|task| (namespace.to_string(), container.record.id.clone(), task))
                })
                .collect()
        };
        for (namespace, container_id, task) in tasks {
            self.recover_task(&namespace, &container_id, task).await;
        }
        self.remove_orphans().await;
    }

    async fn recover_task(self: &Arc<Self>, namespace: &str, container_id: &str, task: berth_projections::TaskState) {
        let task_dir = self.layout.task_dir(namespace, container_id);
        let pending_create = task.pending.iter().find_map(|intent| match intent {
            PendingIntent::Create { seq } => Some(*seq),
            _ => None,
        });
        if pending_create.is_some() {
            // A monitor may still be creating the container (berthd died after starting it):
            // wait for it to finish one way or the other before deciding.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while monitor::shim_lock_held(&task_dir)
                && monitor::read_shim_state(&task_dir).is_none_or(|shim| Some(shim.intent_seq) != pending_create)
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        // Only this task's monitor counts: files a previous task of the same container left
        // behind must not be taken for it.
        let shim = monitor::read_shim_state(&task_dir).filter(|shim| match pending_create {
            Some(seq) => shim.intent_seq == seq,
            None => shim.shim_pid == task.shim_pid,
        });
        let alive = shim.as_ref().is_some_and(monitor::shim_alive);
        let exit = match &shim {
            Some(_) => monitor::read_exit(&task_dir),
            // shim.json is not fsynced and exit.json is: after a power loss exit.json may be all
            // that is left. It names the monitor that wrote it, so a started task's exit is
            // still known (a task dir is emptied before each new task's monitor starts).
            None => monitor::read_exit(&task_dir)
                .filter(|exit| pending_create.is_none() && task.shim_pid > 0 && exit.shim_pid == Some(task.shim_pid)),
        };
        for intent in &task.pending {
            match intent {
                PendingIntent::Create { seq } => {
                    match (&shim, alive || exit.is_some()) {
                        (Some(shim), true) => {
                            let event = Event::TaskCreated {
                                container_id: container_id.to_string(),
                                pid: shim.init_pid,
                                shim_pid: shim.shim_pid,
                            };
                            self.record(namespace, Some(*seq), "recovery: the monitor had created the task", event).await;
                        }
                        _ => {
                            self.roll_back_create(namespace, container_id).await;
                            let event = Event::TaskCreateFailed {
                                container_id: container_id.to_string(),
                                error: "berthd stopped before the task was created; rolled back: create it again".into(),
                            };
                            self.record(namespace, Some(*seq), "recovery: create rolled back", event).await;
                        }
                    }
                }
                PendingIntent::Start { seq } => {
                    let runc_state = self.runc(namespace).state(container_id).await.ok().flatten();
                    let status = runc_state.as_ref().map(|state| state.status.as_str());
                    // The pid is the monitor's word: the task snapshot may predate TaskCreated.
                    let pid = shim.as_ref().map_or(task.pid, |shim| shim.init_pid);
                    let event = match (status, &exit) {
                        (Some("created"), None) if alive => match self.runc(namespace).start(container_id).await {
                            Ok(()) => Event::TaskStarted { container_id: container_id.to_string(), pid },
                            Err(error) => Event::TaskStartFailed { container_id: container_id.to_string(), error: error.to_string() },
                        },
                        (Some("created"), None) => {
                            // Nothing would watch it run: remove it instead of starting it.
                            let _ = self.runc(namespace).delete(container_id, true).await;
                            Event::TaskStartFailed {
                                container_id: container_id.to_string(),
                                error: "the task's monitor is gone, so it was not started; delete it and create it again".into(),
                            }
                        }
                        // Running, or already ran and exited: the start happened.
                        (Some("running"), _) | (Some("stopped"), _) | (_, Some(_)) => {
                            Event::TaskStarted { container_id: container_id.to_string(), pid }
                        }
                        _ => Event::TaskStartFailed {
                            container_id: container_id.to_string(),
                            error: "berthd stopped while starting the task and the container is gone".into(),
                        },
                    };
                    self.record(namespace, Some(*seq), "recovery: start finished", event).await;
                }
                PendingIntent::Kill { seq, signal, all } => {
                    let event = if exit.is_none() && alive {
                        match self.runc(namespace).kill(container_id, *signal, *all).await {
                            Ok(()) => Event::TaskKillDelivered { container_id: container_id.to_string(), signal: *signal },
                            Err(error) => Event::TaskKillFailed {
                                container_id: container_id.to_string(),
                                signal: *signal,
                                error: error.to_string(),
                            },
                        }
                    } else {
                        Event::TaskKillDelivered { container_id: container_id.to_string(), signal: *signal }
                    };
                    self.record(namespace, Some(*seq), "recovery: kill re-delivered", event).await;
                }
                PendingIntent::Delete { seq, force } => {
                    // Handled below, after the exit is known.
                    let _ = (seq, force);
                }
            }
        }
        // The exit, whether it happened while berthd was down or is still to come.
        let live_now = self
            .store
            .state()
            .container(namespace, container_id)
            .and_then(|container| container.task.clone())
            .is_some_and(|task| task.exit.is_none() && !matches!(task.status, TaskStatus::Failed | TaskStatus::Creating));
        if live_now {
            match (&shim, exit) {
                (_, Some(status)) => self.record_exit(namespace, container_id, status).await,
                (Some(shim), None) if alive => self.watch_exit(namespace, container_id, shim.clone()),
                _ => {
                    // Nothing watches this container any more, so nothing could record its
                    // exit: stop it rather than leave an unaccounted process running.
                    let runc = self.runc(namespace);
                    if runc.state(container_id).await.ok().flatten().is_some_and(|state| state.status != "stopped") {
                        tracing::warn!(namespace, container_id, "the task's monitor is gone but the container runs; killing it");
                        let _ = runc.kill(container_id, libc::SIGKILL, true).await;
                    }
                    let status = monitor::ExitStatus {
                        code: monitor::UNKNOWN_EXIT_CODE,
                        signal: 0,
                        exited_at_ns: crate::store::now_ns() as i64,
                        shim_pid: None,
                    };
                    tracing::warn!(namespace, container_id, "the task's monitor is gone without an exit status (host reboot, or the monitor was killed); recorded as exit 255");
                    self.record_exit(namespace, container_id, status).await;
                }
            }
        }
        if let Some(PendingIntent::Delete { seq, force }) =
            task.pending.iter().find(|intent| matches!(intent, PendingIntent::Delete { .. })).cloned()
        {
            self.send(namespace, container_id, Job::Intent {
                seq,
                event: Event::TaskDeleteRequested { container_id: container_id.to_string(), force },
                start_too: false,
            });
        }
    }

    /// Remove runc containers, mounts, snapshots, blobs and task dirs that no projection
    /// accounts for (left by a crash between doing and recording).
    async fn remove_orphans(&self) {
        let (known_tasks, known_containers, known_snapshots, known_content): (
            BTreeSet<WorkerKey>,
            BTreeSet<WorkerKey>,
            BTreeSet<String>,
            BTreeSet<String>,
        ) = {
            let state = self.store.state();
            let tasks = state
                .containers()
                .filter(|(_, container)| container.task.is_some())
                .map(|(namespace, container)| (namespace.to_string(), container.record.id.clone()))
                .collect();
            let containers = state
                .containers()
                .map(|(namespace, container)| (namespace.to_string(), container.record.id.clone()))
                .collect();
            (tasks, containers, state.snapshots.keys().cloned().collect(), state.content.keys().cloned().collect())
        };
        let runc_base = self.layout.state.join("runc");
        for namespace in list_dir_names(&runc_base) {
            let runc = self.runc(&namespace);
            let Ok(listed) = runc.list().await else { continue };
            for runc_container in listed {
                if !known_tasks.contains(&(namespace.clone(), runc_container.id.clone())) {
                    tracing::warn!(namespace, id = runc_container.id, "removing a runc container no task accounts for");
                    let _ = runc.delete(&runc_container.id, true).await;
                    self.record_orphan(&namespace, "runc container", &runc_container.id).await;
                }
            }
        }
        let bundles_base = self.layout.state.join("bundles");
        for namespace in list_dir_names(&bundles_base) {
            for id in list_dir_names(&bundles_base.join(&namespace)) {
                if !known_tasks.contains(&(namespace.clone(), id.clone())) {
                    self.remove_bundle(&namespace, &id);
                }
            }
        }
        let tasks_base = self.layout.root.join("tasks");
        for namespace in list_dir_names(&tasks_base) {
            for id in list_dir_names(&tasks_base.join(&namespace)) {
                if !known_containers.contains(&(namespace.clone(), id.clone())) {
                    let _ = std::fs::remove_dir_all(tasks_base.join(&namespace).join(&id));
                }
            }
        }
        if let Ok(active) = self.snapshotter.list_active() {
            for (namespace, key) in active {
                if !known_containers.contains(&(namespace.clone(), key.clone())) {
                    let _ = self.snapshotter.remove_active(&namespace, &key);
                }
            }
        }
        if let Ok(committed) = self.snapshotter.list_committed() {
            for chain_id in committed {
                if !known_snapshots.contains(&chain_id) {
                    let _ = self.snapshotter.remove_committed(&chain_id);
                }
            }
        }
        let _ = self.snapshotter.clean_tmp();
        if let Ok(blobs) = self.content.list() {
            for digest in blobs {
                if !known_content.contains(&digest) {
                    let _ = self.content.remove(&digest);
                }
            }
        }
    }

    async fn record_orphan(&self, namespace: &str, what: &str, id: &str) {
        let origin = Origin::Daemon { reason: "recovery: orphan removed".into(), answers: None };
        let event = Event::OrphanRemoved { what: what.to_string(), id: id.to_string() };
        let _ = self.store.submit(namespace, origin, Command::RecordOutcome(RecordOutcome::one(None, event))).await;
    }
}

fn exit_event(container_id: &str, status: monitor::ExitStatus) -> Event {
    Event::TaskExited {
        container_id: container_id.to_string(),
        exit_code: status.code,
        signal: status.signal,
        exited_at_ns: status.exited_at_ns,
    }
}

fn list_dir_names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}
