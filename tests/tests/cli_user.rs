//! The CLI a container user expects, against the real daemon: `--env-file` and `-e KEY` from the
//! caller's environment, `ps -q` and `ps --filter`, and `inspect` as JSON.

use berth_tests::{require_root, Daemon};

#[test]
fn env_file_and_bare_keys_take_values_from_the_file_and_the_callers_environment() {
    require_root();
    let daemon = Daemon::start();
    daemon.import_busybox();
    let env_file = daemon.dir.path().join("app.env");
    std::fs::write(&env_file, "# comment\n\nFROM_FILE=file value\nOVERRIDDEN=file\nFROM_CALLER_IN_FILE\n").unwrap();
    let output = daemon
        .berth()
        .env("FROM_CALLER", "caller value")
        .env("FROM_CALLER_IN_FILE", "also the caller's")
        .env_remove("NOT_SET_ANYWHERE")
        .args(["run", "--rm", "--env-file", env_file.to_str().unwrap(), "-e", "OVERRIDDEN=flag", "-e", "FROM_CALLER"])
        .args(["-e", "NOT_SET_ANYWHERE", "busybox", "env"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let env = String::from_utf8_lossy(&output.stdout);
    for expected in
        ["FROM_FILE=file value", "OVERRIDDEN=flag", "FROM_CALLER=caller value", "FROM_CALLER_IN_FILE=also the caller's"]
    {
        assert!(env.lines().any(|line| line == expected), "{expected} missing from {env}");
    }
    assert!(!env.contains("NOT_SET_ANYWHERE"), "{env}");
    assert!(!env.contains("OVERRIDDEN=file"), "{env}");

    let missing = daemon.cli(&["run", "--rm", "--env-file", "/no/such.env", "busybox", "true"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such.env"));
}

#[test]
fn ps_filters_and_quiet_and_inspect() {
    require_root();
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "web-1", "-l", "tier=front", "busybox", "sleep", "600"]);
    daemon.ok(&["create", "--name", "web-2", "-l", "tier=back", "busybox", "true"]);
    daemon.ok(&["run", "--name", "job", "busybox", "true"]);

    let ids = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["ps", "-a", "-q"];
        full.extend_from_slice(args);
        let mut ids: Vec<String> = daemon.ok(&full).lines().map(str::to_string).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&[]), ["job", "web-1", "web-2"]);
    assert_eq!(ids(&["--filter", "status=running"]), ["web-1"]);
    assert_eq!(ids(&["--filter", "status=exited"]), ["job"]);
    assert_eq!(ids(&["--filter", "status=none"]), ["web-2"]);
    assert_eq!(ids(&["--filter", "name=web"]), ["web-1", "web-2"]);
    assert_eq!(ids(&["--filter", "label=tier=back"]), ["web-2"]);
    assert_eq!(ids(&["--filter", "label=tier", "--filter", "name=1"]), ["web-1"]);
    assert_eq!(ids(&["--filter", "ancestor=busybox"]), ["job", "web-1", "web-2"]);
    assert_eq!(ids(&["--filter", "ancestor=alpine"]), Vec::<String>::new());
    let unknown = daemon.cli(&["ps", "--filter", "colour=red"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown filter \"colour=red\""));

    let text = daemon.ok(&["inspect", "web-1"]);
    let documents: serde_json::Value = serde_json::from_str(&text).unwrap();
    let web = &documents[0];
    assert_eq!(web["id"], "web-1");
    assert_eq!(web["labels"]["tier"], "front");
    assert_eq!(web["command"], serde_json::json!(["sleep", "600"]));
    assert_eq!(web["task"]["status"], "running");
    assert_eq!(web["read_only_rootfs"], false);
    assert!(web["env"].as_array().unwrap().iter().any(|entry| entry.as_str().unwrap().starts_with("PATH=")));
    let missing = daemon.cli(&["inspect", "nothing"]);
    assert_eq!(missing.status.code(), Some(1));
    daemon.ok(&["rm", "-f", "web-1"]);
}
