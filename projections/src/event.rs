//! The events berth records in its log, and the envelope (one per log record) that carries them
//! with who asked for them.
//!
//! Encoding: an [`Envelope`] is one log record's payload, encoded with rmp-serde in its compact
//! (array) form. Fields are only ever added at the end of a struct with `#[serde(default)]`, and
//! enum variants are encoded by name, so a newer berth reads every older log. `schema` says which
//! version wrote the record; a record from a newer schema is refused with a clear error.

use std::collections::BTreeMap;

use berth_log::{Seq, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::network::{ContainerNetwork, NetworkAttachment, NetworkRecord};
use crate::policy::{ContainerPolicies, ResourceLimits};
use crate::sealed::SealedEnv;

/// The schema version this build writes. Bump it when an event's meaning changes, or when
/// events or fields are added that an older berth cannot read, so that berth refuses a log
/// naming a newer schema (`NewerSchema`: "upgrade berth") instead of calling it malformed.
/// Every schema this build knows still reads: fields added later decode as their defaults.
/// 1: the first. 2: registry pull and push (`ImagePulled`, `ImagePushed`), `berth exec`
/// (`Exec*`), limits, restart policies, security options and volumes. 3: CNI networking
/// (`Network*`, the record's `network`), sealed environment values (`sealed_env`,
/// `SecretsForgotten`) and `CheckpointWritten`.
pub const EVENT_SCHEMA: u16 = 3;

/// One log record: the events of one command, appended atomically, and where they came from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Envelope {
    pub schema: u16,
    /// The namespace every event of this record belongs to ("" for host-wide records such as
    /// `DaemonStarted`).
    pub namespace: String,
    pub origin: Origin,
    pub events: Vec<Event>,
}

/// Why a task ended, beyond its exit code and signal.
///
/// Encoded as its name, a plain string (as a field of an event, not as a unit variant, which
/// rmp-serde would write in a form the canonical reader does not take).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(into = "String", try_from = "String")]
pub enum ExitCause {
    /// The init process ended, by itself or by a signal; code and signal are what it reported.
    #[default]
    Exited,
    /// Killed by the kernel's OOM killer: the container's memory cgroup counted an OOM kill.
    OomKilled,
    /// The monitor died without recording the exit, so berthd killed the container and the
    /// exit code (255) is not the container's.
    MonitorLost,
}

impl ExitCause {
    /// The spelling `berth ps`, the API and berth-replay use: "exited", "oom-killed", "monitor-lost".
    pub fn name(self) -> &'static str {
        match self {
            ExitCause::Exited => "exited",
            ExitCause::OomKilled => "oom-killed",
            ExitCause::MonitorLost => "monitor-lost",
        }
    }
}

impl From<ExitCause> for String {
    fn from(cause: ExitCause) -> String {
        cause.name().to_string()
    }
}

impl TryFrom<String> for ExitCause {
    type Error = String;

    fn try_from(name: String) -> Result<ExitCause, String> {
        [ExitCause::Exited, ExitCause::OomKilled, ExitCause::MonitorLost]
            .into_iter()
            .find(|cause| cause.name() == name)
            .ok_or_else(|| format!("unknown exit cause {name:?}: read this log with a newer berth"))
    }
}

/// Who caused a record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Origin {
    /// A gRPC caller, identified by the kernel (SO_PEERCRED) — not by anything it claims.
    Client { uid: u32, gid: u32, pid: i32, method: String, request_id: String },
    /// berthd itself: executor outcomes, exits, recovery decisions. `answers` is the seq of the
    /// intent this record answers, when it answers one.
    Daemon { reason: String, answers: Option<Seq> },
}

