//! `berth-replay state --at SEQ` tells what berthd itself answered at that seq: a scripted
//! sequence of commands against a real berthd, and after each one the daemon's own view
//! (`berth ps -a`, `inspect`, `image ls`, `volume ls`, `namespace ls`, all as JSON) compared
//! field by field with the state berth-replay folds from the same log up to the seq the daemon
//! was at. Then `berth-replay diff` between the steps names what each command changed.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_log::Timestamp;
use berth_tests::{test_images, Daemon};
use serde_json::{json, Value};

fn rfc3339(ns: &Value) -> Value {
    match ns.as_u64().unwrap_or(0) {
        0 => Value::Null,
        ns => json!(Timestamp::from_ns(ns).to_string()),
    }
}

fn parse(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("{what} is not JSON ({error}): {text}"))
}

/// The log's last seq, read-only while berthd runs (`berth-replay head` prints SEQ:HASH).
fn head_seq(daemon: &Daemon) -> u64 {
    let output = daemon.replay(&["head"]);
    assert!(output.status.success(), "berth-replay head: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().split(':').next().and_then(|seq| seq.parse().ok()).unwrap_or_else(|| panic!("head printed {text}"))
}

/// `NAME=value` strings as their names.
fn env_names(env: &Value) -> Value {
    let names = env.as_array().map(Vec::as_slice).unwrap_or_default().iter();
    Value::Array(
        names.filter_map(Value::as_str).map(|entry| Value::from(entry.split('=').next().unwrap_or_default())).collect(),
    )
}

/// A replayed record's environment names: what it holds in clear (records from before sealing)
/// and the names of its sealed values.
fn replayed_env_names(record: &Value) -> Value {
    let Value::Array(mut names) = env_names(&record["env"]) else { unreachable!("env_names gives an array") };
    let sealed = record["sealed_env"].as_array().map(Vec::as_slice).unwrap_or_default();
    names.extend(sealed.iter().map(|entry| entry["name"].clone()));
    Value::Array(names)
}

/// What berthd answers: containers (ps and inspect merged, keyed by id), images and volumes
/// (keyed by name). `status` is left out: it is the text of the other fields plus "3s ago".
fn daemon_view(daemon: &Daemon) -> Value {
    let mut containers = BTreeMap::new();
    for mut container in daemon.ps() {
        let id = container["id"].as_str().expect("ps id").to_string();
        let inspected = parse(&daemon.ok(&["inspect", &id]), "inspect");
        for field in
            ["env", "working_dir", "user", "hostname", "snapshot_key", "mounts", "read_only_rootfs", "auto_remove"]
        {
            container[field] = inspected[0][field].clone();
        }
        // The log keeps environment values sealed (tests/secrets.rs checks the values): the
        // views compare the variables' names, in order.
        container["env"] = env_names(&container["env"]);
        container.as_object_mut().expect("object").remove("status");
        containers.insert(id, container);
    }
    let images: BTreeMap<String, Value> = parse(&daemon.ok(&["image", "ls", "--output", "json"]), "image ls")
        .as_array()
        .expect("image list")
        .iter()
        .map(|image| (image["name"].as_str().expect("name").to_string(), image.clone()))
        .collect();
    let volumes: BTreeMap<String, Value> = parse(&daemon.ok(&["volume", "ls", "--output", "json"]), "volume ls")
        .as_array()
        .expect("volume list")
        .iter()
        .map(|volume| {
            let mut volume = volume.clone();
            // Where berthd keeps it on this host: not in the log.
            volume.as_object_mut().expect("object").remove("mountpoint");
            (volume["name"].as_str().expect("name").to_string(), volume)
        })
        .collect();
    let namespaces: BTreeMap<String, Value> =
        parse(&daemon.ok(&["namespace", "ls", "--output", "json"]), "namespace ls")
            .as_array()
            .expect("namespace list")
            .iter()
            .map(|namespace| (namespace["name"].as_str().expect("name").to_string(), namespace.clone()))
            .collect();
    json!({ "containers": containers, "images": images, "volumes": volumes, "namespaces": namespaces })
}

/// The API's task status name for a folded task (`paused` is a running task that is frozen).
fn task_status(task: &Value) -> String {
    let status = task["status"].as_str().expect("task status").to_ascii_lowercase();
    if status == "running" && task["paused"].as_bool() == Some(true) {
        "paused".to_string()
    } else {
        status
    }
}

fn task_view(task: &Value) -> Value {
    if task.is_null() {
        return Value::Null;
    }
    let exit = &task["exit"];
    json!({
        "status": task_status(task),
        "pid": task["pid"],
        "exit_code": if exit.is_null() { json!(0) } else { exit["exit_code"].clone() },
        "exit_signal": if exit.is_null() { json!(0) } else { exit["signal"].clone() },
        "exit_cause": if exit.is_null() { json!("") } else { exit["cause"].clone() },
        "exited_at": if exit.is_null() { Value::Null } else { rfc3339(&exit["exited_at_ns"]) },
        "error": if task["error"].is_null() { json!("") } else { task["error"].clone() },
        "updated_seq": task["updated_seq"],
    })
}

/// The same view computed from `berth-replay state --at SEQ --output json` of namespace `default`.
fn replay_view(state: &Value) -> Value {
    let namespace = &state["namespaces"]["default"];
    let empty = serde_json::Map::new();
    let entries = |key: &str| namespace[key].as_object().unwrap_or(&empty).clone();
    let containers: BTreeMap<String, Value> = entries("containers")
        .into_iter()
        .map(|(id, container)| {
            let record = &container["record"];
            let mounts: Vec<Value> = record["mounts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|mount| {
                    json!({
                        "type": mount["kind"], "source": mount["source"], "destination": mount["destination"],
                        "read_only": mount["read_only"], "options": mount["options"],
                    })
                })
                .collect();
            let view = json!({
                "id": record["id"],
                "image": record["image"],
                "image_digest": record["image_digest"],
                "command": record["args"],
                "created_at": rfc3339(&container["created_at_ns"]),
                "created_seq": container["created_seq"],
                "labels": record["labels"],
                "task": task_view(&container["task"]),
                "env": replayed_env_names(record),
                "working_dir": record["working_dir"],
                "user": record["user"],
                "hostname": record["hostname"],
                "snapshot_key": record["snapshot_key"],
                "mounts": mounts,
                "read_only_rootfs": record["read_only_rootfs"],
                "auto_remove": record["auto_remove"],
            });
            (id, view)
        })
        .collect();
    let size = |descriptor: &Value| descriptor["size"].as_i64().unwrap_or(0);
    let images: BTreeMap<String, Value> = entries("images")
        .into_iter()
        .map(|(name, image)| {
            let record = &image["record"];
            let layers = record["layers"].as_array().cloned().unwrap_or_default();
            let layers_size: i64 = layers.iter().map(|layer| size(&layer["blob"])).sum();
            let view = json!({
                "name": name,
                "digest": record["manifest"]["digest"],
                "media_type": record["manifest"]["media_type"],
                "size": layers_size,
                "content_size": layers_size + size(&record["manifest"]) + size(&record["config"]),
                "manifest_size": record["manifest"]["size"],
                "config_digest": record["config"]["digest"],
                "layers": layers.iter().map(|layer| json!({
                    "digest": layer["blob"]["digest"], "diff_id": layer["diff_id"],
                    "media_type": layer["blob"]["media_type"], "size": layer["blob"]["size"],
                })).collect::<Vec<_>>(),
                "entrypoint": record["entrypoint"],
                "cmd": record["cmd"],
                "created_at": rfc3339(&image["created_at_ns"]),
                "created_seq": image["created_seq"],
            });
            (name, view)
        })
        .collect();
    let volumes: BTreeMap<String, Value> = entries("volumes")
        .into_iter()
        .map(|(name, volume)| {
            let used_by: Vec<&String> = containers
                .iter()
                .filter(|(_, container)| {
                    container["mounts"].as_array().is_some_and(|mounts| {
                        mounts.iter().any(|mount| mount["type"] == "volume" && mount["source"] == name)
                    })
                })
                .map(|(id, _)| id)
                .collect();
            let view = json!({
                "name": name,
                "labels": volume["record"]["labels"],
                "anonymous_for": volume["record"]["anonymous_for"],
                "created_at": rfc3339(&volume["created_at_ns"]),
                "created_seq": volume["created_seq"],
                "used_by": used_by,
            });
            (name, view)
        })
        .collect();
    let namespaces: BTreeMap<String, Value> = state["namespaces"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .map(|(name, namespace)| {
            let view = json!({ "name": name, "labels": namespace["labels"], "created_seq": namespace["created_seq"] });
            (name.clone(), view)
        })
        .collect();
    json!({ "containers": containers, "images": images, "volumes": volumes, "namespaces": namespaces })
}

fn replay_state_at(daemon: &Daemon, seq: u64) -> Value {
    let output = daemon.replay(&["state", "--at", &seq.to_string(), "--output", "json"]);
    assert!(output.status.success(), "berth-replay state --at {seq}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("state json")
}

/// The daemon's view and the seq it belongs to: the log's end did not move while the view was
/// taken twice and came out the same. Then the replayed view at that seq must be equal.
fn check_agrees(daemon: &Daemon, step: &str) -> u64 {
    let mut last_difference = String::new();
    for _attempt in 0..50 {
        let seq_before = head_seq(daemon);
        let first = daemon_view(daemon);
        let second = daemon_view(daemon);
        let seq_after = head_seq(daemon);
        if seq_before != seq_after || first != second {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let replayed = replay_view(&replay_state_at(daemon, seq_before));
        if replayed == first {
            return seq_before;
        }
        last_difference = format!(
            "at seq {seq_before}\ndaemon:   {}\nreplayed: {}",
            serde_json::to_string_pretty(&first).unwrap(),
            serde_json::to_string_pretty(&replayed).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("after {step}, berth-replay state --at disagrees with berthd:\n{last_difference}");
}

fn diff_whats(daemon: &Daemon, from: u64, to: u64) -> Vec<(String, String, String)> {
    let output = daemon.replay(&["diff", "--from", &from.to_string(), "--to", &to.to_string(), "--output", "json"]);
    assert!(output.status.success(), "berth-replay diff: {}", String::from_utf8_lossy(&output.stderr));
    let diff: Value = serde_json::from_slice(&output.stdout).expect("diff json");
    diff["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|change| {
            let text = |key: &str| change[key].as_str().unwrap_or_default().to_string();
            (text("area"), text("subject"), text("what"))
        })
        .collect()
}

fn has(changes: &[(String, String, String)], area: &str, subject: &str, what: &str) -> bool {
    changes.iter().any(|(a, s, w)| a == area && s == subject && w == what)
}

#[test]
fn state_at_each_seq_is_what_berthd_answered_then() {
    let daemon = Daemon::start();
    let archive = test_images().join("busybox-oci.tar");
    let archive = archive.to_str().unwrap();
    let mut seqs = Vec::new();
    let steps: Vec<(&str, Vec<&str>)> = vec![
        ("import", vec!["image", "import", archive, "--name", "busybox"]),
        ("namespace create", vec!["namespace", "create", "audit", "--label", "team=b"]),
        ("tag", vec!["image", "tag", "busybox", "busybox:copy"]),
        ("volume create", vec!["volume", "create", "data", "--label", "team=a"]),
        ("create", vec!["create", "--name", "idle", "-v", "data:/data", "--env", "A=1", "busybox", "true"]),
        ("run -d", vec!["run", "-d", "--name", "sleeper", "--label", "role=long", "busybox", "sleep", "300"]),
        ("pause", vec!["pause", "sleeper"]),
        ("resume", vec!["resume", "sleeper"]),
        ("exec", vec!["exec", "sleeper", "sh", "-c", "exit 4"]),
        ("stop", vec!["stop", "-t", "1", "sleeper"]),
        ("run (exit 3)", vec!["run", "--name", "three", "busybox", "sh", "-c", "exit 3"]),
        ("start", vec!["start", "idle"]),
        ("rm", vec!["rm", "three"]),
        ("image rm", vec!["image", "rm", "busybox:copy"]),
        ("rm idle", vec!["rm", "idle"]),
        ("volume rm", vec!["volume", "rm", "data"]),
        ("namespace rm", vec!["namespace", "rm", "audit"]),
    ];
    seqs.push(check_agrees(&daemon, "start-up"));
    for (step, args) in &steps {
        let output = daemon.cli(args);
        // `run` of a container that exits 3 exits 3 itself; exec's exit 4 likewise.
        let expected_code = match *step {
            "run (exit 3)" => 3,
            "exec" => 4,
            _ => 0,
        };
        assert_eq!(
            output.status.code(),
            Some(expected_code),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if *step == "start" {
            // `true` exits at once: wait for the exit to be recorded so the view is settled.
            berth_tests::eventually(Duration::from_secs(20), "idle's task to exit", || {
                let ps = daemon.ps();
                ps.iter()
                    .any(|container| container["id"] == "idle" && container["task"]["status"] == "stopped")
                    .then_some(())
            });
        }
        seqs.push(check_agrees(&daemon, step));
    }

    // After a stop, the same log read with berthd gone agrees with what berthd answered last.
    let last_view = daemon_view(&daemon);
    let last_seq = *seqs.last().unwrap();
    let mut daemon = daemon;
    daemon.stop();
    assert_eq!(replay_view(&replay_state_at(&daemon, last_seq)), last_view, "the log read after berthd stopped");

    // diff between steps names what each step changed, credited to the client.
    let step_seq = |name: &str| {
        let idx = steps.iter().position(|(step, _)| *step == name).expect("step");
        (seqs[idx], seqs[idx + 1])
    };
    let (from, to) = step_seq("import");
    assert!(has(&diff_whats(&daemon, from, to), "image", "busybox:latest", "added"), "import");
    let (from, to) = step_seq("pause");
    assert!(has(&diff_whats(&daemon, from, to), "task", "sleeper", "paused"), "pause");
    let (from, to) = step_seq("stop");
    let stop = diff_whats(&daemon, from, to);
    assert!(has(&stop, "task", "sleeper", "exited"), "stop: {stop:?}");
    let (from, to) = step_seq("rm");
    assert!(has(&diff_whats(&daemon, from, to), "container", "three", "removed"), "rm");
    let (from, to) = step_seq("volume create");
    assert!(has(&diff_whats(&daemon, from, to), "volume", "data", "added"), "volume create");
    let whole = diff_whats(&daemon, seqs[0], last_seq);
    assert!(has(&whole, "container", "sleeper", "added"), "{whole:?}");
    assert!(!has(&whole, "container", "three", "added"), "created and removed in the range: {whole:?}");
    assert!(!has(&whole, "volume", "data", "added"), "created and removed in the range: {whole:?}");
}

/// The past does not change: the state at a seq, taken while berthd ran, is the same after
/// berthd is killed with SIGKILL mid-work, restarted, and more is recorded; diff from that seq
/// names only what came after.
#[test]
fn a_past_state_is_the_same_after_a_kill9_and_later_records() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "survivor", "busybox", "sleep", "300"]);
    let seq = check_agrees(&daemon, "run -d");
    let before = replay_state_at(&daemon, seq);

    // Killed while a container starts: its records may be cut anywhere.
    let mut starting = daemon.berth();
    starting.args(["run", "-d", "--name", "cut", "busybox", "sleep", "300"]);
    let mut child = starting.spawn().expect("spawn berth run");
    std::thread::sleep(Duration::from_millis(150));
    daemon.kill9();
    let _ = child.wait();
    // Read-only tools work on the log of a dead berthd, torn tail or not.
    assert_eq!(replay_state_at(&daemon, seq), before, "read after the kill");
    daemon.start_again();
    daemon.ok(&["stop", "-t", "1", "survivor"]);
    let after_seq = check_agrees(&daemon, "stop after the restart");
    assert!(after_seq > seq);
    assert_eq!(replay_state_at(&daemon, seq), before, "the state at seq {seq} changed after the restart");
    let changes = diff_whats(&daemon, seq, after_seq);
    assert!(has(&changes, "task", "survivor", "exited"), "{changes:?}");
    assert!(!has(&changes, "container", "survivor", "added"), "{changes:?}");
    let verified = daemon.replay(&["verify"]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
}
