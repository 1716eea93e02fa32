//! RecordPulledBlobs and PullImage: what a registry pull records. Each blob is recorded as soon
//! as it is verified in the content store, so a pull that is interrupted (client gone, network
//! error, berthd killed) resumes without fetching it again; the image, its snapshots and where
//! it came from are recorded together once every layer is unpacked.

use std::collections::BTreeSet;

use berth_projections::{Descriptor, Event, ImageRecord, State};

use crate::image::ImportImage;
use crate::CommandError;

/// Blobs a pull has verified and stored; recorded before the pull goes on.
pub struct RecordPulledBlobs {
    pub blobs: Vec<Descriptor>,
}

impl RecordPulledBlobs {
    pub fn decide(&self, state: &State) -> Result<Vec<Event>, CommandError> {
        let mut seen_digests = BTreeSet::new();
        Ok(self
            .blobs
            .iter()
            .filter(|blob| !state.content.contains_key(&blob.digest) && seen_digests.insert(blob.digest.clone()))
            .map(|blob| Event::ContentAdded {
                digest: blob.digest.clone(),
                size: blob.size,
                media_type: blob.media_type.clone(),
            })
            .collect())
    }
}

/// Where a pulled image came from. No credentials: who asked is the record's origin.
pub struct PullProvenance {
    pub reference: String,
    pub served_by: String,
    pub manifest_digest: String,
    pub platform: String,
}

/// A finished pull: the image as an import would record it, plus `ImagePulled`.
pub struct PullImage {
    pub image: ImageRecord,
    pub blobs: Vec<Descriptor>,
    pub provenance: PullProvenance,
}

impl PullImage {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let import = ImportImage { images: vec![self.image.clone()], blobs: self.blobs.clone() };
        let mut events = import.decide(state, namespace)?;
        events.push(Event::ImagePulled {
            name: self.image.name.clone(),
            reference: self.provenance.reference.clone(),
            served_by: self.provenance.served_by.clone(),
            manifest_digest: self.provenance.manifest_digest.clone(),
            platform: self.provenance.platform.clone(),
        });
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(digest: &str) -> Descriptor {
        Descriptor { digest: digest.into(), media_type: "m".into(), size: 3 }
    }

    #[test]
    fn blobs_already_recorded_are_not_recorded_again() {
        let mut state = State::default();
        let first = RecordPulledBlobs { blobs: vec![blob("sha256:a"), blob("sha256:a")] }.decide(&state).unwrap();
        assert_eq!(first.len(), 1);
        let envelope = berth_projections::Envelope::new(
            "default",
            berth_projections::Origin::Daemon { reason: "test".into(), answers: None },
            first,
        );
        state.apply(berth_log::Seq(1), berth_log::Timestamp::from_signed_ns(0).unwrap(), &envelope);
        let second = RecordPulledBlobs { blobs: vec![blob("sha256:a"), blob("sha256:b")] }.decide(&state).unwrap();
        assert_eq!(second, vec![Event::ContentAdded { digest: "sha256:b".into(), size: 3, media_type: "m".into() }]);
    }

    #[test]
    fn a_pull_records_the_image_and_where_it_came_from() {
        let image =
            ImageRecord { name: "127.0.0.1:5000/x:1".into(), manifest: blob("sha256:m"), ..ImageRecord::default() };
        let pull = PullImage {
            image,
            blobs: vec![blob("sha256:m")],
            provenance: PullProvenance {
                reference: "127.0.0.1:5000/x:1".into(),
                served_by: "http://127.0.0.1:5000".into(),
                manifest_digest: "sha256:m".into(),
                platform: String::new(),
            },
        };
        let events = pull.decide(&State::default(), "default").unwrap();
        let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
        assert_eq!(kinds, ["NamespaceCreated", "ContentAdded", "ImageCreated", "ImagePulled"]);
    }

    #[test]
    fn a_pulled_docker_hub_image_answers_to_its_short_names() {
        let mut state = State::default();
        let pull = PullImage {
            image: ImageRecord { name: "docker.io/library/busybox:latest".into(), ..ImageRecord::default() },
            blobs: Vec::new(),
            provenance: PullProvenance {
                reference: "docker.io/library/busybox:latest".into(),
                served_by: "https://registry-1.docker.io".into(),
                manifest_digest: "sha256:m".into(),
                platform: String::new(),
            },
        };
        let envelope = berth_projections::Envelope::new(
            "default",
            berth_projections::Origin::Daemon { reason: "test".into(), answers: None },
            pull.decide(&state, "default").unwrap(),
        );
        state.apply(berth_log::Seq(1), berth_log::Timestamp::from_signed_ns(0).unwrap(), &envelope);
        for name in ["busybox", "busybox:latest", "library/busybox", "docker.io/library/busybox:latest"] {
            let found = crate::resolve_image(&state, "default", name).map(|image| image.record.name.as_str());
            assert_eq!(found, Some("docker.io/library/busybox:latest"), "{name}");
        }
        for name in ["busybox:1", "other/busybox", "localhost/busybox", "quay.io/busybox"] {
            assert!(crate::resolve_image(&state, "default", name).is_none(), "{name}");
        }
    }
}
