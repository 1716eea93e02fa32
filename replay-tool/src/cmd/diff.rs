//! `berth-replay diff --from A --to B`: what changed between two moments of the log (each a seq
//! or an RFC 3339 time) — namespaces, images, containers, tasks, volumes — with who made each
//! change and when. The comparison itself is `diff::diff_states`; this file walks and prints.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use crate::diff::{diff_states, Area, Cause, Change, RangeRecorder, StateDiff};
use crate::error::ReplayError;
use crate::fold::{fold_to, resolve_point, walk_envelopes, walk_records, FoldPoint, RecordStamp, Walk};
use crate::location::open_log;
use berth_projections::event_json::origin_json;

use crate::render::{namespace_label, who_short};

/// One end of the range as resolved: the last record folded in (`None`: before the first).
#[derive(Clone, Copy, Debug)]
pub struct RangeEnd {
    pub seq: u64,
    pub stamp: Option<RecordStamp>,
}

pub struct DiffReport {
    pub from: RangeEnd,
    pub to: RangeEnd,
    pub diff: StateDiff,
    /// The first seq stamped earlier than its predecessor, when an end was given as a time and
    /// the clock was set back: each end is still a prefix by seq.
    pub clock_went_back_at: Option<u64>,
}

fn stamp_at(log: &berth_log::ReadOnlyLog, seq: u64) -> Result<Option<RecordStamp>, ReplayError> {
    let mut found = None;
    if seq > 0 {
        walk_records(log, seq, seq, |stamp, _payload| {
            found = Some(stamp);
            Ok(Walk::Stop)
        })?;
    }
    Ok(found)
}

/// Folds the log to `from`, walks on to `to` recording the records between, and compares.
pub fn collect_diff(dir: &Path, from: FoldPoint, to: FoldPoint) -> Result<DiffReport, ReplayError> {
    let (log, _open_report) = open_log(dir)?;
    let (from_seq, from_clock) = resolve_point(&log, from)?;
    let (to_seq, to_clock) = resolve_point(&log, to)?;
    if from_seq > to_seq {
        return Err(ReplayError::EmptyRange { from: from_seq, to: to_seq });
    }
    let before = fold_to(&log, FoldPoint::Seq(from_seq))?.state;
    let mut after = before.clone();
    let mut recorder = RangeRecorder::new();
    if to_seq > from_seq {
        walk_envelopes(&log, from_seq + 1, to_seq, |stamp, envelope| {
            after.apply(stamp.seq, stamp.timestamp, &envelope);
            recorder.record(stamp, &envelope);
            Ok(Walk::Continue)
        })?;
    }
    Ok(DiffReport {
        from: RangeEnd { seq: from_seq, stamp: stamp_at(&log, from_seq)? },
        to: RangeEnd { seq: to_seq, stamp: stamp_at(&log, to_seq)? },
        diff: diff_states(&before, &after, &recorder),
        clock_went_back_at: from_clock.or(to_clock),
    })
}

fn describe_end(end: &RangeEnd) -> String {
    match end.stamp {
        Some(stamp) => format!("seq {} ({})", end.seq, stamp.timestamp),
        None => "seq 0 (before the first record)".to_string(),
    }
}

/// `uid 0 pid 42 via METHOD`, or `berthd (REASON), asked by uid … at seq N`.
fn describe_cause(cause: &Cause) -> String {
    match &cause.requested_by {
        Some((intent, origin)) => {
            format!("{}, asked by {} at seq {}", who_short(&cause.origin), who_short(origin), intent.seq)
        }
        None => who_short(&cause.origin),
    }
}

fn section_title(area: Area) -> &'static str {
    match area {
        Area::Namespace => "namespaces:",
        Area::Image => "images:",
        Area::Container => "containers:",
        Area::Task => "tasks:",
        Area::Volume => "volumes:",
    }
}

