//! Lets stock C-core gRPC clients (Python's grpcio, and the other gRPC libraries built on the C
//! core) talk to berthd over its UNIX socket. They send the socket's path as the HTTP/2
//! `:authority`, which the h2 crate refuses as malformed before tonic or berthd see the request,
//! so every call failed with INTERNAL. containerd accepts such requests.
//!
//! [`AuthorityRepair`] wraps each accepted connection and rewrites only what the client sends:
//! every header block (HEADERS with its CONTINUATIONs) is decoded with the client's HPACK
//! context and encoded again with one of its own, which h2's decoder then follows, and an
//! `:authority` that is not a valid URI authority becomes `localhost`. Every other frame, and
//! everything berthd sends, passes through byte for byte. A header block is re-encoded even when
//! nothing in it changes: the two HPACK contexts must stay in step.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The client connection preface (RFC 9113, 3.4).
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer accepts (SETTINGS_MAX_FRAME_SIZE's initial value), used for
/// the frames written here.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// A header block larger than this ends the connection (h2 would refuse it anyway).
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// What replaces an authority h2 would refuse.
const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";

/// A server-side connection whose incoming header blocks are re-encoded (see the module doc).
pub struct AuthorityRepair<S> {
    inner: S,
    preface_left: usize,
    /// Bytes read from the client and not yet parsed into whole frames.
    raw: Vec<u8>,
    /// Bytes ready for the HTTP/2 server, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// A header block whose END_HEADERS has not arrived yet: (stream id, END_STREAM, fragments).
    block: Option<(u32, bool, Vec<u8>)>,
    decoder: hpack::Decoder<'static>,
    encoder: hpack::Encoder<'static>,
}

impl<S> AuthorityRepair<S> {
    pub fn new(inner: S) -> AuthorityRepair<S> {
        AuthorityRepair {
            inner,
            preface_left: PREFACE_LEN,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            block: None,
            decoder: hpack::Decoder::new(),
            encoder: hpack::Encoder::new(),
        }
    }

    /// Moves every whole frame of `raw` to `out`, header blocks re-encoded.
    fn process(&mut self) -> io::Result<()> {
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.raw.len());
            self.out.extend(self.raw.drain(..n));
            self.preface_left -= n;
            if self.preface_left > 0 {
                return Ok(());
            }
        }
        let mut position = 0;
        while self.raw.len() - position >= FRAME_HEADER_LEN {
            let header = &self.raw[position..position + FRAME_HEADER_LEN];
            let length = (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
            let (kind, flags) = (header[3], header[4]);
            let stream_id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
            let end = position + FRAME_HEADER_LEN + length;
            if self.raw.len() < end {
                break;
            }
            let payload_start = position + FRAME_HEADER_LEN;
            match kind {
                FRAME_HEADERS => {
                    let fragment = headers_fragment(&self.raw[payload_start..end], flags)?.to_vec();
                    self.block = Some((stream_id, flags & FLAG_END_STREAM != 0, fragment));
                }
                FRAME_CONTINUATION => match self.block.as_mut() {
                    Some((block_stream, _, fragments)) if *block_stream == stream_id => {
                        fragments.extend_from_slice(&self.raw[payload_start..end])
                    }
                    _ => return Err(protocol_error("a CONTINUATION frame that continues no header block")),
                },
                // Every other frame (DATA above all) is moved once, untouched.
                _ => self.out.extend_from_slice(&self.raw[position..end]),
            }
            if matches!(kind, FRAME_HEADERS | FRAME_CONTINUATION) {
                if self.block.as_ref().is_some_and(|(_, _, fragments)| fragments.len() > MAX_HEADER_BLOCK) {
                    return Err(protocol_error("a header block over 1 MiB"));
                }
                if flags & FLAG_END_HEADERS != 0 {
                    let (block_stream, end_stream, fragments) = self.block.take().expect("a block was started");
                    self.emit_block(block_stream, end_stream, &fragments)?;
                }
            }
            position = end;
        }
        self.raw.drain(..position);
        Ok(())
    }

    fn emit_block(&mut self, stream_id: u32, end_stream: bool, fragments: &[u8]) -> io::Result<()> {
        let mut fields = self
            .decoder
            .decode(fragments)
            .map_err(|error| protocol_error(&format!("undecodable headers: {error:?}")))?;
        for (name, value) in fields.iter_mut() {
            if name.as_slice() == b":authority" && !is_valid_authority(value) {
                *value = REPLACEMENT_AUTHORITY.to_vec();
            }
        }
        let block = self.encoder.encode(fields.iter().map(|(name, value)| (name.as_slice(), value.as_slice())));
        // One HEADERS frame, then CONTINUATIONs; an empty block still needs its HEADERS frame.
        let pieces: Vec<&[u8]> = if block.is_empty() { vec![&[]] } else { block.chunks(MAX_FRAME_PAYLOAD).collect() };
        let last = pieces.len() - 1;
        for (index, piece) in pieces.into_iter().enumerate() {
            let kind = if index == 0 { FRAME_HEADERS } else { FRAME_CONTINUATION };
            let mut flags = 0;
            if index == 0 && end_stream {
                flags |= FLAG_END_STREAM;
            }
            if index == last {
                flags |= FLAG_END_HEADERS;
            }
            write_frame(&mut self.out, kind, flags, stream_id, piece);
        }
        Ok(())
    }
}

