//! berth-projections: the event types berth records, and the pure folds (projections) that
//! turn the log into state — namespaces, images, containers, the content and snapshot indexes,
//! and each container's task state machine. No IO, no clock, no tokio.

mod canonical;
pub mod checkpoint;
pub mod decode;
pub mod error;
pub mod event;
pub mod event_json;
pub mod names;
pub mod network;
pub mod policy;
pub mod sealed;
pub mod state;

pub use decode::{decode_envelope, replay_parallel};
pub use error::{CheckpointError, DecodeError};
pub use event::{
    ContainerRecord, Descriptor, Envelope, Event, ExecProcess, ExitCause, ImageRecord, LayerRecord, MountRecord,
    Origin, VolumeRecord, EVENT_SCHEMA, MOUNT_KIND_BIND, MOUNT_KIND_TMPFS, MOUNT_KIND_VOLUME,
};
pub use network::{
    ContainerNetwork, NetworkAttachment, NetworkRecord, PortMapping, NETWORK_BRIDGE, NETWORK_HOST, NETWORK_NONE,
};
pub use policy::{
    ContainerPolicies, DeviceMapping, ResourceLimits, RestartMode, RestartPolicy, SecurityOptions, Ulimit,
};
pub use sealed::{open_env, Sealed, SealedEnv, Sealer, SecretError, SecretKey, SecretKeyUse, SecretKeys, FORGOTTEN};
pub use state::{
    ContainerState, ContentState, ExecState, ExecStatus, ExitInfo, ImageState, NamespaceState, NetworkState,
    PendingIntent, RestartState, SnapshotState, State, TaskState, TaskStatus, VolumeState,
};
