//! `berth run`, `berth start --attach`'s attach loop and `berth logs`: creating and starting in
//! one request, copying the task's output to ours, forwarding Ctrl-C, and `--rm`'s clean-up.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use berth_runtime::api;
use berth_runtime::client;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::args::{LogsArgs, RunArgs};
use crate::output::print_stdout;
use crate::session::{CliError, Session};
use crate::terminal;

/// Once the task has exited, how long to wait for more output before giving up on a log
/// stream that does not end by itself. berthd ends the stream once the task has exited and its
/// output is drained, so this is only a guard against a stream that never ends; it is long
/// because a busy daemon may take seconds to send the last output, which must not be dropped.
const LOG_DRAIN_IDLE_LIMIT: Duration = Duration::from_secs(30);

/// Exit status after Ctrl-C, as a shell reports it (128 + SIGINT).
const INTERRUPTED_EXIT_STATUS: u8 = 130;

pub async fn run_container(session: &Session, run_args: RunArgs) -> Result<ExitCode, CliError> {
    if run_args.container.tty && !run_args.detach {
        terminal::require_local_terminal()?;
    }
    // Watch for Ctrl-C from the start so an interrupt during setup cannot leak a container
    // that --rm promised to remove.
    let mut interrupts = signal(SignalKind::interrupt()).map_err(CliError::InstallSignalHandler)?;
    let container_id = run_args.container.name.clone().unwrap_or_else(client::generate_container_id);
    let mut create_request = run_args.container.create_request(container_id.clone())?;
    // Detached, nobody waits here to remove it: berthd does, once the task has exited.
    create_request.auto_remove = run_args.rm && run_args.detach;
    // The container and its task's create and start in one request (and one record).
    create_request.start_task = true;

    let create_and_start = create_container_retrying(session, create_request);
    tokio::pin!(create_and_start);
    let answer = tokio::select! {
        answer = &mut create_and_start => answer,
        _ = interrupts.recv() => {
            // Whether the container was made only its answer tells: wait for it (a second
            // Ctrl-C gives up), so that --rm removes only what this run created.
            let created = interruptible(&mut interrupts, create_and_start).await.map(|answer| answer.map(drop));
            return Ok(interrupted_while_starting(session, &container_id, run_args.rm, created).await);
        }
    };
    let started = match answer {
        Err(status) => return Err(session.rpc_error()(status)),
        Ok(response) => match response.into_inner() {
            // Created, but berthd could not wait for the task's outcome.
            answer if !answer.task_error.is_empty() => Err(tonic::Status::unknown(answer.task_error)),
            api::CreateContainerResponse { task: Some(task), .. } if task.status() == api::TaskStatus::Failed => {
                Err(task_failed(&container_id, &task))
            }
            api::CreateContainerResponse { task: Some(_), .. } => Ok(()),
            // A berthd older than `start_task` made the container only.
            api::CreateContainerResponse { task: None, .. } => {
                match interruptible(&mut interrupts, create_and_start_task(session, &container_id)).await {
                    Some(started) => started,
                    None => {
                        return Ok(interrupted_while_starting(session, &container_id, run_args.rm, Some(Ok(()))).await)
                    }
                }
            }
        },
    };
    if let Err(status) = started {
        if run_args.rm {
            // The failure first, then what --rm did about it: the container is gone, so
            // there is nothing left for the user to remove.
            let removed = remove_after_run(session, &container_id).await;
            eprintln!("berth: {}", session.rpc_error()(status));
            if removed {
                eprintln!("berth: container {container_id} was removed (--rm)");
            }
            return Ok(ExitCode::from(1));
        }
        eprintln!("berth: {}", session.rpc_error()(status));
        eprintln!(
            "berth: container {container_id} was kept: look at it with `berth ps -a`, remove it with `berth rm -f {container_id}`"
        );
        return Ok(ExitCode::from(1));
    }

    if run_args.detach {
        print_stdout(&format!("{container_id}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut helpers = Vec::new();
    // Raw mode from before the first key is read until every way out of this function.
    let raw_mode = if run_args.container.tty {
        helpers.push(terminal::spawn_window_size_forwarder(session, &container_id, "")?);
        Some(terminal::RawMode::enter()?)
    } else {
        None
    };
    if run_args.container.interactive {
        helpers.push(crate::stdin::spawn_stdin_forwarder(session, &container_id, ""));
    }
    let exit_code = if raw_mode.is_some() {
        // In raw mode no key makes a signal; one from elsewhere (a closed terminal window, a
        // kill) ends berth, with the terminal restored on the way out.
        let mut hangups = signal(SignalKind::hangup()).map_err(CliError::InstallSignalHandler)?;
        let mut terminations = signal(SignalKind::terminate()).map_err(CliError::InstallSignalHandler)?;
        tokio::select! {
            exit_code = attach(session, &container_id, &mut interrupts, run_args.rm) => exit_code,
            _ = hangups.recv() => Ok(ExitCode::from(128 + libc::SIGHUP as u8)),
            _ = terminations.recv() => Ok(ExitCode::from(128 + libc::SIGTERM as u8)),
        }
    } else {
        attach(session, &container_id, &mut interrupts, run_args.rm).await
    };
    drop(raw_mode);
    for helper in helpers {
        helper.abort();
    }
    exit_code
}

/// For a berthd older than `start_task`, which made the container only: its task's create and
/// start in one request, recorded as one record, done by one runc call.
async fn create_and_start_task(session: &Session, container_id: &str) -> Result<(), tonic::Status> {
    session
        .tasks()
        .create(session.request(api::CreateTaskRequest { container_id: container_id.to_string(), start: true }))
        .await?;
    Ok(())
}

/// A task that failed to create or start, as Tasks/Create reports one.
fn task_failed(container_id: &str, task: &api::Task) -> tonic::Status {
    tonic::Status::failed_precondition(format!("the task of {container_id:?} failed: {}", task.error))
}

/// Ctrl-C came while the container was being created and started; `created` is the create's
/// answer (`Ok` once berthd made the container), `None` when a second Ctrl-C gave up waiting
/// for it.
async fn interrupted_while_starting(
    session: &Session,
    container_id: &str,
    remove: bool,
    created: Option<Result<(), tonic::Status>>,
) -> ExitCode {
    match created {
        Some(Ok(())) if remove => {
            remove_after_run(session, container_id).await;
        }
        Some(Ok(())) => eprintln!(
            "berth: interrupted; container {container_id} was created and may be running: remove it with `berth rm -f {container_id}`"
        ),
        Some(Err(status)) => eprintln!("berth: interrupted; {}", session.rpc_error()(status)),
        // The create may or may not have been recorded; it is not safe to delete by id here,
        // since the id might belong to a container that existed before.
        None => eprintln!(
            "berth: interrupted; container {container_id} may have been created: check with `berth ps -a` and remove it with `berth rm -f {container_id}`"
        ),
    }
    ExitCode::from(INTERRUPTED_EXIT_STATUS)
}

/// Runs `future` unless Ctrl-C comes first; `None` means interrupted.
async fn interruptible<F: std::future::Future>(interrupts: &mut Signal, future: F) -> Option<F::Output> {
    tokio::select! {
        output = future => Some(output),
        _ = interrupts.recv() => None,
    }
}

/// Best-effort removal of a container `berth run --rm` created, its task and anonymous volumes
/// with it, in one request; true once it is gone. A failure is reported with what to do, but
/// does not change the exit status, which belongs to the container.
async fn remove_after_run(session: &Session, container_id: &str) -> bool {
    match delete_container_with_task(session, container_id, true, true).await {
        Ok(()) => true,
        Err(status) if status.code() == tonic::Code::NotFound => true,
        Err(status) => {
            eprintln!(
                "berth: cannot remove container {container_id}: {}; remove it with `berth rm -f {container_id}`",
                session.rpc_error()(status)
            );
            false
        }
    }
}

/// The container's task (killed first with `force`) and then the container, in one request
/// (`Containers/Delete` with `delete_task`; berthd also deletes a task a restart policy starts
/// meanwhile when forced). A berthd older than `delete_task` refuses a container that still has
/// a task: the task is then deleted with Tasks/Delete and the container asked for again.
pub async fn delete_container_with_task(
    session: &Session,
    container_id: &str,
    force: bool,
    remove_volumes: bool,
) -> Result<(), tonic::Status> {
    let request =
        || api::DeleteContainerRequest { id: container_id.to_string(), remove_volumes, delete_task: true, force };
    match session.containers().delete(session.request(request())).await {
        Err(status)
            if status.code() == tonic::Code::FailedPrecondition && status.message().contains("still has a task") =>
        {
            let task = api::DeleteTaskRequest { container_id: container_id.to_string(), force };
            match session.tasks().delete(session.request(task)).await {
                // Gone meanwhile: nothing left to delete.
                Err(status) if status.code() == tonic::Code::NotFound => {}
                other => {
                    other?;
                }
            }
            session.containers().delete(session.request(request())).await.map(|_| ())
        }
        other => other.map(|_| ()),
    }
}

/// Copies the task's output to ours until it exits, then returns its exit status.
///
/// Ctrl-C: with `remove_after`, the container is killed and removed at once. Otherwise the first
/// Ctrl-C is forwarded to the task as SIGINT and the second detaches, leaving it running.
pub async fn attach(
    session: &Session,
    container_id: &str,
    interrupts: &mut Signal,
    remove_after: bool,
) -> Result<ExitCode, CliError> {
    let mut tasks = session.tasks();
    let wait_for_exit = tasks.wait(session.request(api::WaitTaskRequest { container_id: container_id.to_string() }));
    tokio::pin!(wait_for_exit);
    let mut logs_client = session.tasks();
    let open_logs = logs_client.logs(session.request(api::LogsRequest {
        container_id: container_id.to_string(),
        follow: true,
        ..Default::default()
    }));
    let (opened, waited) = open_beside(open_logs, &mut wait_for_exit).await;
    let mut log_stream = match opened {
        Ok(response) => Some(response.into_inner()),
        Err(status) => {
            eprintln!(
                "berth: cannot read the output of {container_id}: {}; waiting for it to exit anyway",
                session.rpc_error()(status)
            );
            None
        }
    };
    let mut wait_result: Option<Result<api::WaitTaskResponse, tonic::Status>> =
        waited.map(|result| result.map(tonic::Response::into_inner));
    let mut n_interrupts = 0_u32;

    while wait_result.is_none() || log_stream.is_some() {
        let exited = wait_result.is_some();
        tokio::select! {
            result = &mut wait_for_exit, if wait_result.is_none() => {
                wait_result = Some(result.map(tonic::Response::into_inner));
            }
            next = next_log_chunk(&mut log_stream, exited) => {
                show_log_next(next, &mut log_stream, container_id, session)?;
            }
            _ = interrupts.recv() => {
                if remove_after {
                    remove_after_run(session, container_id).await;
                    return Ok(ExitCode::from(INTERRUPTED_EXIT_STATUS));
                }
                n_interrupts += 1;
                if n_interrupts > 1 {
                    eprintln!(
                        "berth: detached from {container_id}; it keeps running: stop it with `berth kill {container_id}`"
                    );
                    return Ok(ExitCode::from(INTERRUPTED_EXIT_STATUS));
                }
                let forward = session
                    .tasks()
                    .kill(session.request(api::KillTaskRequest {
                        container_id: container_id.to_string(),
                        signal: libc::SIGINT as u32,
                        all: false,
                    }))
                    .await;
                match forward {
                    Ok(_) => eprintln!(
                        "berth: sent SIGINT to {container_id}; press Ctrl-C again to detach and leave it running"
                    ),
                    Err(status) => eprintln!(
                        "berth: cannot forward SIGINT to {container_id}: {}; press Ctrl-C again to detach",
                        session.rpc_error()(status)
                    ),
                }
            }
        }
    }

    let Some(wait_result) = wait_result else {
        unreachable!("the loop above only ends once Wait has answered");
    };
    let exit_status = match wait_result {
        Ok(response) => client::shell_exit_status(response.exit_code, response.exit_signal),
        Err(status) => {
            if remove_after {
                remove_after_run(session, container_id).await;
            }
            return Err(session.rpc_error()(status));
        }
    };
    if remove_after {
        remove_after_run(session, container_id).await;
    }
    Ok(exit_code_from_status(exit_status))
}

/// Awaits `first` (opening the output stream) while `alongside` (the wait for the exit) is
/// polled too, so that both requests leave at once on the connection instead of one round trip
/// after the other; returns `first`'s output and `alongside`'s if it finished meanwhile.
pub async fn open_beside<F: Future, A: Future + Unpin>(first: F, alongside: &mut A) -> (F::Output, Option<A::Output>) {
    tokio::pin!(first);
    let mut finished = None;
    loop {
        tokio::select! {
            biased;
            output = &mut first => return (output, finished),
            output = &mut *alongside, if finished.is_none() => finished = Some(output),
        }
    }
}

pub enum LogNext {
    Chunk(api::LogChunk),
    End,
    Failed(tonic::Status),
}

/// The next piece of output. Never resolves without a stream, so `select!` just skips it.
/// After the task has exited, a stream that stays silent for `LOG_DRAIN_IDLE_LIMIT` counts as
/// ended, so a daemon that keeps the stream open cannot hang `berth run`.
pub async fn next_log_chunk(log_stream: &mut Option<tonic::Streaming<api::LogChunk>>, task_exited: bool) -> LogNext {
    let Some(stream) = log_stream else {
        return std::future::pending().await;
    };
    let message = if task_exited {
        match tokio::time::timeout(LOG_DRAIN_IDLE_LIMIT, stream.message()).await {
            Ok(message) => message,
            Err(_elapsed) => return LogNext::End,
        }
    } else {
        stream.message().await
    };
    match message {
        Ok(Some(chunk)) => LogNext::Chunk(chunk),
        Ok(None) => LogNext::End,
        Err(status) => LogNext::Failed(status),
    }
}

/// Shows what [`next_log_chunk`] gave: a chunk is written out; the stream is let go when it
/// ended, when it failed (said on stderr, naming `whose` output it was) or when whoever read our
/// output went away. The caller keeps waiting for the exit either way.
pub fn show_log_next(
    next: LogNext,
    log_stream: &mut Option<tonic::Streaming<api::LogChunk>>,
    whose: &str,
    session: &Session,
) -> Result<(), CliError> {
    match next {
        LogNext::Chunk(chunk) => {
            if let Err(error) = write_log_chunk(&chunk) {
                if error.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(CliError::WriteOutput(error));
                }
                *log_stream = None;
            }
        }
        LogNext::End => *log_stream = None,
        LogNext::Failed(status) => {
            eprintln!("berth: the output of {whose} stopped early: {}", session.rpc_error()(status));
            *log_stream = None;
        }
    }
    Ok(())
}

pub fn write_log_chunk(chunk: &api::LogChunk) -> std::io::Result<()> {
    if chunk.stream() == api::log_chunk::Stream::Stderr {
        let mut stderr = std::io::stderr().lock();
        stderr.write_all(&chunk.data)?;
        stderr.flush()
    } else {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&chunk.data)?;
        stdout.flush()
    }
}

fn exit_code_from_status(exit_status: i32) -> ExitCode {
    // Exit statuses are a byte on Unix; keep what a shell would see.
    ExitCode::from((exit_status & 0xff) as u8)
}

pub async fn print_logs(session: &Session, logs_args: LogsArgs) -> Result<ExitCode, CliError> {
    let mut log_stream = session
        .tasks()
        .logs(session.request(api::LogsRequest {
            container_id: logs_args.container_id,
            follow: logs_args.follow,
            exec_id: String::new(),
            from_end: false,
            tail: logs_args.tail.filter(|tail| *tail != u64::MAX),
            since_ns: logs_args.since.unwrap_or(0),
            timestamps: logs_args.timestamps,
            await_request: false,
        }))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    while let Some(mut chunk) = log_stream.message().await.map_err(session.rpc_error())? {
        if logs_args.timestamps {
            let mut stamped = format!("{} ", crate::output::format_rfc3339(chunk.timestamp_ns)).into_bytes();
            stamped.extend_from_slice(&chunk.data);
            chunk.data = stamped;
        }
        if let Err(error) = write_log_chunk(&chunk) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(CliError::WriteOutput(error));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How often a create is sent again when berthd answers that the id's old key was being
/// forgotten meanwhile (the previous container of that name was just removed).
const CREATE_ATTEMPTS: usize = 30;

/// `Containers/Create`, sent again (100 ms apart) while berthd says the key of a container of
/// the same id, removed a moment ago, was being forgotten as the request arrived: once that
/// key is gone the create gets a new one. Any other answer is returned as it is.
pub async fn create_container_retrying(
    session: &Session,
    create_request: api::CreateContainerRequest,
) -> Result<tonic::Response<api::CreateContainerResponse>, tonic::Status> {
    let mut attempt = 1;
    loop {
        match session.containers().create(session.request(create_request.clone())).await {
            Err(status)
                if status.code() == tonic::Code::FailedPrecondition
                    && status.message().contains("was forgotten while this request was on its way")
                    && attempt < CREATE_ATTEMPTS =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};
    use crate::recording_daemon::{recorded_session, RecordedSession};

    fn parse_run(args: &[&str]) -> RunArgs {
        match Cli::try_parse_from(args).unwrap().command {
            Command::Run(run_args) => run_args,
            other => panic!("expected run, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn run_with_rm_creates_starts_follows_waits_then_removes() {
        let RecordedSession { daemon, server, session, _scratch_dir, .. } = recorded_session("ci").await;

        let run_args = parse_run(&["berth", "run", "--rm", "--name", "t1", "alpine", "sleep", "9"]);
        let exit_code = run_container(&session, run_args).await.unwrap();
        // Killed by SIGKILL: the shell convention is 128 + 9.
        assert_eq!(format!("{exit_code:?}"), format!("{:?}", ExitCode::from(137)));
        let calls = daemon.calls();
        let (follow_calls, ordered_calls): (Vec<String>, Vec<String>) =
            calls.iter().cloned().partition(|call| call.contains("Tasks/Logs") || call.contains("Tasks/Wait"));
        assert_eq!(
            ordered_calls,
            [
                "[ci] Containers/Create t1 alpine [\"sleep\", \"9\"] start_task=true",
                "[ci] Containers/Delete t1 with its task, forced",
            ]
        );
        // Logs and Wait run side by side, so their relative order is not fixed.
        let mut follow_calls = follow_calls;
        follow_calls.sort();
        assert_eq!(follow_calls, ["[ci] Tasks/Logs t1 follow=true", "[ci] Tasks/Wait t1"]);
        server.abort();
    }

    #[tokio::test]
    async fn run_with_rm_removes_what_it_created_when_start_fails() {
        let RecordedSession { daemon, server, session, _scratch_dir, .. } = recorded_session("default").await;

        let run_args = parse_run(&["berth", "run", "--rm", "--name", "fails-to-start", "alpine"]);
        // The failure and "was removed (--rm)" go to stderr (tests/tests/run_rm.rs reads them).
        let exit_code = run_container(&session, run_args).await.unwrap();
        assert_eq!(format!("{exit_code:?}"), format!("{:?}", ExitCode::from(1)));
        assert_eq!(
            daemon.calls(),
            [
                "[default] Containers/Create fails-to-start alpine [] start_task=true",
                "[default] Containers/Delete fails-to-start with its task, forced",
            ]
        );
        server.abort();
    }

    #[tokio::test]
    async fn run_with_rm_removes_what_it_created_when_the_outcome_could_not_be_awaited() {
        let RecordedSession { daemon, server, session, _scratch_dir, .. } = recorded_session("default").await;

        let run_args = parse_run(&["berth", "run", "--rm", "--name", "no-outcome", "alpine"]);
        let exit_code = run_container(&session, run_args).await.unwrap();
        assert_eq!(format!("{exit_code:?}"), format!("{:?}", ExitCode::from(1)));
        assert_eq!(
            daemon.calls(),
            [
                "[default] Containers/Create no-outcome alpine [] start_task=true",
                "[default] Containers/Delete no-outcome with its task, forced",
            ]
        );
        server.abort();
    }

    #[tokio::test]
    async fn detached_run_prints_the_id_and_does_not_wait() {
        let RecordedSession { daemon, server, session, _scratch_dir, .. } = recorded_session("default").await;

        let run_args = parse_run(&["berth", "run", "-d", "--name", "bg", "alpine"]);
        let exit_code = run_container(&session, run_args).await.unwrap();
        assert_eq!(format!("{exit_code:?}"), format!("{:?}", ExitCode::SUCCESS));
        let calls = daemon.calls();
        assert_eq!(calls, ["[default] Containers/Create bg alpine [] start_task=true"]);
        server.abort();
    }

    #[tokio::test]
    async fn against_a_berthd_without_start_task_the_task_is_created_on_its_own() {
        let RecordedSession { daemon, server, session, _scratch_dir, .. } = recorded_session("default").await;

        let run_args = parse_run(&["berth", "run", "-d", "--name", "legacy", "alpine"]);
        let exit_code = run_container(&session, run_args).await.unwrap();
        assert_eq!(format!("{exit_code:?}"), format!("{:?}", ExitCode::SUCCESS));
        assert_eq!(
            daemon.calls(),
            ["[default] Containers/Create legacy alpine []", "[default] Tasks/Create legacy start=true"]
        );
        server.abort();
    }
}
