//! Projection checkpoints with the real berthd: a start from a checkpoint serves what a full
//! replay serves (containers, images, volumes, tasks — and a running container is still the same
//! process); a checkpoint that is damaged, belongs to another log, comes from another event
//! schema or was edited and resealed is ignored with a warning naming why, and the state served
//! is still right; a berthd killed while writing one leaves nothing that is used.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::{eventually, tail, Daemon};
use sha2::{Digest, Sha256};

/// Checkpoints only when the test asks for them: at a clean stop, or after 5 records.
const AT_STOP_ONLY: &str = "[checkpoint]\nevery_records = 1000000\nevery_seconds = 3600\n";
const EVERY_FIVE: &str = "[checkpoint]\nevery_records = 5\nevery_seconds = 3600\n";
const DISABLED: &str = "[checkpoint]\nenabled = false\n";

/// What berthd serves, in the forms clients read: containers with their tasks, images, volumes.
fn served(daemon: &Daemon) -> Vec<serde_json::Value> {
    let parse = |args: &[&str]| -> serde_json::Value {
        let out = daemon.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|error| panic!("berth {args:?}: {error}: {out}"))
    };
    // `status` reads "exited (3) 4s ago": the moment of asking, not state (`task` holds it).
    let mut containers = daemon.ps();
    for container in &mut containers {
        container.as_object_mut().unwrap().remove("status");
    }
    vec![
        serde_json::Value::Array(containers),
        parse(&["image", "ls", "--output", "json"]),
        parse(&["volume", "ls", "--output", "json"]),
    ]
}

/// The state as berth-replay folds the whole log, without `last_seq` (each start records one).
fn full_replay(daemon: &Daemon) -> serde_json::Value {
    let mut dump = daemon.state_dump();
    dump.as_object_mut().unwrap().remove("last_seq");
    dump
}

fn checkpoints(daemon: &Daemon) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(daemon.root.join("checkpoints"))
        .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

fn newest_checkpoint(daemon: &Daemon) -> PathBuf {
    let found = checkpoints(daemon);
    let newest = found.iter().rev().find(|path| path.extension().is_some_and(|extension| extension == "ckpt"));
    newest.unwrap_or_else(|| panic!("no checkpoint in {found:?}:\n{}", tail(&daemon.daemon_log(), 30))).clone()
}

/// Starts berthd again and returns what it logged during this start.
fn start_and_log(daemon: &mut Daemon) -> String {
    let before = daemon.daemon_log().len();
    daemon.start_again();
    eventually(Duration::from_secs(30), "berthd logs that it serves", || {
        let log = daemon.daemon_log();
        log[before..].contains("serving").then(|| log[before..].to_string())
    })
}

/// Edits a checkpoint file and puts a valid checksum back, as anyone who can write the root can.
fn edit_and_reseal(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    edit(&mut bytes);
    let covered = bytes.len() - 32;
    let digest: [u8; 32] = Sha256::digest(&bytes[..covered]).into();
    bytes[covered..].copy_from_slice(&digest);
    std::fs::write(path, bytes).unwrap();
}

