//! Damage in the middle of the log: a flipped byte gives a precise `Corruption` (segment file and
//! offset), Salvage keeps the prefix, and edits that keep CRCs valid (changed payload, removed,
//! inserted or reordered records) are caught by `verify` as `ChainBroken`.

mod common;

use berth_log::{Durability, EventLog, LogError, RecoveryMode, Seq};
use common::*;

fn write_log(dir: &std::path::Path, segment_size: u64, n_records: u64, payload_len: usize) {
    let (log, _) =
        EventLog::open(dir, options_with(segment_size, Durability::NoSync, RecoveryMode::TruncateTornTail)).unwrap();
    for seq in 1..=n_records {
        assert_eq!(log.append(&payload_for(seq, payload_len)).unwrap(), Seq(seq));
    }
}

fn edit_segment(path: &std::path::Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    edit(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
}

#[test]
fn flipped_byte_in_an_early_record_fails_open_with_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), SMALL_SEGMENT, 20, 100);
    let segment_path = segment_files(dir.path())[0].clone();
    let spans = record_spans(&std::fs::read(&segment_path).unwrap());
    let damaged = spans[2];
    edit_segment(&segment_path, |bytes| bytes[damaged.start + 56 + 10] ^= 0x01);

    let expect_corruption_at_record_3 = |result: Result<_, LogError>| match result {
        Err(LogError::Corruption { segment, offset, reason }) => {
            assert_eq!(segment, segment_path);
            assert_eq!(offset, damaged.start as u64);
            assert!(reason.contains("crc mismatch"), "{reason}");
        }
        Err(other) => panic!("expected Corruption, got {other}"),
        Ok(_) => panic!("expected Corruption, open succeeded"),
    };
    expect_corruption_at_record_3(EventLog::open(dir.path(), small_options(Durability::NoSync)).map(|_| ()));
    expect_corruption_at_record_3(berth_log::open_read_only(dir.path()).map(|_| ()));

    // Salvage keeps seqs 1 and 2, reports the cut, and keeps the cut bytes in a side file.
    let salvage = options_with(SMALL_SEGMENT, Durability::NoSync, RecoveryMode::Salvage);
    let (log, report) = EventLog::open(dir.path(), salvage).unwrap();
    assert_eq!(report.last_seq, Seq(2));
    assert_eq!(report.salvaged.len(), 1, "{:?}", report.salvaged);
    assert_eq!(report.salvaged[0].segment, segment_path);
    assert_eq!(report.salvaged[0].offset, damaged.start as u64);
    assert_eq!(report.salvaged[0].dropped_bytes, (spans[19].unpadded_end - damaged.start) as u64);
    assert!(std::fs::read_dir(dir.path()).unwrap().any(|entry| entry
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".salvaged-at-")));
    assert_eq!(log.append(b"after salvage").unwrap(), Seq(3));
    assert_eq!(log.verify().unwrap().n_records, 3);
    drop(log);
    let (_, report) = EventLog::open(dir.path(), small_options(Durability::NoSync)).unwrap();
    assert_eq!((report.last_seq, report.torn_tail, report.salvaged.len()), (Seq(3), None, 0));
}

