//! `berth run -i`: the container reads what we pipe in, EOF included; without -i its stdin is
//! /dev/null; a stream far bigger than memory passes without being buffered anywhere. And the
//! CLI's unknown-flag bug: a flag berth does not know is an error, never an image name.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use berth_tests::Daemon;

fn run_with_stdin(daemon: &Daemon, args: &[&str], input: &[u8]) -> Output {
    let mut child =
        daemon.berth().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_i_passes_stdin_and_its_end_to_the_container() {
    let daemon = Daemon::start();
    daemon.import_busybox();

    let echoed = run_with_stdin(&daemon, &["run", "--rm", "-i", "--name", "echoed", "busybox", "cat"], b"hi\n");
    assert!(echoed.status.success(), "{}", text(&echoed.stderr));
    assert_eq!(text(&echoed.stdout), "hi\n");

    // The container sees EOF: `wc` can only print once its input has ended, then the script
    // goes on.
    let counted =
        run_with_stdin(&daemon, &["run", "--rm", "-i", "busybox", "sh", "-c", "wc -l; echo done"], b"a\nb\nc\n");
    assert!(counted.status.success(), "{}", text(&counted.stderr));
    assert_eq!(text(&counted.stdout).split_whitespace().collect::<Vec<_>>(), ["3", "done"]);

    // Empty input is an immediate EOF, not a hang.
    let empty = run_with_stdin(&daemon, &["run", "--rm", "-i", "busybox", "wc", "-c"], b"");
    assert_eq!(text(&empty.stdout).trim(), "0", "{}", text(&empty.stderr));

    // Without -i, stdin is /dev/null as before: nothing of ours reaches the container.
    let closed = run_with_stdin(&daemon, &["run", "--rm", "busybox", "cat"], b"not for you\n");
    assert!(closed.status.success(), "{}", text(&closed.stderr));
    assert_eq!(text(&closed.stdout), "");

    let history = daemon.replay(&["history", "--container", "echoed"]);
    assert!(text(&history.stdout).contains("stdin open"), "{}", text(&history.stdout));
}

#[test]
// The client is waited for with wait4, which std's Child does not know about.
#[allow(clippy::zombie_processes)]
fn a_huge_stdin_stream_passes_through_without_growing_memory() {
    const STREAM_BYTES: u64 = 512 * 1024 * 1024;
    let daemon = Daemon::start();
    daemon.import_busybox();
    let berthd_peak_before = peak_rss_kib(daemon.pid());

    let mut source = Command::new("head")
        .arg("-c")
        .arg(STREAM_BYTES.to_string())
        .arg("/dev/zero")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut client = daemon
        .berth()
        .args(["run", "--rm", "-i", "busybox", "wc", "-c"])
        .stdin(Stdio::from(source.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut counted = String::new();
    std::io::Read::read_to_string(&mut client.stdout.take().unwrap(), &mut counted).unwrap();
    let (client_status, client_peak_kib) = wait_with_peak_rss_kib(client.id());
    source.wait().unwrap();
    assert_eq!(client_status, 0);
    assert_eq!(counted.trim(), STREAM_BYTES.to_string());

    // Half a GiB went through berthd and the client; neither may have held more than a few
    // chunks of it.
    let berthd_growth_kib = peak_rss_kib(daemon.pid()) - berthd_peak_before;
    assert!(berthd_growth_kib < 32 * 1024, "berthd's peak RSS grew by {berthd_growth_kib} KiB");
    assert!(client_peak_kib < 64 * 1024, "berth run -i peaked at {client_peak_kib} KiB");
}
#[test]
fn an_unknown_flag_is_an_error_naming_it_and_creates_nothing() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let refused = daemon.cli(&["run", "--memory-bogus", "1g", "busybox"]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("unexpected argument '--memory-bogus'"), "{stderr}");
    assert!(!stderr.contains("import it"), "taken for an image name: {stderr}");
    assert!(daemon.ps().is_empty());
    let help = daemon.ok(&["run", "--help"]);
    assert!(help.contains("--interactive"), "{help}");
}

/// VmHWM of a process, in KiB.
fn peak_rss_kib(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Waits for our child `pid` and returns its raw wait status and its peak RSS in KiB.
fn wait_with_peak_rss_kib(pid: u32) -> (i32, i64) {
    let mut status = 0;
    // SAFETY: wait4 fills the status and the zeroed struct it is given and keeps no pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid as i32);
    (status, usage.ru_maxrss)
}
