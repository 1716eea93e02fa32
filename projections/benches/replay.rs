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
use berth_projections::{ContainerRecord, Descriptor, Envelope, Event, ImageRecord, LayerRecord, Origin, State};

const GOAL_EVENTS_PER_S: f64 = 3e6;
const APPEND_BATCH: usize = 256;
/// Containers alive at once; each goes through a whole lifecycle and is deleted, so the state
/// stays this small however long the log is.
const LIVE_CONTAINERS: usize = 64;

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

/// A small deterministic generator (xorshift64*), so every run writes the same log.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn hex(&mut self, len: usize) -> String {
        let mut text = String::with_capacity(len);
        while text.len() < len {
            text.push_str(&format!("{:016x}", self.next()));
        }
        text.truncate(len);
        text
    }
}

/// One container working through its lifecycle, one record per step.
struct Slot {
    id: String,
    step: usize,
    /// Seq of the intent the next daemon outcome answers.
    intent_seq: u64,
    fails_to_start: bool,
}

/// Writes envelopes that look like a busy daemon's: client intents (SO_PEERCRED origin, gRPC
/// method, request id) answered by daemon outcomes, over many interleaved container lifecycles.
struct LogWriter {
    rng: Rng,
    slots: Vec<Slot>,
    next_seq: u64,
    image_digest: String,
    chain_ids: Vec<String>,
}

const BUSYBOX: &str = "docker.io/library/busybox:latest";

impl LogWriter {
    fn new() -> LogWriter {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let image_digest = format!("sha256:{}", rng.hex(64));
        let chain_ids = (0..2).map(|_| format!("sha256:{}", rng.hex(64))).collect();
        LogWriter { rng, slots: Vec::new(), next_seq: 1, image_digest, chain_ids }
    }

    fn client(&mut self, method: &str) -> Origin {
        let request_id = format!(
            "berth-cli-{}-{}-4{}-{}-{}",
            self.rng.hex(8),
            self.rng.hex(4),
            self.rng.hex(3),
            self.rng.hex(4),
            self.rng.hex(12)
        );
        Origin::Client {
            uid: 0,
            gid: 0,
            pid: 1000 + self.rng.below(60_000) as i32,
            method: format!("/containerd.services.{method}"),
            request_id,
        }
    }

    fn daemon(reason: &str, answers: Option<u64>) -> Origin {
        Origin::Daemon { reason: reason.to_string(), answers: answers.map(berth_log::Seq) }
    }

