//! The writer: `EventLog::open`, the directory lock, and group commit (one leader writes and
//! fdatasyncs everything queued, followers wait), segment rollover and spare preallocation.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::format::{encode_record, encoded_record_len, SegmentHeader, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::reader::{verify_view, LogReader, SharedView};
use crate::recovery::{recover, Access, MIN_SEGMENT_SIZE};
use crate::segment::{create_preallocated_segment, sync_dir, Segment};
use crate::{Durability, LogError, LogOptions, OpenReport, SegmentId, Seq, VerifyReport};

/// Counters for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records made durable (published) since open.
    pub n_records: u64,
    /// `fdatasync` calls on segment files (0 with `Durability::NoSync`).
    pub n_syncs: u64,
    /// Group commits (one leader pass each).
    pub n_batches: u64,
    /// Record and segment-header bytes written.
    pub n_bytes_written: u64,
    /// Segments activated since open (rollovers, plus the first segment of an empty log).
    pub n_segments_activated: u64,
}

#[derive(Default)]
struct StatsCounters {
    n_records: AtomicU64,
    n_syncs: AtomicU64,
    n_batches: AtomicU64,
    n_bytes_written: AtomicU64,
    n_segments_activated: AtomicU64,
}

/// Payloads waiting for a leader; their seqs are `first_seq..first_seq + entries.len()`.
#[derive(Default)]
struct PendingBatch {
    first_seq: u64,
    payload_bytes: Vec<u8>,
    /// `(timestamp_ns, end of payload in payload_bytes)` per record.
    entries: Vec<(u64, usize)>,
}

struct Poison {
    failed_action: String,
    cause: Arc<std::io::Error>,
}

struct CommitQueue {
    next_seq: u64,
    durable_seq: u64,
    leader_active: bool,
    pending: PendingBatch,
    poison: Option<Poison>,
}

enum Spare {
    None,
    Ready(PathBuf),
    Pending(JoinHandle<Result<PathBuf, LogError>>),
}

/// State only the current leader touches (behind its own mutex, never contended by followers).
struct WriterState {
    dir: PathBuf,
    active: Arc<Segment>,
    active_file: File,
    write_offset: u64,
    last_hash: [u8; 32],
    next_segment_id: SegmentId,
    spare: Spare,
    segment_size: u64,
    durability: Durability,
    buffer: Vec<u8>,
}

/// A failed step of a group commit: what was being done, and the error.
type WriteFailure = (String, std::io::Error);

fn flatten_log_error(error: LogError) -> WriteFailure {
    match error {
        LogError::Io { action, path, source } => (format!("{action} {}", path.display()), source),
        other => ("preparing a segment".to_string(), std::io::Error::other(other.to_string())),
    }
}

impl WriterState {
    fn spawn_spare(&mut self) {
        let (dir, id, size) = (self.dir.clone(), self.next_segment_id, self.segment_size);
        let spawned = std::thread::Builder::new().name("berth-log-prealloc".to_string()).spawn(move || create_preallocated_segment(&dir, id, size));
        // If no thread can be spawned the spare is created inline at rollover instead.
        self.spare = spawned.map(Spare::Pending).unwrap_or(Spare::None);
    }

