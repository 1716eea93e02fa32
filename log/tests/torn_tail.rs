//! Cuts the last segment at every byte inside its last three records. Zeroing from the cut (what
//! a crash leaves) must recover exactly the complete records, report the torn tail at the right
//! offset, and let the log continue densely. Truncating the file (what no crash does: segments
//! are preallocated) must be refused, and `salvage` must keep exactly the complete records.

mod common;

use berth_log::{Durability, EventLog, LogError, Seq};
use common::*;

#[derive(Clone, Copy, Debug)]
enum CutKind {
    Truncate,
    ZeroFromCut,
}

#[test]
fn every_cut_in_the_last_three_records_recovers_the_exact_prefix() {
    let pristine = tempfile::tempdir().unwrap();
    let n_records = 12u64;
    let payloads: Vec<Vec<u8>> = (1..=n_records).map(|seq| payload_for(seq, 17 + (seq as usize * 13) % 40)).collect();
    {
        let (log, _) = EventLog::open(pristine.path(), small_options(Durability::Sync)).unwrap();
        for payload in &payloads {
            log.append(payload).unwrap();
        }
    }
    let segment_name = segment_files(pristine.path())[0].file_name().unwrap().to_owned();
    let pristine_bytes = std::fs::read(pristine.path().join(&segment_name)).unwrap();
    let spans = record_spans(&pristine_bytes);
    assert_eq!(spans.len(), n_records as usize);

    let first_cut = spans[spans.len() - 3].start;
    let last_cut = spans[spans.len() - 1].padded_end;
    let mut n_cases = 0;
    for cut in first_cut..=last_cut {
        for kind in [CutKind::Truncate, CutKind::ZeroFromCut] {
            let work = tempfile::tempdir().unwrap();
            copy_segments(pristine.path(), work.path());
            let segment_path = work.path().join(&segment_name);
            match kind {
                CutKind::Truncate => {
                    let file = std::fs::OpenOptions::new().write(true).open(&segment_path).unwrap();
                    file.set_len(cut as u64).unwrap();
                }
                CutKind::ZeroFromCut => {
                    let mut bytes = std::fs::read(&segment_path).unwrap();
                    bytes[cut..].fill(0);
                    std::fs::write(&segment_path, &bytes).unwrap();
                }
            }

            let n_complete = spans.iter().filter(|span| span.unpadded_end <= cut).count();
            let expected_offset = if n_complete == 0 { 80 } else { spans[n_complete - 1].padded_end };
            let lost = &pristine_bytes[expected_offset.min(cut)..cut];
            let expected_dropped = lost.iter().rposition(|&byte| byte != 0).map_or(0, |last| last + 1) as u64;
            let expect_torn = expected_dropped > 0;
            let context = format!("cut at {cut} ({kind:?})");

            if matches!(kind, CutKind::Truncate) {
                // A short preallocated file is damage (berth never shortens one): refused, and
                // `salvage` keeps exactly the complete records, moving the cut log aside.
                match EventLog::open(work.path(), small_options(Durability::NoSync)) {
                    Err(LogError::Corruption { segment, reason, .. }) => {
                        assert_eq!(segment, segment_path, "{context}");
                        assert!(reason.contains("shorter than its preallocated"), "{context}: {reason}");
                    }
                    Err(other) => panic!("{context}: expected Corruption, got {other}"),
                    Ok(_) => panic!("{context}: a truncated segment was opened as a torn tail"),
                }
                assert!(berth_log::open_read_only(work.path()).is_err(), "{context}: read-only open accepted it");
                let salvaged = berth_log::salvage(work.path(), &small_options(Durability::NoSync))
                    .unwrap_or_else(|error| panic!("{context}: {error}"));
                assert_eq!(salvaged.kept_through, Seq(n_complete as u64), "{context}");
                assert!(salvaged.damage.is_some(), "{context}");
                let aside = salvaged.moved_aside_to.expect("moved aside");
                assert_eq!(std::fs::metadata(aside.join(&segment_name)).unwrap().len(), cut as u64, "{context}");
                let (log, report) = EventLog::open(work.path(), small_options(Durability::NoSync)).unwrap();
                assert_eq!(report.last_seq, Seq(n_complete as u64), "{context}");
                let survivors = read_all(&log, Seq(1));
                for (index, (_, payload)) in survivors.iter().enumerate() {
                    assert_eq!(payload, &payloads[index], "{context}");
                }
                assert_eq!(log.append(b"continued").unwrap(), Seq(n_complete as u64 + 1), "{context}");
                n_cases += 1;
                continue;
            }

            let (log, report) = EventLog::open(work.path(), small_options(Durability::NoSync))
                .unwrap_or_else(|error| panic!("{context}: {error}"));
            assert_eq!(report.last_seq, Seq(n_complete as u64), "{context}");
            match (&report.torn_tail, expect_torn) {
                (Some(torn), true) => {
                    assert_eq!(torn.offset, expected_offset as u64, "{context}");
                    assert_eq!(torn.dropped_bytes, expected_dropped, "{context}");
                    assert_eq!(torn.segment, segment_path, "{context}");
                }
                (None, false) => {}
                (other, _) => panic!("{context}: expected torn tail {expect_torn}, got {other:?}"),
            }
            let survivors = read_all(&log, Seq(1));
            assert_eq!(survivors.len(), n_complete, "{context}");
            for (index, (seq, payload)) in survivors.iter().enumerate() {
                assert_eq!(*seq, Seq(index as u64 + 1), "{context}");
                assert_eq!(payload, &payloads[index], "{context}");
            }

            let continued = payload_for(1000, 33);
            assert_eq!(log.append(&continued).unwrap(), Seq(n_complete as u64 + 1), "{context}");
            drop(log);
            let (log, report) = EventLog::open(work.path(), small_options(Durability::NoSync)).unwrap();
            assert_eq!(report.torn_tail, None, "{context}");
            assert_eq!(report.last_seq, Seq(n_complete as u64 + 1), "{context}");
            let records = read_all(&log, Seq(1));
            assert_eq!(records.len(), n_complete + 1, "{context}");
            assert_eq!(records.last().unwrap().1, continued, "{context}");
            assert_eq!(log.verify().unwrap().n_records, n_complete as u64 + 1, "{context}");
            n_cases += 1;
        }
    }
    assert!(n_cases > 200, "only {n_cases} cuts were tried");
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail_and_read_only_open_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = EventLog::open(dir.path(), small_options(Durability::NoSync)).unwrap();
        for seq in 1..=5 {
            log.append(&payload_for(seq, 40)).unwrap();
        }
    }
    let segment_path = segment_files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&segment_path).unwrap();
    let end = record_spans(&bytes).last().unwrap().padded_end;
    bytes[end..end + 30].fill(0xAB);
    std::fs::write(&segment_path, &bytes).unwrap();

    let (read_only, report) = berth_log::open_read_only(dir.path()).unwrap();
    let torn = report.torn_tail.expect("torn tail reported");
    assert_eq!((torn.offset, torn.dropped_bytes), (end as u64, 30));
    assert_eq!(read_only.last_seq(), Seq(5));
    assert_eq!(read_only.verify().unwrap().n_records, 5);
    assert_eq!(std::fs::read(&segment_path).unwrap(), bytes, "read-only open changed the file");

    let (log, report) = EventLog::open(dir.path(), small_options(Durability::NoSync)).unwrap();
    assert_eq!(report.torn_tail.map(|torn| (torn.offset, torn.dropped_bytes)), Some((end as u64, 30)));
    assert!(
        std::fs::read(&segment_path).unwrap()[end..end + 30].iter().all(|&byte| byte == 0),
        "the torn tail was not zeroed"
    );
    assert_eq!(log.append(b"next").unwrap(), Seq(6));
}
