//! RestartTask and the restart policy's plan: whether a stopped task is started again, which
//! attempt that is and how long to back off first — all derived from the state, so berthd
//! killed during a backoff resumes it where the log says it was, neither reset nor doubled.

use berth_log::Timestamp;
use berth_projections::{ContainerState, Event, ExitCause, RestartMode, State, TaskStatus};

use crate::container::not_found;
use crate::CommandError;

/// The first restart waits this long; each further one in a row twice as long as the one before.
pub const BACKOFF_FIRST_MS: u64 = 100;
/// No backoff is longer than this.
pub const BACKOFF_CAP_MS: u64 = 60_000;
/// A task that ran at least this long before it ended starts the count (and backoff) again.
pub const BACKOFF_RESET_AFTER_NS: u64 = 10_000_000_000;

/// What the restart policy will do for a stopped task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPlan {
    /// 1 for the first restart in a row.
    pub attempt: u32,
    pub delay_ms: u64,
    /// What ended the task, in words for the log.
    pub cause: String,
    /// The exit this plan answers: the restart happens at `exited_at + delay`.
    pub exited_at_ns: Timestamp,
}

/// The restart the container's policy asks for now, if any: its task has stopped (with no intent
/// pending), no user stopped or killed it, and the policy covers this exit and attempt.
pub fn restart_plan(container: &ContainerState) -> Option<RestartPlan> {
    let policy = container.record.policies.restart;
    if policy.mode == RestartMode::No {
        return None;
    }
    let task = container.task.as_ref()?;
    if !task.pending.is_empty() || task.stopped_by_user {
        return None;
    }
    let (ended_at_ns, cause, failed) = match (task.status, task.exit) {
        (TaskStatus::Stopped, Some(exit)) => {
            let failed = exit.exit_code != 0 || exit.signal != 0 || exit.cause != ExitCause::Exited;
            let cause = match exit.cause {
                ExitCause::OomKilled => "an OOM kill".to_string(),
                ExitCause::MonitorLost => "the loss of its monitor".to_string(),
                ExitCause::Exited if exit.signal != 0 => format!("signal {}", exit.signal),
                ExitCause::Exited => format!("exit code {}", exit.exit_code),
            };
            (exit.exited_at_ns, cause, failed)
        }
        // A restart's own task that could not be created or started (berthd killed mid-create,
        // an image gone): one more failure. A client's failed create is the client's to see.
        (TaskStatus::Failed, _) if container.restart.task_from_restart => {
            (task.failed_at_ns?, "a failed create or start".to_string(), true)
        }
        _ => return None,
    };
    if policy.mode == RestartMode::OnFailure && !failed {
        return None;
    }
    // A task that failed to create or start did not run, whatever an earlier start says.
    let ran_ns = task
        .started_at_ns
        .filter(|_| task.status == TaskStatus::Stopped)
        .map(|started| ended_at_ns.as_ns().saturating_sub(started.as_ns()));
    let previous_attempts =
        if ran_ns.is_some_and(|ran_ns| ran_ns >= BACKOFF_RESET_AFTER_NS) { 0 } else { container.restart.attempt };
    let attempt = previous_attempts.saturating_add(1);
    if policy.mode == RestartMode::OnFailure && policy.max_retries > 0 && attempt > policy.max_retries {
        return None;
    }
    let doublings = (attempt - 1).min(20);
    let delay_ms = (BACKOFF_FIRST_MS << doublings).min(BACKOFF_CAP_MS);
    Some(RestartPlan { attempt, delay_ms, cause, exited_at_ns: ended_at_ns })
}

/// Carries out a [`RestartPlan`] once its backoff has passed: records the restart and asks for
/// the stopped task's deletion; the executor creates and starts its successor once it is gone.
/// Refused when the plan no longer holds (a user removed, started or deleted it meanwhile, or
/// the restart was already recorded).
pub struct RestartTask {
    pub container_id: String,
    pub plan: RestartPlan,
}

