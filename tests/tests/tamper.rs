//! The log refuses to lie: with the real berthd, a payload edited with its CRC recomputed, a
//! deleted active segment (spare still there), a truncated segment, and a tail deleted together
//! with its spare each stop berthd at start-up with a message that names the damage and a remedy
//! that exists; `berthd --salvage` is that remedy, and berthd then serves the verified prefix.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::Daemon;

/// A berthd whose log has 4 KiB segments (a few records each) and `n_namespaces` namespaces
/// created through the CLI; stopped cleanly at the end.
fn stopped_daemon_with_small_segments(n_namespaces: usize) -> Daemon {
    let mut daemon = Daemon::start();
    daemon.stop();
    // The first start made a 64 MiB segment; start over so every segment is small.
    std::fs::remove_dir_all(daemon.root.join("log")).unwrap();
    match std::fs::remove_file(daemon.root.join("log.anchor")) {
        Ok(()) => {}
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::NotFound, "removing the anchor: {error}"),
    }
    daemon.set_config("[log]\nsegment_size = 4096\n");
    daemon.start_again();
    for index in 0..n_namespaces {
        daemon.ok(&["namespace", "create", &format!("tenant-{index:02}")]);
    }
    daemon.stop();
    daemon
}

fn berthd(daemon: &Daemon) -> Command {
    let mut command = daemon.berthd_command();
    command.stdin(Stdio::null());
    command
}

/// Starts berthd and expects it to refuse (exit non-zero by itself); returns what it printed.
fn start_expecting_refusal(daemon: &Daemon) -> String {
    let output_path = daemon.dir.path().join("refused.log");
    let output = std::fs::File::create(&output_path).unwrap();
    let mut child = berthd(daemon).stdout(output.try_clone().unwrap()).stderr(output).spawn().expect("spawn berthd");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("berthd started on a damaged log:\n{}", std::fs::read_to_string(&output_path).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let printed = std::fs::read_to_string(&output_path).unwrap();
    assert!(!status.success(), "berthd exited 0 on a damaged log:\n{printed}");
    assert!(!printed.contains("RecoveryMode"), "an internal name reached the operator:\n{printed}");
    assert!(printed.contains(&format!("berthd --root {} --salvage", daemon.root.display())), "{printed}");
    assert!(printed.contains("berth-replay --root"), "{printed}");
    printed
}

fn salvage(daemon: &Daemon) -> String {
    let output = berthd(daemon).arg("--salvage").output().expect("run berthd --salvage");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "berthd --salvage failed:\n{printed}");
    printed
}

