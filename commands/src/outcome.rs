//! RecordOutcome: the executor's answer to a task's intent, or a task's exit it observed (facts
//! about the daemon itself are `RecordDaemonEvent`). Checked like any
//! other command, so an outcome is recorded at most once: a second answer to the same intent
//! (say, after a crash between doing the work and recording it) is refused, not duplicated.

use berth_log::Seq;
use berth_projections::{Event, PendingIntent, State, TaskState, TaskStatus};

use crate::{CommandError, DeleteContainer};

pub struct RecordOutcome {
    /// The intent's seq; `None` for what answers no intent (an exit).
    pub answers: Option<Seq>,
    /// One outcome, or several that happened together, in the order they happened: a create
    /// and start answered at once, followed by the exit when the process had already ended.
    /// Each is checked against the task as the ones before it left it.
    pub events: Vec<Event>,
    /// After a `TaskDeleted`: the container's removal in the same record, as `DeleteContainer`
    /// decides it once the task is gone (`Containers/Delete` with `delete_task`: one record, one
    /// fdatasync, for what would otherwise be two).
    pub then_remove: Option<DeleteContainer>,
}

impl RecordOutcome {
    /// One outcome.
    pub fn one(answers: Option<Seq>, event: Event) -> RecordOutcome {
        RecordOutcome::together(answers, vec![event])
    }

    /// Several outcomes that happened together, in one record.
    pub fn together(answers: Option<Seq>, events: Vec<Event>) -> RecordOutcome {
        RecordOutcome { answers, events, then_remove: None }
    }

    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let Some(first) = self.events.first() else {
            return Err(CommandError::InvalidArgument("an outcome record needs at least one event".into()));
        };
        let Some(container_id) = first.container_id() else {
            return Err(CommandError::InvalidArgument(format!("{} is not a task outcome", first.kind())));
        };
        let mut task = state
            .container(namespace, container_id)
            .and_then(|container| container.task.clone())
            .ok_or_else(|| CommandError::NotFound(format!("container {container_id:?} has no task")))?;
        let mut task_deleted = false;
        for (event_idx, event) in self.events.iter().enumerate() {
            if event.container_id() != Some(container_id) {
                return Err(CommandError::InvalidArgument(format!(
                    "{} is not about container {container_id:?}; one outcome record is about one task",
                    event.kind()
                )));
            }
            self.check(&task, container_id, event)?;
            let deleted = task.apply_event(Seq(0), self.answers, event);
            if deleted && event_idx + 1 < self.events.len() {
                return Err(CommandError::InvalidArgument(format!(
                    "nothing can follow {} in one record",
                    event.kind()
                )));
            }
            task_deleted = deleted;
        }
        let mut events = self.events.clone();
        if let Some(remove) = &self.then_remove {
            if !task_deleted || remove.id != container_id {
                return Err(CommandError::InvalidArgument(format!(
                    "container {:?} can be removed in an outcome record only after its own task's deletion",
                    remove.id
                )));
            }
            events.extend(remove.decide_after_task_deleted(state, namespace)?);
        }
        Ok(events)
    }

    /// Whether `event` may be recorded for a task in the state `task`.
    fn check(&self, task: &TaskState, container_id: &str, event: &Event) -> Result<(), CommandError> {
        let pending = |want: fn(&PendingIntent) -> bool| -> Result<(), CommandError> {
            let answered = task.pending.iter().any(|intent| want(intent) && Some(intent.seq()) == self.answers);
            if answered {
                Ok(())
            } else {
                Err(CommandError::FailedPrecondition(format!(
                    "{} for {container_id:?} answers no pending intent (answers={:?})",
                    event.kind(),
                    self.answers
                )))
            }
        };
        match event {
            Event::TaskCreated { .. } | Event::TaskCreateFailed { .. } => {
                pending(|intent| matches!(intent, PendingIntent::Create { .. }))
            }
            // CNI ADD is part of the create it comes before.
            Event::NetworkAttached { .. } if task.network.is_some() => Err(CommandError::FailedPrecondition(format!(
                "the task of {container_id:?} already has a network attachment"
            ))),
            // Recovery adopting a task whose ADD finished but was not recorded.
            Event::NetworkAttached { .. } if self.answers.is_none() && task.is_live() => Ok(()),
            Event::NetworkAttached { .. } => pending(|intent| matches!(intent, PendingIntent::Create { .. })),
            Event::NetworkDetached { network, .. } => match &task.network {
                Some(attachment) if &attachment.network == network => Ok(()),
                _ => Err(CommandError::FailedPrecondition(format!(
                    "the task of {container_id:?} is not attached to network {network:?}"
                ))),
            },
            Event::TaskStarted { .. } | Event::TaskStartFailed { .. } => {
                pending(|intent| matches!(intent, PendingIntent::Start { .. }))
            }
            Event::TaskKillDelivered { .. } | Event::TaskKillFailed { .. } => {
                pending(|intent| matches!(intent, PendingIntent::Kill { .. }))
            }
            Event::TaskDeleted { .. } | Event::TaskDeleteFailed { .. } => {
                pending(|intent| matches!(intent, PendingIntent::Delete { .. }))
            }
            Event::ExecStarted { exec_id, .. } | Event::ExecStartFailed { exec_id, .. } => {
                let answered = task.pending.iter().any(|intent| {
                    matches!(intent, PendingIntent::Exec { seq, exec_id: id } if id == exec_id && Some(*seq) == self.answers)
                });
                if answered {
                    Ok(())
                } else {
                    Err(CommandError::FailedPrecondition(format!(
                        "{} for exec {exec_id:?} of {container_id:?} answers no pending intent (answers={:?})",
                        event.kind(),
                        self.answers
                    )))
                }
            }
            Event::ExecExited { exec_id, .. } => match task.execs.get(exec_id) {
                Some(exec) if exec.exit.is_none() && exec.status != berth_projections::ExecStatus::Failed => Ok(()),
                Some(exec) => Err(CommandError::FailedPrecondition(format!(
                    "exec {exec_id:?} of {container_id:?} is {}: its exit is recorded or it never ran",
                    exec.status.name()
                ))),
                None => Err(CommandError::NotFound(format!("container {container_id:?} has no exec {exec_id:?}"))),
            },
            Event::TaskExited { .. } => {
                let live = matches!(task.status, TaskStatus::Created | TaskStatus::Starting | TaskStatus::Running)
                    || (task.status == TaskStatus::Deleting && task.exit.is_none());
                if task.exit.is_some() {
                    return Err(CommandError::FailedPrecondition(format!(
                        "task of {container_id:?} is {} and its exit is already recorded",
                        task.status.name()
                    )));
                }
                if !live {
                    return Err(CommandError::FailedPrecondition(format!(
                        "task of {container_id:?} is {}: it never ran, so it has no exit to record",
                        task.status.name()
                    )));
                }
                Ok(())
            }
            other => Err(CommandError::InvalidArgument(format!("{} is not an outcome", other.kind()))),
        }
    }
}