    fn take_spare(&mut self) -> Result<PathBuf, LogError> {
        let path = match std::mem::replace(&mut self.spare, Spare::None) {
            Spare::Ready(path) => Some(path),
            Spare::Pending(handle) => match handle.join() {
                Ok(Ok(path)) => Some(path),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "preallocating the next segment in the background failed; retrying inline");
                    None
                }
                Err(_) => None,
            },
            Spare::None => None,
        };
        if let Some(path) = path {
            let len = std::fs::metadata(&path).map_err(|source| LogError::io("reading metadata of", &path, source))?.len();
            if len == self.segment_size {
                return Ok(path);
            }
        }
        create_preallocated_segment(&self.dir, self.next_segment_id, self.segment_size)
    }

    /// Activates the spare as segment `next_segment_id` starting at `first_seq`: the header goes
    /// into the (empty) buffer and is written with the first records.
    fn activate_next_segment(&mut self, first_seq: u64, view: &SharedView, stats: &StatsCounters) -> Result<(), LogError> {
        debug_assert!(self.buffer.is_empty());
        let path = self.take_spare()?;
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|source| LogError::io("opening segment", &path, source))?;
        let header = SegmentHeader { segment_id: self.next_segment_id, first_seq: Seq(first_seq), segment_size: self.segment_size, carried_hash: self.last_hash };
        let segment = Arc::new(Segment::map(&path, header)?);
        self.buffer.extend_from_slice(&header.encode());
        self.write_offset = 0;
        view.push_segment(segment.clone());
        self.active = segment;
        self.active_file = file;
        self.next_segment_id = SegmentId(self.next_segment_id.0 + 1);
        stats.n_segments_activated.fetch_add(1, Ordering::Relaxed);
        self.spawn_spare();
        Ok(())
    }

    fn flush(&mut self, stats: &StatsCounters) -> Result<(), WriteFailure> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.active_file.write_all_at(&self.buffer, self.write_offset).map_err(|error| (format!("pwrite to {}", self.active.path.display()), error))?;
        self.write_offset += self.buffer.len() as u64;
        stats.n_bytes_written.fetch_add(self.buffer.len() as u64, Ordering::Relaxed);
        self.buffer.clear();
        Ok(())
    }

    fn sync(&mut self, stats: &StatsCounters, fail_next_sync: &AtomicBool) -> Result<(), WriteFailure> {
        if self.durability == Durability::NoSync {
            return Ok(());
        }
        let action = || format!("fdatasync of {}", self.active.path.display());
        if fail_next_sync.swap(false, Ordering::Relaxed) {
            return Err((action(), std::io::Error::other("injected fdatasync failure")));
        }
        self.active_file.sync_data().map_err(|error| (action(), error))?;
        stats.n_syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Encodes, writes (one pwrite per segment touched) and syncs one batch; returns its last seq.
    fn write_batch(&mut self, batch: &PendingBatch, view: &SharedView, stats: &StatsCounters, fail_next_sync: &AtomicBool) -> Result<u64, WriteFailure> {
        self.buffer.clear();
        let mut payload_start = 0;
        for (idx, &(timestamp_ns, payload_end)) in batch.entries.iter().enumerate() {
            let seq = batch.first_seq + idx as u64;
            let payload = &batch.payload_bytes[payload_start..payload_end];
            payload_start = payload_end;
            let record_len = encoded_record_len(payload.len()) as u64;
            if self.write_offset + self.buffer.len() as u64 + record_len > self.active.len() {
                // Rollover: the old segment's records must be durable before a new header
                // claims that seq `seq` follows them.
                self.flush(stats)?;
                self.sync(stats, fail_next_sync)?;
                self.activate_next_segment(seq, view, stats).map_err(flatten_log_error)?;
            }
            self.last_hash = encode_record(&mut self.buffer, &self.last_hash, Seq(seq), timestamp_ns, payload);
        }
        self.flush(stats)?;
        self.sync(stats, fail_next_sync)?;
        Ok(batch.first_seq + batch.entries.len() as u64 - 1)
    }
}

/// The append-only event log. `Send + Sync`: share it behind `Arc`; appends from many threads
/// are group-committed.
pub struct EventLog {
    view: Arc<SharedView>,
    queue: Mutex<CommitQueue>,
    queue_changed: Condvar,
    writer: Mutex<WriterState>,
    stats: StatsCounters,
    max_payload_len: u64,
    fail_next_sync: AtomicBool,
    /// Holds the flock on `dir/LOCK` for the life of the log.
    _lock_file: File,
}

fn now_unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_nanos() as u64).unwrap_or(0)
}

fn lock_directory(dir: &Path) -> Result<File, LogError> {
    let lock_path = dir.join("LOCK");
    let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&lock_path).map_err(|source| LogError::io("opening lock file", &lock_path, source))?;
    // SAFETY: flock is called on a valid descriptor owned by `file`, which outlives the call;
    // it touches no memory of ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(LogError::Locked { dir: dir.to_path_buf() });
        }
        return Err(LogError::io("locking", lock_path, error));
    }
    Ok(file)
}

