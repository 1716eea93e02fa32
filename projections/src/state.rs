//! The projections: namespaces with their images and containers (metadata), the content and
//! snapshot indexes, and each container's task state machine (the supervisor's view) — all one
//! pure fold over the log's envelopes.
//!
//! Invariant: `apply` does no IO, reads no clock and never fails. An event that does not fit
//! the current state (which commands never append, but a hand-edited or future log might
//! hold) is ignored by that projection, so replay is total and deterministic.

use std::collections::BTreeMap;

use berth_log::{Seq, Timestamp};
use serde::{Deserialize, Serialize};

use crate::event::{
    ContainerRecord, Envelope, Event, ExecProcess, ExitCause, ImageRecord, VolumeRecord, MOUNT_KIND_VOLUME,
};
use crate::network::{NetworkAttachment, NetworkRecord};
use crate::sealed::{SecretKeyUse, SecretKeys};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct State {
    /// The seq of the last record folded in.
    pub last_seq: Seq,
    pub namespaces: BTreeMap<String, NamespaceState>,
    /// Blobs in the content store, by digest (shared by all namespaces).
    pub content: BTreeMap<String, ContentState>,
    /// Committed (read-only) snapshots, by chain id (shared by all namespaces).
    pub snapshots: BTreeMap<String, SnapshotState>,
    /// Each container's secret key as the log knows it, kept past the container's deletion
    /// until forgetting is recorded (`sealed.rs`).
    #[serde(default)]
    pub secret_keys: SecretKeys,
    /// User-defined networks, by name (host-wide: a bridge belongs to the host).
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkState>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct NetworkState {
    pub record: NetworkRecord,
    pub created_seq: Seq,
    pub created_at_ns: Timestamp,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct NamespaceState {
    pub labels: BTreeMap<String, String>,
    pub created_seq: Seq,
    pub images: BTreeMap<String, ImageState>,
    pub containers: BTreeMap<String, ContainerState>,
    #[serde(default)]
    pub volumes: BTreeMap<String, VolumeState>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct VolumeState {
    pub record: VolumeRecord,
    pub created_seq: Seq,
    pub created_at_ns: Timestamp,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ContentState {
    pub size: i64,
    pub media_type: String,
    pub added_seq: Seq,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SnapshotState {
    pub parent: Option<String>,
    pub diff_id: String,
    pub committed_seq: Seq,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ImageState {
    pub record: ImageRecord,
    pub created_seq: Seq,
    pub created_at_ns: Timestamp,
    pub updated_seq: Seq,
    /// Registry references this image's manifest is known to be at (pulled from or pushed to),
    /// so a push to another repository of the same registry can mount its blobs from there.
    /// Cleared when the image's manifest changes.
    #[serde(default)]
    pub known_references: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ContainerState {
    pub record: ContainerRecord,
    pub created_seq: Seq,
    pub created_at_ns: Timestamp,
    /// The container's current task; `None` before the first create and after a delete.
    pub task: Option<TaskState>,
    /// Where the restart policy stands, from `TaskRestartScheduled` events.
    #[serde(default)]
    pub restart: RestartState,
}

/// The restart policy's memory, all from the log, so a berthd killed during a backoff neither
/// resets nor doubles it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RestartState {
    /// Restarts in a row so far (the attempt of the last `TaskRestartScheduled`); a task
    /// created by a client starts the count again.
    pub attempt: u32,
    /// A restart deleted the task and has not created its successor yet.
    pub awaiting_create: bool,
    /// The current task was created by a restart (not by a client), so a failure to create or
    /// start it — say, berthd killed mid-create and recovery rolling it back — is one more
    /// failure for the policy, not the end of the restarts.
    #[serde(default)]
    pub task_from_restart: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TaskStatus {
    /// Create requested; no outcome yet.
    #[default]
    Creating,
    Created,
    /// Start requested; no outcome yet.
    Starting,
    Running,
    Stopped,
    /// Delete requested; no outcome yet.
    Deleting,
    /// Create or start failed (see `error`); the task can only be deleted.
    Failed,
}

impl TaskStatus {
    pub fn name(self) -> &'static str {
        match self {
            TaskStatus::Creating => "creating",
            TaskStatus::Created => "created",
            TaskStatus::Starting => "starting",
            TaskStatus::Running => "running",
            TaskStatus::Stopped => "stopped",
            TaskStatus::Deleting => "deleting",
            TaskStatus::Failed => "failed",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitInfo {
    pub exit_code: i32,
    pub signal: i32,
    pub exited_at_ns: Timestamp,
    #[serde(default)]
    pub cause: ExitCause,
}

/// An intent the executor has not answered yet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum PendingIntent {
    Create { seq: Seq },
    Start { seq: Seq },
    Kill { seq: Seq, signal: i32, all: bool },
    Delete { seq: Seq, force: bool },
    Exec { seq: Seq, exec_id: String },
}

impl PendingIntent {
    pub fn seq(&self) -> Seq {
        match self {
            PendingIntent::Create { seq }
            | PendingIntent::Start { seq }
            | PendingIntent::Kill { seq, .. }
            | PendingIntent::Delete { seq, .. }
            | PendingIntent::Exec { seq, .. } => *seq,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TaskState {
    pub status: TaskStatus,
    pub pid: u32,
    pub monitor_pid: i32,
    pub exit: Option<ExitInfo>,
    pub error: Option<String>,
    /// Intents without an outcome, oldest first.
    pub pending: Vec<PendingIntent>,
    pub updated_seq: Seq,
    /// When `TaskStarted` was recorded (for the restart backoff's reset after 10 s of running).
    #[serde(default)]
    pub started_at_ns: Option<Timestamp>,
    /// A client asked to kill it (`berth kill`, `stop`): the restart policy leaves it stopped.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// `berth pause` froze its processes and no `berth resume` has thawed them; the status
    /// stays `Running` underneath (a paused task is a running one that cannot be scheduled).
    #[serde(default)]
    pub paused: bool,
    /// When its create or start failed (the restart backoff counts from then).
    #[serde(default)]
    pub failed_at_ns: Option<Timestamp>,
    /// `berth exec` processes of this task, by exec id, ended ones included.
    #[serde(default)]
    pub execs: BTreeMap<String, ExecState>,
    /// What CNI gave the task (`NetworkAttached`), until `NetworkDetached` or its deletion.
    #[serde(default)]
    pub network: Option<NetworkAttachment>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExecStatus {
    /// Requested; no outcome yet.
    #[default]
    Starting,
    Running,
    Exited,
    /// It never ran (see `error`).
    Failed,
}

impl ExecStatus {
    pub fn name(self) -> &'static str {
        match self {
            ExecStatus::Starting => "starting",
            ExecStatus::Running => "running",
            ExecStatus::Exited => "exited",
            ExecStatus::Failed => "failed",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ExecState {
    pub process: ExecProcess,
    pub requested_seq: Seq,
    pub status: ExecStatus,
    pub pid: u32,
    pub exit: Option<ExitInfo>,
    pub error: Option<String>,
}

impl TaskState {
    pub fn is_live(&self) -> bool {
        matches!(self.status, TaskStatus::Created | TaskStatus::Starting | TaskStatus::Running)
    }

    /// Applies one task event recorded at `seq` (answering `answers`), exactly as the fold does;
    /// true when the event deletes the task. Commands use it to check a record of several
    /// outcomes one after another.
    pub fn apply_event(&mut self, seq: Seq, answers: Option<Seq>, event: &Event) -> bool {
        apply_task_event(self, seq, answers, event)
    }

    fn answer(&mut self, intent_seq: Option<Seq>, matches: impl Fn(&PendingIntent) -> bool) {
        // An outcome answers the intent it names, or else the oldest intent of its kind.
        let position = match intent_seq {
            Some(seq) => self.pending.iter().position(|intent| intent.seq() == seq && matches(intent)),
            None => self.pending.iter().position(&matches),
        };
        if let Some(position) = position {
            self.pending.remove(position);
        }
    }
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    pub fn namespace(&self, name: &str) -> Option<&NamespaceState> {
        self.namespaces.get(name)
    }

    /// Where a container's secret key stands, also after the container was deleted.
    pub fn secret_key(&self, namespace: &str, container_id: &str) -> Option<&SecretKeyUse> {
        self.secret_keys.get(namespace)?.get(container_id)
    }

    fn secret_key_mut(&mut self, namespace: &str, container_id: &str) -> Option<&mut SecretKeyUse> {
        self.secret_keys.get_mut(namespace)?.get_mut(container_id)
    }

    pub fn container(&self, namespace: &str, id: &str) -> Option<&ContainerState> {
        self.namespaces.get(namespace)?.containers.get(id)
    }

    pub fn image(&self, namespace: &str, name: &str) -> Option<&ImageState> {
        self.namespaces.get(namespace)?.images.get(name)
    }

    pub fn volume(&self, namespace: &str, name: &str) -> Option<&VolumeState> {
        self.namespaces.get(namespace)?.volumes.get(name)
    }

    /// The ids of the containers of `namespace` that mount volume `name`, in order.
    pub fn volume_users(&self, namespace: &str, name: &str) -> Vec<String> {
        let Some(namespace_state) = self.namespaces.get(namespace) else { return Vec::new() };
        namespace_state
            .containers
            .values()
            .filter(|container| {
                container.record.mounts.iter().any(|mount| mount.kind == MOUNT_KIND_VOLUME && mount.source == name)
            })
            .map(|container| container.record.id.clone())
            .collect()
    }

    /// The (namespace, container id) of every container whose record names network `name`.
    pub fn network_users(&self, name: &str) -> Vec<(String, String)> {
        self.containers()
            .filter(|(_, container)| container.record.network.mode_name() == name)
            .map(|(namespace, container)| (namespace.to_string(), container.record.id.clone()))
            .collect()
    }

    /// The tasks attached to network `name` now: (namespace, container state, attachment).
    pub fn network_attachments<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a ContainerState, &'a NetworkAttachment)> + 'a {
        self.containers().filter_map(move |(namespace, container)| {
            let attachment = container.task.as_ref()?.network.as_ref()?;
            (attachment.network == name).then_some((namespace, container, attachment))
        })
    }

    /// Every (namespace, container) pair, in order.
    pub fn containers(&self) -> impl Iterator<Item = (&str, &ContainerState)> {
        self.namespaces.iter().flat_map(|(namespace_name, namespace)| {
            namespace.containers.values().map(move |container| (namespace_name.as_str(), container))
        })
    }

    /// Fold one record into the state.
    pub fn apply(&mut self, seq: Seq, timestamp: Timestamp, envelope: &Envelope) {
        let answers = envelope.answers();
        for event in &envelope.events {
            self.apply_event(seq, timestamp, &envelope.namespace, answers, event);
        }
        self.last_seq = seq;
    }

    fn apply_event(&mut self, seq: Seq, timestamp: Timestamp, namespace: &str, answers: Option<Seq>, event: &Event) {
        match event {
            Event::NamespaceCreated { name, labels } => {
                self.namespaces.entry(name.clone()).or_insert_with(|| NamespaceState {
                    labels: labels.clone(),
                    created_seq: seq,
                    ..NamespaceState::default()
                });
            }
            Event::NamespaceRemoved { name } => {
                self.namespaces.remove(name);
            }
            Event::ContentAdded { digest, size, media_type } => {
                self.content.entry(digest.clone()).or_insert_with(|| ContentState {
                    size: *size,
                    media_type: media_type.clone(),
                    added_seq: seq,
                });
            }
            Event::ContentRemoved { digest } => {
                self.content.remove(digest);
            }
            Event::SnapshotCommitted { chain_id, parent, diff_id } => {
                self.snapshots.entry(chain_id.clone()).or_insert_with(|| SnapshotState {
                    parent: parent.clone(),
                    diff_id: diff_id.clone(),
                    committed_seq: seq,
                });
            }
            Event::SnapshotRemoved { chain_id } => {
                self.snapshots.remove(chain_id);
            }
            Event::ImageCreated { image } | Event::ImageUpdated { image } => {
                if let Some(namespace_state) = self.namespaces.get_mut(namespace) {
                    let entry = namespace_state.images.entry(image.name.clone()).or_insert_with(|| ImageState {
                        created_seq: seq,
                        created_at_ns: timestamp,
                        ..ImageState::default()
                    });
                    if entry.record.manifest.digest != image.manifest.digest {
                        entry.known_references.clear();
                    }
                    entry.record = image.clone();
                    entry.updated_seq = seq;
                }
            }
            // Provenance: the image itself is the ImageCreated/ImageUpdated beside a pull.
            Event::ImagePulled { name, reference, .. } | Event::ImagePushed { name, reference, .. } => {
                let image =
                    self.namespaces.get_mut(namespace).and_then(|namespace_state| namespace_state.images.get_mut(name));
                if let Some(image) = image {
                    if !image.known_references.contains(reference) {
                        image.known_references.push(reference.clone());
                    }
                }
            }
            Event::ImageRemoved { name } => {
                if let Some(namespace_state) = self.namespaces.get_mut(namespace) {
                    namespace_state.images.remove(name);
                }
            }
            Event::ContainerCreated { container } => {
                if let Some(key_id) = container.sealed_key_id() {
                    let key_use =
                        SecretKeyUse { key_id: key_id.to_string(), sealed_seq: seq, ..SecretKeyUse::default() };
                    self.secret_keys.entry(namespace.to_string()).or_default().insert(container.id.clone(), key_use);
                }
                if let Some(namespace_state) = self.namespaces.get_mut(namespace) {
                    namespace_state.containers.entry(container.id.clone()).or_insert_with(|| ContainerState {
                        record: container.clone(),
                        created_seq: seq,
                        created_at_ns: timestamp,
                        task: None,
                        restart: RestartState::default(),
                    });
                }
            }
            Event::ContainerDeleted { id } => {
                if let Some(key_use) = self.secret_key_mut(namespace, id) {
                    key_use.released_at = Some(timestamp);
                }
                if let Some(namespace_state) = self.namespaces.get_mut(namespace) {
                    namespace_state.containers.remove(id);
                }
            }
            Event::ContainerUpdated { id, limits } => {
                if let Some(container) = self.container_mut(namespace, id) {
                    container.record.policies.limits = limits.clone();
                }
            }
            Event::TaskRestartScheduled { container_id, attempt, .. } => {
                if let Some(container) = self.container_mut(namespace, container_id) {
                    container.restart =
                        RestartState { attempt: *attempt, awaiting_create: true, task_from_restart: false };
                }
            }
            Event::TaskCreateRequested { container_id } => {
                if let Some(container) = self.container_mut(namespace, container_id) {
                    if !container.restart.awaiting_create {
                        // A client's create: the restart count starts again.
                        container.restart.attempt = 0;
                    }
                    container.restart.task_from_restart = container.restart.awaiting_create;
                    container.restart.awaiting_create = false;
                    container.task = Some(TaskState {
                        status: TaskStatus::Creating,
                        pending: vec![PendingIntent::Create { seq }],
                        updated_seq: seq,
                        ..TaskState::default()
                    });
                }
            }
            Event::VolumeCreated { volume } => {
                if let Some(namespace_state) = self.namespaces.get_mut(namespace) {
                    namespace_state.volumes.entry(volume.name.clone()).or_insert_with(|| VolumeState {
                        record: volume.clone(),
                        created_seq: seq,
                        created_at_ns: timestamp,
                    });
                }
            }
            Event::VolumeRemoved { name } => {
                if let Some(namespace_state) = self.namespaces.get_mut(namespace) {
                    namespace_state.volumes.remove(name);
                }
            }
            Event::DaemonStarted { .. }
            | Event::OrphanRemoved { .. }
            | Event::CheckpointWritten { .. }
            | Event::NetworkReleased { .. } => {}
            Event::SecretsForgotten { container_id, key_id, .. } => {
                if let Some(key_use) = self.secret_key_mut(namespace, container_id) {
                    if key_use.key_id == *key_id && key_use.forgotten_seq.is_none() {
                        key_use.forgotten_seq = Some(seq);
                    }
                }
            }
            Event::NetworkCreated { network } => {
                self.networks.entry(network.name.clone()).or_insert_with(|| NetworkState {
                    record: network.clone(),
                    created_seq: seq,
                    created_at_ns: timestamp,
                });
            }
            Event::NetworkRemoved { name } => {
                self.networks.remove(name);
            }
            task_event => {
                let Some(container_id) = task_event.container_id() else { return };
                let Some(task) = self.task_mut(namespace, container_id) else { return };
                match task_event {
                    Event::TaskStarted { .. } => task.started_at_ns = Some(timestamp),
                    Event::TaskCreateFailed { .. } | Event::TaskStartFailed { .. } => {
                        task.failed_at_ns = Some(timestamp)
                    }
                    _ => {}
                }
                if apply_task_event(task, seq, answers, task_event) {
                    // TaskDeleted: the container has no task any more.
                    if let Some(container) = self.container_mut(namespace, container_id) {
                        container.task = None;
                    }
                }
            }
        }
    }

    fn container_mut(&mut self, namespace: &str, id: &str) -> Option<&mut ContainerState> {
        self.namespaces.get_mut(namespace)?.containers.get_mut(id)
    }

    fn task_mut(&mut self, namespace: &str, id: &str) -> Option<&mut TaskState> {
        self.container_mut(namespace, id)?.task.as_mut()
    }
}

/// Applies a task event; returns true when the task is gone (deleted).
fn apply_task_event(task: &mut TaskState, seq: Seq, answers: Option<Seq>, event: &Event) -> bool {
    task.updated_seq = seq;
    match event {
        Event::TaskCreated { pid, monitor_pid, .. } => {
            task.answer(answers, |intent| matches!(intent, PendingIntent::Create { .. }));
            task.pid = *pid;
            task.monitor_pid = *monitor_pid;
            if task.status == TaskStatus::Creating {
                // A start requested in the same record as the create still waits.
                let start_pending = task.pending.iter().any(|intent| matches!(intent, PendingIntent::Start { .. }));
                task.status = if start_pending { TaskStatus::Starting } else { TaskStatus::Created };
            }
        }
        Event::TaskCreateFailed { error, .. } => {
            task.answer(answers, |intent| matches!(intent, PendingIntent::Create { .. }));
            // A start that was to follow this create will not happen.
            task.pending.retain(|intent| !matches!(intent, PendingIntent::Start { .. }));
            task.status = TaskStatus::Failed;
            task.error = Some(error.clone());
        }
        Event::TaskStartRequested { .. } => {
            task.pending.push(PendingIntent::Start { seq });
            if task.status == TaskStatus::Created {
                task.status = TaskStatus::Starting;
            }
        }
        Event::TaskStarted { pid, .. } => {
            task.answer(answers, |intent| matches!(intent, PendingIntent::Start { .. }));
            task.pid = *pid;
            // The exit may already be known (a very short process): it stays stopped.
            if task.status == TaskStatus::Starting {
                task.status = TaskStatus::Running;
            }
        }
        Event::TaskStartFailed { error, .. } => {
            task.answer(answers, |intent| matches!(intent, PendingIntent::Start { .. }));
            if task.status == TaskStatus::Starting {
                task.status = TaskStatus::Failed;
            }
            task.error = Some(error.clone());
        }
        Event::TaskKillRequested { signal, all, .. } => {
            // Only clients record kills (berthd's own go straight to runc).
            task.stopped_by_user = true;
            task.pending.push(PendingIntent::Kill { seq, signal: *signal, all: *all });
        }
        Event::TaskPaused { .. } => task.paused = true,
        Event::TaskResumed { .. } => task.paused = false,
        Event::TaskKillDelivered { .. } => {
            task.answer(answers, |intent| matches!(intent, PendingIntent::Kill { .. }));
        }
        Event::TaskKillFailed { error, .. } => {
            task.answer(answers, |intent| matches!(intent, PendingIntent::Kill { .. }));
            task.error = Some(error.clone());
        }
        Event::TaskExited { exit_code, signal, exited_at_ns, cause, .. } => {
            task.exit =
                Some(ExitInfo { exit_code: *exit_code, signal: *signal, exited_at_ns: *exited_at_ns, cause: *cause });
            // A frozen process cannot exit; if one is recorded anyway its freeze ended with it.
            task.paused = false;
            if matches!(task.status, TaskStatus::Created | TaskStatus::Starting | TaskStatus::Running) {
                task.status = TaskStatus::Stopped;
            }
            // Kills still in flight have nothing left to signal; their outcome is this exit.
            task.pending.retain(|intent| !matches!(intent, PendingIntent::Kill { .. }));
        }
        Event::ExecRequested { exec_id, process, .. } => {
            task.pending.push(PendingIntent::Exec { seq, exec_id: exec_id.clone() });
            task.execs.insert(
                exec_id.clone(),
                ExecState { process: process.clone(), requested_seq: seq, ..ExecState::default() },
            );
        }
        Event::ExecStarted { exec_id, pid, .. } => {
            task.answer(answers, |intent| matches!(intent, PendingIntent::Exec { exec_id: id, .. } if id == exec_id));
            if let Some(exec) = task.execs.get_mut(exec_id) {
                exec.pid = *pid;
                if exec.status == ExecStatus::Starting {
                    exec.status = ExecStatus::Running;
                }
            }
        }
        Event::ExecStartFailed { exec_id, error, .. } => {
            task.answer(answers, |intent| matches!(intent, PendingIntent::Exec { exec_id: id, .. } if id == exec_id));
            if let Some(exec) = task.execs.get_mut(exec_id) {
                exec.status = ExecStatus::Failed;
                exec.error = Some(error.clone());
            }
        }
        Event::ExecExited { exec_id, exit_code, signal, exited_at_ns, .. } => {
            if let Some(exec) = task.execs.get_mut(exec_id) {
                exec.exit = Some(ExitInfo {
                    exit_code: *exit_code,
                    signal: *signal,
                    exited_at_ns: *exited_at_ns,
                    cause: ExitCause::Exited,
                });
                exec.status = ExecStatus::Exited;
            }
        }
        Event::TaskDeleteRequested { force, .. } => {
            task.pending.push(PendingIntent::Delete { seq, force: *force });
            task.status = TaskStatus::Deleting;
        }
        Event::NetworkAttached { attachment, .. } => task.network = Some(attachment.clone()),
        Event::NetworkDetached { .. } => task.network = None,
        Event::TaskDeleted { .. } => return true,
        Event::TaskDeleteFailed { error, .. } => {
            task.answer(answers, |intent| matches!(intent, PendingIntent::Delete { .. }));
            task.error = Some(error.clone());
            task.status = if task.exit.is_some() { TaskStatus::Stopped } else { TaskStatus::Failed };
        }
        _ => {}
    }
    false
}
