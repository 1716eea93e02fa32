//! History benchmark (bench binary, `harness = false`): how long `berth-replay history
//! --container ID` and `events --container ID` take on a 1 GiB log in the page cache, beside
//! what they cost when every record is decoded (how they worked before the raw prefilter) and
//! the floor of reading every record with its CRC checked.
//!
//! Usage: `cargo bench -p berth-replay --bench history -- [DIR] [--size-mib N] [--repeat N]`
//! (DIR default /var/tmp, where a temporary directory is made and removed; each figure is the
//! best of `--repeat` runs, default 3). Run through scripts/bench-history.sh.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use berth_log::{Durability, EventLog, LogOptions};
use berth_projections::event_json::EventSelector;
use berth_projections::{ContainerRecord, Envelope, Event, Origin, State};
use berth_replay::cmd::events::{run_events, EventFilter, EventFormat};
use berth_replay::cmd::history::run_history;
use berth_replay::fold::{walk_envelopes, walk_records, Walk};
use berth_replay::location::open_log;
use berth_replay::secrets::KeyDir;

#[path = "../../projections/benches/support/generator.rs"]
mod generator;

const NEEDLE: &str = "bench-needle-0001";
const GOAL_SECONDS: f64 = 1.0;

fn origin() -> Origin {
    Origin::Client { uid: 0, gid: 0, pid: 4321, method: "/bench".into(), request_id: "bench".into() }
}

fn needle_event(step: usize) -> Event {
    let container_id = NEEDLE.to_string();
    match step {
        0 => Event::TaskCreateRequested { container_id },
        1 => Event::TaskCreated { container_id, pid: 77, monitor_pid: 76 },
        2 => Event::TaskStartRequested { container_id },
        3 => Event::TaskStarted { container_id, pid: 77 },
        _ => Event::TaskExited {
            container_id,
            exit_code: 3,
            signal: 0,
            exited_at_ns: berth_log::Timestamp::from_ns(1),
            cause: Default::default(),
        },
    }
}

/// A container created in the first record and whose task runs and exits across the log: its
/// history is a handful of events spread over a gigabyte of other containers' records.
fn build(dir: &std::path::Path, size_mib: u64) -> (u64, u64) {
    let options = LogOptions { durability: Durability::NoSync, ..LogOptions::default() };
    let (log, _report) = EventLog::open(dir, options).expect("open the bench log");
    let first = Envelope::new(
        "default",
        origin(),
        vec![
            Event::NamespaceCreated { name: "default".into(), labels: Default::default() },
            Event::ContainerCreated {
                container: ContainerRecord { id: NEEDLE.into(), image: "busybox".into(), ..Default::default() },
            },
        ],
    );
    log.append(&first.encode()).expect("append");
    let target_bytes = size_mib << 20;
    let mut n_records = 1;
    for step in 0..5 {
        let (n_written, _) = generator::build_log(&log, target_bytes / 5);
        n_records += n_written;
        log.append(&Envelope::new("default", origin(), vec![needle_event(step)]).encode()).expect("append");
        n_records += 1;
    }
    (n_records, log.stats().n_bytes_written)
}

/// CPU time of the whole process (every thread) in seconds: utime + stime from /proc/self/stat,
/// in USER_HZ ticks (100 a second on Linux), so good to 10 ms.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces: count fields after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Best and median wall time, and the least CPU time, of `repeat` runs. Other load on the
/// machine inflates wall time far more than CPU time, so CPU time is the figure to compare
/// between runs made under different loads.
struct Timing {
    best: f64,
    median: f64,
    cpu: f64,
}

fn best_of(repeat: usize, mut run: impl FnMut()) -> Timing {
    let mut passes: Vec<(f64, f64)> = (0..repeat)
        .map(|_| {
            let (cpu_before, started) = (process_cpu_seconds(), Instant::now());
            run();
            (started.elapsed().as_secs_f64(), process_cpu_seconds() - cpu_before)
        })
        .collect();
    let cpu = passes.iter().map(|(_, cpu)| *cpu).fold(f64::INFINITY, f64::min);
    passes.sort_by(|a, b| a.0.total_cmp(&b.0));
    Timing { best: passes[0].0, median: passes[passes.len() / 2].0, cpu }
}

