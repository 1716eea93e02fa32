//! Start-up benchmark (bench binary, `harness = false`): how long berthd takes from opening a
//! 1,000,000-record log to having its projections ready, without and with the hash chain
//! verified beside replay.
//!
//! "Without" is what start-up did before chain verification: `EventLog::open` (recovery, with the
//! anchor) then `store::replay` (decode on spare cores, fold). "With" is what berthd does now:
//! `EventLog::open` then `Store::open`, which runs `store::replay_verified`. Everything after
//! (recording `DaemonStarted`, reconciling, binding the socket) is the same in both and is not
//! timed. The log is built once with the generator of the replay bench (realistic envelopes:
//! client intents with SO_PEERCRED origins and request ids answered by daemon outcomes), read
//! once to warm the page cache, then the two start-ups alternate `--repeat` times each; the
//! median of each and their ratio are printed. Goal: ratio ≤ 1.25.
//!
//! Usage: `cargo bench -p berth-runtime --bench startup -- [DIR] [--records N] [--repeat N]`
//! (DIR default /var/tmp, where a temporary directory is made and removed). Run through
//! scripts/bench-startup.sh.

#[path = "../../projections/benches/support/generator.rs"]
mod generator;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_log::{Durability, EventLog, LogOptions, Seq};
use berth_runtime::daemon::store::{replay, Store};

fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn options(root: &Path) -> LogOptions {
    LogOptions {
        durability: Durability::Sync,
        anchor: Some(root.join(berth_log::ANCHOR_FILE_NAME)),
        ..LogOptions::default()
    }
}

/// Open + replay without the chain check; returns the time and the last seq folded.
fn start_without_chain_check(root: &Path) -> (Duration, Seq) {
    let started = Instant::now();
    let (log, _) = EventLog::open(&root.join("log"), options(root)).unwrap();
    let state = replay(&log).unwrap();
    (started.elapsed(), state.last_seq)
}

/// Open + `Store::open`, as berthd starts now.
fn start_with_chain_check(root: &Path) -> (Duration, Seq) {
    let started = Instant::now();
    let (log, _) = EventLog::open(&root.join("log"), options(root)).unwrap();
    let (store, committed) = Store::open(log, usize::MAX).unwrap();
    let elapsed = started.elapsed();
    let applied = store.applied_seq();
    // The command thread holds the log (and its directory lock) until it sees the store's
    // submission channel close; wait for that, untimed, so the next open is not refused.
    let log = std::sync::Arc::clone(store.log());
    drop((store, committed));
    while std::sync::Arc::strong_count(&log) > 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    (elapsed, applied)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let mut dir = PathBuf::from("/var/tmp");
    let (mut n_records, mut repeat) = (1_000_000u64, 5usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => n_records = args.next().and_then(|value| value.parse().ok()).expect("--records N"),
            "--repeat" => repeat = args.next().and_then(|value| value.parse().ok()).expect("--repeat N"),
            "--bench" => {}
            other => dir = PathBuf::from(other),
        }
    }
    let root = tempfile::Builder::new().prefix("berth-startup-bench-").tempdir_in(&dir).expect("temp dir");
    let build_started = Instant::now();
    let payload_bytes = {
        let build_options = LogOptions { durability: Durability::NoSync, ..options(root.path()) };
        let (log, _) = EventLog::open(&root.path().join("log"), build_options).unwrap();
        generator::append_records(&log, n_records)
    };
    println!(
        "log: {n_records} records, {:.0} MiB of payload (mean {} bytes), built in {:.1} s",
        payload_bytes as f64 / (1 << 20) as f64,
        payload_bytes / n_records.max(1),
        build_started.elapsed().as_secs_f64()
    );
    println!("cores: {}", std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("load average before: {}", load_average());
    // Warm the page cache (and check both paths fold the whole log) before timing.
    assert_eq!(start_without_chain_check(root.path()).1, Seq(n_records));
    assert_eq!(start_with_chain_check(root.path()).1, Seq(n_records));
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..repeat {
        // Alternate which goes first, so drift in load affects both alike.
        if round % 2 == 0 {
            without.push(start_without_chain_check(root.path()).0);
            with.push(start_with_chain_check(root.path()).0);
        } else {
            with.push(start_with_chain_check(root.path()).0);
            without.push(start_without_chain_check(root.path()).0);
        }
    }
    let show =
        |values: &[Duration]| values.iter().map(|value| format!("{:.3}", value.as_secs_f64())).collect::<Vec<_>>();
    let verify_alone: Vec<Duration> = (0..3)
        .map(|_| {
            let (log, _) = berth_log::open_read_only(&root.path().join("log")).unwrap();
            let started = Instant::now();
            log.verify_with_threads(1).unwrap();
            started.elapsed()
        })
        .collect();
    println!("verify alone, 1 thread (s): {:?}", show(&verify_alone));
    println!("without chain check (s): {:?}", show(&without));
    println!("with chain check (s):    {:?}", show(&with));
    let (without, with) = (median(without), median(with));
    let ratio = with.as_secs_f64() / without.as_secs_f64();
    println!("median start-up without chain check: {:.3} s", without.as_secs_f64());
    println!("median start-up with chain check:    {:.3} s", with.as_secs_f64());
    println!("ratio: {ratio:.2}x (goal <= 1.25x: {})", if ratio <= 1.25 { "met" } else { "NOT met" });
    println!("load average after: {}", load_average());
}