fn segment_files(log_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(log_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect();
    files.sort();
    files
}

fn namespaces(daemon: &Daemon) -> String {
    daemon.ok(&["namespace", "ls"])
}

/// The start of the record whose payload holds `needle`, found by walking the record layout of
/// docs/log-format.md.
fn record_holding(bytes: &[u8], needle: &[u8]) -> Option<(usize, usize)> {
    let mut offset = 80;
    while offset + 56 <= bytes.len() && bytes[offset..offset + 56].iter().any(|&byte| byte != 0) {
        let len = u32::from_le_bytes(bytes[offset + 36..offset + 40].try_into().unwrap()) as usize;
        let payload = &bytes[offset + 56..offset + 56 + len];
        if let Some(at) = payload.windows(needle.len()).position(|window| window == needle) {
            return Some((offset, offset + 56 + at));
        }
        offset = (offset + 56 + len).next_multiple_of(8);
    }
    None
}

#[test]
fn an_edited_payload_with_its_crc_recomputed_stops_berthd_and_salvage_keeps_the_prefix() {
    let mut daemon = stopped_daemon_with_small_segments(30);
    let log_dir = daemon.root.join("log");
    let (segment, mut bytes, start, at) = segment_files(&log_dir)
        .into_iter()
        .find_map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let (start, at) = record_holding(&bytes, b"tenant-05")?;
            Some((path, bytes, start, at))
        })
        .expect("the record creating tenant-05");
    bytes[at..at + 9].copy_from_slice(b"tenant-99");
    let len = u32::from_le_bytes(bytes[start + 36..start + 40].try_into().unwrap()) as usize;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[start..start + 32]);
    crc.update(&bytes[start + 36..start + 56 + len]);
    bytes[start + 32..start + 36].copy_from_slice(&crc.finalize().to_le_bytes());
    std::fs::write(&segment, &bytes).unwrap();

    // The clean stop left a checkpoint after the edited record: berthd starts from it, and the
    // background verification of the log before it stops berthd and removes the checkpoints.
    let refused = start_expecting_refusal(&daemon);
    assert!(refused.contains("hash chain broken at seq"), "{refused}");
    let checkpoints_left = std::fs::read_dir(daemon.root.join("checkpoints")).map_or(0, |entries| entries.count());
    assert_eq!(checkpoints_left, 0, "checkpoints of a damaged log are removed");
    let refused = start_expecting_refusal(&daemon);
    assert!(refused.contains("hash chain broken at seq"), "refused again, now before serving: {refused}");
    let verified = daemon.replay(&["verify"]);
    assert!(!verified.status.success());
    assert!(String::from_utf8_lossy(&verified.stdout).contains("DAMAGED"));

    let salvaged = salvage(&daemon);
    assert!(salvaged.contains("kept records 1..="), "{salvaged}");
    let damaged_copies: Vec<_> = std::fs::read_dir(&daemon.root)
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("log.damaged-"))
        .collect();
    assert_eq!(damaged_copies.len(), 1, "the damaged log is kept aside");
    daemon.start_again();
    let listed = namespaces(&daemon);
    assert!(listed.contains("tenant-04"), "{listed}");
    assert!(!listed.contains("tenant-05") && !listed.contains("tenant-99"), "{listed}");
    daemon.ok(&["namespace", "create", "after-salvage"]);
}

#[test]
fn a_deleted_active_segment_with_the_spare_still_there_stops_berthd() {
    let mut daemon = stopped_daemon_with_small_segments(30);
    let files = segment_files(&daemon.root.join("log"));
    assert!(files.len() >= 3, "expected two segments and the spare: {files:?}");
    std::fs::remove_file(&files[files.len() - 2]).unwrap(); // the last file is the spare
    let refused = start_expecting_refusal(&daemon);
    assert!(refused.contains("is missing"), "{refused}");
    salvage(&daemon);
    daemon.start_again();
    assert!(namespaces(&daemon).contains("tenant-00"));
}

#[test]
fn a_truncated_segment_stops_berthd_and_verify_reports_it() {
    let daemon = stopped_daemon_with_small_segments(30);
    let log_dir = daemon.root.join("log");
    let files = segment_files(&log_dir);
    let active = &files[files.len() - 2];
    std::fs::OpenOptions::new().write(true).open(active).unwrap().set_len(300).unwrap();
    let refused = start_expecting_refusal(&daemon);
    assert!(refused.contains("shorter than its preallocated"), "{refused}");
    let verified = daemon.replay(&["verify"]);
    let printed = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(!verified.status.success() && printed.contains("DAMAGED"), "{printed}");
    assert!(!printed.contains("intact ("), "{printed}");
}

#[test]
fn a_tail_deleted_with_its_spare_is_caught_by_the_anchor_and_by_a_published_head() {
    let mut daemon = stopped_daemon_with_small_segments(30);
    let head = daemon.replay(&["head"]);
    assert!(head.status.success(), "{}", String::from_utf8_lossy(&head.stderr));
    let point = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let files = segment_files(&daemon.root.join("log"));
    for path in &files[files.len() - 2..] {
        std::fs::remove_file(path).unwrap();
    }
    let refused = start_expecting_refusal(&daemon);
    assert!(refused.contains("anchor"), "{refused}");
    assert!(refused.contains("the log ends at seq"), "{refused}");
    let expected = daemon.replay(&["verify", "--expect", &point]);
    assert!(!expected.status.success(), "{}", String::from_utf8_lossy(&expected.stdout));

    let salvaged = salvage(&daemon);
    assert!(salvaged.contains("the anchor said seq"), "{salvaged}");
    daemon.start_again();
    assert!(namespaces(&daemon).contains("tenant-00"));
}
