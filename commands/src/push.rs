//! PushImage: what a registry push records once the registry holds the whole image. Nothing is
//! recorded for a push that failed part-way: the registry may keep blobs of it, but berth's log
//! says only what was pushed whole.

use berth_projections::{Event, State};

use crate::validate::shown;
use crate::CommandError;

/// A finished push. No credentials: who pushed is the record's origin.
pub struct PushImage {
    pub name: String,
    pub reference: String,
    pub pushed_to: String,
    pub manifest_digest: String,
    pub uploaded_blobs: u32,
    pub uploaded_bytes: u64,
    pub existing_blobs: u32,
    pub mounted_blobs: u32,
}

impl PushImage {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let image = state.image(namespace, &self.name).ok_or_else(|| {
            CommandError::NotFound(format!(
                "image {} is not in namespace {namespace} (it was removed during the push?); `berth image ls` lists them",
                shown(&self.name)
            ))
        })?;
        if image.record.manifest.digest != self.manifest_digest {
            return Err(CommandError::FailedPrecondition(format!(
                "image {} changed during the push (its manifest is now {}); push it again",
                shown(&self.name),
                image.record.manifest.digest
            )));
        }
        Ok(vec![Event::ImagePushed {
            name: self.name.clone(),
            reference: self.reference.clone(),
            pushed_to: self.pushed_to.clone(),
            manifest_digest: self.manifest_digest.clone(),
            uploaded_blobs: self.uploaded_blobs,
            uploaded_bytes: self.uploaded_bytes,
            existing_blobs: self.existing_blobs,
            mounted_blobs: self.mounted_blobs,
        }])
    }
}

#[cfg(test)]
mod tests {
    use berth_projections::{Descriptor, Envelope, ImageRecord, Origin};

    use super::*;

    fn push(name: &str, manifest_digest: &str) -> PushImage {
        PushImage {
            name: name.into(),
            reference: "127.0.0.1:5000/team/app:1".into(),
            pushed_to: "http://127.0.0.1:5000".into(),
            manifest_digest: manifest_digest.into(),
            uploaded_blobs: 2,
            uploaded_bytes: 10,
            existing_blobs: 1,
            mounted_blobs: 0,
        }
    }

    fn state_with_image(name: &str, manifest_digest: &str) -> State {
        let mut state = State::default();
        let image = ImageRecord {
            name: name.into(),
            manifest: Descriptor { digest: manifest_digest.into(), media_type: "m".into(), size: 1 },
            ..ImageRecord::default()
        };
        let events = vec![
            Event::NamespaceCreated { name: "default".into(), labels: Default::default() },
            Event::ImageCreated { image },
        ];
        let envelope = Envelope::new("default", Origin::Daemon { reason: "test".into(), answers: None }, events);
        state.apply(berth_log::Seq(1), berth_log::Timestamp::from_signed_ns(0).unwrap(), &envelope);
        state
    }

    #[test]
    fn a_push_is_recorded_with_where_it_went_and_is_remembered_as_a_mount_source() {
        let mut state = state_with_image("app", "sha256:m");
        let events = push("app", "sha256:m").decide(&state, "default").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind(), "ImagePushed");
        let envelope = Envelope::new("default", Origin::Daemon { reason: "test".into(), answers: None }, events);
        state.apply(berth_log::Seq(2), berth_log::Timestamp::from_signed_ns(0).unwrap(), &envelope);
        assert_eq!(state.image("default", "app").unwrap().known_references, ["127.0.0.1:5000/team/app:1"]);
    }

    #[test]
    fn a_push_of_a_missing_or_changed_image_is_refused() {
        let state = state_with_image("app", "sha256:m");
        assert!(matches!(push("other", "sha256:m").decide(&state, "default"), Err(CommandError::NotFound(_))));
        assert!(matches!(
            push("app", "sha256:changed").decide(&state, "default"),
            Err(CommandError::FailedPrecondition(_))
        ));
    }
}
