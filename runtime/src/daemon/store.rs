//! The store: the log plus the projections folded from it, and the one thread that turns
//! commands into durable records.
//!
//! Every mutating request goes through [`Store::submit`]. A single command thread takes all
//! submissions waiting at that moment as one batch; under the state's write lock it decides
//! each command against the state (which already holds the batch's earlier commands, so two
//! creates of one id in a batch cannot both pass), folds the accepted ones in, appends them
//! with one group-committed sync, and only then releases the lock and answers. Readers
//! therefore never see state that is not durable. A failed append is fatal: the process exits
//! and recovery replays the log (an fsync error must not be retried).

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::thread;
use std::time::Duration;

use berth_commands::{Command, CommandError};
use berth_log::{EventLog, LogError, Seq, Timestamp};
use berth_projections::{replay_parallel, Envelope, Event, Origin, State};
use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::counters::{CommandOutcome, DaemonCounters};

/// The most submissions folded into one record batch.
const MAX_BATCH: usize = 512;

/// The largest record berthd writes for a client: a quarter of a segment, and never more than
/// 16 MiB. A record must fit in one segment or the append fails, which is fatal; keeping records
/// well below that makes an oversized request the client's error (`ResourceExhausted`), and
/// keeps every record small enough to send back in one API message.
pub fn max_record_bytes(segment_size: u64) -> usize {
    (segment_size / 4).min(16 << 20) as usize
}

/// A committed record, as the executor and subscribers see it.
#[derive(Debug, Clone)]
pub struct CommittedRecord {
    pub seq: Seq,
    pub timestamp: Timestamp,
    pub envelope: Arc<Envelope>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Rejected(#[from] CommandError),
    #[error("berthd is stopping: retry when it is back")]
    Stopping,
    /// The log has no room for the record (its file system is full); nothing was recorded.
    /// berthd keeps serving reads and accepts writes again by itself once there is room.
    #[error("the event log has no room: {0}")]
    NoSpace(String),
    #[error("the request would be recorded as {len} bytes, over berthd's record limit of {max} bytes (a quarter of a log segment, at most 16 MiB): make it smaller, e.g. fewer or shorter environment entries, labels or images per archive")]
    RecordTooLarge { len: usize, max: usize },
}

struct Submission {
    namespace: String,
    origin: Origin,
    command: Command,
    reply: oneshot::Sender<Result<CommittedRecord, SubmitError>>,
}

pub struct Store {
    log: Arc<EventLog>,
    state: Arc<RwLock<State>>,
    applied: watch::Receiver<Seq>,
    submissions: std::sync::mpsc::SyncSender<Submission>,
    /// Set once when berthd begins to stop: streams that would otherwise wait for ever (events
    /// and logs followers) end, so the server can close and the process exit.
    stopping: watch::Sender<bool>,
    /// What the metrics endpoint reports beyond the log's own counters.
    counters: Arc<DaemonCounters>,
}

/// What `Store::open` hands back beside the store: the committed records, in log order, for
/// the executor.
pub type CommittedReceiver = mpsc::UnboundedReceiver<CommittedRecord>;

/// Fold the whole log into a fresh state. berth-replay folds with the same `State::apply`, but
/// walks one record at a time (replay-tool/src/fold.rs) because it stops at a seq or a moment.
/// Payloads are decoded on spare cores in ordered batches (`replay_parallel`); the fold, and
/// the first error reported, are exactly those of decoding and applying one record at a time
/// (projections/tests/decode.rs checks it).
pub fn replay(log: &EventLog) -> Result<State, StoreError> {
    replay_from(log.reader(Seq(1))?)
}

fn replay_from(reader: berth_log::LogReader) -> Result<State, StoreError> {
    fold_records(reader, State::new(), |_, _| {})
}

/// Folds what `reader` yields into `state`, showing each envelope to `inspect` first.
fn fold_records(
    mut reader: berth_log::LogReader,
    mut state: State,
    mut inspect: impl FnMut(Seq, &Envelope),
) -> Result<State, StoreError> {
    replay_parallel::<StoreError>(&mut reader, replay_decode_threads(), |seq, timestamp, envelope| {
        let envelope = envelope.map_err(|error| StoreError::Decode { seq, reason: error.to_string() })?;
        inspect(seq, envelope);
        state.apply(seq, timestamp, envelope);
        Ok(())
    })?;
    Ok(state)
}

/// Start-up from a checkpoint: folds the records after `state.last_seq` into `state` while
/// checking each one's CRC, seq and chain link, from the hash stored in record
/// `state.last_seq` (the caller has checked it is the checkpoint's) to the log's end, segment
/// links included. `inspect` sees every envelope before it is folded (start-up looks for the
/// record vouching for the checkpoint). The records up to the checkpoint are not read: their
/// chain is verified in the background after berthd serves (`daemon::checkpoint`).
pub fn replay_tail_verified(
    log: &EventLog,
    state: State,
    inspect: impl FnMut(Seq, &Envelope),
) -> Result<State, StoreError> {
    let reader = log.reader(state.last_seq.next())?.check_chain(true);
    fold_records(reader, state, inspect)
}

/// Start-up replay with the whole log verified at the same time: CRCs, seq continuity, segment
/// links and every link of the SHA-256 hash chain from genesis (`EventLog::verify`, split into
/// chunks on its own threads) run beside the decode-and-fold, so a payload edited with its CRC
/// recomputed — which replay alone would fold — is refused. A verify error wins over a replay
/// error: the damage explains whatever replay made of it. Costs little more than replay alone
/// (BENCHMARKS.md, "Start-up with chain verification").
pub fn replay_verified(log: &EventLog) -> Result<State, StoreError> {
    thread::scope(|scope| {
        let verifier = thread::Builder::new().name("berth-verify".into()).spawn_scoped(scope, || {
            lower_this_thread_priority();
            log.verify_with_threads(verify_threads())
        });
        // verify checks every CRC too, and nothing replayed is used unless it passes, so the
        // replay's reader skips them: they sit on replay's critical path (the folding thread).
        let replayed = log
            .reader(Seq(1))
            .map_err(StoreError::from)
            .and_then(|reader| replay_from(reader.skip_crc_checks_verified_elsewhere()));
        let verified = match verifier {
            Ok(verifier) => verifier.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // No thread to spare: verify after replay instead.
            Err(_) => log.verify_with_threads(1),
        };
        verified?;
        replayed
    })
}

/// The verifier runs at the lowest priority (nice 19, this thread only) so it takes the CPU
/// time replay leaves idle rather than time from the fold, which is replay's critical path: at
/// equal priority on 2 cores it added its whole single-core time to start-up (BENCHMARKS.md).
pub(crate) fn lower_this_thread_priority() {
    // SAFETY: gettid and setpriority take and return plain integers and touch no memory of
    // ours; on Linux PRIO_PROCESS with a thread id changes that thread alone.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the verify thread's priority");
    }
}

