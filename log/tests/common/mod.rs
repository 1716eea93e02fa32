//! Helpers shared by the integration tests: small logs, deterministic payloads, and an
//! independent re-implementation of the record layout for file surgery.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use berth_log::{Durability, EventLog, LogOptions, RecoveryMode, Seq};

pub const SMALL_SEGMENT: u64 = 64 * 1024;

pub fn small_options(durability: Durability) -> LogOptions {
    LogOptions {
        segment_size: SMALL_SEGMENT,
        initial_segment_size: SMALL_SEGMENT,
        durability,
        recovery: RecoveryMode::TruncateTornTail,
        anchor: None,
    }
}

pub fn options_with(segment_size: u64, durability: Durability, recovery: RecoveryMode) -> LogOptions {
    LogOptions { segment_size, initial_segment_size: segment_size, durability, recovery, anchor: None }
}

/// A payload with no zero bytes, different for every `(seq, len)`.
pub fn payload_for(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|index| ((seq as usize * 31 + index * 7) % 255 + 1) as u8).collect()
}

/// Every record payload from `from` to the durable end.
pub fn read_all(log: &EventLog, from: Seq) -> Vec<(Seq, Vec<u8>)> {
    let mut reader = log.reader(from).expect("reader");
    let mut records = Vec::new();
    while let Some(record) = reader.next() {
        let record = record.expect("record");
        records.push((record.seq, record.payload.to_vec()));
    }
    records
}

pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect();
    files.sort();
    files
}

/// Where one record sits in a segment file (independently of the crate's reader).
#[derive(Clone, Copy, Debug)]
pub struct RecordSpan {
    pub seq: u64,
    pub start: usize,
    pub payload_len: usize,
    /// End of the payload (CRC coverage ends here).
    pub unpadded_end: usize,
    /// Start of the next record.
    pub padded_end: usize,
}

pub fn record_spans(bytes: &[u8]) -> Vec<RecordSpan> {
    let mut spans = Vec::new();
    let mut offset = 80;
    while offset + 56 <= bytes.len() {
        let seq = u64::from_le_bytes(bytes[offset + 40..offset + 48].try_into().unwrap());
        if seq == 0 {
            break;
        }
        let payload_len = u32::from_le_bytes(bytes[offset + 36..offset + 40].try_into().unwrap()) as usize;
        let unpadded_end = offset + 56 + payload_len;
        let padded_end = unpadded_end.next_multiple_of(8);
        spans.push(RecordSpan { seq, start: offset, payload_len, unpadded_end, padded_end });
        offset = padded_end;
    }
    spans
}

/// Recomputes the CRC of the record at `start` exactly as docs/log-format.md describes:
/// CRC-32 (IEEE) over bytes 0..32 then 36..56+len.
pub fn fix_record_crc(bytes: &mut [u8], start: usize) {
    let payload_len = u32::from_le_bytes(bytes[start + 36..start + 40].try_into().unwrap()) as usize;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[start..start + 32]);
    hasher.update(&bytes[start + 36..start + 56 + payload_len]);
    let crc = hasher.finalize();
    bytes[start + 32..start + 36].copy_from_slice(&crc.to_le_bytes());
}

pub fn set_record_seq(bytes: &mut [u8], start: usize, seq: u64) {
    bytes[start + 40..start + 48].copy_from_slice(&seq.to_le_bytes());
}

/// Copies the `.seg` files (not the LOCK) of `from` into `to`.
pub fn copy_segments(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for path in segment_files(from) {
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}
