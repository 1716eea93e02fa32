//! Replay benchmark (bench binary, `harness = false`): how fast berth turns a 1 GiB log in the
//! page cache back into state — raw record iteration, the plain rmp-serde decode, the canonical
//! reader, decoding on worker threads in ordered batches, and the full decode + fold (with either
//! decoder) — with the heap measured at each step to show it does not grow with the log.
//!
//! Usage: `cargo bench -p berth-projections --bench replay -- [DIR] [--size-mib N] [--repeat N]`
//! (DIR default /var/tmp, where a temporary directory is made and removed; each figure is the
//! best of `--repeat` runs, default 3). Run through scripts/bench-replay.sh.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use berth_log::{Durability, EventLog, LogError, LogOptions, Seq};
use berth_projections::decode::{decode_envelope, is_canonical, replay_parallel, replay_parallel_with, Decoder};
use berth_projections::{Envelope, State};

#[path = "support/generator.rs"]
mod generator;

use generator::build_log;

const GOAL_EVENTS_PER_S: f64 = 3e6;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Memory around one measurement: VmHWM is reset before it (Linux >= 4.0), so `peak_kib` is the
/// peak RSS during it (the mapped segment pages count); RssAnon is the heap (and stacks).
struct Memory {
    rss_before_kib: u64,
    anon_before_kib: u64,
}

impl Memory {
    fn start() -> Memory {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Memory { rss_before_kib: status_kib("VmRSS:"), anon_before_kib: status_kib("RssAnon:") }
    }

    fn report(&self) -> String {
        format!(
            "RSS {:.0} MiB before, peak {:.0} MiB during | heap (RssAnon) {:.1} -> {:.1} MiB",
            mib(self.rss_before_kib),
            mib(status_kib("VmHWM:")),
            mib(self.anon_before_kib),
            mib(status_kib("RssAnon:"))
        )
    }
}

fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// CPU time of the whole process (every thread, running or ended) in ns: utime + stime from
/// /proc/self/stat, in USER_HZ ticks (100 a second on Linux), so good to 10 ms.
fn process_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces: count fields after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) * 10_000_000
}

/// CPU time of the calling thread in ns (/proc/thread-self/schedstat, to the ns).
fn thread_cpu_ns() -> u64 {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    schedstat.split_whitespace().next().and_then(|ns| ns.parse().ok()).unwrap_or(0)
}

/// One pass: wall time, and CPU time on the calling (folding) thread and on all other threads.
struct Pass {
    units: u64,
    wall_ns: u64,
    calling_thread_cpu_ns: u64,
    other_threads_cpu_ns: u64,
}

impl Pass {
    fn rate(&self) -> f64 {
        self.units as f64 * 1e9 / self.wall_ns as f64
    }

    /// What the pass would reach on `n_cores` idle cores, from its CPU time alone: the busiest of
    /// the calling thread, a decode thread (their share of the other threads' time), and all the
    /// work spread over the cores. Other load on the machine inflates wall time far more than
    /// CPU time, so this is the figure to compare between runs made under different loads.
    fn cpu_bound_rate(&self, n_decode_threads: usize, n_cores: usize) -> f64 {
        let total_ns = self.calling_thread_cpu_ns + self.other_threads_cpu_ns;
        let busiest_ns = (self.calling_thread_cpu_ns as f64)
            .max(self.other_threads_cpu_ns as f64 / n_decode_threads.max(1) as f64)
            .max(total_ns as f64 / n_cores as f64);
        self.units as f64 * 1e9 / busiest_ns
    }
}

