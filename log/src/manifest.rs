//! The archive manifest (`<log dir>/archive.manifest`): a hash-chained text file that says which
//! segments left the log directory for the archive, and where retention cut the history. It is
//! what lets a log start at a segment id above 1 (see docs/log-format.md, "Archive").

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::durable::{sync_dir, write_synced};
use crate::format::genesis_hash;
use crate::{LogError, SegmentId, Seq};

/// The manifest's file name inside the log directory.
pub const MANIFEST_FILE_NAME: &str = "archive.manifest";
/// What the first entry's hash chains from: SHA-256 of these ASCII bytes.
const MANIFEST_GENESIS: &[u8] = b"berth-archive manifest v1";

/// One segment that was moved to the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedSegment {
    /// The archive directory its file is in (the latest `archive-dir` entry before it).
    pub dir: PathBuf,
    pub id: SegmentId,
    pub first_seq: Seq,
    pub last_seq: Seq,
    pub carried_hash: [u8; 32],
    pub last_hash: [u8; 32],
    /// Timestamp (ns since the epoch) of its last record: what retention's max age looks at.
    pub last_record_ns: u64,
    /// Bytes of the segment kept in the archive (header and records, not the zero tail).
    pub data_len: u64,
    /// Length and SHA-256 of the compressed file.
    pub file_len: u64,
    pub file_sha256: [u8; 32],
}

impl ArchivedSegment {
    pub fn file_name(id: SegmentId) -> String {
        format!("{:020}.seg.zst", id.0)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(Self::file_name(self.id))
    }
}

/// Where retention cut the history: segments up to `id` were dropped; the chain goes on from
/// record `seq`, whose chain hash was `hash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutPoint {
    pub id: SegmentId,
    pub seq: Seq,
    pub hash: [u8; 32],
}

/// A manifest as read and checked: its entries' hash chain, ids, seqs and hashes all follow.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    /// Entry lines without their hashes, in order (rewritten whole with one more line).
    entries: Vec<String>,
    /// Hash of the last entry (the chain's head): publish it to pin the manifest.
    pub head_hash: [u8; 32],
    /// The archive directory named by the latest `archive-dir` entry.
    pub archive_dir: Option<PathBuf>,
    pub cut: Option<CutPoint>,
    /// Archived segments still kept (ids after the cut), oldest first.
    pub archived: Vec<ArchivedSegment>,
}

impl Manifest {
    pub fn empty() -> Manifest {
        Manifest { head_hash: manifest_genesis(), ..Manifest::default() }
    }

    /// The first id the live log directory must hold.
    pub fn next_segment_id(&self) -> SegmentId {
        match (self.archived.last(), &self.cut) {
            (Some(last), _) => SegmentId(last.id.0 + 1),
            (None, Some(cut)) => SegmentId(cut.id.0 + 1),
            (None, None) => SegmentId(1),
        }
    }

    /// (seq, chain hash) just before the first live segment: where it must continue from.
    pub fn boundary(&self) -> (Seq, [u8; 32]) {
        match (self.archived.last(), &self.cut) {
            (Some(last), _) => (last.last_seq, last.last_hash),
            (None, Some(cut)) => (cut.seq, cut.hash),
            (None, None) => (Seq(0), genesis_hash()),
        }
    }

    /// (seq, hash) the oldest kept segment chains from: the cut, or genesis.
    pub fn base(&self) -> (Seq, [u8; 32]) {
        self.cut.map_or((Seq(0), genesis_hash()), |cut| (cut.seq, cut.hash))
    }

    pub fn n_entries(&self) -> usize {
        self.entries.len()
    }

