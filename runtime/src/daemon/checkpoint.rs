//! Projection checkpoints on disk: `<root>/checkpoints/<20-digit seq>.ckpt` (directory 0700,
//! files 0600), written atomically in the background and at a clean stop, the newest
//! [`KEEP_CHECKPOINTS`] kept; and start-up from the newest one the log vouches for, replaying
//! only the tail. The encoding is `berth_projections::checkpoint`; the trust argument is in
//! docs/log-format.md, "Checkpoints".
//!
//! Other parts of berth rely on the directory and the file names: a checkpoint file named for
//! seq S means every record up to S is folded into it.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_commands::{Command, RecordDaemonEvent};
use berth_log::{EventLog, Seq};
use berth_projections::checkpoint::{
    checkpoint_file_name, decode_checkpoint, digest_hex, encode_checkpoint, parse_checkpoint_file_name, Checkpoint,
};
use berth_projections::{Event, Origin, State};
use tokio::sync::watch;

use crate::daemon::store::{replay_tail_verified, replay_verified, Store, StoreError};
use crate::sys::fs::{create_private_dir_all, sync_dir, write_file_durably, PRIVATE_FILE_MODE};

/// Checkpoint files kept: the newest and two older ones, so one that turns out unusable (a
/// crash before its vouching record, a damaged disk block) still leaves a recent one.
pub const KEEP_CHECKPOINTS: usize = 3;

/// When berthd writes checkpoints (`[checkpoint]` in the config file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Off: no checkpoint is written or read; start-up replays the whole log.
    pub enabled: bool,
    /// A checkpoint once this many records were appended since the last one.
    pub every_records: u64,
    /// Or once this much time passed with at least one record appended.
    pub every: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy { enabled: true, every_records: 100_000, every: Duration::from_secs(300) }
    }
}

/// The seq of the newest checkpoint the log vouches for, shared between the code that learns it
/// (start-up's [`recover_state`], then [`run_checkpointer`] once each vouching record is
/// durable) and the archiver, which archives and drops only what it covers. A file in the
/// checkpoint directory is not enough: after a crash between the file and its
/// `CheckpointWritten` record, start-up would pass it over and need the records it covers.
#[derive(Clone, Debug, Default)]
pub struct VouchedCheckpoint(Arc<AtomicU64>);

impl VouchedCheckpoint {
    /// Starts at `seq` (`None`: no vouched checkpoint yet).
    pub fn new(seq: Option<Seq>) -> VouchedCheckpoint {
        VouchedCheckpoint(Arc::new(AtomicU64::new(seq.map_or(0, Seq::get))))
    }

    /// The newest vouched checkpoint's seq, if there is one.
    pub fn get(&self) -> Option<Seq> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            seq => Some(Seq(seq)),
        }
    }

    /// Records that the checkpoint of `seq` is vouched for (its record is durable). Never
    /// moves back.
    pub fn set(&self, seq: Seq) {
        self.0.fetch_max(seq.get(), Ordering::AcqRel);
    }
}

/// How start-up got its state.
#[derive(Debug)]
pub struct Recovered {
    pub state: State,
    /// The checkpoint used, if any: the records up to it were not read at start-up and are
    /// verified by [`verify_prefix_in_background`].
    pub from_checkpoint: Option<Seq>,
}