#[test]
fn flipped_byte_in_an_earlier_segment_is_reported_by_verify_and_readers_and_salvaged() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 4096, 200, 100);
    let files = segment_files(dir.path());
    assert!(files.len() >= 5, "expected several segments, got {}", files.len());
    let first_segment = files[0].clone();
    let spans = record_spans(&std::fs::read(&first_segment).unwrap());
    let damaged = spans[2];
    edit_segment(&first_segment, |bytes| bytes[damaged.start + 40] ^= 0x80);

    // Default open scans only the last segment, so it succeeds; verify and readers are precise.
    let (log, report) =
        EventLog::open(dir.path(), options_with(4096, Durability::NoSync, RecoveryMode::TruncateTornTail)).unwrap();
    assert_eq!(report.last_seq, Seq(200));
    match log.verify() {
        Err(LogError::Corruption { segment, offset, .. }) => {
            assert_eq!((segment, offset), (first_segment.clone(), damaged.start as u64))
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    let mut reader = log.reader(Seq(1)).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().seq, Seq(1));
    assert_eq!(reader.next().unwrap().unwrap().seq, Seq(2));
    match reader.next() {
        Some(Err(LogError::Corruption { segment, offset, .. })) => {
            assert_eq!((segment, offset), (first_segment.clone(), damaged.start as u64))
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    assert!(matches!(reader.next(), Some(Err(LogError::Corruption { .. }))), "the error repeats");
    // Readers starting in a later segment do not touch the damage.
    assert_eq!(read_all(&log, Seq(150)).len(), 51);
    drop(log);

    let (log, report) =
        EventLog::open(dir.path(), options_with(4096, Durability::NoSync, RecoveryMode::Salvage)).unwrap();
    assert_eq!(report.last_seq, Seq(2));
    assert_eq!(report.salvaged[0].segment, first_segment);
    assert_eq!(report.salvaged[0].offset, damaged.start as u64);
    assert_eq!(
        report.salvaged.len(),
        files.len() - 1,
        "every later segment (not the empty spare) is reported: {:?}",
        report.salvaged
    );
    assert_eq!(log.append(b"x").unwrap(), Seq(3));
    assert_eq!(log.verify().unwrap().last_seq, Seq(3));
    drop(log); // waits for the background preallocation of the next spare
    assert_eq!(segment_files(dir.path()).len(), 2, "first segment plus a fresh spare");
}

fn expect_chain_broken(dir: &std::path::Path, expected_seq: u64) {
    let (log, _) =
        EventLog::open(dir, small_options(Durability::NoSync)).expect("tampering with valid CRCs must not fail open");
    match log.verify() {
        Err(LogError::ChainBroken { seq, .. }) => assert_eq!(seq, Seq(expected_seq)),
        other => panic!("expected ChainBroken at seq {expected_seq}, got {other:?}"),
    }
}

#[test]
fn edited_payload_with_recomputed_crc_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), SMALL_SEGMENT, 10, 100);
    let segment_path = segment_files(dir.path())[0].clone();
    edit_segment(&segment_path, |bytes| {
        let span = record_spans(bytes)[4];
        bytes[span.start + 56] ^= 0xFF;
        fix_record_crc(bytes, span.start);
    });
    // Plain reads check CRC and seqs only, so the edit is invisible to them...
    let (log, _) = EventLog::open(dir.path(), small_options(Durability::NoSync)).unwrap();
    assert_eq!(read_all(&log, Seq(1)).len(), 10);
    // ...but a chain-checking reader and verify see it.
    let mut reader = log.reader(Seq(3)).unwrap().check_chain(true);
    let outcomes: Vec<_> =
        std::iter::from_fn(|| reader.next().map(|result| result.map(|record| record.seq))).take(3).collect();
    assert!(
        matches!(outcomes[..], [Ok(Seq(3)), Ok(Seq(4)), Err(LogError::ChainBroken { seq: Seq(5), .. })]),
        "{outcomes:?}"
    );
    drop(log);
    expect_chain_broken(dir.path(), 5);
}

#[test]
fn removed_record_with_renumbered_successors_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), SMALL_SEGMENT, 10, 100);
    let segment_path = segment_files(dir.path())[0].clone();
    edit_segment(&segment_path, |bytes| {
        let spans = record_spans(bytes);
        let removed = spans[4];
        let removed_len = removed.padded_end - removed.start;
        let end = spans[9].padded_end;
        bytes.copy_within(removed.padded_end..end, removed.start);
        bytes[end - removed_len..end].fill(0);
        for span in record_spans(bytes).iter().skip(4) {
            set_record_seq(bytes, span.start, span.seq - 1);
            fix_record_crc(bytes, span.start);
        }
    });
    expect_chain_broken(dir.path(), 5);
}

#[test]
fn inserted_record_with_renumbered_successors_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), SMALL_SEGMENT, 10, 100);
    let segment_path = segment_files(dir.path())[0].clone();
    edit_segment(&segment_path, |bytes| {
        let spans = record_spans(bytes);
        // Insert a copy of record 5 (with its own valid CRC) after record 5.
        let copied = bytes[spans[4].start..spans[4].padded_end].to_vec();
        let end = spans[9].padded_end;
        bytes.copy_within(spans[5].start..end, spans[5].start + copied.len());
        bytes[spans[5].start..spans[5].start + copied.len()].copy_from_slice(&copied);
        for (index, span) in record_spans(bytes).iter().enumerate() {
            set_record_seq(bytes, span.start, index as u64 + 1);
            fix_record_crc(bytes, span.start);
        }
    });
    expect_chain_broken(dir.path(), 6);
}

