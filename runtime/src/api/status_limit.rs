//! The one place every gRPC status passes on its way out: a status message is cut to
//! [`MAX_STATUS_MESSAGE_BYTES`]. A message that repeats a huge input (a name, an environment
//! entry) would otherwise travel as a `grpc-message` header larger than HTTP/2 lets a client
//! accept, and the client would see "h2 protocol error" instead of berthd's answer.

use http_body_util::BodyExt;
use tonic::body::Body;

/// The longest status message berthd sends, in bytes before percent-encoding.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 2048;

/// The layer for `tonic::transport::Server::layer`: caps the status in the response headers (a
/// trailers-only answer, as every unary error is) and in the trailers of a streamed body.
pub fn cap_status_messages_layer() -> tower::util::MapResponseLayer<fn(http::Response<Body>) -> http::Response<Body>> {
    tower::util::MapResponseLayer::new(cap_response)
}

fn cap_response(response: http::Response<Body>) -> http::Response<Body> {
    let (mut parts, body) = response.into_parts();
    cap_status_in(&mut parts.headers);
    let body = Body::new(body.map_frame(|mut frame| {
        if let Some(trailers) = frame.trailers_mut() {
            cap_status_in(trailers);
        }
        frame
    }));
    http::Response::from_parts(parts, body)
}

/// Rewrites the `grpc-message` in `headers` when it is over the limit; leaves everything else.
pub fn cap_status_in(headers: &mut http::HeaderMap) {
    let too_long = headers.get("grpc-message").is_some_and(|value| value.len() > MAX_STATUS_MESSAGE_BYTES);
    if !too_long {
        return;
    }
    let Some(status) = tonic::Status::from_header_map(headers) else { return };
    let message = status.message();
    if message.len() <= MAX_STATUS_MESSAGE_BYTES {
        return;
    }
    let mut cut_at = MAX_STATUS_MESSAGE_BYTES;
    while !message.is_char_boundary(cut_at) {
        cut_at -= 1;
    }
    let capped = format!("{}… ({} more bytes cut)", &message[..cut_at], message.len() - cut_at);
    // Only grpc-status and grpc-message are written: the new status carries no metadata.
    let _ = tonic::Status::new(status.code(), capped).add_header(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_and_short_ones_left_alone() {
        let mut headers = http::HeaderMap::new();
        tonic::Status::not_found(format!("container {:?} not found", "é".repeat(100_000)))
            .add_header(&mut headers)
            .unwrap();
        cap_status_in(&mut headers);
        let capped = tonic::Status::from_header_map(&headers).unwrap();
        assert_eq!(capped.code(), tonic::Code::NotFound);
        assert!(capped.message().starts_with("container \"éé"), "{}", capped.message());
        assert!(capped.message().ends_with("more bytes cut)"), "{}", capped.message());
        assert!(capped.message().len() < MAX_STATUS_MESSAGE_BYTES + 64);

        let mut short = http::HeaderMap::new();
        tonic::Status::invalid_argument("bad").add_header(&mut short).unwrap();
        let before = short.clone();
        cap_status_in(&mut short);
        assert_eq!(short, before);
    }
}
