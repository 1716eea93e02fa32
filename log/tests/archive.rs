//! Geometric segment sizes, archiving (compress, manifest, reopen, read and verify through the
//! archive), retention cuts, and tampering with archived segments and the manifest.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_log::{Durability, EventLog, LogError, LogOptions, RetentionPolicy, Seq, Timestamp, MANIFEST_FILE_NAME};
use common::*;

const RECORD_PAYLOAD: usize = 200;

/// A log whose segments are 4 KiB (about 15 records of 200 bytes each).
fn tiny_options() -> LogOptions {
    LogOptions { segment_size: 4096, initial_segment_size: 4096, ..small_options(Durability::NoSync) }
}

fn fill(log: &EventLog, n_records: u64) {
    let first = log.last_seq().0 + 1;
    for seq in first..first + n_records {
        assert_eq!(log.append(&payload_for(seq, RECORD_PAYLOAD)).unwrap(), Seq(seq));
    }
}

fn archive_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".seg.zst"))
        .collect();
    files.sort();
    files
}

/// A log of `n_records` records with the segments up to `through` archived; (temporary
/// directory, log directory, archive directory, log).
fn archived_log(n_records: u64, through: u64) -> (tempfile::TempDir, PathBuf, PathBuf, EventLog) {
    let parent = tempfile::tempdir().unwrap();
    let (log_dir, archive_dir) = (parent.path().join("log"), parent.path().join("archive"));
    let (log, _) = EventLog::open(&log_dir, tiny_options()).unwrap();
    fill(&log, n_records);
    log.archive(Seq(through), &archive_dir).unwrap();
    (parent, log_dir, archive_dir, log)
}

fn assert_reads_everything(log: &EventLog, last: u64) {
    let records = read_all(log, Seq(1));
    assert_eq!(records.len() as u64, last);
    for (seq, payload) in records {
        assert_eq!(payload, payload_for(seq.0, RECORD_PAYLOAD), "seq {seq}");
    }
}

#[test]
fn segments_grow_geometrically_and_a_fresh_log_takes_little_disk() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions { segment_size: 64 << 10, initial_segment_size: 8 << 10, ..tiny_options() };
    let (log, _) = EventLog::open(dir.path(), options.clone()).unwrap();
    log.prepare_next_segment().unwrap();
    let sizes = |dir: &Path| -> Vec<u64> {
        segment_files(dir).iter().map(|path| std::fs::metadata(path).unwrap().len()).collect()
    };
    assert_eq!(sizes(dir.path()), vec![8 << 10, 16 << 10], "segment 1 and its spare");
    fill(&log, 400); // 100 KiB of records: segments of 8, 16, 32, 64, then 64 KiB
    log.prepare_next_segment().unwrap();
    let found = sizes(dir.path());
    assert_eq!(&found[..4], &[8 << 10, 16 << 10, 32 << 10, 64 << 10]);
    assert!(found[4..].iter().all(|&size| size == 64 << 10), "{found:?}");
    // A record larger than the next geometric size gets a segment large enough for it.
    drop(log);
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = EventLog::open(dir.path(), options.clone()).unwrap();
    let big = payload_for(1, 30 << 10);
    log.append(b"small").unwrap();
    log.append(&big).unwrap();
    assert_eq!(read_all(&log, Seq(2))[0].1, big);
    drop(log);
    let (log, _) = EventLog::open(dir.path(), options).unwrap();
    assert_eq!(log.verify().unwrap().n_records, 2);
}