    /// Checks an entry line against the state so far and applies it.
    fn apply(&mut self, line: &str, location: &Path) -> Result<(), LogError> {
        let bad = |reason: String| manifest_corruption(location, self.entries.len() + 1, reason);
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["archive-dir", dir] => {
                let dir = PathBuf::from(dir);
                if !dir.is_absolute() {
                    return Err(bad(format!("archive-dir {} is not absolute", dir.display())));
                }
                self.archive_dir = Some(dir);
            }
            ["archived", id, first_seq, last_seq, carried, last_hash, last_ns, data_len, file_len, file_sha] => {
                let dir = self.archive_dir.clone().ok_or_else(|| bad("archived before any archive-dir".into()))?;
                let entry = ArchivedSegment {
                    dir,
                    id: SegmentId(parse_number(id).map_err(&bad)?),
                    first_seq: Seq(parse_number(first_seq).map_err(&bad)?),
                    last_seq: Seq(parse_number(last_seq).map_err(&bad)?),
                    carried_hash: parse_hash(carried).map_err(&bad)?,
                    last_hash: parse_hash(last_hash).map_err(&bad)?,
                    last_record_ns: parse_number(last_ns).map_err(&bad)?,
                    data_len: parse_number(data_len).map_err(&bad)?,
                    file_len: parse_number(file_len).map_err(&bad)?,
                    file_sha256: parse_hash(file_sha).map_err(&bad)?,
                };
                let (boundary_seq, boundary_hash) = self.boundary();
                if entry.id != self.next_segment_id() {
                    return Err(bad(format!(
                        "archived segment {} where segment {} was due",
                        entry.id,
                        self.next_segment_id()
                    )));
                }
                if entry.first_seq.0 != boundary_seq.0 + 1 || entry.carried_hash != boundary_hash {
                    return Err(bad(format!(
                        "archived segment {} starts at seq {} but the history before it ends at seq {boundary_seq} (or with another hash)",
                        entry.id, entry.first_seq
                    )));
                }
                if entry.last_seq < entry.first_seq {
                    return Err(bad(format!("archived segment {} holds no record", entry.id)));
                }
                self.archived.push(entry);
            }
            ["cut", id, seq, hash, _unix_secs, _reason] => {
                let cut = CutPoint {
                    id: SegmentId(parse_number(id).map_err(&bad)?),
                    seq: Seq(parse_number(seq).map_err(&bad)?),
                    hash: parse_hash(hash).map_err(&bad)?,
                };
                let Some(position) = self.archived.iter().position(|entry| entry.id == cut.id) else {
                    return Err(bad(format!("cut at segment {}, which is not an archived segment", cut.id)));
                };
                let entry = &self.archived[position];
                if entry.last_seq != cut.seq || entry.last_hash != cut.hash {
                    return Err(bad(format!(
                        "cut at segment {} names another seq or hash than the segment ends with",
                        cut.id
                    )));
                }
                self.archived.drain(..=position);
                self.cut = Some(cut);
            }
            _ => return Err(bad(format!("unknown entry {line:?}"))),
        }
        Ok(())
    }

    /// Reads and checks `<log dir>/archive.manifest`; `None` when there is none.
    pub fn read(log_dir: &Path) -> Result<Option<Manifest>, LogError> {
        let path = log_dir.join(MANIFEST_FILE_NAME);
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LogError::io("reading archive manifest", &path, source)),
        };
        let text = String::from_utf8(text)
            .map_err(|_| manifest_corruption(&path, 0, "the manifest is not UTF-8 text".to_string()))?;
        let mut manifest = Manifest::empty();
        for (line_idx, line) in text.split_terminator('\n').enumerate() {
            let Some((entry, stored_hash)) = line.rsplit_once(' ') else {
                return Err(manifest_corruption(&path, line_idx + 1, "entry has no hash".to_string()));
            };
            let expected = entry_hash(&manifest.head_hash, entry);
            if parse_hash(stored_hash).ok() != Some(expected) {
                return Err(manifest_corruption(
                    &path,
                    line_idx + 1,
                    "entry hash differs from SHA-256 of the previous entry hash and this entry: the manifest was edited"
                        .to_string(),
                ));
            }
            manifest.apply(entry, &path)?;
            manifest.entries.push(entry.to_string());
            manifest.head_hash = expected;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(manifest_corruption(&path, manifest.entries.len(), "last entry is not terminated".to_string()));
        }
        Ok(Some(manifest))
    }

    /// Adds an entry and writes the whole manifest durably (temporary file, fsync, rename,
    /// directory fsync): a crash leaves the old or the new manifest, never half of one.
    pub fn append(&mut self, log_dir: &Path, entry: String) -> Result<(), LogError> {
        let path = log_dir.join(MANIFEST_FILE_NAME);
        let mut next = self.clone();
        next.apply(&entry, &path)?;
        next.head_hash = entry_hash(&self.head_hash, &entry);
        next.entries.push(entry);
        let mut text = String::new();
        let mut previous = manifest_genesis();
        for entry in &next.entries {
            let hash = entry_hash(&previous, entry);
            text.push_str(&format!("{entry} {}\n", hex(&hash)));
            previous = hash;
        }
        let temporary = log_dir.join(format!("{MANIFEST_FILE_NAME}.tmp"));
        let written = write_synced(&temporary, text.as_bytes()).and_then(|()| {
            std::fs::rename(&temporary, &path)
                .map_err(|source| LogError::io("renaming archive manifest into place at", &path, source))
        });
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
        sync_dir(log_dir)?;
        *self = next;
        Ok(())
    }
}

/// The `archive-dir` entry for `dir`, refused when it cannot be written on one line.
pub fn archive_dir_entry(dir: &Path) -> Result<String, LogError> {
    let text = dir.to_str().filter(|text| {
        dir.is_absolute() && !text.chars().any(|character| character.is_whitespace() || character.is_control())
    });
    match text {
        Some(text) => Ok(format!("archive-dir {text}")),
        None => Err(LogError::InvalidOptions {
            reason: format!(
                "archive directory {} must be an absolute UTF-8 path without spaces or control characters",
                dir.display()
            ),
        }),
    }
}

pub fn archived_entry(entry: &ArchivedSegment) -> String {
    format!(
        "archived {} {} {} {} {} {} {} {} {}",
        entry.id,
        entry.first_seq,
        entry.last_seq,
        hex(&entry.carried_hash),
        hex(&entry.last_hash),
        entry.last_record_ns,
        entry.data_len,
        entry.file_len,
        hex(&entry.file_sha256)
    )
}

pub fn cut_entry(cut: &CutPoint, unix_secs: u64, reason: &str) -> String {
    format!("cut {} {} {} {unix_secs} {reason}", cut.id, cut.seq, hex(&cut.hash))
}

fn manifest_genesis() -> [u8; 32] {
    Sha256::digest(MANIFEST_GENESIS).into()
}

fn entry_hash(previous: &[u8; 32], entry: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(entry.as_bytes());
    hasher.finalize().into()
}

fn manifest_corruption(path: &Path, line: usize, reason: String) -> LogError {
    LogError::Corruption {
        segment: path.to_path_buf(),
        offset: line as u64,
        reason: format!("manifest line {line}: {reason}"),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn parse_hash(text: &str) -> Result<[u8; 32], String> {
    if text.len() != 64 || !text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("{text:?} is not a 64-digit lower-case hex hash"));
    }
    let mut hash = [0u8; 32];
    for (idx, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[idx * 2..idx * 2 + 2], 16).expect("checked hex digits");
    }
    Ok(hash)
}

fn parse_number(text: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("{text:?} is not a decimal number"));
    }
    text.parse().map_err(|_| format!("{text:?} is out of range"))
}
