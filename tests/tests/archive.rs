//! Log archiving with a real berthd: nothing is archived without a checkpoint the log vouches
//! for (a checkpoint file whose vouching record a crash lost moves nothing); once a clean stop
//! has written and vouched for one, the next berthd's archiver moves the finished segments it
//! covers to the archive directory; berthd keeps serving, restarts (kill -9) by replaying
//! through the archive, and berth-replay verifies and reads through it. A missing archive directory is refused
//! clearly; retention (`berthd --archive-now`) records a cut that `berth-replay verify` proves
//! continuity from. A full archive file system loses nothing and archiving resumes once there is
//! room. Segments are 64 KiB; namespaces carry 8 KiB labels of hex noise (so they do not
//! compress to nothing) to fill them.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use berth_tests::small_fs::{fill_up, mount_small_tmpfs};
use berth_tests::{eventually, tail, Daemon};

/// `extra` adds `[log]` keys. Checkpoints come only when berthd stops cleanly (the running
/// checkpointer's thresholds are out of reach), so each test says when there is one.
fn config(archive_dir: &Path, extra: &str) -> String {
    format!(
        "[log]\nsegment_size = 65536\narchive_interval_secs = 1\narchive_dir = {:?}\n{extra}\n\
         [checkpoint]\nevery_records = 1000000\nevery_seconds = 3600\n",
        archive_dir.display().to_string()
    )
}

/// 8 KiB of hex from a small xorshift generator: different for every `seed`.
fn noise_label(seed: u64) -> String {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let hex: String = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!("{:02x}", state as u8)
        })
        .collect();
    format!("noise={hex}")
}

fn create_namespaces(daemon: &Daemon, names: impl Iterator<Item = usize>) {
    for index in names {
        daemon.ok(&["namespace", "create", "--label", &noise_label(index as u64), &format!("ns-{index}")]);
    }
}

fn archived_files(archive_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(archive_dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".seg.zst"))
        .collect();
    names.sort();
    names
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(suffix))
                .collect()
        })
        .unwrap_or_default()
}

