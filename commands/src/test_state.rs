//! Test-only: projections built by folding the events an import, a create or a removal
//! records, shared by the table tests of `references` and `image`.

use berth_log::{Seq, Timestamp};
use berth_projections::{ContainerRecord, Descriptor, Envelope, Event, ImageRecord, LayerRecord, Origin, State};

pub(crate) fn blob(name: &str) -> Descriptor {
    Descriptor { digest: format!("sha256:{name}"), size: 10, media_type: "m".into() }
}

/// An image whose layers are named by `layers` (blob "l-<x>", chain "c-<x>"), each on the
/// one before.
pub(crate) fn image(name: &str, layers: &[&str]) -> ImageRecord {
    ImageRecord {
        name: name.into(),
        manifest: blob(&format!("m-{name}")),
        config: blob(&format!("cfg-{name}")),
        layers: layers
            .iter()
            .map(|layer| LayerRecord {
                blob: blob(&format!("l-{layer}")),
                diff_id: format!("sha256:d-{layer}"),
                chain_id: format!("sha256:c-{layer}"),
            })
            .collect(),
        ..ImageRecord::default()
    }
}

pub(crate) fn container(id: &str, image: &ImageRecord) -> ContainerRecord {
    ContainerRecord {
        id: id.into(),
        image: image.name.clone(),
        image_digest: image.manifest.digest.clone(),
        lowers: image.chain_ids(),
        ..Default::default()
    }
}

/// A state built by folding events, as the daemon would.
pub(crate) fn state_of(records: Vec<(&str, Vec<Event>)>) -> State {
    let mut state = State::new();
    for (idx, (namespace, events)) in records.into_iter().enumerate() {
        let origin = Origin::Daemon { reason: "test".into(), answers: None };
        state.apply(Seq(idx as u64 + 1), Timestamp::UNIX_EPOCH, &Envelope::new(namespace, origin, events));
    }
    state
}

/// The events that record an image as imported (content, snapshots, image).
pub(crate) fn imported(state_events: &mut Vec<Event>, image: &ImageRecord) {
    for descriptor in [&image.manifest, &image.config].into_iter().chain(image.layers.iter().map(|l| &l.blob)) {
        state_events.push(Event::ContentAdded {
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            media_type: descriptor.media_type.clone(),
        });
    }
    let mut parent = None;
    for layer in &image.layers {
        state_events.push(Event::SnapshotCommitted {
            chain_id: layer.chain_id.clone(),
            parent: parent.clone(),
            diff_id: layer.diff_id.clone(),
        });
        parent = Some(layer.chain_id.clone());
    }
    state_events.push(Event::ImageCreated { image: image.clone() });
}

pub(crate) fn names(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|event| match event {
            Event::ContentRemoved { digest } => format!("blob {}", digest.trim_start_matches("sha256:")),
            Event::SnapshotRemoved { chain_id } => format!("snap {}", chain_id.trim_start_matches("sha256:")),
            other => other.kind().to_string(),
        })
        .collect()
}

pub(crate) fn namespace_created(name: &str) -> Event {
    Event::NamespaceCreated { name: name.into(), labels: Default::default() }
}
