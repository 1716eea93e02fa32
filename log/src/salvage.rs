//! `salvage`: the operator's remedy for a damaged log. Finds the last record whose CRC, seq and
//! hash chain verify from genesis, writes a new log holding exactly the records up to it, and
//! moves the damaged directory aside whole (nothing is deleted or edited in it).
//!
//! Why copy instead of cutting in place: the damaged log stays byte for byte as it was found, for
//! `berth-replay --log <dir>.damaged-…` and for whoever investigates; and the new log is built by
//! the ordinary writer, so it is valid by construction (same records, so the same chain hashes).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::anchor::{read_anchor, write_anchor, Anchor};
use crate::durable::sync_dir;
use crate::reader::chain_hash_at;
use crate::recovery::{recover, Access};
use crate::view::SharedView;
use crate::writer::lock_directory;
use crate::{Durability, EventLog, LogError, LogOptions, LogReader, RecoveryMode, Seq};

/// What `salvage` found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SalvageReport {
    /// Records 1..=kept_through verify and are in the log at the original path now.
    pub kept_through: Seq,
    /// Chain hash of `kept_through`: the new head.
    pub head_hash: [u8; 32],
    /// The first damage found, described; `None` when every record verified.
    pub damage: Option<String>,
    /// Where the damaged log was moved; `None` when nothing had to be cut.
    pub moved_aside_to: Option<PathBuf>,
    /// The anchor as it was before it was reset to the new head (`None`: no anchor file).
    pub previous_anchor: Option<Anchor>,
}

fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_nanos()).unwrap_or(0)
}

/// Salvages the log in `dir` (which no daemon may hold: its lock is taken). `options` gives the
/// anchor to reset (and durability for the copy); the segment size of the new log is that of
/// the damaged one, so every record fits again.
pub fn salvage(dir: &Path, options: &LogOptions) -> Result<SalvageReport, LogError> {
    if !dir.is_dir() {
        return Err(LogError::io(
            "opening the log directory",
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        ));
    }
    let lock_file = lock_directory(dir)?;
    let previous_anchor = match &options.anchor {
        Some(anchor_path) => read_anchor(anchor_path).unwrap_or(None),
        None => None,
    };
    // Read-only salvage view: CRC, seq and segment links checked in every segment, files
    // untouched; then the chain, which recovery does not check.
    let recovered = recover(dir, RecoveryMode::Salvage, Access::ReadOnly)?;
    let mut damage = recovered
        .report
        .salvaged
        .first()
        .map(|cut| format!("{} at offset {} in {}", cut.reason, cut.offset, cut.segment.display()));
    let segment_size = recovered
        .segments
        .iter()
        .map(|segment| segment.header.segment_size)
        .max()
        .map_or(options.segment_size, |largest| largest.max(options.segment_size));
    let view = Arc::new(recovered.view(dir));
    let mut kept_through = Seq(0);
    let mut reader = LogReader::new(view.clone(), Seq(1))?.check_chain(true);
    while let Some(result) = reader.next() {
        match result {
            Ok(record) => kept_through = record.seq,
            Err(error) => {
                damage = Some(error.damage_description());
                break;
            }
        }
    }
    let head_hash = chain_hash_at(&view, kept_through)?;

    let moved_aside_to = if damage.is_some() {
        let parent = dir.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = dir.file_name().map_or("log".into(), |name| name.to_string_lossy().into_owned());
        let stamp = unix_nanos();
        let new_dir = parent.join(format!("{name}.salvage-{stamp}"));
        let aside = parent.join(format!("{name}.damaged-{stamp}"));
        copy_records(&view, kept_through, &new_dir, segment_size)?;
        std::fs::rename(dir, &aside)
            .map_err(|source| LogError::io("moving the damaged log aside to", &aside, source))?;
        std::fs::rename(&new_dir, dir)
            .map_err(|source| LogError::io("moving the salvaged log into place at", dir, source))?;
        sync_dir(parent)?;
        Some(aside)
    } else {
        None
    };
    if let Some(anchor_path) = &options.anchor {
        write_anchor(anchor_path, Anchor { seq: kept_through, hash: head_hash })?;
    }
    drop(lock_file);
    Ok(SalvageReport { kept_through, head_hash, damage, moved_aside_to, previous_anchor })
}

/// Appends records 1..=`last` of `view` to a new log in `new_dir` with their own timestamps,
/// then syncs every file once (cheaper than one sync per record, and as durable).
fn copy_records(view: &Arc<SharedView>, last: Seq, new_dir: &Path, segment_size: u64) -> Result<(), LogError> {
    let options = LogOptions { segment_size, durability: Durability::NoSync, ..LogOptions::default() };
    {
        let (new_log, _) = EventLog::open(new_dir, options)?;
        let mut reader = LogReader::new(view.clone(), Seq(1))?;
        while reader.position() <= last {
            let Some(result) = reader.next() else { break };
            let record = result?;
            new_log.append_batch_at(&[record.payload], record.timestamp)?;
        }
    }
    let entries = std::fs::read_dir(new_dir).map_err(|source| LogError::io("listing", new_dir, source))?;
    for entry in entries {
        let path = entry.map_err(|source| LogError::io("listing", new_dir, source))?.path();
        std::fs::File::open(&path)
            .and_then(|file| file.sync_all())
            .map_err(|source| LogError::io("syncing the salvaged log's file", &path, source))?;
    }
    sync_dir(new_dir)
}
