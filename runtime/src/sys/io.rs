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
