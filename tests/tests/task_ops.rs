//! The verbs that act on a running container's processes without ending its task: `pause` and
//! `resume` freeze and thaw it through runc (the cgroup freezer), recorded as events, and
//! shown by `ps`; a paused container refuses kill and exec, naming `resume`.

use std::path::PathBuf;

use berth_tests::Daemon;

/// The container's task status as `ps --output json` shows it.
fn task_status(daemon: &Daemon, id: &str) -> String {
    let containers = daemon.ps();
    let container = containers.iter().find(|container| container["id"] == id).expect("listed");
    container["task"]["status"].as_str().unwrap_or_else(|| panic!("no status in {container}")).to_string()
}

/// The freezer state of the container's cgroup: v1's `freezer.state` (FROZEN, THAWED), or on
/// v2 `cgroup.freeze` (1, 0) mapped to the same words.
fn freezer_state(daemon: &Daemon, id: &str) -> String {
    let relative = format!("{}/default/{id}", daemon.cgroup_parent().trim_start_matches('/'));
    let v1 = PathBuf::from("/sys/fs/cgroup/freezer").join(&relative);
    if v1.is_dir() {
        return std::fs::read_to_string(v1.join("freezer.state")).expect("freezer.state").trim().to_string();
    }
    let v2 = PathBuf::from("/sys/fs/cgroup").join(&relative).join("cgroup.freeze");
    match std::fs::read_to_string(&v2).expect("cgroup.freeze").trim() {
        "1" => "FROZEN".to_string(),
        _ => "THAWED".to_string(),
    }
}

/// The kernel's scheduling state letter of a process (`/proc/PID/stat`, third field).
fn process_state(pid: u64) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    after_name.split_whitespace().next().expect("state").to_string()
}

#[test]
fn pause_freezes_the_container_and_resume_thaws_it_both_recorded() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "frozen", "busybox", "sleep", "1000"]);
    assert_eq!(task_status(&daemon, "frozen"), "running");

    assert_eq!(daemon.ok(&["pause", "frozen"]).trim(), "frozen");
    assert_eq!(task_status(&daemon, "frozen"), "paused");
    assert_eq!(freezer_state(&daemon, "frozen"), "FROZEN");
    let pid = daemon.ps().iter().find(|c| c["id"] == "frozen").unwrap()["task"]["pid"].as_u64().unwrap();
    // A frozen task sleeps uninterruptibly in the freezer: D, never R.
    assert_eq!(process_state(pid), "D", "the container's sleep is frozen");

    // Pausing again, killing or exec'ing a paused container is refused with what to do.
    for args in [&["pause", "frozen"][..], &["kill", "frozen"], &["exec", "frozen", "true"]] {
        let output = daemon.cli(args);
        assert!(!output.status.success(), "{args:?} succeeded on a paused container");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("resume"), "{args:?}: {stderr}");
    }
    assert_eq!(freezer_state(&daemon, "frozen"), "FROZEN");

    daemon.ok(&["resume", "frozen"]);
    assert_eq!(task_status(&daemon, "frozen"), "running");
    assert_eq!(freezer_state(&daemon, "frozen"), "THAWED");
    assert_eq!(process_state(pid), "S", "the sleep sleeps again");
    let refused = daemon.cli(&["resume", "frozen"]);
    assert!(!refused.status.success(), "a running container was resumed");

    let events = daemon.ok(&["events", "--output", "json"]);
    assert!(events.contains("TaskPaused") && events.contains("TaskResumed"), "{events}");
    // The replayed state agrees: not paused.
    let state = daemon.state_dump();
    assert_eq!(state["namespaces"]["default"]["containers"]["frozen"]["task"]["paused"], false);
    daemon.ok(&["rm", "-f", "frozen"]);
}

#[test]
fn a_paused_container_is_paused_again_after_berthd_restarts() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "kept", "busybox", "sleep", "1000"]);
    daemon.ok(&["pause", "kept"]);
    daemon.restart();
    assert_eq!(task_status(&daemon, "kept"), "paused");
    assert_eq!(freezer_state(&daemon, "kept"), "FROZEN");
    // `rm -f` removes a paused container without a resume (runc delete --force thaws it).
    daemon.ok(&["rm", "-f", "kept"]);
    assert!(daemon.runc_list().is_empty(), "runc still has {:?}", daemon.runc_list());
}

#[test]
fn stop_kills_a_container_that_ignores_sigterm_after_the_grace_period() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "stubborn", "busybox", "sh", "-c", "trap '' TERM; sleep 1000 & wait"]);
    daemon.ok(&["stop", "-t", "1", "stubborn"]);
    let containers = daemon.ps();
    let task = &containers.iter().find(|container| container["id"] == "stubborn").unwrap()["task"];
    assert_eq!(task["status"], "stopped", "{task}");
    assert_eq!(task["exit_signal"], 9, "{task}");
    // Both kills are in the log, the second saying why.
    let events = daemon.ok(&["events", "--output", "json"]);
    assert!(events.contains("Tasks/Stop: stop signal 15"), "{events}");
    assert!(events.contains("SIGKILL, still running after the 1s grace period"), "{events}");
    daemon.ok(&["rm", "stubborn"]);
}

