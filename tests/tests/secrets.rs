//! Forgettable secrets against the real berthd, runc and berth-replay: a container's `-e` value
//! reaches its process but never the log's bytes; removing the container forgets it (the log
//! still verifies, history and `state --at` say `<forgotten>`); a key file others may read, or
//! one tampered with, is refused with an error saying what to do; a restart-policy container
//! gets its environment after a berthd restart; a key written by a create berthd died before
//! appending is swept at the next start; `berth-replay forget` forgets offline.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use berth_tests::{eventually, tail, Daemon};

const SECRET: &str = "hunter2";

fn key_path(daemon: &Daemon, id: &str) -> PathBuf {
    daemon.root.join("keys").join("default").join(format!("{id}.key"))
}

/// Every byte of every file in the log directory (segments, spare, lock): none may hold a value.
fn log_bytes(daemon: &Daemon) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(daemon.root.join("log")).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            bytes.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    assert!(!bytes.is_empty());
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

fn replay_ok(daemon: &Daemon, args: &[&str]) -> String {
    let output = daemon.replay(args);
    assert!(
        output.status.success(),
        "berth-replay {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn replay_error(daemon: &Daemon, args: &[&str]) -> String {
    let output = daemon.replay(args);
    assert!(!output.status.success(), "berth-replay {args:?} should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn inspect_env(daemon: &Daemon, id: &str) -> Vec<String> {
    let inspected: serde_json::Value = serde_json::from_str(&daemon.ok(&["inspect", id])).unwrap();
    serde_json::from_value(inspected[0]["env"].clone()).unwrap()
}

/// The seq of the first event of `kind` about container `id`.
fn event_seq(daemon: &Daemon, id: &str, kind: &str) -> Option<u64> {
    replay_ok(daemon, &["events", "--json", "--container", id, "--kind", kind])
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|event| event["seq"].as_u64())
}

#[test]
fn a_value_reaches_the_container_never_the_log_and_is_forgotten_at_rm() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let printed = daemon.ok(&[
        "run",
        "--name",
        "web",
        "-e",
        &format!("SECRET={SECRET}"),
        "busybox",
        "sh",
        "-c",
        "echo value=$SECRET",
    ]);
    assert!(printed.contains(&format!("value={SECRET}")), "{printed}");
    daemon.ok(&["run", "-d", "--name", "svc", "-e", "SECRET=swordfish", "busybox", "sleep", "1000"]);
    let exec_printed =
        daemon.ok(&["exec", "-e", "EXEC_SECRET=opensesame", "svc", "sh", "-c", "echo $EXEC_SECRET $SECRET"]);
    assert!(exec_printed.contains("opensesame swordfish"), "{exec_printed}");

    let key = key_path(&daemon, "web");
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::metadata(key.parent().unwrap()).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(std::fs::metadata(daemon.root.join("keys")).unwrap().mode() & 0o7777, 0o700);
    let bytes = log_bytes(&daemon);
    for value in [SECRET, "swordfish", "opensesame"] {
        assert!(!contains(&bytes, value), "{value} is in the log's bytes");
    }
    // Names stay clear for the audit; root's tools see the values while the key exists.
    assert!(contains(&bytes, "SECRET"));
    assert!(inspect_env(&daemon, "web").contains(&format!("SECRET={SECRET}")));
    let ps = daemon.ok(&["ps", "-a", "--output", "json"]);
    assert!(!ps.contains(SECRET), "{ps}");
    assert!(replay_ok(&daemon, &["history", "--container", "web"]).contains(&format!("SECRET={SECRET}")));
    let exec_history = replay_ok(&daemon, &["history", "--container", "svc"]);
    assert!(exec_history.contains("EXEC_SECRET=opensesame"), "{exec_history}");

    let created = event_seq(&daemon, "web", "ContainerCreated").unwrap();
    daemon.ok(&["rm", "web"]);
    eventually(Duration::from_secs(30), "the key deleted", || (!key.exists()).then_some(()));
    let forgotten = replay_ok(&daemon, &["events", "--json", "--kind", "SecretsForgotten", "--container", "web"]);
    assert!(forgotten.contains("container removed at seq"), "{forgotten}");
    let history = replay_ok(&daemon, &["history", "--container", "web"]);
    assert!(history.contains("SECRET=<forgotten>") && !history.contains(SECRET), "{history}");
    assert!(history.contains("secrets forgotten"), "{history}");
    let then = replay_ok(&daemon, &["state", "--at", &created.to_string()]);
    assert!(then.contains("SECRET=<forgotten>") && !then.contains(SECRET), "{then}");
    // The other container keeps its key; without a key directory the values are only <sealed>.
    assert!(replay_ok(&daemon, &["state"]).contains("SECRET=swordfish"));
    let log_only = std::process::Command::new(berth_tests::bin("berth-replay"))
        .args(["state", "--log"])
        .arg(daemon.root.join("log"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&log_only.stdout).contains("SECRET=<sealed>"));
    replay_ok(&daemon, &["verify"]);
}

