//! The log's file system fills up: berthd keeps serving reads, refuses writes with
//! RESOURCE_EXHAUSTED, leaves no `.seg.tmp` behind, starts again with the disk still full, and
//! accepts writes again by itself once there is room. The log lives on a real 3 MiB tmpfs of its
//! own (`[log] dir`), with 1 MiB segments.

use std::path::{Path, PathBuf};

use berth_tests::small_fs::{fill_up, mount_small_tmpfs};
use berth_tests::{tail, Daemon};

const SEGMENT_SIZE: u64 = 1 << 20;

fn leftover_temporary_segments(log_dir: &Path) -> Vec<String> {
    std::fs::read_dir(log_dir)
        .expect("list the log directory")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

fn namespace_names(daemon: &Daemon) -> Vec<String> {
    let listed = daemon.ok(&["namespace", "ls", "--output", "json"]);
    let value: serde_json::Value = serde_json::from_str(&listed).unwrap_or_else(|error| panic!("{error}: {listed}"));
    value
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|namespace| namespace["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_full_log_file_system_refuses_writes_keeps_reads_and_resumes_by_itself() {
    let mut mount_point = PathBuf::new();
    let mut daemon = Daemon::start_with_config(|dir| {
        mount_point = mount_small_tmpfs(dir, "logfs", 3 * 1024);
        format!("[log]\ndir = {:?}\nsegment_size = {SEGMENT_SIZE}\n", mount_point.join("log").display().to_string())
    });
    let log_dir = mount_point.join("log");
    assert!(log_dir.join("00000000000000000001.seg").is_file(), "the log is on the small file system");
    // The active segment and its spare are preallocated; fill the rest.
    let filler = fill_up(&mount_point);

    // Records of ~16 KiB: the first rollover uses the spare made before the disk filled up, the
    // second finds no room for another segment.
    let big_label = format!("blob={}", "x".repeat(16 * 1024));
    let mut created = Vec::new();
    let refused = loop {
        let name = format!("ns-{}", created.len());
        let output = daemon.cli(&["namespace", "create", "--label", &big_label, &name]);
        if !output.status.success() {
            break (name, String::from_utf8_lossy(&output.stderr).into_owned());
        }
        created.push(name);
        assert!(created.len() < 200, "the small file system never filled up");
    };
    let (refused_name, message) = refused;
    assert!(created.len() > 64, "a rollover into the preallocated spare happened first: {}", created.len());
    assert!(message.contains("no room"), "the refusal says why: {message}");
    assert!(
        daemon.cli(&["version"]).status.success(),
        "berthd is still up after refusing:\n{}",
        tail(&daemon.daemon_log(), 20)
    );
    assert!(leftover_temporary_segments(&log_dir).is_empty(), "a failed preallocation leaves no .seg.tmp");
    // Reads go on, and the refused request left nothing behind in the projections.
    let names = namespace_names(&daemon);
    assert!(created.iter().all(|name| names.contains(name)), "every acknowledged namespace is listed");
    assert!(!names.contains(&refused_name), "the refused namespace is not in the state: {names:?}");
    assert!(daemon.ok(&["events"]).contains(&created[created.len() - 1]));
    let again = daemon.cli(&["namespace", "create", "small-one"]);
    assert!(!again.status.success(), "still full: still refused");

    // A restart with the file system still full serves reads.
    daemon.send_sigterm();
    daemon.wait_for_exit(std::time::Duration::from_secs(30));
    daemon.start_again();
    let names = namespace_names(&daemon);
    assert!(created.iter().all(|name| names.contains(name)), "reads after a restart on a full disk");
    assert!(leftover_temporary_segments(&log_dir).is_empty(), "no .seg.tmp after the restart either");

    // Room comes back: writes are accepted again without a restart.
    std::fs::remove_file(&filler).expect("remove the filler");
    daemon.ok(&["namespace", "create", "--label", &big_label, &refused_name]);
    daemon.ok(&["namespace", "create", "after-room"]);
    let names = namespace_names(&daemon);
    assert!(names.contains(&refused_name) && names.contains(&"after-room".to_string()), "{names:?}");
    let verified = std::process::Command::new(berth_tests::bin("berth-replay"))
        .args(["verify", "--log"])
        .arg(&log_dir)
        .output()
        .expect("run berth-replay");
    assert!(verified.status.success(), "the log verifies: {}", String::from_utf8_lossy(&verified.stdout));
}