/// Everything a command can record. Past tense; intents that wait for an outcome end in
/// `Requested`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Event {
    NamespaceCreated {
        name: String,
        labels: BTreeMap<String, String>,
    },
    NamespaceRemoved {
        name: String,
    },

    ContentAdded {
        digest: String,
        size: i64,
        media_type: String,
    },
    ContentRemoved {
        digest: String,
    },

    /// A layer was unpacked into a committed overlay snapshot keyed by its chain id.
    SnapshotCommitted {
        chain_id: String,
        parent: Option<String>,
        diff_id: String,
    },
    SnapshotRemoved {
        chain_id: String,
    },

    ImageCreated {
        image: ImageRecord,
    },
    /// An image name was pointed at another manifest (re-import of the same name).
    ImageUpdated {
        image: ImageRecord,
    },
    ImageRemoved {
        name: String,
    },
    /// An image was pulled from a registry: what was asked for, who actually served the manifest
    /// (a mirror or the registry itself), which manifest, for which platform. Recorded with the
    /// `ImageCreated`/`ImageUpdated` it explains; never holds credentials.
    ImagePulled {
        name: String,
        /// The reference as normalised (`docker.io/library/busybox:latest`).
        reference: String,
        /// The endpoint that served the manifest, e.g. `https://mirror.example` or `http://127.0.0.1:5000`.
        served_by: String,
        manifest_digest: String,
        /// `os/arch[/variant]` chosen from an index, empty for a single-platform manifest.
        platform: String,
    },
    /// An image was pushed to a registry: which local image, to which reference, through which
    /// endpoint, the manifest digest the registry now serves, and how each blob got there (sent,
    /// already there, mounted from another repository). Never holds credentials; who pushed is
    /// the record's origin.
    ImagePushed {
        name: String,
        /// The reference pushed to, as normalised (`127.0.0.1:5000/team/app:1`).
        reference: String,
        /// The endpoint that took it, e.g. `https://registry.example`.
        pushed_to: String,
        manifest_digest: String,
        uploaded_blobs: u32,
        uploaded_bytes: u64,
        existing_blobs: u32,
        mounted_blobs: u32,
    },

    ContainerCreated {
        container: ContainerRecord,
    },
    ContainerDeleted {
        id: String,
    },
    /// `berth update`: the container's limits are now these (all of them, not only the
    /// changed ones), for its running task (applied with `runc update` before this was
    /// recorded) and every later one.
    ContainerUpdated {
        id: String,
        limits: ResourceLimits,
    },

    TaskCreateRequested {
        container_id: String,
    },
    TaskCreated {
        container_id: String,
        pid: u32,
        monitor_pid: i32,
    },
    TaskCreateFailed {
        container_id: String,
        error: String,
    },

    TaskStartRequested {
        container_id: String,
    },
    TaskStarted {
        container_id: String,
        pid: u32,
    },
    TaskStartFailed {
        container_id: String,
        error: String,
    },

    TaskKillRequested {
        container_id: String,
        signal: i32,
        all: bool,
    },
    /// `berth pause`: every process of the running task is frozen (`runc pause`, done before
    /// this was recorded, so the log never says a task is paused that runc did not freeze).
    TaskPaused {
        container_id: String,
    },
    /// `berth resume`: the paused task's processes are thawed (`runc resume`, done first).
    TaskResumed {
        container_id: String,
    },
    TaskKillDelivered {
        container_id: String,
        signal: i32,
    },
    TaskKillFailed {
        container_id: String,
        signal: i32,
        error: String,
    },

    /// The task's init process exited; `exited_at_ns` is when the monitor reaped it, which
    /// may be long before this record was written (berthd down at the time).
    TaskExited {
        container_id: String,
        exit_code: i32,
        signal: i32,
        exited_at_ns: Timestamp,
        /// Why it ended, for the audit trail: a SIGKILL may be the OOM killer's, a 255 may be
        /// made up for a lost monitor. Records written before the field existed decode as
        /// `ExitCause::Exited`.
        #[serde(default)]
        cause: ExitCause,
    },

    /// `berth exec`: run another process inside the running task's container. Who asked is the
    /// record's origin; what is the process, as the client gave it (empty fields: the
    /// container's own).
    ExecRequested {
        container_id: String,
        exec_id: String,
        process: ExecProcess,
    },
    ExecStarted {
        container_id: String,
        exec_id: String,
        pid: u32,
    },
    ExecStartFailed {
        container_id: String,
        exec_id: String,
        error: String,
    },
    /// The exec process ended (reaped by its own monitor, like a task's init).
    ExecExited {
        container_id: String,
        exec_id: String,
        exit_code: i32,
        signal: i32,
        exited_at_ns: Timestamp,
    },

    TaskDeleteRequested {
        container_id: String,
        force: bool,
    },
    TaskDeleted {
        container_id: String,
        /// The task's exit code; `None` when it never ran (its create or start failed), so it
        /// has none. Records written before this was optional decode as `Some`.
        exit_code: Option<i32>,
    },
    TaskDeleteFailed {
        container_id: String,
        error: String,
    },

    /// berthd's restart policy starts the container again: the stopped task is deleted (the
    /// `TaskDeleteRequested` recorded with this) and, once it is, a new one created and started.
    /// `attempt` counts restarts in a row (1 for the first); `delay_ms` is the backoff waited
    /// since the exit; `cause` says what ended the task ("exit code 1", "oom-killed", …).
    TaskRestartScheduled {
        container_id: String,
        attempt: u32,
        cause: String,
        delay_ms: u64,
    },

    /// berthd started (after a clean stop or a crash) and replayed the log up to `replayed_to`.
    DaemonStarted {
        version: String,
        pid: i32,
        replayed_to: Seq,
    },
    /// Recovery found something on the host that no projection accounts for and removed it.
    OrphanRemoved {
        what: String,
        id: String,
    },

    /// A named volume was created: by `berth volume create`, by a container naming one that did
    /// not exist, or (anonymous, `anonymous_for` set) for an image's `VOLUME` entry.
    VolumeCreated {
        volume: VolumeRecord,
    },
    /// A volume was removed from the record; its directory goes after the record is durable.
    VolumeRemoved {
        name: String,
    },

    // Forgettable secrets (docs/secrets.md). Kept together at the end.
    /// A container's key was deleted, so the values it sealed can no longer be read (they show
    /// as `<forgotten>`); the records holding them, and so every hash, are unchanged. Recorded
    /// just before the key file is deleted. Who is the record's origin; `reason` says why
    /// ("container removed at seq 41", "retention of 7d after removal", "key file missing at
    /// start-up").
    SecretsForgotten {
        container_id: String,
        key_id: String,
        reason: String,
    },
    // Projection checkpoints (issue 11). Kept together at the end.
    /// berthd wrote a projection checkpoint of the state after record `covers`, and this record
    /// vouches for it: `digest` is the SHA-256 the checkpoint file ends with (hex). A start-up
    /// uses a checkpoint only when a later record vouches for it, so a checkpoint edited on
    /// disk is not served unless the log after it is rewritten too (docs/log-format.md).
    CheckpointWritten {
        covers: Seq,
        digest: String,
    },
    // Networking (issue 10), kept together at the end.
    /// `berth network create`: a user-defined bridge network (host-wide).
    NetworkCreated {
        network: NetworkRecord,
    },
    /// `berth network rm`: no container named it any more.
    NetworkRemoved {
        name: String,
    },
    /// CNI ADD gave the task's network namespace these addresses and ports (recorded with the
    /// `TaskCreated` it came before).
    NetworkAttached {
        container_id: String,
        attachment: NetworkAttachment,
    },
    /// CNI DEL removed the task's interface, addresses and port mappings, and the network
    /// namespace is gone (recorded with `TaskDeleted`, or by recovery for a leftover).
    NetworkDetached {
        container_id: String,
        network: String,
    },
    /// A deleted task's network was released after its `TaskDeleted` record: CNI DEL removed
    /// its interface, addresses and port mappings, and the namespace file is gone. berthd runs
    /// that DEL off the delete's path, so `run --rm` and `rm` do not wait for it; one that a
    /// crash or a failed plugin left undone is finished at the next start (`OrphanRemoved`).
    NetworkReleased {
        container_id: String,
        network: String,
    },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Descriptor {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LayerRecord {
    pub blob: Descriptor,
    pub diff_id: String,
    pub chain_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ImageRecord {
    pub name: String,
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<LayerRecord>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

impl ImageRecord {
    /// Chain ids of the image's layers, bottom to top.
    pub fn chain_ids(&self) -> Vec<String> {
        self.layers.iter().map(|layer| layer.chain_id.clone()).collect()
    }
}

/// A process `berth exec` runs in a container: as asked, before the container's defaults fill in
/// what was left empty.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ExecProcess {
    pub args: Vec<String>,
    /// `KEY=VALUE` entries added to (and overriding) the container's environment.
    pub env: Vec<String>,
    /// Empty: the container's working directory.
    pub working_dir: String,
    /// Empty: the container's user.
    pub user: String,
    pub tty: bool,
    pub open_stdin: bool,
    /// The exec's environment entries with their values sealed with the container's key
    /// (`sealed.rs`); `env` then holds none. Records written before sealing decode as none.
    #[serde(default)]
    pub sealed_env: Vec<SealedEnv>,
}

/// What a container was created with, fully resolved (image defaults merged with overrides),
/// so the task can be (re)created from the log alone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ContainerRecord {
    pub id: String,
    pub image: String,
    pub image_digest: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    /// Chain ids of the read-only layers, bottom to top.
    pub lowers: Vec<String>,
    /// Key of the container's writable snapshot (its id).
    pub snapshot_key: String,
    /// `-i`: the task's stdin is a FIFO in its task directory that a client writes to (until it
    /// closes it); otherwise stdin is /dev/null.
    #[serde(default)]
    pub open_stdin: bool,
    /// `-t`: the task's process gets a pseudo-terminal; its output (one stream) goes to stdout.
    #[serde(default)]
    pub tty: bool,
    /// Limits, restart policy and security options; records written before they existed
    /// decode as none (no limits, no restart, berth's default security). Boxed: most events
    /// are small, and an `Event` is as large as its largest variant.
    #[serde(default)]
    pub policies: Box<ContainerPolicies>,

    // Storage and auto-removal (issue 9). One group at the end, each `#[serde(default)]`, so
    // records written before them decode as "no mounts, writable root, kept after exit".
    /// Bind mounts, volumes and tmpfs mounts, in the order they are mounted.
    #[serde(default)]
    pub mounts: Vec<MountRecord>,
    /// The root file system is mounted read-only (`--read-only`).
    #[serde(default)]
    pub read_only_rootfs: bool,
    /// berthd deletes the task and the container (and its anonymous volumes) once the task has
    /// exited (`run -d --rm`).
    #[serde(default)]
    pub auto_remove: bool,

    // Forgettable secrets (docs/secrets.md).
    /// The environment with its values sealed with the container's key (`sealed.rs`), in
    /// order; `env` then holds none. Records written before sealing (and by a berthd with
    /// `[secrets] seal = false`) keep the environment in `env` and have none here.
    #[serde(default)]
    pub sealed_env: Vec<SealedEnv>,
    // Networking (issue 10). `#[serde(default)]`: records written before it decode as mode ""
    // (= none, the loopback-only namespace every container had then).
    /// `--network`, `-p`, `--dns`, `--add-host`.
    #[serde(default)]
    pub network: ContainerNetwork,
}

/// What a mount is: a host directory, a berth volume or a fresh tmpfs.
pub const MOUNT_KIND_BIND: &str = "bind";
pub const MOUNT_KIND_VOLUME: &str = "volume";
pub const MOUNT_KIND_TMPFS: &str = "tmpfs";

/// One mount of a container, as resolved at create.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct MountRecord {
    /// `bind`, `volume` or `tmpfs` ([`MOUNT_KIND_BIND`] …).
    pub kind: String,
    /// bind: the host path with every symlink resolved at create; volume: the volume's name;
    /// tmpfs: empty.
    pub source: String,
    /// Absolute path inside the container.
    pub destination: String,
    pub read_only: bool,
    /// tmpfs options (`size=64m`, `mode=1777`, …); empty for the others.
    pub options: Vec<String>,
}

