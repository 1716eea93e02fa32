//! ImportImage, TagImage and RemoveImage. The blobs are already in the content store and the layers
//! unpacked when ImportImage is decided (that IO is idempotent and keyed by digest); the
//! command records what now exists; RemoveImage and PruneImages record, in the same record,
//! what is no longer referenced (`references` decides), so the daemon can delete it.

use std::collections::BTreeSet;

use berth_projections::{Descriptor, Event, ImageRecord, State};

use crate::namespace::ensure_namespace;
use crate::references::{dangling, freed_by_image_removal, references, Excluded};
use crate::CommandError;

pub struct ImportImage {
    pub images: Vec<ImageRecord>,
    /// Every blob the images reference (manifests, configs, layers).
    pub blobs: Vec<Descriptor>,
}

impl ImportImage {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        if self.images.is_empty() {
            return Err(CommandError::InvalidArgument("the archive holds no image".into()));
        }
        let mut events = Vec::new();
        ensure_namespace(state, namespace, &mut events)?;
        let mut seen_digests = BTreeSet::new();
        for blob in &self.blobs {
            if !state.content.contains_key(&blob.digest) && seen_digests.insert(blob.digest.clone()) {
                events.push(Event::ContentAdded {
                    digest: blob.digest.clone(),
                    size: blob.size,
                    media_type: blob.media_type.clone(),
                });
            }
        }
        let mut seen_chains = BTreeSet::new();
        for image in &self.images {
            if image.name.is_empty() {
                return Err(CommandError::InvalidArgument("an image in the archive has no name: pass --name".into()));
            }
            let mut parent: Option<String> = None;
            for layer in &image.layers {
                if !state.snapshots.contains_key(&layer.chain_id) && seen_chains.insert(layer.chain_id.clone()) {
                    events.push(Event::SnapshotCommitted {
                        chain_id: layer.chain_id.clone(),
                        parent: parent.clone(),
                        diff_id: layer.diff_id.clone(),
                    });
                }
                parent = Some(layer.chain_id.clone());
            }
            match state.image(namespace, &image.name) {
                Some(existing) if existing.record == *image => {}
                Some(_) => events.push(Event::ImageUpdated { image: image.clone() }),
                None => events.push(Event::ImageCreated { image: image.clone() }),
            }
        }
        Ok(events)
    }
}

/// The image a reference names: the exact name, or with ":latest" when the reference has no
/// tag (as docker and containerd read "busybox").
pub fn resolve_image<'a>(
    state: &'a State,
    namespace: &str,
    reference: &str,
) -> Option<&'a berth_projections::ImageState> {
    if let Some(image) = state.image(namespace, reference) {
        return Some(image);
    }
    if resolve_image_is_tagless(reference) {
        if let Some(image) = state.image(namespace, &format!("{reference}:latest")) {
            return Some(image);
        }
    }
    // A pull names images as Docker normalises them: `busybox` was pulled as
    // `docker.io/library/busybox:latest`, `user/app:1` as `docker.io/user/app:1`.
    let first_component = reference.split('/').next().unwrap_or(reference);
    let names_a_registry =
        reference.contains('/') && (first_component.contains(['.', ':']) || first_component == "localhost");
    if names_a_registry || reference.is_empty() {
        return None;
    }
    let library = if reference.contains('/') { "" } else { "library/" };
    let latest = if resolve_image_is_tagless(reference) { ":latest" } else { "" };
    state.image(namespace, &format!("docker.io/{library}{reference}{latest}"))
}

