//! berth-log benchmark (bench binary, `harness = false`): raw disk baselines beside the log's
//! durable append, non-durable append, replay and verify figures, all on the same disk.
//!
//! Usage: `cargo bench -p berth-log --bench logbench -- [DIR]` (default /var/tmp/berth-log-bench,
//! or `BERTH_LOG_BENCH_DIR`). Run through scripts/bench-log.sh.

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
    status.lines().find_map(|line| line.strip_prefix(field)).and_then(|rest| rest.split_whitespace().next()).and_then(|kib| kib.parse().ok()).unwrap_or(0)
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

/// pwrite of 4 KiB + fdatasync into a zero-filled preallocated file: the disk's commit rate.
fn raw_sync_rate(base: &Path, duration: Duration) -> f64 {
    let path = base.join("raw-sync.dat");
    let size = 64u64 << 20;
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
    let zeroes = vec![0u8; 1 << 20];
    for chunk in 0..(size >> 20) {
        file.write_all_at(&zeroes, chunk << 20).unwrap();
    }
    file.sync_all().unwrap();
    let block = vec![0xA5u8; 4096];
    let started = Instant::now();
    let mut n_commits = 0u64;
    while started.elapsed() < duration {
        file.write_all_at(&block, (n_commits * 4096) % size).unwrap();
        file.sync_data().unwrap();
        n_commits += 1;
    }
    let rate = n_commits as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    rate
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

fn durable_appends(base: &Path, n_appenders: usize, duration: Duration) -> (f64, f64) {
    let dir = fresh_dir(base, &format!("durable-{n_appenders}"));
    let (log, _) = EventLog::open(&dir, LogOptions::default()).unwrap();
    let log = Arc::new(log);
    let before = log.stats();
    let started = Instant::now();
    let threads: Vec<_> = (0..n_appenders)
        .map(|thread_idx| {
            let log = log.clone();
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
    let after = log.stats();
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();
    ((after.n_records - before.n_records) as f64 / elapsed, (after.n_syncs - before.n_syncs) as f64 / elapsed)
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
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).filter(|path| path.extension().is_some_and(|extension| extension == "seg")).collect();
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
    let base = std::env::args().skip(1).find(|arg| !arg.starts_with("--")).or_else(|| std::env::var("BERTH_LOG_BENCH_DIR").ok()).unwrap_or_else(|| "/var/tmp/berth-log-bench".to_string());
    let base = PathBuf::from(base);
    std::fs::create_dir_all(&base).unwrap();
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().lines().find_map(|line| line.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())).unwrap_or_default();
    println!("berth-log benchmark: dir {} | cpu {} | {} cores", base.display(), cpu, std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("record: {EVENT_PAYLOAD_LEN}-byte payload -> {} bytes on disk", berth_log::format::encoded_record_len(EVENT_PAYLOAD_LEN));

    // Durable commits.
    let raw_sync = raw_sync_rate(&base, Duration::from_secs(3));
    println!("raw pwrite 4 KiB + fdatasync (preallocated, zero-filled): {raw_sync:.0} commits/s");
    for n_appenders in [1, 4, 16] {
        let (events, syncs) = durable_appends(&base, n_appenders, Duration::from_secs(4));
        println!("durable append, {n_appenders:>2} appenders: {events:>9.0} events/s, {syncs:>6.0} syncs/s, {:>5.1} events/sync, {:.1}x raw sync rate", events / syncs.max(1.0), events / raw_sync);
    }

    // Non-durable throughput.
    let raw_sequential = raw_sequential_write_mib_per_s(&base);
    println!("raw sequential write (1 MiB pwrites, page cache): {raw_sequential:.0} MiB/s");
    for batch_len in [1usize, 256] {
        let (events, mib) = non_durable_appends(&base, batch_len, 1_000_000);
        println!("non-durable append (NoSync), batches of {batch_len:>3}: {events:>9.0} events/s, {mib:>6.0} MiB/s");
    }

    // Replay and verify of a 1 GiB log in page cache.
    let replay_dir = fresh_dir(&base, "replay");
    let build_started = Instant::now();
    let last_seq = build_log(&replay_dir, 1 << 30);
    println!("built a 1 GiB log: {last_seq} records in {:.1} s", build_started.elapsed().as_secs_f64());
    let (log, report) = EventLog::open(&replay_dir, LogOptions { durability: Durability::NoSync, recovery: RecoveryMode::TruncateTornTail, ..LogOptions::default() }).unwrap();
    assert_eq!(report.last_seq.get(), last_seq);
    // Warm-up pass so the page cache holds every segment.
    let mut reader = log.reader(Seq(1)).unwrap();
    black_box(reader.replay(|record| { black_box(record.payload.len()); }).unwrap());
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
    println!("replay (CRC + seq checked, borrowed payloads): {:.2} M records/s, {:.0} MiB/s of payload", n_replayed as f64 / replay_seconds / 1e6, payload_bytes as f64 / MIB / replay_seconds);
    println!("peak RSS during replay: VmRSS before {} MiB, VmHWM during {} MiB (log is 1024 MiB)", rss_before_kib / 1024, peak_rss_kib / 1024);

    let started = Instant::now();
    let verify = log.verify().unwrap();
    let verify_seconds = started.elapsed().as_secs_f64();
    let verify_mib_per_s = verify.n_bytes as f64 / MIB / verify_seconds;

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
    let sha_buffer = vec![0x3Cu8; 256 << 20];
    let started = Instant::now();
    black_box(Sha256::digest(&sha_buffer));
    let sha_mib_per_s = sha_buffer.len() as f64 / MIB / started.elapsed().as_secs_f64();
    println!("verify (CRC + seq + SHA-256 chain): {verify_mib_per_s:.0} MiB/s over {} MiB = {:.2}x raw SHA-256", verify.n_bytes >> 20, verify_mib_per_s / sha_mib_per_s);
    println!("raw SHA-256 (one core, one 256 MiB buffer): {sha_mib_per_s:.0} MiB/s | plain read of the same segment bytes (mmap, xor fold): {plain_mib_per_s:.0} MiB/s");
    drop(log);
    std::fs::remove_dir_all(&replay_dir).unwrap();
}
