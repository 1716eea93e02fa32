//! The writer: `EventLog::open`, the directory lock, and group commit (one leader writes and
//! fdatasyncs everything queued, followers wait), segment rollover and spare preallocation.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crate::anchor::{check_anchor, read_anchor, write_anchor, Anchor, AnchorWriter};
use crate::durable::sync_dir;
use crate::format::{
    encode_record, encoded_record_len, SegmentHeader, LOCK_FILE, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::reader::{chain_hash_at, LogReader};
use crate::recovery::{recover, Access};
use crate::segment::{create_preallocated_segment, Segment, SegmentSizes, MIN_SEGMENT_SIZE};
use crate::stats::{Histograms, LogHistograms, LogStats, StatsCounters};
use crate::verify::verify_view;
use crate::view::SharedView;
use crate::{Durability, LogError, LogOptions, OpenReport, SegmentId, Seq, Timestamp, VerifyReport};

/// Payloads waiting for a leader; their seqs are `first_seq..first_seq + entries.len()`.
#[derive(Default)]
struct PendingBatch {
    first_seq: u64,
    payload_bytes: Vec<u8>,
    /// `(timestamp_ns, end of payload in payload_bytes)` per record.
    entries: Vec<(u64, usize)>,
    /// `append*` calls with records in this batch (the leader's own included).
    n_callers: usize,
    /// Followers waiting for exactly this batch; the leader unparks them once it is durable, so
    /// a sync wakes only the appenders it made durable (no herd of the next batch's waiters).
    waiters: Vec<Thread>,
}

impl PendingBatch {
    /// Empties the batch but keeps its allocations for reuse.
    fn clear(&mut self) {
        self.first_seq = 0;
        self.payload_bytes.clear();
        self.entries.clear();
        self.n_callers = 0;
        self.waiters.clear();
    }
}

struct Poison {
    failed_action: String,
    cause: Arc<std::io::Error>,
}

struct CommitQueue {
    next_seq: u64,
    leader_active: bool,
    pending: PendingBatch,
    /// The previous batch's buffers, cleared, swapped in as the next `pending`.
    recycled: PendingBatch,
    poison: Option<Poison>,
    /// While a leader gathers: the number of callers in `pending` at which it stops waiting
    /// (the appender that reaches it signals `gather_ready`); 0 when nobody gathers.
    gather_until_callers: usize,
    /// Callers of the last batch plus callers already queued when its sync returned: how many
    /// appenders were active at once. The next leader gathers until that many have queued.
    recent_callers: usize,
}

/// A leader leads at most this many batches in a row before handing the queue to a follower,
/// so its own caller is not held back indefinitely under constant load.
const MAX_BATCHES_PER_LEADER: u32 = 4;
/// Upper bound of the adaptive gather (commit delay) before a batch is written.
const MAX_GATHER: Duration = Duration::from_micros(100);

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
    /// Segment sizes grow geometrically from the initial size up to this maximum.
    sizes: SegmentSizes,
    durability: Durability,
    buffer: Vec<u8>,
    /// Rewritten (without fsync) after each group commit; see anchor.rs.
    anchor: Option<AnchorWriter>,
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
        let (dir, id, size) = (self.dir.clone(), self.next_segment_id, self.sizes.for_segment(self.next_segment_id, 0));
        let spawned = std::thread::Builder::new()
            .name("berth-log-prealloc".to_string())
            .spawn(move || create_preallocated_segment(&dir, id, size));
        // If no thread can be spawned the spare is created inline at rollover instead.
        self.spare = spawned.map(Spare::Pending).unwrap_or(Spare::None);
    }

    /// The spare, at least `required` bytes long (a record larger than the geometric size of
    /// the next segment gets a larger segment, up to the maximum); returns its path and length.
    fn take_spare(&mut self, required: u64) -> Result<(PathBuf, u64), LogError> {
        let size = self.sizes.for_segment(self.next_segment_id, required);
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
            let len =
                std::fs::metadata(&path).map_err(|source| LogError::io("reading metadata of", &path, source))?.len();
            if len == size {
                return Ok((path, len));
            }
        }
        Ok((create_preallocated_segment(&self.dir, self.next_segment_id, size)?, size))
    }

    /// Makes the spare ready now (waiting for the background preallocation, or preallocating
    /// inline when that failed), without writing anything to the log. A failure leaves the
    /// writer as it was, so the caller may refuse its append and try again later.
    fn prepare_spare(&mut self, required: u64) -> Result<(), LogError> {
        let (path, _) = self.take_spare(required).map_err(|error| {
            let source = match error {
                LogError::Io { source, .. } => source,
                other => std::io::Error::other(other.to_string()),
            };
            LogError::NoSpace { dir: self.dir.clone(), source }
        })?;
        self.spare = Spare::Ready(path);
        Ok(())
    }

    /// Whether records of these encoded lengths, appended now, would need the next segment,
    /// and if so how many bytes that segment must hold (its header and the records that go
    /// there, capped at one maximum-size segment).
    fn next_segment_need(&self, record_lens: impl Iterator<Item = u64>) -> Option<u64> {
        let mut offset = self.write_offset;
        let mut need: Option<u64> = None;
        for record_len in record_lens {
            match &mut need {
                Some(need) => *need += record_len,
                None if offset + record_len > self.active.len() => {
                    need = Some(SEGMENT_HEADER_LEN as u64 + record_len);
                }
                None => offset += record_len,
            }
        }
        need.map(|need| need.min(self.sizes.max))
    }

    /// Activates the spare as segment `next_segment_id` starting at `first_seq`: the header goes
    /// into the (empty) buffer and is written with the first records.
    fn activate_next_segment(
        &mut self,
        first_seq: u64,
        first_record_len: u64,
        view: &SharedView,
        stats: &StatsCounters,
    ) -> Result<(), LogError> {
        debug_assert!(self.buffer.is_empty());
        let (path, segment_size) = self.take_spare(SEGMENT_HEADER_LEN as u64 + first_record_len)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| LogError::io("opening segment", &path, source))?;
        let header = SegmentHeader {
            segment_id: self.next_segment_id,
            first_seq: Seq(first_seq),
            segment_size,
            carried_hash: self.last_hash,
        };
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
        self.active_file
            .write_all_at(&self.buffer, self.write_offset)
            .map_err(|error| (format!("pwrite to {}", self.active.path.display()), error))?;
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
    fn write_batch(
        &mut self,
        batch: &PendingBatch,
        view: &SharedView,
        stats: &StatsCounters,
        fail_next_sync: &AtomicBool,
    ) -> Result<u64, WriteFailure> {
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
                self.activate_next_segment(seq, record_len, view, stats).map_err(flatten_log_error)?;
            }
            self.last_hash = encode_record(&mut self.buffer, &self.last_hash, Seq(seq), timestamp_ns, payload);
        }
        self.flush(stats)?;
        self.sync(stats, fail_next_sync)?;
        let batch_last_seq = batch.first_seq + batch.entries.len() as u64 - 1;
        if let Some(anchor) = &mut self.anchor {
            anchor.record(Anchor { seq: Seq(batch_last_seq), hash: self.last_hash });
        }
        Ok(batch_last_seq)
    }
}