/// Some of everything: a running container, a created one, one that ran and exited, a volume.
fn populate(daemon: &Daemon) {
    daemon.import_busybox();
    daemon.ok(&["volume", "create", "keep"]);
    daemon.ok(&["run", "-d", "--name", "runs", "-v", "keep:/data", "busybox", "sleep", "1000"]);
    daemon.ok(&["create", "--name", "created", "busybox", "true"]);
    daemon.ok(&["run", "-d", "--name", "exited", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(daemon.ok(&["wait", "exited"]).trim(), "3");
}

#[test]
fn berthd_restarts_from_a_checkpoint_and_serves_what_a_full_replay_serves() {
    let mut daemon = Daemon::start_with_config(|_| AT_STOP_ONLY.to_string());
    populate(&daemon);
    let before = served(&daemon);
    assert!(checkpoints(&daemon).is_empty(), "no checkpoint before the stop: {:?}", checkpoints(&daemon));

    daemon.stop();
    let checkpoint = newest_checkpoint(&daemon);
    let dir_mode = std::fs::metadata(daemon.root.join("checkpoints")).unwrap().permissions().mode() & 0o777;
    let file_mode = std::fs::metadata(&checkpoint).unwrap().permissions().mode() & 0o777;
    assert_eq!((dir_mode, file_mode), (0o700, 0o600), "checkpoints are root's alone");
    let name = checkpoint.file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.len() == 25 && name[..20].bytes().all(|byte| byte.is_ascii_digit()), "{name}");

    let started = start_and_log(&mut daemon);
    assert!(started.contains("started from a checkpoint"), "{started}");
    assert_eq!(served(&daemon), before, "a start from the checkpoint serves the same state");
    // The log before the checkpoint is verified in the background once serving.
    eventually(Duration::from_secs(30), "the background verification", || {
        daemon.daemon_log().contains("the whole log verified").then_some(())
    });
    // And the container still works: a start from a checkpoint re-adopts it like any start.
    daemon.ok(&["exec", "runs", "true"]);

    let verified = daemon.replay(&["verify", "--checkpoints", daemon.root.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(verified.status.success(), "{report}{}", String::from_utf8_lossy(&verified.stderr));
    assert!(
        report.contains("equals the replay of the log to its seq") && report.contains("vouched for by record"),
        "{report}"
    );
    assert!(report.contains("checkpoints: consistent with the log"), "{report}");

    // The same root with checkpoints off: a full replay, the same state.
    let from_checkpoint = full_replay(&daemon);
    let served_from_checkpoint = served(&daemon);
    daemon.stop();
    daemon.set_config(DISABLED);
    let started = start_and_log(&mut daemon);
    assert!(!started.contains("started from a checkpoint"), "{started}");
    assert_eq!(served(&daemon), served_from_checkpoint, "a full replay serves the same state");
    assert_eq!(full_replay(&daemon), from_checkpoint);
}

#[test]
fn unusable_checkpoints_are_ignored_with_a_warning_naming_why_and_the_state_is_still_right() {
    let mut daemon = Daemon::start_with_config(|_| AT_STOP_ONLY.to_string());
    populate(&daemon);
    daemon.stop();
    let older = newest_checkpoint(&daemon);
    daemon.start_again();
    daemon.ok(&["create", "--name", "later", "busybox", "true"]);
    let expected = served(&daemon);

    type Edit = fn(&Path);
    let cases: [(&str, Edit, &str); 4] = [
        (
            "a flipped byte",
            |path| {
                let mut bytes = std::fs::read(path).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x20;
                std::fs::write(path, bytes).unwrap();
            },
            "its checksum does not match its contents",
        ),
        (
            "another log's chain hash",
            |path| edit_and_reseal(path, |bytes| bytes[24..56].copy_from_slice(&[0xab; 32])),
            "its chain hash is not the one record",
        ),
        (
            "another event schema",
            |path| {
                edit_and_reseal(path, |bytes| {
                    let schema = u16::from_le_bytes([bytes[12], bytes[13]]);
                    bytes[12..14].copy_from_slice(&(schema + 1).to_le_bytes());
                })
            },
            "it was written with event schema",
        ),
        (
            "an edited state with its checksum recomputed",
            |path| {
                edit_and_reseal(path, |bytes| {
                    // A container id in the state, renamed: still a valid state, not the log's.
                    let at = bytes.windows(5).position(|window| window == b"later").expect("the id in the state");
                    bytes[at..at + 5].copy_from_slice(b"LATER");
                })
            },
            "names another digest for the checkpoint",
        ),
    ];
    for (what, edit, reason) in cases {
        daemon.stop();
        let newest = newest_checkpoint(&daemon);
        assert_ne!(newest, older, "each stop writes a newer checkpoint");
        edit(&newest);
        let started = start_and_log(&mut daemon);
        assert!(
            started.contains("checkpoint ignored") && started.contains(reason),
            "{what}: expected a warning with {reason:?}:\n{started}"
        );
        if what == "a flipped byte" {
            assert!(started.contains("started from a checkpoint"), "{what}: the older one is used:\n{started}");
        }
        assert_eq!(served(&daemon), expected, "{what}: the state served is still the log's");
    }
    // Once the edited checkpoint is the newest, berth-replay calls it out.
    let verified = daemon.replay(&["verify", "--checkpoints", daemon.root.join("checkpoints").to_str().unwrap()]);
    let report = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(!verified.status.success() && report.contains("INCONSISTENT"), "{report}");
    assert_eq!(daemon.ps().iter().filter(|container| container["id"] == "LATER").count(), 0);
}

#[test]
fn a_berthd_killed_while_writing_a_checkpoint_leaves_nothing_that_is_used() {
    let mut daemon = Daemon::start_with_config(|_| EVERY_FIVE.to_string());
    daemon.set_env(&[("BERTHD_FAILPOINT", "checkpoint-write-partway")]);
    daemon.stop();
    daemon.start_again();
    daemon.import_busybox();
    for index in 0..6 {
        // The failpoint aborts berthd at the first checkpoint; a create may meet a dead socket.
        let _ = daemon.cli(&["create", "--name", &format!("c{index}"), "busybox", "true"]);
    }
    let status = daemon.wait_for_exit(Duration::from_secs(30));
    assert!(!status.success(), "berthd died at the failpoint");
    let left = checkpoints(&daemon);
    assert!(
        left.iter().any(|path| path.to_string_lossy().ends_with(".ckpt.tmp")) && newest_is_none(&left),
        "a half-written temporary file and no checkpoint: {left:?}"
    );
    let expected = full_replay(&daemon);
    let half_written: Vec<_> = left.iter().filter(|path| path.to_string_lossy().ends_with(".tmp")).cloned().collect();

    daemon.set_env(&[]);
    let started = start_and_log(&mut daemon);
    assert!(started.contains("half-written"), "{started}");
    assert!(!started.contains("started from a checkpoint"), "{started}");
    // The new berthd may be writing a checkpoint of its own by now: only the crash's are checked.
    assert!(half_written.iter().all(|path| !path.exists()), "{half_written:?}");
    assert_eq!(full_replay(&daemon)["namespaces"], expected["namespaces"], "the log's state, nothing lost");
    let ids: Vec<String> = daemon.ps().iter().map(|container| container["id"].as_str().unwrap().to_string()).collect();
    let recorded = expected["namespaces"]["default"]["containers"].as_object().map_or(0, |containers| containers.len());
    assert!(recorded > 0);
    assert_eq!(ids.len(), recorded, "every recorded container is served: {ids:?}");

    // Killed after the file was written but before its vouching record: written, never used.
    daemon.stop();
    daemon.set_env(&[("BERTHD_FAILPOINT", "checkpoint-unvouched")]);
    daemon.start_again();
    for index in 6..12 {
        let _ = daemon.cli(&["create", "--name", &format!("c{index}"), "busybox", "true"]);
    }
    daemon.wait_for_exit(Duration::from_secs(30));
    let unvouched = newest_checkpoint(&daemon);
    daemon.set_env(&[]);
    let started = start_and_log(&mut daemon);
    assert!(
        started.contains(unvouched.to_str().unwrap()) && started.contains("no record of the log vouches for it"),
        "{started}"
    );
    let served_ids = daemon.ps().len();
    let replayed = full_replay(&daemon)["namespaces"]["default"]["containers"].as_object().map_or(0, |c| c.len());
    assert_eq!(served_ids, replayed);
}

fn newest_is_none(paths: &[PathBuf]) -> bool {
    !paths.iter().any(|path| path.extension().is_some_and(|extension| extension == "ckpt"))
}

/// berthd's CPU time so far, in clock ticks (utime + stime of /proc/<pid>/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_checkpoint_follows_new_records_after_every_seconds_and_an_idle_berthd_stays_idle() {
    let daemon = Daemon::start_with_config(|_| "[checkpoint]\nevery_records = 1000000\nevery_seconds = 1\n".into());
    daemon.import_busybox();
    daemon.ok(&["create", "--name", "one", "busybox", "true"]);
    let checkpoint = eventually(Duration::from_secs(20), "a checkpoint after a second", || {
        checkpoints(&daemon).into_iter().find(|path| path.extension().is_some_and(|extension| extension == "ckpt"))
    });
    // Idle: nothing new, so no checkpoint and no busy timer.
    std::thread::sleep(Duration::from_secs(2));
    let (ticks_before, files_before) = (cpu_ticks(daemon.pid()), checkpoints(&daemon));
    std::thread::sleep(Duration::from_secs(3));
    let ticks_idle = cpu_ticks(daemon.pid()) - ticks_before;
    assert!(ticks_idle < 50, "berthd used {ticks_idle} ticks of CPU in 3 idle seconds");
    assert_eq!(checkpoints(&daemon), files_before, "no checkpoint without new records");
    assert!(files_before.contains(&checkpoint));
    let verified = daemon.replay(&["verify", "--checkpoints", daemon.root.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(verified.status.success() && report.contains("vouched for by record"), "{report}");
}
