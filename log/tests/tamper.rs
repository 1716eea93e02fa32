//! Damage that a crash cannot cause must be refused at open, not taken for the end of the log:
//! a deleted segment (a gap in segment ids, the spare still there), a truncated preallocated
//! segment, and — with an anchor outside the log directory — a tail cut off together with its
//! spare or a log rewritten from some point on. `salvage` is the remedy and keeps the verified
//! prefix.

mod common;

use std::path::{Path, PathBuf};

use berth_log::{read_anchor, Anchor, Durability, EventLog, LogError, LogOptions, RecoveryMode, Seq};
use common::*;

fn anchored(dir: &Path) -> (PathBuf, LogOptions) {
    let anchor = dir.join("log.anchor");
    let options = LogOptions {
        segment_size: 4096,
        initial_segment_size: 4096,
        durability: Durability::Sync,
        recovery: RecoveryMode::TruncateTornTail,
        anchor: Some(anchor.clone()),
    };
    (anchor, options)
}

/// A log of `n_records` 100-byte records in 4 KiB segments (about 30 records each).
fn write_log(log_dir: &Path, options: &LogOptions, n_records: u64) {
    let (log, _) = EventLog::open(log_dir, options.clone()).unwrap();
    for seq in 1..=n_records {
        assert_eq!(log.append(&payload_for(seq, 100)).unwrap(), Seq(seq));
    }
}

fn expect_corruption(result: Result<(EventLog, berth_log::OpenReport), LogError>, needle: &str) {
    match result {
        Err(LogError::Corruption { reason, .. }) => assert!(reason.contains(needle), "{reason}"),
        Err(other) => panic!("expected Corruption ({needle}), got {other}"),
        Ok((log, report)) => panic!("expected Corruption ({needle}), opened at seq {} ({report:?})", log.last_seq()),
    }
}

#[test]
fn deleting_the_active_segment_with_the_spare_still_there_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = root.path().join("log");
    let (_, options) = anchored(root.path());
    let options = LogOptions { anchor: None, ..options };
    write_log(&log_dir, &options, 100);
    let files = segment_files(&log_dir);
    let active = files[files.len() - 2].clone(); // the last file is the zero-filled spare
    std::fs::remove_file(&active).unwrap();

    expect_corruption(EventLog::open(&log_dir, options.clone()), "is missing");
    assert!(berth_log::open_read_only(&log_dir).is_err(), "read-only open accepted a gap");
    assert!(files.iter().filter(|path| **path != active).all(|path| path.exists()), "open removed a file");

    let report = berth_log::salvage(&log_dir, &options).unwrap();
    assert!(report.damage.as_deref().unwrap_or_default().contains("is missing"), "{report:?}");
    let (log, _) = EventLog::open(&log_dir, options).unwrap();
    assert_eq!(log.last_seq(), report.kept_through);
    assert_eq!(log.verify().unwrap().head_hash, report.head_hash);
}

#[test]
fn a_missing_first_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = options_with(4096, Durability::NoSync, RecoveryMode::TruncateTornTail);
    write_log(dir.path(), &options, 100);
    std::fs::remove_file(&segment_files(dir.path())[0]).unwrap();
    expect_corruption(EventLog::open(dir.path(), options), "segment 1 is missing");
}

#[test]
fn deleting_every_segment_but_the_spare_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = options_with(4096, Durability::NoSync, RecoveryMode::TruncateTornTail);
    write_log(dir.path(), &options, 100);
    let files = segment_files(dir.path());
    for path in &files[..files.len() - 1] {
        std::fs::remove_file(path).unwrap();
    }
    expect_corruption(EventLog::open(dir.path(), options), "is missing");
}

#[test]
fn a_truncated_earlier_segment_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = options_with(4096, Durability::NoSync, RecoveryMode::TruncateTornTail);
    write_log(dir.path(), &options, 100);
    let first = segment_files(dir.path())[0].clone();
    std::fs::OpenOptions::new().write(true).open(&first).unwrap().set_len(1000).unwrap();
    expect_corruption(EventLog::open(dir.path(), options), "shorter than its preallocated");
}

