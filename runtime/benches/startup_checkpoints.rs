//! Start-up against log length, with and without a projection checkpoint (bench binary,
//! `harness = false`): for each length (default 10^4, 10^5, 10^6, 10^7 records) a log of
//! realistic envelopes is written straight through berth-log (the replay bench's generator), with
//! a checkpoint written `--tail` records before its end and vouched for by a `CheckpointWritten`
//! record, as berthd writes them. Then, alternating, the two start-ups berthd can make are timed
//! up to the point where it has its projections (what follows — recording `DaemonStarted`,
//! reconciling, binding the socket — is the same in both):
//!
//! - **full**: `EventLog::open` then `store::replay_verified` (replay with the whole chain
//!   verified beside it): what berthd does with no usable checkpoint;
//! - **checkpoint**: `EventLog::open` then `checkpoint::recover_state`: read and check the
//!   newest checkpoint, match it against the chain, replay and verify the tail only.
//!
//! Also printed, as the floor a checkpoint start cannot go below on this machine: reading the
//! checkpoint file and decoding it alone. Goal: a flat line for the checkpoint start, 10^7
//! records ≤ 100 ms plus the tail. Each log is removed before the next is written.
//!
//! Usage: `cargo bench -p berth-runtime --bench startup_checkpoints -- [DIR] [--sizes 10000,100000]
//! [--tail N] [--repeat N]` (DIR default /var/tmp; 10^7 records need ~2.5 GiB there). Run through
//! scripts/bench-startup-checkpoints.sh.

#[path = "../../projections/benches/support/generator.rs"]
mod generator;

use std::path::Path;
use std::time::{Duration, Instant};

use berth_log::{Durability, EventLog, LogOptions, Seq};
use berth_projections::{Envelope, Event, Origin};
use berth_runtime::daemon::checkpoint::{list_checkpoints, recover_state, write_checkpoint};
use berth_runtime::daemon::store::{replay, replay_verified};

fn options(root: &Path, durability: Durability) -> LogOptions {
    LogOptions { durability, anchor: Some(root.join(berth_log::ANCHOR_FILE_NAME)), ..LogOptions::default() }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// A log of `n_records` with a vouched checkpoint `tail` records before its end.
fn build(root: &Path, n_records: u64, tail: u64) -> (Duration, u64) {
    let started = Instant::now();
    let (log, _) = EventLog::open(&root.join("log"), options(root, Durability::NoSync)).unwrap();
    let checkpoint_at = n_records.saturating_sub(tail).max(1);
    let checkpoints_dir = root.join("checkpoints");
    let mut checkpoint_bytes = 0;
    generator::append_records_pausing(&log, n_records - 1, checkpoint_at, |log| {
        let state = replay(log).unwrap();
        let chain_hash = log.chain_hash_at(state.last_seq).unwrap();
        let digest = write_checkpoint(&checkpoints_dir, &state, &chain_hash).unwrap();
        let event = Event::CheckpointWritten { covers: state.last_seq, digest: hex::encode(digest) };
        let origin = Origin::Daemon { reason: "projection checkpoint".into(), answers: None };
        log.append(&Envelope::new("", origin, vec![event]).encode()).unwrap();
        checkpoint_bytes = std::fs::metadata(&list_checkpoints(&checkpoints_dir)[0].1).unwrap().len();
    });
    (started.elapsed(), checkpoint_bytes)
}

fn start_full(root: &Path) -> (Duration, Seq) {
    let started = Instant::now();
    let (log, _) = EventLog::open(&root.join("log"), options(root, Durability::Sync)).unwrap();
    let state = replay_verified(&log).unwrap();
    (started.elapsed(), state.last_seq)
}

fn start_from_checkpoint(root: &Path) -> (Duration, Seq) {
    let started = Instant::now();
    let (log, _) = EventLog::open(&root.join("log"), options(root, Durability::Sync)).unwrap();
    let recovered = recover_state(&log, &root.join("checkpoints")).unwrap();
    let elapsed = started.elapsed();
    assert!(recovered.from_checkpoint.is_some(), "the checkpoint was used");
    (elapsed, recovered.state.last_seq)
}

/// `EventLog::open` alone (recovery scans the active segment; the anchor check): paid by both.
fn open_alone(root: &Path) -> Duration {
    let started = Instant::now();
    let opened = EventLog::open(&root.join("log"), options(root, Durability::Sync)).unwrap();
    let elapsed = started.elapsed();
    drop(opened);
    elapsed
}

/// Reading and decoding the checkpoint file alone.
fn read_checkpoint(root: &Path) -> Duration {
    let started = Instant::now();
    let path = &list_checkpoints(&root.join("checkpoints"))[0].1;
    let bytes = std::fs::read(path).unwrap();
    berth_projections::checkpoint::decode_checkpoint(&bytes).unwrap();
    started.elapsed()
}

fn main() {
    let mut dir = std::path::PathBuf::from("/var/tmp");
    let (mut sizes, mut tail, mut repeat) = (vec![10_000u64, 100_000, 1_000_000, 10_000_000], 1_000u64, 5usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                sizes = args
                    .next()
                    .map(|list| list.split(',').map(|size| size.trim().parse().expect("--sizes N,N,...")).collect())
                    .expect("--sizes N,N,...")
            }
            "--tail" => tail = args.next().and_then(|value| value.parse().ok()).expect("--tail N"),
            "--repeat" => repeat = args.next().and_then(|value| value.parse().ok()).expect("--repeat N"),
            "--bench" => {}
            other => dir = other.into(),
        }
    }
    println!("cores: {}", std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("tail after the checkpoint: {tail} records; medians of {repeat} runs");
    println!("| records | built in (s) | checkpoint (bytes) | full replay + verify (ms) | from checkpoint (ms) | of which log open (ms) | checkpoint read + decode alone (ms) | load avg |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for n_records in sizes {
        let root = tempfile::Builder::new().prefix("berth-ckpt-bench-").tempdir_in(&dir).expect("temp dir");
        let (built_in, checkpoint_bytes) = build(root.path(), n_records, tail);
        // Warm the page cache, and check both paths reach the same end.
        assert_eq!(start_full(root.path()).1, start_from_checkpoint(root.path()).1);
        let (mut full, mut from_checkpoint, mut alone, mut open) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // A full start of 10^7 records takes seconds: fewer rounds of it.
        let full_rounds = if n_records >= 5_000_000 { 1 } else { repeat };
        for round in 0..repeat {
            if round < full_rounds {
                full.push(start_full(root.path()).0);
            }
            from_checkpoint.push(start_from_checkpoint(root.path()).0);
            alone.push(read_checkpoint(root.path()));
            open.push(open_alone(root.path()));
        }
        let ms = |duration: Duration| format!("{:.1}", duration.as_secs_f64() * 1000.0);
        println!(
            "| {n_records} | {:.1} | {checkpoint_bytes} | {} | {} | {} | {} | {} |",
            built_in.as_secs_f64(),
            ms(median(full)),
            ms(median(from_checkpoint)),
            ms(median(open)),
            ms(median(alone)),
            load_average()
        );
    }
}