/// Runs `run` (which returns how many units it handled) `repeat` times and prints the best and
/// median wall-clock rate, the CPU time per unit on the calling thread and on the other threads
/// (least of the passes), the rate that CPU time allows on idle cores, the goal beside event
/// rates, and the memory over all runs.
fn measure(label: &str, unit: &str, repeat: usize, n_decode_threads: usize, mut run: impl FnMut() -> u64) -> f64 {
    let memory = Memory::start();
    let n_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let passes: Vec<Pass> = (0..repeat)
        .map(|_| {
            let (process_before, thread_before, started) = (process_cpu_ns(), thread_cpu_ns(), Instant::now());
            let units = run();
            let wall_ns = started.elapsed().as_nanos() as u64;
            let calling_thread_cpu_ns = thread_cpu_ns() - thread_before;
            let process_ns = process_cpu_ns() - process_before;
            Pass {
                units,
                wall_ns,
                calling_thread_cpu_ns,
                other_threads_cpu_ns: process_ns.saturating_sub(calling_thread_cpu_ns),
            }
        })
        .collect();
    let mut rates: Vec<f64> = passes.iter().map(Pass::rate).collect();
    rates.sort_by(f64::total_cmp);
    let best = rates[rates.len() - 1];
    let median = rates[rates.len() / 2];
    let per_unit = |ns: fn(&Pass) -> u64| {
        passes.iter().map(|pass| ns(pass) as f64 / pass.units as f64).fold(f64::INFINITY, f64::min)
    };
    let calling_ns = per_unit(|pass| pass.calling_thread_cpu_ns);
    let other_ns = per_unit(|pass| pass.other_threads_cpu_ns);
    let cpu_bound = passes.iter().map(|pass| pass.cpu_bound_rate(n_decode_threads, n_cores)).fold(0.0, f64::max);
    let goal = if unit == "events/s" { format!("  {}", goal(best)) } else { String::new() };
    println!(
        "{label:<66} {:>6.2} M {unit} (median {:.2}){goal}\n      cpu per unit: {calling_ns:.0} ns calling thread + {other_ns:.0} ns other threads | cpu-bound on {n_cores} idle cores: {:.2} M {unit}\n      {}",
        best / 1e6,
        median / 1e6,
        cpu_bound / 1e6,
        memory.report()
    );
    best
}