#[test]
fn swapped_records_break_the_chain() {
    // With seqs renumbered (so even seq continuity holds) in the last segment.
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), SMALL_SEGMENT, 10, 100);
    let segment_path = segment_files(dir.path())[0].clone();
    edit_segment(&segment_path, |bytes| {
        let spans = record_spans(bytes);
        let (fourth, fifth) = (spans[3], spans[4]);
        let fourth_bytes = bytes[fourth.start..fourth.padded_end].to_vec();
        bytes.copy_within(fifth.start..fifth.padded_end, fourth.start);
        bytes[fifth.start..fifth.padded_end].copy_from_slice(&fourth_bytes);
        set_record_seq(bytes, fourth.start, 4);
        set_record_seq(bytes, fifth.start, 5);
        fix_record_crc(bytes, fourth.start);
        fix_record_crc(bytes, fifth.start);
    });
    expect_chain_broken(dir.path(), 4);

    // Without renumbering, in an earlier segment (open does not scan it): seq continuity.
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 4096, 100, 100);
    let first_segment = segment_files(dir.path())[0].clone();
    edit_segment(&first_segment, |bytes| {
        let spans = record_spans(bytes);
        let (fourth, fifth) = (spans[3], spans[4]);
        let fourth_bytes = bytes[fourth.start..fourth.padded_end].to_vec();
        bytes.copy_within(fifth.start..fifth.padded_end, fourth.start);
        bytes[fifth.start..fifth.padded_end].copy_from_slice(&fourth_bytes);
    });
    let (log, _) =
        EventLog::open(dir.path(), options_with(4096, Durability::NoSync, RecoveryMode::TruncateTornTail)).unwrap();
    match log.verify() {
        Err(LogError::ChainBroken { seq, segment, reason, .. }) => {
            assert_eq!((seq, segment), (Seq(4), first_segment));
            assert!(reason.contains("expected seq 4, found seq 5"), "{reason}");
        }
        other => panic!("expected ChainBroken, got {other:?}"),
    }
}

/// `verify` splits the log into chunks checked on several threads. Whichever record is damaged,
/// and however the chunks are cut (the thread counts cut a segment into 1..=5 pieces, so the
/// damage sits at, right before, right after or between cuts), every thread count reports the
/// same first error as the single-threaded check.
#[test]
fn parallel_verify_finds_every_damaged_record_wherever_the_chunks_are_cut() {
    const SEGMENT: u64 = 8192;
    let n_records = 80; // 160-byte records: about 50 in the first segment, the rest in the second
    let first_segment_records = {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), SEGMENT, n_records, 100);
        record_spans(&std::fs::read(&segment_files(dir.path())[0]).unwrap()).len()
    };
    for damaged_idx in 0..first_segment_records {
        for edit_with_valid_crc in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            write_log(dir.path(), SEGMENT, n_records, 100);
            let first_segment = segment_files(dir.path())[0].clone();
            let damaged = record_spans(&std::fs::read(&first_segment).unwrap())[damaged_idx];
            edit_segment(&first_segment, |bytes| {
                bytes[damaged.start + 60] ^= 0x04;
                if edit_with_valid_crc {
                    fix_record_crc(bytes, damaged.start);
                }
            });
            let (log, _) =
                EventLog::open(dir.path(), options_with(SEGMENT, Durability::NoSync, RecoveryMode::TruncateTornTail))
                    .unwrap();
            for n_threads in [1, 2, 3, 5, 10] {
                let context =
                    format!("record {} damaged (valid crc: {edit_with_valid_crc}), {n_threads} threads", damaged.seq);
                match log.verify_with_threads(n_threads) {
                    Err(LogError::ChainBroken { seq, segment, offset, .. }) if edit_with_valid_crc => assert_eq!(
                        (seq, segment, offset),
                        (Seq(damaged.seq), first_segment.clone(), damaged.start as u64),
                        "{context}"
                    ),
                    Err(LogError::Corruption { segment, offset, .. }) if !edit_with_valid_crc => {
                        assert_eq!((segment, offset), (first_segment.clone(), damaged.start as u64), "{context}")
                    }
                    other => panic!("{context}: unexpected {other:?}"),
                }
            }
        }
    }
}

