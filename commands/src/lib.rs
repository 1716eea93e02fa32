//! berth-commands: every mutating request is a command. A command is checked against the
//! projections and, if it fits, returns the events to append; otherwise it returns a
//! [`CommandError`] kind. Pure: no IO, no clock, no tokio (one file per command family).

pub mod container;
pub mod daemon;
pub mod error;
pub mod exec;
pub mod image;
pub mod namespace;
pub mod network;
pub mod outcome;
pub mod pause;
pub mod policy;
pub mod pull;
pub mod push;
pub mod references;
pub mod restart;
pub mod secrets;
pub mod task;
#[cfg(test)]
mod test_state;
pub mod validate;
pub mod volume;

pub use container::{
    merge_env, merge_process_args, CreateContainer, DeleteContainer, UpdateContainer, DEFAULT_PATH_ENV,
};
pub use daemon::RecordDaemonEvent;
pub use error::CommandError;
pub use exec::ExecProcess;
pub use image::{image_not_found, resolve_image, ImportImage, PruneImages, RemoveImage, TagImage};
pub use namespace::{CreateNamespace, RemoveNamespace};
pub use network::{CreateNetwork, NetworkRequest, RemoveNetwork};
pub use outcome::RecordOutcome;
pub use pause::{PauseTask, ResumeTask};
pub use policy::{HostFacts, LimitsRequest, PolicyRequest, SecurityRequest};
pub use pull::{PullImage, PullProvenance, RecordPulledBlobs};
pub use push::PushImage;
pub use restart::{restart_plan, RestartPlan, RestartTask};
pub use secrets::ForgetSecrets;
pub use task::{CreateTask, DeleteTask, KillTask, StartTask};
pub use volume::{CreateVolume, RemoveVolume};

use berth_projections::{Event, State};

/// Any command, for the daemon's single command queue.
pub enum Command {
    CreateNamespace(CreateNamespace),
    RemoveNamespace(RemoveNamespace),
    ImportImage(ImportImage),
    RemoveImage(RemoveImage),
    RecordPulledBlobs(RecordPulledBlobs),
    PullImage(PullImage),
    PruneImages(PruneImages),
    TagImage(TagImage),
    PushImage(PushImage),
    CreateContainer(CreateContainer),
    DeleteContainer(DeleteContainer),
    UpdateContainer(UpdateContainer),
    RestartTask(RestartTask),
    CreateTask(CreateTask),
    StartTask(StartTask),
    KillTask(KillTask),
    PauseTask(PauseTask),
    ResumeTask(ResumeTask),
    DeleteTask(DeleteTask),
    ExecProcess(ExecProcess),
    RecordOutcome(RecordOutcome),
    RecordDaemonEvent(RecordDaemonEvent),
    CreateVolume(CreateVolume),
    RemoveVolume(RemoveVolume),
    ForgetSecrets(ForgetSecrets),
    CreateNetwork(CreateNetwork),
    RemoveNetwork(RemoveNetwork),
}

impl Command {
    /// Check the command against `state` (in `namespace`) and return the events to append.
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        match self {
            Command::CreateNamespace(command) => command.decide(state),
            Command::RemoveNamespace(command) => command.decide(state),
            Command::ImportImage(command) => command.decide(state, namespace),
            Command::RemoveImage(command) => command.decide(state, namespace),
            Command::RecordPulledBlobs(command) => command.decide(state),
            Command::PullImage(command) => command.decide(state, namespace),
            Command::PruneImages(command) => command.decide(state, namespace),
            Command::TagImage(command) => command.decide(state, namespace),
            Command::PushImage(command) => command.decide(state, namespace),
            Command::CreateContainer(command) => command.decide(state, namespace),
            Command::DeleteContainer(command) => command.decide(state, namespace),
            Command::UpdateContainer(command) => command.decide(state, namespace),
            Command::RestartTask(command) => command.decide(state, namespace),
            Command::CreateTask(command) => command.decide(state, namespace),
            Command::StartTask(command) => command.decide(state, namespace),
            Command::KillTask(command) => command.decide(state, namespace),
            Command::PauseTask(command) => command.decide(state, namespace),
            Command::ResumeTask(command) => command.decide(state, namespace),
            Command::DeleteTask(command) => command.decide(state, namespace),
            Command::ExecProcess(command) => command.decide(state, namespace),
            Command::RecordOutcome(command) => command.decide(state, namespace),
            Command::RecordDaemonEvent(command) => command.decide(state),
            Command::CreateVolume(command) => command.decide(state, namespace),
            Command::RemoveVolume(command) => command.decide(state, namespace),
            Command::CreateNetwork(command) => command.decide(state),
            Command::RemoveNetwork(command) => command.decide(state),
            Command::ForgetSecrets(command) => command.decide(state, namespace),
        }
    }

    /// The command's type as its variant is named, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateNamespace(_) => "CreateNamespace",
            Command::RemoveNamespace(_) => "RemoveNamespace",
            Command::ImportImage(_) => "ImportImage",
            Command::RemoveImage(_) => "RemoveImage",
            Command::RecordPulledBlobs(_) => "RecordPulledBlobs",
            Command::PullImage(_) => "PullImage",
            Command::PruneImages(_) => "PruneImages",
            Command::TagImage(_) => "TagImage",
            Command::PushImage(_) => "PushImage",
            Command::CreateContainer(_) => "CreateContainer",
            Command::DeleteContainer(_) => "DeleteContainer",
            Command::UpdateContainer(_) => "UpdateContainer",
            Command::RestartTask(_) => "RestartTask",
            Command::CreateTask(_) => "CreateTask",
            Command::StartTask(_) => "StartTask",
            Command::KillTask(_) => "KillTask",
            Command::PauseTask(_) => "PauseTask",
            Command::ResumeTask(_) => "ResumeTask",
            Command::DeleteTask(_) => "DeleteTask",
            Command::ExecProcess(_) => "ExecProcess",
            Command::RecordOutcome(_) => "RecordOutcome",
            Command::RecordDaemonEvent(_) => "RecordDaemonEvent",
            Command::CreateVolume(_) => "CreateVolume",
            Command::RemoveVolume(_) => "RemoveVolume",
            Command::ForgetSecrets(_) => "ForgetSecrets",
            Command::CreateNetwork(_) => "CreateNetwork",
            Command::RemoveNetwork(_) => "RemoveNetwork",
        }
    }
}