#[test]
fn archived_segments_are_read_and_verified_after_reopen() {
    let parent = tempfile::tempdir().unwrap();
    let (log_dir, archive_dir) = (parent.path().join("log"), parent.path().join("archive"));
    let (log, _) = EventLog::open(&log_dir, tiny_options()).unwrap();
    fill(&log, 100);
    let head_before = log.verify().unwrap().head_hash;
    let n_live_before = segment_files(&log_dir).len();

    // Bound 40: only segments whose last seq is at most 40 go.
    let report = log.archive(Seq(40), &archive_dir).unwrap();
    assert!(!report.archived.is_empty());
    assert!(report.archived.iter().all(|entry| entry.last_seq <= Seq(40)));
    let last_archived = report.archived.last().unwrap().last_seq;
    assert!(last_archived > Seq(25), "a 15-record segment ending after 25 but by 40: {last_archived}");
    assert_eq!(archive_files(&archive_dir).len(), report.archived.len());
    for entry in &report.archived {
        assert!(
            !log_dir.join(format!("{:020}.seg", entry.id.0)).exists(),
            "segment {} left the log directory",
            entry.id
        );
    }
    assert!(segment_files(&log_dir).len() >= n_live_before - report.archived.len());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&archive_dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);

    // The running log still reads and verifies from seq 1, through the archive.
    assert_reads_everything(&log, 100);
    let verify = log.verify().unwrap();
    assert_eq!((verify.n_records, verify.head_hash, verify.cut), (100, head_before, None));
    fill(&log, 20);
    drop(log);

    let (log, report) = EventLog::open(&log_dir, tiny_options()).unwrap();
    assert_eq!(report.last_seq, Seq(120));
    assert_reads_everything(&log, 120);
    // Archiving again continues where the manifest ends; bound below it archives nothing.
    assert!(log.archive(Seq(10), &archive_dir).unwrap().archived.is_empty());
    let more = log.archive(Seq(110), &archive_dir).unwrap();
    assert_eq!(more.archived[0].first_seq, last_archived.next());
    drop(log);

    let (read_only, _) = berth_log::open_read_only(&log_dir).unwrap();
    assert_eq!(read_only.verify().unwrap().n_records, 120);
    let mut reader = read_only.reader(Seq(3)).unwrap().check_chain(true);
    assert_eq!(reader.next().unwrap().unwrap().payload, payload_for(3, RECORD_PAYLOAD).as_slice());
}

#[test]
fn a_crash_between_manifest_and_removal_finishes_the_archiving_at_open() {
    let parent = tempfile::tempdir().unwrap();
    let (log_dir, archive_dir) = (parent.path().join("log"), parent.path().join("archive"));
    let (log, _) = EventLog::open(&log_dir, tiny_options()).unwrap();
    fill(&log, 60);
    let first_segment = segment_files(&log_dir)[0].clone();
    let copy = std::fs::read(&first_segment).unwrap();
    log.archive(Seq(20), &archive_dir).unwrap();
    drop(log);
    std::fs::write(&first_segment, copy).unwrap(); // as if the removal never happened
    let (log, _) = EventLog::open(&log_dir, tiny_options()).unwrap();
    assert!(!first_segment.exists());
    assert_reads_everything(&log, 60);
}

#[test]
fn a_missing_prefix_is_refused_unless_the_manifest_accounts_for_it() {
    let (parent, log_dir, archive_dir, log) = archived_log(60, 30);
    drop(log);

    // The manifest removed: the live log starts at a segment id above 1 with nothing behind it.
    let manifest_path = log_dir.join(MANIFEST_FILE_NAME);
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::remove_file(&manifest_path).unwrap();
    let error = berth_log::open_read_only(&log_dir).err().unwrap();
    assert!(
        matches!(error, LogError::Corruption { .. }) && error.to_string().contains("segment 1 is missing"),
        "{error}"
    );
    std::fs::write(&manifest_path, &manifest).unwrap();

    // The first live segment deleted too: the manifest does not account for it.
    let first_live = segment_files(&log_dir)[0].clone();
    let bytes = std::fs::read(&first_live).unwrap();
    std::fs::remove_file(&first_live).unwrap();
    let error = EventLog::open(&log_dir, tiny_options()).err().unwrap();
    assert!(error.to_string().contains("is missing"), "{error}");
    std::fs::write(&first_live, bytes).unwrap();

    // The archive directory gone (unmounted, say): a clear refusal naming it.
    let aside = parent.path().join("archive-aside");
    std::fs::rename(&archive_dir, &aside).unwrap();
    let error = EventLog::open(&log_dir, tiny_options()).err().unwrap();
    assert!(matches!(error, LogError::ArchiveMissing { .. }), "{error}");
    assert!(error.to_string().contains("archive directory") && error.is_damage(), "{error}");
    std::fs::rename(&aside, &archive_dir).unwrap();

    // One archived file deleted.
    let archived = archive_files(&archive_dir);
    let saved = std::fs::read(&archived[0]).unwrap();
    std::fs::remove_file(&archived[0]).unwrap();
    let error = berth_log::open_read_only(&log_dir).err().unwrap();
    assert!(matches!(error, LogError::ArchiveMissing { .. }) && error.to_string().contains("segment 1"), "{error}");
    std::fs::write(&archived[0], saved).unwrap();
    let (log, _) = EventLog::open(&log_dir, tiny_options()).unwrap();
    assert_eq!(log.verify().unwrap().n_records, 60);
}

