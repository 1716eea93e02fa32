//! berthd's log archiver: moves finished log segments that the newest projection checkpoint
//! covers into the archive directory (`[log] archive_dir`) and applies the retention policy,
//! periodically while berthd runs, or once with `berthd --archive-now` while it is stopped.
//! The bound is the newest checkpoint the log vouches for (`checkpoint::VouchedCheckpoint`),
//! never a checkpoint file alone: one written just before a crash, without its vouching record,
//! would not be used at the next start, which then needs the records it covers. No vouched
//! checkpoint, nothing archived.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_log::{EventLog, LogError, RetentionPolicy, Seq, Timestamp};

use crate::daemon::checkpoint::VouchedCheckpoint;

/// How and where berthd archives (`[log]` keys `archive_dir`, `archive_interval_secs`,
/// `retain_max_age_secs`, `retain_max_bytes`).
#[derive(Clone, Debug)]
pub struct ArchiveSettings {
    pub dir: PathBuf,
    /// How often the running daemon looks for something to archive; `None`: never.
    pub interval: Option<Duration>,
    pub retention: RetentionPolicy,
}

/// Default pause between two archiver passes of a running berthd.
pub const DEFAULT_ARCHIVE_INTERVAL: Duration = Duration::from_secs(300);

/// What one archiver pass did, in a line for the operator. `checkpoint` is the newest vouched
/// checkpoint's seq; `explicit_bound` (`berthd --archive-now --through`) may archive further,
/// since archived segments stay readable, but retention never drops past `checkpoint`.
pub fn archive_pass(
    log: &EventLog,
    settings: &ArchiveSettings,
    checkpoint: Option<Seq>,
    explicit_bound: Option<Seq>,
) -> Result<String, String> {
    let Some(bound) = explicit_bound.or(checkpoint) else {
        return Ok("nothing archived: no checkpoint that the log vouches for bounds what may go".to_string());
    };
    let archived = log.archive(bound, &settings.dir).map_err(|error| describe(&settings.dir, error))?;
    let mut summary = match (archived.archived.first(), archived.archived.last()) {
        (Some(first), Some(last)) => format!(
            "archived {} segment(s), seqs {}..={}, to {} ({} bytes freed in the log directory)",
            archived.archived.len(),
            first.first_seq,
            last.last_seq,
            settings.dir.display(),
            archived.live_bytes_freed
        ),
        _ => format!("nothing to archive: no finished segment ends at or before seq {bound}"),
    };
    // Retention only ever drops what a checkpoint covers: berthd must still be able to start.
    if let Some(checkpoint) = checkpoint {
        let retention = log
            .apply_retention(&settings.retention, Timestamp::now(), checkpoint)
            .map_err(|error| describe(&settings.dir, error))?;
        if let Some(cut) = retention.cut {
            summary.push_str(&format!(
                "; retention dropped {} archived segment(s) ({} bytes): the history now starts after seq {}",
                retention.dropped.len(),
                retention.bytes_dropped,
                cut.seq
            ));
        }
    }
    Ok(summary)
}

fn describe(archive_dir: &Path, error: LogError) -> String {
    format!("archiving to {} failed, nothing recorded was lost: {error}", archive_dir.display())
}

/// Runs `archive_pass` every `interval` on a thread of its own until the log is dropped
/// (the thread holds only a weak reference), bounded by the checkpointer's last vouched seq.
pub fn spawn_periodic(log: &Arc<EventLog>, settings: ArchiveSettings, vouched: VouchedCheckpoint) {
    let Some(interval) = settings.interval else { return };
    let log = Arc::downgrade(log);
    let spawned = std::thread::Builder::new().name("berth-archiver".to_string()).spawn(move || loop {
        std::thread::sleep(interval);
        let Some(log) = log.upgrade() else { return };
        match archive_pass(&log, &settings, vouched.get(), None) {
            Ok(summary) if summary.starts_with("nothing") => tracing::debug!(%summary, "log archiver"),
            Ok(summary) => tracing::info!(%summary, "log archiver"),
            Err(error) => tracing::warn!(%error, "log archiver"),
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the log archiver; the log is not archived while berthd runs");
    }
}