#[test]
fn stop_lets_a_container_that_handles_sigterm_end_with_its_own_code() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "polite", "busybox", "sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait"]);
    daemon.ok(&["stop", "-t", "30", "polite"]);
    let containers = daemon.ps();
    let task = &containers.iter().find(|container| container["id"] == "polite").unwrap()["task"];
    assert_eq!(task["status"], "stopped", "{task}");
    assert_eq!(task["exit_code"], 7, "{task}");
    let events = daemon.ok(&["events", "--output", "json"]);
    assert!(!events.contains("SIGKILL, still running"), "{events}");
    // Stopping a stopped container is no error.
    daemon.ok(&["stop", "polite"]);
    daemon.ok(&["rm", "polite"]);
}

#[test]
fn top_lists_the_containers_processes_and_stats_reads_its_cgroup() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "watched", "--memory", "64m", "busybox", "sleep", "1000"]);

    let table = daemon.ok(&["top", "watched"]);
    let sleep_line = table.lines().find(|line| line.contains("sleep 1000")).unwrap_or_else(|| panic!("{table}"));
    assert!(sleep_line.split_whitespace().nth(1) == Some("root"), "{sleep_line}");
    let top_json: serde_json::Value =
        serde_json::from_str(&daemon.ok(&["top", "watched", "--output", "json"])).unwrap();
    let pid = top_json[0]["pid"].as_u64().expect("pid");
    assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap(), "sleep\u{0}1000\u{0}");

    let stats_json: serde_json::Value =
        serde_json::from_str(&daemon.ok(&["stats", "--no-stream", "--output", "json", "watched"])).unwrap();
    let stats = &stats_json[0];
    assert_eq!(stats["id"], "watched", "{stats_json}");
    assert_eq!(stats["pids"], 1, "{stats}");
    assert!(stats["memory_usage_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["memory_limit_bytes"], 64u64 << 20, "{stats}");
    // Without ids: every running container; the table names it.
    let table = daemon.ok(&["stats", "--no-stream"]);
    assert!(table.lines().any(|line| line.starts_with("watched")), "{table}");

    daemon.ok(&["stop", "-t", "1", "watched"]);
    let refused = daemon.cli(&["top", "watched"]);
    assert!(!refused.status.success(), "top of a stopped container succeeded");
    daemon.ok(&["rm", "watched"]);
}

/// The busybox test archive with `StopSignal` set in its image config (config, manifest and
/// index rewritten with their new digests; the layer blobs kept as they are).
fn busybox_with_stop_signal(stop_signal: &str) -> Vec<u8> {
    use berth_tests::docker_archive::{sha256_hex, tar_of};
    let base = std::fs::read(berth_tests::test_images().join("busybox-oci.tar")).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in tar::Archive::new(base.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().unwrap().to_string_lossy().trim_start_matches("./").to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        files.push((path, bytes));
    }
    let blob_path = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let read_json = |files: &[(String, Vec<u8>)], path: &str| -> serde_json::Value {
        serde_json::from_slice(&files.iter().find(|(name, _)| name == path).unwrap().1).unwrap()
    };
    let mut index = read_json(&files, "index.json");
    let mut manifest = read_json(&files, &blob_path(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut config = read_json(&files, &blob_path(manifest["config"]["digest"].as_str().unwrap()));
    config["config"]["StopSignal"] = stop_signal.into();
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = format!("sha256:{}", sha256_hex(&config_bytes)).into();
    manifest["config"]["size"] = config_bytes.len().into();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = format!("sha256:{}", sha256_hex(&manifest_bytes)).into();
    index["manifests"][0]["size"] = manifest_bytes.len().into();
    files.retain(|(name, _)| name != "index.json");
    files.push((blob_path(&sha256_hex(&config_bytes)), config_bytes));
    files.push((blob_path(&sha256_hex(&manifest_bytes)), manifest_bytes));
    files.push(("index.json".to_string(), serde_json::to_vec(&index).unwrap()));
    tar_of(&files)
}

#[test]
fn stop_sends_the_images_stopsignal_first() {
    let daemon = Daemon::start();
    let archive_path = std::env::temp_dir().join(format!("berth-stopsignal-{}.tar", std::process::id()));
    std::fs::write(&archive_path, busybox_with_stop_signal("SIGUSR1")).unwrap();
    daemon.ok(&["image", "import", archive_path.to_str().unwrap(), "--name", "usr1"]);
    std::fs::remove_file(&archive_path).unwrap();
    // PID 1 ignores SIGTERM without a handler: only the image's USR1 ends it with code 3.
    daemon.ok(&["run", "-d", "--name", "usr1", "usr1", "sh", "-c", "trap 'exit 3' USR1; sleep 1000 & wait"]);
    daemon.ok(&["stop", "-t", "20", "usr1"]);
    let containers = daemon.ps();
    let task = &containers.iter().find(|container| container["id"] == "usr1").unwrap()["task"];
    assert_eq!(task["exit_code"], 3, "{task}");
    let events = daemon.ok(&["events", "--output", "json"]);
    assert!(events.contains("Tasks/Stop: stop signal 10"), "{events}");
    daemon.ok(&["rm", "usr1"]);
}