impl EventLog {
    /// Opens (creating if needed) the log in `dir`, takes its lock, recovers, and returns the
    /// log with a report of what recovery found.
    pub fn open(dir: &Path, options: LogOptions) -> Result<(EventLog, OpenReport), LogError> {
        if options.segment_size < MIN_SEGMENT_SIZE || !options.segment_size.is_multiple_of(8) {
            return Err(LogError::InvalidOptions { reason: format!("segment_size {} must be a multiple of 8 and at least {MIN_SEGMENT_SIZE}", options.segment_size) });
        }
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|source| LogError::io("creating log directory", dir, source))?;
            if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock_file = lock_directory(dir)?;
        let recovered = recover(dir, options.recovery, Access::Writable)?;
        let stats = StatsCounters::default();
        let view = Arc::new(SharedView::new(dir.to_path_buf(), recovered.segments.clone(), recovered.last_seq));

        let mut writer = match recovered.segments.last() {
            Some(active) => {
                let active_file = OpenOptions::new().read(true).write(true).open(&active.path).map_err(|source| LogError::io("opening segment", &active.path, source))?;
                WriterState {
                    dir: dir.to_path_buf(),
                    active: active.clone(),
                    active_file,
                    write_offset: recovered.write_offset,
                    last_hash: recovered.last_hash,
                    next_segment_id: recovered.next_segment_id,
                    spare: recovered.spare.clone().map_or(Spare::None, Spare::Ready),
                    segment_size: options.segment_size,
                    durability: options.durability,
                    buffer: Vec::new(),
                }
            }
            None => {
                // Empty log: activate the first segment now, so the directory always has one.
                let path = match &recovered.spare {
                    Some(path) => path.clone(),
                    None => create_preallocated_segment(dir, recovered.next_segment_id, options.segment_size)?,
                };
                let header = SegmentHeader { segment_id: recovered.next_segment_id, first_seq: Seq(1), segment_size: options.segment_size, carried_hash: recovered.last_hash };
                let placeholder = Arc::new(Segment::map(&path, header)?);
                let active_file = OpenOptions::new().read(true).write(true).open(&path).map_err(|source| LogError::io("opening segment", &path, source))?;
                let mut writer = WriterState {
                    dir: dir.to_path_buf(),
                    active: placeholder,
                    active_file,
                    write_offset: 0,
                    last_hash: recovered.last_hash,
                    next_segment_id: recovered.next_segment_id,
                    spare: Spare::Ready(path),
                    segment_size: options.segment_size,
                    durability: options.durability,
                    buffer: Vec::new(),
                };
                writer.activate_next_segment(1, &view, &stats)?;
                writer.flush(&stats).and_then(|()| writer.active_file.sync_data().map_err(|error| ("fdatasync".to_string(), error))).map_err(|(_, source)| LogError::io("writing the first segment header to", &writer.active.path, source))?;
                writer
            }
        };
        if matches!(writer.spare, Spare::None) {
            writer.spawn_spare();
        }

