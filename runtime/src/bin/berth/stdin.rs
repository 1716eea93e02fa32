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
/// The detach key sequence, as Docker's: Ctrl-P then Ctrl-Q.
const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// `exec_id` empty: the task's stdin; else that exec's.
pub fn spawn_stdin_forwarder(session: &Session, container_id: &str, exec_id: &str) -> tokio::task::JoinHandle<()> {
    spawn_stdin_forwarder_with_detach(session, container_id, exec_id, None)
}

/// As [`spawn_stdin_forwarder`]; with `detach`, Ctrl-P Ctrl-Q in our input is not passed on
/// but ends the forwarding without closing the container's stdin, and is reported on `detach`.
pub fn spawn_stdin_forwarder_with_detach(
    session: &Session,
    container_id: &str,
    exec_id: &str,
    detach: Option<tokio::sync::oneshot::Sender<()>>,
) -> tokio::task::JoinHandle<()> {
    let (chunk_sender, chunk_receiver) = mpsc::channel::<Vec<u8>>(CHUNKS_READ_AHEAD);
    // A plain thread, not tokio's stdin: a read blocked on a terminal must not keep the runtime
    // from shutting down once the container has exited; this thread just ends with the process.
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut detach = detach;
        let mut held_ctrl_p = false;
        loop {
            let mut buffer = vec![0u8; STDIN_CHUNK_BYTES];
            match stdin.read(&mut buffer) {
                Ok(0) => break,
                Ok(n_read) => {
                    buffer.truncate(n_read);
                    if detach.is_some() {
                        match scan_for_detach(&mut held_ctrl_p, buffer) {
                            Scanned::Pass(passed) => buffer = passed,
                            Scanned::Detach(before) => {
                                let _ = chunk_sender.blocking_send(before);
                                if let Some(detach) = detach.take() {
                                    let _ = detach.send(());
                                }
                                // Not an end of input: the stream is dropped, not finished,
                                // so the container's stdin stays open for the next attach.
                                return;
                            }
                        }
                    }
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

enum Scanned {
    /// Bytes to pass on (a Ctrl-P that may start the sequence is held back until the next read).
    Pass(Vec<u8>),
    /// The sequence came; the bytes before it.
    Detach(Vec<u8>),
}

/// Looks for [`DETACH_KEYS`] in `input`, across reads (`held_ctrl_p`: the last read ended with a
/// Ctrl-P, not passed on yet).
fn scan_for_detach(held_ctrl_p: &mut bool, input: Vec<u8>) -> Scanned {
    let mut passed = Vec::with_capacity(input.len() + 1);
    for byte in input {
        if *held_ctrl_p {
            *held_ctrl_p = false;
            if byte == DETACH_KEYS[1] {
                return Scanned::Detach(passed);
            }
            passed.push(DETACH_KEYS[0]);
        }
        if byte == DETACH_KEYS[0] {
            *held_ctrl_p = true;
        } else {
            passed.push(byte);
        }
    }
    Scanned::Pass(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(reads: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut held_ctrl_p = false;
        let mut passed = Vec::new();
        for read in reads {
            match scan_for_detach(&mut held_ctrl_p, read.to_vec()) {
                Scanned::Pass(bytes) => passed.extend(bytes),
                Scanned::Detach(bytes) => {
                    passed.extend(bytes);
                    return (passed, true);
                }
            }
        }
        (passed, false)
    }

    #[test]
    fn ctrl_p_ctrl_q_detaches_even_across_reads_and_a_lone_ctrl_p_passes() {
        assert_eq!(scan_all(&[b"ab\x10\x11cd"]), (b"ab".to_vec(), true));
        assert_eq!(scan_all(&[b"ab\x10", b"\x11cd"]), (b"ab".to_vec(), true));
        assert_eq!(scan_all(&[b"a\x10b"]), (b"a\x10b".to_vec(), false));
        assert_eq!(scan_all(&[b"\x10\x10\x11"]), (b"\x10".to_vec(), true));
        assert_eq!(scan_all(&[b"plain"]), (b"plain".to_vec(), false));
    }
}
