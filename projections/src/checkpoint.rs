//! The projection checkpoint's encoding: the whole `State` after a given record, with that
//! record's seq and chain hash, and a SHA-256 over it all. Pure bytes in, bytes out; the files
//! (`<root>/checkpoints/<20-digit seq>.ckpt`) are written by berthd (runtime's
//! `daemon::checkpoint`) and read by berthd and berth-replay. docs/log-format.md,
//! "Checkpoints", has the layout byte for byte and why a checkpoint is trusted.
//!
//! ```text
//! 0   8   magic "BERTHCKP"
//! 8   4   format version (u32 LE)           CHECKPOINT_FORMAT_VERSION
//! 12  2   event schema (u16 LE)             EVENT_SCHEMA of the writer
//! 14  2   state layout (u16 LE)             STATE_LAYOUT of the writer
//! 16  8   seq covered (u64 LE)              the state is the fold of records 1..=seq
//! 24  32  chain hash stored in record seq   (the genesis hash for seq 0)
//! 56  8   state length N (u64 LE)
//! 64  N   the State, rmp-serde with field names
//! 64+N 32 SHA-256 of bytes 0..64+N          the checkpoint's digest
//! ```

use berth_log::Seq;
use sha2::{Digest, Sha256};

use crate::error::CheckpointError;
use crate::event::EVENT_SCHEMA;
use crate::state::State;

pub const CHECKPOINT_MAGIC: [u8; 8] = *b"BERTHCKP";
/// The layout of the file around the state; bumped when the header or trailer changes.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
/// The meaning of `State` and its fold. Bump it whenever `State` or `State::apply` changes
/// what a replay produces without a new `EVENT_SCHEMA` (a new field filled from old events, a
/// fold that now reads an event differently): a checkpoint of another layout is ignored and
/// the log replayed in full once, so a state folded by older code is never served.
pub const STATE_LAYOUT: u16 = 1;
pub const CHECKPOINT_HEADER_LEN: usize = 64;
pub const CHECKPOINT_TRAILER_LEN: usize = 32;
/// Checkpoint files are `<seq, 20 digits>.ckpt`: their names sort in seq order.
pub const CHECKPOINT_FILE_SUFFIX: &str = ".ckpt";

/// A decoded checkpoint: the state after record `seq`, and that record's chain hash.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub seq: Seq,
    pub chain_hash: [u8; 32],
    pub state: State,
    /// The SHA-256 the file ends with: what a `CheckpointWritten` record vouches for.
    pub digest: [u8; 32],
}

/// Encodes `state` (which covers `state.last_seq`) with `chain_hash`, the hash stored in that
/// record. Returns the file's bytes; its last 32 bytes are the digest.
pub fn encode_checkpoint(state: &State, chain_hash: &[u8; 32]) -> Vec<u8> {
    // A State of plain maps, strings and integers always encodes.
    let state_bytes = rmp_serde::to_vec_named(state).expect("state encodes");
    let mut bytes = Vec::with_capacity(CHECKPOINT_HEADER_LEN + state_bytes.len() + CHECKPOINT_TRAILER_LEN);
    bytes.extend_from_slice(&CHECKPOINT_MAGIC);
    bytes.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&EVENT_SCHEMA.to_le_bytes());
    bytes.extend_from_slice(&STATE_LAYOUT.to_le_bytes());
    bytes.extend_from_slice(&state.last_seq.0.to_le_bytes());
    bytes.extend_from_slice(chain_hash);
    bytes.extend_from_slice(&(state_bytes.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&state_bytes);
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    bytes.extend_from_slice(&digest);
    bytes
}

/// The header fields, readable without decoding the state (berth-replay lists them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointHeader {
    pub format_version: u32,
    pub event_schema: u16,
    pub state_layout: u16,
    pub seq: Seq,
    pub chain_hash: [u8; 32],
    pub state_len: u64,
}

/// Reads the header and checks magic, format version, length and checksum, in that order.
pub fn check_checkpoint(bytes: &[u8]) -> Result<(CheckpointHeader, [u8; 32]), CheckpointError> {
    if bytes.len() < CHECKPOINT_HEADER_LEN + CHECKPOINT_TRAILER_LEN {
        return Err(CheckpointError::TooShort { len: bytes.len() });
    }
    if bytes[0..8] != CHECKPOINT_MAGIC {
        return Err(CheckpointError::BadMagic);
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"));
    let format_version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if format_version != CHECKPOINT_FORMAT_VERSION {
        return Err(CheckpointError::FormatVersion { found: format_version, supported: CHECKPOINT_FORMAT_VERSION });
    }
    let header = CheckpointHeader {
        format_version,
        event_schema: u16_at(12),
        state_layout: u16_at(14),
        seq: Seq(u64_at(16)),
        chain_hash: bytes[24..56].try_into().expect("32 bytes"),
        state_len: u64_at(56),
    };
    let available = bytes.len() - CHECKPOINT_HEADER_LEN - CHECKPOINT_TRAILER_LEN;
    if header.state_len != available as u64 {
        return Err(CheckpointError::BadLength { state_len: header.state_len, available });
    }
    let (covered, trailer) = bytes.split_at(bytes.len() - CHECKPOINT_TRAILER_LEN);
    let digest: [u8; 32] = Sha256::digest(covered).into();
    if digest[..] != trailer[..] {
        return Err(CheckpointError::Checksum);
    }
    Ok((header, digest))
}

/// Decodes a checkpoint file: every check of [`check_checkpoint`], then the writer's event
/// schema and state layout must be this build's, and the state must decode and cover the
/// header's seq. Whether the log agrees (the chain hash at that seq, a record vouching for the
/// digest) is the caller's to check: this sees only the file.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let (header, digest) = check_checkpoint(bytes)?;
    if header.event_schema != EVENT_SCHEMA {
        return Err(CheckpointError::Schema { found: header.event_schema, running: EVENT_SCHEMA });
    }
    if header.state_layout != STATE_LAYOUT {
        return Err(CheckpointError::StateLayout { found: header.state_layout, running: STATE_LAYOUT });
    }
    let state_bytes = &bytes[CHECKPOINT_HEADER_LEN..bytes.len() - CHECKPOINT_TRAILER_LEN];
    let state: State =
        rmp_serde::from_slice(state_bytes).map_err(|error| CheckpointError::Malformed { reason: error.to_string() })?;
    if state.last_seq != header.seq {
        return Err(CheckpointError::SeqMismatch { header: header.seq.0, state: state.last_seq.0 });
    }
    Ok(Checkpoint { seq: header.seq, chain_hash: header.chain_hash, state, digest })
}

/// `00000000000000001234.ckpt` for seq 1234.
pub fn checkpoint_file_name(seq: Seq) -> String {
    format!("{:020}{CHECKPOINT_FILE_SUFFIX}", seq.0)
}

/// The seq a checkpoint file's name covers; `None` for any other name (temporary files too).
pub fn parse_checkpoint_file_name(name: &str) -> Option<Seq> {
    let digits = name.strip_suffix(CHECKPOINT_FILE_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Seq)
}

/// A digest as `CheckpointWritten` records it: lower-case hex.
pub fn digest_hex(digest: &[u8; 32]) -> String {
    hex::encode(digest)
}
