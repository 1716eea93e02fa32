//! Opening a log directory: classify segment files, scan the tail, truncate a torn tail or (in
//! Salvage mode) cut at the first damage, and hand writer and readers their starting state.
//!
//! Rules (also in docs/log-format.md): only the bytes after the last valid record of the last
//! segment may be torn. A bad record or header followed by a valid record is corruption.

use std::fs::{File, OpenOptions};
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::Mmap;

use crate::durable::sync_dir;
use crate::format::{
    decode_record, genesis_hash, parse_segment_file_name, SegmentHeader, SegmentHeaderState, RECORD_ALIGN,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::manifest::Manifest;
use crate::segment::{map_file, nonzero_extent_end, write_zeroes, Segment};
use crate::view::SharedView;
use crate::{LogError, OpenReport, RecordDecodeError, RecoveryMode, SegmentId, Seq, TornTail};

pub(crate) use crate::segment::MIN_SEGMENT_SIZE;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    /// Holds the directory lock: may zero torn tails, extend short files, move salvaged files.
    Writable,
    /// Changes nothing on disk; damage is only reported.
    ReadOnly,
}

/// Starting state for the writer and readers.
pub(crate) struct Recovered {
    /// The live segments in the log directory.
    pub segments: Vec<Arc<Segment>>,
    /// Segments in the archive that the manifest lists (after any cut), oldest first: they come
    /// before `segments`, and are read through the same view.
    pub archived: Vec<Arc<Segment>>,
    /// The archive manifest, when the log has one.
    pub manifest: Option<Manifest>,
    /// A zero-filled file named after `next_segment_id`, ready to be activated.
    pub spare: Option<PathBuf>,
    pub next_segment_id: SegmentId,
    pub last_seq: Seq,
    /// Where the next record goes in the last segment.
    pub write_offset: u64,
    pub last_hash: [u8; 32],
    pub report: OpenReport,
}

impl Recovered {
    /// The view readers use: archived segments, then live ones, from the manifest's base.
    pub fn view(&self, dir: &Path) -> SharedView {
        let segments = self.archived.iter().chain(&self.segments).cloned().collect();
        let base = self.manifest.as_ref().map_or((Seq(0), genesis_hash()), Manifest::base);
        SharedView::new(dir.to_path_buf(), segments, self.last_seq, base)
    }
}

struct Candidate {
    id: SegmentId,
    path: PathBuf,
    map: Option<Mmap>,
}

impl Candidate {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// Where the first damage is: file index, offset in it, and why.
struct Cut {
    file_idx: usize,
    offset: u64,
    reason: String,
}

struct BadSpot {
    offset: usize,
    reason: String,
    /// End of the last non-zero byte at or after `offset`.
    extent_end: usize,
    later_valid_record_at: Option<usize>,
}

struct RecordScan {
    last_seq: u64,
    last_hash: [u8; 32],
    /// Offset right after the last valid record (padding included).
    end_offset: usize,
    bad: Option<BadSpot>,
}

/// Walks the records of one segment from its header, checking CRC and seq continuity.
fn scan_records(bytes: &[u8], header: &SegmentHeader) -> RecordScan {
    let mut offset = SEGMENT_HEADER_LEN;
    let mut next_seq = header.first_seq.0;
    let mut last_hash = header.carried_hash;
    let bad_reason = loop {
        if offset >= bytes.len() {
            break None;
        }
        match decode_record(&bytes[offset..]) {
            Ok(record) if record.seq.0 == next_seq => {
                last_hash = *record.chain_hash;
                next_seq += 1;
                offset += record.encoded_len;
            }
            Ok(record) => break Some(format!("expected seq {next_seq}, found seq {}", record.seq)),
            Err(RecordDecodeError::ZeroHeader) => break None,
            Err(RecordDecodeError::Truncated { .. }) if bytes[offset..].iter().all(|&byte| byte == 0) => break None,
            Err(decode_error) => break Some(decode_error.to_string()),
        }
    };
    let from = offset.min(bytes.len());
    let extent_end = nonzero_extent_end(bytes, from);
    let last_seq = next_seq - 1;
    let later_seqs = (last_seq + 1)..=(last_seq + (extent_end - from) as u64 / RECORD_HEADER_LEN as u64 + 1);
    let bad = match bad_reason {
        Some(reason) => Some(reason),
        None if extent_end > from => Some("zero-filled record header followed by non-zero bytes".to_string()),
        None => None,
    }
    .map(|reason| BadSpot {
        offset,
        reason,
        extent_end,
        later_valid_record_at: find_valid_record(bytes, offset + RECORD_ALIGN, extent_end, later_seqs),
    });
    RecordScan { last_seq, last_hash, end_offset: offset, bad }
}

/// First 8-aligned offset in `[from, to)` holding a CRC-valid record whose seq is in `seqs`.
fn find_valid_record(bytes: &[u8], from: usize, to: usize, seqs: RangeInclusive<u64>) -> Option<usize> {
    let mut position = from.next_multiple_of(RECORD_ALIGN);
    while position < to && position + RECORD_HEADER_LEN <= bytes.len() {
        let seq = u64::from_le_bytes(bytes[position + 40..position + 48].try_into().expect("8-byte slice"));
        if seqs.contains(&seq) && decode_record(&bytes[position..]).is_ok() {
            return Some(position);
        }
        position += RECORD_ALIGN;
    }
    None
}

fn list_segment_files(dir: &Path, access: Access) -> Result<Vec<(SegmentId, PathBuf)>, LogError> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && access == Access::ReadOnly => return Ok(found),
        Err(source) => return Err(LogError::io("listing", dir, source)),
    };
    for entry in entries {
        let entry = entry.map_err(|source| LogError::io("listing", dir, source))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = parse_segment_file_name(name) {
            found.push((id, entry.path()));
        } else if name.ends_with(".seg.tmp") && access == Access::Writable {
            // A spare segment whose zero-fill was interrupted: it never held records.
            tracing::warn!(path = %entry.path().display(), "removing unfinished preallocated segment");
            std::fs::remove_file(entry.path())
                .map_err(|source| LogError::io("removing unfinished segment", entry.path(), source))?;
        }
    }
    found.sort();
    Ok(found)
}

