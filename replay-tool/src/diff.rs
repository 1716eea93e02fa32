//! What changed between two moments of a log: namespaces, images, containers and volumes
//! compared between two folded states, task changes taken from the records in between, and each
//! change credited to the record that made it (who, when, and for a daemon outcome, which
//! client asked for it). Pure — states and envelopes in, changes out — so it is table-tested.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use berth_projections::names::short_digest;
use berth_projections::{Envelope, Event, Origin, State};

use crate::fold::RecordStamp;
use crate::render::describe_event;

/// What a change is about. Ordered as `diff` prints its sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Area {
    Namespace,
    Image,
    Container,
    Task,
    Volume,
}

impl Area {
    pub fn name(self) -> &'static str {
        match self {
            Area::Namespace => "namespace",
            Area::Image => "image",
            Area::Container => "container",
            Area::Task => "task",
            Area::Volume => "volume",
        }
    }
}

/// The record that made a change, and, when that record is berthd's answer to an intent
/// recorded in the same range, the record of the client that asked.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    pub stamp: RecordStamp,
    pub origin: Origin,
    pub requested_by: Option<(RecordStamp, Origin)>,
}

/// One change between the two moments.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub area: Area,
    /// The namespace it happened in (the namespace's own name for `Area::Namespace`).
    pub namespace: String,
    /// The image name, container id, volume name or namespace name.
    pub subject: String,
    /// One word a program can match: added, removed, recreated, retagged, or a task event
    /// (created, started, paused, resumed, exited, deleted, failed, restarting, exec).
    pub what: &'static str,
    /// The change in words.
    pub detail: String,
    /// `None` when no record in the range explains it (which a consistent log never shows).
    pub cause: Option<Cause>,
}

/// How the shared content store and snapshot index changed, as counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreChanges {
    pub blobs_added: usize,
    pub blobs_removed: usize,
    pub snapshots_added: usize,
    pub snapshots_removed: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDiff {
    /// Sorted by area, then by the seq of the record that caused each (unexplained ones last).
    pub changes: Vec<Change>,
    pub store: StoreChanges,
}

type TouchKey = (Area, String, String);

/// Collects, while the records between the two moments are walked, what `diff` needs from them:
/// the last record that touched each namespace, image, container and volume, every task change,
/// and the client intents berthd's outcomes answer.
#[derive(Debug, Default)]
pub struct RangeRecorder {
    /// (seq of the record, the intent seq it answers)
    last_touch: HashMap<TouchKey, (u64, Option<u64>)>,
    /// Origins of the records `last_touch` and `task_changes` point at, by seq.
    origins: HashMap<u64, (RecordStamp, Origin)>,
    /// Task changes in seq order, with the intent seq their record answers.
    task_changes: Vec<(Change, u64, Option<u64>)>,
    /// Seqs of client records holding an intent (something berthd answers later).
    intents: HashMap<u64, (RecordStamp, Origin)>,
}

/// The word for a task event, or `None` for events that are not a change of the task itself
/// (intents, whose outcome is what changed it).
fn task_change_word(event: &Event) -> Option<&'static str> {
    Some(match event {
        Event::TaskCreated { .. } => "created",
        Event::TaskCreateFailed { .. } | Event::TaskStartFailed { .. } | Event::TaskDeleteFailed { .. } => "failed",
        Event::TaskStarted { .. } => "started",
        Event::TaskPaused { .. } => "paused",
        Event::TaskResumed { .. } => "resumed",
        Event::TaskKillDelivered { .. } | Event::TaskKillFailed { .. } => "signalled",
        Event::TaskExited { .. } => "exited",
        Event::TaskDeleted { .. } => "deleted",
        Event::TaskRestartScheduled { .. } => "restarting",
        Event::ContainerUpdated { .. } => "updated",
        Event::ExecStarted { .. } | Event::ExecStartFailed { .. } | Event::ExecExited { .. } => "exec",
        _ => return None,
    })
}

fn is_intent(event: &Event) -> bool {
    matches!(
        event,
        Event::TaskCreateRequested { .. }
            | Event::TaskStartRequested { .. }
            | Event::TaskKillRequested { .. }
            | Event::TaskDeleteRequested { .. }
            | Event::ExecRequested { .. }
    )
}