/// A volume: a directory under berth's root that outlives the containers using it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct VolumeRecord {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The container an anonymous volume (from an image's `VOLUME`) was made for; removed with
    /// it by `rm -v` or `--rm`. `None` for a named volume.
    pub anonymous_for: Option<String>,
}

impl ContainerRecord {
    /// The container's environment: `env` as recorded when it was not sealed (older records,
    /// or a berthd told not to seal), else the sealed entries opened with `key`.
    pub fn environment(
        &self,
        namespace: &str,
        key: Option<&crate::sealed::SecretKey>,
    ) -> Result<Vec<String>, crate::sealed::SecretError> {
        let mut env = self.env.clone();
        env.extend(crate::sealed::open_env(key, namespace, &self.id, &self.sealed_env)?);
        Ok(env)
    }

    /// The key id its sealed values name, if it has any.
    pub fn sealed_key_id(&self) -> Option<&str> {
        self.sealed_env.first().map(|entry| entry.value.key_id.as_str())
    }
}

impl ExecProcess {
    /// The exec's own environment entries, opened as [`ContainerRecord::environment`] does.
    pub fn environment(
        &self,
        namespace: &str,
        container_id: &str,
        key: Option<&crate::sealed::SecretKey>,
    ) -> Result<Vec<String>, crate::sealed::SecretError> {
        let mut env = self.env.clone();
        env.extend(crate::sealed::open_env(key, namespace, container_id, &self.sealed_env)?);
        Ok(env)
    }
}