/// Verify threads at start-up: the cores replay leaves (at least one).
fn verify_threads() -> usize {
    let n_cores = thread::available_parallelism().map_or(1, |n_cores| n_cores.get());
    n_cores.saturating_sub(1 + replay_decode_threads()).max(1)
}

/// Decode threads for start-up replay: one per core beyond the folding thread (none on a single
/// core), so replay never has more runnable threads than cores. On 2 shared cores one decode
/// thread was the steadier choice; two were sometimes faster, sometimes much slower
/// (BENCHMARKS.md, "Replay (decoded events)").
fn replay_decode_threads() -> usize {
    thread::available_parallelism().map_or(1, |n_cores| n_cores.get()).saturating_sub(1).min(4)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("record {seq} cannot be decoded ({reason}): inspect it with `berth-replay events --from {seq}`")]
    Decode { seq: Seq, reason: String },
}

impl Store {
    /// Replays the log into the projections (verifying its hash chain meanwhile) and starts the
    /// command thread. Records over `max_record_bytes` are refused with
    /// `SubmitError::RecordTooLarge` before anything is folded in.
    pub fn open(log: EventLog, max_record_bytes: usize) -> Result<(Arc<Store>, CommittedReceiver), StoreError> {
        let state = replay_verified(&log)?;
        Ok(Store::open_with_state(log, state, max_record_bytes))
    }

