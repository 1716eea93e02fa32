//! What is reachable, decided in one place: every blob and layer snapshot an image or a
//! container references, and from that what a removal (of an image, a container, or a prune)
//! leaves unreferenced. Pure functions over `State`, used by `RemoveImage`, `DeleteContainer`
//! and `PruneImages` so the three cannot disagree on what is garbage.
//!
//! Containers reference only layer snapshots (their lowers): a container never reads its
//! image's blobs again, so content goes with the last image that names it while its snapshots
//! stay as long as any container stacks on them.

use std::collections::BTreeSet;

use berth_projections::{Event, ImageRecord, State};

/// Blobs (by digest) and layer snapshots (by chain id).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    pub digests: BTreeSet<String>,
    pub chain_ids: BTreeSet<String>,
}

/// Something the references are taken without: what is being removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded<'a> {
    Nothing,
    Image {
        namespace: &'a str,
        name: &'a str,
    },
    /// Several images of one namespace (what `image prune -a` removes).
    Images {
        namespace: &'a str,
        names: &'a BTreeSet<String>,
    },
    Container {
        namespace: &'a str,
        id: &'a str,
    },
}

impl Excluded<'_> {
    fn excludes_image(&self, namespace: &str, name: &str) -> bool {
        match *self {
            Excluded::Image { namespace: excluded_namespace, name: excluded_name } => {
                excluded_namespace == namespace && excluded_name == name
            }
            Excluded::Images { namespace: excluded_namespace, names } => {
                excluded_namespace == namespace && names.contains(name)
            }
            Excluded::Nothing | Excluded::Container { .. } => false,
        }
    }

    fn excludes_container(&self, namespace: &str, id: &str) -> bool {
        matches!(*self, Excluded::Container { namespace: excluded_namespace, id: excluded_id }
            if excluded_namespace == namespace && excluded_id == id)
    }
}

impl References {
    fn add_image(&mut self, image: &ImageRecord) {
        self.digests.insert(image.manifest.digest.clone());
        self.digests.insert(image.config.digest.clone());
        for layer in &image.layers {
            self.digests.insert(layer.blob.digest.clone());
            self.chain_ids.insert(layer.chain_id.clone());
        }
    }
}

/// Everything every image and container in every namespace references, less `excluded`.
pub fn references(state: &State, excluded: Excluded<'_>) -> References {
    let mut references = References::default();
    for (namespace_name, namespace_state) in &state.namespaces {
        for (name, image) in &namespace_state.images {
            if excluded.excludes_image(namespace_name, name) {
                continue;
            }
            references.add_image(&image.record);
        }
        for (id, container) in &namespace_state.containers {
            if excluded.excludes_container(namespace_name, id) {
                continue;
            }
            references.chain_ids.extend(container.record.lowers.iter().cloned());
        }
    }
    references
}

/// The `ContentRemoved` and `SnapshotRemoved` events for the `candidate` blobs and snapshots
/// that are recorded in the state and not in `still_referenced`. Snapshots are ordered children
/// first (by depth in the parent chain), so a parent is never removed before a layer on it.
pub fn removal_events(state: &State, candidates: &References, still_referenced: &References) -> Vec<Event> {
    let mut events: Vec<Event> = candidates
        .digests
        .iter()
        .filter(|digest| !still_referenced.digests.contains(*digest) && state.content.contains_key(*digest))
        .map(|digest| Event::ContentRemoved { digest: digest.clone() })
        .collect();
    let mut doomed_chains: Vec<(usize, &String)> = candidates
        .chain_ids
        .iter()
        .filter(|chain_id| !still_referenced.chain_ids.contains(*chain_id) && state.snapshots.contains_key(*chain_id))
        .map(|chain_id| (snapshot_depth(state, chain_id), chain_id))
        .collect();
    doomed_chains.sort_by(|left, right| right.0.cmp(&left.0).then_with(|| left.1.cmp(right.1)));
    events.extend(doomed_chains.into_iter().map(|(_, chain_id)| Event::SnapshotRemoved { chain_id: chain_id.clone() }));
    events
}

/// How many recorded ancestors a snapshot has (bounded by the number of snapshots, so a
/// parent loop in a hand-edited log cannot hang the command thread).
fn snapshot_depth(state: &State, chain_id: &str) -> usize {
    let mut depth = 0;
    let mut current = state.snapshots.get(chain_id);
    while let Some(parent) = current.and_then(|snapshot| snapshot.parent.as_deref()) {
        depth += 1;
        if depth > state.snapshots.len() {
            break;
        }
        current = state.snapshots.get(parent);
    }
    depth
}

/// What removing one image frees: its own blobs and snapshots that no other image and no
/// container references. Blobs recorded but named by no image (a pull in progress records
/// them before its image) are not this removal's to take: only a prune collects those.
pub fn freed_by_image_removal(state: &State, namespace: &str, name: &str) -> Vec<Event> {
    let Some(image) = state.image(namespace, name) else { return Vec::new() };
    let mut candidates = References::default();
    candidates.add_image(&image.record);
    removal_events(state, &candidates, &references(state, Excluded::Image { namespace, name }))
}

