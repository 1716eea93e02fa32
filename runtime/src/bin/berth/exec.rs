//! `berth exec`: another process in a running container, with its own exit code (a shell's
//! 128 + N when a signal ended it), its output and, with -i / -t, our input and terminal.

use std::process::ExitCode;

use berth_runtime::api;
use berth_runtime::client;
use tokio::signal::unix::{signal, SignalKind};

use crate::args::ExecArgs;
use crate::run::{next_log_chunk, open_beside, show_log_next};
use crate::session::{CliError, Session};
use crate::terminal;

/// Exit status after Ctrl-C leaves the exec running, as a shell reports an interrupt.
const DETACHED_EXIT_STATUS: u8 = 130;

pub async fn exec_in_container(session: &Session, exec_args: ExecArgs) -> Result<ExitCode, CliError> {
    if exec_args.tty {
        terminal::require_local_terminal()?;
    }
    let (container_id, command) = match exec_args.id_and_command.split_first() {
        Some((container_id, command)) => (container_id.clone(), command.to_vec()),
        None => unreachable!("clap requires the id and a command"),
    };
    let exec_id = client::generate_container_id();
    let started = session
        .tasks()
        .exec(session.request(api::ExecRequest {
            container_id: container_id.clone(),
            exec_id: exec_id.clone(),
            args: command,
            env: exec_args.env.clone(),
            working_dir: exec_args.workdir.clone().unwrap_or_default(),
            user: exec_args.user.clone().unwrap_or_default(),
            tty: exec_args.tty,
            open_stdin: exec_args.interactive,
        }))
        .await
        .map_err(session.rpc_error())?
        .into_inner();

    let mut helpers = Vec::new();
    let raw_mode = if exec_args.tty {
        helpers.push(terminal::spawn_window_size_forwarder(session, &container_id, &started.exec_id)?);
        Some(terminal::RawMode::enter()?)
    } else {
        None
    };
    if exec_args.interactive {
        helpers.push(crate::stdin::spawn_stdin_forwarder(session, &container_id, &started.exec_id));
    }
    let exit_code = follow_exec(session, &container_id, &started.exec_id).await;
    drop(raw_mode);
    for helper in helpers {
        helper.abort();
    }
    exit_code
}

/// Copies the exec's output until it has ended and returns its exit status. A signal to berth
/// (Ctrl-C without -t, a closed terminal, a kill) leaves the exec running.
async fn follow_exec(session: &Session, container_id: &str, exec_id: &str) -> Result<ExitCode, CliError> {
    let mut interrupts = signal(SignalKind::interrupt()).map_err(CliError::InstallSignalHandler)?;
    let mut hangups = signal(SignalKind::hangup()).map_err(CliError::InstallSignalHandler)?;
    let mut terminations = signal(SignalKind::terminate()).map_err(CliError::InstallSignalHandler)?;
    let logs_request = api::LogsRequest {
        container_id: container_id.to_string(),
        follow: true,
        exec_id: exec_id.to_string(),
        ..Default::default()
    };
    let mut tasks = session.tasks();
    let wait_request = api::WaitExecRequest { container_id: container_id.to_string(), exec_id: exec_id.to_string() };
    let wait_for_exit = tasks.wait_exec(session.request(wait_request));
    tokio::pin!(wait_for_exit);
    let (opened, waited) = open_beside(session.tasks().logs(session.request(logs_request)), &mut wait_for_exit).await;
    let mut log_stream = Some(opened.map_err(session.rpc_error())?.into_inner());
    let mut wait_result = waited.map(|result| result.map(tonic::Response::into_inner));
    while wait_result.is_none() || log_stream.is_some() {
        let exited = wait_result.is_some();
        tokio::select! {
            result = &mut wait_for_exit, if wait_result.is_none() => {
                wait_result = Some(result.map(tonic::Response::into_inner));
            }
            next = next_log_chunk(&mut log_stream, exited) => {
                show_log_next(next, &mut log_stream, &format!("exec {exec_id}"), session)?;
            }
            _ = interrupts.recv() => return Ok(detached(container_id, exec_id)),
            _ = hangups.recv() => return Ok(detached(container_id, exec_id)),
            _ = terminations.recv() => return Ok(detached(container_id, exec_id)),
        }
    }
    let Some(wait_result) = wait_result else { unreachable!("the loop ends once WaitExec has answered") };
    let exit = wait_result.map_err(session.rpc_error())?;
    let exit_status = client::shell_exit_status(exit.exit_code, exit.exit_signal);
    Ok(ExitCode::from((exit_status & 0xff) as u8))
}

fn detached(container_id: &str, exec_id: &str) -> ExitCode {
    eprintln!("berth: left exec {exec_id} running in {container_id}; its end is recorded (`berth-replay history --container {container_id}`)");
    ExitCode::from(DETACHED_EXIT_STATUS)
}