fn change_line(change: &Change) -> String {
    let (position, by) = match &change.cause {
        Some(cause) => (format!("seq {}  {}", cause.stamp.seq, cause.stamp.timestamp), describe_cause(cause)),
        None => ("seq ?".to_string(), "no record in the range explains it".to_string()),
    };
    let subject = match change.area {
        Area::Task => format!("{} ", change.subject),
        _ => String::new(),
    };
    format!(
        "  {position}  {}  {:<9}  {subject}{}  by {by}",
        namespace_label(&change.namespace),
        change.what,
        change.detail
    )
}

pub fn write_diff_text(out: &mut dyn Write, report: &DiffReport) -> std::io::Result<()> {
    writeln!(
        out,
        "changes from {} to {}: {} records",
        describe_end(&report.from),
        describe_end(&report.to),
        report.to.seq - report.from.seq
    )?;
    if let Some(seq) = report.clock_went_back_at {
        writeln!(
            out,
            "note: record timestamps go backwards at seq {seq} (the clock was set back); each end is the prefix up to the last record stamped at or before its time"
        )?;
    }
    if report.diff.changes.is_empty() {
        writeln!(out, "no namespace, image, container, task or volume changed")?;
    }
    let mut area = None;
    for change in &report.diff.changes {
        if area != Some(change.area) {
            area = Some(change.area);
            writeln!(out, "{}", section_title(change.area))?;
        }
        writeln!(out, "{}", change_line(change))?;
    }
    let store = &report.diff.store;
    writeln!(
        out,
        "content: {} blobs added, {} removed; snapshots: {} committed, {} removed",
        store.blobs_added, store.blobs_removed, store.snapshots_added, store.snapshots_removed
    )?;
    Ok(())
}

fn end_json(end: &RangeEnd) -> Value {
    json!({
        "seq": end.seq,
        "time": end.stamp.map(|stamp| stamp.timestamp.to_string()),
        "timestamp_ns": end.stamp.map(|stamp| stamp.timestamp.as_ns()),
    })
}

fn change_json(change: &Change) -> Value {
    let cause = change.cause.as_ref();
    json!({
        "area": change.area.name(),
        "namespace": change.namespace,
        "subject": change.subject,
        "what": change.what,
        "detail": change.detail,
        "seq": cause.map(|cause| cause.stamp.seq.get()),
        "time": cause.map(|cause| cause.stamp.timestamp.to_string()),
        "timestamp_ns": cause.map(|cause| cause.stamp.timestamp.as_ns()),
        "origin": cause.map(|cause| origin_json(&cause.origin)),
        "requested_by": cause.and_then(|cause| cause.requested_by.as_ref()).map(|(intent, origin)| json!({
            "seq": intent.seq.get(),
            "time": intent.timestamp.to_string(),
            "origin": origin_json(origin),
        })),
    })
}

/// The report as one JSON document: from, to, n_records, changes (in the text's order), store.
pub fn diff_json(report: &DiffReport) -> Value {
    let store = &report.diff.store;
    json!({
        "from": end_json(&report.from),
        "to": end_json(&report.to),
        "n_records": report.to.seq - report.from.seq,
        "clock_went_back_at": report.clock_went_back_at,
        "changes": report.diff.changes.iter().map(change_json).collect::<Vec<_>>(),
        "store": {
            "blobs_added": store.blobs_added,
            "blobs_removed": store.blobs_removed,
            "snapshots_added": store.snapshots_added,
            "snapshots_removed": store.snapshots_removed,
        },
    })
}

pub fn run_diff(
    dir: &Path,
    from: FoldPoint,
    to: FoldPoint,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), ReplayError> {
    let report = collect_diff(dir, from, to)?;
    if json {
        let mut text = serde_json::to_string_pretty(&diff_json(&report)).expect("diff serializes to JSON");
        text.push('\n');
        out.write_all(text.as_bytes())?;
    } else {
        write_diff_text(out, &report)?;
    }
    Ok(())
}
