//! `berth-replay history --container ID`: one container's whole story from the log — who asked
//! for what, what berthd did in answer, how the task exited — and where it stands now.

use std::io::Write;
use std::path::Path;

use berth_projections::{Event, Origin, State};

use crate::error::ReplayError;
use crate::fold::{walk_matching_envelopes, RecordStamp, Walk};
use crate::location::open_log;
use crate::prefilter::RawFilter;
use crate::render::{describe_event, describe_origin, describe_task, who_short};
use crate::secrets::KeyDir;

/// One line of the story.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub stamp: RecordStamp,
    pub index: usize,
    pub who: String,
    pub what: String,
}

/// The story of one container id in one namespace (an id may be created, deleted and created
/// again: all of its lives are in `entries`).
#[derive(Clone, Debug, Default)]
pub struct ContainerHistory {
    pub entries: Vec<HistoryEntry>,
    /// The last `ContainerCreated` and who caused it.
    pub created: Option<(RecordStamp, Origin)>,
    /// The last `ContainerDeleted` after the last creation.
    pub deleted: Option<RecordStamp>,
    /// The state folded from every record that mentions the container or a namespace: exact
    /// for this container and for which namespaces exist (nothing else changes them), partial
    /// for everything else. Says where the container stands now.
    pub final_state: State,
    pub last_seq: u64,
}

fn is_about(event: &Event, id: &str) -> bool {
    match event {
        Event::OrphanRemoved { id: orphan_id, .. } => orphan_id == id,
        other => other.container_id() == Some(id),
    }
}

pub fn collect_history(dir: &Path, namespace: &str, id: &str, keys: &KeyDir) -> Result<ContainerHistory, ReplayError> {
    let (log, _open_report) = open_log(dir)?;
    let mut history = ContainerHistory { last_seq: log.last_seq().get(), ..ContainerHistory::default() };
    // Only records holding the id's bytes can be about the container (see prefilter.rs); the
    // namespace events come too, so the final state knows whether its namespace still exists.
    let filter = RawFilter::everything().require_one_of(&[id, "Namespace"]);
    walk_matching_envelopes(&log, 1, u64::MAX, &filter, |stamp, envelope| {
        history.final_state.apply(stamp.seq, stamp.timestamp, &envelope);
        if envelope.namespace != namespace {
            return Ok(Walk::Continue);
        }
        // The layers a container's removal freed are recorded with it, and are part of its story.
        let deletes_it = envelope
            .events
            .iter()
            .any(|event| matches!(event, Event::ContainerDeleted { id: deleted } if deleted == id));
        for (index, event) in envelope.events.iter().enumerate() {
            let freed_with_it = deletes_it && matches!(event, Event::SnapshotRemoved { .. });
            if !is_about(event, id) && !freed_with_it {
                continue;
            }
            match event {
                Event::ContainerCreated { .. } => {
                    history.created = Some((stamp, envelope.origin.clone()));
                    history.deleted = None;
                }
                Event::ContainerDeleted { .. } => history.deleted = Some(stamp),
                _ => {}
            }
            history.entries.push(HistoryEntry {
                stamp,
                index,
                who: describe_origin(&envelope.origin),
                what: format!("{}{}", describe_event(event), keys.env_note(namespace, event)?),
            });
        }
        Ok(Walk::Continue)
    })?;
    if history.entries.is_empty() {
        return Err(ReplayError::ContainerNotFound { namespace: namespace.to_string(), id: id.to_string() });
    }
    Ok(history)
}

/// The closing line: when the container was created and by whom, and where it stands now.
pub fn summary_line(history: &ContainerHistory, namespace: &str, id: &str) -> String {
    let created = match &history.created {
        Some((stamp, origin)) => {
            format!("created at {} (seq {}) by {}", stamp.timestamp, stamp.seq, who_short(origin))
        }
        None => "created before the first record of this log".to_string(),
    };
    let now = match (history.final_state.container(namespace, id), &history.deleted) {
        (Some(container), _) => {
            format!("now {} (as of seq {})", describe_task(container.task.as_ref()), history.last_seq)
        }
        (None, Some(stamp)) => format!("deleted at {} (seq {})", stamp.timestamp, stamp.seq),
        (None, None) if history.final_state.namespace(namespace).is_none() => {
            format!("gone: namespace {namespace} no longer exists (as of seq {})", history.last_seq)
        }
        (None, None) => format!("not in the state any more (as of seq {})", history.last_seq),
    };
    format!("summary: container {id} in namespace {namespace}: {created}; {now}")
}

pub fn run_history(
    dir: &Path,
    namespace: &str,
    id: &str,
    keys: &KeyDir,
    out: &mut dyn Write,
) -> Result<(), ReplayError> {
    let history = collect_history(dir, namespace, id, keys)?;
    writeln!(out, "history of container {id} in namespace {namespace} ({} events)", history.entries.len())?;
    let seq_width =
        history.entries.iter().map(|entry| format!("{}.{}", entry.stamp.seq, entry.index).len()).max().unwrap_or(1);
    let who_width = history.entries.iter().map(|entry| entry.who.len()).max().unwrap_or(0);
    for entry in &history.entries {
        let position = format!("{}.{}", entry.stamp.seq, entry.index);
        writeln!(out, "{position:<seq_width$}  {}  {:<who_width$}  {}", entry.stamp.timestamp, entry.who, entry.what)?;
    }
    writeln!(out, "{}", summary_line(&history, namespace, id))?;
    Ok(())
}