/// The log's last seq, from `berth-replay head` (SEQ:HASH).
fn head_seq(daemon: &Daemon) -> u64 {
    let output = daemon.replay(&["head"]);
    assert!(output.status.success(), "berth-replay head: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().split(':').next().unwrap().parse().unwrap_or_else(|error| panic!("{error}: {text}"))
}

fn checkpoint_files(daemon: &Daemon) -> Vec<PathBuf> {
    let dir = daemon.root.join("checkpoints");
    files_ending(&dir, ".ckpt").into_iter().map(|name| dir.join(name)).collect()
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn namespace_names(daemon: &Daemon) -> Vec<String> {
    let listed = daemon.ok(&["namespace", "ls", "--output", "json"]);
    let value: serde_json::Value = serde_json::from_str(&listed).unwrap_or_else(|error| panic!("{error}: {listed}"));
    value.as_array().unwrap().iter().filter_map(|namespace| namespace["name"].as_str().map(str::to_string)).collect()
}

/// Runs berthd (the stopped daemon's root and config) with extra flags, to completion.
fn berthd_once(daemon: &Daemon, flags: &[&str]) -> Output {
    daemon.berthd_command().args(flags).stdin(std::process::Stdio::null()).output().expect("run berthd")
}

#[test]
fn a_running_berthd_archives_what_a_checkpoint_covers_and_everything_still_reads() {
    let mut archive_dir = PathBuf::new();
    let mut daemon = Daemon::start_with_config(|dir| {
        archive_dir = dir.join("archive");
        config(&archive_dir, "")
    });
    let log_dir = daemon.root.join("log");
    create_namespaces(&daemon, 0..40);
    let state_before = daemon.state_dump();

    // No checkpoint: the archiver (every second) moves nothing.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(archived_files(&archive_dir).is_empty(), "nothing is archived without a checkpoint");

    // A clean stop writes a checkpoint and its vouching record; the next berthd starts from it
    // and its archiver moves the finished segments the checkpoint covers.
    let covered = head_seq(&daemon);
    daemon.stop();
    assert!(!checkpoint_files(&daemon).is_empty(), "a clean stop writes a checkpoint");
    daemon.start_again();
    assert!(daemon.daemon_log().contains("started from a checkpoint"), "{}", tail(&daemon.daemon_log(), 20));
    // Once a pass has said what it archived, its copies are done (no `.tmp` left mid-copy).
    eventually(Duration::from_secs(30), "an archiver pass that moved segments", || {
        daemon.daemon_log().contains("segment(s), seqs").then_some(())
    });
    let archived = archived_files(&archive_dir);
    assert!(archived.len() >= 3, "{archived:?}");
    assert_eq!(archived[0], "00000000000000000001.seg.zst");
    assert!(!log_dir.join("00000000000000000001.seg").exists(), "segment 1 left the log directory");
    assert!(log_dir.join("archive.manifest").is_file());
    assert!(files_ending(&archive_dir, ".tmp").is_empty());

    // While running: reads, writes, the event history from seq 1 (through the archive).
    assert!(namespace_names(&daemon).contains(&"ns-0".to_string()));
    create_namespaces(&daemon, 40..42);
    let events = daemon.ok(&["events"]);
    assert!(events.contains("ns-0") && events.contains("ns-41"), "{}", tail(&events, 5));
    let verify = daemon.replay(&["verify"]);
    let report = stdout_of(&verify);
    assert!(verify.status.success(), "{report}");
    assert!(report.contains("archived:") && report.contains("from genesis"), "{report}");
    let replay_events = stdout_of(&daemon.replay(&["events", "--to", "3"]));
    assert!(replay_events.contains("NamespaceCreated"), "{replay_events}");
    let at = daemon.replay(&["state", "--at", &covered.to_string(), "--json"]);
    assert!(at.status.success(), "{}", String::from_utf8_lossy(&at.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&at.stdout).unwrap(), state_before);

    // kill -9 and start again with no checkpoint: the full replay reads the archived prefix.
    daemon.kill9();
    for checkpoint in checkpoint_files(&daemon) {
        std::fs::remove_file(checkpoint).unwrap();
    }
    let log_before = daemon.daemon_log().len();
    daemon.start_again();
    let names = namespace_names(&daemon);
    assert!((0..42).all(|index| names.contains(&format!("ns-{index}"))), "{names:?}");
    let started = daemon.daemon_log()[log_before..].to_string();
    assert!(started.contains("log replayed") && !started.contains("started from a checkpoint"), "{started}");

    // The archive directory gone: berthd refuses to start and says where it should be.
    daemon.stop();
    let aside = daemon.dir.path().join("archive-aside");
    std::fs::rename(&archive_dir, &aside).unwrap();
    let refused = berthd_once(&daemon, &[]);
    let message = String::from_utf8_lossy(&refused.stderr).into_owned() + &stdout_of(&refused);
    assert!(!refused.status.success(), "berthd must not start without its archive");
    assert!(message.contains("archive directory") && message.contains(&archive_dir.display().to_string()), "{message}");
    let verify = daemon.replay(&["verify"]);
    assert!(!verify.status.success() && stdout_of(&verify).contains("DAMAGED"), "{}", stdout_of(&verify));
    std::fs::rename(&aside, &archive_dir).unwrap();

    // Retention (run by the operator while berthd is stopped, after the clean stop above wrote
    // and vouched for a checkpoint): keep at most one byte of archive, so everything the
    // checkpoint covers goes, and the cut is recorded.
    daemon.set_config(&config(&archive_dir, "retain_max_bytes = 1"));
    let retained = berthd_once(&daemon, &["--archive-now"]);
    let summary = stdout_of(&retained);
    assert!(retained.status.success(), "{summary}{}", String::from_utf8_lossy(&retained.stderr));
    assert!(summary.contains("retention dropped"), "{summary}");
    assert!(archived_files(&archive_dir).is_empty(), "{:?}", archived_files(&archive_dir));
    let verify = daemon.replay(&["verify"]);
    let report = stdout_of(&verify);
    assert!(verify.status.success(), "{report}");
    assert!(report.contains("verified from cut at seq"), "{report}");
    // The live records after the cut still read, and berthd starts from its checkpoint with
    // everything recorded.
    let cut: u64 = summary
        .split("the history now starts after seq ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no cut in {summary}"));
    let late = daemon.replay(&["events", "--from", &(cut + 1).to_string()]);
    assert!(late.status.success(), "{}", String::from_utf8_lossy(&late.stderr));
    daemon.start_again();
    let names = namespace_names(&daemon);
    assert!((0..42).all(|index| names.contains(&format!("ns-{index}"))), "{names:?}");
}

/// A checkpoint file written just before a crash, whose vouching record never reached the log,
/// is not used at the next start, which then needs every record it covers: neither
/// `berthd --archive-now` nor a running berthd's archiver may move those records on its word.
#[test]
fn a_checkpoint_the_log_does_not_vouch_for_archives_nothing() {
    let mut daemon = Daemon::unstarted(&[("BERTHD_FAILPOINT", "checkpoint-unvouched")]);
    let archive_dir = daemon.dir.path().join("archive");
    daemon.set_config(&config(&archive_dir, ""));
    daemon.start_again();
    create_namespaces(&daemon, 0..40);
    // SIGTERM: the last checkpoint is written, then the failpoint aborts before its record.
    daemon.send_sigterm();
    let status = daemon.wait_for_exit(Duration::from_secs(30));
    assert!(!status.success(), "berthd should have aborted at the failpoint");
    assert_eq!(checkpoint_files(&daemon).len(), 1, "the one checkpoint, written but not vouched for");

    let offline = berthd_once(&daemon, &["--archive-now"]);
    let summary = stdout_of(&offline);
    assert!(offline.status.success(), "{summary}{}", String::from_utf8_lossy(&offline.stderr));
    assert!(summary.contains("nothing archived"), "{summary}");
    assert!(archived_files(&archive_dir).is_empty(), "{:?}", archived_files(&archive_dir));

    daemon.set_env(&[]);
    daemon.start_again();
    assert!(daemon.daemon_log().contains("no record of the log vouches for it"), "{}", tail(&daemon.daemon_log(), 20));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(archived_files(&archive_dir).is_empty(), "{:?}", archived_files(&archive_dir));
    assert!(daemon.root.join("log").join("00000000000000000001.seg").is_file(), "segment 1 stays live");
    let names = namespace_names(&daemon);
    assert!((0..40).all(|index| names.contains(&format!("ns-{index}"))), "{names:?}");
}

#[test]
fn a_full_archive_file_system_loses_nothing_and_archiving_resumes() {
    let mut archive_fs = PathBuf::new();
    let mut daemon = Daemon::start_with_config(|dir| {
        archive_fs = mount_small_tmpfs(dir, "archivefs", 512);
        config(&archive_fs.join("archive"), "")
    });
    let archive_dir = archive_fs.join("archive");
    let log_dir = daemon.root.join("log");
    create_namespaces(&daemon, 0..30);
    let filler = fill_up(&archive_fs);
    let live_before = files_ending(&log_dir, ".seg").len();
    // A clean stop vouches for a checkpoint covering all of it; the next berthd tries to archive.
    daemon.stop();
    daemon.start_again();

    eventually(Duration::from_secs(30), "the archiver to report the full file system", || {
        daemon.daemon_log().contains("nothing recorded was lost").then_some(())
    });
    assert!(archived_files(&archive_dir).is_empty(), "{:?}", archived_files(&archive_dir));
    assert!(files_ending(&archive_dir, ".tmp").is_empty(), "a failed copy is removed");
    assert!(log_dir.join("00000000000000000001.seg").is_file(), "the live segment stays");
    assert!(files_ending(&log_dir, ".seg").len() >= live_before);
    create_namespaces(&daemon, 30..32);
    let verify = daemon.replay(&["verify"]);
    assert!(verify.status.success(), "{}", stdout_of(&verify));

    // Room again: the next pass archives.
    std::fs::remove_file(filler).unwrap();
    eventually(Duration::from_secs(30), "archiving after room came back", || {
        (!archived_files(&archive_dir).is_empty()).then_some(())
    });
    let names = namespace_names(&daemon);
    assert!((0..32).all(|index| names.contains(&format!("ns-{index}"))), "{names:?}");
    let verify = daemon.replay(&["verify"]);
    assert!(verify.status.success() && stdout_of(&verify).contains("archived:"), "{}", stdout_of(&verify));
}
