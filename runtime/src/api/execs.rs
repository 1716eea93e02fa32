//! `Tasks/Exec` and `Tasks/WaitExec`: record an exec intent and answer with its outcome; wait
//! for an exec's recorded exit. The work is `tasks::exec`'s.

use berth_commands::{Command, ExecProcess};
use berth_projections::{ExecState, ExecStatus, Sealer};
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::convert::api_time;
use crate::api::services::{container_not_found, Services};
use crate::daemon::store::OUTCOME_TIMEOUT;
use crate::secrets::keys::KeyStore;

pub async fn exec(
    services: &Services,
    request: Request<api::ExecRequest>,
) -> Result<Response<api::ExecResponse>, Status> {
    let (namespace, origin) = services.caller(&request, "Tasks/Exec")?;
    // runc exec moves the process into the container's cgroup: start the kernel's wait now.
    crate::tasks::cgroup_warmup::kick();
    let message = request.into_inner();
    let exec_id =
        if message.exec_id.is_empty() { hex::encode(rand::random::<[u8; 6]>()) } else { message.exec_id.clone() };
    let container_id = message.container_id;
    let sealer = exec_sealer(services, &namespace, &container_id)?;
    let command = Command::ExecProcess(ExecProcess {
        container_id: container_id.clone(),
        exec_id: exec_id.clone(),
        process: berth_projections::ExecProcess {
            args: message.args,
            env: message.env,
            working_dir: message.working_dir,
            user: message.user,
            tty: message.tty,
            open_stdin: message.open_stdin,
            sealed_env: Vec::new(),
        },
        sealer,
    });
    let seq = services.submit(&namespace, origin, command).await?;
    let wait = services.store.wait_until(|state| {
        let exec = exec_state(state, &namespace, &container_id, &exec_id);
        match exec {
            Some(exec) if exec.status == ExecStatus::Starting => None,
            other => Some(other.cloned()),
        }
    });
    let exec = match tokio::time::timeout(OUTCOME_TIMEOUT, wait).await {
        Ok(Some(exec)) => exec,
        Ok(None) => return Err(Status::not_found(format!("the task of {container_id:?} is gone"))),
        Err(_) => {
            return Err(Status::deadline_exceeded(format!(
                "the exec at seq {seq} has no outcome yet: check with `berth events --since {seq}`"
            )))
        }
    };
    if let (ExecStatus::Failed, Some(error)) = (exec.status, &exec.error) {
        return Err(Status::failed_precondition(format!("exec in {container_id:?} failed: {error}")));
    }
    Ok(Response::new(api::ExecResponse { exec_id, pid: exec.pid, seq: seq.get() }))
}

/// The container's key when its record is sealed, so the exec's environment values are too; a
/// container recorded in clear (by an older berth) keeps its execs' in clear as well.
fn exec_sealer(services: &Services, namespace: &str, container_id: &str) -> Result<Option<Sealer>, Status> {
    let sealed = services
        .store
        .state()
        .container(namespace, container_id)
        .is_some_and(|container| container.record.sealed_key_id().is_some());
    if !sealed {
        return Ok(None);
    }
    match services.keys.load(namespace, container_id) {
        Ok(Some(key)) => Ok(Some(KeyStore::sealer(key))),
        Ok(None) => Err(Status::failed_precondition(format!(
            "the secret key of container {container_id:?} is gone, so its environment cannot be given to an exec: remove the container and create it again"
        ))),
        Err(error) => Err(Status::failed_precondition(error.to_string())),
    }
}

pub async fn wait_exec(
    services: &Services,
    request: Request<api::WaitExecRequest>,
) -> Result<Response<api::WaitTaskResponse>, Status> {
    let (namespace, _) = services.caller(&request, "Tasks/WaitExec")?;
    let message = request.into_inner();
    let (container_id, exec_id) = (message.container_id, message.exec_id);
    if message.await_request {
        await_exec_request(services, &namespace, &container_id, &exec_id).await?;
    }
    let found = services
        .store
        .wait_until(|state| {
            if state.container(&namespace, &container_id).is_none() {
                return Some(Err(container_not_found(&namespace, &container_id)));
            }
            match exec_state(state, &namespace, &container_id, &exec_id) {
                None => Some(Err(Status::not_found(format!(
                    "container {container_id:?} has no exec {exec_id:?} (or its task was deleted)"
                )))),
                Some(exec) => match (exec.exit, exec.status) {
                    (Some(exit), _) => Some(Ok((exit, state.last_seq))),
                    (None, ExecStatus::Failed) => Some(Err(Status::failed_precondition(format!(
                        "exec {exec_id:?} never ran: {}",
                        exec.error.clone().unwrap_or_default()
                    )))),
                    _ => None,
                },
            }
        })
        .await?;
    let (exit, seq) = found;
    Ok(Response::new(api::WaitTaskResponse {
        exit_code: exit.exit_code,
        exit_signal: exit.signal,
        exited_at_ns: api_time(exit.exited_at_ns),
        seq: seq.get(),
    }))
}

/// How long a call sent beside `Tasks/Exec` (`await_request`) waits for the exec's intent.
const AWAIT_REQUEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// For a call sent beside the exec's own `Tasks/Exec`: returns once the exec has started (or
/// failed, or ended), waiting for its intent to be recorded first. NOT_FOUND when the container
/// is gone or no such exec was asked for within [`AWAIT_REQUEST_LIMIT`].
pub(crate) async fn await_exec_request(
    services: &Services,
    namespace: &str,
    container_id: &str,
    exec_id: &str,
) -> Result<(), Status> {
    let started = services.store.wait_until(|state| {
        if state.container(namespace, container_id).is_none() {
            return Some(Err(container_not_found(namespace, container_id)));
        }
        match exec_state(state, namespace, container_id, exec_id) {
            Some(exec) if exec.status != ExecStatus::Starting => Some(Ok(())),
            _ => None,
        }
    });
    match tokio::time::timeout(AWAIT_REQUEST_LIMIT, started).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Status::not_found(format!(
            "container {container_id:?} has no exec {exec_id:?}: none was asked for within {} s",
            AWAIT_REQUEST_LIMIT.as_secs()
        ))),
    }
}

pub(crate) fn exec_state<'a>(
    state: &'a berth_projections::State,
    namespace: &str,
    container_id: &str,
    exec_id: &str,
) -> Option<&'a ExecState> {
    state.container(namespace, container_id)?.task.as_ref()?.execs.get(exec_id)
}
