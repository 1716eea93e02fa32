//! berthd's own log: no terminal escape codes when stderr is a file, `[logging] format =
//! "json"` writes one JSON object per line with its level and message, and `debug` does not
//! bring the HTTP/2 and gRPC libraries' per-frame lines with it.

use berth_tests::{tail, Daemon};

#[test]
fn a_log_file_gets_no_escape_codes() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "--rm", "busybox", "true"]);
    let log = daemon.daemon_log();
    assert!(log.contains("INFO"), "berthd logged nothing:\n{log}");
    assert!(!log.contains("\x1b["), "ANSI escape codes in the log file:\n{}", tail(&log, 10));
}

#[test]
fn json_lines_parse_with_level_and_message_and_debug_has_no_frame_flood() {
    let mut daemon = Daemon::start_with_config(|_| "[logging]\nformat = \"json\"\n".to_string());
    daemon.set_env(&[("BERTHD_LOG", "debug")]);
    daemon.restart();
    daemon.import_busybox();
    daemon.ok(&["run", "--rm", "busybox", "true"]);
    daemon.ok(&["ps", "-a"]);
    let log = daemon.daemon_log();
    let mut n_lines = 0;
    let mut n_debug = 0;
    for line in log.lines().filter(|line| !line.trim().is_empty()) {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        let level = entry["level"].as_str().unwrap_or_else(|| panic!("no level: {line}"));
        assert!(entry["message"].is_string(), "no message: {line}");
        assert!(entry["timestamp"].is_string() && entry["target"].is_string(), "{line}");
        let target = entry["target"].as_str().unwrap_or_default();
        if matches!(level, "DEBUG" | "TRACE") {
            n_debug += 1;
            let library = target.split("::").next().unwrap_or_default();
            assert!(
                !["h2", "hyper", "hyper_util", "tonic", "tower"].contains(&library),
                "a {library} debug line at level debug: {line}"
            );
        }
        n_lines += 1;
    }
    assert!(n_lines > 5 && n_debug > 0, "expected berthd's own debug lines:\n{}", tail(&log, 20));
    assert!(!log.contains("\x1b["), "escape codes in JSON lines");
}
