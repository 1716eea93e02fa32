//! ImportImage and RemoveImage. The blobs are already in the content store and the layers
//! unpacked when ImportImage is decided (that IO is idempotent and keyed by digest); the
//! command records what now exists, and RemoveImage records what is no longer referenced so
//! the daemon can delete it.

use std::collections::BTreeSet;

use berth_projections::{Descriptor, Event, ImageRecord, State};

use crate::namespace::ensure_namespace;
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

pub struct RemoveImage {
    pub name: String,
}

impl RemoveImage {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let Some(image) = resolve_image(state, namespace, &self.name) else {
            return Err(image_not_found(state, namespace, &self.name));
        };
        let mut events = vec![Event::ImageRemoved { name: image.record.name.clone() }];

        // What every other image, and every container, still references.
        let mut digests_in_use = BTreeSet::new();
        let mut chains_in_use = BTreeSet::new();
        for (namespace_name, namespace_state) in &state.namespaces {
            for (name, other) in &namespace_state.images {
                if namespace_name == namespace && *name == image.record.name {
                    continue;
                }
                digests_in_use.insert(other.record.manifest.digest.clone());
                digests_in_use.insert(other.record.config.digest.clone());
                for layer in &other.record.layers {
                    digests_in_use.insert(layer.blob.digest.clone());
                    chains_in_use.insert(layer.chain_id.clone());
                }
            }
            for container in namespace_state.containers.values() {
                chains_in_use.extend(container.record.lowers.iter().cloned());
            }
        }
        let record = &image.record;
        let mut digests = vec![record.manifest.digest.clone(), record.config.digest.clone()];
        digests.extend(record.layers.iter().map(|layer| layer.blob.digest.clone()));
        let mut removed = BTreeSet::new();
        for digest in digests {
            if !digests_in_use.contains(&digest)
                && state.content.contains_key(&digest)
                && removed.insert(digest.clone())
            {
                events.push(Event::ContentRemoved { digest });
            }
        }
        // Top first, so a parent is never removed before its child.
        for layer in record.layers.iter().rev() {
            if !chains_in_use.contains(&layer.chain_id) && state.snapshots.contains_key(&layer.chain_id) {
                events.push(Event::SnapshotRemoved { chain_id: layer.chain_id.clone() });
            }
        }
        Ok(events)
    }
}