/// The refusal for a reference that names no image: it says what the reference meant and, when
/// the same repository is there under other tags, names them.
pub fn image_not_found(state: &State, namespace: &str, reference: &str) -> CommandError {
    let repository = match reference.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => reference,
    };
    let others: Vec<&str> = state
        .namespace(namespace)
        .map(|ns| {
            ns.images
                .keys()
                .filter(|name| name.rsplit_once(':').map(|(repo, _)| repo) == Some(repository))
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default();
    let meant =
        if resolve_image_is_tagless(reference) { format!(" (that is {reference}:latest)") } else { String::new() };
    if others.is_empty() {
        CommandError::NotFound(format!(
            "image {reference:?}{meant} not found in namespace {namespace:?}: import it with `berth image import FILE --name {reference}`"
        ))
    } else {
        CommandError::NotFound(format!(
            "image {reference:?}{meant} not found in namespace {namespace:?}; it has {}: use one of those names",
            others.join(", ")
        ))
    }
}

fn resolve_image_is_tagless(reference: &str) -> bool {
    let last_component = reference.rsplit('/').next().unwrap_or(reference);
    !last_component.contains(':') && !last_component.contains('@')
}

/// Another name for an image. Recorded with the events an import of the same image under that
/// name would record (`ImageCreated`, or `ImageUpdated` when the name pointed elsewhere): a name
/// is all an image record adds to its manifest, so no new event kind and no schema change; the
/// record's origin (`Images/Tag`) says it was a tag.
pub struct TagImage {
    pub source: String,
    pub target: String,
}

impl TagImage {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let Some(source) = resolve_image(state, namespace, &self.source) else {
            return Err(image_not_found(state, namespace, &self.source));
        };
        let target = if resolve_image_is_tagless(&self.target) && !self.target.contains('@') {
            format!("{}:latest", self.target)
        } else {
            self.target.clone()
        };
        if !is_valid_image_name(&target) {
            return Err(CommandError::InvalidArgument(format!(
                "{} is not a valid image name; use REPOSITORY[:TAG], e.g. library/busybox:1.36",
                crate::validate::shown(&self.target)
            )));
        }
        let image = ImageRecord { name: target.clone(), ..source.record.clone() };
        Ok(match state.image(namespace, &target) {
            Some(existing) if existing.record == image => Vec::new(),
            Some(_) => vec![Event::ImageUpdated { image }],
            None => vec![Event::ImageCreated { image }],
        })
    }
}

/// The names berth gives images: what `images::archive::naming` accepts on import.
fn is_valid_image_name(name: &str) -> bool {
    let acceptable = |character: char| character.is_ascii_alphanumeric() || "._-/:@".contains(character);
    !name.is_empty()
        && name.len() <= 4096
        && name.chars().all(acceptable)
        && !name.starts_with(['/', ':', '@', '.', '-'])
        && !name.ends_with(['/', ':', '@'])
}

pub struct RemoveImage {
    pub name: String,
}

impl RemoveImage {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let Some(image) = resolve_image(state, namespace, &self.name) else {
            return Err(image_not_found(state, namespace, &self.name));
        };
        let mut events = vec![Event::ImageRemoved { name: image.record.name.clone() }];
        events.extend(freed_by_image_removal(state, namespace, &image.record.name));
        Ok(events)
    }
}

/// `image prune`: every blob and layer snapshot that no image and no container references
/// ("dangling"), and with `all_unused` also this namespace's images that no container uses.
/// The caller holds the collection lock exclusively while this is decided and recorded, so no
/// pull or import is between recording its first blob and its image.
pub struct PruneImages {
    pub all_unused: bool,
}

impl PruneImages {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let mut unused_images = BTreeSet::new();
        if self.all_unused {
            if let Some(namespace_state) = state.namespace(namespace) {
                for (name, image) in &namespace_state.images {
                    let in_use = namespace_state.containers.values().any(|container| {
                        container.record.image == *name || container.record.image_digest == image.record.manifest.digest
                    });
                    if !in_use {
                        unused_images.insert(name.clone());
                    }
                }
            }
        }
        let still_referenced = references(state, Excluded::Images { namespace, names: &unused_images });
        let mut events: Vec<Event> =
            unused_images.iter().map(|name| Event::ImageRemoved { name: name.clone() }).collect();
        events.extend(dangling(state, &still_referenced));
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use berth_projections::Event;

    use super::*;
    use crate::test_state::{container, image, imported, names, namespace_created, state_of};

    #[test]
    fn prune_takes_dangling_content_and_with_all_the_images_no_container_uses() {
        let used = image("used", &["a"]);
        let unused = image("unused", &["a", "b"]);
        let mut events = vec![namespace_created("ns")];
        imported(&mut events, &used);
        imported(&mut events, &unused);
        events.push(Event::ContainerCreated { container: container("c1", &used) });
        events.push(Event::ContentAdded { digest: "sha256:orphan".into(), size: 1, media_type: "m".into() });
        let state = state_of(vec![("ns", events)]);
        // (all_unused, namespace, what is recorded)
        let table: Vec<(bool, &str, Vec<&str>)> = vec![
            (false, "ns", vec!["blob orphan"]),
            (
                true,
                "ns",
                vec!["ImageRemoved", "blob cfg-unused", "blob l-b", "blob m-unused", "blob orphan", "snap c-b"],
            ),
            // Another namespace's prune -a removes none of ns's images.
            (true, "other", vec!["blob orphan"]),
        ];
        for (all_unused, namespace, expected) in table {
            let decided = PruneImages { all_unused }.decide(&state, namespace).unwrap();
            assert_eq!(names(&decided), expected, "all_unused={all_unused} in {namespace}");
        }
    }
}