#[test]
fn the_anchor_follows_each_commit_and_a_log_cut_before_it_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = root.path().join("log");
    let (anchor_path, options) = anchored(root.path());
    write_log(&log_dir, &options, 100);
    let head = {
        let (log, _) = berth_log::open_read_only(&log_dir).unwrap();
        Anchor { seq: log.last_seq(), hash: log.verify().unwrap().head_hash }
    };
    assert_eq!(read_anchor(&anchor_path).unwrap(), Some(head), "the anchor is the last durable point");

    // Delete the active segment and the spare together: seen from inside, a shorter log.
    let files = segment_files(&log_dir);
    for path in &files[files.len() - 2..] {
        std::fs::remove_file(path).unwrap();
    }
    let without_anchor = LogOptions { anchor: None, ..options.clone() };
    {
        let (log, _) = berth_log::open_read_only(&log_dir).unwrap();
        assert!(log.last_seq() < Seq(100), "the cut removed records");
    }
    match EventLog::open(&log_dir, options.clone()) {
        Err(LogError::AnchorMismatch { anchor_seq, reason, .. }) => {
            assert_eq!(anchor_seq, Seq(100));
            assert!(reason.contains("the log ends at seq"), "{reason}");
        }
        Err(other) => panic!("expected AnchorMismatch, got {other}"),
        Ok(_) => panic!("a log cut before its anchor was opened"),
    }

    // The operator accepts the shorter log: salvage resets the anchor, and the log opens.
    let report = berth_log::salvage(&log_dir, &options).unwrap();
    assert_eq!(report.previous_anchor, Some(head));
    assert_eq!(report.moved_aside_to, None, "nothing inside the log is damaged");
    assert_eq!(read_anchor(&anchor_path).unwrap().map(|anchor| anchor.seq), Some(report.kept_through));
    let (log, _) = EventLog::open(&log_dir, options).unwrap();
    assert_eq!(log.last_seq(), report.kept_through);
    drop(log);
    drop(without_anchor);
}

#[test]
fn a_log_rewritten_from_an_earlier_point_does_not_match_its_anchor() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = root.path().join("log");
    let (_, options) = anchored(root.path());
    write_log(&log_dir, &options, 50);
    // Someone replaces the log with another one of the same length: every CRC and link is
    // valid, only the anchor can tell.
    std::fs::remove_dir_all(&log_dir).unwrap();
    {
        let (log, _) = EventLog::open(&log_dir, LogOptions { anchor: None, ..options.clone() }).unwrap();
        for seq in 1..=50 {
            log.append(&payload_for(seq + 1000, 100)).unwrap();
        }
    }
    match EventLog::open(&log_dir, options) {
        Err(LogError::AnchorMismatch { reason, .. }) => assert!(reason.contains("was rewritten"), "{reason}"),
        Err(other) => panic!("expected AnchorMismatch, got {other}"),
        Ok(_) => panic!("a rewritten log was opened"),
    }
}

#[test]
fn a_wiped_log_directory_is_refused_when_the_anchor_remains() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = root.path().join("log");
    let (_, options) = anchored(root.path());
    write_log(&log_dir, &options, 10);
    std::fs::remove_dir_all(&log_dir).unwrap();
    assert!(matches!(EventLog::open(&log_dir, options), Err(LogError::AnchorMismatch { .. })));
}

#[test]
fn a_torn_anchor_slot_falls_back_to_the_other_one() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = root.path().join("log");
    let (anchor_path, options) = anchored(root.path());
    write_log(&log_dir, &options, 7);
    let mut bytes = std::fs::read(&anchor_path).unwrap();
    assert_eq!(bytes.len() as u64, berth_log::ANCHOR_FILE_LEN);
    // The slot holding seq 7 is torn; the other holds an earlier durable point.
    let newest_slot = if u64::from_le_bytes(bytes[16..24].try_into().unwrap()) == 7 { 0 } else { 512 };
    bytes[newest_slot + 30] ^= 0xff;
    std::fs::write(&anchor_path, &bytes).unwrap();
    let anchor = read_anchor(&anchor_path).unwrap().unwrap();
    assert!(anchor.seq < Seq(7) && anchor.seq > Seq(0), "{anchor:?}");
    let (log, _) = EventLog::open(&log_dir, options).unwrap();
    assert_eq!(log.last_seq(), Seq(7));
}

#[test]
fn an_edited_payload_with_its_crc_recomputed_is_cut_by_salvage_at_the_broken_link() {
    let dir = tempfile::tempdir().unwrap();
    let options = options_with(4096, Durability::NoSync, RecoveryMode::TruncateTornTail);
    write_log(dir.path(), &options, 100);
    let first = segment_files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    let spans = record_spans(&bytes);
    let edited = spans[9];
    bytes[edited.start + 60] ^= 0x20;
    fix_record_crc(&mut bytes, edited.start);
    std::fs::write(&first, &bytes).unwrap();

    // Open scans only the tail; verify sees the broken link (berthd runs it at start-up).
    let (log, _) = EventLog::open(dir.path(), options.clone()).unwrap();
    assert!(matches!(log.verify(), Err(LogError::ChainBroken { seq: Seq(10), .. })));
    drop(log);
    let report = berth_log::salvage(dir.path(), &options).unwrap();
    assert_eq!(report.kept_through, Seq(9));
    let aside = report.moved_aside_to.expect("the damaged log is kept aside");
    assert_eq!(std::fs::read(aside.join(first.file_name().unwrap())).unwrap(), bytes, "the damaged log was changed");
    let (log, _) = EventLog::open(dir.path(), options).unwrap();
    let verified = log.verify().unwrap();
    assert_eq!((verified.last_seq, verified.head_hash), (Seq(9), report.head_hash));
    assert_eq!(
        read_all(&log, Seq(1)).iter().map(|(_, payload)| payload.clone()).collect::<Vec<_>>(),
        (1..=9).map(|seq| payload_for(seq, 100)).collect::<Vec<_>>()
    );
}
