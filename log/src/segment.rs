//! One segment file: its read-only memory map, its header, a lazily built sparse seq index, and
//! creation of preallocated zero-filled files.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use memmap2::{Mmap, MmapOptions};
use sha2::{Digest, Sha256};

use crate::durable::sync_dir;
use crate::format::{
    decode_record, segment_file_name, DecodedRecord, SegmentHeader, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::manifest::ArchivedSegment;
use crate::{LogError, LogOptions, RecordDecodeError, SegmentId, Seq};

/// Smallest segment the log will write into (and smallest spare it keeps).
pub(crate) const MIN_SEGMENT_SIZE: u64 = 4096;

/// One index entry is kept for every this many records of a segment.
pub(crate) const INDEX_STRIDE: u64 = 64;

/// A mapped, activated segment. Shared (behind `Arc`) by the writer and all readers.
pub(crate) struct Segment {
    pub path: PathBuf,
    pub header: SegmentHeader,
    backing: Backing,
    index: Mutex<SparseIndex>,
}

enum Backing {
    /// A live segment file. The map covers the whole preallocated file. Accessed only through
    /// `bytes`, never as one slice, because the writer keeps `pwrite`-ing beyond the durable
    /// watermark.
    Mapped(Option<Mmap>),
    /// A compressed segment in the archive, decompressed into memory on first access.
    Archived { entry: Box<ArchivedSegment>, bytes: OnceLock<Result<Vec<u8>, String>> },
}

/// Offsets of every `INDEX_STRIDE`-th record, filled in as records are walked.
struct SparseIndex {
    /// `(seq, offset)` pairs, ascending; the first is `(first_seq, SEGMENT_HEADER_LEN)`.
    entries: Vec<(u64, u64)>,
    /// Records below this seq have been walked (and their stride entries recorded).
    walked_next_seq: u64,
    walked_next_offset: u64,
}

impl Segment {
    /// Maps `path` read-only. The caller has already validated `header`.
    pub fn map(path: &Path, header: SegmentHeader) -> Result<Segment, LogError> {
        let file = File::open(path).map_err(|source| LogError::io("opening segment", path, source))?;
        let map = map_file(&file, path)?;
        Ok(Segment::with_backing(path.to_path_buf(), header, Backing::Mapped(map)))
    }

    /// A segment read from its compressed copy in the archive. Nothing is read until a record
    /// is: the manifest entry gives its header fields and length.
    pub fn archived(entry: &ArchivedSegment) -> Segment {
        let header = SegmentHeader {
            segment_id: entry.id,
            first_seq: entry.first_seq,
            segment_size: entry.data_len,
            carried_hash: entry.carried_hash,
        };
        let backing = Backing::Archived { entry: Box::new(entry.clone()), bytes: OnceLock::new() };
        Segment::with_backing(entry.path(), header, backing)
    }

    fn with_backing(path: PathBuf, header: SegmentHeader, backing: Backing) -> Segment {
        Segment {
            path,
            header,
            backing,
            index: Mutex::new(SparseIndex {
                entries: vec![(header.first_seq.0, SEGMENT_HEADER_LEN as u64)],
                walked_next_seq: header.first_seq.0,
                walked_next_offset: SEGMENT_HEADER_LEN as u64,
            }),
        }
    }

    pub fn is_archived(&self) -> bool {
        matches!(self.backing, Backing::Archived { .. })
    }

    pub fn len(&self) -> u64 {
        match &self.backing {
            Backing::Mapped(map) => map.as_ref().map_or(0, |map| map.len() as u64),
            Backing::Archived { entry, .. } => entry.data_len,
        }
    }

    /// For an archived segment: decompresses it if not done yet and says what is wrong with
    /// the archived file (missing, altered, not the segment the manifest names).
    pub fn check_archived(&self) -> Result<(), LogError> {
        match &self.backing {
            Backing::Mapped(_) => Ok(()),
            Backing::Archived { entry, bytes } => match bytes.get_or_init(|| load_archived(entry)) {
                Ok(_) => Ok(()),
                Err(reason) => Err(self.corruption(0, reason.clone())),
            },
        }
    }

    /// Drops this process's page-table entries for the map (the pages stay in the page cache),
    /// so a reader streaming through a large log keeps a flat RSS.
    pub fn release_pages(&self) {
        if let Backing::Mapped(Some(map)) = &self.backing {
            // SAFETY: MADV_DONTNEED on a shared, read-only file mapping only discards page-table
            // entries; the next access faults the same file bytes back in from the page cache.
            // There are no private copy-on-write changes to lose because the map is never
            // written through, so slices other readers hold stay valid.
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }

    /// Bytes `[start, end)` of the segment, clamped to its length.
    ///
    /// For a live segment the slice comes from the map. The log's callers only ask for bytes
    /// of records at or below the published durable watermark (or, during recovery, while
    /// holding the directory lock), and those bytes are never written again: records are
    /// append-only, the files are never truncated (so no SIGBUS), and recovery zeroes only
    /// bytes past the last valid record before any reader exists. A read-only forensic opener
    /// in another process may see a record the daemon is still writing; it then fails the CRC
    /// check and is reported as a torn tail, which is the documented behaviour of
    /// open_read_only. An archived segment's bytes are a buffer that never changes.
    pub fn bytes(&self, start: u64, end: u64) -> &[u8] {
        match &self.backing {
            Backing::Mapped(None) => &[],
            Backing::Mapped(Some(map)) => {
                let end = end.min(map.len() as u64) as usize;
                let start = (start as usize).min(end);
                // SAFETY: the range lies inside the live mapping (clamped above), the map lives
                // as long as `self`, and only stable ranges are asked for (see above). The map
                // is never turned into one slice as a whole, since the writer keeps writing
                // past the watermark.
                unsafe { std::slice::from_raw_parts(map.as_ptr().add(start), end - start) }
            }
            Backing::Archived { entry, bytes } => {
                let all: &[u8] = match bytes.get_or_init(|| load_archived(entry)) {
                    Ok(bytes) => bytes,
                    Err(_) => &[],
                };
                let end = end.min(all.len() as u64) as usize;
                &all[(start as usize).min(end)..end]
            }
        }
    }

    /// The bytes of the record starting at `offset`: its header, and the payload when the header
    /// is readable. Shorter than a record when the file ends first.
    pub fn record_bytes_at(&self, offset: u64) -> &[u8] {
        let header_end = offset + RECORD_HEADER_LEN as u64;
        let header = self.bytes(offset, header_end);
        if header.len() < RECORD_HEADER_LEN {
            return header;
        }
        let payload_len = u32::from_le_bytes(header[36..40].try_into().expect("4-byte slice")) as u64;
        self.bytes(offset, header_end + payload_len)
    }

    /// Decodes the record at `offset`, or says why there is none.
    pub fn decode_at(&self, offset: u64) -> Result<DecodedRecord<'_>, RecordDecodeError> {
        decode_record(self.record_bytes_at(offset))
    }

    pub fn corruption(&self, offset: u64, reason: impl Into<String>) -> LogError {
        LogError::Corruption { segment: self.path.clone(), offset, reason: reason.into() }
    }

    /// Offset of record `seq` (which must be in this segment and `<= durable_seq`), via the
    /// sparse index: at most `INDEX_STRIDE` records are walked past what was walked before.
    pub fn locate(&self, seq: u64, durable_seq: u64) -> Result<u64, LogError> {
        debug_assert!(seq >= self.header.first_seq.0 && seq <= durable_seq);
        let mut index = self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Extend the walk (and the index) up to `seq`.
        while index.walked_next_seq <= seq {
            let (current_seq, offset) = (index.walked_next_seq, index.walked_next_offset);
            let record = self.expect_record(offset, Seq(current_seq))?;
            if current_seq != self.header.first_seq.0
                && (current_seq - self.header.first_seq.0).is_multiple_of(INDEX_STRIDE)
            {
                index.entries.push((current_seq, offset));
            }
            index.walked_next_seq = current_seq + 1;
            index.walked_next_offset = offset + record.encoded_len as u64;
        }
        let entry_idx = index.entries.partition_point(|&(entry_seq, _)| entry_seq <= seq) - 1;
        let (mut current_seq, mut offset) = index.entries[entry_idx];
        drop(index);
        while current_seq < seq {
            let record = self.expect_record(offset, Seq(current_seq))?;
            offset += record.encoded_len as u64;
            current_seq += 1;
        }
        Ok(offset)
    }

    /// Decodes the record at `offset` and checks that it is `expected_seq`.
    pub fn expect_record(&self, offset: u64, expected_seq: Seq) -> Result<DecodedRecord<'_>, LogError> {
        match self.decode_at(offset) {
            Ok(record) if record.seq == expected_seq => Ok(record),
            Ok(record) => Err(LogError::ChainBroken {
                seq: expected_seq,
                segment: self.path.clone(),
                offset,
                reason: format!("expected seq {expected_seq}, found seq {}", record.seq),
            }),
            Err(RecordDecodeError::ZeroHeader) => {
                Err(self.corruption(offset, format!("segment data ends before durable seq {expected_seq}")))
            }
            Err(decode_error) => Err(self.corruption(offset, decode_error.to_string())),
        }
    }
}

