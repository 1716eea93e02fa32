//! Archiving and retention: finished segments wholly at or below a bound are compressed (zstd)
//! into an archive directory and removed from the log directory; a retention policy may later
//! drop the oldest archived segments, recording the cut in the manifest (manifest.rs). Readers
//! and `verify` keep reading through archived segments (segment.rs decompresses them).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::durable::{sync_dir, write_synced};
use crate::format::chain_hash;
use crate::manifest::{archive_dir_entry, archived_entry, cut_entry, ArchivedSegment, CutPoint, Manifest};
use crate::segment::Segment;
use crate::view::SharedView;
use crate::{EventLog, LogError, SegmentId, Seq, Timestamp};

/// zstd level for archived segments: records are msgpack with repeated keys; level 3 is the
/// library's default speed/ratio point.
const ZSTD_LEVEL: i32 = 3;

/// What `EventLog::archive` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    /// Segments moved to the archive by this call, oldest first.
    pub archived: Vec<ArchivedSegment>,
    /// Bytes of segment files removed from the log directory.
    pub live_bytes_freed: u64,
}

/// When archived segments may be dropped for good. Either limit, or both; `None` keeps all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Drop an archived segment once its newest record is older than this.
    pub max_age: Option<Duration>,
    /// Drop the oldest archived segments while the archive's files total more than this.
    pub max_bytes: Option<u64>,
}

/// What `EventLog::apply_retention` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// The new cut, when anything was dropped.
    pub cut: Option<CutPoint>,
    pub dropped: Vec<SegmentId>,
    pub bytes_dropped: u64,
}

impl EventLog {
    /// Moves every finished segment whose last seq is at most `through` (oldest first, stopping
    /// at the first that is not) into `archive_dir`: compressed copy written, synced and read
    /// back, manifest entry synced, and only then the live file removed. The active segment is
    /// never archived. On any failure (a full archive file system, say) the segment stays in
    /// the log directory and nothing recorded is lost; the error says what failed.
    pub fn archive(&self, through: Seq, archive_dir: &Path) -> Result<ArchiveReport, LogError> {
        let _one_archiver = self.archive_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        archive_view(&self.view, through, archive_dir)
    }

    /// Drops the oldest archived segments that `policy` no longer keeps, but only segments
    /// whose last seq is at most `through` (what a checkpoint covers, so that berthd can still
    /// start without them): the cut (segment id, seq and chain hash at the end of the last
    /// dropped segment) is recorded in the manifest first, then the files are deleted. `now` is
    /// compared with records' timestamps.
    pub fn apply_retention(
        &self,
        policy: &RetentionPolicy,
        now: Timestamp,
        through: Seq,
    ) -> Result<RetentionReport, LogError> {
        let _one_archiver = self.archive_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        apply_retention_to_view(&self.view, policy, now, through)
    }

    /// The archive manifest as it is on disk (`None`: nothing was ever archived).
    pub fn archive_manifest(&self) -> Result<Option<Manifest>, LogError> {
        Manifest::read(&self.view.dir)
    }
}

fn archive_view(view: &SharedView, through: Seq, archive_dir: &Path) -> Result<ArchiveReport, LogError> {
    let log_dir = view.dir.clone();
    if archive_dir == log_dir {
        return Err(LogError::InvalidOptions {
            reason: "the archive directory must not be the log directory; choose another directory".to_string(),
        });
    }
    let mut manifest = Manifest::read(&log_dir)?.unwrap_or_else(Manifest::empty);
    let durable_seq = view.durable_seq();
    let segments = view.segments();
    let mut report = ArchiveReport::default();
    for (segment_idx, segment) in segments.iter().enumerate() {
        if segment.is_archived() {
            continue;
        }
        // Only finished segments: the next one exists, and everything before it is durable.
        let Some(next_segment) = segments.get(segment_idx + 1) else { break };
        let last_seq = next_segment.header.first_seq.0 - 1;
        if last_seq > through.0 || last_seq > durable_seq || last_seq < segment.header.first_seq.0 {
            break;
        }
        if manifest.archive_dir.as_deref() != Some(archive_dir) {
            create_archive_dir(archive_dir)?;
            manifest.append(&log_dir, archive_dir_entry(archive_dir)?)?;
        }
        let entry = write_archived_copy(segment, Seq(last_seq), durable_seq, archive_dir)?;
        manifest.append(&log_dir, archived_entry(&entry))?;
        let archived_segment = Arc::new(Segment::archived(&entry));
        view.replace_segments(
            |current| {
                current
                    .iter()
                    .map(|other| if Arc::ptr_eq(other, segment) { archived_segment.clone() } else { other.clone() })
                    .collect()
            },
            None,
        );
        std::fs::remove_file(&segment.path)
            .map_err(|source| LogError::io("removing archived segment", &segment.path, source))?;
        sync_dir(&log_dir)?;
        tracing::info!(segment = %entry.id, first_seq = %entry.first_seq, last_seq = %entry.last_seq, archive = %entry.path().display(), "archived a log segment");
        report.live_bytes_freed += segment.len();
        report.archived.push(entry);
    }
    Ok(report)
}

