//! The checkpoint file's own checks: each way a file can be unusable is told apart, and the
//! file names sort and parse as berthd and the archive rely on.

use berth_log::Seq;
use berth_projections::checkpoint::*;
use berth_projections::{CheckpointError, NamespaceState, State, EVENT_SCHEMA};
use sha2::{Digest, Sha256};

fn state() -> State {
    let mut state = State::new();
    state.last_seq = Seq(42);
    state.namespaces.insert("default".into(), NamespaceState { created_seq: Seq(1), ..NamespaceState::default() });
    state
}

/// Puts a valid digest back after an edit, as someone with write access could.
fn reseal(bytes: &mut [u8]) {
    let covered = bytes.len() - CHECKPOINT_TRAILER_LEN;
    let digest: [u8; 32] = Sha256::digest(&bytes[..covered]).into();
    bytes[covered..].copy_from_slice(&digest);
}

#[test]
fn a_checkpoint_round_trips_and_its_digest_is_its_trailer() {
    let bytes = encode_checkpoint(&state(), &[7; 32]);
    let checkpoint = decode_checkpoint(&bytes).unwrap();
    assert_eq!((checkpoint.seq, checkpoint.chain_hash, &checkpoint.state), (Seq(42), [7; 32], &state()));
    assert_eq!(&checkpoint.digest[..], &bytes[bytes.len() - 32..]);
    assert_eq!(&bytes[..8], b"BERTHCKP");
    assert_eq!(u16::from_le_bytes([bytes[12], bytes[13]]), EVENT_SCHEMA);
    assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), 42);
}

#[test]
fn every_kind_of_unusable_file_is_named() {
    let good = encode_checkpoint(&state(), &[7; 32]);
    for at in [0, 9, 20, 40, 60, CHECKPOINT_HEADER_LEN + 3, good.len() - 1] {
        let mut flipped = good.clone();
        flipped[at] ^= 0x01;
        let error = decode_checkpoint(&flipped).unwrap_err();
        assert!(
            matches!(
                error,
                CheckpointError::Checksum | CheckpointError::BadMagic | CheckpointError::FormatVersion { .. }
            ) || ((56..64).contains(&at) && matches!(error, CheckpointError::BadLength { .. })),
            "byte {at}: {error}"
        );
    }
    assert!(matches!(decode_checkpoint(&good[..good.len() / 2]), Err(CheckpointError::BadLength { .. })));
    assert!(matches!(decode_checkpoint(&good[..10]), Err(CheckpointError::TooShort { len: 10 })));

    let mut other_schema = good.clone();
    other_schema[12..14].copy_from_slice(&(EVENT_SCHEMA + 1).to_le_bytes());
    reseal(&mut other_schema);
    assert_eq!(
        decode_checkpoint(&other_schema).unwrap_err(),
        CheckpointError::Schema { found: EVENT_SCHEMA + 1, running: EVENT_SCHEMA }
    );
    let mut other_layout = good.clone();
    other_layout[14..16].copy_from_slice(&(STATE_LAYOUT + 1).to_le_bytes());
    reseal(&mut other_layout);
    assert!(matches!(decode_checkpoint(&other_layout), Err(CheckpointError::StateLayout { .. })));
    let mut other_seq = good.clone();
    other_seq[16..24].copy_from_slice(&43u64.to_le_bytes());
    reseal(&mut other_seq);
    assert_eq!(decode_checkpoint(&other_seq).unwrap_err(), CheckpointError::SeqMismatch { header: 43, state: 42 });
    let mut garbage_state = good.clone();
    garbage_state[CHECKPOINT_HEADER_LEN] = 0xc1;
    reseal(&mut garbage_state);
    assert!(matches!(decode_checkpoint(&garbage_state), Err(CheckpointError::Malformed { .. })));
}

#[test]
fn file_names_are_twenty_digits_and_nothing_else_parses() {
    assert_eq!(checkpoint_file_name(Seq(1234)), "00000000000000001234.ckpt");
    assert_eq!(parse_checkpoint_file_name("00000000000000001234.ckpt"), Some(Seq(1234)));
    for other in
        [".00000000000000001234.ckpt.tmp", "1234.ckpt", "0000000000000000123x.ckpt", "00000000000000001234.seg"]
    {
        assert_eq!(parse_checkpoint_file_name(other), None, "{other}");
    }
}