/// The append-only event log. `Send + Sync`: share it behind `Arc`; appends from many threads
/// are group-committed.
pub struct EventLog {
    pub(crate) view: Arc<SharedView>,
    /// One archiver or retention pass at a time (archive.rs).
    pub(crate) archive_lock: Mutex<()>,
    queue: Mutex<CommitQueue>,
    /// Signalled when a gathering leader's `gather_until_callers` is reached.
    gather_ready: Condvar,
    /// Set (after `CommitQueue::poison`) when a write failed; lets woken followers see it
    /// without taking the queue lock.
    poisoned: AtomicBool,
    /// Smoothed duration of a batch's write + fdatasync, in ns; bounds the gather.
    smoothed_commit_ns: AtomicU64,
    durability: Durability,
    writer: Mutex<WriterState>,
    stats: StatsCounters,
    histograms: Histograms,
    segment_size: u64,
    max_payload_len: u64,
    fail_next_sync: AtomicBool,
    /// Holds the flock on `dir/LOCK` for the life of the log.
    _lock_file: File,
}

/// Resets the anchor to the log's head after the log was accepted (synced once, at open) and
/// opens it for the writer.
fn open_anchor(anchor_path: &Path, view: &SharedView) -> Result<AnchorWriter, LogError> {
    let head_seq = Seq(view.durable_seq());
    write_anchor(anchor_path, Anchor { seq: head_seq, hash: chain_hash_at(view, head_seq)? })?;
    AnchorWriter::open(anchor_path)
}

