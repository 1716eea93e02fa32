//! `berth exec`: a process in a running container with its own exit code (or the shell's
//! 128 + N for a signal), its own environment, directory, user and stdin; intent and outcome
//! recorded with who asked; an exec running while berthd is killed -9 has its end recorded by
//! the berthd that comes back; bad input refused with a message that says what to do.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use berth_runtime::sys::process::read_process_stat;
use berth_tests::{eventually, Daemon};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn start_sleeper(daemon: &Daemon, name: &str) {
    daemon.ok(&["run", "-d", "--name", name, "busybox", "sleep", "600"]);
}

#[test]
fn exec_runs_inside_with_its_own_exit_code_and_is_recorded() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    start_sleeper(&daemon, "box");

    assert_eq!(daemon.ok(&["exec", "box", "echo", "hi", "--not-a-flag"]), "hi --not-a-flag\n");
    let exited = daemon.cli(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(exited.status.code(), Some(7), "{}", text(&exited.stderr));
    assert_eq!(text(&exited.stdout), "out\n");
    assert!(text(&exited.stderr).contains("err\n"));
    let killed = daemon.cli(&["exec", "box", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(killed.status.code(), Some(128 + 15), "{}", text(&killed.stderr));

    // It shares the container's namespaces: it sees the container's init as pid 1.
    let init = daemon.ok(&["exec", "box", "cat", "/proc/1/cmdline"]);
    assert_eq!(init, "sleep\x00600\x00");
    let shaped = daemon.ok(&[
        "exec",
        "-e",
        "GREETING=hey",
        "-w",
        "/tmp",
        "-u",
        "65534:65534",
        "box",
        "sh",
        "-c",
        "echo $GREETING $(pwd) $(id -u)",
    ]);
    assert_eq!(shaped, "hey /tmp 65534\n");

    let mut child = daemon
        .berth()
        .args(["exec", "-i", "box", "sh", "-c", "cat; echo end-of-input"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped in\n").unwrap();
    let piped = child.wait_with_output().unwrap();
    assert!(piped.status.success());
    assert_eq!(text(&piped.stdout), "piped in\nend-of-input\n");

    let told = daemon.history("box");
    assert!(told.contains(r#"asked to exec ["sh","-c","echo out; echo err >&2; exit 7"]"#), "{told}");
    assert!(told.contains("exited with code 7"), "{told}");
    assert!(told.contains("killed by signal 15 (SIGTERM)"), "{told}");
    assert!(told.contains("as user 65534:65534, in /tmp"), "{told}");
    // The container itself is untouched.
    assert_eq!(daemon.ps().len(), 1);

    // Each exec's files are under the state directory, private, and nothing of them is in the
    // task directory; they go with the container.
    let execs_dir = daemon.state.join("execs").join(&daemon.namespace).join("box");
    let exec_dirs: Vec<PathBuf> = std::fs::read_dir(&execs_dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert_eq!(exec_dirs.len(), 6, "{exec_dirs:?}");
    for dir in [&execs_dir, &exec_dirs[0]] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
    }
    for file in ["exit.json", "monitor.json", "stdout.log"] {
        assert!(exec_dirs.iter().all(|dir| dir.join(file).is_file()), "{file} missing in {exec_dirs:?}");
    }
    // The process (with its environment opened from the sealed record) went once runc read it.
    assert!(exec_dirs.iter().all(|dir| !dir.join("process.json").exists()), "{exec_dirs:?}");
    assert!(!daemon.root.join("tasks").join(&daemon.namespace).join("box").join("execs").exists());
    daemon.ok(&["rm", "-f", "box"]);
    // Removed by the container's worker once the removal is recorded.
    eventually(Duration::from_secs(30), "the exec directories to go with the container", || {
        (!execs_dir.exists()).then_some(())
    });
}

#[test]
fn an_exec_running_through_a_berthd_kill9_has_its_end_recorded_after_the_restart() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    start_sleeper(&daemon, "box");
    let marker = "/tmp/go-on";
    let mut client = daemon
        .berth()
        .args(["exec", "box", "sh", "-c", &format!("while [ ! -e {marker} ]; do sleep 0.1; done; exit 5")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The exec's own line ("exec ID started: pid N"), not the task's ("task started: pid N").
    eventually(Duration::from_secs(60), "the exec to be recorded as started", || {
        daemon.history("box").lines().any(|line| line.contains(" exec ") && line.contains("started: pid")).then_some(())
    });
    daemon.kill9();
    let _ = client.kill();
    let _ = client.wait();
    daemon.start_again();
    // The exec's monitor outlived berthd; the process ends only now, seen by the new berthd.
    daemon.ok(&["exec", "box", "touch", marker]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !daemon.history("box").contains("exited with code 5") {
        assert!(
            std::time::Instant::now() < deadline,
            "the exec's exit was never recorded; history:\n{}\ndaemon log:\n{}",
            daemon.history("box"),
            daemon.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.ok(&["rm", "-f", "box"]);
}

#[test]
fn exec_refuses_what_it_cannot_run_and_says_why() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let unknown = daemon.cli(&["exec", "nosuch", "true"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("nosuch"), "{}", text(&unknown.stderr));

    daemon.ok(&["run", "--name", "done", "busybox", "true"]);
    let stopped = daemon.cli(&["exec", "done", "true"]);
    assert_eq!(stopped.status.code(), Some(1));
    assert!(text(&stopped.stderr).contains("not running"), "{}", text(&stopped.stderr));

    start_sleeper(&daemon, "box");
    let no_command = daemon.cli(&["exec", "box"]);
    assert_eq!(no_command.status.code(), Some(2), "{}", text(&no_command.stderr));
    let missing = daemon.cli(&["exec", "box", "/no/such/program"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("/no/such/program"), "{}", text(&missing.stderr));
    let no_terminal = daemon.cli(&["exec", "-it", "box", "sh"]);
    assert_eq!(no_terminal.status.code(), Some(1));
    assert!(text(&no_terminal.stderr).contains("not a terminal"), "{}", text(&no_terminal.stderr));
    daemon.ok(&["rm", "-f", "box", "done"]);
}

/// The pids of berthd's waiting `berth-monitor standby` processes.
fn standbys_of(daemon: &Daemon) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let command_line = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let child_of_berthd = read_process_stat(pid as i32)
            .is_some_and(|stat| stat.is_running() && stat.parent_pid as u32 == daemon.pid());
        if command_line.ends_with(b"berth-monitor\0standby\0") && child_of_berthd {
            pids.push(pid);
        }
    }
    pids
}

fn is_running(pid: u32) -> bool {
    read_process_stat(pid as i32).is_some_and(|stat| stat.is_running())
}

/// berthd keeps one monitor started ahead of need, idle-scheduled; exec's monitor comes from
/// it (and says so by its arguments, not "standby"); a berthd killed with -9 leaves no standby
/// behind, and the next berthd starts its own.
#[test]
fn the_standby_monitor_serves_execs_and_goes_with_a_killed_berthd() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    start_sleeper(&daemon, "box");
    let standby = eventually(Duration::from_secs(60), "a standby monitor to wait", || standbys_of(&daemon).pop());
    let scheduling = std::fs::read_to_string(format!("/proc/{standby}/sched")).unwrap_or_default();
    assert!(
        scheduling.lines().any(|line| line.starts_with("policy") && line.trim_end().ends_with(" 5")),
        "SCHED_IDLE (5) while it waits:\n{scheduling}"
    );

    let mut client = daemon.berth().args(["exec", "box", "sleep", "30"]).spawn().unwrap();
    let exec_monitor = eventually(Duration::from_secs(60), "the exec's monitor", || {
        let command_line = std::fs::read(format!("/proc/{standby}/cmdline")).ok()?;
        let command_line = text(&command_line).replace('\0', " ");
        (command_line.contains("--id box ") && command_line.contains(" --exec")).then_some(command_line)
    });
    assert!(exec_monitor.starts_with("berth-monitor "), "{exec_monitor}");
    let scheduling = std::fs::read_to_string(format!("/proc/{standby}/sched")).unwrap_or_default();
    assert!(
        scheduling.lines().any(|line| line.starts_with("policy") && line.trim_end().ends_with(" 0")),
        "SCHED_OTHER (0) at work:\n{scheduling}"
    );
    let next = eventually(Duration::from_secs(60), "the next standby", || standbys_of(&daemon).pop());
    assert_ne!(next, standby);

    daemon.kill9();
    eventually(Duration::from_secs(30), "the standby of a killed berthd to exit", || (!is_running(next)).then_some(()));
    assert!(is_running(standby), "the exec's monitor outlives berthd");
    let _ = client.kill();
    let _ = client.wait();
    daemon.start_again();
    assert_eq!(daemon.ok(&["exec", "box", "echo", "again"]), "again\n");
    eventually(Duration::from_secs(60), "the new berthd's standby", || standbys_of(&daemon).pop());
    daemon.ok(&["rm", "-f", "box"]);
}
