//! `berth exec`: another process in a running container, with its own exit code (a shell's
//! 128 + N when a signal ended it), its output and, with -i / -t, our input and terminal.

use std::process::ExitCode;

use berth_runtime::api;
use berth_runtime::client;
use tokio::signal::unix::{signal, Signal, SignalKind};

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
    let mut signals = ExecSignals::install()?;
    let exec_id = client::generate_container_id();
    let exec_request = api::ExecRequest {
        container_id: container_id.clone(),
        exec_id: exec_id.clone(),
        args: command,
        env: exec_args.env.clone(),
        working_dir: exec_args.workdir.clone().unwrap_or_default(),
        user: exec_args.user.clone().unwrap_or_default(),
        tty: exec_args.tty,
        open_stdin: exec_args.interactive,
    };
    // The output and the exit are asked for beside the exec itself (`await_request`: berthd
    // holds them until the exec has started), so all three answers come in one round trip.
    let mut exec_client = session.tasks();
    let mut wait_client = session.tasks();
    let mut logs_client = session.tasks();
    let exec_call = exec_client.exec(session.request(exec_request));
    tokio::pin!(exec_call);
    let wait_for_exit = wait_client.wait_exec(session.request(wait_request(&container_id, &exec_id, true)));
    tokio::pin!(wait_for_exit);
    let open_logs = logs_client.logs(session.request(logs_request(&container_id, &exec_id, true)));
    let (started, opened, waited) = {
        let follow_calls = open_beside(open_logs, &mut wait_for_exit);
        tokio::pin!(follow_calls);
        let mut follow_answers = None;
        let started = loop {
            tokio::select! {
                biased;
                started = &mut exec_call => break started,
                answers = &mut follow_calls, if follow_answers.is_none() => follow_answers = Some(answers),
            }
        };
        // A refused exec is never recorded: the calls beside it are let go, not waited for.
        let started = started.map_err(session.rpc_error())?.into_inner();
        let (opened, waited) = match follow_answers {
            Some(answers) => answers,
            None => follow_calls.await,
        };
        (started, opened, waited)
    };

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
    let not_found = |status: &tonic::Status| status.code() == tonic::Code::NotFound;
    let exit_code = if opened.as_ref().is_err_and(not_found)
        || waited.as_ref().is_some_and(|waited| waited.as_ref().is_err_and(not_found))
    {
        // A berthd that predates `await_request` answered before the exec was known: ask again
        // now that it is.
        let mut wait_client = session.tasks();
        let wait_for_exit = wait_client.wait_exec(session.request(wait_request(&container_id, &exec_id, false)));
        tokio::pin!(wait_for_exit);
        let mut logs_client = session.tasks();
        let open_logs = logs_client.logs(session.request(logs_request(&container_id, &exec_id, false)));
        let (opened, waited) = open_beside(open_logs, &mut wait_for_exit).await;
        follow_exec(session, &container_id, &exec_id, opened, waited, wait_for_exit, &mut signals).await
    } else {
        follow_exec(session, &container_id, &exec_id, opened, waited, wait_for_exit, &mut signals).await
    };
    drop(raw_mode);
    for helper in helpers {
        helper.abort();
    }
    exit_code
}

fn wait_request(container_id: &str, exec_id: &str, await_request: bool) -> api::WaitExecRequest {
    api::WaitExecRequest { container_id: container_id.to_string(), exec_id: exec_id.to_string(), await_request }
}

fn logs_request(container_id: &str, exec_id: &str, await_request: bool) -> api::LogsRequest {
    api::LogsRequest {
        container_id: container_id.to_string(),
        follow: true,
        exec_id: exec_id.to_string(),
        await_request,
        ..Default::default()
    }
}

/// The signals that end `berth exec` and leave the exec running (without -t, Ctrl-C is one).
struct ExecSignals {
    interrupts: Signal,
    hangups: Signal,
    terminations: Signal,
}

impl ExecSignals {
    fn install() -> Result<ExecSignals, CliError> {
        let install = |kind| signal(kind).map_err(CliError::InstallSignalHandler);
        Ok(ExecSignals {
            interrupts: install(SignalKind::interrupt())?,
            hangups: install(SignalKind::hangup())?,
            terminations: install(SignalKind::terminate())?,
        })
    }
}

type WaitAnswer = Result<tonic::Response<api::WaitTaskResponse>, tonic::Status>;

/// Copies the exec's output until it has ended and returns its exit status. A signal to berth
/// (Ctrl-C without -t, a closed terminal, a kill) leaves the exec running.
async fn follow_exec<W: std::future::Future<Output = WaitAnswer> + Unpin>(
    session: &Session,
    container_id: &str,
    exec_id: &str,
    opened: Result<tonic::Response<tonic::Streaming<api::LogChunk>>, tonic::Status>,
    waited: Option<WaitAnswer>,
    mut wait_for_exit: W,
    signals: &mut ExecSignals,
) -> Result<ExitCode, CliError> {
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
            _ = signals.interrupts.recv() => return Ok(detached(container_id, exec_id)),
            _ = signals.hangups.recv() => return Ok(detached(container_id, exec_id)),
            _ = signals.terminations.recv() => return Ok(detached(container_id, exec_id)),
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
