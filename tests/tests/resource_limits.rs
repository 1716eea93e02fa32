//! Limits given at create reach the kernel: each is read back from the running container's
//! cgroup files (or its /proc limits); `berth update` changes them in place and in the record,
//! so the next task keeps them; a memory limit ends a hog as an OOM kill; bad values are refused
//! with the flag named and nothing recorded.

use std::path::PathBuf;

use berth_tests::{tail, Daemon};

/// A file of the container's cgroup: the v1 hierarchy of `controller` when there is one, else
/// the v2 file `v2_name`.
fn cgroup_file(daemon: &Daemon, id: &str, controller: &str, v1_name: &str, v2_name: &str) -> String {
    let relative = format!("{}/default/{id}", daemon.cgroup_parent().trim_start_matches('/'));
    let v1 = PathBuf::from("/sys/fs/cgroup").join(controller).join(&relative);
    let path =
        if v1.is_dir() { v1.join(v1_name) } else { PathBuf::from("/sys/fs/cgroup").join(&relative).join(v2_name) };
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display())).trim().to_string()
}

fn recorded_policies(daemon: &Daemon, id: &str) -> serde_json::Value {
    let state = daemon.state_dump();
    state["namespaces"]["default"]["containers"][id]["record"]["policies"].clone()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn limits_are_in_the_cgroup_files_of_a_running_container_and_update_changes_them() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "limited",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "42",
        "--ulimit",
        "nofile=100:200",
        "busybox",
        "sleep",
        "1000",
    ]);
    let read = |controller: &str, v1: &str, v2: &str| cgroup_file(&daemon, "limited", controller, v1, v2);
    assert_eq!(read("memory", "memory.limit_in_bytes", "memory.max"), (64u64 << 20).to_string());
    // v1 counts memory plus swap; v2's memory.swap.max counts swap alone.
    let swap = read("memory", "memory.memsw.limit_in_bytes", "memory.swap.max");
    assert!(swap == (128u64 << 20).to_string() || swap == (64u64 << 20).to_string(), "swap limit {swap}");
    let quota = read("cpu", "cpu.cfs_quota_us", "cpu.max");
    assert!(quota == "50000" || quota == "50000 100000", "cpu quota {quota}");
    assert_eq!(read("cpuset", "cpuset.cpus", "cpuset.cpus"), "0");
    let shares = read("cpu", "cpu.shares", "cpu.weight");
    assert!(shares == "512" || shares == "20", "cpu shares {shares}");
    assert_eq!(read("pids", "pids.max", "pids.max"), "42");
    let proc_limits = std::fs::read_to_string(format!("/proc/{}/limits", init_pid(&daemon, "limited"))).unwrap();
    let open_files = proc_limits.lines().find(|line| line.starts_with("Max open files")).unwrap();
    assert_eq!(open_files.split_whitespace().collect::<Vec<_>>()[3..5], ["100", "200"], "{open_files}");

    daemon.ok(&["update", "--memory", "96m", "--memory-swap", "192m", "--cpus", "1", "--pids-limit", "7", "limited"]);
    let read = |controller: &str, v1: &str, v2: &str| cgroup_file(&daemon, "limited", controller, v1, v2);
    assert_eq!(read("memory", "memory.limit_in_bytes", "memory.max"), (96u64 << 20).to_string());
    let quota = read("cpu", "cpu.cfs_quota_us", "cpu.max");
    assert!(quota == "100000" || quota == "100000 100000", "cpu quota {quota}");
    assert_eq!(read("pids", "pids.max", "pids.max"), "7");
    // The record says so too (what a restart reads), and what the update left alone is kept.
    let policies = recorded_policies(&daemon, "limited");
    assert_eq!(policies["limits"]["memory_bytes"], 96 << 20, "{policies}");
    assert_eq!(policies["limits"]["pids_limit"], 7);
    assert_eq!(policies["limits"]["cpu_shares"], 512);
    assert_eq!(policies["limits"]["cpuset_cpus"], "0");
    let events = daemon.ok(&["events", "--output", "json"]);
    assert!(events.contains("ContainerUpdated"), "{events}");

    // A new task of the container gets the updated limits from the record.
    daemon.ok(&["rm", "-f", "limited"]);
}

/// The pid of a running container's init, from `berth ps`.
fn init_pid(daemon: &Daemon, id: &str) -> u64 {
    let containers = daemon.ps();
    let container = containers.iter().find(|container| container["id"] == id).expect("listed");
    container["task"]["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {container}"))
}

#[test]
fn an_updated_limit_holds_for_the_next_task_of_the_container() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["create", "--name", "later", "--pids-limit", "30", "busybox", "sleep", "1000"]);
    daemon.ok(&["update", "--pids-limit", "11", "later"]);
    daemon.ok(&["start", "later"]);
    assert_eq!(cgroup_file(&daemon, "later", "pids", "pids.max", "pids.max"), "11");
    daemon.ok(&["rm", "-f", "later"]);
}

#[test]
fn a_container_over_its_memory_limit_is_recorded_as_oom_killed() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let output = daemon.cli(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "8m",
        "--memory-swap",
        "8m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(output.status.code(), Some(137), "{}", stderr_of(&output));
    let containers = daemon.ps();
    let hog = containers.iter().find(|container| container["id"] == "hog").expect("listed");
    assert_eq!(hog["task"]["exit_cause"], "oom-killed", "{hog}");
}

#[test]
fn bad_limits_are_refused_with_the_flag_named_and_nothing_recorded() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let cases: &[(&[&str], &str)] = &[
        (&["--memory", "12x"], "--memory \"12x\" is not a size"),
        (&["--memory", "1m"], "below the minimum of 6 MiB"),
        (&["--memory-swap", "1g"], "--memory-swap needs --memory"),
        (&["--cpus", "abc"], "--cpus \"abc\" is not a number of cpus"),
        (&["--cpus", "4096"], "more than the"),
        (&["--cpuset-cpus", "0-4095"], "which this host does not have online"),
        (&["--cpuset-cpus", "x"], "is not a cpu list"),
        (&["--cpu-shares", "1"], "--cpu-shares \"1\" is not a number from 2 to 262144"),
        (&["--pids-limit", "-5"], "--pids-limit \"-5\""),
        (&["--ulimit", "nofile=10:5"], "soft limit is above the hard"),
        (&["--ulimit", "bogus=1"], "unknown limit"),
        (&["--restart", "sometimes"], "is not a restart policy"),
        (&["--cap-add", "fly"], "unknown capability"),
        (&["--device", "/etc/passwd"], "not a device node"),
        (&["--device", "dev/null"], "both paths must be absolute"),
        (&["--userns-remap", "0:100000:65536"], "is not supported yet"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["create", "--name", "refused"];
        args.extend_from_slice(flags);
        args.extend(["busybox", "true"]);
        let output = daemon.cli(&args);
        assert!(!output.status.success(), "{flags:?} was accepted");
        let error = stderr_of(&output);
        assert!(error.contains(expected), "{flags:?}: expected {expected:?} in {error}");
    }
    let state = daemon.state_dump();
    let containers = &state["namespaces"]["default"]["containers"];
    assert!(containers.get("refused").is_none(), "a refused create was recorded: {containers}");
    let update = daemon.cli(&["update", "--memory", "1m", "nonexistent"]);
    assert!(!update.status.success());
    assert!(stderr_of(&update).contains("not found"), "{}", stderr_of(&update));
    assert!(daemon.cli(&["ps", "-a"]).status.success(), "{}", tail(&daemon.daemon_log(), 20));
}
