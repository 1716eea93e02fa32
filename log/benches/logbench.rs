//! berth-log benchmark (bench binary, `harness = false`): raw disk baselines beside the log's
//! durable append, non-durable append, replay and verify figures, all on the same disk.
//!
//! Usage: `cargo bench -p berth-log --bench logbench -- [DIR]` (default /var/tmp/berth-log-bench,
//! or `BERTH_LOG_BENCH_DIR`). Run through scripts/bench-log.sh. `--only=durable`, `--only=nosync`,
//! `--only=replay` (replay and verify) or `--only=anchor` (durable appends with and without the anchor)
//! runs one section.

use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_log::{Durability, EventLog, LogOptions, RecoveryMode, Seq};
use sha2::{Digest, Sha256};

const EVENT_PAYLOAD_LEN: usize = 200;
const MIB: f64 = 1024.0 * 1024.0;

fn status_field_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn fresh_dir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn event_payload(seq: u64) -> Vec<u8> {
    (0..EVENT_PAYLOAD_LEN).map(|index| (seq as usize + index) as u8 | 1).collect()
}

/// A zero-filled, preallocated, synced file for the raw commit baseline.
struct RawSyncFile {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    n_commits: u64,
}

impl RawSyncFile {
    fn create(base: &Path) -> RawSyncFile {
        let path = base.join("raw-sync.dat");
        let size = 64u64 << 20;
        let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        let zeroes = vec![0u8; 1 << 20];
        for chunk in 0..(size >> 20) {
            file.write_all_at(&zeroes, chunk << 20).unwrap();
        }
        file.sync_all().unwrap();
        RawSyncFile { path, file, size, n_commits: 0 }
    }

    /// pwrite of 4 KiB + fdatasync for `duration`: the disk's commit rate, in commits/s.
    fn run(&mut self, duration: Duration) -> (u64, f64) {
        let block = vec![0xA5u8; 4096];
        let started = Instant::now();
        let mut n_commits = 0u64;
        while started.elapsed() < duration {
            self.file.write_all_at(&block, (self.n_commits * 4096) % self.size).unwrap();
            self.file.sync_data().unwrap();
            self.n_commits += 1;
            n_commits += 1;
        }
        (n_commits, started.elapsed().as_secs_f64())
    }
}

impl Drop for RawSyncFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sequential 1 MiB pwrites into a zero-filled preallocated file, no sync (page cache).
fn raw_sequential_write_mib_per_s(base: &Path) -> f64 {
    let path = base.join("raw-seq.dat");
    let size = 512u64 << 20;
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
    let zeroes = vec![0u8; 1 << 20];
    for chunk in 0..(size >> 20) {
        file.write_all_at(&zeroes, chunk << 20).unwrap();
    }
    let block = vec![0x5Au8; 1 << 20];
    let started = Instant::now();
    for chunk in 0..(size >> 20) {
        file.write_all_at(&block, chunk << 20).unwrap();
    }
    let rate = size as f64 / MIB / started.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    rate
}

/// A durable log in its own directory, opened once and reused across rounds.
struct DurableLog {
    dir: PathBuf,
    log: Arc<EventLog>,
}

impl DurableLog {
    fn open(base: &Path, name: &str) -> DurableLog {
        DurableLog::open_with(base, name, LogOptions::default())
    }

