//! `berth-replay stats`: how big the log is, what it holds (events per kind, records per
//! namespace, first and last times) and how fast this machine replays it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use berth_log::format::encoded_record_len;
use berth_projections::{Envelope, State};

use crate::error::ReplayError;
use crate::fold::{walk_records, RecordStamp, Walk};
use crate::location::{open_log, segment_files};
use crate::render::{count, namespace_label};

#[derive(Clone, Debug, Default)]
pub struct LogStatistics {
    pub n_records: u64,
    pub n_events: u64,
    /// On-disk bytes of the records (headers, payloads, padding).
    pub n_record_bytes: u64,
    pub n_payload_bytes: u64,
    pub events_per_kind: BTreeMap<&'static str, u64>,
    pub records_per_namespace: BTreeMap<String, u64>,
    pub first_record: Option<RecordStamp>,
    pub last_record: Option<RecordStamp>,
    /// Activated segments, and segment files with their preallocated bytes.
    pub n_segments: usize,
    pub n_segment_files: usize,
    pub n_segment_file_bytes: u64,
    /// Decoding and folding every record, measured on this run.
    pub replay_seconds: f64,
}

impl LogStatistics {
    pub fn records_per_second(&self) -> f64 {
        if self.replay_seconds > 0.0 {
            self.n_records as f64 / self.replay_seconds
        } else {
            0.0
        }
    }
}

pub fn collect_stats(dir: &Path) -> Result<LogStatistics, ReplayError> {
    let (log, open_report) = open_log(dir)?;
    let files = segment_files(dir);
    let mut statistics = LogStatistics {
        n_segments: open_report.n_segments,
        n_segment_files: files.len(),
        n_segment_file_bytes: files.iter().map(|(_path, len)| len).sum(),
        ..LogStatistics::default()
    };
    let mut state = State::new();
    let started = Instant::now();
    walk_records(&log, 1, u64::MAX, |stamp, payload| {
        let envelope =
            Envelope::decode(payload).map_err(|source| ReplayError::Decode { seq: stamp.seq.get(), source })?;
        state.apply(stamp.seq, stamp.timestamp, &envelope);
        statistics.n_records += 1;
        statistics.n_payload_bytes += payload.len() as u64;
        statistics.n_record_bytes += encoded_record_len(payload.len()) as u64;
        statistics.n_events += envelope.events.len() as u64;
        for event in &envelope.events {
            *statistics.events_per_kind.entry(event.kind()).or_default() += 1;
        }
        *statistics.records_per_namespace.entry(envelope.namespace).or_default() += 1;
        statistics.first_record.get_or_insert(stamp);
        statistics.last_record = Some(stamp);
        Ok(Walk::Continue)
    })?;
    statistics.replay_seconds = started.elapsed().as_secs_f64();
    Ok(statistics)
}

pub fn run_stats(dir: &Path, out: &mut dyn Write) -> Result<(), ReplayError> {
    let statistics = collect_stats(dir)?;
    writeln!(out, "log:          {}", dir.display())?;
    match (statistics.first_record, statistics.last_record) {
        (Some(first), Some(last)) => {
            writeln!(out, "records:      {} (seq {}..={})", statistics.n_records, first.seq, last.seq)?;
            writeln!(out, "first record: {} (seq {})", first.timestamp, first.seq)?;
            writeln!(out, "last record:  {} (seq {})", last.timestamp, last.seq)?;
        }
        _ => writeln!(out, "records:      0 (the log is empty)")?,
    }
    writeln!(
        out,
        "bytes:        {} in records ({} of payload)",
        statistics.n_record_bytes, statistics.n_payload_bytes
    )?;
    writeln!(
        out,
        "segments:     {} in use, {} files holding {} bytes (preallocated)",
        statistics.n_segments, statistics.n_segment_files, statistics.n_segment_file_bytes
    )?;
    writeln!(out, "namespaces:   {}", statistics.records_per_namespace.len())?;
    for (namespace, n_records) in &statistics.records_per_namespace {
        writeln!(out, "  {:<28}  {}", namespace_label(namespace), count(*n_records as usize, "record", "records"))?;
    }
    writeln!(out, "events:       {}", statistics.n_events)?;
    for (kind, n_events) in &statistics.events_per_kind {
        writeln!(out, "  {kind:<28}  {n_events}")?;
    }
    writeln!(
        out,
        "replay:       {} records decoded and folded in {:.3} ms = {:.0} records/s (this run)",
        statistics.n_records,
        statistics.replay_seconds * 1000.0,
        statistics.records_per_second()
    )?;
    Ok(())
}
