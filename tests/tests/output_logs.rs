//! A container's output as `berth logs` shows it: `--tail`, `--since`, `--timestamps`, and a
//! cap on what is kept on disk — a container printing far more than the cap keeps at most the
//! cap, and `logs` shows the newest output.

use std::time::Duration;

use berth_tests::{eventually, require_root, Daemon};

fn kept_output_bytes(daemon: &Daemon, container_id: &str) -> u64 {
    let task_dir = daemon.root.join("tasks/default").join(container_id);
    std::fs::read_dir(&task_dir)
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("stdout.log"))
        .map(|entry| entry.metadata().unwrap().len())
        .sum()
}

#[test]
fn logs_tail_since_and_timestamps() {
    require_root();
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "--name", "counter", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo out $i; done"]);
    let all = daemon.ok(&["logs", "counter"]);
    assert_eq!(all, "out 1\nout 2\nout 3\nout 4\nout 5\n");
    assert_eq!(daemon.ok(&["logs", "--tail", "2", "counter"]), "out 4\nout 5\n");
    assert_eq!(daemon.ok(&["logs", "--tail", "0", "counter"]), "");
    assert_eq!(daemon.ok(&["logs", "--tail", "all", "counter"]), all);
    // stderr comes back on stderr, and counts for --tail like stdout (the order between the two
    // streams is the order the monitor read them in, which the test does not rely on).
    daemon.ok(&["run", "--name", "errors", "busybox", "sh", "-c", "echo e1 >&2; echo e2 >&2"]);
    let tail = daemon.cli(&["logs", "--tail", "1", "errors"]);
    assert_eq!(String::from_utf8_lossy(&tail.stderr), "e2\n");
    assert!(tail.stdout.is_empty());

    let stamped = daemon.ok(&["logs", "--timestamps", "--tail", "1", "-f", "counter"]);
    let (time, line) = stamped.trim_end().split_once(' ').unwrap();
    assert_eq!(line, "out 5");
    let at = berth_log::Timestamp::parse(time).unwrap_or_else(|error| panic!("{stamped}: {error}"));
    assert!(at <= berth_log::Timestamp::now());
    let first_time = daemon.ok(&["logs", "--timestamps", "counter"]).split_once(' ').unwrap().0.to_string();

    // --since: nothing printed before a moment after the run; everything from before it.
    let later = berth_log::Timestamp::now().as_ns() + 1;
    assert_eq!(daemon.ok(&["logs", "--since", &later.to_string(), "counter"]), "");
    assert_eq!(daemon.ok(&["logs", "--since", &first_time, "counter"]), all);
    assert_eq!(daemon.ok(&["logs", "--since", "1h", "counter"]), all);
}

#[test]
fn output_beyond_the_cap_is_rotated_away_and_logs_shows_the_newest() {
    require_root();
    // 64 KiB × 2 files a stream; the container prints about 4 MiB.
    let daemon = Daemon::start_with_config(|_| "[output]\nmax_file_bytes = 65536\nmax_files = 2\n".to_string());
    daemon.import_busybox();
    daemon.ok(&[
        "run", "-d", "--name", "chatty", "busybox", "sh", "-c",
        "i=0; while [ $i -lt 40000 ]; do echo line-$i-padding-padding-padding-padding-padding-padding-padding; i=$((i+1)); done; echo last line",
    ]);
    eventually(Duration::from_secs(120), "the chatty container to exit", || {
        let ps = daemon.ps();
        (ps[0]["task"]["status"] == "stopped").then_some(())
    });
    let kept = kept_output_bytes(&daemon, "chatty");
    assert!(kept <= 2 * 65536 + 200, "kept {kept} bytes of output, the cap is 128 KiB");
    let logs = daemon.ok(&["logs", "chatty"]);
    assert!(
        logs.ends_with("line-39999-padding-padding-padding-padding-padding-padding-padding\nlast line\n"),
        "{}",
        &logs[logs.len().saturating_sub(300)..]
    );
    assert!(!logs.contains("line-0-"), "the oldest output was kept");
    assert_eq!(daemon.ok(&["logs", "--tail", "1", "chatty"]), "last line\n");
}
