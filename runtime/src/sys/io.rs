//! Small readers the rest of the daemon shares.

use std::io::{self, Read};

/// Reads exactly `remaining_bytes` or fails: the tar reader returns a short entry without error
/// when the archive is cut inside it, which would otherwise surface as a misleading digest
/// mismatch instead of "truncated".
pub struct ExactLengthReader<R> {
    pub inner: R,
    pub remaining_bytes: u64,
}

impl<R: Read> Read for ExactLengthReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.remaining_bytes == 0 {
            return Ok(0);
        }
        let n_wanted = buffer.len().min(usize::try_from(self.remaining_bytes).unwrap_or(usize::MAX));
        let n_read = self.inner.read(&mut buffer[..n_wanted])?;
        if n_read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the archive ends {} bytes before the end of this entry", self.remaining_bytes),
            ));
        }
        self.remaining_bytes -= n_read as u64;
        Ok(n_read)
    }
}

/// A blocking reader over pieces sent from async code (an upload's gRPC messages): lets a
/// synchronous parser read a stream as it arrives instead of after it was spooled to disk.
/// The sender ends the stream by dropping its half; an `Err` piece is handed to the reader.
pub struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    position: usize,
}

impl ChannelReader {
    pub fn new(receiver: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>) -> ChannelReader {
        ChannelReader { receiver, current: Vec::new(), position: 0 }
    }
}

impl Read for ChannelReader {
    /// Blocks the calling thread: call it from a blocking thread (`spawn_blocking`), never from
    /// a task on the async runtime.
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.position == self.current.len() {
            match self.receiver.blocking_recv() {
                Some(Ok(piece)) => {
                    self.current = piece;
                    self.position = 0;
                }
                Some(Err(error)) => return Err(error),
                None => return Ok(0),
            }
        }
        let n_copied = buffer.len().min(self.current.len() - self.position);
        buffer[..n_copied].copy_from_slice(&self.current[self.position..self.position + n_copied]);
        self.position += n_copied;
        Ok(n_copied)
    }
}

/// [`ChannelReader`] for a thread-to-thread channel: a reader on one thread over what another
/// thread sends; the stream ends when every sender is dropped.
pub struct SyncChannelReader {
    receiver: std::sync::mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    position: usize,
}

impl SyncChannelReader {
    pub fn new(receiver: std::sync::mpsc::Receiver<Vec<u8>>) -> SyncChannelReader {
        SyncChannelReader { receiver, current: Vec::new(), position: 0 }
    }
}

impl Read for SyncChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.position == self.current.len() {
            match self.receiver.recv() {
                Ok(piece) => {
                    self.current = piece;
                    self.position = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n_copied = buffer.len().min(self.current.len() - self.position);
        buffer[..n_copied].copy_from_slice(&self.current[self.position..self.position + n_copied]);
        self.position += n_copied;
        Ok(n_copied)
    }
}
