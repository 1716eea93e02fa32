//! Restart policies carried out by berthd against real runc: on-failure:N stops after N
//! restarts, always keeps restarting, unless-stopped leaves a container a user stopped alone
//! (also across a berthd restart), and the attempt count and backoff continue across a kill -9
//! of berthd — each restart an event with its cause and attempt.

use std::time::Duration;

use berth_tests::{eventually, Daemon};

/// The `TaskRestartScheduled` events of one container, in log order.
fn restarts(daemon: &Daemon, id: &str) -> Vec<serde_json::Value> {
    daemon
        .ok(&["events", "--output", "json"])
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["kind"] == "TaskRestartScheduled" && event["fields"]["container_id"] == id)
        .map(|event| event["fields"].clone())
        .collect()
}

fn n_exits(daemon: &Daemon, id: &str) -> usize {
    daemon
        .ok(&["events", "--output", "json"])
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["kind"] == "TaskExited" && event["fields"]["container_id"] == id)
        .count()
}

fn task_of(daemon: &Daemon, id: &str) -> serde_json::Value {
    let containers = daemon.ps();
    containers.iter().find(|container| container["id"] == id).map(|container| container["task"].clone()).unwrap()
}

/// Long enough for a restart the policy wrongly owed to have been recorded (the longest
/// backoff these tests reach is 400 ms); only used to show that something does *not* happen.
const SETTLE: Duration = Duration::from_secs(2);

#[test]
fn on_failure_restarts_up_to_its_count_then_leaves_the_container_stopped() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3"]);
    eventually(Duration::from_secs(60), "three exits", || (n_exits(&daemon, "flaky") >= 3).then_some(()));
    let task = eventually(Duration::from_secs(60), "the last task stopped", || {
        let task = task_of(&daemon, "flaky");
        (task["status"] == "stopped").then_some(task)
    });
    assert_eq!(task["exit_code"], 3);
    std::thread::sleep(SETTLE);
    let recorded = restarts(&daemon, "flaky");
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!((recorded[0]["attempt"].as_u64(), recorded[0]["delay_ms"].as_u64()), (Some(1), Some(100)));
    assert_eq!((recorded[1]["attempt"].as_u64(), recorded[1]["delay_ms"].as_u64()), (Some(2), Some(200)));
    assert_eq!(recorded[0]["cause"], "exit code 3");
    assert_eq!(n_exits(&daemon, "flaky"), 3);

    // A clean exit is no failure: on-failure leaves it alone.
    daemon.ok(&["run", "-d", "--name", "clean", "--restart", "on-failure", "busybox", "true"]);
    eventually(Duration::from_secs(60), "the exit", || (n_exits(&daemon, "clean") == 1).then_some(()));
    std::thread::sleep(SETTLE);
    assert!(restarts(&daemon, "clean").is_empty());
}

#[test]
fn always_restarts_and_a_users_kill_stops_unless_stopped_for_good() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "loop", "--restart", "always", "busybox", "true"]);
    eventually(Duration::from_secs(60), "three restarts", || (restarts(&daemon, "loop").len() >= 3).then_some(()));
    let recorded = restarts(&daemon, "loop");
    assert_eq!(recorded[0]["cause"], "exit code 0");
    daemon.ok(&["rm", "-f", "loop"]);

    daemon.ok(&["run", "-d", "--name", "service", "--restart", "unless-stopped", "busybox", "sleep", "1000"]);
    daemon.ok(&["kill", "-s", "KILL", "service"]);
    eventually(Duration::from_secs(60), "the kill's exit", || {
        (task_of(&daemon, "service")["status"] == "stopped").then_some(())
    });
    std::thread::sleep(SETTLE);
    assert!(restarts(&daemon, "service").is_empty(), "restarted after a user's kill");
    // Not after berthd's restart either: the user's stop is in the log.
    daemon.restart();
    std::thread::sleep(SETTLE);
    assert!(restarts(&daemon, "service").is_empty(), "restarted after berthd came back");
    assert_eq!(task_of(&daemon, "service")["status"], "stopped");
}

#[test]
fn the_attempt_count_and_backoff_continue_across_a_kill_9_of_berthd() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "crashy", "--restart", "on-failure:6", "busybox", "sh", "-c", "exit 1"]);
    eventually(Duration::from_secs(60), "two restarts", || (restarts(&daemon, "crashy").len() >= 2).then_some(()));
    daemon.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let task = loop {
        let task = task_of(&daemon, "crashy");
        if restarts(&daemon, "crashy").len() == 6 && task["status"] == "stopped" {
            break task;
        }
        if std::time::Instant::now() > deadline {
            let history = daemon.replay(&["history", "--container", "crashy"]);
            panic!(
                "no sixth restart and final exit; task {task}\nhistory:\n{}\ndaemon log:\n{}",
                String::from_utf8_lossy(&history.stdout),
                berth_tests::tail(&daemon.daemon_log(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(task["exit_code"], 1);
    let recorded = restarts(&daemon, "crashy");
    let attempts: Vec<u64> = recorded.iter().map(|restart| restart["attempt"].as_u64().unwrap()).collect();
    let delays: Vec<u64> = recorded.iter().map(|restart| restart["delay_ms"].as_u64().unwrap()).collect();
    // Neither reset (1, 2, 1, …) nor doubled-up (two of one attempt) by the kill -9.
    assert_eq!(attempts, [1, 2, 3, 4, 5, 6]);
    assert_eq!(delays, [100, 200, 400, 800, 1600, 3200]);
    std::thread::sleep(SETTLE);
    assert_eq!(restarts(&daemon, "crashy").len(), 6);
}
