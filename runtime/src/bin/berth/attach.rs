//! `berth attach`: a running container's output from now on and, where it has them, its
//! terminal (raw mode, window size) and stdin; Ctrl-P Ctrl-Q (or, without a terminal, Ctrl-C)
//! detaches and leaves it running with its stdin still open.

use std::process::ExitCode;

use berth_runtime::api;
use berth_runtime::client;
use tokio::signal::unix::{signal, SignalKind};

use crate::args::AttachArgs;
use crate::run::{next_log_chunk, show_log_next};
use crate::session::{CliError, Session};
use crate::terminal;

pub async fn attach_to_container(session: &Session, attach_args: AttachArgs) -> Result<ExitCode, CliError> {
    let container_id = attach_args.container_id;
    let container = session
        .containers()
        .get(session.request(api::GetContainerRequest { id: container_id.clone(), open_sealed_env: false }))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    let running = container.task.as_ref().is_some_and(|task| task.status() == api::TaskStatus::Running);
    if !running {
        return Err(CliError::NotRunning { container_id });
    }
    if container.tty {
        terminal::require_local_terminal()?;
    }
    let mut helpers = Vec::new();
    let raw_mode = if container.tty {
        helpers.push(terminal::spawn_window_size_forwarder(session, &container_id, "")?);
        Some(terminal::RawMode::enter()?)
    } else {
        None
    };
    let (detach_sender, mut detach_keys) = tokio::sync::oneshot::channel();
    if container.open_stdin && !attach_args.no_stdin {
        helpers.push(crate::stdin::spawn_stdin_forwarder_with_detach(session, &container_id, "", Some(detach_sender)));
    }
    let exit_code = follow_task(session, &container_id, &mut detach_keys).await;
    drop(raw_mode);
    for helper in helpers {
        helper.abort();
    }
    exit_code
}

async fn follow_task(
    session: &Session,
    container_id: &str,
    detach_keys: &mut tokio::sync::oneshot::Receiver<()>,
) -> Result<ExitCode, CliError> {
    let mut interrupts = signal(SignalKind::interrupt()).map_err(CliError::InstallSignalHandler)?;
    let mut hangups = signal(SignalKind::hangup()).map_err(CliError::InstallSignalHandler)?;
    let logs_request =
        api::LogsRequest { container_id: container_id.to_string(), follow: true, from_end: true, ..Default::default() };
    let mut log_stream =
        Some(session.tasks().logs(session.request(logs_request)).await.map_err(session.rpc_error())?.into_inner());
    let mut tasks = session.tasks();
    let wait_for_exit = tasks.wait(session.request(api::WaitTaskRequest { container_id: container_id.to_string() }));
    tokio::pin!(wait_for_exit);
    let mut wait_result = None;
    let mut detach_armed = true;
    while wait_result.is_none() || log_stream.is_some() {
        let exited = wait_result.is_some();
        tokio::select! {
            result = &mut wait_for_exit, if wait_result.is_none() => {
                wait_result = Some(result.map(tonic::Response::into_inner));
            }
            next = next_log_chunk(&mut log_stream, exited) => {
                show_log_next(next, &mut log_stream, container_id, session)?;
            }
            detached = &mut *detach_keys, if detach_armed => {
                // A dropped sender (no stdin forwarding, or its input ended) is not a detach.
                detach_armed = false;
                if detached.is_ok() {
                    return Ok(detached_from(container_id));
                }
            }
            _ = interrupts.recv() => return Ok(detached_from(container_id)),
            _ = hangups.recv() => return Ok(detached_from(container_id)),
        }
    }
    let Some(wait_result) = wait_result else { unreachable!("the loop ends once Wait has answered") };
    let exit = wait_result.map_err(session.rpc_error())?;
    let exit_status = client::shell_exit_status(exit.exit_code, exit.exit_signal);
    Ok(ExitCode::from((exit_status & 0xff) as u8))
}

fn detached_from(container_id: &str) -> ExitCode {
    eprintln!("\r\nberth: detached from {container_id}; it keeps running (`berth attach {container_id}` again, `berth kill {container_id}` to stop it)\r");
    ExitCode::SUCCESS
}
