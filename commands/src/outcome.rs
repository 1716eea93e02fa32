//! RecordOutcome: the executor's answer to an intent, or an exit it observed. Checked like any
//! other command, so an outcome is recorded at most once: a second answer to the same intent
//! (say, after a crash between doing the work and recording it) is refused, not duplicated.

use berth_projections::{Event, PendingIntent, State, TaskStatus};

use crate::CommandError;

pub struct RecordOutcome {
    /// The intent's seq; `None` for what answers no intent (an exit).
    pub answers: Option<u64>,
    pub event: Event,
}

impl RecordOutcome {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let Some(container_id) = self.event.container_id() else {
            return match &self.event {
                Event::DaemonStarted { .. } | Event::OrphanRemoved { .. } => Ok(vec![self.event.clone()]),
                other => Err(CommandError::InvalidArgument(format!("{} is not an outcome", other.kind()))),
            };
        };
        let task = state
            .container(namespace, container_id)
            .and_then(|container| container.task.as_ref())
            .ok_or_else(|| CommandError::NotFound(format!("container {container_id:?} has no task")))?;
        let pending = |want: fn(&PendingIntent) -> bool| -> Result<(), CommandError> {
            let answered = task.pending.iter().any(|intent| want(intent) && Some(intent.seq()) == self.answers);
            if answered {
                Ok(())
            } else {
                Err(CommandError::FailedPrecondition(format!(
                    "{} for {container_id:?} answers no pending intent (answers={:?})",
                    self.event.kind(),
                    self.answers
                )))
            }
        };
        match &self.event {
            Event::TaskCreated { .. } | Event::TaskCreateFailed { .. } => {
                pending(|intent| matches!(intent, PendingIntent::Create { .. }))?
            }
            Event::TaskStarted { .. } | Event::TaskStartFailed { .. } => {
                pending(|intent| matches!(intent, PendingIntent::Start { .. }))?
            }
            Event::TaskKillDelivered { .. } | Event::TaskKillFailed { .. } => {
                pending(|intent| matches!(intent, PendingIntent::Kill { .. }))?
            }
            Event::TaskDeleted { .. } | Event::TaskDeleteFailed { .. } => {
                pending(|intent| matches!(intent, PendingIntent::Delete { .. }))?
            }
            Event::TaskExited { .. } => {
                let live = matches!(task.status, TaskStatus::Created | TaskStatus::Starting | TaskStatus::Running)
                    || (task.status == TaskStatus::Deleting && task.exit.is_none());
                if !live || task.exit.is_some() {
                    return Err(CommandError::FailedPrecondition(format!(
                        "task of {container_id:?} is {} and its exit is already recorded",
                        task.status.name()
                    )));
                }
            }
            other => return Err(CommandError::InvalidArgument(format!("{} is not an outcome", other.kind()))),
        }
        Ok(vec![self.event.clone()])
    }
}
