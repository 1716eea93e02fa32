//! The signal `berth stop` sends first: the image config's `StopSignal` (Dockerfile
//! `STOPSIGNAL`), read from the content store when asked, since the image record keeps only
//! digests; SIGTERM when the image is gone, says nothing, or names no signal berth knows.

use berth_projections::names::signal_number;
use berth_projections::State;

use crate::images::content::ContentStore;

pub const DEFAULT_STOP_SIGNAL: i32 = 15;

/// The stop signal of the image container `container_id` was made from (matched by manifest
/// digest, so a tag moved since then does not change it).
pub fn stop_signal_of(state: &State, content: &ContentStore, namespace: &str, container_id: &str) -> i32 {
    let Some(container) = state.container(namespace, container_id) else { return DEFAULT_STOP_SIGNAL };
    let config_digest = state.namespace(namespace).and_then(|namespace_state| {
        namespace_state
            .images
            .values()
            .find(|image| image.record.manifest.digest == container.record.image_digest)
            .map(|image| image.record.config.digest.clone())
    });
    let Some(config_digest) = config_digest else { return DEFAULT_STOP_SIGNAL };
    let stop_signal = content
        .read_all(&config_digest)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<oci_spec::image::ImageConfiguration>(&bytes).ok())
        .and_then(|parsed| parsed.config().as_ref().and_then(|config| config.stop_signal().clone()));
    stop_signal.as_deref().and_then(parse_stop_signal).unwrap_or(DEFAULT_STOP_SIGNAL)
}

/// `SIGINT`, `INT` or `2`, as a Dockerfile may spell it.
pub fn parse_stop_signal(text: &str) -> Option<i32> {
    match text.trim().parse::<i32>() {
        Ok(number) if (1..=64).contains(&number) => Some(number),
        Ok(_) => None,
        Err(_) => signal_number(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_are_read_by_name_or_number() {
        assert_eq!(parse_stop_signal("SIGINT"), Some(2));
        assert_eq!(parse_stop_signal("quit"), Some(3));
        assert_eq!(parse_stop_signal("9"), Some(9));
        assert_eq!(parse_stop_signal("99"), None);
        assert_eq!(parse_stop_signal("SIGNOPE"), None);
    }
}