/// Checkpoint files in `dir`, newest first. Other names (temporary files) are skipped.
pub fn list_checkpoints(dir: &Path) -> Vec<(Seq, PathBuf)> {
    let mut found: Vec<(Seq, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let seq = parse_checkpoint_file_name(entry.file_name().to_str()?)?;
                    Some((seq, entry.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
    found
}

/// Reads a checkpoint file berthd can trust as much as its root: a regular file (not a
/// symlink) owned by berthd's user and writable by no one else.
fn read_trusted(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|error| format!("cannot open it: {error}"))?;
    let metadata = file.metadata().map_err(|error| format!("cannot stat it: {error}"))?;
    // SAFETY: geteuid takes nothing and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !metadata.is_file() || metadata.uid() != euid || metadata.mode() & 0o022 != 0 {
        return Err(format!(
            "it is not a regular file owned by uid {euid} and writable by it alone (uid {}, mode {:o})",
            metadata.uid(),
            metadata.mode() & 0o7777
        ));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    std::io::Read::read_to_end(&mut &file, &mut bytes).map_err(|error| format!("cannot read it: {error}"))?;
    Ok(bytes)
}

/// Start-up: the newest checkpoint in `dir` that decodes, matches the log's chain at its seq and
/// is vouched for by a `CheckpointWritten` record after it, plus the tail; each one passed over
/// is logged with the reason. Without a usable one, the whole log is replayed and verified. A
/// damaged tail is an error whatever checkpoint is used (a full replay would meet it too).
pub fn recover_state(log: &EventLog, dir: &Path) -> Result<Recovered, StoreError> {
    for (seq, path) in list_checkpoints(dir) {
        let ignored = |reason: &str| {
            tracing::warn!(checkpoint = %path.display(), reason, "checkpoint ignored; trying an older one or a full replay");
        };
        let checkpoint =
            match read_trusted(&path).and_then(|bytes| decode_checkpoint(&bytes).map_err(|e| e.to_string())) {
                Ok(checkpoint) if checkpoint.seq == seq => checkpoint,
                Ok(checkpoint) => {
                    ignored(&format!("its name says seq {seq} but it covers seq {}", checkpoint.seq));
                    continue;
                }
                Err(reason) => {
                    ignored(&reason);
                    continue;
                }
            };
        if checkpoint.seq > log.last_seq() {
            ignored(&format!("it covers seq {} but the log ends at seq {}", checkpoint.seq, log.last_seq()));
            continue;
        }
        match log.chain_hash_at(checkpoint.seq) {
            Ok(hash) if hash == checkpoint.chain_hash => {}
            Ok(_) => {
                ignored(&format!(
                    "its chain hash is not the one record {} of the log holds (a checkpoint of another log, or edited)",
                    checkpoint.seq
                ));
                continue;
            }
            Err(error) => {
                ignored(&format!("record {} of the log cannot be read: {error}", checkpoint.seq));
                continue;
            }
        }
        let Checkpoint { seq: covers, digest, state, .. } = checkpoint;
        let digest = digest_hex(&digest);
        let mut vouched = false;
        let mut contradicted = None;
        let state = replay_tail_verified(log, state, |record_seq, envelope| {
            for event in &envelope.events {
                if let Event::CheckpointWritten { covers: named, digest: named_digest } = event {
                    if *named == covers && *named_digest == digest {
                        vouched = true;
                    } else if *named == covers {
                        contradicted = Some(record_seq);
                    }
                }
            }
        })?;
        if vouched {
            tracing::info!(checkpoint = %path.display(), covers = covers.get(), tail = log.last_seq().get() - covers.get(), "started from a checkpoint; the log before it is verified in the background");
            return Ok(Recovered { state, from_checkpoint: Some(covers) });
        }
        match contradicted {
            Some(record_seq) => ignored(&format!(
                "record {record_seq} of the log names another digest for the checkpoint of seq {covers} (the file was edited)"
            )),
            None => ignored("no record of the log vouches for it (berthd stopped before recording it, or the file was made elsewhere)"),
        }
    }
    Ok(Recovered { state: replay_verified(log)?, from_checkpoint: None })
}

/// After serving from a checkpoint: verifies every CRC and chain link from genesis on a
/// low-priority thread. Damage there stops berthd (exit 70) after removing the checkpoints, so
/// the next start replays and verifies the whole log before it serves and refuses it — what a
/// start without checkpoints does. `describe` turns the damage into the message printed, which
/// names the remedies.
pub fn verify_prefix_in_background(
    log: Arc<EventLog>,
    dir: PathBuf,
    describe: impl FnOnce(berth_log::LogError) -> String + Send + 'static,
) {
    let spawned = std::thread::Builder::new().name("berth-verify-prefix".into()).spawn(move || {
        crate::daemon::store::lower_this_thread_priority();
        let started = Instant::now();
        match log.verify_with_threads(1) {
            Ok(report) => tracing::info!(
                n_records = report.n_records,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "the whole log verified (background check after a start from a checkpoint)"
            ),
            Err(error) => {
                tracing::error!(%error, "the log before the checkpoint berthd started from is damaged or altered; removing the checkpoints and stopping, so the next start verifies the whole log before it serves");
                for (_, path) in list_checkpoints(&dir) {
                    let _ = std::fs::remove_file(path);
                }
                let _ = sync_dir(&dir);
                eprintln!("berthd: fatal: {}", describe(error));
                std::process::exit(70);
            }
        }
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the background verification of the log");
    }
}

/// Writes the checkpoint of `state` (which covers `state.last_seq`, whose stored chain hash is
/// `chain_hash`) as `dir/<seq>.ckpt`: a temporary file, fsync, rename, fsync of the directory.
/// Returns its digest. Older checkpoints beyond [`KEEP_CHECKPOINTS`] are removed after.
pub fn write_checkpoint(dir: &Path, state: &State, chain_hash: &[u8; 32]) -> std::io::Result<[u8; 32]> {
    create_private_dir_all(dir)?;
    let bytes = encode_checkpoint(state, chain_hash);
    let file_name = checkpoint_file_name(state.last_seq);
    if crate::sys::failpoint_armed("checkpoint-write-partway") {
        // A crash mid-write: half the file under its temporary name, never renamed.
        let temporary = dir.join(format!(".{file_name}.tmp"));
        let file = std::fs::OpenOptions::new().write(true).create(true).mode(PRIVATE_FILE_MODE).open(&temporary)?;
        std::io::Write::write_all(&mut &file, &bytes[..bytes.len() / 2])?;
        file.sync_all()?;
        crate::sys::failpoint("checkpoint-write-partway");
    }
    write_file_durably(dir, &file_name, &bytes)?;
    let digest: [u8; 32] = bytes[bytes.len() - 32..].try_into().expect("32 bytes");
    prune(dir);
    Ok(digest)
}

/// Removes checkpoints beyond the newest [`KEEP_CHECKPOINTS`] and temporary files a crash left.
fn prune(dir: &Path) {
    for (_, path) in list_checkpoints(dir).into_iter().skip(KEEP_CHECKPOINTS) {
        if let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), %error, "cannot remove an old checkpoint");
        }
    }
    remove_temporary_files(dir);
    let _ = sync_dir(dir);
}

