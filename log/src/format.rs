//! Byte layout of segment headers and records (see docs/log-format.md): encode, decode, chain hash.
//!
//! All integers are little-endian. Nothing here does IO, so the fuzz target and an independent
//! reader can use exactly the same rules as the log itself.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::error::RecordDecodeError;
use crate::{SegmentId, Seq};

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"BERTHSEG";
/// Bumped whenever a byte of this layout changes meaning.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header; the first record starts right after it.
pub const SEGMENT_HEADER_LEN: usize = 80;
/// Size of the fixed part of a record, before the payload.
pub const RECORD_HEADER_LEN: usize = 56;
/// Every record starts on a multiple of this (relative to the file start).
pub const RECORD_ALIGN: usize = 8;
/// The file in a log directory whose flock a writer holds for the life of its `EventLog`.
pub const LOCK_FILE: &str = "LOCK";
/// Input to the genesis hash: the chain value "before" seq 1.
pub const GENESIS_LABEL: &[u8] = b"berth-log genesis v1";

// Record field offsets.
const RECORD_HASH_AT: usize = 0;
const RECORD_CRC_AT: usize = 32;
const RECORD_LEN_AT: usize = 36;
const RECORD_SEQ_AT: usize = 40;
const RECORD_TIMESTAMP_AT: usize = 48;
/// Start of the bytes that are both hashed and CRC'd (length, seq, timestamp, payload).
const RECORD_HASHED_FROM: usize = RECORD_LEN_AT;

// Segment header field offsets.
const SEGMENT_VERSION_AT: usize = 8;
const SEGMENT_HEADER_LEN_AT: usize = 12;
const SEGMENT_ID_AT: usize = 16;
const SEGMENT_FIRST_SEQ_AT: usize = 24;
const SEGMENT_SIZE_AT: usize = 32;
const SEGMENT_CARRIED_HASH_AT: usize = 40;
const SEGMENT_CRC_AT: usize = 72;

/// The chain value that seq 1 links to: SHA-256 of [`GENESIS_LABEL`].
pub fn genesis_hash() -> [u8; 32] {
    static GENESIS: OnceLock<[u8; 32]> = OnceLock::new();
    *GENESIS.get_or_init(|| Sha256::digest(GENESIS_LABEL).into())
}

/// Bytes a record with `payload_len` payload bytes occupies on disk, padding included.
pub const fn encoded_record_len(payload_len: usize) -> usize {
    (RECORD_HEADER_LEN + payload_len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// `hash_n = SHA-256(hash_{n-1} || bytes 36..56+len of record n)`: the record exactly as stored
/// on disk from its length field to the end of its payload.
pub fn chain_hash(previous_hash: &[u8; 32], hashed_record_bytes: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous_hash);
    hasher.update(hashed_record_bytes);
    hasher.finalize().into()
}

fn record_crc(record_bytes_without_padding: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&record_bytes_without_padding[..RECORD_CRC_AT]);
    hasher.update(&record_bytes_without_padding[RECORD_HASHED_FROM..]);
    hasher.finalize()
}

