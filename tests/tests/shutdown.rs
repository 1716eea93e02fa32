//! A clean stop with streaming clients attached: SIGTERM ends every `events --follow` and
//! `logs -f` stream and berthd exits, so the next berthd gets the lock; `berth events --follow`
//! reconnects by itself and resumes after the last event it printed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use berth_tests::{eventually, tail, Daemon};

/// A CLI client left running, its stdout lines collected on a thread.
struct Attached {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Attached {
    fn spawn(daemon: &Daemon, args: &[&str]) -> Attached {
        let mut child = daemon.berth().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Attached { child, lines }
    }

    /// Next line, or panics after `timeout` (a hang, not a speed check).
    fn next_line(&self, timeout: Duration, what: &str) -> String {
        self.lines.recv_timeout(timeout).unwrap_or_else(|_| panic!("no line from the client: {what}"))
    }

    /// Waits for the client to end by itself; panics if it is still running after `timeout`.
    fn wait_ended(&mut self, timeout: Duration, what: &str) -> std::process::ExitStatus {
        eventually(timeout, what, || self.child.try_wait().expect("try_wait"))
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn seq_of(json_line: &str) -> (u64, u64) {
    let value: serde_json::Value =
        serde_json::from_str(json_line).unwrap_or_else(|error| panic!("{error}: {json_line}"));
    (value["seq"].as_u64().expect("seq"), value["index"].as_u64().unwrap_or(0))
}

#[test]
fn sigterm_ends_every_stream_and_events_follow_resumes_after_the_restart() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "talker", "busybox", "sh", "-c", "echo hello; exec sleep 1000"]);

    // Many clients at once: followers of the log (one of them told not to reconnect) and of
    // the container's output.
    let resuming = Attached::spawn(&daemon, &["events", "--follow", "-A", "--output", "json"]);
    let not_resuming = Attached::spawn(&daemon, &["events", "--follow", "--no-reconnect", "--output", "json"]);
    let mut others: Vec<Attached> = (0..8).map(|_| Attached::spawn(&daemon, &["events", "-f", "-A"])).collect();
    others.extend((0..8).map(|_| Attached::spawn(&daemon, &["logs", "-f", "talker"])));
    for logs_client in &others[8..] {
        assert_eq!(logs_client.next_line(Duration::from_secs(30), "logs -f prints the output"), "hello");
    }
    // Every event follower is subscribed once it has printed an event recorded after it started.
    daemon.ok(&["namespace", "create", "before-stop"]);
    let mut seen = vec![seq_of(&resuming.next_line(Duration::from_secs(30), "the first event"))];
    not_resuming.next_line(Duration::from_secs(30), "the first event");
    for events_client in &others[..8] {
        events_client.next_line(Duration::from_secs(30), "the first event");
    }

    daemon.send_sigterm();
    let status = daemon.wait_for_exit(Duration::from_secs(30));
    assert!(status.success(), "berthd stopped with {status}:\n{}", tail(&daemon.daemon_log(), 20));
    let mut not_resuming = not_resuming;
    let status = not_resuming.wait_ended(Duration::from_secs(30), "events --follow --no-reconnect ends");
    assert!(!status.success(), "a follow that was cut off says so with its exit status");
    for (index, client) in others.iter_mut().enumerate() {
        let what = format!("client {index} ends once berthd stopped");
        if index < 8 {
            // Reconnecting followers keep running; only the non-reconnecting one ends.
            assert!(client.child.try_wait().expect("try_wait").is_none(), "{what}");
            continue;
        }
        client.wait_ended(Duration::from_secs(30), &what);
    }

    // The next berthd starts (the lock is free) and the follower picks up where it left off:
    // every event exactly once, in order, the new daemon's start included.
    daemon.start_again();
    daemon.ok(&["namespace", "create", "after-restart"]);
    loop {
        let line = resuming.next_line(Duration::from_secs(30), "events after the restart");
        seen.push(seq_of(&line));
        if line.contains("after-restart") {
            break;
        }
    }
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "events repeated or out of order: {seen:?}");
    let first_seq = seen[0].0;
    let last_seq = seen.last().unwrap().0;
    let seqs: std::collections::BTreeSet<u64> = seen.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs.len() as u64, last_seq - first_seq + 1, "no event between was skipped: {seen:?}");
}