fn report(label: &str, timing: &Timing, gib: f64) {
    println!(
        "{label:<66} best {:>7.3} s  median {:>7.3} s  cpu {:>7.3} s  ({:.2} GiB/s)",
        timing.best,
        timing.median,
        timing.cpu,
        gib / timing.best
    );
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let mut parent = PathBuf::from("/var/tmp");
    let (mut size_mib, mut repeat) = (1024u64, 3usize);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--size-mib" => size_mib = args.next().and_then(|n| n.parse().ok()).expect("--size-mib N"),
            "--repeat" => repeat = args.next().and_then(|n| n.parse().ok()).expect("--repeat N"),
            dir => parent = PathBuf::from(dir),
        }
    }
    let temp = tempfile::Builder::new().prefix("berth-bench-history-").tempdir_in(&parent).expect("temp dir");
    let dir = temp.path().join("log");
    let started = Instant::now();
    let (n_records, _) = build(&dir, size_mib);
    let (log, _report) = open_log(&dir).expect("open read-only");
    let n_bytes: u64 = berth_replay::location::segment_files(&dir).iter().map(|(_, len)| len).sum();
    let gib = n_bytes as f64 / (1u64 << 30) as f64;
    println!(
        "log: {n_records} records, {:.2} GiB of segment files, written in {:.1} s; container {NEEDLE} has 7 events spread over it",
        gib,
        started.elapsed().as_secs_f64()
    );
    println!("load average: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    // Warm the page cache, as on a host where berthd just replayed the log.
    walk_records(&log, 1, u64::MAX, |_, payload| {
        black_box(payload.len());
        Ok(Walk::Continue)
    })
    .expect("walk");

    let floor = best_of(repeat, || {
        let (log, _) = open_log(&dir).expect("open");
        walk_records(&log, 1, u64::MAX, |_, payload| {
            black_box(payload.len());
            Ok(Walk::Continue)
        })
        .expect("walk");
    });
    report("floor: open + read every record, CRC checked, one thread", &floor, gib);
    let history = best_of(repeat, || {
        let mut out = Vec::new();
        run_history(&dir, "default", NEEDLE, &KeyDir::new(None), &mut out).expect("history");
        black_box(out);
    });
    report(&format!("berth-replay history --container {NEEDLE}"), &history, gib);
    let events = best_of(repeat, || {
        let mut out = Vec::new();
        let selector = EventSelector::new(&[], Some(NEEDLE.into())).expect("selector");
        let filter = EventFilter { selector, ..EventFilter::default() };
        run_events(&dir, &filter, EventFormat::Text, None, &mut out).expect("events");
        black_box(out);
    });
    report(&format!("berth-replay events --container {NEEDLE}"), &events, gib);
    let decode_all = best_of(repeat.min(2), || {
        let (log, _) = open_log(&dir).expect("open");
        let mut state = State::new();
        walk_envelopes(&log, 1, u64::MAX, |stamp, envelope| {
            state.apply(stamp.seq, stamp.timestamp, &envelope);
            Ok(Walk::Continue)
        })
        .expect("walk");
        black_box(state);
    });
    report("peer: decode and fold every record (history before the prefilter)", &decode_all, gib);
    let n_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let worst = history.best.max(events.best);
    println!(
        "goal: history and events --container in <= {GOAL_SECONDS:.1} s per GiB: {} ({worst:.3} s wall for {gib:.2} GiB; \
on {n_cores} idle cores the CPU time allows ~{:.3} s)",
        if worst <= GOAL_SECONDS * gib.max(1.0) { "met" } else { "NOT met under this load" },
        history.cpu.max(events.cpu) / n_cores as f64
    );
}
