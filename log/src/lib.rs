//! berth-log: the append-only, checksummed, hash-chained event log (see docs/log-format.md).
//!
//! One directory holds preallocated, zero-filled segment files. Writers append with `pwrite` and
//! `fdatasync` (group commit: concurrent appenders share one sync); readers look at a read-only
//! memory map and never go past the published durable watermark. Each record carries a CRC32 and
//! a SHA-256 chain hash over its predecessor, so `verify` detects edits, removals, insertions and
//! reorderings. The crate knows nothing about containers: payloads are opaque bytes.

mod anchor;
mod archive;
mod durable;
mod error;
pub mod format;
mod manifest;
mod reader;
mod recovery;
mod salvage;
mod segment;
mod stats;
mod time;
mod verify;
mod view;
mod writer;

use std::fmt;
use std::path::PathBuf;

pub use anchor::{read_anchor, write_anchor, Anchor, ANCHOR_FILE_LEN, ANCHOR_MAGIC};
pub use archive::{ArchiveReport, RetentionPolicy, RetentionReport};
pub use error::{LogError, RecordDecodeError};
pub use format::{decode_record, DecodedRecord, LOCK_FILE};
pub use manifest::{ArchivedSegment, CutPoint, Manifest, MANIFEST_FILE_NAME};
pub use reader::{open_read_only, open_read_only_with, LogReader, ReadOnlyLog};
pub use salvage::{salvage, SalvageReport};
pub use stats::{HistogramSnapshot, LogHistograms, LogStats, BATCH_BOUNDS, LATENCY_BOUNDS_NS};
pub use time::{Timestamp, TimestampParseError};
pub use writer::EventLog;

/// berthd's default root directory; the log lives in `<root>/` [`LOG_DIR_NAME`].
pub const DEFAULT_ROOT: &str = "/var/lib/berth";
/// The log's directory under a berth root.
pub const LOG_DIR_NAME: &str = "log";
/// berthd's anchor file under a berth root: outside the log directory it protects.
pub const ANCHOR_FILE_NAME: &str = "log.anchor";

/// Position of a record in the log: dense from 1; `Seq(0)` means "nothing".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The seq right after this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// Number of a segment file; segment files are named after it (`{id:020}.seg`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct SegmentId(pub u64);

impl fmt::Display for SegmentId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// Whether `append` waits for `fdatasync`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Durability {
    /// `append` returns once the records are on stable storage. What the daemon uses.
    #[default]
    Sync,
    /// No `fdatasync`: for benchmarks and tests only. Records survive a process crash (they are
    /// in the page cache) but are lost on power loss or kernel crash.
    NoSync,
}

/// What `open` does when the bytes after the last good record are not a torn tail.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum RecoveryMode {
    /// Truncate (zero) a torn tail and report it; any other damage fails `open` with
    /// `LogError::Corruption`.
    #[default]
    TruncateTornTail,
    /// Scan every segment; at the first bad record or broken link keep the valid prefix, move
    /// the rest aside (nothing is deleted) and report it in `OpenReport::salvaged`.
    Salvage,
}

/// How to open a log.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Largest segment file (default 64 MiB); must be a multiple of 8, ≥ 4096. Segments start
    /// at `initial_segment_size` and double with each new segment up to this size.
    pub segment_size: u64,
    /// Size of segment 1 (default 1 MiB, clamped to 4096..=`segment_size`); see docs/log-format.md,
    /// "Segment sizes".
    pub initial_segment_size: u64,
    pub durability: Durability,
    pub recovery: RecoveryMode,
    /// A file outside the log directory where the writer keeps the last durable (seq, hash)
    /// (see docs/log-format.md, "Anchor"). When it exists, `open` refuses a log that does not
    /// contain that point; it is created when missing. `None`: no anchor.
    pub anchor: Option<PathBuf>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_size: 64 * 1024 * 1024,
            initial_segment_size: 1024 * 1024,
            durability: Durability::Sync,
            recovery: RecoveryMode::TruncateTornTail,
            anchor: None,
        }
    }
}

/// Bytes that `open` found after the last good record and did not keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    /// Offset in the segment file where the first dropped byte would start a record.
    pub offset: u64,
    /// How many bytes from `offset` to the last non-zero byte were dropped (0 when only the file
    /// length was short).
    pub dropped_bytes: u64,
    pub reason: String,
}

/// What `open` found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    pub last_seq: Seq,
    /// Activated segments (the preallocated spare is not counted).
    pub n_segments: usize,
    pub torn_tail: Option<TornTail>,
    /// Only with `RecoveryMode::Salvage`: every region that was cut off.
    pub salvaged: Vec<TornTail>,
}

/// One record borrowed from a reader's memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub seq: Seq,
    /// When the record was appended (the writer's wall clock).
    pub timestamp: Timestamp,
    pub payload: &'a [u8],
}

impl Record<'_> {
    pub fn to_owned_record(&self) -> OwnedRecord {
        OwnedRecord { seq: self.seq, timestamp: self.timestamp, payload: self.payload.to_vec() }
    }
}

/// One record with its payload copied out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRecord {
    pub seq: Seq,
    pub timestamp: Timestamp,
    pub payload: Vec<u8>,
}

/// Result of a full verification (CRC, seq continuity and hash chain from genesis).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub n_records: u64,
    /// On-disk bytes of the verified records (headers, payloads and padding).
    pub n_bytes: u64,
    pub first_seq: Seq,
    pub last_seq: Seq,
    /// Chain hash of the last record (the genesis hash for an empty log): sign or publish it to
    /// pin the whole history.
    pub head_hash: [u8; 32],
    /// When retention dropped the oldest archived segments: the seq and chain hash at the cut,
    /// from which the rest was verified (see docs/log-format.md, "Retention").
    pub cut: Option<(Seq, [u8; 32])>,
}