    /// Starts the command thread over `state`, which must be the fold of every record in `log`
    /// (from `replay_verified`, or a checkpoint plus `replay_tail_verified`).
    pub fn open_with_state(log: EventLog, state: State, max_record_bytes: usize) -> (Arc<Store>, CommittedReceiver) {
        debug_assert_eq!(state.last_seq, log.last_seq());
        let log = Arc::new(log);
        let (applied_sender, applied) = watch::channel(state.last_seq);
        let state = Arc::new(RwLock::new(state));
        let (submissions, submission_receiver) = std::sync::mpsc::sync_channel(4096);
        let (committed_sender, committed_receiver) = mpsc::unbounded_channel();
        let thread_log = Arc::clone(&log);
        let thread_state = Arc::clone(&state);
        let counters = Arc::new(DaemonCounters::default());
        let thread_counters = Arc::clone(&counters);
        thread::Builder::new()
            .name("berth-commands".into())
            .spawn(move || {
                command_loop(
                    thread_log,
                    thread_state,
                    submission_receiver,
                    applied_sender,
                    committed_sender,
                    max_record_bytes,
                    &thread_counters,
                )
            })
            .expect("spawn the command thread");
        let (stopping, _) = watch::channel(false);
        (Arc::new(Store { log, state, applied, submissions, stopping, counters }), committed_receiver)
    }

    pub fn log(&self) -> &Arc<EventLog> {
        &self.log
    }

    /// Command outcomes, event subscribers and start-up timing, for the metrics endpoint.
    pub fn counters(&self) -> &Arc<DaemonCounters> {
        &self.counters
    }

    /// A read view of the projections (durable state only).
    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The seq of the last record folded into the projections.
    pub fn applied_seq(&self) -> Seq {
        *self.applied.borrow()
    }

    /// A receiver that changes whenever new records are applied.
    pub fn watch_applied(&self) -> watch::Receiver<Seq> {
        self.applied.clone()
    }

    /// Tells every stream waiting on this store that berthd is stopping.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Completes once `begin_shutdown` was called (at once if it already was).
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            // The sender lives as long as the store, which outlives every stream holding it.
            let _ = stopping.wait_for(|stopping| *stopping).await;
        }
    }

    /// Decide and durably record a command; answers once its record is durable.
    pub async fn submit(
        &self,
        namespace: &str,
        origin: Origin,
        command: Command,
    ) -> Result<CommittedRecord, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let submission = Submission { namespace: namespace.to_string(), origin, command, reply };
        let sender = self.submissions.clone();
        // The queue is bounded; a full queue blocks, so send from a blocking thread.
        tokio::task::spawn_blocking(move || sender.send(submission).map_err(drop))
            .await
            .map_err(|_| SubmitError::Stopping)?
            .map_err(|_| SubmitError::Stopping)?;
        answer.await.map_err(|_| SubmitError::Stopping)?
    }

    /// The record in `namespace` that answers the intent recorded at `intent_seq`, looking no
    /// further than `up_to`: its seq and envelope. Outcomes are answered in a record of their own
    /// after the intent, so the search starts right after it.
    pub fn find_answer(&self, namespace: &str, intent_seq: Seq, up_to: Seq) -> Option<(Seq, Envelope)> {
        let mut reader = self.log.reader(intent_seq.next()).ok()?;
        while let Some(Ok(record)) = reader.next() {
            if record.seq > up_to {
                break;
            }
            let Ok(envelope) = Envelope::decode(record.payload) else { continue };
            if envelope.namespace == namespace && envelope.answers() == Some(intent_seq) {
                return Some((record.seq, envelope));
            }
        }
        None
    }

    /// Waits until `predicate` holds on the state, re-checking after every applied record.
    pub async fn wait_until<T>(&self, mut predicate: impl FnMut(&State) -> Option<T>) -> T {
        let mut applied = self.watch_applied();
        loop {
            if let Some(value) = predicate(&self.state()) {
                return value;
            }
            if applied.changed().await.is_err() {
                // The command thread is gone (fatal log error); the process is exiting.
                std::future::pending::<()>().await;
            }
        }
    }
}