#[test]
fn parallel_verify_reports_what_single_threaded_verify_reports() {
    // One segment (cut inside it), several segments (one chunk each, or cut when threads
    // outnumber them), and an empty log.
    for (segment_size, n_records) in [(SMALL_SEGMENT, 300u64), (4096, 100), (SMALL_SEGMENT, 0), (SMALL_SEGMENT, 1)] {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), segment_size, n_records, 100);
        let (log, _) =
            EventLog::open(dir.path(), options_with(segment_size, Durability::NoSync, RecoveryMode::TruncateTornTail))
                .unwrap();
        let single = log.verify_with_threads(1).unwrap();
        assert_eq!(single.last_seq, Seq(n_records));
        for n_threads in [2, 3, 4, 7, 64] {
            assert_eq!(
                log.verify_with_threads(n_threads).unwrap(),
                single,
                "{n_records} records in {segment_size}-byte segments, {n_threads} threads"
            );
        }
        assert_eq!(log.verify().unwrap(), single);
        drop(log);
        let (read_only, _) = berth_log::open_read_only(dir.path()).unwrap();
        assert_eq!(read_only.verify_with_threads(3).unwrap(), single);
    }
}

/// Writes `junk` into `path` at `offset` in place (the file keeps its length).
fn write_in_place(path: &std::path::Path, offset: usize, junk: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(junk, offset as u64).unwrap();
}

/// What a reader can meet while berthd writes a batch: the next record's header still zero and
/// bytes after it already written. With the writer holding the log, a read-only open reads
/// again until the batch is whole; without one, or if it stays so, it is corruption.
#[test]
fn a_batch_in_flight_under_a_live_writer_is_read_again_and_lasting_damage_is_still_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) =
        EventLog::open(dir.path(), options_with(1 << 20, Durability::NoSync, RecoveryMode::TruncateTornTail)).unwrap();
    for seq in 1..=5 {
        log.append(&payload_for(seq, 100)).unwrap();
    }
    let segment_path = segment_files(dir.path())[0].clone();
    // Records 6 and 7 of a batch, as another log of the same shape has them: record 7 written,
    // record 6 not yet (its header zero).
    let other = tempfile::tempdir().unwrap();
    write_log(other.path(), 1 << 20, 7, 100);
    let other_bytes = std::fs::read(&segment_files(other.path())[0]).unwrap();
    let seventh = record_spans(&other_bytes)[6];
    let seventh_bytes = other_bytes[seventh.start..seventh.padded_end].to_vec();

    // The "batch" finishes (here: record 7's bytes go again) while the reader is rereading.
    write_in_place(&segment_path, seventh.start, &seventh_bytes);
    let finisher = {
        let segment_path = segment_path.clone();
        let zeros = vec![0u8; seventh_bytes.len()];
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(150));
            write_in_place(&segment_path, seventh.start, &zeros);
        })
    };
    let (read_only, _) = berth_log::open_read_only(dir.path()).expect("a live log's batch in flight is read again");
    finisher.join().unwrap();
    assert_eq!(read_only.last_seq(), Seq(5));

    // Damage that stays under a live writer is reported after the rereads.
    write_in_place(&segment_path, seventh.start, &seventh_bytes);
    match berth_log::open_read_only(dir.path()) {
        Err(LogError::Corruption { segment, .. }) => assert_eq!(segment, segment_path),
        other => panic!("expected Corruption under a live writer, got {:?}", other.map(|_| ())),
    }

    // Without a writer the first read says so.
    drop(log);
    match berth_log::open_read_only(dir.path()) {
        Err(LogError::Corruption { segment, .. }) => assert_eq!(segment, segment_path),
        other => panic!("expected Corruption without a writer, got {:?}", other.map(|_| ())),
    }
}
