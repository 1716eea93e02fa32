//! Deleting a task, for Tasks/Delete and for Containers/Delete with `delete_task` (`berth rm`,
//! `berth run --rm`: the task and then the container in one request).

use berth_commands::{Command, DeleteContainer, DeleteTask};
use berth_projections::{Event, Origin, TaskStatus};
use tonic::{Code, Status};

use crate::api;
use crate::api::services::Services;
use crate::daemon::store::OUTCOME_TIMEOUT;

/// How often a forced container delete deletes a task a restart policy started meanwhile
/// before it gives up.
const FORCED_REMOVAL_ATTEMPTS: usize = 10;

/// Records the delete intent and answers with its outcome: the exit code, or the failure.
pub(crate) async fn delete_task(
    services: &Services,
    namespace: &str,
    origin: Origin,
    container_id: &str,
    force: bool,
) -> Result<api::DeleteTaskResponse, Status> {
    delete_task_then(services, namespace, origin, container_id, force, None).await.map(|(response, _)| response)
}

/// [`delete_task`]; with `then_remove` (whether to remove anonymous volumes too), the executor is
/// asked to remove the container in the deletion's own record. Also says whether the record
/// that answered the intent removed the container.
async fn delete_task_then(
    services: &Services,
    namespace: &str,
    origin: Origin,
    container_id: &str,
    force: bool,
    then_remove: Option<bool>,
) -> Result<(api::DeleteTaskResponse, bool), Status> {
    // A delete already under way (a restart policy's between two runs, or another client's) is
    // waited for first, and this one decided against what it left: `rm -f` during a restart's
    // delete then removes the container instead of being refused.
    let _ = tokio::time::timeout(
        OUTCOME_TIMEOUT,
        services.store.wait_until(|state| {
            let deleting = state
                .container(namespace, container_id)
                .and_then(|container| container.task.as_ref())
                .is_some_and(|task| task.status == TaskStatus::Deleting);
            (!deleting).then_some(())
        }),
    )
    .await;
    let command = Command::DeleteTask(DeleteTask { container_id: container_id.to_string(), force });
    // Left before the intent exists, so the executor finds it whatever the timing; withdrawn
    // when this returns.
    let _asked =
        then_remove.map(|remove_volumes| services.removals_after_delete.ask(namespace, container_id, remove_volumes));
    let seq = services.submit(namespace, origin, command).await?;
    // Done when the delete intent is no longer pending (the task gone, or still there with the
    // delete answered by a failure, or already replaced by a newer task).
    let wait = services.store.wait_until(|state| {
        let pending = state
            .container(namespace, container_id)
            .and_then(|container| container.task.as_ref())
            .is_some_and(|task| task.pending.iter().any(|intent| intent.seq() == seq));
        (!pending).then_some(state.last_seq)
    });
    let applied_seq = tokio::time::timeout(OUTCOME_TIMEOUT, wait).await;
    // Claimed by the intent but not taken: its delete failed.
    services.removals_after_delete.forget(seq);
    let applied_seq = applied_seq.map_err(|_| {
        Status::deadline_exceeded(format!("the delete at seq {seq} has no outcome yet: check `berth ps -a`"))
    })?;
    // The record that answers the intent says what happened, and holds the exit code.
    let mut exit_code = 0;
    let mut outcome_seq = applied_seq;
    let mut failure = None;
    let mut container_removed = false;
    if let Some((answer_seq, envelope)) = services.store.find_answer(namespace, seq, applied_seq) {
        outcome_seq = answer_seq;
        for event in &envelope.events {
            match event {
                // A task that never ran has no exit code; the API's field is a plain int.
                Event::TaskDeleted { exit_code: code, .. } => exit_code = code.unwrap_or(0),
                Event::TaskDeleteFailed { error, .. } => failure = Some(error.clone()),
                Event::ContainerDeleted { id } if id == container_id => container_removed = true,
                _ => {}
            }
        }
    }
    if let Some(error) = failure {
        return Err(Status::failed_precondition(format!("deleting the task of {container_id:?} failed: {error}")));
    }
    Ok((api::DeleteTaskResponse { exit_code, seq: seq.get(), outcome_seq: outcome_seq.get() }, container_removed))
}

/// Containers/Delete with `delete_task`: the container's task (if it has one) as Tasks/Delete
/// with `force` would delete it, then the container. With `force`, a task a restart policy
/// started in between is deleted too (a user's forced delete ends the policy).
pub(crate) async fn delete_task_and_container(
    services: &Services,
    namespace: &str,
    origin: Origin,
    container_id: &str,
    remove_volumes: bool,
    force: bool,
) -> Result<api::DeleteContainerResponse, Status> {
    let mut attempt = 1;
    loop {
        let has_task =
            services.store.state().container(namespace, container_id).is_some_and(|container| container.task.is_some());
        if has_task {
            match delete_task_then(services, namespace, origin.clone(), container_id, force, Some(remove_volumes)).await
            {
                // Gone meanwhile (a restart policy's delete finished first): nothing left to do.
                Err(status) if status.code() == Code::NotFound => {}
                Err(status) => return Err(status),
                // The executor removed the container in the deletion's record.
                Ok((deleted, true)) => return Ok(api::DeleteContainerResponse { seq: deleted.outcome_seq }),
                Ok((_, false)) => {}
            }
        }
        let command = Command::DeleteContainer(DeleteContainer { id: container_id.to_string(), remove_volumes });
        match services.submit(namespace, origin.clone(), command).await {
            Err(status) if force && status.code() == Code::FailedPrecondition && attempt < FORCED_REMOVAL_ATTEMPTS => {
                attempt += 1;
            }
            other => return other.map(|seq| api::DeleteContainerResponse { seq: seq.get() }),
        }
    }
}
