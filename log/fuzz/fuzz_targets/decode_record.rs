//! Fuzzes the record and segment-header decoders: arbitrary bytes must be decoded or rejected,
//! never panic, and an accepted record must lie inside the input.
#![no_main]

use berth_log::format::{encoded_record_len, SegmentHeader, RECORD_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = berth_log::decode_record(data) {
        assert!(RECORD_HEADER_LEN + record.payload.len() <= data.len());
        assert_eq!(record.encoded_len, encoded_record_len(record.payload.len()));
        assert_eq!(record.hashed_bytes.len(), 20 + record.payload.len());
        assert_ne!(record.seq.get(), 0);
    }
    let _ = SegmentHeader::decode(data);
});
