//! berthd's log archiver: moves finished log segments that the newest projection checkpoint
//! covers into the archive directory (`[log] archive_dir`) and applies the retention policy,
//! periodically while berthd runs, or once with `berthd --archive-now` while it is stopped.
//! The bound comes from the checkpoint file names (`<root>/checkpoints/<20-digit seq>.ckpt`);
//! no checkpoint, nothing archived.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_log::{EventLog, LogError, RetentionPolicy, Seq, Timestamp};

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

/// The newest checkpoint's seq, from the file names in `checkpoints_dir` (`None` when there is
/// no such directory or no checkpoint in it). Names that are not 20 digits and `.ckpt` are
/// skipped; a `.ckpt.tmp` being written is not a checkpoint yet.
pub fn newest_checkpoint_seq(checkpoints_dir: &Path) -> Result<Option<Seq>, String> {
    let entries = match std::fs::read_dir(checkpoints_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot list the checkpoints in {}: {error}", checkpoints_dir.display())),
    };
    let mut newest: Option<Seq> = None;
    for entry in entries {
        let entry = entry.map_err(|error| format!("cannot list {}: {error}", checkpoints_dir.display()))?;
        let name = entry.file_name();
        let Some(digits) = name.to_str().and_then(|name| name.strip_suffix(".ckpt")) else { continue };
        if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            continue;
        }
        let Ok(seq) = digits.parse::<u64>() else { continue };
        newest = newest.max(Some(Seq(seq)));
    }
    Ok(newest)
}

/// What one archiver pass did, in a line for the operator.
pub fn archive_pass(
    log: &EventLog,
    settings: &ArchiveSettings,
    checkpoints_dir: &Path,
    explicit_bound: Option<Seq>,
) -> Result<String, String> {
    let checkpoint = newest_checkpoint_seq(checkpoints_dir)?;
    let Some(bound) = explicit_bound.or(checkpoint) else {
        return Ok(format!("nothing archived: no checkpoint in {} bounds what may go", checkpoints_dir.display()));
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
/// (the thread holds only a weak reference).
pub fn spawn_periodic(log: &Arc<EventLog>, settings: ArchiveSettings, checkpoints_dir: PathBuf) {
    let Some(interval) = settings.interval else { return };
    let log = Arc::downgrade(log);
    let spawned = std::thread::Builder::new().name("berth-archiver".to_string()).spawn(move || loop {
        std::thread::sleep(interval);
        let Some(log) = log.upgrade() else { return };
        match archive_pass(&log, &settings, &checkpoints_dir, None) {
            Ok(summary) if summary.starts_with("nothing") => tracing::debug!(%summary, "log archiver"),
            Ok(summary) => tracing::info!(%summary, "log archiver"),
            Err(error) => tracing::warn!(%error, "log archiver"),
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the log archiver; the log is not archived while berthd runs");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_checkpoint_is_the_largest_well_formed_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_checkpoint_seq(&dir.path().join("none")).unwrap(), None);
        assert_eq!(newest_checkpoint_seq(dir.path()).unwrap(), None);
        for name in [
            "00000000000000000042.ckpt",
            "00000000000000000120.ckpt",
            "00000000000000000999.ckpt.tmp",
            "999.ckpt",
            "0000000000000000000x.ckpt",
            "00000000000000005000.other",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(newest_checkpoint_seq(dir.path()).unwrap(), Some(Seq(120)));
    }
}