#[test]
fn an_altered_archived_segment_is_detected_by_verify_and_by_readers() {
    let (_parent, log_dir, archive_dir, log) = archived_log(60, 45);
    drop(log);
    let second = archive_files(&archive_dir)[1].clone();
    let mut bytes = std::fs::read(&second).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&second, bytes).unwrap();

    let (read_only, _) = berth_log::open_read_only(&log_dir).unwrap();
    let error = read_only.verify().unwrap_err();
    assert!(matches!(&error, LogError::Corruption { segment, .. } if segment == &second), "{error}");
    assert!(error.to_string().contains("altered or replaced"), "{error}");
    let mut reader = read_only.reader(Seq(1)).unwrap();
    let outcome: Result<Vec<_>, _> = std::iter::from_fn(|| reader.next_owned()).collect();
    assert!(outcome.is_err(), "reading through the altered segment must fail");
}

#[test]
fn an_edited_manifest_is_refused() {
    let (_parent, log_dir, _archive_dir, log) = archived_log(80, 70);
    drop(log);
    let manifest_path = log_dir.join(MANIFEST_FILE_NAME);
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let lines: Vec<&str> = manifest.lines().collect();
    assert!(lines[0].starts_with("archive-dir ") && lines[1].starts_with("archived 1 1 "), "{manifest}");

    // A line removed (to hide an archived segment): the chain of entry hashes breaks.
    let without_second: String =
        lines.iter().enumerate().filter(|(idx, _)| *idx != 2).map(|(_, line)| format!("{line}\n")).collect();
    std::fs::write(&manifest_path, without_second).unwrap();
    let error = berth_log::open_read_only(&log_dir).err().unwrap();
    assert!(error.to_string().contains("manifest line 3") && error.to_string().contains("edited"), "{error}");

    // A number changed in place.
    let edited = manifest.replacen("archived 1 1 ", "archived 1 2 ", 1);
    std::fs::write(&manifest_path, edited).unwrap();
    assert!(EventLog::open(&log_dir, tiny_options()).is_err());

    std::fs::write(&manifest_path, manifest).unwrap();
    assert_eq!(berth_log::open_read_only(&log_dir).unwrap().0.verify().unwrap().n_records, 80);
}

#[test]
fn retention_cuts_the_history_and_verify_proves_continuity_from_the_cut() {
    let parent = tempfile::tempdir().unwrap();
    let (log_dir, archive_dir) = (parent.path().join("log"), parent.path().join("archive"));
    let (log, _) = EventLog::open(&log_dir, tiny_options()).unwrap();
    fill(&log, 100);
    let archived = log.archive(Seq(90), &archive_dir).unwrap().archived;
    assert!(archived.len() >= 4);

    // Nothing old enough: nothing dropped.
    let keep_all = RetentionPolicy { max_age: Some(Duration::from_secs(3600)), max_bytes: None };
    assert_eq!(log.apply_retention(&keep_all, Timestamp::now(), Seq(u64::MAX)).unwrap().cut, None);
    // Keep at most two archived files' worth of bytes.
    let budget = archived[archived.len() - 2..].iter().map(|entry| entry.file_len).sum::<u64>();
    let report = log
        .apply_retention(&RetentionPolicy { max_age: None, max_bytes: Some(budget) }, Timestamp::now(), Seq(u64::MAX))
        .unwrap();
    let cut = report.cut.unwrap();
    assert_eq!(report.dropped.len(), archived.len() - 2);
    assert_eq!(cut.seq, archived[archived.len() - 3].last_seq);
    assert_eq!(archive_files(&archive_dir).len(), 2);

    let verify = log.verify().unwrap();
    assert_eq!(verify.cut, Some((cut.seq, cut.hash)));
    assert_eq!((verify.first_seq, verify.last_seq, verify.n_records), (cut.seq.next(), Seq(100), 100 - cut.seq.0));
    assert!(
        matches!(log.reader(Seq(1)), Err(LogError::SeqNotFound { first_available, .. }) if first_available == cut.seq.next())
    );
    assert_eq!(log.chain_hash_at(cut.seq).unwrap(), cut.hash);
    fill(&log, 10);
    drop(log);

    let (log, _) = EventLog::open(&log_dir, tiny_options()).unwrap();
    let verify = log.verify().unwrap();
    assert_eq!((verify.cut.map(|(seq, _)| seq), verify.last_seq), (Some(cut.seq), Seq(110)));
    let records = read_all(&log, cut.seq.next());
    assert_eq!(records.first().unwrap().0, cut.seq.next());
    drop(log);

    // Hiding one more dropped segment by moving the cut: the manifest's chain breaks.
    let manifest_path = log_dir.join(MANIFEST_FILE_NAME);
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let next = &archived[archived.len() - 2];
    let cut_line = manifest.lines().last().unwrap().to_string();
    let forged = cut_line
        .replacen(&format!("cut {} {} ", cut.id, cut.seq), &format!("cut {} {} ", next.id, next.last_seq), 1)
        .replacen(&hex(&cut.hash), &hex(&next.last_hash), 1);
    std::fs::write(&manifest_path, manifest.replace(&cut_line, &forged)).unwrap();
    std::fs::remove_file(next.path()).unwrap();
    let error = berth_log::open_read_only(&log_dir).err().unwrap();
    assert!(error.to_string().contains("edited"), "{error}");
}

