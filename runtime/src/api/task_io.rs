//! `Tasks/WriteStdin` and `Tasks/ResizeTerminal`: a client's input and window size, passed to a
//! task's stdin FIFO (`tasks::stdin`) and its terminal's monitor (`tasks::console`). Neither is
//! recorded: they change no state, and stdin may be far bigger than the log should hold.

use tonic::{Request, Response, Status};

use crate::api;
use crate::api::services::{container_not_found, Services};
use crate::tasks::console::{self, ConsoleError};
use crate::tasks::stdin;

pub async fn write_stdin(
    services: &Services,
    request: Request<tonic::Streaming<api::StdinChunk>>,
) -> Result<Response<api::WriteStdinResponse>, Status> {
    use tokio::io::AsyncWriteExt;
    let (namespace, _) = services.caller(&request, "Tasks/WriteStdin")?;
    let mut chunks = request.into_inner();
    let Some(first_chunk) = chunks.message().await? else {
        return Ok(Response::new(api::WriteStdinResponse { bytes_written: 0 }));
    };
    let container_id = first_chunk.container_id.clone();
    {
        let state = services.store.state();
        let container =
            state.container(&namespace, &container_id).ok_or_else(|| container_not_found(&namespace, &container_id))?;
        if first_chunk.exec_id.is_empty() && !container.record.open_stdin {
            return Err(Status::failed_precondition(format!(
                "container {container_id:?} was created without -i: its stdin is /dev/null; create it with `berth run -i`"
            )));
        }
        if container.task.as_ref().is_none_or(|task| task.exit.is_some()) {
            return Err(Status::failed_precondition(format!(
                "container {container_id:?} has no running task: start it with `berth start {container_id}`"
            )));
        }
    }
    let mut task_dir = services.layout.task_dir(&namespace, &container_id);
    let exec_id = first_chunk.exec_id.clone();
    if !exec_id.is_empty() {
        let state = services.store.state();
        match crate::api::execs::exec_state(&state, &namespace, &container_id, &exec_id) {
            Some(exec) if exec.process.open_stdin && exec.exit.is_none() => {}
            Some(_) => {
                return Err(Status::failed_precondition(format!(
                    "exec {exec_id:?} of {container_id:?} takes no input: it has ended, or was started without -i"
                )))
            }
            None => return Err(Status::not_found(format!("container {container_id:?} has no exec {exec_id:?}"))),
        }
        task_dir = services.layout.existing_exec_dir(&namespace, &container_id, &exec_id);
    }
    let mut writer = stdin::open_stdin_writer(&task_dir).map_err(stdin_status)?;
    let mut bytes_written = 0u64;
    let mut next_chunk = Some(first_chunk);
    // One chunk at a time: a chunk is written (waiting for the container to read) before
    // the next is taken from the stream, so HTTP/2 flow control holds the client back and
    // berthd never buffers more than one message.
    loop {
        if let Some(chunk) = next_chunk.take() {
            if let Err(error) = writer.write_all(&chunk.data).await {
                // EPIPE: the container closed its stdin or exited; the rest has no reader.
                return Err(Status::failed_precondition(format!(
                    "the stdin of {container_id:?} stopped taking input after {bytes_written} bytes: {error}"
                )));
            }
            bytes_written += chunk.data.len() as u64;
        }
        match chunks.message().await {
            Ok(Some(chunk)) => next_chunk = Some(chunk),
            Ok(None) => break,
            // The client went away without ending its input: stdin stays open for the next.
            Err(status) => return Err(status),
        }
    }
    drop(writer);
    stdin::close_stdin(&task_dir).map_err(stdin_status)?;
    Ok(Response::new(api::WriteStdinResponse { bytes_written }))
}

fn stdin_status(error: stdin::StdinError) -> Status {
    match error {
        stdin::StdinError::Closed => Status::failed_precondition(error.to_string()),
        other => Status::internal(other.to_string()),
    }
}

pub fn resize_terminal(
    services: &Services,
    request: Request<api::ResizeTerminalRequest>,
) -> Result<Response<api::ResizeTerminalResponse>, Status> {
    let (namespace, _) = services.caller(&request, "Tasks/ResizeTerminal")?;
    let message = request.into_inner();
    let container_id = message.container_id;
    {
        let state = services.store.state();
        let container =
            state.container(&namespace, &container_id).ok_or_else(|| container_not_found(&namespace, &container_id))?;
        if message.exec_id.is_empty() && !container.record.tty {
            return Err(Status::failed_precondition(format!(
                "container {container_id:?} was created without -t: it has no terminal to resize"
            )));
        }
    }
    let (Ok(rows), Ok(cols)) = (u16::try_from(message.rows), u16::try_from(message.cols)) else {
        return Err(Status::invalid_argument(format!(
            "a window of {} rows and {} columns is larger than a terminal can be (at most 65535 each)",
            message.rows, message.cols
        )));
    };
    let mut task_dir = services.layout.task_dir(&namespace, &container_id);
    if !message.exec_id.is_empty() {
        task_dir = services.layout.existing_exec_dir(&namespace, &container_id, &message.exec_id);
    }
    match console::request_resize(&task_dir, rows, cols) {
        Ok(()) => Ok(Response::new(api::ResizeTerminalResponse {})),
        Err(error @ ConsoleError::Gone) => Err(Status::failed_precondition(format!("{container_id:?}: {error}"))),
        Err(error) => Err(Status::internal(error.to_string())),
    }
}
