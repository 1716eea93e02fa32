//! The anchor: the last durable (seq, chain hash) kept in a small file outside the segments it
//! protects, so that a log cut short from the end (last segment and spare deleted together,
//! records zeroed at the tail) is refused at open instead of being taken for a shorter log.
//!
//! Why no fsync per write: the anchor is rewritten after each group commit with one `pwrite`
//! into the page cache and no `fdatasync` of its own, so the append path keeps one sync per
//! batch. A process crash loses nothing (the page cache survives it); a power loss or kernel
//! crash can leave the anchor behind the log, never ahead of it (it is only written after the
//! records it names are durable), and "behind" is accepted. It is synced when it is created and
//! when the log is closed. Two slots in separate sectors are written in turn, each with its own
//! CRC, so a write torn by a power loss spoils at most the slot being written.
//! Byte layout: docs/log-format.md, "Anchor".

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::durable::sync_dir;
use crate::format::genesis_hash;
use crate::{LogError, Seq};

/// `BERTHANC`: the first 8 bytes of each valid slot.
pub const ANCHOR_MAGIC: [u8; 8] = *b"BERTHANC";
const ANCHOR_VERSION: u32 = 1;
/// Bytes of one slot that carry data (the rest of its sector is zero).
const SLOT_LEN: usize = 64;
/// Slot `n` starts at `n * SLOT_STRIDE`: one 512-byte sector each.
const SLOT_STRIDE: u64 = 512;
/// The whole file: two slots.
pub const ANCHOR_FILE_LEN: u64 = 2 * SLOT_STRIDE;

/// A point of the log: record `seq` has chain hash `hash` (seq 0 is the empty log, with the
/// genesis hash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub seq: Seq,
    pub hash: [u8; 32],
}

impl Anchor {
    pub fn genesis() -> Anchor {
        Anchor { seq: Seq(0), hash: genesis_hash() }
    }

    fn encode_slot(&self) -> [u8; SLOT_LEN] {
        let mut slot = [0u8; SLOT_LEN];
        slot[0..8].copy_from_slice(&ANCHOR_MAGIC);
        slot[8..12].copy_from_slice(&ANCHOR_VERSION.to_le_bytes());
        slot[16..24].copy_from_slice(&self.seq.0.to_le_bytes());
        slot[24..56].copy_from_slice(&self.hash);
        let crc = crc32fast::hash(&slot[0..56]);
        slot[56..60].copy_from_slice(&crc.to_le_bytes());
        slot
    }

    fn decode_slot(slot: &[u8]) -> Option<Anchor> {
        if slot.len() < SLOT_LEN || slot[0..8] != ANCHOR_MAGIC {
            return None;
        }
        let version = u32::from_le_bytes(slot[8..12].try_into().expect("4-byte slice"));
        let stored_crc = u32::from_le_bytes(slot[56..60].try_into().expect("4-byte slice"));
        if version != ANCHOR_VERSION || stored_crc != crc32fast::hash(&slot[0..56]) {
            return None;
        }
        let seq = Seq(u64::from_le_bytes(slot[16..24].try_into().expect("8-byte slice")));
        Some(Anchor { seq, hash: slot[24..56].try_into().expect("32-byte slice") })
    }
}

/// Reads the anchor at `path`: `None` when the file does not exist; the valid slot with the
/// higher seq otherwise. A file with no valid slot was not written by berth (a torn write spoils
/// one slot at most), so it is reported as an anchor mismatch.
pub fn read_anchor(path: &Path) -> Result<Option<Anchor>, LogError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LogError::io("reading the anchor", path, source)),
    };
    let slot_at = |idx: u64| bytes.get((idx * SLOT_STRIDE) as usize..).and_then(Anchor::decode_slot);
    match (slot_at(0), slot_at(1)) {
        (Some(first), Some(second)) => Ok(Some(if second.seq > first.seq { second } else { first })),
        (Some(only), None) | (None, Some(only)) => Ok(Some(only)),
        (None, None) => Err(LogError::AnchorMismatch {
            anchor: path.to_path_buf(),
            anchor_seq: Seq(0),
            reason: "neither slot of the anchor file is valid (wrong magic or crc): it was overwritten".to_string(),
        }),
    }
}