fn open_for_repair(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| LogError::io("opening for repair", path, source))
}

fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_nanos()).unwrap_or(0)
}

/// Opens `dir` and brings it to a state the writer can continue from.
// File indexes address three parallel things (candidates, header states, phases), so index loops
// read better than zipped iterators here.
#[allow(clippy::needless_range_loop)]
pub(crate) fn recover(dir: &Path, mode: RecoveryMode, access: Access) -> Result<Recovered, LogError> {
    let manifest = Manifest::read(dir)?;
    let first_live_id = manifest.as_ref().map_or(SegmentId(1), Manifest::next_segment_id);
    let (boundary_seq, boundary_hash) = manifest.as_ref().map_or((Seq(0), genesis_hash()), Manifest::boundary);
    let archived = match &manifest {
        Some(manifest) => open_archived(manifest)?,
        None => Vec::new(),
    };
    let mut candidates = Vec::new();
    for (id, path) in list_segment_files(dir, access)? {
        if id < first_live_id {
            // Archived (the manifest says so, and its archive file was synced before the
            // manifest entry was): a crash came between the manifest and the removal.
            if access == Access::Writable {
                tracing::info!(path = %path.display(), "removing a segment that was archived before a crash");
                std::fs::remove_file(&path)
                    .map_err(|source| LogError::io("removing an archived segment", &path, source))?;
            }
            continue;
        }
        let file = File::open(&path).map_err(|source| LogError::io("opening segment", &path, source))?;
        let map = map_file(&file, &path)?;
        candidates.push(Candidate { id, path, map });
    }
    let states: Vec<SegmentHeaderState> =
        candidates.iter().map(|candidate| SegmentHeader::decode(candidate.bytes())).collect();
    let valid_header = |idx: usize| match &states[idx] {
        SegmentHeaderState::Valid(header) => *header,
        _ => unreachable!("segment {idx} was classified as valid"),
    };

    // Phase A: the prefix of files with valid, consecutive headers.
    let mut n_valid: usize = 0;
    let mut cut: Option<Cut> = None;
    for (idx, candidate) in candidates.iter().enumerate() {
        let SegmentHeaderState::Valid(header) = &states[idx] else { break };
        let problem = if header.segment_id != candidate.id {
            Some(format!("header says segment {}, file name says {}", header.segment_id, candidate.id))
        } else if idx == 0 && candidate.id != first_live_id && first_live_id == SegmentId(1) {
            Some(format!("segment 1 is missing: the oldest segment file is segment {}", candidate.id))
        } else if idx == 0 && candidate.id != first_live_id {
            Some(format!(
                "segment {first_live_id} is missing: the archive manifest accounts for the segments before it, but the oldest segment file is segment {}",
                candidate.id
            ))
        } else if idx == 0
            && first_live_id == SegmentId(1)
            && (header.first_seq != Seq(1) || header.carried_hash != genesis_hash())
        {
            Some("the oldest segment does not start at seq 1 from the genesis hash".to_string())
        } else if idx == 0 && (header.first_seq.0 != boundary_seq.0 + 1 || header.carried_hash != boundary_hash) {
            Some(format!(
                "the oldest live segment starts at seq {} but the archive manifest says the history before it ends at seq {boundary_seq} (or with another chain hash)",
                header.first_seq
            ))
        } else if idx > 0 && candidate.id.0 != candidates[idx - 1].id.0 + 1 {
            Some(format!("segment {} is missing before this one", candidates[idx - 1].id.0 + 1))
        } else if idx > 0 && header.first_seq < valid_header(idx - 1).first_seq {
            Some(format!(
                "first seq {} does not follow the previous segment's {}",
                header.first_seq,
                valid_header(idx - 1).first_seq
            ))
        } else {
            None
        };
        if let Some(reason) = problem {
            cut = Some(Cut { file_idx: idx, offset: 0, reason });
            break;
        }
        n_valid += 1;
        // berth never shortens a segment (it is zero-filled to full size before it is renamed
        // into place), so a short file was cut by something else: damage, not a torn tail. The
        // records before the cut can still be salvaged, so the segment stays in the prefix.
        let file_len = candidate.bytes().len() as u64;
        if file_len < header.segment_size {
            let reason = format!(
                "segment file is {file_len} bytes, shorter than its preallocated {} bytes: it was truncated by something other than berth (berth never shortens a segment)",
                header.segment_size
            );
            cut = Some(Cut { file_idx: idx, offset: file_len, reason });
            break;
        }
    }

    // Phase B: files after the valid prefix may only be zero-filled spares, plus at most one
    // torn activation (a header that never became durable) as the very last file.
    let mut torn_activation: Option<(usize, usize)> = None; // (file idx, non-zero extent)
    if cut.is_none() {
        let first_spare_id =
            n_valid.checked_sub(1).map_or(first_live_id.0, |last_valid| candidates[last_valid].id.0 + 1);
        for (idx, expected_id) in (n_valid..candidates.len()).zip(first_spare_id..) {
            // Spares are created in id order, so ids stay dense here too; a gap means segment
            // files were deleted (e.g. the active segment, with the spare after it still there).
            if candidates[idx].id.0 != expected_id {
                let reason = format!(
                    "segment {expected_id} is missing: the segment files jump to segment {}; a segment file was deleted",
                    candidates[idx].id
                );
                cut = Some(Cut { file_idx: idx, offset: 0, reason });
                break;
            }
            let bytes = candidates[idx].bytes();
            let extent_end = nonzero_extent_end(bytes, 0);
            let reason = match &states[idx] {
                SegmentHeaderState::Zero if extent_end == 0 => continue,
                SegmentHeaderState::Zero => "zero-filled segment header followed by non-zero bytes".to_string(),
                SegmentHeaderState::Invalid(reason) => reason.clone(),
                SegmentHeaderState::Valid(_) => "segment follows a segment whose header is zero or invalid".to_string(),
            };
            let later_valid = find_valid_record(bytes, SEGMENT_HEADER_LEN, extent_end, 1..=u64::MAX).is_some();
            if idx == candidates.len() - 1 && !later_valid && !matches!(states[idx], SegmentHeaderState::Valid(_)) {
                torn_activation = Some((idx, extent_end));
            } else {
                cut = Some(Cut { file_idx: idx, offset: 0, reason });
                break;
            }
        }
    }

    // Phase C: scan records. Default mode scans the last valid segment only (earlier damage
    // surfaces on read and verify); Salvage scans everything and checks the links between
    // segments too.
    let scan_from = if mode == RecoveryMode::Salvage { 0 } else { n_valid.saturating_sub(1) };
    let mut n_keep = n_valid;
    let mut last_scan: Option<RecordScan> = None;
    for idx in scan_from..n_valid {
        let header = valid_header(idx);
        if let Some(previous) = &last_scan {
            if header.first_seq.0 != previous.last_seq + 1 || header.carried_hash != previous.last_hash {
                let reason = format!(
                    "segment starts at seq {} but the previous segment ends at seq {} (or its chain hash differs)",
                    header.first_seq, previous.last_seq
                );
                cut = Some(Cut { file_idx: idx, offset: 0, reason });
                n_keep = idx;
                break;
            }
        }
        let scan = scan_records(candidates[idx].bytes(), &header);
        let is_last = idx + 1 == n_valid;
        if let Some(bad) = &scan.bad {
            let torn = is_last && bad.later_valid_record_at.is_none() && cut.is_none() && torn_activation.is_none();
            if !torn {
                let mut reason = match bad.later_valid_record_at {
                    Some(valid_at) => format!("{} (followed by a valid record at offset {valid_at})", bad.reason),
                    None => format!("{} (not at the end of the log)", bad.reason),
                };
                if let Some(short_file) = cut.as_ref().filter(|cut| cut.file_idx == idx) {
                    reason = format!("{}; {reason}", short_file.reason);
                }
                cut = Some(Cut { file_idx: idx, offset: bad.offset as u64, reason });
                n_keep = idx + 1;
                last_scan = Some(scan);
                break;
            }
        }
        last_scan = Some(scan);
    }

    if let Some(cut) = &cut {
        if mode == RecoveryMode::TruncateTornTail {
            return Err(LogError::Corruption {
                segment: candidates[cut.file_idx].path.clone(),
                offset: cut.offset,
                reason: cut.reason.clone(),
            });
        }
    }

    let mut torn_tail: Option<TornTail> = None;
    let mut salvaged: Vec<TornTail> = Vec::new();
    let mut zeroed_files: Vec<usize> = Vec::new();

    // The tail of the last kept segment: a salvage cut, a torn tail, or a short file.
    if n_keep > 0 {
        let idx = n_keep - 1;
        let header = valid_header(idx);
        let scan = last_scan.as_ref().expect("the last kept segment was scanned");
        let bytes = candidates[idx].bytes();
        let file_len = bytes.len() as u64;
        let is_cut_here = cut.as_ref().is_some_and(|cut| cut.file_idx == idx && cut.offset > 0);
        let (offset, extent_end, reason) = match &scan.bad {
            Some(bad) => (bad.offset as u64, bad.extent_end as u64, bad.reason.clone()),
            None => (scan.end_offset as u64, scan.end_offset as u64, String::new()),
        };
        let short_file = file_len < header.segment_size;
        if scan.bad.is_some() || short_file {
            let mut reason = reason;
            if short_file {
                if !reason.is_empty() {
                    reason.push_str("; ");
                }
                reason.push_str(&format!(
                    "segment file is {file_len} bytes, shorter than its preallocated {} (truncated)",
                    header.segment_size
                ));
            }
            let dropped = TornTail {
                segment: candidates[idx].path.clone(),
                offset,
                dropped_bytes: extent_end.saturating_sub(offset),
                reason,
            };
            if access == Access::Writable {
                let file = open_for_repair(&candidates[idx].path)?;
                if is_cut_here && extent_end > offset {
                    preserve_salvaged_bytes(
                        &candidates[idx].path,
                        offset,
                        &bytes[offset as usize..extent_end as usize],
                    )?;
                }
                if extent_end > offset {
                    write_zeroes(&file, &candidates[idx].path, offset, extent_end - offset)?;
                }
                if short_file {
                    write_zeroes(&file, &candidates[idx].path, file_len, header.segment_size - file_len)?;
                }
                file.sync_all()
                    .map_err(|source| LogError::io("syncing repaired segment", &candidates[idx].path, source))?;
            }
            if is_cut_here {
                tracing::warn!(segment = %dropped.segment.display(), offset = dropped.offset, dropped_bytes = dropped.dropped_bytes, reason = %dropped.reason, "salvage: cut the log at a damaged record");
                salvaged.push(dropped);
            } else {
                tracing::warn!(segment = %dropped.segment.display(), offset = dropped.offset, dropped_bytes = dropped.dropped_bytes, reason = %dropped.reason, "truncated a torn tail");
                torn_tail = Some(dropped);
            }
        }
    }

    // Whole files after the kept segments.
    if let Some((idx, extent_end)) = torn_activation.filter(|_| cut.is_none()) {
        let dropped = TornTail {
            segment: candidates[idx].path.clone(),
            offset: 0,
            dropped_bytes: extent_end as u64,
            reason: match &states[idx] {
                SegmentHeaderState::Invalid(reason) => format!("{reason} (segment activation never became durable)"),
                _ => "zero-filled segment header followed by non-zero bytes (segment activation never became durable)"
                    .to_string(),
            },
        };
        if access == Access::Writable {
            let file = open_for_repair(&candidates[idx].path)?;
            write_zeroes(&file, &candidates[idx].path, 0, extent_end as u64)?;
            file.sync_all()
                .map_err(|source| LogError::io("syncing repaired segment", &candidates[idx].path, source))?;
        }
        tracing::warn!(segment = %dropped.segment.display(), dropped_bytes = dropped.dropped_bytes, reason = %dropped.reason, "truncated a torn segment activation");
        zeroed_files.push(idx);
        torn_tail = Some(dropped);
    }
    if let Some(cut) = &cut {
        for idx in n_keep..candidates.len() {
            let extent_end = nonzero_extent_end(candidates[idx].bytes(), 0);
            if extent_end == 0 && idx != cut.file_idx {
                continue; // a zero-filled spare holds nothing to salvage
            }
            let reason = if idx == cut.file_idx {
                cut.reason.clone()
            } else {
                format!("follows the damage in {}", candidates[cut.file_idx].path.display())
            };
            let dropped =
                TornTail { segment: candidates[idx].path.clone(), offset: 0, dropped_bytes: extent_end as u64, reason };
            if access == Access::Writable {
                let aside = PathBuf::from(format!("{}.salvaged-{}", candidates[idx].path.display(), unix_nanos()));
                std::fs::rename(&candidates[idx].path, &aside)
                    .map_err(|source| LogError::io("moving a salvaged segment aside to", &aside, source))?;
            }
            tracing::warn!(segment = %dropped.segment.display(), dropped_bytes = dropped.dropped_bytes, reason = %dropped.reason, "salvage: moved a segment aside");
            salvaged.push(dropped);
        }
    }

    // Keep one zero-filled spare named after the next segment id; remove other empty files.
    let next_segment_id = if n_keep > 0 { SegmentId(candidates[n_keep - 1].id.0 + 1) } else { first_live_id };
    let mut spare = None;
    for idx in n_keep..candidates.len() {
        let is_zero = zeroed_files.contains(&idx) || nonzero_extent_end(candidates[idx].bytes(), 0) == 0;
        if !is_zero || !candidates[idx].path.exists() {
            continue;
        }
        if candidates[idx].id == next_segment_id
            && candidates[idx].bytes().len() as u64 >= MIN_SEGMENT_SIZE
            && spare.is_none()
        {
            spare = Some(candidates[idx].path.clone());
        } else if access == Access::Writable {
            std::fs::remove_file(&candidates[idx].path)
                .map_err(|source| LogError::io("removing an unused empty segment", &candidates[idx].path, source))?;
        }
    }
    if access == Access::Writable && (!salvaged.is_empty() || torn_tail.is_some()) {
        sync_dir(dir)?;
    }

    let (last_seq, write_offset, last_hash) = match (n_keep, &last_scan) {
        (0, _) => (boundary_seq.0, SEGMENT_HEADER_LEN as u64, boundary_hash),
        (_, Some(scan)) => (scan.last_seq, scan.end_offset as u64, scan.last_hash),
        (_, None) => unreachable!("a kept segment is always scanned"),
    };
    for candidate in &mut candidates {
        candidate.map = None; // unmap before mapping the repaired files again
    }
    let mut segments = Vec::with_capacity(n_keep);
    for (idx, candidate) in candidates.iter().enumerate().take(n_keep) {
        segments.push(Arc::new(Segment::map(&candidate.path, valid_header(idx))?));
    }
    let report = OpenReport { last_seq: Seq(last_seq), n_segments: segments.len(), torn_tail, salvaged };
    Ok(Recovered {
        segments,
        archived,
        manifest,
        spare,
        next_segment_id,
        last_seq: Seq(last_seq),
        write_offset,
        last_hash,
        report,
    })
}