/// Appends one encoded record (with zero padding) to `out` and returns its chain hash.
pub fn encode_record(
    out: &mut Vec<u8>,
    previous_hash: &[u8; 32],
    seq: Seq,
    timestamp_ns: u64,
    payload: &[u8],
) -> [u8; 32] {
    let start = out.len();
    let unpadded_len = RECORD_HEADER_LEN + payload.len();
    out.resize(start + RECORD_HEADER_LEN, 0);
    out.extend_from_slice(payload);
    out.resize(start + encoded_record_len(payload.len()), 0);
    let record = &mut out[start..start + unpadded_len];
    record[RECORD_LEN_AT..RECORD_LEN_AT + 4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    record[RECORD_SEQ_AT..RECORD_SEQ_AT + 8].copy_from_slice(&seq.0.to_le_bytes());
    record[RECORD_TIMESTAMP_AT..RECORD_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ns.to_le_bytes());
    let hash = chain_hash(previous_hash, &record[RECORD_HASHED_FROM..]);
    record[RECORD_HASH_AT..RECORD_HASH_AT + 32].copy_from_slice(&hash);
    let crc = record_crc(record);
    record[RECORD_CRC_AT..RECORD_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    hash
}

/// One record as it sits in a segment, borrowed from the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedRecord<'a> {
    /// The chain hash stored in the record (hash_n).
    pub chain_hash: &'a [u8; 32],
    pub seq: Seq,
    pub timestamp_ns: u64,
    pub payload: &'a [u8],
    /// Bytes 36..56+len: the part that goes into the chain hash after hash_{n-1}.
    pub hashed_bytes: &'a [u8],
    /// Bytes the record occupies including padding; the next record starts this far on.
    pub encoded_len: usize,
}

impl DecodedRecord<'_> {
    /// Recomputes the chain hash from the predecessor's and compares it with the stored one.
    pub fn chains_from(&self, previous_hash: &[u8; 32]) -> bool {
        chain_hash(previous_hash, self.hashed_bytes) == *self.chain_hash
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4-byte slice"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8-byte slice"))
}

/// Decodes the record at the start of `bytes` and checks its CRC. Padding after the payload may
/// be cut off (`bytes` may end right after the payload). Public for the fuzz target and for
/// independent tools; the log itself uses it for every read.
pub fn decode_record(bytes: &[u8]) -> Result<DecodedRecord<'_>, RecordDecodeError> {
    decode_record_checking(bytes, true)
}

/// `decode_record`, with the CRC check only when `check_crc` (a reader whose records are being
/// verified in full elsewhere need not compute it twice).
pub(crate) fn decode_record_checking(bytes: &[u8], check_crc: bool) -> Result<DecodedRecord<'_>, RecordDecodeError> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err(RecordDecodeError::Truncated { needed: RECORD_HEADER_LEN as u64, available: bytes.len() as u64 });
    }
    let header = &bytes[..RECORD_HEADER_LEN];
    let seq = read_u64(header, RECORD_SEQ_AT);
    if seq == 0 {
        if header.iter().all(|&byte| byte == 0) {
            return Err(RecordDecodeError::ZeroHeader);
        }
        return Err(RecordDecodeError::ZeroSeq);
    }
    let payload_len = read_u32(header, RECORD_LEN_AT) as usize;
    let unpadded_len = RECORD_HEADER_LEN + payload_len;
    if bytes.len() < unpadded_len {
        return Err(RecordDecodeError::Truncated { needed: unpadded_len as u64, available: bytes.len() as u64 });
    }
    let record = &bytes[..unpadded_len];
    if check_crc {
        let stored_crc = read_u32(record, RECORD_CRC_AT);
        let computed_crc = record_crc(record);
        if stored_crc != computed_crc {
            return Err(RecordDecodeError::CrcMismatch { stored: stored_crc, computed: computed_crc });
        }
    }
    Ok(DecodedRecord {
        chain_hash: record[RECORD_HASH_AT..RECORD_HASH_AT + 32].try_into().expect("32-byte slice"),
        seq: Seq(seq),
        timestamp_ns: read_u64(record, RECORD_TIMESTAMP_AT),
        payload: &record[RECORD_HEADER_LEN..],
        hashed_bytes: &record[RECORD_HASHED_FROM..],
        encoded_len: encoded_record_len(payload_len),
    })
}

/// The fixed header at offset 0 of every activated segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment_id: SegmentId,
    /// Seq of the first record in this segment (records may not exist yet).
    pub first_seq: Seq,
    /// Length the writer preallocated for this file; a shorter file was truncated.
    pub segment_size: u64,
    /// Chain hash of seq `first_seq - 1` (the genesis hash for the first segment).
    pub carried_hash: [u8; 32],
}

