//! `berth-replay events`: every event of every record, filtered, as text lines or JSON lines;
//! `--follow` keeps printing new records as berthd appends them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use berth_projections::event_json::EventSelector;
use berth_projections::Envelope;

use crate::error::ReplayError;
use crate::fold::{walk_matching_envelopes, RecordStamp, Walk};
use crate::location::{open_log, segment_files};
use crate::prefilter::RawFilter;
use crate::render::{event_json, event_line};

/// Which events to print and how.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub from_seq: Option<u64>,
    pub to_seq: Option<u64>,
    pub namespace: Option<String>,
    /// Kinds and container, as `berth events` filters them.
    pub selector: EventSelector,
}

impl EventFilter {
    fn keeps(&self, envelope: &Envelope, event: &berth_projections::Event) -> bool {
        self.namespace.as_deref().is_none_or(|namespace| namespace == envelope.namespace) && self.selector.keeps(event)
    }

    /// What a record's raw payload must hold for one of its events to be kept (prefilter.rs):
    /// the container id and the namespace, when they are asked for.
    fn raw_filter(&self) -> RawFilter {
        RawFilter::everything()
            .require(self.selector.container_id().unwrap_or_default())
            .require(self.namespace.as_deref().unwrap_or_default())
    }

    fn first_seq(&self) -> u64 {
        self.from_seq.unwrap_or(1).max(1)
    }

    fn last_seq(&self) -> u64 {
        self.to_seq.unwrap_or(u64::MAX)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventFormat {
    #[default]
    Text,
    JsonLines,
}

#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// How often to look at the segment files for changes.
    pub poll_interval: Duration,
    /// Reopen at least this often even when file sizes and times look unchanged (a second
    /// write within the file system's timestamp granularity leaves mtime as it was).
    pub reopen_interval: Duration,
    /// Stop after this long (tests); `None` follows until killed.
    pub stop_after: Option<Duration>,
}

impl Default for FollowOptions {
    fn default() -> FollowOptions {
        FollowOptions {
            poll_interval: Duration::from_millis(200),
            reopen_interval: Duration::from_secs(2),
            stop_after: None,
        }
    }
}

fn write_record_events(
    out: &mut dyn Write,
    filter: &EventFilter,
    format: EventFormat,
    stamp: RecordStamp,
    envelope: &Envelope,
) -> Result<(), ReplayError> {
    for (index, event) in envelope.events.iter().enumerate() {
        if !filter.keeps(envelope, event) {
            continue;
        }
        match format {
            EventFormat::Text => writeln!(out, "{}", event_line(stamp, index, envelope, event))?,
            EventFormat::JsonLines => writeln!(out, "{}", event_json(stamp, index, envelope, event))?,
        }
    }
    Ok(())
}

/// Prints the events of records `from..=to` that the log holds now; returns the last seq read.
fn print_range(
    dir: &Path,
    from: u64,
    to: u64,
    filter: &EventFilter,
    format: EventFormat,
    out: &mut dyn Write,
) -> Result<u64, ReplayError> {
    let (log, _open_report) = open_log(dir)?;
    let raw_filter = filter.raw_filter();
    walk_matching_envelopes(&log, from, to, &raw_filter, |stamp, envelope| {
        write_record_events(out, filter, format, stamp, &envelope)?;
        Ok(Walk::Continue)
    })?;
    // Everything the log held when opened was read (the walk stops at its end or at `to`).
    Ok(log.last_seq().get().min(to).max(from - 1))
}

/// Name, length and modification time of every segment file: cheap to take, and it changes
/// when berthd writes.
fn segments_fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    segment_files(dir)
        .into_iter()
        .map(|(path, len)| {
            let modified = std::fs::metadata(&path).and_then(|metadata| metadata.modified()).ok();
            (path, len, modified)
        })
        .collect()
}

pub fn run_events(
    dir: &Path,
    filter: &EventFilter,
    format: EventFormat,
    follow: Option<FollowOptions>,
    out: &mut dyn Write,
) -> Result<(), ReplayError> {
    let (from, to) = (filter.first_seq(), filter.last_seq());
    if from > to {
        return Err(ReplayError::EmptyRange { from, to });
    }
    let mut last_read = print_range(dir, from, to, filter, format, out)?;
    out.flush()?;
    let Some(follow) = follow else { return Ok(()) };

    // A read-only view is a snapshot of the log as it was when opened, so following means
    // reopening it when the segment files change and reading on from the last seq printed.
    let started = Instant::now();
    let mut fingerprint = segments_fingerprint(dir);
    let mut last_open = Instant::now();
    while last_read < to {
        if follow.stop_after.is_some_and(|stop_after| started.elapsed() >= stop_after) {
            break;
        }
        std::thread::sleep(follow.poll_interval);
        let new_fingerprint = segments_fingerprint(dir);
        if new_fingerprint == fingerprint && last_open.elapsed() < follow.reopen_interval {
            continue;
        }
        fingerprint = new_fingerprint;
        last_open = Instant::now();
        last_read = print_range(dir, last_read + 1, to, filter, format, out)?;
        out.flush()?;
    }
    Ok(())
}
