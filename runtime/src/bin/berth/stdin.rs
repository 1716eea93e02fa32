//! `-i`: copying our stdin to a container's, EOF included, without holding more than a few
//! chunks of it in memory however much is piped in.

use berth_runtime::api;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::session::Session;

/// Bytes read from stdin per message: well under the message limit, big enough to keep a
/// `cat big-file |` from being dominated by per-message costs.
const STDIN_CHUNK_BYTES: usize = 32 * 1024;

/// Chunks read ahead of what berthd has taken. With flow control holding the stream back, this
/// bounds what the client buffers to a few chunks.
const CHUNKS_READ_AHEAD: usize = 2;

/// Streams our stdin to the container's until our stdin ends, then lets berthd close the
/// container's (it reads EOF). Runs beside the attach loop; a failure is reported, not fatal:
/// the container's output and exit status still matter.
/// `exec_id` empty: the task's stdin; else that exec's.
pub fn spawn_stdin_forwarder(session: &Session, container_id: &str, exec_id: &str) -> tokio::task::JoinHandle<()> {
    let (chunk_sender, chunk_receiver) = mpsc::channel::<Vec<u8>>(CHUNKS_READ_AHEAD);
    // A plain thread, not tokio's stdin: a read blocked on a terminal must not keep the runtime
    // from shutting down once the container has exited; this thread just ends with the process.
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut buffer = vec![0u8; STDIN_CHUNK_BYTES];
            match stdin.read(&mut buffer) {
                Ok(0) => break,
                Ok(n_read) => {
                    buffer.truncate(n_read);
                    if chunk_sender.blocking_send(buffer).is_err() {
                        break;
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    eprintln!("berth: reading stdin failed: {error}; the container's stdin is closed");
                    break;
                }
            }
        }
    });
    let first_chunk =
        api::StdinChunk { container_id: container_id.to_string(), data: Vec::new(), exec_id: exec_id.to_string() };
    let chunks = tokio_stream::StreamExt::map(ReceiverStream::new(chunk_receiver), |data| api::StdinChunk {
        container_id: String::new(),
        data,
        exec_id: String::new(),
    });
    let outbound = tokio_stream::StreamExt::chain(tokio_stream::once(first_chunk), chunks);
    let mut tasks = session.tasks();
    let request = session.request(outbound);
    let container_id = container_id.to_string();
    let rpc_error = session.rpc_error_owned();
    tokio::spawn(async move {
        if let Err(status) = tasks.write_stdin(request).await {
            eprintln!("berth: the stdin of {container_id} was not passed on: {}", rpc_error(status));
        }
    })
}
