//! The log says why a task ended: an OOM kill (a real memory limit on the container's cgroup)
//! is recorded as `oom-killed`, a killed monitor as `monitor-lost`, and both show in `berth ps`
//! and `berth-replay history`.

use std::path::PathBuf;
use std::time::Duration;

use berth_tests::{eventually, Daemon};

fn task_of(daemon: &Daemon, id: &str) -> serde_json::Value {
    let containers = daemon.ps();
    let container = containers.iter().find(|container| container["id"] == id).unwrap_or_else(|| panic!("{id} listed"));
    container["task"].clone()
}

#[test]
fn an_oom_kill_is_recorded_as_oom_killed() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    // The container waits for its memory limit, then allocates (and touches) 64 MiB as init.
    let script = "while [ ! -e /go ]; do sleep 0.1; done; exec dd if=/dev/zero of=/dev/null bs=64M count=1";
    daemon.ok(&["run", "-d", "--name", "hog", "busybox", "sh", "-c", script]);
    let relative = format!("{}/default/hog", daemon.cgroup_parent().trim_start_matches('/'));
    let v1 = PathBuf::from("/sys/fs/cgroup/memory").join(&relative);
    let limit_file = if v1.is_dir() {
        v1.join("memory.limit_in_bytes")
    } else {
        PathBuf::from("/sys/fs/cgroup").join(&relative).join("memory.max")
    };
    std::fs::write(&limit_file, "16777216").unwrap_or_else(|error| panic!("set {}: {error}", limit_file.display()));
    std::fs::write(daemon.state.join("bundles/default/hog/rootfs/go"), b"").expect("tell the container to go");

    let waited = daemon.ok(&["wait", "hog"]);
    assert_eq!(waited.trim(), "137", "killed by SIGKILL");
    let task = task_of(&daemon, "hog");
    assert_eq!(task["exit_cause"], "oom-killed", "{task}");
    let listed = daemon.ok(&["ps", "-a"]);
    assert!(listed.contains("oom-killed"), "{listed}");
    let told = daemon.history("hog");
    assert!(told.contains("OOM killer"), "{told}");
}

#[test]
fn a_killed_monitor_is_recorded_as_monitor_lost_and_a_plain_exit_as_exited() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "orphaned", "busybox", "sleep", "1000"]);
    let monitor_json = daemon.state.join("tasks/default/orphaned/monitor.json");
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&monitor_json).expect("monitor.json")).expect("monitor json");
    let monitor_pid = identity["monitor_pid"].as_i64().expect("monitor pid") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor_pid), nix::sys::signal::Signal::SIGKILL)
        .expect("SIGKILL the monitor");
    let task = eventually(Duration::from_secs(60), "the lost monitor's exit is recorded", || {
        let task = task_of(&daemon, "orphaned");
        (task["status"] == "stopped").then_some(task)
    });
    assert_eq!(task["exit_cause"], "monitor-lost", "{task}");
    let listed = daemon.ok(&["ps", "-a"]);
    assert!(listed.contains("monitor lost"), "{listed}");
    let told = daemon.history("orphaned");
    assert!(told.contains("monitor lost"), "{told}");

    let plain = daemon.cli(&["run", "--name", "plain", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(plain.status.code(), Some(3));
    assert_eq!(task_of(&daemon, "plain")["exit_cause"], "exited");
}