fn command_loop(
    log: Arc<EventLog>,
    state: Arc<RwLock<State>>,
    submissions: std::sync::mpsc::Receiver<Submission>,
    applied: watch::Sender<Seq>,
    committed: mpsc::UnboundedSender<CommittedRecord>,
    max_record_bytes: usize,
    counters: &DaemonCounters,
) {
    // Set while the log has refused for want of room: each batch first asks the log to prepare
    // its next segment, and is refused whole (nothing decided or folded) while it cannot.
    let mut out_of_room = false;
    while let Ok(first) = submissions.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match submissions.try_recv() {
                Ok(submission) => batch.push(submission),
                Err(_) => break,
            }
        }
        if out_of_room {
            match log.prepare_next_segment() {
                Ok(()) => {
                    tracing::info!("the log has room again; accepting writes");
                    out_of_room = false;
                }
                Err(error) => {
                    refuse_for_want_of_room(batch, &error, counters);
                    continue;
                }
            }
        }
        let mut guard = state.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Declared after the write guard, so it drops first: a panic below ends the process
        // while the lock still keeps readers from state that may not be durable.
        let _exit_on_panic = ExitOnPanic;
        if batch.iter().any(|submission| matches!(submission.origin, Origin::Client { .. })) {
            crate::sys::failpoint_panic("client-command");
        }
        let timestamp = Timestamp::now();
        let mut next_seq = guard.last_seq.next();
        let mut accepted: Vec<(oneshot::Sender<Result<CommittedRecord, SubmitError>>, CommittedRecord)> = Vec::new();
        // Each accepted record's command, counted once the batch is durable (or refused whole).
        let mut accepted_names: Vec<&'static str> = Vec::new();
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        for submission in batch {
            let command_name = submission.command.name();
            let events: Vec<Event> = match submission.command.decide(&guard, &submission.namespace) {
                Ok(events) => events,
                Err(error) => {
                    counters.count_command(command_name, CommandOutcome::Refused(error.kind()));
                    let _ = submission.reply.send(Err(SubmitError::Rejected(error)));
                    continue;
                }
            };
            let envelope = Envelope::new(submission.namespace, submission.origin, events);
            let payload = envelope.encode();
            // Checked before the fold: a refused command must leave no trace in the state.
            if payload.len() > max_record_bytes {
                let refusal = SubmitError::RecordTooLarge { len: payload.len(), max: max_record_bytes };
                counters.count_command(command_name, CommandOutcome::Refused("record_too_large"));
                let _ = submission.reply.send(Err(refusal));
                continue;
            }
            payloads.push(payload);
            accepted_names.push(command_name);
            guard.apply(next_seq, timestamp, &envelope);
            accepted
                .push((submission.reply, CommittedRecord { seq: next_seq, timestamp, envelope: Arc::new(envelope) }));
            next_seq = next_seq.next();
        }
        if accepted.is_empty() {
            continue;
        }
        let payload_refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        // Preparing the next segment is the one step that may fail and be retried: nothing of
        // the batch has been written yet. A failed write or fdatasync of records stays fatal.
        if let Err(error) = log.reserve_room(&payload_refs) {
            // The projections already hold the batch; fold them again from what the log holds.
            match replay(&log) {
                Ok(replayed) => *guard = replayed,
                Err(replay_error) => {
                    tracing::error!(%replay_error, "replaying the log after a refused append failed; berthd stops");
                    eprintln!("berthd: fatal: replaying the log after a refused append failed: {replay_error}");
                    std::process::exit(70);
                }
            }
            drop(guard);
            tracing::warn!(%error, "the log has no room for the next segment; refusing writes until there is, reads go on");
            out_of_room = true;
            let message = error.to_string();
            for command_name in accepted_names {
                counters.count_command(command_name, CommandOutcome::Refused("no_space"));
            }
            for (reply, _) in accepted {
                let _ = reply.send(Err(SubmitError::NoSpace(message.clone())));
            }
            continue;
        }
        match log.append_batch_at(&payload_refs, timestamp) {
            Ok(first_seq) => debug_assert_eq!(first_seq, accepted[0].1.seq),
            Err(error) => {
                // The projections now hold records that may not be durable: nothing may read
                // them. Stop here; the next start replays what the log really holds.
                tracing::error!(%error, "appending to the log failed; berthd stops so that recovery replays the log");
                eprintln!(
                    "berthd: fatal: appending to the log failed: {error}; restart berthd to recover from the log"
                );
                std::process::exit(70);
            }
        }
        drop(guard);
        for command_name in accepted_names {
            counters.count_command(command_name, CommandOutcome::Accepted);
        }
        let last = accepted.last().map(|(_, record)| record.seq).unwrap_or_default();
        applied.send_replace(last);
        for (reply, record) in accepted {
            let _ = committed.send(record.clone());
            let _ = reply.send(Ok(record));
        }
    }
}

/// Answers every submission of `batch` with `NoSpace`; none was decided or folded.
fn refuse_for_want_of_room(batch: Vec<Submission>, error: &LogError, counters: &DaemonCounters) {
    for submission in batch {
        counters.count_command(submission.command.name(), CommandOutcome::Refused("no_space"));
        let _ = submission.reply.send(Err(SubmitError::NoSpace(error.to_string())));
    }
}