    fn first_record(&mut self) -> Envelope {
        let layer = |chain_id: &String| LayerRecord {
            blob: Descriptor {
                digest: chain_id.clone(),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                size: 2_155_123,
            },
            diff_id: chain_id.clone(),
            chain_id: chain_id.clone(),
        };
        let image = ImageRecord {
            name: BUSYBOX.into(),
            manifest: Descriptor {
                digest: self.image_digest.clone(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: 610,
            },
            config: Descriptor {
                digest: format!("sha256:{}", self.rng.hex(64)),
                media_type: "application/vnd.oci.image.config.v1+json".into(),
                size: 1_457,
            },
            layers: self.chain_ids.iter().map(layer).collect(),
            cmd: vec!["sh".into()],
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            ..ImageRecord::default()
        };
        let mut events = vec![Event::NamespaceCreated { name: "default".into(), labels: Default::default() }];
        let mut parent = None;
        for chain_id in &self.chain_ids {
            events.push(Event::SnapshotCommitted {
                chain_id: chain_id.clone(),
                parent: parent.clone(),
                diff_id: chain_id.clone(),
            });
            parent = Some(chain_id.clone());
        }
        events.push(Event::ImageCreated { image });
        Envelope::new("default", self.client("images.v1.Images/Create"), events)
    }

    fn container_created(&mut self, id: &str) -> Envelope {
        let container = ContainerRecord {
            id: id.to_string(),
            image: BUSYBOX.into(),
            image_digest: self.image_digest.clone(),
            args: vec!["/bin/sh".into(), "-c".into(), format!("while sleep {}; do date; done", 1 + self.rng.below(9))],
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                format!("HOSTNAME={id}"),
                "TERM=xterm".into(),
            ],
            working_dir: "/".into(),
            user: "0:0".into(),
            hostname: id.to_string(),
            labels: [
                ("io.berth.created-by", "berth run".to_string()),
                ("io.berth.image.ref", BUSYBOX.to_string()),
                ("org.opencontainers.image.created", "2024-09-26T21:31:42Z".to_string()),
                ("com.example.team", format!("team-{}", self.rng.below(40))),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
            lowers: self.chain_ids.clone(),
            snapshot_key: id.to_string(),
        };
        Envelope::new(
            "default",
            self.client("containers.v1.Containers/Create"),
            vec![Event::ContainerCreated { container }],
        )
    }

    /// The next record of a random live container (a new container takes a finished one's slot).
    fn next_record(&mut self) -> Envelope {
        let seq = self.next_seq;
        self.next_seq += 1;
        if seq == 1 {
            return self.first_record();
        }
        if seq.is_multiple_of(100_000) {
            return Envelope::new(
                "",
                Self::daemon("started", None),
                vec![Event::DaemonStarted { version: "0.1.0".into(), pid: 4242, replayed_to: berth_log::Seq(seq - 1) }],
            );
        }
        if self.slots.len() < LIVE_CONTAINERS {
            self.slots.push(Slot { id: String::new(), step: 0, intent_seq: 0, fails_to_start: false });
        }
        let slot_idx = self.rng.below(self.slots.len() as u64) as usize;
        let step = self.slots[slot_idx].step;
        if step == 0 {
            let id = self.rng.hex(12);
            let fails_to_start = self.rng.below(50) == 0;
            self.slots[slot_idx] = Slot { id: id.clone(), step: 1, intent_seq: 0, fails_to_start };
            return self.container_created(&id);
        }
        let Slot { id, intent_seq, fails_to_start, .. } = &self.slots[slot_idx];
        let (container_id, intent_seq, fails_to_start) = (id.clone(), *intent_seq, *fails_to_start);
        let pid = 10_000 + (seq % 50_000) as u32;
        let (envelope, is_intent, next_step) = match step {
            1 => (
                Envelope::new(
                    "default",
                    self.client("tasks.v1.Tasks/Create"),
                    vec![Event::TaskCreateRequested { container_id }],
                ),
                true,
                2,
            ),
            2 => (
                Envelope::new(
                    "default",
                    Self::daemon("executor: runc create exited 0, task is created", Some(intent_seq)),
                    vec![Event::TaskCreated { container_id, pid, monitor_pid: pid as i32 - 1 }],
                ),
                false,
                3,
            ),
            3 => (
                Envelope::new(
                    "default",
                    self.client("tasks.v1.Tasks/Start"),
                    vec![Event::TaskStartRequested { container_id }],
                ),
                true,
                4,
            ),
            4 if fails_to_start => (
                Envelope::new(
                    "default",
                    Self::daemon("executor: runc start exited, outcome recorded", Some(intent_seq)),
                    vec![Event::TaskStartFailed {
                        container_id,
                        error: "runc start: exec: \"/bin/sh\": permission denied".into(),
                    }],
                ),
                false,
                8,
            ),
            4 => (
                Envelope::new(
                    "default",
                    Self::daemon("executor: runc start exited, outcome recorded", Some(intent_seq)),
                    vec![Event::TaskStarted { container_id, pid }],
                ),
                false,
                5,
            ),
            5 => (
                Envelope::new(
                    "default",
                    self.client("tasks.v1.Tasks/Kill"),
                    vec![Event::TaskKillRequested { container_id, signal: 15, all: false }],
                ),
                true,
                6,
            ),
            6 => (
                Envelope::new(
                    "default",
                    Self::daemon("executor: runc kill delivered the signal to the init", Some(intent_seq)),
                    vec![Event::TaskKillDelivered { container_id, signal: 15 }],
                ),
                false,
                7,
            ),
            7 => (
                Envelope::new(
                    "default",
                    Self::daemon("monitor: init process reaped, exit status recorded", None),
                    vec![Event::TaskExited {
                        container_id,
                        exit_code: 143,
                        signal: 15,
                        exited_at_ns: berth_log::Timestamp::from_ns(1_700_000_000_000_000_000 + seq),
                        cause: berth_projections::ExitCause::Exited,
                    }],
                ),
                false,
                8,
            ),
            8 => (
                Envelope::new(
                    "default",
                    self.client("tasks.v1.Tasks/Delete"),
                    vec![Event::TaskDeleteRequested { container_id, force: false }],
                ),
                true,
                9,
            ),
            9 => (
                Envelope::new(
                    "default",
                    Self::daemon("executor: runc delete exited 0, task state removed", Some(intent_seq)),
                    vec![Event::TaskDeleted { container_id, exit_code: Some(143) }],
                ),
                false,
                10,
            ),
            _ => (
                Envelope::new(
                    "default",
                    self.client("containers.v1.Containers/Delete"),
                    vec![Event::ContainerDeleted { id: container_id }],
                ),
                false,
                0,
            ),
        };
        let slot = &mut self.slots[slot_idx];
        if is_intent {
            slot.intent_seq = seq;
        }
        slot.step = next_step;
        envelope
    }
}

/// Writes envelopes until the segment files hold `target_bytes` of records; returns the record
/// count and the payload bytes.
fn build_log(log: &EventLog, target_bytes: u64) -> (u64, u64) {
    let mut writer = LogWriter::new();
    let mut n_records = 0u64;
    let mut payload_bytes = 0u64;
    let mut on_disk_bytes = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(APPEND_BATCH);
    while on_disk_bytes < target_bytes {
        batch.clear();
        for _ in 0..APPEND_BATCH {
            let payload = writer.next_record().encode();
            payload_bytes += payload.len() as u64;
            on_disk_bytes += berth_log::format::encoded_record_len(payload.len()) as u64;
            batch.push(payload);
        }
        let payloads: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        log.append_batch(&payloads).unwrap();
        n_records += APPEND_BATCH as u64;
    }
    (n_records, payload_bytes)
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