impl RestartTask {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let container =
            state.container(namespace, &self.container_id).ok_or_else(|| not_found(namespace, &self.container_id))?;
        if restart_plan(container).as_ref() != Some(&self.plan) {
            return Err(CommandError::FailedPrecondition(format!(
                "the restart of {:?} no longer applies: its task changed meanwhile",
                self.container_id
            )));
        }
        Ok(vec![
            Event::TaskRestartScheduled {
                container_id: self.container_id.clone(),
                attempt: self.plan.attempt,
                cause: self.plan.cause.clone(),
                delay_ms: self.plan.delay_ms,
            },
            Event::TaskDeleteRequested { container_id: self.container_id.clone(), force: false },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_projections::{ExitInfo, RestartPolicy, RestartState, TaskState};

    fn stopped(mode: RestartMode, max_retries: u32, exit_code: i32, ran_s: u64, attempt: u32) -> ContainerState {
        let mut container = ContainerState::default();
        container.record.policies.restart = RestartPolicy { mode, max_retries };
        container.restart = RestartState { attempt, awaiting_create: false, task_from_restart: true };
        container.task = Some(TaskState {
            status: TaskStatus::Stopped,
            exit: Some(ExitInfo {
                exit_code,
                signal: 0,
                exited_at_ns: Timestamp::from_ns(1_000_000_000_000 + ran_s * 1_000_000_000),
                cause: ExitCause::Exited,
            }),
            started_at_ns: Some(Timestamp::from_ns(1_000_000_000_000)),
            ..TaskState::default()
        });
        container
    }

    #[test]
    fn on_failure_restarts_failures_up_to_its_count() {
        assert_eq!(restart_plan(&stopped(RestartMode::OnFailure, 2, 0, 0, 0)), None);
        let first = restart_plan(&stopped(RestartMode::OnFailure, 2, 3, 0, 0)).unwrap();
        assert_eq!((first.attempt, first.delay_ms, first.cause.as_str()), (1, 100, "exit code 3"));
        assert_eq!(restart_plan(&stopped(RestartMode::OnFailure, 2, 3, 0, 1)).unwrap().attempt, 2);
        assert_eq!(restart_plan(&stopped(RestartMode::OnFailure, 2, 3, 0, 2)), None);
        assert_eq!(restart_plan(&stopped(RestartMode::No, 0, 3, 0, 0)), None);
    }

    #[test]
    fn backoff_doubles_is_capped_and_resets_after_ten_seconds_of_running() {
        let delays: Vec<u64> = (0..4)
            .map(|attempt| restart_plan(&stopped(RestartMode::Always, 0, 0, 1, attempt)).unwrap().delay_ms)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800]);
        assert_eq!(restart_plan(&stopped(RestartMode::Always, 0, 0, 1, 40)).unwrap().delay_ms, BACKOFF_CAP_MS);
        let after_a_long_run = restart_plan(&stopped(RestartMode::Always, 0, 0, 10, 7)).unwrap();
        assert_eq!((after_a_long_run.attempt, after_a_long_run.delay_ms), (1, 100));
    }

    #[test]
    fn a_users_stop_and_pending_intents_prevent_a_restart() {
        let mut container = stopped(RestartMode::UnlessStopped, 0, 137, 0, 0);
        assert!(restart_plan(&container).is_some());
        container.task.as_mut().unwrap().stopped_by_user = true;
        assert_eq!(restart_plan(&container), None);
        let mut container = stopped(RestartMode::Always, 0, 0, 0, 0);
        container.task.as_mut().unwrap().status = TaskStatus::Deleting;
        assert_eq!(restart_plan(&container), None);
    }

    #[test]
    fn a_restarts_own_failed_create_is_one_more_failure_and_a_clients_is_not() {
        let mut container = stopped(RestartMode::OnFailure, 5, 1, 0, 2);
        let task = container.task.as_mut().unwrap();
        task.status = TaskStatus::Failed;
        task.exit = None;
        task.failed_at_ns = Some(Timestamp::from_ns(5_000_000_000_000));
        let plan = restart_plan(&container).unwrap();
        assert_eq!((plan.attempt, plan.delay_ms, plan.exited_at_ns.as_ns()), (3, 400, 5_000_000_000_000));
        container.restart.task_from_restart = false;
        assert_eq!(restart_plan(&container), None);
    }
}
