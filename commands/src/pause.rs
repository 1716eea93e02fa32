//! PauseTask and ResumeTask: freezing a running task's processes and thawing them. berthd runs
//! `runc pause`/`runc resume` first and records the fact after, as `berth update` does, so the
//! decision is checked twice: before the host is touched (`decide` on the state then) and when
//! the event is recorded (a kill or exit may have come in between).

use berth_projections::{Event, State, TaskStatus};

use crate::task::task;
use crate::CommandError;

pub struct PauseTask {
    pub container_id: String,
}

impl PauseTask {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let task = task(state, namespace, &self.container_id)?;
        if task.status != TaskStatus::Running {
            return Err(CommandError::FailedPrecondition(format!(
                "task of {:?} is {}, only a running task can be paused",
                self.container_id,
                task.status.name()
            )));
        }
        if task.paused {
            return Err(CommandError::FailedPrecondition(format!(
                "task of {:?} is already paused: `berth resume {}` thaws it",
                self.container_id, self.container_id
            )));
        }
        Ok(vec![Event::TaskPaused { container_id: self.container_id.clone() }])
    }
}

pub struct ResumeTask {
    pub container_id: String,
}

impl ResumeTask {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let task = task(state, namespace, &self.container_id)?;
        if !task.paused {
            return Err(CommandError::FailedPrecondition(format!(
                "task of {:?} is {}, not paused: there is nothing to resume",
                self.container_id,
                task.status.name()
            )));
        }
        Ok(vec![Event::TaskResumed { container_id: self.container_id.clone() }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_state::{container, image, state_of};
    use crate::{ExecProcess, KillTask};
    use berth_projections::Event;

    const ID: &str = "c";

    /// A state whose container `c` has a task that got as far as `events` took it.
    fn with_task(events: Vec<Event>) -> State {
        let mut all = vec![Event::ContainerCreated { container: container(ID, &image("img", &["a"])) }];
        all.push(Event::TaskCreateRequested { container_id: ID.into() });
        all.extend(events);
        state_of(vec![("default", vec![crate::test_state::namespace_created("default")]), ("default", all)])
    }

    fn running() -> Vec<Event> {
        vec![
            Event::TaskCreated { container_id: ID.into(), pid: 7, monitor_pid: 6 },
            Event::TaskStartRequested { container_id: ID.into() },
            Event::TaskStarted { container_id: ID.into(), pid: 7 },
        ]
    }

    fn pause() -> PauseTask {
        PauseTask { container_id: ID.into() }
    }

    fn resume() -> ResumeTask {
        ResumeTask { container_id: ID.into() }
    }

    #[test]
    fn only_a_running_task_pauses_and_only_a_paused_one_resumes() {
        let state = with_task(running());
        assert_eq!(pause().decide(&state, "default").unwrap(), vec![Event::TaskPaused { container_id: ID.into() }]);
        assert!(resume().decide(&state, "default").is_err());
        let created = with_task(running()[..1].to_vec());
        assert!(pause().decide(&created, "default").is_err());

        let mut paused_events = running();
        paused_events.push(Event::TaskPaused { container_id: ID.into() });
        let paused = with_task(paused_events.clone());
        assert!(pause().decide(&paused, "default").is_err());
        assert_eq!(resume().decide(&paused, "default").unwrap(), vec![Event::TaskResumed { container_id: ID.into() }]);

        paused_events.push(Event::TaskResumed { container_id: ID.into() });
        assert!(pause().decide(&with_task(paused_events), "default").is_ok());
    }

    #[test]
    fn a_paused_task_refuses_kill_and_exec_naming_resume() {
        let mut events = running();
        events.push(Event::TaskPaused { container_id: ID.into() });
        let state = with_task(events);
        let kill = KillTask { container_id: ID.into(), signal: 9, all: false };
        let error = kill.decide(&state, "default").unwrap_err();
        assert!(error.to_string().contains("berth resume c"), "{error}");
        let exec =
            ExecProcess { container_id: ID.into(), exec_id: "e1".into(), process: Default::default(), sealer: None };
        assert!(exec.decide(&state, "default").unwrap_err().to_string().contains("resume"));
    }
}