/// What the first [`SEGMENT_HEADER_LEN`] bytes of a segment file are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentHeaderState {
    Valid(SegmentHeader),
    /// All zero: a preallocated segment that was never activated.
    Zero,
    /// Anything else; the string says why.
    Invalid(String),
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut bytes = [0u8; SEGMENT_HEADER_LEN];
        bytes[..8].copy_from_slice(&SEGMENT_MAGIC);
        bytes[SEGMENT_VERSION_AT..SEGMENT_VERSION_AT + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[SEGMENT_HEADER_LEN_AT..SEGMENT_HEADER_LEN_AT + 4]
            .copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
        bytes[SEGMENT_ID_AT..SEGMENT_ID_AT + 8].copy_from_slice(&self.segment_id.0.to_le_bytes());
        bytes[SEGMENT_FIRST_SEQ_AT..SEGMENT_FIRST_SEQ_AT + 8].copy_from_slice(&self.first_seq.0.to_le_bytes());
        bytes[SEGMENT_SIZE_AT..SEGMENT_SIZE_AT + 8].copy_from_slice(&self.segment_size.to_le_bytes());
        bytes[SEGMENT_CARRIED_HASH_AT..SEGMENT_CARRIED_HASH_AT + 32].copy_from_slice(&self.carried_hash);
        let crc = crc32fast::hash(&bytes[..SEGMENT_CRC_AT]);
        bytes[SEGMENT_CRC_AT..SEGMENT_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> SegmentHeaderState {
        if bytes.len() < SEGMENT_HEADER_LEN {
            if bytes.iter().all(|&byte| byte == 0) {
                return SegmentHeaderState::Zero;
            }
            return SegmentHeaderState::Invalid(format!(
                "segment header needs {SEGMENT_HEADER_LEN} bytes, file has {}",
                bytes.len()
            ));
        }
        let bytes = &bytes[..SEGMENT_HEADER_LEN];
        if bytes.iter().all(|&byte| byte == 0) {
            return SegmentHeaderState::Zero;
        }
        if bytes[..8] != SEGMENT_MAGIC {
            return SegmentHeaderState::Invalid("bad segment magic".to_string());
        }
        let stored_crc = read_u32(bytes, SEGMENT_CRC_AT);
        let computed_crc = crc32fast::hash(&bytes[..SEGMENT_CRC_AT]);
        if stored_crc != computed_crc {
            return SegmentHeaderState::Invalid(format!(
                "segment header crc mismatch: stored {stored_crc:#010x}, computed {computed_crc:#010x}"
            ));
        }
        let version = read_u32(bytes, SEGMENT_VERSION_AT);
        if version != FORMAT_VERSION {
            return SegmentHeaderState::Invalid(format!(
                "unsupported format version {version} (this build reads version {FORMAT_VERSION}); upgrade berth"
            ));
        }
        let header_len = read_u32(bytes, SEGMENT_HEADER_LEN_AT);
        if header_len as usize != SEGMENT_HEADER_LEN {
            return SegmentHeaderState::Invalid(format!(
                "segment header length {header_len}, expected {SEGMENT_HEADER_LEN}"
            ));
        }
        let first_seq = read_u64(bytes, SEGMENT_FIRST_SEQ_AT);
        if first_seq == 0 {
            return SegmentHeaderState::Invalid("segment first seq is 0".to_string());
        }
        SegmentHeaderState::Valid(SegmentHeader {
            segment_id: SegmentId(read_u64(bytes, SEGMENT_ID_AT)),
            first_seq: Seq(first_seq),
            segment_size: read_u64(bytes, SEGMENT_SIZE_AT),
            carried_hash: bytes[SEGMENT_CARRIED_HASH_AT..SEGMENT_CARRIED_HASH_AT + 32]
                .try_into()
                .expect("32-byte slice"),
        })
    }
}

/// File name of segment `id`: 20 zero-padded decimal digits and `.seg`.
pub fn segment_file_name(id: SegmentId) -> String {
    format!("{:020}.seg", id.0)
}

/// Inverse of [`segment_file_name`]; `None` for anything else in the directory.
pub fn parse_segment_file_name(name: &str) -> Option<SegmentId> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(SegmentId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_pads_to_eight() {
        for payload_len in [0usize, 1, 7, 8, 9, 200, 4999] {
            let payload: Vec<u8> = (0..payload_len).map(|index| (index * 7 + 1) as u8).collect();
            let mut out = Vec::new();
            let hash = encode_record(&mut out, &genesis_hash(), Seq(42), 1234, &payload);
            assert_eq!(out.len(), encoded_record_len(payload_len));
            assert_eq!(out.len() % RECORD_ALIGN, 0);
            let decoded = decode_record(&out).unwrap();
            assert_eq!(decoded.seq, Seq(42));
            assert_eq!(decoded.timestamp_ns, 1234);
            assert_eq!(decoded.payload, &payload[..]);
            assert_eq!(*decoded.chain_hash, hash);
            assert_eq!(decoded.encoded_len, out.len());
            assert!(decoded.chains_from(&genesis_hash()));
            assert!(!decoded.chains_from(&[0u8; 32]));
        }
    }

    #[test]
    fn decode_rejects_zero_truncated_and_flipped_records() {
        assert_eq!(decode_record(&[0u8; 64]), Err(RecordDecodeError::ZeroHeader));
        let mut out = Vec::new();
        encode_record(&mut out, &genesis_hash(), Seq(1), 5, b"hello world");
        assert!(matches!(decode_record(&out[..60]), Err(RecordDecodeError::Truncated { .. })));
        for byte_index in 0..(RECORD_HEADER_LEN + 11) {
            let mut flipped = out.clone();
            flipped[byte_index] ^= 0x10;
            assert!(decode_record(&flipped).is_err(), "flip at {byte_index} went unnoticed");
        }
    }

    #[test]
    fn segment_header_round_trips() {
        let header = SegmentHeader {
            segment_id: SegmentId(3),
            first_seq: Seq(77),
            segment_size: 65536,
            carried_hash: [9u8; 32],
        };
        assert_eq!(SegmentHeader::decode(&header.encode()), SegmentHeaderState::Valid(header));
        assert_eq!(SegmentHeader::decode(&[0u8; 80]), SegmentHeaderState::Zero);
        let mut bad = header.encode();
        bad[20] ^= 1;
        assert!(matches!(SegmentHeader::decode(&bad), SegmentHeaderState::Invalid(_)));
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_file_name(SegmentId(1)), "00000000000000000001.seg");
        assert_eq!(parse_segment_file_name("00000000000000000001.seg"), Some(SegmentId(1)));
        assert_eq!(parse_segment_file_name("1.seg"), None);
        assert_eq!(parse_segment_file_name("00000000000000000001.seg.tmp"), None);
    }
}