/// The namespace, image, container or volume an event creates, changes or removes.
fn touched(namespace: &str, event: &Event) -> Option<TouchKey> {
    let key = |area, subject: &str| Some((area, namespace.to_string(), subject.to_string()));
    match event {
        Event::NamespaceCreated { name, .. } | Event::NamespaceRemoved { name } => {
            Some((Area::Namespace, name.clone(), name.clone()))
        }
        Event::ImageCreated { image } | Event::ImageUpdated { image } => key(Area::Image, &image.name),
        Event::ImageRemoved { name } => key(Area::Image, name),
        Event::ContainerCreated { container } => key(Area::Container, &container.id),
        Event::ContainerDeleted { id } => key(Area::Container, id),
        Event::VolumeCreated { volume } => key(Area::Volume, &volume.name),
        Event::VolumeRemoved { name } => key(Area::Volume, name),
        _ => None,
    }
}

impl RangeRecorder {
    pub fn new() -> RangeRecorder {
        RangeRecorder::default()
    }

    /// Takes one record of the range, in seq order.
    pub fn record(&mut self, stamp: RecordStamp, envelope: &Envelope) {
        let seq = stamp.seq.get();
        let mut keep_origin = false;
        for event in &envelope.events {
            if let Some(key) = touched(&envelope.namespace, event) {
                self.last_touch.insert(key, (seq, envelope.answers().map(|answered| answered.get())));
                keep_origin = true;
            }
            if let Some(what) = task_change_word(event) {
                let subject = event.container_id().unwrap_or_default().to_string();
                let change = Change {
                    area: Area::Task,
                    namespace: envelope.namespace.clone(),
                    subject,
                    what,
                    detail: describe_event(event),
                    cause: None,
                };
                self.task_changes.push((change, seq, envelope.answers().map(|answered| answered.get())));
                keep_origin = true;
            }
            if is_intent(event) && matches!(envelope.origin, Origin::Client { .. }) {
                self.intents.insert(seq, (stamp, envelope.origin.clone()));
            }
        }
        if keep_origin {
            self.origins.insert(seq, (stamp, envelope.origin.clone()));
        }
    }

    fn cause_at(&self, seq: u64, answers: Option<u64>) -> Option<Cause> {
        let (stamp, origin) = self.origins.get(&seq)?.clone();
        let requested_by = answers.and_then(|intent_seq| self.intents.get(&intent_seq).cloned());
        Some(Cause { stamp, origin, requested_by })
    }

    fn cause_of(&self, key: &TouchKey) -> Option<Cause> {
        let (seq, answers) = self.last_touch.get(key)?;
        self.cause_at(*seq, *answers)
    }
}

/// Compares two keyed maps and calls `on_change(key, what)` for every key added, removed, or
/// present in both but `recreated` (created again in between) or otherwise `changed`.
fn compare_maps<'a, V>(
    before: &'a BTreeMap<String, V>,
    after: &'a BTreeMap<String, V>,
    changed: impl Fn(&V, &V) -> Option<&'static str>,
    mut on_change: impl FnMut(&'a str, Option<&'a V>, Option<&'a V>, &'static str),
) {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for key in keys {
        match (before.get(key), after.get(key)) {
            (None, Some(new)) => on_change(key, None, Some(new), "added"),
            (Some(old), None) => on_change(key, Some(old), None, "removed"),
            (Some(old), Some(new)) => {
                if let Some(what) = changed(old, new) {
                    on_change(key, Some(old), Some(new), what);
                }
            }
            (None, None) => {}
        }
    }
}