/// Writes a new anchor file holding `anchor` in both slots: temporary file, fsync, rename, fsync
/// of the directory. Used when the anchor is created and when an operator resets it.
pub fn write_anchor(path: &Path, anchor: Anchor) -> Result<(), LogError> {
    let temporary_path = PathBuf::from(format!("{}.tmp", path.display()));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary_path)
        .map_err(|source| LogError::io("creating the anchor", &temporary_path, source))?;
    let mut bytes = vec![0u8; ANCHOR_FILE_LEN as usize];
    for slot_idx in 0..2 {
        let start = (slot_idx * SLOT_STRIDE) as usize;
        bytes[start..start + SLOT_LEN].copy_from_slice(&anchor.encode_slot());
    }
    file.write_all_at(&bytes, 0).map_err(|source| LogError::io("writing the anchor", &temporary_path, source))?;
    file.sync_all().map_err(|source| LogError::io("syncing the anchor", &temporary_path, source))?;
    std::fs::rename(&temporary_path, path).map_err(|source| LogError::io("renaming the anchor to", path, source))?;
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// The writer's open anchor file: each group commit overwrites the older slot.
pub(crate) struct AnchorWriter {
    path: PathBuf,
    file: File,
    next_slot: u64,
    /// Set after the first failed write, so a broken anchor warns once, not per batch.
    failed: bool,
}

impl AnchorWriter {
    /// Opens the anchor file (written just before by `write_anchor`, so both slots are valid).
    pub fn open(path: &Path) -> Result<AnchorWriter, LogError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| LogError::io("opening the anchor", path, source))?;
        Ok(AnchorWriter { path: path.to_path_buf(), file, next_slot: 0, failed: false })
    }

    /// Records that `anchor` is durable in the log. No fsync (see the module comment). A failed
    /// write is logged, not fatal: the log itself is durable, and an anchor left behind only
    /// weakens the next open's check.
    pub fn record(&mut self, anchor: Anchor) {
        let written = self.file.write_all_at(&anchor.encode_slot(), self.next_slot * SLOT_STRIDE);
        self.next_slot = 1 - self.next_slot;
        if let Err(error) = written {
            if !self.failed {
                tracing::warn!(path = %self.path.display(), %error, "cannot update the log's anchor; it stays at an older point");
                self.failed = true;
            }
        }
    }

    /// Flushes the anchor to disk (when the log is closed).
    pub fn sync(&self) {
        if let Err(error) = self.file.sync_data() {
            tracing::warn!(path = %self.path.display(), %error, "cannot sync the log's anchor");
        }
    }
}

/// What the log's own chain says at the anchor's seq, for [`check_anchor`].
pub(crate) fn check_anchor(
    path: &Path,
    anchor: Anchor,
    last_seq: Seq,
    hash_at: impl FnOnce(Seq) -> Result<[u8; 32], LogError>,
) -> Result<(), LogError> {
    let mismatch =
        |reason: String| LogError::AnchorMismatch { anchor: path.to_path_buf(), anchor_seq: anchor.seq, reason };
    if anchor.seq > last_seq {
        return Err(mismatch(format!(
            "the log ends at seq {last_seq}, before the anchor's seq {}: acknowledged records are missing (a deleted or cut segment)",
            anchor.seq
        )));
    }
    let log_hash = hash_at(anchor.seq)?;
    if log_hash != anchor.hash {
        return Err(mismatch(format!(
            "record seq {} has chain hash {}, the anchor says {}: the log was rewritten",
            anchor.seq,
            hex(&log_hash),
            hex(&anchor.hash)
        )));
    }
    Ok(())
}

/// Lower-case hex, as `berth-replay` prints hashes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
