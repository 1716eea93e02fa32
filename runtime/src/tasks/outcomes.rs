//! How the executor records what happened: each outcome is a `RecordOutcome` command, which
//! the store refuses when its intent was already answered; a log with no room is waited for,
//! since what happened on the host must reach the log.

use berth_commands::{Command, DeleteContainer, RecordOutcome};
use berth_log::Seq;
use berth_projections::{Event, Origin};

use crate::daemon::store::SubmitError;
use crate::tasks::executor::Executor;

impl Executor {
    /// Record an outcome. Returns false when the store refused it (already answered).
    pub(super) async fn record(&self, namespace: &str, answers: Option<Seq>, reason: &str, event: Event) -> bool {
        self.record_together(namespace, answers, reason, vec![event]).await
    }

    /// Record outcomes that happened together as one record (one fdatasync). Returns false
    /// when the store refused them (any one already answered).
    pub(super) async fn record_together(
        &self,
        namespace: &str,
        answers: Option<Seq>,
        reason: &str,
        events: Vec<Event>,
    ) -> bool {
        self.record_outcome(namespace, answers, reason, events, None).await
    }

    /// [`Executor::record_together`], with the container's removal after a task's deletion.
    pub(super) async fn record_outcome(
        &self,
        namespace: &str,
        answers: Option<Seq>,
        reason: &str,
        events: Vec<Event>,
        then_remove: Option<DeleteContainer>,
    ) -> bool {
        let origin = Origin::Daemon { reason: reason.to_string(), answers };
        let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
        tracing::debug!(?kinds, ?answers, "recording outcome");
        loop {
            let command = Command::RecordOutcome(RecordOutcome {
                answers,
                events: events.clone(),
                then_remove: then_remove.clone(),
            });
            match self.store.submit(namespace, origin.clone(), command).await {
                Ok(_) => return true,
                Err(SubmitError::Rejected(error)) => {
                    tracing::debug!(?kinds, %error, "outcome not recorded: already answered");
                    return false;
                }
                Err(SubmitError::Stopping) => return false,
                Err(SubmitError::NoSpace(error)) => {
                    // What happened on the host must reach the log (the exit status waits on
                    // disk meanwhile): try again until the log has room.
                    tracing::warn!(?kinds, %error, "outcome not recorded yet: the log has no room; retrying");
                    tokio::time::sleep(OUTCOME_RETRY_INTERVAL).await;
                }
                Err(error @ SubmitError::RecordTooLarge { .. }) => {
                    // An outcome is a few short events; this cannot happen unless a bug grew one.
                    tracing::error!(?kinds, %error, "outcome not recorded");
                    return false;
                }
            }
        }
    }
}

/// How often an outcome the log had no room for is offered again.
const OUTCOME_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