#[cfg(test)]
mod documented_example {
    use super::*;

    /// Pins the worked example of docs/log-format.md byte for byte.
    #[test]
    fn documented_example_bytes_are_what_the_encoder_writes() {
        assert_eq!(hex::encode(genesis_hash()), "0ed0cf086a7c1f3e5523bbf7d2b6ce706b1e3e1f3832ea7304d7a8e3724b083a");
        let mut out = Vec::new();
        let hash = encode_record(&mut out, &genesis_hash(), Seq(1), 1_700_000_000_000_000_000, b"hello, berth");
        assert_eq!(hex::encode(hash), "55d6b73456bc726ff95f825d35d3d993df13efb53d0b0451f6019d4623e6f3e4");
        assert_eq!(
            hex::encode(&out),
            concat!(
                "55d6b73456bc726ff95f825d35d3d993",
                "df13efb53d0b0451f6019d4623e6f3e4",
                "24f64ee40c0000000100000000000000",
                "00002a36fe9c971768656c6c6f2c2062",
                "6572746800000000"
            )
        );
        let header = SegmentHeader {
            segment_id: SegmentId(1),
            first_seq: Seq(1),
            segment_size: 64 << 20,
            carried_hash: genesis_hash(),
        };
        assert_eq!(
            hex::encode(header.encode()),
            concat!(
                "42455254485345470100000050000000",
                "01000000000000000100000000000000",
                "00000004000000000ed0cf086a7c1f3e",
                "5523bbf7d2b6ce706b1e3e1f3832ea73",
                "04d7a8e3724b083a2d25a40500000000"
            )
        );
    }
}