    fn open_with(base: &Path, name: &str, options: LogOptions) -> DurableLog {
        let dir = fresh_dir(base, name);
        let (log, _) = EventLog::open(&dir, options).unwrap();
        // A fresh log preallocates its spare segment (64 MiB of zeroes + fsync) in the
        // background; wait for it, so a round is charged for the spare only as often as the
        // log really rolls over (once per 64 MiB written), like a long-running daemon.
        let spare_ready = || {
            std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|entry| entry.ok())
                .filter(|entry| entry.path().extension().is_some_and(|extension| extension == "seg"))
                .count()
                >= 2
        };
        let waiting_since = Instant::now();
        while !spare_ready() && waiting_since.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        DurableLog { dir, log: Arc::new(log) }
    }

    /// `n_appenders` threads append 200-byte records for `duration`; returns (records, syncs, seconds).
    fn run(&self, n_appenders: usize, duration: Duration) -> (u64, u64, f64) {
        let before = self.log.stats();
        let started = Instant::now();
        let threads: Vec<_> = (0..n_appenders)
            .map(|thread_idx| {
                let log = self.log.clone();
                std::thread::spawn(move || {
                    let payload = event_payload(thread_idx as u64);
                    while started.elapsed() < duration {
                        log.append(&payload).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let after = self.log.stats();
        (after.n_records - before.n_records, after.n_syncs - before.n_syncs, elapsed)
    }
}

impl Drop for DurableLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn non_durable_appends(base: &Path, batch_len: usize, n_records: u64) -> (f64, f64) {
    let dir = fresh_dir(base, &format!("nosync-{batch_len}"));
    let options = LogOptions { durability: Durability::NoSync, ..LogOptions::default() };
    let (log, _) = EventLog::open(&dir, options).unwrap();
    let payloads: Vec<Vec<u8>> = (0..batch_len as u64).map(event_payload).collect();
    let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let started = Instant::now();
    let mut written = 0;
    while written < n_records {
        if batch_len == 1 {
            log.append(slices[0]).unwrap();
        } else {
            log.append_batch(&slices).unwrap();
        }
        written += batch_len as u64;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bytes = log.stats().n_bytes_written as f64;
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();
    (written as f64 / elapsed, bytes / MIB / elapsed)
}

fn build_log(dir: &Path, target_bytes: u64) -> u64 {
    let options = LogOptions { durability: Durability::NoSync, ..LogOptions::default() };
    let (log, _) = EventLog::open(dir, options).unwrap();
    let payloads: Vec<Vec<u8>> = (0..4096u64).map(event_payload).collect();
    let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    while log.stats().n_bytes_written < target_bytes {
        log.append_batch(&slices).unwrap();
    }
    log.last_seq().get()
}

fn segment_bytes(dir: &Path) -> Vec<memmap2::Mmap> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let file = std::fs::File::open(path).unwrap();
            // SAFETY: benchmark-only read-only map of files nobody writes while it runs.
            unsafe { memmap2::Mmap::map(&file).unwrap() }
        })
        .collect()
}

fn main() {
    let base = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .or_else(|| std::env::var("BERTH_LOG_BENCH_DIR").ok())
        .unwrap_or_else(|| "/var/tmp/berth-log-bench".to_string());
    let base = PathBuf::from(base);
    let only = std::env::args().find_map(|arg| arg.strip_prefix("--only=").map(str::to_string));
    let runs = |section: &str| only.as_deref().is_none_or(|only| only == section);
    std::fs::create_dir_all(&base).unwrap();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    println!(
        "berth-log benchmark: dir {} | cpu {} | {} cores",
        base.display(),
        cpu,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "record: {EVENT_PAYLOAD_LEN}-byte payload -> {} bytes on disk",
        berth_log::format::encoded_record_len(EVENT_PAYLOAD_LEN)
    );

    if runs("durable") {
        durable_section(&base);
    }
    if runs("anchor") {
        anchor_section(&base);
    }
    if runs("nosync") {
        nosync_section(&base);
    }
    if runs("replay") {
        replay_section(&base);
    }
}

/// Durable commits. The disk is shared, and its commit rate moves with other load by several
/// times within seconds, so the raw baseline and the log runs are interleaved in short rounds
/// and the ratio is taken over the same stretch of time (totals, plus each round's own ratio).
fn durable_section(base: &Path) {
    const ROUNDS: usize = 6;
    const SLICE: Duration = Duration::from_secs(1);
    const APPENDER_COUNTS: [usize; 3] = [1, 4, 16];
    let mut raw = RawSyncFile::create(base);
    let logs: Vec<DurableLog> =
        APPENDER_COUNTS.iter().map(|n_appenders| DurableLog::open(base, &format!("durable-{n_appenders}"))).collect();
    for (log, &n_appenders) in logs.iter().zip(&APPENDER_COUNTS) {
        log.run(n_appenders, Duration::from_millis(200)); // warm-up
    }
    let (mut raw_commits, mut raw_seconds) = (0u64, 0f64);
    let mut totals = [(0u64, 0u64, 0f64); APPENDER_COUNTS.len()];
    let mut round_ratios: Vec<Vec<f64>> = vec![Vec::new(); APPENDER_COUNTS.len()];
    for _ in 0..ROUNDS {
        let (commits, seconds) = raw.run(SLICE);
        let round_raw_rate = commits as f64 / seconds;
        raw_commits += commits;
        raw_seconds += seconds;
        for (count_idx, (log, &n_appenders)) in logs.iter().zip(&APPENDER_COUNTS).enumerate() {
            let (n_records, n_syncs, seconds) = log.run(n_appenders, SLICE);
            totals[count_idx].0 += n_records;
            totals[count_idx].1 += n_syncs;
            totals[count_idx].2 += seconds;
            round_ratios[count_idx].push(n_records as f64 / seconds / round_raw_rate);
        }
    }
    let raw_sync = raw_commits as f64 / raw_seconds;
    println!("raw pwrite 4 KiB + fdatasync (preallocated, zero-filled): {raw_sync:.0} commits/s ({ROUNDS} rounds of {} s, interleaved with the runs below)", SLICE.as_secs());
    for (count_idx, &n_appenders) in APPENDER_COUNTS.iter().enumerate() {
        let (n_records, n_syncs, seconds) = totals[count_idx];
        let (events, syncs) = (n_records as f64 / seconds, n_syncs as f64 / seconds);
        let mut ratios = round_ratios[count_idx].clone();
        ratios.sort_by(f64::total_cmp);
        println!(
            "durable append, {n_appenders:>2} appenders: {events:>9.0} events/s, {syncs:>6.0} syncs/s, {:>5.1} events/sync, {:.1}x raw sync rate (per round: min {:.1}x, median {:.1}x, max {:.1}x)",
            n_records as f64 / (n_syncs as f64).max(1.0),
            events / raw_sync,
            ratios[0],
            ratios[ratios.len() / 2],
            ratios[ratios.len() - 1]
        );
    }
}

/// The anchor (berthd's last durable point outside the log) is rewritten after every group
/// commit with one pwrite and no fsync: durable appends with and without it, interleaved.
fn anchor_section(base: &Path) {
    const ROUNDS: usize = 6;
    const SLICE: Duration = Duration::from_secs(1);
    for n_appenders in [1usize, 16] {
        let anchor_path = base.join(format!("berth-logbench-{}-{n_appenders}.anchor", std::process::id()));
        let with_anchor = LogOptions { anchor: Some(anchor_path.clone()), ..LogOptions::default() };
        let plain = DurableLog::open(base, &format!("anchor-off-{n_appenders}"));
        let anchored = DurableLog::open_with(base, &format!("anchor-on-{n_appenders}"), with_anchor.clone());
        plain.run(n_appenders, Duration::from_millis(200));
        anchored.run(n_appenders, Duration::from_millis(200));
        let (mut plain_total, mut anchored_total) = ((0u64, 0f64), (0u64, 0f64));
        for _ in 0..ROUNDS {
            let (n_records, _, seconds) = plain.run(n_appenders, SLICE);
            plain_total = (plain_total.0 + n_records, plain_total.1 + seconds);
            let (n_records, _, seconds) = anchored.run(n_appenders, SLICE);
            anchored_total = (anchored_total.0 + n_records, anchored_total.1 + seconds);
        }
        let (plain_rate, anchored_rate) =
            (plain_total.0 as f64 / plain_total.1, anchored_total.0 as f64 / anchored_total.1);
        println!(
            "durable append, {n_appenders:>2} appenders: {plain_rate:>9.0} events/s without anchor, {anchored_rate:>9.0} with ({:.3}x; {ROUNDS} interleaved rounds of {} s)",
            anchored_rate / plain_rate,
            SLICE.as_secs()
        );
        drop(anchored);
        let _ = std::fs::remove_file(&anchor_path);
    }
}

fn nosync_section(base: &Path) {
    let raw_sequential = raw_sequential_write_mib_per_s(base);
    println!("raw sequential write (1 MiB pwrites, page cache): {raw_sequential:.0} MiB/s");
    for batch_len in [1usize, 256] {
        let (events, mib) = non_durable_appends(base, batch_len, 1_000_000);
        println!("non-durable append (NoSync), batches of {batch_len:>3}: {events:>9.0} events/s, {mib:>6.0} MiB/s");
    }
}

/// Replay and verify of a 1 GiB log in page cache.
fn replay_section(base: &Path) {
    let replay_dir = fresh_dir(base, "replay");
    let build_started = Instant::now();
    let last_seq = build_log(&replay_dir, 1 << 30);
    println!("built a 1 GiB log: {last_seq} records in {:.1} s", build_started.elapsed().as_secs_f64());
    let (log, report) = EventLog::open(
        &replay_dir,
        LogOptions {
            durability: Durability::NoSync,
            recovery: RecoveryMode::TruncateTornTail,
            ..LogOptions::default()
        },
    )
    .unwrap();
    assert_eq!(report.last_seq.get(), last_seq);
    // Warm-up pass so the page cache holds every segment.
    let mut reader = log.reader(Seq(1)).unwrap();
    black_box(
        reader
            .replay(|record| {
                black_box(record.payload.len());
            })
            .unwrap(),
    );
    drop(reader);

    reset_peak_rss();
    let rss_before_kib = status_field_kib("VmRSS:");
    let started = Instant::now();
    let mut reader = log.reader(Seq(1)).unwrap();
    let mut payload_bytes = 0u64;
    let n_replayed = reader.replay(|record| payload_bytes += record.payload.len() as u64).unwrap();
    let replay_seconds = started.elapsed().as_secs_f64();
    let peak_rss_kib = status_field_kib("VmHWM:");
    assert_eq!(n_replayed, last_seq);
    println!(
        "replay (CRC + seq checked, borrowed payloads): {:.2} M records/s, {:.0} MiB/s of payload",
        n_replayed as f64 / replay_seconds / 1e6,
        payload_bytes as f64 / MIB / replay_seconds
    );
    println!(
        "peak RSS during replay: VmRSS before {} MiB, VmHWM during {} MiB (log is 1024 MiB)",
        rss_before_kib / 1024,
        peak_rss_kib / 1024
    );

    let maps = segment_bytes(&replay_dir);
    let started = Instant::now();
    let mut checksum = 0u64;
    let mut plain_bytes = 0u64;
    for map in &maps {
        checksum ^= map.chunks_exact(8).fold(0u64, |acc, word| acc ^ u64::from_le_bytes(word.try_into().unwrap()));
        plain_bytes += map.len() as u64;
    }
    black_box(checksum);
    let plain_mib_per_s = plain_bytes as f64 / MIB / started.elapsed().as_secs_f64();

    // verify against raw SHA-256 of the same segment bytes (one stream per segment file, one
    // core), interleaved in rounds so a burst of other load hits all three alike; medians.
    const ROUNDS: usize = 3;
    let n_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut sha_rates, mut sha_buffer_rates, mut verify_one_thread_rates, mut verify_rates) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut verify_n_bytes = 0;
    let sha_buffer = vec![0x3Cu8; 256 << 20];
    for _ in 0..ROUNDS {
        let started = Instant::now();
        black_box(Sha256::digest(&sha_buffer));
        sha_buffer_rates.push(sha_buffer.len() as f64 / MIB / started.elapsed().as_secs_f64());
        let started = Instant::now();
        let mut sha_bytes = 0u64;
        for map in &maps {
            black_box(Sha256::digest(&map[..]));
            sha_bytes += map.len() as u64;
        }
        sha_rates.push(sha_bytes as f64 / MIB / started.elapsed().as_secs_f64());
        let started = Instant::now();
        let verify_one_thread = log.verify_with_threads(1).unwrap();
        verify_one_thread_rates.push(verify_one_thread.n_bytes as f64 / MIB / started.elapsed().as_secs_f64());
        let started = Instant::now();
        let verify = log.verify().unwrap();
        verify_rates.push(verify.n_bytes as f64 / MIB / started.elapsed().as_secs_f64());
        assert_eq!(verify, verify_one_thread);
        verify_n_bytes = verify.n_bytes;
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (sha_segments_mib_per_s, sha_buffer_mib_per_s) = (median(&mut sha_rates), median(&mut sha_buffer_rates));
    let (verify_one_thread_mib_per_s, verify_mib_per_s) =
        (median(&mut verify_one_thread_rates), median(&mut verify_rates));
    // The ratio is taken against the faster raw figure, so it is never flattered.
    let sha_mib_per_s = sha_segments_mib_per_s.max(sha_buffer_mib_per_s);
    println!("raw SHA-256, one core: the same segment bytes (one stream per segment file) {sha_segments_mib_per_s:.0} MiB/s, one 256 MiB heap buffer {sha_buffer_mib_per_s:.0} MiB/s (medians of {ROUNDS} rounds; ratios below use the faster, {sha_mib_per_s:.0} MiB/s)");
    println!("verify (CRC + seq + SHA-256 chain), {n_cores} threads (verify()): {verify_mib_per_s:.0} MiB/s over {} MiB = {:.2}x raw one-core SHA-256", verify_n_bytes >> 20, verify_mib_per_s / sha_mib_per_s);
    println!("verify, 1 thread (verify_with_threads(1)): {verify_one_thread_mib_per_s:.0} MiB/s = {:.2}x raw one-core SHA-256", verify_one_thread_mib_per_s / sha_mib_per_s);
    println!("plain read of the same segment bytes (mmap, xor fold): {plain_mib_per_s:.0} MiB/s");
    drop(log);
    std::fs::remove_dir_all(&replay_dir).unwrap();
}
