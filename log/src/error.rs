//! The one error enum of berth-log: every variant names what broke and what the caller can do.

use std::path::PathBuf;
use std::sync::Arc;

use crate::Seq;

/// Everything that can go wrong opening, appending to or reading the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A system call on a log file failed.
    #[error(
        "i/o error while {action} {path}: {source}; check the disk, free space and permissions, then reopen the log"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Bytes on disk are not a valid record or segment header, and they are not a torn tail.
    #[error("corruption in {segment} at offset {offset}: {reason}; keep the records before it with `berthd --salvage` (the damaged log is moved aside), or restore the log from a trusted copy")]
    Corruption { segment: PathBuf, offset: u64, reason: String },

    /// A record is intact (its CRC matches) but does not follow its predecessor: wrong seq or
    /// wrong chain hash. Something edited, removed, inserted or reordered records.
    #[error("hash chain broken at seq {seq} in {segment} at offset {offset}: {reason}; the log was changed outside berth: restore it from a trusted copy, or keep the records before seq {seq} with `berthd --salvage` (the damaged log is moved aside)")]
    ChainBroken { seq: Seq, segment: PathBuf, offset: u64, reason: String },

    /// The anchor file (the last durable point, kept outside the segments) names a point the
    /// log does not contain: records at or before it were removed or rewritten.
    #[error("the log does not contain the last durable point recorded in its anchor {anchor} (seq {anchor_seq}): {reason}; records were removed or rewritten outside berth: restore the log from a trusted copy, or accept the log as it is with `berthd --salvage` (which also resets the anchor)")]
    AnchorMismatch { anchor: PathBuf, anchor_seq: Seq, reason: String },

    /// Another process (or another `EventLog` in this one) holds the directory's LOCK file.
    #[error("log directory {dir} is locked by another writer; stop the other berth daemon, or use open_read_only to inspect it")]
    Locked { dir: PathBuf },

    /// An earlier write or fdatasync failed. The writer does not retry (the kernel may have
    /// dropped the dirty pages), so every append after that fails with this error.
    #[error("log writer is poisoned since {failed_action} failed ({cause}); appends after seq {last_durable} may or may not be on disk, restart the daemon so the log is reopened and recovered")]
    Poisoned {
        failed_action: String,
        last_durable: Seq,
        #[source]
        cause: Arc<std::io::Error>,
    },

    /// A reader was asked for a seq that the log no longer (or never) holds.
    #[error("seq {requested} is not in the log (first available seq is {first_available}); read from a later seq")]
    SeqNotFound { requested: Seq, first_available: Seq },

    /// The next segment could not be prepared (preallocated and synced) because the file
    /// system holding the log is full, or refused for another reason before any record byte was
    /// written. Nothing was appended and the writer is not poisoned: retry once there is room.
    #[error("no room for the next log segment in {dir} ({source}); nothing was written: free space on that file system (or give the log one of its own), then retry")]
    NoSpace {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The archive manifest lists a segment whose file (or whose whole archive directory) is
    /// not there: the log cannot be read from its start.
    #[error("{reason} ({path}); mount or restore the archive directory (berth never deletes an archived segment except by the retention policy, which records a cut in the manifest)")]
    ArchiveMissing { path: PathBuf, reason: String },

    /// A payload does not fit into one segment.
    #[error("payload of {len} bytes is larger than the {max} bytes one segment can hold; split the payload or raise LogOptions::segment_size")]
    TooLarge { len: u64, max: u64 },

    /// `LogOptions` that cannot work.
    #[error("invalid log options: {reason}")]
    InvalidOptions { reason: String },

    /// `append_batch` got an empty slice, so there is no first seq to return.
    #[error("append_batch was called with no payloads; pass at least one payload")]
    EmptyBatch,
}

impl LogError {
    /// Whether this error says the bytes on disk are damaged or altered (as opposed to an i/o
    /// failure, a lock, or a caller's mistake): the log must not be served as it is.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            LogError::Corruption { .. }
                | LogError::ChainBroken { .. }
                | LogError::AnchorMismatch { .. }
                | LogError::ArchiveMissing { .. }
        )
    }

    /// Where and what the damage is, without advice (callers that know the operator's
    /// commands add their own); other errors as displayed.
    pub fn damage_description(&self) -> String {
        match self {
            LogError::Corruption { segment, offset, reason } => {
                format!("corruption in {} at offset {offset}: {reason}", segment.display())
            }
            LogError::ChainBroken { seq, segment, offset, reason } => {
                format!("hash chain broken at seq {seq} in {} at offset {offset}: {reason}", segment.display())
            }
            LogError::AnchorMismatch { anchor, anchor_seq, reason } => format!(
                "the log does not contain seq {anchor_seq} as recorded in its anchor {}: {reason}",
                anchor.display()
            ),
            other => other.to_string(),
        }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> LogError {
        LogError::Io { action, path: path.into(), source }
    }
}

/// Why [`crate::decode_record`] rejected a byte slice. Kept apart from [`LogError`] because the
/// decoder knows neither file nor offset; callers wrap it into `LogError::Corruption`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordDecodeError {
    /// Fewer bytes than a record header (or than the header's payload length) are left.
    #[error("record needs {needed} bytes but only {available} remain")]
    Truncated { needed: u64, available: u64 },
    /// The 56 header bytes are all zero: preallocated space, the end of the written data.
    #[error("zero-filled record header (end of written data)")]
    ZeroHeader,
    /// The seq field is 0, which no record ever has.
    #[error("record seq is 0")]
    ZeroSeq,
    /// The stored CRC does not match the bytes.
    #[error("record crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
}