pub(crate) fn lock_directory(dir: &Path) -> Result<File, LogError> {
    let lock_path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|source| LogError::io("opening lock file", &lock_path, source))?;
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
            return Err(LogError::InvalidOptions {
                reason: format!(
                    "segment_size {} must be a multiple of 8 and at least {MIN_SEGMENT_SIZE}",
                    options.segment_size
                ),
            });
        }
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|source| LogError::io("creating log directory", dir, source))?;
            if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock_file = lock_directory(dir)?;
        let recovered = recover(dir, options.recovery, Access::Writable)?;
        if let Some(anchor_path) = &options.anchor {
            // Before anything is appended (an empty log gets its first segment below).
            if let Some(anchor) = read_anchor(anchor_path)? {
                let view = recovered.view(dir);
                check_anchor(anchor_path, anchor, recovered.last_seq, |seq| chain_hash_at(&view, seq))?;
            }
        }
        let stats = StatsCounters::default();
        let sizes = SegmentSizes::new(&options);
        let view = Arc::new(recovered.view(dir));

        let mut writer = match recovered.segments.last() {
            Some(active) => {
                let active_file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&active.path)
                    .map_err(|source| LogError::io("opening segment", &active.path, source))?;
                WriterState {
                    dir: dir.to_path_buf(),
                    active: active.clone(),
                    active_file,
                    write_offset: recovered.write_offset,
                    last_hash: recovered.last_hash,
                    next_segment_id: recovered.next_segment_id,
                    spare: recovered.spare.clone().map_or(Spare::None, Spare::Ready),
                    sizes,
                    durability: options.durability,
                    buffer: Vec::new(),
                    anchor: None,
                }
            }
            None => {
                // Empty log: activate the first segment now, so the directory always has one.
                let path = match &recovered.spare {
                    Some(path) => path.clone(),
                    None => create_preallocated_segment(
                        dir,
                        recovered.next_segment_id,
                        sizes.for_segment(recovered.next_segment_id, 0),
                    )?,
                };
                let header = SegmentHeader {
                    segment_id: recovered.next_segment_id,
                    first_seq: recovered.last_seq.next(),
                    segment_size: 0,
                    carried_hash: recovered.last_hash,
                };
                let placeholder = Arc::new(Segment::map(&path, header)?);
                let active_file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|source| LogError::io("opening segment", &path, source))?;
                let mut writer = WriterState {
                    dir: dir.to_path_buf(),
                    active: placeholder,
                    active_file,
                    write_offset: 0,
                    last_hash: recovered.last_hash,
                    next_segment_id: recovered.next_segment_id,
                    spare: Spare::Ready(path),
                    sizes,
                    durability: options.durability,
                    buffer: Vec::new(),
                    anchor: None,
                };
                writer.activate_next_segment(recovered.last_seq.0 + 1, 0, &view, &stats)?;
                writer
                    .flush(&stats)
                    .and_then(|()| writer.active_file.sync_data().map_err(|error| ("fdatasync".to_string(), error)))
                    .map_err(|(_, source)| {
                        LogError::io("writing the first segment header to", &writer.active.path, source)
                    })?;
                writer
            }
        };
        if let Some(anchor_path) = &options.anchor {
            writer.anchor = Some(open_anchor(anchor_path, &view)?);
        }
        if matches!(writer.spare, Spare::None) {
            writer.spawn_spare();
        }

        let max_payload_len =
            (options.segment_size - SEGMENT_HEADER_LEN as u64 - RECORD_HEADER_LEN as u64).min(u32::MAX as u64);
        let event_log = EventLog {
            view,
            queue: Mutex::new(CommitQueue {
                next_seq: recovered.last_seq.0 + 1,
                leader_active: false,
                pending: PendingBatch::default(),
                recycled: PendingBatch::default(),
                poison: None,
                gather_until_callers: 0,
                recent_callers: 0,
            }),
            gather_ready: Condvar::new(),
            poisoned: AtomicBool::new(false),
            smoothed_commit_ns: AtomicU64::new(0),
            durability: options.durability,
            writer: Mutex::new(writer),
            stats,
            histograms: Histograms::default(),
            segment_size: options.segment_size,
            max_payload_len,
            fail_next_sync: AtomicBool::new(false),
            archive_lock: Mutex::new(()),
            _lock_file: lock_file,
        };
        let mut report = recovered.report;
        report.n_segments = event_log.view.segments().iter().filter(|segment| !segment.is_archived()).count();
        Ok((event_log, report))
    }

    /// Makes sure that appending `payloads` next cannot fail for want of the next segment: if
    /// they do not all fit into the active segment, the spare is prepared now. On failure
    /// (`LogError::NoSpace`: the file system is full, say) nothing was written and the log is
    /// not poisoned, so the caller can refuse its request and call this again later; the log
    /// resumes by itself once there is room. Only the segment after the active one is
    /// prepared, which covers any batch of at most one segment's worth of records.
    ///
    /// This is a guarantee for a single appender (berthd's command thread): with several, an
    /// append by another thread may use up the room in between.
    pub fn reserve_room(&self, payloads: &[&[u8]]) -> Result<(), LogError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match writer.next_segment_need(payloads.iter().map(|payload| encoded_record_len(payload.len()) as u64)) {
            None => Ok(()),
            Some(need) => writer.prepare_spare(need),
        }
    }

    /// Prepares the next segment now if it is not ready (see `reserve_room`): after a
    /// `NoSpace`, this tells whether room has come back.
    pub fn prepare_next_segment(&self) -> Result<(), LogError> {
        self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).prepare_spare(0)
    }

    /// Appends one record; in `Durability::Sync` returns only once it is on stable storage.
    pub fn append(&self, payload: &[u8]) -> Result<Seq, LogError> {
        self.append_batch(&[payload])
    }

    /// Appends records with contiguous seqs and returns the first; one sync covers them all
    /// (and whatever other threads queued meanwhile).
    pub fn append_batch(&self, payloads: &[&[u8]]) -> Result<Seq, LogError> {
        self.append_batch_at(payloads, Timestamp::now())
    }

    /// `append_batch` with a caller-chosen record timestamp. The daemon
    /// folds a batch into its projections before appending it, so it must know the timestamp
    /// the records will carry.
    pub fn append_batch_at(&self, payloads: &[&[u8]], timestamp: Timestamp) -> Result<Seq, LogError> {
        let started = Instant::now();
        let appended = self.append_batch_untimed(payloads, timestamp);
        if appended.is_ok() {
            self.histograms.append_ns.observe(started.elapsed().as_nanos() as u64);
        }
        appended
    }

    fn append_batch_untimed(&self, payloads: &[&[u8]], timestamp: Timestamp) -> Result<Seq, LogError> {
        if payloads.is_empty() {
            return Err(LogError::EmptyBatch);
        }
        for payload in payloads {
            if payload.len() as u64 > self.max_payload_len {
                return Err(LogError::TooLarge { len: payload.len() as u64, max: self.max_payload_len });
            }
        }
        let mut queue = self.lock_queue();
        if let Some(poison) = &queue.poison {
            return Err(Self::poisoned_error(poison, self.view.durable_seq()));
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
            queue.pending.entries.push((timestamp.as_ns(), payload_end));
        }
        queue.pending.n_callers += 1;
        if !queue.leader_active {
            // No batch is in flight: lead one with everything queued (our records included).
            return self.lead(queue, first_seq, last_seq);
        }
        if queue.gather_until_callers != 0 && queue.pending.n_callers >= queue.gather_until_callers {
            self.gather_ready.notify_one();
        }
        queue.pending.waiters.push(std::thread::current());
        drop(queue);
        self.spin_until_durable(last_seq);
        loop {
            // The leader publishes the watermark (release) before unparking us.
            if self.view.durable_seq() >= last_seq {
                return Ok(Seq(first_seq));
            }
            if self.poisoned.load(Ordering::Acquire) {
                let queue = self.lock_queue();
                let poison = queue.poison.as_ref().expect("poisoned flag is set after the poison");
                return Err(Self::poisoned_error(poison, self.view.durable_seq()));
            }
            std::thread::park();
            if self.view.durable_seq() >= last_seq || self.poisoned.load(Ordering::Acquire) {
                continue;
            }
            // Not durable: either a spurious wake-up or the leader handed the queue to us. With
            // no leader, no batch is in flight, so our records are still in `pending`.
            let queue = self.lock_queue();
            if !queue.leader_active && queue.poison.is_none() {
                return self.lead(queue, first_seq, last_seq);
            }
        }
    }

    /// A follower yields the CPU in a loop for about one commit before it parks. Parking costs
    /// a futex wake-up per follower once the batch is durable, and on few cores those wake-ups
    /// run one after another: ~80 µs for 15 followers on 2 vCPUs, as long as the fdatasync
    /// itself. A yielding follower sees the new watermark at its next turn instead. The CPU it
    /// uses is otherwise idle, since the leader is blocked in fdatasync; the spin is bounded, so
    /// a slow disk still ends in `park`.
    fn spin_until_durable(&self, last_seq: u64) {
        if self.durability != Durability::Sync {
            return;
        }
        let deadline = Instant::now() + 2 * self.gather_limit();
        while self.view.durable_seq() < last_seq && !self.poisoned.load(Ordering::Acquire) && Instant::now() < deadline
        {
            std::thread::yield_now();
        }
    }

    fn lock_queue(&self) -> MutexGuard<'_, CommitQueue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long a leader may wait for more appenders before writing: never more than the
    /// commit itself takes (on a fast disk the wait would cost more than the sync it saves).
    fn gather_limit(&self) -> Duration {
        Duration::from_nanos(self.smoothed_commit_ns.load(Ordering::Relaxed)).min(MAX_GATHER)
    }

    /// Runs group commits as the leader, starting with the batch that holds `first_seq..=last_seq`
    /// (this caller's records), and returns this caller's result. Keeps leading while records
    /// are queued, up to `MAX_BATCHES_PER_LEADER` batches, then hands the queue to a follower.
    fn lead<'log>(
        &'log self,
        mut queue: MutexGuard<'log, CommitQueue>,
        first_seq: u64,
        last_seq: u64,
    ) -> Result<Seq, LogError> {
        queue.leader_active = true;
        let mut n_batches_led = 0u32;
        loop {
            // Adaptive gather (commit delay): if several appenders were active around the last
            // sync, wait briefly until as many have queued again, so one fdatasync covers all of
            // them instead of alternating between two half-sized batches. A lone appender
            // (recent_callers <= 1) never waits. A leader that keeps leading does not append
            // itself meanwhile, so it waits for one caller fewer.
            let gather_target = queue.recent_callers.saturating_sub(usize::from(n_batches_led > 0));
            if self.durability == Durability::Sync && gather_target >= 2 && queue.pending.n_callers < gather_target {
                let deadline = Instant::now() + self.gather_limit();
                queue.gather_until_callers = gather_target;
                while queue.pending.n_callers < gather_target {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    queue = self
                        .gather_ready
                        .wait_timeout(queue, deadline - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0;
                }
                queue.gather_until_callers = 0;
            }
            let next_pending = std::mem::take(&mut queue.recycled);
            let mut batch = std::mem::replace(&mut queue.pending, next_pending);
            drop(queue);

            let commit_started = Instant::now();
            let outcome = {
                let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                writer.write_batch(&batch, &self.view, &self.stats, &self.fail_next_sync)
            };
            n_batches_led += 1;
            let batch_last_seq = match outcome {
                Ok(batch_last_seq) => batch_last_seq,
                Err((failed_action, error)) => {
                    tracing::error!(%failed_action, %error, "log write failed; the log is poisoned and refuses further appends");
                    let mut queue = self.lock_queue();
                    queue.poison = Some(Poison { failed_action, cause: Arc::new(error) });
                    self.poisoned.store(true, Ordering::Release);
                    queue.leader_active = false;
                    let queued_waiters = std::mem::take(&mut queue.pending.waiters);
                    let own_result = if self.view.durable_seq() >= last_seq {
                        Ok(Seq(first_seq))
                    } else {
                        Err(Self::poisoned_error(queue.poison.as_ref().expect("just set"), self.view.durable_seq()))
                    };
                    drop(queue);
                    for waiter in batch.waiters.iter().chain(&queued_waiters) {
                        waiter.unpark();
                    }
                    return own_result;
                }
            };
            let commit_ns = commit_started.elapsed().as_nanos() as u64;
            let smoothed = self.smoothed_commit_ns.load(Ordering::Relaxed);
            self.smoothed_commit_ns
                .store(if smoothed == 0 { commit_ns } else { (smoothed * 7 + commit_ns) / 8 }, Ordering::Relaxed);
            // Callers that queued during the sync are other appenders than this batch's (those
            // are all still blocked); count them before anyone is woken.
            let queued_during_commit = self.lock_queue().pending.n_callers;
            self.stats.n_records.fetch_add(batch.entries.len() as u64, Ordering::Relaxed);
            self.stats.n_batches.fetch_add(1, Ordering::Relaxed);
            self.histograms.commit_ns.observe(commit_ns);
            self.histograms.batch_records.observe(batch.entries.len() as u64);
            self.view.publish(batch_last_seq);
            for waiter in &batch.waiters {
                waiter.unpark();
            }

            queue = self.lock_queue();
            // A leader past its first batch is an active appender too, though not in the batch.
            queue.recent_callers = batch.n_callers + queued_during_commit + usize::from(n_batches_led > 1);
            batch.clear();
            queue.recycled = batch;
            if queue.pending.entries.is_empty() {
                queue.leader_active = false;
                return Ok(Seq(first_seq));
            }
            if n_batches_led >= MAX_BATCHES_PER_LEADER {
                // Hand over: every caller in `pending` is a parked follower; wake the oldest,
                // it finds no leader and leads.
                queue.leader_active = false;
                let next_leader = queue.pending.waiters.first().cloned();
                drop(queue);
                if let Some(next_leader) = next_leader {
                    next_leader.unpark();
                }
                return Ok(Seq(first_seq));
            }
        }
    }

    fn poisoned_error(poison: &Poison, durable_seq: u64) -> LogError {
        LogError::Poisoned {
            failed_action: poison.failed_action.clone(),
            last_durable: Seq(durable_seq),
            cause: poison.cause.clone(),
        }
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

    /// The chain hash stored in durable record `seq` (the genesis hash for seq 0); with the seq
    /// it names a point of the log that can be published and checked later.
    pub fn chain_hash_at(&self, seq: Seq) -> Result<[u8; 32], LogError> {
        chain_hash_at(&self.view, seq)
    }

    /// Checks CRCs, seq continuity, segment links and the full hash chain of everything
    /// durable. Runs on one thread per core: each chain link can be checked on its own (see
    /// docs/log-format.md, "Verify").
    pub fn verify(&self) -> Result<VerifyReport, LogError> {
        verify_view(&self.view, 0)
    }

    /// `verify` on at most `n_threads` threads (`1`: on the calling thread only), e.g. to leave
    /// cores to a running daemon.
    pub fn verify_with_threads(&self, n_threads: usize) -> Result<VerifyReport, LogError> {
        verify_view(&self.view, n_threads.max(1))
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
            n_segments: self.view.segments().len() as u64,
            segment_size: self.segment_size,
        }
    }

    /// Append latency, commit duration and batch sizes since open.
    pub fn histograms(&self) -> LogHistograms {
        self.histograms.snapshot()
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
        // A clean close leaves the anchor exact on disk, not only in the page cache.
        if let Some(anchor) = &writer.anchor {
            anchor.sync();
        }
    }
}