#[test]
fn max_age_drops_archived_segments_whose_records_are_old() {
    let parent = tempfile::tempdir().unwrap();
    let (log_dir, archive_dir) = (parent.path().join("log"), parent.path().join("archive"));
    let (log, _) = EventLog::open(&log_dir, tiny_options()).unwrap();
    fill(&log, 50);
    let archived = log.archive(Seq(50), &archive_dir).unwrap().archived;
    let in_a_day = Timestamp::from_ns(Timestamp::now().as_ns() + 86_400 * 1_000_000_000);
    let policy = RetentionPolicy { max_age: Some(Duration::from_secs(3600)), max_bytes: None };
    // Only what the bound (a checkpoint's seq) covers may go.
    let first_only = log.apply_retention(&policy, in_a_day, archived[0].last_seq).unwrap();
    assert_eq!(first_only.dropped, vec![archived[0].id]);
    let report = log.apply_retention(&policy, in_a_day, Seq(u64::MAX)).unwrap();
    assert_eq!(report.dropped.len(), archived.len() - 1);
    assert_eq!(log.verify().unwrap().cut.unwrap().0, archived.last().unwrap().last_seq);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn archiving_while_appenders_and_readers_run_loses_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let (log_dir, archive_dir) = (parent.path().join("log"), parent.path().join("archive"));
    let (log, _) = EventLog::open(&log_dir, tiny_options()).unwrap();
    let log = std::sync::Arc::new(log);
    let appenders: Vec<_> = (0..4u64)
        .map(|thread_idx| {
            let log = log.clone();
            std::thread::spawn(move || {
                for append_idx in 0..150 {
                    log.append(&payload_for(thread_idx * 1000 + append_idx, RECORD_PAYLOAD)).unwrap();
                }
            })
        })
        .collect();
    let reader_log = log.clone();
    let reader = std::thread::spawn(move || {
        let mut n_read = 0u64;
        let mut reader = reader_log.reader(Seq(1)).unwrap().check_chain(true);
        while n_read < 600 {
            match reader.next() {
                Some(record) => {
                    assert_eq!(record.unwrap().seq, Seq(n_read + 1));
                    n_read += 1;
                }
                None => std::thread::yield_now(),
            }
        }
    });
    let mut n_archived = 0;
    while log.last_seq() < Seq(600) {
        n_archived += log.archive(log.last_seq(), &archive_dir).unwrap().archived.len();
    }
    for appender in appenders {
        appender.join().unwrap();
    }
    reader.join().unwrap();
    n_archived += log.archive(log.last_seq(), &archive_dir).unwrap().archived.len();
    assert!(n_archived >= 30, "{n_archived} segments archived");
    assert_eq!(log.verify().unwrap().n_records, 600);
    drop(log);
    let (log, _) = EventLog::open(&log_dir, tiny_options()).unwrap();
    assert_eq!(log.verify().unwrap().n_records, 600);
    assert_eq!(read_all(&log, Seq(1)).len(), 600);
}