/// The manifest's archived segments, refused at once when the archive directory or a file in
/// it is missing (their contents are checked when they are read, and by `verify`).
fn open_archived(manifest: &Manifest) -> Result<Vec<Arc<Segment>>, LogError> {
    let mut archived = Vec::with_capacity(manifest.archived.len());
    for entry in &manifest.archived {
        if !entry.dir.is_dir() {
            return Err(LogError::ArchiveMissing {
                path: entry.dir.clone(),
                reason: format!("the archive directory holding segment {} is missing", entry.id),
            });
        }
        let path = entry.path();
        if !path.is_file() {
            return Err(LogError::ArchiveMissing {
                path,
                reason: format!(
                    "archived segment {} (seqs {}..={}) is missing",
                    entry.id, entry.first_seq, entry.last_seq
                ),
            });
        }
        archived.push(Arc::new(Segment::archived(entry)));
    }
    Ok(archived)
}

/// Salvage never deletes bytes it cuts off: they are copied next to the segment first.
fn preserve_salvaged_bytes(segment: &Path, offset: u64, bytes: &[u8]) -> Result<(), LogError> {
    let path = PathBuf::from(format!("{}.salvaged-at-{offset}-{}", segment.display(), unix_nanos()));
    let file = File::create(&path).map_err(|source| LogError::io("creating salvage copy", &path, source))?;
    file.write_all_at(bytes, 0).map_err(|source| LogError::io("writing salvage copy", &path, source))?;
    file.sync_all().map_err(|source| LogError::io("syncing salvage copy", &path, source))
}