/// The header block fragment of a HEADERS frame: padding and the (deprecated) priority fields
/// removed.
fn headers_fragment(payload: &[u8], flags: u8) -> io::Result<&[u8]> {
    let mut fragment = payload;
    let mut pad_len = 0;
    if flags & FLAG_PADDED != 0 {
        let (&pad, rest) = fragment.split_first().ok_or_else(|| protocol_error("a padded HEADERS frame too short"))?;
        pad_len = usize::from(pad);
        fragment = rest;
    }
    if flags & FLAG_PRIORITY != 0 {
        fragment = fragment.get(5..).ok_or_else(|| protocol_error("a HEADERS frame too short for its priority"))?;
    }
    let without_padding =
        fragment.len().checked_sub(pad_len).ok_or_else(|| protocol_error("padding longer than the frame"))?;
    Ok(&fragment[..without_padding])
}

fn write_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream_id: u32, payload: &[u8]) {
    let length = payload.len() as u32;
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
}

fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

fn protocol_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/2 from the client: {what}"))
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRepair<S> {
    fn poll_read(mut self: Pin<&mut Self>, context: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut chunk_buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(context, &mut chunk_buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) => {
                    let filled = chunk_buf.filled();
                    if filled.is_empty() {
                        // End of stream: whatever is left is an unfinished frame; h2 sees it as is.
                        let leftover = std::mem::take(&mut this.raw);
                        if leftover.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        this.out.extend(leftover);
                        continue;
                    }
                    this.raw.extend_from_slice(filled);
                    this.process()?;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<S> {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(context, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(context, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

impl<S: Connected> Connected for AuthorityRepair<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    async fn rewrite(input: Vec<u8>) -> Vec<u8> {
        let mut repaired = AuthorityRepair::new(std::io::Cursor::new(input));
        let mut output = Vec::new();
        repaired.read_to_end(&mut output).await.unwrap();
        output
    }

    /// Splits `bytes` (after the preface) into frames: (kind, flags, stream, payload).
    fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut frames = Vec::new();
        let mut position = PREFACE_LEN;
        while position < bytes.len() {
            let header = &bytes[position..position + FRAME_HEADER_LEN];
            let length = (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
            let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
            let start = position + FRAME_HEADER_LEN;
            frames.push((header[3], header[4], stream, bytes[start..start + length].to_vec()));
            position = start + length;
        }
        frames
    }

    #[tokio::test]
    async fn a_socket_path_authority_becomes_localhost_and_the_rest_is_kept() {
        let mut client = hpack::Encoder::new();
        let request: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/berth.v1.Version/Version"),
            (b":authority", b"/run/berth/berthd.sock"),
            (b"te", b"trailers"),
        ];
        let block = client.encode(request.iter().copied());
        let mut input = PREFACE.to_vec();
        write_frame(&mut input, 0x4, 0, 0, &[]); // SETTINGS
                                                 // HEADERS padded, with priority, split over a CONTINUATION.
        let (first, second) = block.split_at(block.len() / 2);
        let mut payload = vec![3u8];
        payload.extend_from_slice(&[0, 0, 0, 0, 16]);
        payload.extend_from_slice(first);
        payload.extend_from_slice(&[0, 0, 0]);
        write_frame(&mut input, FRAME_HEADERS, FLAG_PADDED | FLAG_PRIORITY, 1, &payload);
        write_frame(&mut input, FRAME_CONTINUATION, FLAG_END_HEADERS, 1, second);
        write_frame(&mut input, 0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\0"); // DATA
                                                                         // A second request reuses the client's dynamic table.
        let block = client.encode(request.iter().copied());
        write_frame(&mut input, FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &block);

        let output = rewrite(input).await;
        assert_eq!(&output[..PREFACE_LEN], PREFACE);
        let frames = frames(&output);
        let kinds: Vec<(u8, u8, u32)> =
            frames.iter().map(|(kind, flags, stream, _)| (*kind, *flags, *stream)).collect();
        assert_eq!(
            kinds,
            vec![(0x4, 0, 0), (FRAME_HEADERS, FLAG_END_HEADERS, 1), (0x0, FLAG_END_STREAM, 1), (FRAME_HEADERS, 5, 3)]
        );
        assert_eq!(frames[2].3, b"\0\0\0\0\0");
        let mut server = hpack::Decoder::new();
        for header_frame in [&frames[1].3, &frames[3].3] {
            let fields = server.decode(header_frame).unwrap();
            let authority = fields.iter().find(|(name, _)| name == b":authority").unwrap();
            assert_eq!(authority.1, b"localhost");
            let path = fields.iter().find(|(name, _)| name == b":path").unwrap();
            assert_eq!(path.1, b"/berth.v1.Version/Version");
            assert_eq!(fields.len(), 5);
        }
    }

    #[tokio::test]
    async fn a_valid_authority_is_left_as_it_is_and_bytes_arriving_one_by_one_are_fine() {
        let mut client = hpack::Encoder::new();
        let block = client.encode([(&b":authority"[..], &b"localhost:1234"[..]), (b":path", b"/x")]);
        let mut input = PREFACE.to_vec();
        write_frame(&mut input, FRAME_HEADERS, FLAG_END_HEADERS, 1, &block);
        let mut repaired = AuthorityRepair::new(tokio_test_reader(input));
        let mut output = Vec::new();
        repaired.read_to_end(&mut output).await.unwrap();
        let fields = hpack::Decoder::new().decode(&frames(&output)[0].3).unwrap();
        assert_eq!(fields[0], (b":authority".to_vec(), b"localhost:1234".to_vec()));
    }

    /// A reader that hands out one byte per read.
    fn tokio_test_reader(bytes: Vec<u8>) -> impl AsyncRead + Unpin {
        struct OneByOne(std::collections::VecDeque<u8>);
        impl AsyncRead for OneByOne {
            fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                if let Some(byte) = self.0.pop_front() {
                    buf.put_slice(&[byte]);
                }
                Poll::Ready(Ok(()))
            }
        }
        OneByOne(bytes.into())
    }

    #[tokio::test]
    async fn garbage_headers_end_the_connection() {
        let mut input = PREFACE.to_vec();
        write_frame(&mut input, FRAME_HEADERS, FLAG_END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff]);
        let mut repaired = AuthorityRepair::new(std::io::Cursor::new(input));
        let mut output = Vec::new();
        assert_eq!(repaired.read_to_end(&mut output).await.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
