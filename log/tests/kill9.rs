//! A real crash test: a child process (this test binary re-executed) appends from several threads
//! and prints every seq once `append` returned; the parent SIGKILLs it at random moments and
//! checks that every acknowledged seq survived, seqs are dense and the chain verifies.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_log::{Durability, EventLog, RecoveryMode, Seq};
use common::*;
use rand::Rng;

const CHILD_DIR_ENV: &str = "BERTH_LOG_KILL9_CHILD_DIR";
const SEGMENT_SIZE: u64 = 256 * 1024;

/// The child's body. As a normal test (no env var) it returns at once.
#[test]
fn kill9_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else { return };
    let (log, _) =
        EventLog::open(Path::new(&dir), options_with(SEGMENT_SIZE, Durability::Sync, RecoveryMode::TruncateTornTail))
            .unwrap();
    let log = Arc::new(log);
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4u64)
        .map(|thread_idx| {
            let (log, stdout) = (log.clone(), stdout.clone());
            std::thread::spawn(move || {
                for append_idx in 0u64.. {
                    let seq = log
                        .append(&payload_for(
                            thread_idx * 1_000_000 + append_idx,
                            100 + (append_idx as usize * 37) % 400,
                        ))
                        .unwrap();
                    let mut stdout = stdout.lock().unwrap();
                    writeln!(stdout, "acked {seq}").unwrap();
                    stdout.flush().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn sigkill_during_concurrent_appends_loses_no_acknowledged_record() {
    if std::env::var(CHILD_DIR_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let test_binary = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut n_acked_total = 0usize;
    let options = options_with(SEGMENT_SIZE, Durability::Sync, RecoveryMode::TruncateTornTail);
    for round in 0..20 {
        let mut child = Command::new(&test_binary)
            .args(["kill9_child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let child_stdout = child.stdout.take().unwrap();
        let (first_ack_sender, first_ack) = std::sync::mpsc::channel::<()>();
        let collector = std::thread::spawn(move || {
            let mut acked = BTreeSet::new();
            for line in BufReader::new(child_stdout).lines().map_while(Result::ok) {
                if let Some(seq) = line.strip_prefix("acked ").and_then(|seq| seq.parse::<u64>().ok()) {
                    acked.insert(seq);
                    let _ = first_ack_sender.send(());
                }
            }
            acked
        });
        // The kill lands at a random moment while appends are being acknowledged, however slow
        // the machine is to start the child and open the log.
        if let Err(error) = first_ack.recv_timeout(Duration::from_secs(60)) {
            panic!("round {round}: the child acknowledged no append ({error}: it exited, or took over 60 s)");
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(40..300)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acked = collector.join().unwrap();
        n_acked_total += acked.len();

        let (log, report) = EventLog::open(dir.path(), options.clone())
            .unwrap_or_else(|error| panic!("round {round}: reopen failed: {error}"));
        let last_seq = report.last_seq.get();
        if let Some(&highest_acked) = acked.last() {
            assert!(
                highest_acked <= last_seq,
                "round {round}: acked seq {highest_acked} lost (log ends at {last_seq})"
            );
        }
        let seqs: Vec<u64> = read_all(&log, Seq(1)).into_iter().map(|(seq, _)| seq.get()).collect();
        assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>(), "round {round}: seqs are not dense");
        let verify = log.verify().unwrap_or_else(|error| panic!("round {round}: {error}"));
        assert_eq!(verify.last_seq, Seq(last_seq));
    }
    // Every round waited for a first acknowledgement, so this only reports how much was checked.
    eprintln!("{n_acked_total} acknowledged appends checked over 20 rounds");
}
