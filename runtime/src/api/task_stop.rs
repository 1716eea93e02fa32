//! `Tasks/Stop`: the stop signal, then SIGKILL after the grace period, each an ordinary
//! recorded kill (`TaskKillRequested`) whose origin method says which step it was and why, so
//! the log shows a stop as two kills and not as a mystery SIGKILL.

use std::time::Duration;

use berth_commands::{Command, KillTask};
use berth_projections::{Origin, State, TaskState};
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::services::{container_not_found, Services};
use crate::daemon::store::OUTCOME_TIMEOUT;
use crate::tasks::stop_signal::stop_signal_of;

const SIGKILL: i32 = 9;

pub(crate) async fn stop_task(
    services: &Services,
    request: Request<api::StopTaskRequest>,
) -> Result<Response<api::StopTaskResponse>, Status> {
    let (namespace, origin) = services.caller(&request, "Tasks/Stop")?;
    let message = request.into_inner();
    let container_id = message.container_id;
    let stop_signal = stop_signal_of(&services.store.state(), &services.content, &namespace, &container_id);
    let task = current_task(&services.store.state(), &namespace, &container_id)?;
    let mut killed = false;
    if task.is_some_and(|task| task.is_live() && task.exit.is_none()) {
        let first = with_method(&origin, &format!("Tasks/Stop: stop signal {stop_signal}"));
        kill(services, &namespace, first, &container_id, stop_signal).await?;
        let grace = Duration::from_secs(u64::from(message.grace_seconds));
        if tokio::time::timeout(grace, exited(services, &namespace, &container_id)).await.is_err() {
            let method =
                format!("Tasks/Stop: SIGKILL, still running after the {}s grace period", message.grace_seconds);
            killed = true;
            kill(services, &namespace, with_method(&origin, &method), &container_id, SIGKILL).await?;
            if tokio::time::timeout(OUTCOME_TIMEOUT, exited(services, &namespace, &container_id)).await.is_err() {
                return Err(Status::deadline_exceeded(format!(
                    "{container_id:?} was sent SIGKILL and has not exited yet: check with `berth ps -a`"
                )));
            }
        }
    }
    let exit = current_task(&services.store.state(), &namespace, &container_id)?.and_then(|task| task.exit);
    Ok(Response::new(api::StopTaskResponse {
        stop_signal: stop_signal as u32,
        killed,
        exit_code: exit.map_or(0, |exit| exit.exit_code),
        exit_signal: exit.map_or(0, |exit| exit.signal),
    }))
}

fn current_task(state: &State, namespace: &str, container_id: &str) -> Result<Option<TaskState>, Status> {
    let container =
        state.container(namespace, container_id).ok_or_else(|| container_not_found(namespace, container_id))?;
    Ok(container.task.clone())
}

/// The caller's origin with the method naming the step of the stop.
fn with_method(origin: &Origin, step: &str) -> Origin {
    match origin {
        Origin::Client { uid, gid, pid, request_id, .. } => {
            Origin::Client { uid: *uid, gid: *gid, pid: *pid, method: step.to_string(), request_id: request_id.clone() }
        }
        other => other.clone(),
    }
}

async fn kill(
    services: &Services,
    namespace: &str,
    origin: Origin,
    container_id: &str,
    signal: i32,
) -> Result<(), Status> {
    let command = Command::KillTask(KillTask { container_id: container_id.to_string(), signal, all: false });
    match services.submit(namespace, origin, command).await {
        Ok(seq) => services.wait_for_outcome(namespace, container_id, seq).await.map(drop),
        // The task ended between the check and the kill: that is what a stop wants.
        Err(status) if status.code() == tonic::Code::FailedPrecondition => Ok(()),
        Err(status) => Err(status),
    }
}

/// Until the task has exited (or is gone).
async fn exited(services: &Services, namespace: &str, container_id: &str) {
    services
        .store
        .wait_until(|state: &State| {
            let task = state.container(namespace, container_id).and_then(|container| container.task.as_ref());
            task.is_none_or(|task| task.exit.is_some() || !task.is_live()).then_some(())
        })
        .await
}