/// The archive directory, created root-only when missing; an existing one must be a directory.
fn create_archive_dir(archive_dir: &Path) -> Result<(), LogError> {
    if archive_dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(archive_dir)
        .and_then(|()| std::fs::set_permissions(archive_dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|source| LogError::io("creating archive directory", archive_dir, source))?;
    if let Some(parent) = archive_dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Checks the segment's records (CRC, seq, chain), then writes its header and records (not the
/// zero tail) compressed to `ID.seg.zst.tmp`, syncs, reads it back, renames it into place and
/// syncs the directory. Returns the manifest entry for it.
fn write_archived_copy(
    segment: &Segment,
    last_seq: Seq,
    durable_seq: u64,
    archive_dir: &Path,
) -> Result<ArchivedSegment, LogError> {
    let mut offset = crate::format::SEGMENT_HEADER_LEN as u64;
    let mut previous_hash = segment.header.carried_hash;
    let mut last_record_ns = 0;
    for seq in segment.header.first_seq.0..=last_seq.0 {
        let record = segment.expect_record(offset, Seq(seq))?;
        if chain_hash(&previous_hash, record.hashed_bytes) != *record.chain_hash {
            return Err(LogError::ChainBroken {
                seq: Seq(seq),
                segment: segment.path.clone(),
                offset,
                reason: "stored chain hash differs from SHA-256 of the previous chain hash and this record; not archiving a damaged segment".to_string(),
            });
        }
        previous_hash = *record.chain_hash;
        last_record_ns = record.timestamp_ns;
        offset += record.encoded_len as u64;
    }
    debug_assert!(last_seq.0 <= durable_seq);
    let data = segment.bytes(0, offset);
    let compressed = zstd::bulk::compress(data, ZSTD_LEVEL)
        .map_err(|source| LogError::io("compressing segment", &segment.path, source))?;
    let entry = ArchivedSegment {
        dir: archive_dir.to_path_buf(),
        id: segment.header.segment_id,
        first_seq: segment.header.first_seq,
        last_seq,
        carried_hash: segment.header.carried_hash,
        last_hash: previous_hash,
        last_record_ns,
        data_len: offset,
        file_len: compressed.len() as u64,
        file_sha256: Sha256::digest(&compressed).into(),
    };
    let final_path = entry.path();
    let temporary = archive_dir.join(format!("{}.tmp", ArchivedSegment::file_name(entry.id)));
    let written =
        write_synced(&temporary, &compressed).and_then(|()| read_back(&temporary, &compressed, data)).and_then(|()| {
            std::fs::rename(&temporary, &final_path)
                .map_err(|source| LogError::io("renaming archived segment into place at", &final_path, source))
        });
    if let Err(error) = written {
        // The live segment is untouched; a partial copy would only hold space.
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    sync_dir(archive_dir)?;
    Ok(entry)
}

/// The file must read back as written and decompress to the segment's bytes.
fn read_back(path: &Path, compressed: &[u8], data: &[u8]) -> Result<(), LogError> {
    let stored = std::fs::read(path).map_err(|source| LogError::io("reading back archived segment", path, source))?;
    let matches = stored == compressed
        && zstd::bulk::decompress(&stored, data.len()).is_ok_and(|decompressed| decompressed == data);
    if matches {
        Ok(())
    } else {
        Err(LogError::io(
            "reading back archived segment",
            path,
            std::io::Error::other("the archived copy does not read back as written"),
        ))
    }
}

fn apply_retention_to_view(
    view: &SharedView,
    policy: &RetentionPolicy,
    now: Timestamp,
    through: Seq,
) -> Result<RetentionReport, LogError> {
    let log_dir = view.dir.clone();
    let Some(mut manifest) = Manifest::read(&log_dir)? else { return Ok(RetentionReport::default()) };
    let mut remaining_bytes: u64 = manifest.archived.iter().map(|entry| entry.file_len).sum();
    let mut n_drop = 0;
    let mut reason = "";
    for entry in &manifest.archived {
        let too_old = policy
            .max_age
            .is_some_and(|max_age| entry.last_record_ns.saturating_add(max_age.as_nanos() as u64) < now.as_ns());
        let too_big = policy.max_bytes.is_some_and(|max_bytes| remaining_bytes > max_bytes);
        if (!too_old && !too_big) || entry.last_seq > through {
            break;
        }
        reason = if too_old { "max-age" } else { "max-bytes" };
        n_drop += 1;
        remaining_bytes -= entry.file_len;
    }
    if n_drop == 0 {
        return Ok(RetentionReport::default());
    }
    let dropped: Vec<ArchivedSegment> = manifest.archived[..n_drop].to_vec();
    let last = dropped.last().expect("n_drop > 0");
    let cut = CutPoint { id: last.id, seq: last.last_seq, hash: last.last_hash };
    manifest.append(&log_dir, cut_entry(&cut, now.as_ns() / 1_000_000_000, reason))?;
    view.replace_segments(
        |current| {
            current
                .iter()
                .filter(|segment| !(segment.is_archived() && segment.header.segment_id <= cut.id))
                .cloned()
                .collect()
        },
        Some((cut.seq, cut.hash)),
    );
    let mut report = RetentionReport { cut: Some(cut), dropped: Vec::new(), bytes_dropped: 0 };
    for entry in &dropped {
        match std::fs::remove_file(entry.path()) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(LogError::io("removing a dropped archived segment", entry.path(), source)),
        }
        report.dropped.push(entry.id);
        report.bytes_dropped += entry.file_len;
    }
    for dir in dropped.iter().map(|entry| entry.dir.clone()).collect::<std::collections::BTreeSet<_>>() {
        sync_dir(&dir)?;
    }
    tracing::info!(cut_seq = %cut.seq, cut_segment = %cut.id, n_dropped = report.dropped.len(), reason, "retention dropped archived log segments");
    Ok(report)
}