/// What a write cut off by a crash leaves: `.<name>.ckpt.tmp`. Never read; removed at start-up
/// and after each checkpoint.
pub fn remove_temporary_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') && name.ends_with(".ckpt.tmp") {
            tracing::info!(path = %entry.path().display(), "removing a checkpoint a crash left half-written");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The background checkpointer: takes a checkpoint whenever the policy says so, and a last one
/// when `stop` turns true; finishes after that last one. Each checkpoint whose vouching record
/// is durable is published through `vouched`.
pub async fn run_checkpointer(
    store: Arc<Store>,
    dir: PathBuf,
    policy: CheckpointPolicy,
    vouched: VouchedCheckpoint,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = vouched.get().unwrap_or_default();
    let mut last_time = Instant::now();
    let mut applied = store.watch_applied();
    loop {
        let stopping = tokio::select! {
            changed = applied.changed() => changed.is_err(),
            _ = stop.wait_for(|stop| *stop) => true,
            () = tokio::time::sleep(policy.every.saturating_sub(last_time.elapsed())) => false,
        };
        let due = |last: Seq, last_time: Instant| {
            // One record past the last checkpoint is its own vouching record: nothing new.
            let n_new = store.applied_seq().get().saturating_sub(last.get());
            n_new > 1 && (stopping || n_new >= policy.every_records || last_time.elapsed() >= policy.every)
        };
        if due(last, last_time) {
            match take_checkpoint(&store, &dir).await {
                Ok(covered) => {
                    vouched.set(covered);
                    last = covered;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot write a checkpoint; the next start replays more of the log")
                }
            }
            last_time = Instant::now();
        } else if last_time.elapsed() >= policy.every {
            // Nothing new in a whole period: start the next one, or the timer would fire at once.
            last_time = Instant::now();
        }
        if stopping {
            return;
        }
    }
}

/// One checkpoint: the state cloned under the read lock (the command thread waits only for the
/// clone), encoded and written on a blocking thread, then vouched for by a `CheckpointWritten`
/// record. Returns the seq it covers.
async fn take_checkpoint(store: &Arc<Store>, dir: &Path) -> Result<Seq, String> {
    let (blocking_store, blocking_dir) = (Arc::clone(store), dir.to_path_buf());
    let (covers, digest) = tokio::task::spawn_blocking(move || {
        let state = blocking_store.state().clone();
        // The state holds only durable records, so its last one is readable.
        let chain_hash = blocking_store.log().chain_hash_at(state.last_seq).map_err(|error| error.to_string())?;
        let digest = write_checkpoint(&blocking_dir, &state, &chain_hash)
            .map_err(|error| format!("writing it under {}: {error}", blocking_dir.display()))?;
        Ok::<_, String>((state.last_seq, digest))
    })
    .await
    .map_err(|error| error.to_string())??;
    crate::sys::failpoint("checkpoint-unvouched");
    let event = Event::CheckpointWritten { covers, digest: digest_hex(&digest) };
    let origin = Origin::Daemon { reason: "projection checkpoint".into(), answers: None };
    store
        .submit("", origin, Command::RecordDaemonEvent(RecordDaemonEvent { event }))
        .await
        .map_err(|error| format!("recording it: {error}"))?;
    tracing::debug!(covers = covers.get(), "checkpoint written");
    Ok(covers)
}
