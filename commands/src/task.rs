//! CreateTask, StartTask, KillTask and DeleteTask: the intents. Each is checked against the
//! task state machine and recorded as a `…Requested` event; the executor answers it.

use berth_projections::{ContainerState, Event, State, TaskState, TaskStatus};

use crate::container::{check_lowers, create_intents, not_found};
use crate::CommandError;

fn container<'a>(state: &'a State, namespace: &str, id: &str) -> Result<&'a ContainerState, CommandError> {
    state.container(namespace, id).ok_or_else(|| not_found(namespace, id))
}

pub(crate) fn task<'a>(state: &'a State, namespace: &str, id: &str) -> Result<&'a TaskState, CommandError> {
    container(state, namespace, id)?.task.as_ref().ok_or_else(|| {
        CommandError::NotFound(format!("container {id:?} has no task: create one with `berth start {id}`"))
    })
}

fn busy(id: &str, task: &TaskState) -> Option<CommandError> {
    // A kill or an exec waiting for its outcome does not stand in the way of another intent.
    let blocking = |intent: &&berth_projections::PendingIntent| {
        !matches!(intent, berth_projections::PendingIntent::Kill { .. } | berth_projections::PendingIntent::Exec { .. })
    };
    task.pending.iter().find(blocking).map(|intent| {
        CommandError::FailedPrecondition(format!(
            "task of {id:?} is {} (request at seq {} not answered yet): wait for it and retry",
            task.status.name(),
            intent.seq()
        ))
    })
}

/// The refusal a kill or an exec of a paused task gets: a frozen process takes no signal
/// (cgroup v1 freezer) and starts nothing, so the request would hang until a resume.
pub(crate) fn refuse_if_paused(container_id: &str, paused: bool) -> Result<(), CommandError> {
    if paused {
        return Err(CommandError::FailedPrecondition(format!(
            "task of {container_id:?} is paused: run `berth resume {container_id}` first"
        )));
    }
    Ok(())
}

pub struct CreateTask {
    pub container_id: String,
    /// Start it as soon as it is created.
    pub start: bool,
}

impl CreateTask {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let container = container(state, namespace, &self.container_id)?;
        if let Some(task) = &container.task {
            return Err(CommandError::AlreadyExists(format!(
                "container {:?} already has a task ({}): delete it first with `berth rm -f {}` or use it",
                self.container_id,
                task.status.name(),
                self.container_id
            )));
        }
        check_lowers(state, &container.record)?;
        Ok(create_intents(&self.container_id, self.start))
    }
}

pub struct StartTask {
    pub container_id: String,
}

impl StartTask {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let task = task(state, namespace, &self.container_id)?;
        if let Some(error) = busy(&self.container_id, task) {
            return Err(error);
        }
        if task.status != TaskStatus::Created {
            return Err(CommandError::FailedPrecondition(format!(
                "task of {:?} is {}, only a created task can be started: delete it and create a new one",
                self.container_id,
                task.status.name()
            )));
        }
        Ok(vec![Event::TaskStartRequested { container_id: self.container_id.clone() }])
    }
}

pub struct KillTask {
    pub container_id: String,
    pub signal: i32,
    pub all: bool,
}

impl KillTask {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        if !(1..=64).contains(&self.signal) {
            return Err(CommandError::InvalidArgument(format!(
                "signal {} is not a signal number (1 to 64): use e.g. 15 (TERM) or 9 (KILL)",
                self.signal
            )));
        }
        let task = task(state, namespace, &self.container_id)?;
        if !task.is_live() {
            return Err(CommandError::FailedPrecondition(format!(
                "task of {:?} is {}, there is no process to signal",
                self.container_id,
                task.status.name()
            )));
        }
        refuse_if_paused(&self.container_id, task.paused)?;
        Ok(vec![Event::TaskKillRequested {
            container_id: self.container_id.clone(),
            signal: self.signal,
            all: self.all,
        }])
    }
}

pub struct DeleteTask {
    pub container_id: String,
    pub force: bool,
}

impl DeleteTask {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let task = task(state, namespace, &self.container_id)?;
        if task.status == TaskStatus::Deleting {
            return Err(CommandError::FailedPrecondition(format!(
                "task of {:?} is already being deleted: wait for it",
                self.container_id
            )));
        }
        if !self.force {
            if let Some(error) = busy(&self.container_id, task) {
                return Err(error);
            }
            if task.is_live() {
                return Err(CommandError::FailedPrecondition(format!(
                    "task of {:?} is {}: kill it first, or force with `berth rm -f {}`",
                    self.container_id,
                    task.status.name(),
                    self.container_id
                )));
            }
        }
        Ok(vec![Event::TaskDeleteRequested { container_id: self.container_id.clone(), force: self.force }])
    }
}
