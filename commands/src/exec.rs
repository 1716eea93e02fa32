//! ExecProcess: `berth exec`'s intent, another process in a running task's container. The
//! executor answers it with `ExecStarted` or `ExecStartFailed`, and the process's monitor's
//! report with `ExecExited` (both through `RecordOutcome`).

use berth_projections::{Event, ExecProcess as ExecProcessSpec, Sealer, State, TaskStatus};

use crate::container::not_found;
use crate::{validate, CommandError};

pub struct ExecProcess {
    pub container_id: String,
    pub exec_id: String,
    pub process: ExecProcessSpec,
    /// The container's key, when its record is sealed: the exec's environment values are
    /// recorded sealed with it.
    pub sealer: Option<Sealer>,
}

impl ExecProcess {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let id = &self.container_id;
        let container = state.container(namespace, id).ok_or_else(|| not_found(namespace, id))?;
        let Some(task) = container.task.as_ref() else {
            return Err(CommandError::FailedPrecondition(format!(
                "container {id:?} is not running (it has no task): start it with `berth start {id}`"
            )));
        };
        if task.status != TaskStatus::Running || task.exit.is_some() {
            return Err(CommandError::FailedPrecondition(format!(
                "container {id:?} is {}, not running: exec needs a running container",
                task.status.name()
            )));
        }
        crate::task::refuse_if_paused(id, task.paused)?;
        validate::exec_id(&self.exec_id)?;
        if task.execs.contains_key(&self.exec_id) {
            return Err(CommandError::AlreadyExists(format!(
                "container {id:?} already has an exec {:?}: choose another exec id",
                self.exec_id
            )));
        }
        if self.process.args.is_empty() || self.process.args[0].is_empty() {
            return Err(CommandError::InvalidArgument(
                "exec needs a command: give it after the container id, e.g. `berth exec ID sh`".to_string(),
            ));
        }
        for entry in &self.process.env {
            validate::env_entry(entry)?;
        }
        validate::process_strings(&self.process.args, &self.process.env)?;
        validate::user(&self.process.user)?;
        if !self.process.working_dir.is_empty() && !self.process.working_dir.starts_with('/') {
            return Err(CommandError::InvalidArgument(format!(
                "working directory {:?} is relative: give an absolute path",
                self.process.working_dir
            )));
        }
        let mut process = self.process.clone();
        if let Some(sealer) = &self.sealer {
            if container.record.sealed_key_id() != Some(sealer.key.key_id.as_str()) {
                return Err(CommandError::FailedPrecondition(format!(
                    "container {id:?} was created with another key than the one berthd read: send the exec again"
                )));
            }
            process.sealed_env = sealer.seal_env(&process.env);
            process.env.clear();
        }
        Ok(vec![Event::ExecRequested { container_id: id.clone(), exec_id: self.exec_id.clone(), process }])
    }
}