fn goal(events_per_s: f64) -> String {
    let verdict = if events_per_s >= GOAL_EVENTS_PER_S { "met" } else { "NOT met" };
    format!("(goal >= {:.1} M events/s: {verdict})", GOAL_EVENTS_PER_S / 1e6)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let mut base = PathBuf::from(std::env::var("BERTH_REPLAY_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".to_string()));
    let mut size_mib = 1024u64;
    let mut repeat = 3usize;
    let mut arg_idx = 0;
    while arg_idx < args.len() {
        if args[arg_idx] == "--repeat" {
            repeat = args
                .get(arg_idx + 1)
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .expect("--repeat takes a positive number of runs");
            arg_idx += 2;
        } else if args[arg_idx] == "--size-mib" {
            size_mib =
                args.get(arg_idx + 1).and_then(|size| size.parse().ok()).expect("--size-mib takes a number of MiB");
            arg_idx += 2;
        } else {
            base = PathBuf::from(&args[arg_idx]);
            arg_idx += 1;
        }
    }
    let n_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let bench_started = Instant::now();
    println!(
        "berth replay benchmark | cpu {cpu} | {n_cores} cores | load average {} | best of {repeat} runs each",
        load_average()
    );

    let dir = tempfile::Builder::new()
        .prefix("berth-replay-bench.")
        .tempdir_in(&base)
        .expect("make a temporary directory for the log");
    let (log, _report) =
        EventLog::open(dir.path(), LogOptions { durability: Durability::NoSync, ..LogOptions::default() }).unwrap();
    let started = Instant::now();
    let (n_records, payload_bytes) = build_log(&log, size_mib << 20);
    println!(
        "built a {size_mib} MiB log in {}: {n_records} records, mean payload {:.0} bytes, in {:.1} s",
        dir.path().display(),
        payload_bytes as f64 / n_records as f64,
        started.elapsed().as_secs_f64()
    );

    // Warm-up: every segment into the page cache, and count the events once.
    let mut reader = log.reader(Seq(1)).unwrap();
    let mut n_events = 0u64;
    reader
        .replay(|record| {
            assert!(is_canonical(record.payload), "every payload this build writes is canonical");
            n_events += Envelope::decode(record.payload).unwrap().events.len() as u64;
        })
        .unwrap();
    println!("{n_events} events in {n_records} records; log is in the page cache (read once)\n");

    // Each measurement runs `repeat` times (other work on the machine only ever slows a run
    // down): best and median are printed. Memory covers all runs of a measurement.

    // (a) Raw record iteration: CRC and seq checked, payload borrowed from the map.
    measure("(a) raw records (CRC + seq checked)", "records/s", repeat, 0, || {
        let mut bytes_seen = 0u64;
        let n_read = log.reader(Seq(1)).unwrap().replay(|record| bytes_seen += record.payload.len() as u64).unwrap();
        black_box(bytes_seen);
        assert_eq!(n_read, n_records);
        n_read
    });

    // (b) The plain owned decode every caller used: Envelope::decode (rmp-serde).
    measure("(b) Envelope::decode (rmp-serde, owned)", "events/s", repeat, 0, || {
        let mut counted = 0u64;
        log.reader(Seq(1))
            .unwrap()
            .replay(|record| counted += Envelope::decode(record.payload).unwrap().events.len() as u64)
            .unwrap();
        assert_eq!(counted, n_events);
        counted
    });

    // (c) The canonical reader: the same serde derives, a msgpack reader that knows only the form
    // Envelope::encode writes (anything else would go to rmp-serde).
    measure("(c) decode_envelope (canonical reader, owned)", "events/s", repeat, 0, || {
        let mut counted = 0u64;
        log.reader(Seq(1))
            .unwrap()
            .replay(|record| counted += decode_envelope(record.payload).unwrap().events.len() as u64)
            .unwrap();
        assert_eq!(counted, n_events);
        counted
    });

    // (c4) Owned envelopes decoded on worker threads in ordered batches, handed over in seq order.
    for n_workers in [1, 2] {
        measure(
            &format!("(c4) replay_parallel, {n_workers} decode thread(s), in order"),
            "events/s",
            repeat,
            n_workers,
            || {
                let mut counted = 0u64;
                let mut next_seq = 1;
                replay_parallel::<LogError>(&mut log.reader(Seq(1)).unwrap(), n_workers, |seq, _, envelope| {
                    assert_eq!(seq.get(), next_seq);
                    next_seq += 1;
                    counted += envelope.unwrap().events.len() as u64;
                    Ok(())
                })
                .unwrap();
                assert_eq!(counted, n_events);
                counted
            },
        );
    }

    // (d) Full replay into State: one record at a time with rmp-serde, then the pipeline with
    // rmp-serde on the decode threads (is the canonical reader still worth having?), then the
    // pipeline as berthd runs it with 0, 1 and 2 decode threads. The heap is sampled at each
    // quarter of the log: it must stay flat.
    println!();
    let quarter = n_records / 4;
    let mut states = Vec::new();
    let rmp_serde: Decoder = Envelope::decode;
    let canonical: Decoder = decode_envelope;
    for (name, pipeline) in [
        ("Envelope::decode + apply, one record at a time", None),
        ("replay_parallel_with(Envelope::decode) + apply, 1 decode thread", Some((rmp_serde, 1))),
        ("replay_parallel_with(Envelope::decode) + apply, 2 decode threads", Some((rmp_serde, 2))),
        ("replay_parallel + apply, 0 decode threads", Some((canonical, 0))),
        ("replay_parallel + apply, 1 decode thread (store.rs, 2 cores)", Some((canonical, 1))),
        ("replay_parallel + apply, 2 decode threads", Some((canonical, 2))),
    ] {
        let mut heap_at_quarters = Vec::new();
        let mut final_state = State::new();
        measure(&format!("(d) {name}"), "events/s", repeat, pipeline.map_or(0, |(_, n_workers)| n_workers), || {
            heap_at_quarters.clear();
            let mut state = State::new();
            let mut sample_heap = |seq: Seq| {
                if seq.get().is_multiple_of(quarter) {
                    heap_at_quarters.push(status_kib("RssAnon:"));
                }
            };
            let mut counted = 0u64;
            match pipeline {
                None => {
                    log.reader(Seq(1))
                        .unwrap()
                        .replay(|record| {
                            let envelope = Envelope::decode(record.payload).unwrap();
                            counted += envelope.events.len() as u64;
                            state.apply(record.seq, record.timestamp, &envelope);
                            sample_heap(record.seq);
                        })
                        .unwrap();
                }
                Some((decoder, n_workers)) => {
                    replay_parallel_with::<LogError>(
                        &mut log.reader(Seq(1)).unwrap(),
                        n_workers,
                        decoder,
                        |seq, timestamp_ns, envelope| {
                            let envelope = envelope.unwrap();
                            counted += envelope.events.len() as u64;
                            state.apply(seq, timestamp_ns, envelope);
                            sample_heap(seq);
                            Ok(())
                        },
                    )
                    .unwrap();
                }
            }
            assert_eq!(counted, n_events);
            final_state = state;
            counted
        });
        let quarters: Vec<String> = heap_at_quarters.iter().map(|kib| format!("{:.1}", mib(*kib))).collect();
        println!(
            "      heap after each quarter of the log (last run): {} MiB | live containers at the end: {}",
            quarters.join(" / "),
            final_state.containers().count()
        );
        states.push(final_state);
    }
    assert!(states.windows(2).all(|pair| pair[0] == pair[1]), "every replay path must fold to the same State");
    println!("all {} folds give the same State (last_seq {})", states.len(), states[0].last_seq);

    drop(log);
    dir.close().expect("remove the temporary log");
    println!(
        "\nlog removed | load average at the end {} | total {:.0} s",
        load_average(),
        bench_started.elapsed().as_secs_f64()
    );
}