/// Reads, checks and decompresses an archived segment: the file must have the length and
/// SHA-256 the manifest recorded, decompress to exactly `data_len` bytes, and start with the
/// header of the segment the manifest names.
fn load_archived(entry: &ArchivedSegment) -> Result<Vec<u8>, String> {
    let path = entry.path();
    let compressed = std::fs::read(&path).map_err(|error| {
        format!("cannot read archived segment {}: {error}; restore it from a backup of the archive", path.display())
    })?;
    if compressed.len() as u64 != entry.file_len || <[u8; 32]>::from(Sha256::digest(&compressed)) != entry.file_sha256 {
        return Err(format!(
            "archived segment file is {} bytes with another SHA-256 than the manifest records ({} bytes): it was altered or replaced",
            compressed.len(),
            entry.file_len
        ));
    }
    let bytes = zstd::bulk::decompress(&compressed, entry.data_len as usize)
        .map_err(|error| format!("archived segment does not decompress: {error}"))?;
    if bytes.len() as u64 != entry.data_len {
        return Err(format!(
            "archived segment decompresses to {} bytes, the manifest says {}",
            bytes.len(),
            entry.data_len
        ));
    }
    match SegmentHeader::decode(&bytes) {
        crate::format::SegmentHeaderState::Valid(header)
            if header.segment_id == entry.id
                && header.first_seq == entry.first_seq
                && header.carried_hash == entry.carried_hash => {}
        _ => return Err("archived segment's header is not the one the manifest names".to_string()),
    }
    Ok(bytes)
}