/// The changes from `before` to `after`, credited from what `recorder` saw between them.
pub fn diff_states(before: &State, after: &State, recorder: &RangeRecorder) -> StateDiff {
    let mut changes = Vec::new();
    let mut push = |area: Area, namespace: &str, subject: &str, what: &'static str, detail: String| {
        let key = (area, namespace.to_string(), subject.to_string());
        changes.push(Change {
            area,
            namespace: namespace.to_string(),
            subject: subject.to_string(),
            what,
            detail,
            cause: recorder.cause_of(&key),
        });
    };

    let recreated = |old_seq, new_seq| (old_seq != new_seq).then_some("recreated");
    compare_maps(
        &before.namespaces,
        &after.namespaces,
        |old, new| recreated(old.created_seq, new.created_seq),
        |name, _old, _new, what| {
            let detail = match what {
                "added" => format!("namespace {name} created"),
                "removed" => format!("namespace {name} removed"),
                _ => format!("namespace {name} removed and created again"),
            };
            push(Area::Namespace, name, name, what, detail);
        },
    );

    let empty = Default::default();
    let namespaces: BTreeSet<&String> = before.namespaces.keys().chain(after.namespaces.keys()).collect();
    for namespace in namespaces {
        let old_namespace = before.namespaces.get(namespace).unwrap_or(&empty);
        let new_namespace = after.namespaces.get(namespace).unwrap_or(&empty);
        compare_maps(
            &old_namespace.images,
            &new_namespace.images,
            |old, new| {
                if old.record.manifest.digest != new.record.manifest.digest {
                    Some("retagged")
                } else {
                    recreated(old.created_seq, new.created_seq)
                }
            },
            |name, old, new, what| {
                let digest = |image: Option<&berth_projections::ImageState>| {
                    image.map(|image| short_digest(&image.record.manifest.digest).to_string()).unwrap_or_default()
                };
                // A tag: another name already held (before the range) the same manifest.
                let same_manifest_as = new.and_then(|new| {
                    old_namespace.images.iter().find(|(other_name, other)| {
                        *other_name != name && other.record.manifest.digest == new.record.manifest.digest
                    })
                });
                let detail = match (what, same_manifest_as) {
                    ("added", Some((other_name, _))) => {
                        format!("image {name} added ({}, the manifest {other_name} names)", digest(new))
                    }
                    ("added", None) => format!("image {name} added ({})", digest(new)),
                    ("removed", _) => format!("image {name} removed (was {})", digest(old)),
                    ("retagged", _) => format!("image {name} now names {} (was {})", digest(new), digest(old)),
                    _ => format!("image {name} removed and added again ({})", digest(new)),
                };
                push(Area::Image, namespace, name, what, detail);
            },
        );
        compare_maps(
            &old_namespace.containers,
            &new_namespace.containers,
            |old, new| recreated(old.created_seq, new.created_seq),
            |id, _old, new, what| {
                let detail = match (what, new) {
                    ("removed", _) => format!("container {id} removed"),
                    (_, Some(container)) => format!(
                        "container {id} {} from image {} to run {}",
                        if what == "added" { "created" } else { "removed and created again" },
                        container.record.image,
                        serde_json::json!(container.record.args)
                    ),
                    _ => format!("container {id} {what}"),
                };
                push(Area::Container, namespace, id, what, detail);
            },
        );
        compare_maps(
            &old_namespace.volumes,
            &new_namespace.volumes,
            |old, new| recreated(old.created_seq, new.created_seq),
            |name, _old, new, what| {
                let anonymous = new
                    .and_then(|volume| volume.record.anonymous_for.as_deref())
                    .map(|container_id| format!(" (anonymous, for container {container_id})"))
                    .unwrap_or_default();
                let detail = match what {
                    "added" => format!("volume {name} created{anonymous}"),
                    "removed" => format!("volume {name} removed"),
                    _ => format!("volume {name} removed and created again{anonymous}"),
                };
                push(Area::Volume, namespace, name, what, detail);
            },
        );
    }

    for (change, seq, answers) in &recorder.task_changes {
        let mut change = change.clone();
        change.cause = recorder.cause_at(*seq, *answers);
        changes.push(change);
    }
    // Stable: within an area and a seq, changes keep the order they were found in.
    changes.sort_by_key(|change| (change.area, change.cause.as_ref().map_or(u64::MAX, |cause| cause.stamp.seq.get())));

    let count_new = |old: &BTreeSet<&String>, new: &BTreeSet<&String>| new.difference(old).count();
    let (old_blobs, new_blobs): (BTreeSet<&String>, BTreeSet<&String>) =
        (before.content.keys().collect(), after.content.keys().collect());
    let (old_snapshots, new_snapshots): (BTreeSet<&String>, BTreeSet<&String>) =
        (before.snapshots.keys().collect(), after.snapshots.keys().collect());
    let store = StoreChanges {
        blobs_added: count_new(&old_blobs, &new_blobs),
        blobs_removed: count_new(&new_blobs, &old_blobs),
        snapshots_added: count_new(&old_snapshots, &new_snapshots),
        snapshots_removed: count_new(&new_snapshots, &old_snapshots),
    };
    StateDiff { changes, store }
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
