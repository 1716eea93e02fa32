//! The schema contract: tests/fixtures/log-v1-schema2 is a log a real berthd wrote in event
//! schema 2 (scripts/make-fixture-log.sh), holding every kind of event berth recorded then.
//! Today's binaries must verify it, tell its history, fold its state — and berthd must start
//! on a copy of it and serve its containers. A later schema change that breaks this test breaks
//! every log already on disk.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::{bin, eventually, test_images, Daemon};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("log-v1-schema2").join("log")
}

/// A private copy of the fixture log (0700 / 0600, as berthd keeps its own), at `dir`.
fn copy_fixture(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(fixture_dir()).expect("the fixture log is in the repository") {
        let entry = entry.unwrap();
        let target = dir.join(entry.file_name());
        std::fs::copy(entry.path(), &target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn replay_ok(log_dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(bin("berth-replay"))
        .args(args)
        .arg("--log")
        .arg(log_dir)
        .output()
        .expect("run berth-replay");
    assert!(output.status.success(), "berth-replay {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// Every kind of event the fixture was made to hold (scripts/make-fixture-log.sh).
const FIXTURE_KINDS: &[&str] = &[
    "ContainerCreated",
    "ContainerDeleted",
    "ContainerUpdated",
    "ContentAdded",
    "ContentRemoved",
    "DaemonStarted",
    "ExecExited",
    "ExecRequested",
    "ExecStartFailed",
    "ExecStarted",
    "ImageCreated",
    "ImagePulled",
    "ImagePushed",
    "ImageRemoved",
    "ImageUpdated",
    "NamespaceCreated",
    "NamespaceRemoved",
    "OrphanRemoved",
    "SnapshotCommitted",
    "SnapshotRemoved",
    "TaskCreateFailed",
    "TaskCreateRequested",
    "TaskCreated",
    "TaskDeleteRequested",
    "TaskDeleted",
    "TaskExited",
    "TaskKillDelivered",
    "TaskKillRequested",
    "TaskPaused",
    "TaskRestartScheduled",
    "TaskResumed",
    "TaskStartRequested",
    "TaskStarted",
    "VolumeCreated",
    "VolumeRemoved",
];

fn task_of<'a>(state: &'a Value, namespace: &str, id: &str) -> &'a Value {
    &state["namespaces"][namespace]["containers"][id]["task"]
}

#[test]
fn the_schema_2_fixture_verifies_tells_its_history_and_folds_to_the_state_it_recorded() {
    let temp = tempfile::tempdir().unwrap();
    let log_dir = temp.path().join("log");
    copy_fixture(&log_dir);

    let verified = replay_ok(&log_dir, &["verify", "--strict"]);
    assert!(verified.contains("records:    74 (seq 1..=74)"), "{verified}");
    assert!(verified.contains("result:     intact"), "{verified}");

    let kinds: BTreeSet<String> = replay_ok(&log_dir, &["events", "--json"])
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = FIXTURE_KINDS.iter().map(|kind| kind.to_string()).collect();
    assert_eq!(kinds, expected, "the event kinds the fixture holds");

    let history = replay_ok(&log_dir, &["history", "--container", "sleeper"]);
    for line in [
        "created the container from image busybox:latest",
        "asked to exec [\"sh\",\"-c\",\"echo kept > /data/file; exit 5\"]",
        "exited with code 5",
        "failed to start: ",
        "task paused (its processes frozen)",
        "task resumed (its processes thawed)",
        "updated the container's limits to",
        "killed by signal 9 (SIGKILL)",
        "summary: container sleeper in namespace default: created at",
        "now stopped",
    ] {
        assert!(history.contains(line), "history lacks {line:?}:\n{history}");
    }

    let state: Value = serde_json::from_str(&replay_ok(&log_dir, &["state", "--output", "json"])).unwrap();
    assert_eq!(state["last_seq"], 74);
    let names = |value: &Value| -> Vec<String> { value.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(names(&state["namespaces"]), vec!["default", "forensics"], "scratch was removed");
    assert_eq!(state["namespaces"]["forensics"]["labels"]["team"], "audit");
    let default = &state["namespaces"]["default"];
    let images = names(&default["images"]);
    assert_eq!(images.len(), 2, "{images:?}");
    assert_eq!(images[1], "busybox:latest");
    assert!(images[0].starts_with("127.0.0.1:") && images[0].ends_with("/fixture/busybox:1"), "pulled: {images:?}");
    assert_eq!(default["images"][&images[0]]["known_references"].as_array().unwrap().len(), 1);
    assert_eq!(
        names(&default["containers"]),
        vec!["broken", "created-only", "exited3", "restarter", "sleeper"],
        "removed and auto (--rm) are gone"
    );
    assert_eq!(task_of(&state, "default", "exited3")["exit"]["exit_code"], 3);
    assert_eq!(task_of(&state, "default", "exited3")["status"], "Stopped");
    assert_eq!(task_of(&state, "default", "sleeper")["exit"]["signal"], 9);
    assert_eq!(task_of(&state, "default", "sleeper")["execs"].as_object().unwrap().len(), 2);
    let sleeper = &default["containers"]["sleeper"]["record"];
    assert_eq!(sleeper["policies"]["limits"]["pids_limit"], 50, "{sleeper}");
    assert_eq!(sleeper["mounts"][0]["source"], "data");
    assert_eq!(task_of(&state, "default", "broken")["status"], "Failed");
    assert!(task_of(&state, "default", "created-only").is_null());
    assert_eq!(default["containers"]["created-only"]["record"]["read_only_rootfs"], true);
    assert_eq!(default["containers"]["restarter"]["restart"]["attempt"], 2);
    assert_eq!(task_of(&state, "default", "restarter")["exit"]["exit_code"], 1);
    assert_eq!(task_of(&state, "forensics", "elsewhere")["exit"]["exit_code"], 7);
    assert_eq!(names(&default["volumes"]), vec!["data"], "gone was removed");
    assert_eq!(default["volumes"]["data"]["record"]["labels"]["purpose"], "fixture");

    // diff from the empty log to its end: what the whole fixture did, each change credited.
    let diff: Value = serde_json::from_str(&replay_ok(&log_dir, &["diff", "--from", "0", "--output", "json"])).unwrap();
    let changes = diff["changes"].as_array().unwrap();
    let added = |area: &str| -> usize {
        changes.iter().filter(|change| change["area"] == area && change["what"] == "added").count()
    };
    assert_eq!((added("namespace"), added("image"), added("container"), added("volume")), (2, 3, 6, 1));
    assert!(changes.iter().all(|change| !change["origin"].is_null()), "every change has its caller");

    // A local user who may not read the log (0700 root's) is told to use root, for diff and
    // history as for verify.
    for args in [&["diff", "--from", "0"][..], &["history", "--container", "sleeper"][..]] {
        use std::os::unix::process::CommandExt;
        let output = std::process::Command::new(bin("berth-replay"))
            .args(args)
            .arg("--log")
            .arg(&log_dir)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run berth-replay as nobody");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains("needs root"), "{args:?} as nobody: {stderr}");
    }
}

/// The layer (diff id, and chain id as the only layer) of the busybox image the fixture imported.
const FIXTURE_BUSYBOX_LAYER: &str = "sha256:9cce5e781c8ea32fe6048597b28810b18b4df17baca727f814eca2c9b1b75d60";

fn ps_by_id(daemon: &Daemon) -> std::collections::BTreeMap<String, Value> {
    daemon.ps().into_iter().map(|container| (container["id"].as_str().unwrap().to_string(), container)).collect()
}

#[test]
fn berthd_starts_on_a_copy_of_the_schema_2_fixture_and_serves_its_containers() {
    let mut daemon = Daemon::start();
    daemon.stop();
    // berthd's own log and anchor make way for the fixture, as when a log is restored on a new host.
    std::fs::remove_dir_all(daemon.root.join("log")).unwrap();
    let _ = std::fs::remove_file(daemon.root.join("log.anchor"));
    copy_fixture(&daemon.root.join("log"));
    daemon.start_again();

    let containers = ps_by_id(&daemon);
    assert_eq!(
        containers.keys().cloned().collect::<Vec<_>>(),
        vec!["broken", "created-only", "exited3", "restarter", "sleeper"]
    );
    assert_eq!(containers["exited3"]["task"]["status"], "stopped");
    assert_eq!(containers["exited3"]["task"]["exit_code"], 3);
    assert_eq!(containers["sleeper"]["task"]["exit_signal"], 9);
    assert_eq!(containers["broken"]["task"]["status"], "failed");
    assert!(containers["created-only"]["task"].is_null());
    let images = daemon.ok(&["image", "ls"]);
    assert!(images.contains("busybox:latest") && images.contains("/fixture/busybox:1"), "{images}");
    let volumes = daemon.ok(&["volume", "ls"]);
    assert!(volumes.contains("data") && volumes.contains("sleeper"), "{volumes}");

    // Serving them: a fixture container is removed, another gets its first task once its image
    // is imported again (the content store was not part of the log), and a new one runs.
    daemon.ok(&["rm", "exited3"]);
    daemon.ok(&["image", "import", test_images().join("busybox-oci.tar").to_str().unwrap(), "--name", "busybox"]);
    // The busybox archive is built on each machine (scripts/build-test-images.sh): its layer is
    // the fixture's only on the machine that made the fixture. Elsewhere the container's layer
    // is not on this host, and berthd must say so and what to do, keeping every record.
    let same_layer = daemon.ok(&["image", "inspect", "busybox"]).contains(FIXTURE_BUSYBOX_LAYER);
    if same_layer {
        daemon.ok(&["start", "created-only"]);
        eventually(Duration::from_secs(30), "created-only's task to exit 0", || {
            let task = ps_by_id(&daemon)["created-only"]["task"].clone();
            (task["status"] == "stopped").then_some(task)
        });
        assert_eq!(ps_by_id(&daemon)["created-only"]["task"]["exit_code"], 0);
    } else {
        let refused = daemon.cli(&["start", "created-only"]);
        let message = String::from_utf8_lossy(&refused.stderr).into_owned();
        assert!(!refused.status.success(), "created-only started without its image's layer");
        assert!(message.contains(FIXTURE_BUSYBOX_LAYER) && message.contains("import or pull the image"), "{message}");
        assert!(ps_by_id(&daemon).contains_key("created-only"), "the refused container is kept");
    }
    let hello = daemon.ok(&["run", "--name", "fresh", "busybox", "echo", "hello from a restored log"]);
    assert!(hello.contains("hello from a restored log"), "{hello}");

    // The log grew past the fixture and still verifies from genesis, across a crash of berthd.
    daemon.restart();
    assert!(!ps_by_id(&daemon).contains_key("exited3"));
    daemon.stop();
    let verified = replay_ok(&daemon.root.join("log"), &["verify"]);
    assert!(verified.contains("result:     intact"), "{verified}");
    let fresh = replay_ok(&daemon.root.join("log"), &["history", "--container", "fresh"]);
    assert!(fresh.contains("task exited with code 0"), "{fresh}");
}