/// Sizes of new segments: the first is `initial`, each next one twice the one before, up to
/// `max` (so an idle log takes little disk and a busy one few rollovers); a segment that must
/// hold a larger record is made large enough for it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegmentSizes {
    initial: u64,
    pub max: u64,
}

impl SegmentSizes {
    pub fn new(options: &LogOptions) -> SegmentSizes {
        let initial = options.initial_segment_size.clamp(MIN_SEGMENT_SIZE, options.segment_size);
        SegmentSizes { initial: initial.next_multiple_of(8).min(options.segment_size), max: options.segment_size }
    }

    /// Size of segment `id` when its first record needs `required` bytes (header included).
    pub fn for_segment(&self, id: SegmentId, required: u64) -> u64 {
        let doublings = id.0.saturating_sub(1).min(63) as u32;
        let geometric = self.initial.checked_mul(1u64 << doublings).unwrap_or(self.max).min(self.max);
        geometric.max(required.next_multiple_of(MIN_SEGMENT_SIZE).min(self.max))
    }
}

pub(crate) fn map_file(file: &File, path: &Path) -> Result<Option<Mmap>, LogError> {
    let len = file.metadata().map_err(|source| LogError::io("reading metadata of", path, source))?.len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the mapping is read-only (shared with the file: the writer's pwrites become
    // visible through it, which is how readers see new records); berth never
    // truncates a segment file (it only ever writes zeroes or extends), so pages inside the
    // mapped length stay backed and reads cannot SIGBUS. Bytes are only turned into slices in
    // `Segment::bytes`, which documents which ranges are stable.
    let map = unsafe { MmapOptions::new().len(len as usize).map(file) }
        .map_err(|source| LogError::io("memory-mapping", path, source))?;
    Ok(Some(map))
}

/// Writes `len` zero bytes at `offset` (explicitly, so the blocks are allocated and a later
/// `fdatasync` has no metadata to write).
pub(crate) fn write_zeroes(file: &File, path: &Path, offset: u64, len: u64) -> Result<(), LogError> {
    const CHUNK: u64 = 1 << 20;
    let zeroes = vec![0u8; CHUNK.min(len.max(1)) as usize];
    let mut written = 0u64;
    while written < len {
        let n_bytes = (len - written).min(CHUNK);
        file.write_all_at(&zeroes[..n_bytes as usize], offset + written)
            .map_err(|source| LogError::io("writing zeroes to", path, source))?;
        written += n_bytes;
    }
    Ok(())
}

/// Creates segment `id` as a fully written, synced, zero-filled file of `size` bytes: written to
/// `NAME.seg.tmp`, synced, renamed, directory synced. A crash leaves either no `.seg` file or a
/// complete one; stale `.tmp` files are removed by the next `open`. When it fails (a full file
/// system, typically) the `.tmp` is removed at once: left behind, it would keep the very space
/// whose lack made it fail.
pub(crate) fn create_preallocated_segment(dir: &Path, id: SegmentId, size: u64) -> Result<PathBuf, LogError> {
    let final_path = dir.join(segment_file_name(id));
    let temporary_path = dir.join(format!("{}.tmp", segment_file_name(id)));
    let created = fill_temporary_segment(&temporary_path, size).and_then(|()| {
        std::fs::rename(&temporary_path, &final_path)
            .map_err(|source| LogError::io("renaming new segment into place at", &final_path, source))
    });
    if let Err(error) = created {
        // Best effort: the error that matters is the one above.
        let _ = std::fs::remove_file(&temporary_path);
        return Err(error);
    }
    sync_dir(dir)?;
    Ok(final_path)
}

/// Writes `size` zero bytes to a new `path` and syncs it. Space is reserved first with
/// `fallocate`, so a file system without room fails here at once, not after filling itself up.
fn fill_temporary_segment(path: &Path, size: u64) -> Result<(), LogError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        // Records hold containers' environments, secrets included: root's alone, from creation.
        .mode(0o600)
        .open(path)
        .map_err(|source| LogError::io("creating segment", path, source))?;
    // SAFETY: fallocate is called on a valid descriptor owned by `file`, which outlives the
    // call; it touches no memory of ours.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        // File systems without fallocate still get the zero-fill below, which is what matters.
        if error.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(LogError::io("reserving space for segment", path, error));
        }
    }
    write_zeroes(&file, path, 0, size)?;
    file.sync_all().map_err(|source| LogError::io("syncing new segment", path, source))
}

/// End (exclusive) of the last non-zero byte in `bytes[from..]`, or `from` when all are zero.
pub(crate) fn nonzero_extent_end(bytes: &[u8], from: usize) -> usize {
    let tail = &bytes[from.min(bytes.len())..];
    const CHUNK: usize = 4096;
    let mut end = tail.len();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &tail[start..end];
        // The OR is the fast test; the position is searched again, and a byte that turned back
        // to zero in between (a mapping another process writes) just moves the search on.
        if chunk.iter().fold(0u8, |acc, &byte| acc | byte) != 0 {
            if let Some(last_nonzero) = chunk.iter().rposition(|&byte| byte != 0) {
                return from + start + last_nonzero + 1;
            }
        }
        end = start;
    }
    from
}