/// What deleting one container frees: the layer snapshots it stacked on that no image and no
/// other container references (its image may have been removed while it ran).
pub fn freed_by_container_removal(state: &State, namespace: &str, id: &str) -> Vec<Event> {
    let Some(container) = state.container(namespace, id) else { return Vec::new() };
    // The common case, without a walk over every image and container on the command thread:
    // the image it was created from is still there and holds all its layers.
    let image_kept = state.image(namespace, &container.record.image).is_some_and(|image| {
        image.record.manifest.digest == container.record.image_digest
            && image.record.layers.iter().map(|layer| &layer.chain_id).eq(container.record.lowers.iter())
    });
    if image_kept {
        return Vec::new();
    }
    let candidates =
        References { digests: BTreeSet::new(), chain_ids: container.record.lowers.iter().cloned().collect() };
    removal_events(state, &candidates, &references(state, Excluded::Container { namespace, id }))
}

/// Every recorded blob and snapshot that nothing references: what a prune collects.
pub fn dangling(state: &State, still_referenced: &References) -> Vec<Event> {
    let everything = References {
        digests: state.content.keys().cloned().collect(),
        chain_ids: state.snapshots.keys().cloned().collect(),
    };
    removal_events(state, &everything, still_referenced)
}

#[cfg(test)]
mod tests {
    use berth_log::{Seq, Timestamp};
    use berth_projections::{Envelope, Origin};

    use super::*;
    use crate::test_state::{container, image, imported, names, namespace_created, state_of};

    #[test]
    fn image_removal_frees_what_only_it_references_and_keeps_what_containers_stack_on() {
        let base = image("base", &["a"]);
        let app = image("app", &["a", "b"]);
        let mut events = vec![namespace_created("ns")];
        imported(&mut events, &base);
        imported(&mut events, &app);
        let state = state_of(vec![("ns", events)]);
        // (what is removed, which container exists, what is freed)
        let table: Vec<(&str, Option<&ImageRecord>, Vec<&str>)> = vec![
            ("app", None, vec!["blob cfg-app", "blob l-b", "blob m-app", "snap c-b"]),
            ("base", None, vec!["blob cfg-base", "blob m-base"]),
            // A container on app keeps app's snapshots, not its blobs.
            ("app", Some(&app), vec!["blob cfg-app", "blob l-b", "blob m-app"]),
            ("nope", None, vec![]),
        ];
        for (removed, container_on, expected) in table {
            let mut state = state.clone();
            if let Some(image) = container_on {
                let origin = Origin::Daemon { reason: "test".into(), answers: None };
                let created = Event::ContainerCreated { container: container("c1", image) };
                state.apply(Seq(100), Timestamp::UNIX_EPOCH, &Envelope::new("ns", origin, vec![created]));
            }
            assert_eq!(names(&freed_by_image_removal(&state, "ns", removed)), expected, "removing {removed}");
        }
    }

    #[test]
    fn container_removal_frees_the_snapshots_of_an_image_removed_under_it() {
        let app = image("app", &["a", "b"]);
        let mut events = vec![namespace_created("ns")];
        imported(&mut events, &app);
        events.push(Event::ContainerCreated { container: container("c1", &app) });
        events.push(Event::ContainerCreated { container: container("c2", &app) });
        let with_image = state_of(vec![("ns", events.clone())]);
        events.push(Event::ImageRemoved { name: "app".into() });
        let without_image = state_of(vec![("ns", events.clone())]);
        events.push(Event::ContainerDeleted { id: "c2".into() });
        let last_container = state_of(vec![("ns", events)]);
        let table: Vec<(&State, Vec<&str>)> = vec![
            (&with_image, vec![]),
            (&without_image, vec![]),
            // Children first: c-b stacks on c-a.
            (&last_container, vec!["snap c-b", "snap c-a"]),
        ];
        for (state, expected) in table {
            assert_eq!(names(&freed_by_container_removal(state, "ns", "c1")), expected);
        }
    }

    #[test]
    fn references_in_other_namespaces_count_and_unnamed_content_is_only_dangling() {
        let app = image("app", &["a"]);
        let mut in_ns = vec![namespace_created("ns")];
        imported(&mut in_ns, &app);
        // A blob recorded by a pull that has not recorded its image yet.
        in_ns.push(Event::ContentAdded { digest: "sha256:pulling".into(), size: 1, media_type: "m".into() });
        let mut in_other = vec![namespace_created("other")];
        imported(&mut in_other, &app);
        let state = state_of(vec![("ns", in_ns), ("other", in_other)]);
        assert_eq!(names(&freed_by_image_removal(&state, "ns", "app")), Vec::<String>::new());
        assert_eq!(names(&dangling(&state, &references(&state, Excluded::Nothing))), vec!["blob pulling"]);
        // Without the other namespace's copy, this namespace's copy still holds everything.
        let unreferenced = references(&state, Excluded::Image { namespace: "other", name: "app" });
        assert_eq!(names(&dangling(&state, &unreferenced)), vec!["blob pulling"]);
        let names_in_ns: BTreeSet<String> = ["app".to_string()].into();
        let unreferenced = references(&state, Excluded::Images { namespace: "ns", names: &names_in_ns });
        assert_eq!(names(&dangling(&state, &unreferenced)), vec!["blob pulling"]);
    }

    #[test]
    fn a_parent_loop_in_a_hand_edited_log_does_not_hang_the_depth() {
        let state = state_of(vec![(
            "ns",
            vec![
                Event::SnapshotCommitted { chain_id: "x".into(), parent: Some("y".into()), diff_id: String::new() },
                Event::SnapshotCommitted { chain_id: "y".into(), parent: Some("x".into()), diff_id: String::new() },
            ],
        )]);
        assert_eq!(snapshot_depth(&state, "x"), 3);
    }
}
