//! `berth-replay head` and `verify --expect SEQ:HASH`, berthd's anchor file, and a truncated
//! preallocated segment: verify must report every one of these as damage, never as "intact".

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_log::{Durability, EventLog, LogOptions};
use berth_projections::{Envelope, Event, Origin};

fn berth_replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth-replay")).args(args).output().expect("run berth-replay")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `root/log` with `n_records` envelopes in 4 KiB segments, written as berthd writes it (anchor
/// at `root/log.anchor`).
fn write_root(root: &Path, n_records: u64) -> PathBuf {
    let log_dir = root.join("log");
    let options = LogOptions {
        segment_size: 4096,
        durability: Durability::NoSync,
        anchor: Some(root.join(berth_log::ANCHOR_FILE_NAME)),
        ..LogOptions::default()
    };
    let (log, _) = EventLog::open(&log_dir, options).unwrap();
    for index in 0..n_records {
        let origin = Origin::Daemon { reason: "test".into(), answers: None };
        let event = Event::NamespaceCreated { name: format!("ns-{index}"), labels: Default::default() };
        log.append(&Envelope::new("", origin, vec![event]).encode()).unwrap();
    }
    log_dir
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn head_prints_a_point_that_verify_expect_proves_until_the_log_is_cut() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = write_root(root.path(), 60);
    let root_arg = root.path().to_str().unwrap();
    let head = berth_replay(&["--root", root_arg, "head"]);
    assert!(head.status.success(), "{}", text(&head));
    let point = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let (seq, hash) = point.split_once(':').expect("SEQ:HASH");
    assert_eq!(seq, "60");
    assert_eq!(hash.len(), 64);

    let verified = berth_replay(&["--root", root_arg, "verify", "--expect", &point]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains(&format!("expected:   {point} present")), "{}", text(&verified));
    assert!(text(&verified).contains("anchor:     60:"), "the anchor is checked too: {}", text(&verified));

    let forged = format!("{seq}:{}", "0".repeat(64));
    let refused = berth_replay(&["--root", root_arg, "verify", "--expect", &forged]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("the log was rewritten"), "{}", text(&refused));

    let unparsable = berth_replay(&["--root", root_arg, "verify", "--expect", "60-abc"]);
    assert!(!unparsable.status.success());
    assert!(text(&unparsable).contains("SEQ:HASH"), "{}", text(&unparsable));

    // Delete the active segment and the spare: the log alone looks intact and shorter ...
    let files = segment_files(&log_dir);
    for path in &files[files.len() - 2..] {
        std::fs::remove_file(path).unwrap();
    }
    let log_arg = log_dir.to_str().unwrap();
    let without_anchor = berth_replay(&["--log", log_arg, "verify"]);
    let copy = root.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for path in segment_files(&log_dir) {
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    let copy_verified = berth_replay(&["--log", copy.to_str().unwrap(), "verify"]);
    assert!(copy_verified.status.success(), "a copy without its anchor verifies: {}", text(&copy_verified));
    // ... but not against the published point, nor against berthd's anchor beside it.
    let cut = berth_replay(&["--log", copy.to_str().unwrap(), "verify", "--expect", &point]);
    assert!(!cut.status.success(), "{}", text(&cut));
    assert!(text(&cut).contains("MISSING: the log ends at seq"), "{}", text(&cut));
    assert!(!without_anchor.status.success(), "the anchor beside root/log is checked: {}", text(&without_anchor));
    assert!(text(&without_anchor).contains("anchor:"), "{}", text(&without_anchor));
}

#[test]
fn a_truncated_segment_is_reported_as_damage_not_intact() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = write_root(root.path(), 60);
    let files = segment_files(&log_dir);
    let active = &files[files.len() - 2];
    std::fs::OpenOptions::new().write(true).open(active).unwrap().set_len(200).unwrap();
    for strict in [false, true] {
        let mut args = vec!["--log", log_dir.to_str().unwrap(), "verify"];
        if strict {
            args.push("--strict");
        }
        let verified = berth_replay(&args);
        assert!(!verified.status.success(), "{}", text(&verified));
        assert!(text(&verified).contains("DAMAGED"), "{}", text(&verified));
        assert!(text(&verified).contains("shorter than its preallocated"), "{}", text(&verified));
    }
}