impl Envelope {
    pub fn new(namespace: impl Into<String>, origin: Origin, events: Vec<Event>) -> Envelope {
        Envelope { schema: EVENT_SCHEMA, namespace: namespace.into(), origin, events }
    }

    /// The record payload: rmp-serde, compact form.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding plain structs and strings into a Vec cannot fail.
        rmp_serde::to_vec(self).expect("envelope encodes")
    }

    pub fn decode(payload: &[u8]) -> Result<Envelope, DecodeError> {
        let envelope: Envelope =
            rmp_serde::from_slice(payload).map_err(|error| DecodeError::Malformed { reason: error.to_string() })?;
        if envelope.schema > EVENT_SCHEMA {
            return Err(DecodeError::NewerSchema { found: envelope.schema, supported: EVENT_SCHEMA });
        }
        Ok(envelope)
    }

    /// The seq of the intent this record answers, if it is a daemon outcome.
    pub fn answers(&self) -> Option<Seq> {
        match &self.origin {
            Origin::Daemon { answers, .. } => *answers,
            Origin::Client { .. } => None,
        }
    }
}

impl Event {
    /// The event's name, e.g. "TaskStarted".
    pub fn kind(&self) -> &'static str {
        match self {
            Event::NamespaceCreated { .. } => "NamespaceCreated",
            Event::NamespaceRemoved { .. } => "NamespaceRemoved",
            Event::ContentAdded { .. } => "ContentAdded",
            Event::ContentRemoved { .. } => "ContentRemoved",
            Event::SnapshotCommitted { .. } => "SnapshotCommitted",
            Event::SnapshotRemoved { .. } => "SnapshotRemoved",
            Event::ImageCreated { .. } => "ImageCreated",
            Event::ImageUpdated { .. } => "ImageUpdated",
            Event::ImageRemoved { .. } => "ImageRemoved",
            Event::ImagePulled { .. } => "ImagePulled",
            Event::ImagePushed { .. } => "ImagePushed",
            Event::ContainerCreated { .. } => "ContainerCreated",
            Event::ContainerDeleted { .. } => "ContainerDeleted",
            Event::ContainerUpdated { .. } => "ContainerUpdated",
            Event::TaskCreateRequested { .. } => "TaskCreateRequested",
            Event::TaskCreated { .. } => "TaskCreated",
            Event::TaskCreateFailed { .. } => "TaskCreateFailed",
            Event::TaskStartRequested { .. } => "TaskStartRequested",
            Event::TaskStarted { .. } => "TaskStarted",
            Event::TaskStartFailed { .. } => "TaskStartFailed",
            Event::TaskKillRequested { .. } => "TaskKillRequested",
            Event::TaskPaused { .. } => "TaskPaused",
            Event::TaskResumed { .. } => "TaskResumed",
            Event::TaskKillDelivered { .. } => "TaskKillDelivered",
            Event::TaskKillFailed { .. } => "TaskKillFailed",
            Event::TaskExited { .. } => "TaskExited",
            Event::ExecRequested { .. } => "ExecRequested",
            Event::ExecStarted { .. } => "ExecStarted",
            Event::ExecStartFailed { .. } => "ExecStartFailed",
            Event::ExecExited { .. } => "ExecExited",
            Event::TaskDeleteRequested { .. } => "TaskDeleteRequested",
            Event::TaskDeleted { .. } => "TaskDeleted",
            Event::TaskDeleteFailed { .. } => "TaskDeleteFailed",
            Event::TaskRestartScheduled { .. } => "TaskRestartScheduled",
            Event::DaemonStarted { .. } => "DaemonStarted",
            Event::OrphanRemoved { .. } => "OrphanRemoved",
            Event::VolumeCreated { .. } => "VolumeCreated",
            Event::VolumeRemoved { .. } => "VolumeRemoved",
            Event::SecretsForgotten { .. } => "SecretsForgotten",
            Event::CheckpointWritten { .. } => "CheckpointWritten",
            Event::NetworkCreated { .. } => "NetworkCreated",
            Event::NetworkRemoved { .. } => "NetworkRemoved",
            Event::NetworkAttached { .. } => "NetworkAttached",
            Event::NetworkDetached { .. } => "NetworkDetached",
            Event::NetworkReleased { .. } => "NetworkReleased",
        }
    }

    /// The container this event is about, if any.
    pub fn container_id(&self) -> Option<&str> {
        match self {
            Event::ContainerCreated { container } => Some(&container.id),
            Event::ContainerDeleted { id } | Event::ContainerUpdated { id, .. } => Some(id),
            Event::TaskCreateRequested { container_id }
            | Event::TaskCreated { container_id, .. }
            | Event::TaskCreateFailed { container_id, .. }
            | Event::TaskStartRequested { container_id }
            | Event::TaskStarted { container_id, .. }
            | Event::TaskStartFailed { container_id, .. }
            | Event::TaskKillRequested { container_id, .. }
            | Event::TaskPaused { container_id }
            | Event::TaskResumed { container_id }
            | Event::TaskKillDelivered { container_id, .. }
            | Event::TaskKillFailed { container_id, .. }
            | Event::TaskExited { container_id, .. }
            | Event::ExecRequested { container_id, .. }
            | Event::ExecStarted { container_id, .. }
            | Event::ExecStartFailed { container_id, .. }
            | Event::ExecExited { container_id, .. }
            | Event::TaskDeleteRequested { container_id, .. }
            | Event::TaskDeleted { container_id, .. }
            | Event::TaskDeleteFailed { container_id, .. }
            | Event::TaskRestartScheduled { container_id, .. }
            | Event::SecretsForgotten { container_id, .. }
            | Event::NetworkAttached { container_id, .. }
            | Event::NetworkDetached { container_id, .. }
            | Event::NetworkReleased { container_id, .. } => Some(container_id),
            _ => None,
        }
    }

    /// The event's fields as a JSON object (without the variant name).
    pub fn fields_json(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut outer)) => outer.remove(self.kind()).unwrap_or(serde_json::Value::Null),
            Ok(other) => other,
            Err(error) => serde_json::json!({ "error": error.to_string() }),
        }
    }
}

impl Origin {
    /// One line for humans: `uid=0 gid=0 pid=42 Tasks/Start req=cli-42-1` or
    /// `daemon answers=57 (task exited)`.
    pub fn describe(&self) -> String {
        match self {
            Origin::Client { uid, gid, pid, method, request_id } => {
                format!("uid={uid} gid={gid} pid={pid} {method} req={request_id}")
            }
            Origin::Daemon { reason, answers: Some(seq) } => format!("daemon answers={seq} ({reason})"),
            Origin::Daemon { reason, answers: None } => format!("daemon ({reason})"),
        }
    }
}