#[test]
fn an_open_or_tampered_key_is_refused_and_says_what_to_do() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&[
        "create",
        "--name",
        "db",
        "-e",
        &format!("DB_PASSWORD={SECRET}"),
        "busybox",
        "sh",
        "-c",
        "echo $DB_PASSWORD",
    ]);
    let key = key_path(&daemon, "db");
    let original = std::fs::read(&key).unwrap();

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refusal = String::from_utf8_lossy(&daemon.cli(&["inspect", "db"]).stderr).into_owned();
    assert!(refusal.contains("db.key") && refusal.contains("chmod 0600"), "{refusal}");
    let refusal = replay_error(&daemon, &["history", "--container", "db"]);
    assert!(refusal.contains("db.key") && refusal.contains("chmod 0600"), "{refusal}");
    let start = daemon.cli(&["start", "db"]);
    assert!(!start.status.success());
    assert!(
        String::from_utf8_lossy(&start.stderr).contains("chmod 0600"),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );

    // Same id, another key: the values do not open, and berth says the file was changed.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut file: serde_json::Value = serde_json::from_slice(&original).unwrap();
    file["key"] = serde_json::json!("ab".repeat(32));
    std::fs::write(&key, file.to_string()).unwrap();
    let refusal = String::from_utf8_lossy(&daemon.cli(&["inspect", "db"]).stderr).into_owned();
    assert!(refusal.contains("does not open") && refusal.contains("restore it from a backup"), "{refusal}");
    assert!(replay_error(&daemon, &["state"]).contains("does not open"));
    std::fs::write(&key, b"not json").unwrap();
    assert!(String::from_utf8_lossy(&daemon.cli(&["inspect", "db"]).stderr).contains("is not a berth key file"));

    // Put back, it works again; a damaged key never keeps the container from being removed.
    std::fs::write(&key, &original).unwrap();
    assert!(inspect_env(&daemon, "db").contains(&format!("DB_PASSWORD={SECRET}")));
    std::fs::write(&key, b"not json").unwrap();
    daemon.ok(&["rm", "db"]);
    eventually(Duration::from_secs(30), "the key deleted", || (!key.exists()).then_some(()));
}

#[test]
fn a_restart_policy_container_gets_its_environment_after_berthd_restarts() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    let script = "echo value=$SECRET; exec sleep 1000";
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "-e",
        &format!("SECRET={SECRET}"),
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    eventually(Duration::from_secs(30), "the first output", || {
        daemon.ok(&["logs", "always"]).contains(&format!("value={SECRET}")).then_some(())
    });
    daemon.kill9();
    // The container dies while berthd is down; berthd restarts it from the log and the key.
    let runc_root = daemon.state.join("runc").join("default");
    let killed = std::process::Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["kill", "always", "KILL"])
        .status()
        .unwrap();
    assert!(killed.success());
    daemon.start_again();
    eventually(Duration::from_secs(60), "a restart after berthd's", || {
        let restarted = event_seq(&daemon, "always", "TaskRestartScheduled").is_some();
        let logs = daemon.ok(&["logs", "always"]);
        (restarted && logs.contains(&format!("value={SECRET}"))).then_some(())
    });
    assert!(!contains(&log_bytes(&daemon), SECRET));
    daemon.ok(&["rm", "-f", "always"]);
}

#[test]
fn a_key_written_by_a_create_berthd_died_in_is_swept_at_the_next_start() {
    let mut daemon = Daemon::start_with_env(&[("BERTHD_FAILPOINT", "secret-key-written")]);
    daemon.import_busybox();
    let create = daemon.cli(&["create", "--name", "crashed", "-e", &format!("SECRET={SECRET}"), "busybox", "true"]);
    assert!(!create.status.success());
    daemon.wait_for_exit(Duration::from_secs(30));
    let key = key_path(&daemon, "crashed");
    assert!(key.exists(), "the key is written before the append");
    daemon.set_env(&[]);
    daemon.start_again();
    eventually(Duration::from_secs(30), "berthd serving", || daemon.cli(&["ps", "-a"]).status.success().then_some(()));
    assert!(!key.exists(), "a key no record uses is deleted at start-up:\n{}", tail(&daemon.daemon_log(), 20));
    assert!(daemon.ps().is_empty());
    assert!(!contains(&log_bytes(&daemon), SECRET));
    // The id is free, and a new key is made for it.
    daemon.ok(&["create", "--name", "crashed", "-e", "SECRET=other", "busybox", "true"]);
    assert!(key.exists());
}

#[test]
fn kept_keys_are_forgotten_offline_by_berth_replay_and_berthd_records_it() {
    let mut daemon = Daemon::start_with_config(|_| "[secrets]\nforget_on_remove = false\n".to_string());
    daemon.import_busybox();
    daemon.ok(&["run", "--name", "kept", "-e", &format!("SECRET={SECRET}"), "busybox", "true"]);
    daemon.ok(&["rm", "kept"]);
    let key = key_path(&daemon, "kept");
    assert!(key.exists(), "forget_on_remove = false keeps the key");
    assert!(replay_ok(&daemon, &["history", "--container", "kept"]).contains(&format!("SECRET={SECRET}")));
    assert!(replay_error(&daemon, &["forget", "--container", "kept"]).contains("berthd is running"));

    daemon.stop();
    let forgot = replay_ok(&daemon, &["forget", "--container", "kept"]);
    assert!(forgot.contains("<forgotten>"), "{forgot}");
    assert!(!key.exists());
    assert!(replay_ok(&daemon, &["history", "--container", "kept"]).contains("SECRET=<forgotten>"));
    replay_ok(&daemon, &["verify"]);
    daemon.start_again();
    eventually(Duration::from_secs(30), "the forgetting recorded", || {
        let events = replay_ok(&daemon, &["events", "--json", "--kind", "SecretsForgotten"]);
        events.contains("key file missing at start-up").then_some(())
    });
}