        let max_payload_len = (options.segment_size - SEGMENT_HEADER_LEN as u64 - RECORD_HEADER_LEN as u64).min(u32::MAX as u64);
        let event_log = EventLog {
            view,
            queue: Mutex::new(CommitQueue { next_seq: recovered.last_seq.0 + 1, durable_seq: recovered.last_seq.0, leader_active: false, pending: PendingBatch::default(), poison: None }),
            queue_changed: Condvar::new(),
            writer: Mutex::new(writer),
            stats,
            max_payload_len,
            fail_next_sync: AtomicBool::new(false),
            _lock_file: lock_file,
        };
        let mut report = recovered.report;
        report.n_segments = event_log.view.segments().len();
        Ok((event_log, report))
    }

    /// Appends one record; in `Durability::Sync` returns only once it is on stable storage.
    pub fn append(&self, payload: &[u8]) -> Result<Seq, LogError> {
        self.append_batch(&[payload])
    }

    /// Appends records with contiguous seqs and returns the first; one sync covers them all
    /// (and whatever other threads queued meanwhile).
    pub fn append_batch(&self, payloads: &[&[u8]]) -> Result<Seq, LogError> {
        self.append_batch_at(payloads, now_unix_nanos())
    }

    /// `append_batch` with a caller-chosen record timestamp (ns since the epoch). The daemon
    /// folds a batch into its projections before appending it, so it must know the timestamp
    /// the records will carry.
    pub fn append_batch_at(&self, payloads: &[&[u8]], timestamp_ns: u64) -> Result<Seq, LogError> {
        if payloads.is_empty() {
            return Err(LogError::EmptyBatch);
        }
        for payload in payloads {
            if payload.len() as u64 > self.max_payload_len {
                return Err(LogError::TooLarge { len: payload.len() as u64, max: self.max_payload_len });
            }
        }
        let mut queue = self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(poison) = &queue.poison {
            return Err(Self::poisoned_error(poison, queue.durable_seq));
        }
        let first_seq = queue.next_seq;
        let last_seq = first_seq + payloads.len() as u64 - 1;
        queue.next_seq = last_seq + 1;
        if queue.pending.entries.is_empty() {
            queue.pending.first_seq = first_seq;
        }
        for payload in payloads {
            queue.pending.payload_bytes.extend_from_slice(payload);
            let payload_end = queue.pending.payload_bytes.len();
            queue.pending.entries.push((timestamp_ns, payload_end));
        }
        loop {
            if queue.durable_seq >= last_seq {
                return Ok(Seq(first_seq));
            }
            if let Some(poison) = &queue.poison {
                return Err(Self::poisoned_error(poison, queue.durable_seq));
            }
            if !queue.leader_active {
                // Become the leader for everything queued so far (our records included).
                queue.leader_active = true;
                let batch = std::mem::take(&mut queue.pending);
                drop(queue);
                let outcome = {
                    let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    writer.write_batch(&batch, &self.view, &self.stats, &self.fail_next_sync)
                };
                queue = self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                queue.leader_active = false;
                match outcome {
                    Ok(batch_last_seq) => {
                        queue.durable_seq = batch_last_seq;
                        self.stats.n_records.fetch_add(batch.entries.len() as u64, Ordering::Relaxed);
                        self.stats.n_batches.fetch_add(1, Ordering::Relaxed);
                        self.view.publish(batch_last_seq);
                    }
                    Err((failed_action, error)) => {
                        tracing::error!(%failed_action, %error, "log write failed; the log is poisoned and refuses further appends");
                        queue.poison = Some(Poison { failed_action, cause: Arc::new(error) });
                    }
                }
                self.queue_changed.notify_all();
                continue;
            }
            queue = self.queue_changed.wait(queue).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn poisoned_error(poison: &Poison, durable_seq: u64) -> LogError {
        LogError::Poisoned { failed_action: poison.failed_action.clone(), last_durable: Seq(durable_seq), cause: poison.cause.clone() }
    }

    /// Last durable seq; `Seq(0)` when the log is empty.
    pub fn last_seq(&self) -> Seq {
        Seq(self.view.durable_seq())
    }

    /// Blocks until `last_seq() >= seq` or the timeout passes; returns `last_seq()`.
    pub fn wait_for(&self, seq: Seq, timeout: Option<Duration>) -> Seq {
        Seq(self.view.wait_for(seq.0, timeout))
    }

    /// A reader of durable records with `seq >= from` (tailing: it sees later appends too).
    pub fn reader(&self, from: Seq) -> Result<LogReader, LogError> {
        LogReader::new(self.view.clone(), from)
    }

    /// Checks CRCs, seq continuity and the full hash chain of everything durable.
    pub fn verify(&self) -> Result<VerifyReport, LogError> {
        verify_view(&self.view)
    }

    pub fn dir(&self) -> &Path {
        &self.view.dir
    }

    pub fn stats(&self) -> LogStats {
        LogStats {
            n_records: self.stats.n_records.load(Ordering::Relaxed),
            n_syncs: self.stats.n_syncs.load(Ordering::Relaxed),
            n_batches: self.stats.n_batches.load(Ordering::Relaxed),
            n_bytes_written: self.stats.n_bytes_written.load(Ordering::Relaxed),
            n_segments_activated: self.stats.n_segments_activated.load(Ordering::Relaxed),
        }
    }

    /// Whether an earlier write or sync failure has poisoned the writer.
    pub fn is_poisoned(&self) -> bool {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).poison.is_some()
    }

    /// Makes the next fdatasync fail as if the disk had reported EIO. For tests of the
    /// poisoning path only.
    #[doc(hidden)]
    pub fn inject_sync_failure_for_tests(&self) {
        self.fail_next_sync.store(true, Ordering::Relaxed);
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        // Let a background preallocation finish so no half-written `.tmp` races the next opener.
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Spare::Pending(handle) = std::mem::replace(&mut writer.spare, Spare::None) {
            let _ = handle.join();
        }
    }
}
