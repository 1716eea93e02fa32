//! The restart policy, carried out: after an exit is recorded, wait out the backoff the log
//! implies (`berth_commands::restart_plan`), then record the restart with the stopped task's
//! deletion; once the deletion is recorded, create and start the next task. After berthd's own
//! restart, [`Executor::resume_restarts`] picks up both halves where the log left them.
//!
//! Nothing here is remembered outside the log: a berthd killed during a backoff waits, when it
//! comes back, only for what is left of it (measured from the exit's reap time), with the same
//! attempt number; a restart recorded twice is refused by `RestartTask`'s check.

use std::sync::Arc;
use std::time::Duration;

use berth_commands::{restart_plan, Command, CreateTask, RestartTask};
use berth_log::Timestamp;
use berth_projections::Origin;

use crate::daemon::store::SubmitError;
use crate::tasks::executor::Executor;

impl Executor {
    /// After an exit (or a restarted task's failed create or start) was recorded: if the
    /// container's policy restarts it, wait out the backoff and record the restart.
    pub(super) fn consider_restart(self: &Arc<Self>, namespace: &str, container_id: &str) {
        let plan = {
            let state = self.store.state();
            state.container(namespace, container_id).and_then(restart_plan)
        };
        let Some(plan) = plan else { return };
        let executor = Arc::clone(self);
        let namespace = namespace.to_string();
        let container_id = container_id.to_string();
        tokio::spawn(async move {
            let due_ns = plan.exited_at_ns.as_ns().saturating_add(plan.delay_ms.saturating_mul(1_000_000));
            let wait_ns = due_ns.saturating_sub(Timestamp::now().as_ns());
            tracing::debug!(
                namespace,
                container_id,
                attempt = plan.attempt,
                wait_ms = wait_ns / 1_000_000,
                "restart due"
            );
            tokio::time::sleep(Duration::from_nanos(wait_ns)).await;
            let origin = Origin::Daemon { reason: "restart policy".to_string(), answers: None };
            let command = Command::RestartTask(RestartTask { container_id: container_id.clone(), plan });
            match executor.store.submit(&namespace, origin, command).await {
                Ok(_) => {}
                // The task changed meanwhile (a user removed or restarted it, or the restart
                // was recorded already): nothing to do.
                Err(SubmitError::Rejected(error)) => tracing::debug!(container_id, %error, "restart not recorded"),
                Err(error) => {
                    tracing::warn!(container_id, %error, "restart not recorded; the next berthd start retries")
                }
            }
        });
    }

    /// After a task deletion was recorded: if a restart deleted it, create and start the next.
    pub(super) fn continue_restart(self: &Arc<Self>, namespace: &str, container_id: &str) {
        let awaiting = {
            let state = self.store.state();
            state
                .container(namespace, container_id)
                .is_some_and(|container| container.restart.awaiting_create && container.task.is_none())
        };
        if !awaiting {
            return;
        }
        let executor = Arc::clone(self);
        let namespace = namespace.to_string();
        let container_id = container_id.to_string();
        tokio::spawn(async move {
            let origin = Origin::Daemon { reason: "restart policy: the next task".to_string(), answers: None };
            let command = Command::CreateTask(CreateTask { container_id: container_id.clone(), start: true });
            if let Err(error) = executor.store.submit(&namespace, origin, command).await {
                tracing::warn!(container_id, %error, "the restarted task was not created");
            }
        });
    }

    /// At start-up, after recovery: restarts the log owes (an exit whose restart was not
    /// recorded yet, a restart whose next task was not created yet).
    pub async fn resume_restarts(self: &Arc<Self>) {
        let containers: Vec<(String, String)> = {
            let state = self.store.state();
            state
                .containers()
                .filter(|(_, container)| {
                    restart_plan(container).is_some() || (container.restart.awaiting_create && container.task.is_none())
                })
                .map(|(namespace, container)| (namespace.to_string(), container.record.id.clone()))
                .collect()
        };
        for (namespace, container_id) in containers {
            self.consider_restart(&namespace, &container_id);
            self.continue_restart(&namespace, &container_id);
        }
    }
}