/// Ends berthd when the command thread panics, as a failed append does: the projections may hold
/// a decided command that is not in the log, every later submission would be refused, and
/// waiters would wait for ever. The next start replays what the log really holds.
struct ExitOnPanic;

impl Drop for ExitOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            tracing::error!("the command thread panicked; berthd stops so that recovery replays the log");
            eprintln!("berthd: fatal: the command thread panicked; restart berthd to recover from the log");
            std::process::exit(70);
        }
    }
}

/// How long RPCs that wait for an outcome wait before telling the caller to look again.
pub const OUTCOME_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use berth_log::{Durability, LogOptions};
    use berth_projections::ContainerRecord;

    use super::*;

    fn open_log(dir: &std::path::Path) -> EventLog {
        EventLog::open(
            dir,
            LogOptions { durability: Durability::NoSync, segment_size: 1 << 20, ..LogOptions::default() },
        )
        .unwrap()
        .0
    }

    /// Envelope::decode + apply, one record at a time: what replay did before the pipeline.
    fn replay_one_by_one(log: &EventLog) -> State {
        let mut state = State::new();
        let mut reader = log.reader(Seq(1)).unwrap();
        while let Some(record) = reader.next() {
            let record = record.unwrap();
            state.apply(record.seq, record.timestamp, &Envelope::decode(record.payload).unwrap());
        }
        state
    }

    #[test]
    fn replay_folds_what_one_by_one_decoding_folds_and_names_the_bad_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        let client =
            || Origin::Client { uid: 0, gid: 0, pid: 1, method: "Containers/Create".into(), request_id: "r".into() };
        let mut payloads = vec![Envelope::new(
            "default",
            client(),
            vec![Event::NamespaceCreated { name: "default".into(), labels: Default::default() }],
        )
        .encode()];
        for index in 0..10_000 {
            let id = format!("{:012x}", index % 97);
            let event = if index % 2 == 0 {
                Event::ContainerCreated { container: ContainerRecord { id, ..ContainerRecord::default() } }
            } else {
                Event::ContainerDeleted { id }
            };
            payloads.push(Envelope::new("default", client(), vec![event]).encode());
        }
        let payload_refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        log.append_batch(&payload_refs).unwrap();
        let state = replay(&log).unwrap();
        assert_eq!(state, replay_one_by_one(&log));
        assert_eq!(state.last_seq, Seq(payloads.len() as u64));

        log.append(b"\xc1 not an envelope").unwrap();
        log.append(&payloads[1]).unwrap();
        match replay(&log) {
            Err(StoreError::Decode { seq, .. }) => assert_eq!(seq, Seq(payloads.len() as u64 + 1)),
            other => panic!("expected a decode error at the bad record, got {other:?}"),
        }
    }

    /// Start-up replay skips the CRC (verify beside it checks it): a byte flipped in an early
    /// payload must still stop start-up, as a corruption, whatever replay made of the record.
    #[test]
    fn replay_verified_refuses_a_flipped_byte_that_the_replay_reader_does_not_check() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open_log(dir.path());
            for index in 0..12_000 {
                let event = Event::NamespaceCreated { name: format!("ns-{index:05}"), labels: Default::default() };
                let origin = Origin::Daemon { reason: "test".into(), answers: None };
                log.append(&Envelope::new("", origin, vec![event]).encode()).unwrap();
            }
        }
        // In the first of several segments: open scans only the last one.
        assert!(dir.path().join("00000000000000000002.seg").exists());
        let segment = dir.path().join("00000000000000000001.seg");
        let mut bytes = std::fs::read(&segment).unwrap();
        let at = bytes.windows(8).position(|window| window == b"ns-00010").unwrap();
        bytes[at + 7] = b'9'; // ns-00019: still a valid envelope, so replay folds it
        std::fs::write(&segment, &bytes).unwrap();

        let log = open_log(dir.path());
        assert!(replay(&log).is_err(), "the plain replay checks the CRC");
        let state = replay_from(log.reader(Seq(1)).unwrap().skip_crc_checks_verified_elsewhere()).unwrap();
        assert_eq!(state.last_seq, Seq(12_000), "without the CRC the edited record folds");
        match replay_verified(&log) {
            Err(StoreError::Log(LogError::Corruption { reason, .. })) => assert!(reason.contains("crc"), "{reason}"),
            other => panic!("expected the corruption verify found, got {other:?}"),
        }
    }
}
