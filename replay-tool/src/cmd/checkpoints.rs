//! `berth-replay verify --checkpoints DIR`: proves each projection checkpoint equals a full
//! replay of the log up to its seq, and says which ones berthd would start from. One pass over
//! the log folds the state and stops at each checkpoint's seq to compare; the record vouching
//! for each (`CheckpointWritten`) is looked for on the way. Read-only like everything here.

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_log::{open_read_only, Seq};
use berth_projections::checkpoint::{decode_checkpoint, digest_hex, parse_checkpoint_file_name, Checkpoint};
use berth_projections::{Event, State};

use crate::error::ReplayError;
use crate::fold::{walk_envelopes, Walk};

/// The checkpoint directory for `--checkpoints PATH`: `PATH/checkpoints` when PATH is berthd's
/// root, else PATH itself.
pub fn resolve_checkpoints_dir(path: &Path) -> PathBuf {
    let under_root = path.join("checkpoints");
    if under_root.is_dir() {
        under_root
    } else {
        path.to_path_buf()
    }
}

/// One checkpoint file and what was found about it.
struct Found {
    path: PathBuf,
    seq: Seq,
    /// `Err`: why berthd would ignore it without looking at the log.
    decoded: Result<Checkpoint, String>,
    vouched_by: Option<Seq>,
    contradicted_by: Option<Seq>,
}

/// Checks every checkpoint in `checkpoints_dir` against the (already verified) log in
/// `log_dir`. Returns false when one of them holds a state the log does not replay to, or a
/// chain hash or digest the log contradicts: evidence of editing, not of a crash.
pub fn run_verify_checkpoints(
    log_dir: &Path,
    checkpoints_dir: &Path,
    out: &mut dyn Write,
) -> Result<bool, ReplayError> {
    let entries = std::fs::read_dir(checkpoints_dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::PermissionDenied => ReplayError::PermissionDenied { path: checkpoints_dir.to_path_buf() },
        _ => ReplayError::NoCheckpoints { dir: checkpoints_dir.to_path_buf(), source },
    })?;
    let mut found: Vec<Found> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let seq = parse_checkpoint_file_name(entry.file_name().to_str()?)?;
            let decoded = std::fs::read(entry.path())
                .map_err(|error| format!("cannot read it: {error}"))
                .and_then(|bytes| decode_checkpoint(&bytes).map_err(|error| error.to_string()));
            Some(Found { path: entry.path(), seq, decoded, vouched_by: None, contradicted_by: None })
        })
        .collect();
    found.sort_by_key(|checkpoint| checkpoint.seq);
    writeln!(out, "checkpoints: {} ({} files)", checkpoints_dir.display(), found.len())?;
    if found.is_empty() {
        return Ok(true);
    }
    let (log, _) = open_read_only(log_dir).map_err(|source| ReplayError::open(log_dir, source))?;
    // Fold once from genesis; at each checkpoint's seq, remember the replayed state.
    let mut replayed_at: Vec<Option<State>> = vec![None; found.len()];
    let mut state = State::new();
    let mut next_idx = 0;
    let take_states = |state: &State, next_idx: &mut usize, replayed_at: &mut Vec<Option<State>>| {
        while *next_idx < found.len() && found[*next_idx].seq <= state.last_seq {
            if found[*next_idx].seq == state.last_seq {
                replayed_at[*next_idx] = Some(state.clone());
            }
            *next_idx += 1;
        }
    };
    take_states(&state, &mut next_idx, &mut replayed_at);
    let mut vouchers: Vec<(Seq, Seq, String)> = Vec::new();
    walk_envelopes(&log, 1, u64::MAX, |stamp, envelope| {
        for event in &envelope.events {
            if let Event::CheckpointWritten { covers, digest } = event {
                vouchers.push((stamp.seq, *covers, digest.clone()));
            }
        }
        state.apply(stamp.seq, stamp.timestamp, &envelope);
        take_states(&state, &mut next_idx, &mut replayed_at);
        Ok(Walk::Continue)
    })?;
    for checkpoint in &mut found {
        let Ok(decoded) = &checkpoint.decoded else { continue };
        let digest = digest_hex(&decoded.digest);
        for (record_seq, covers, named_digest) in &vouchers {
            if *covers == checkpoint.seq && *record_seq > checkpoint.seq {
                if *named_digest == digest {
                    checkpoint.vouched_by.get_or_insert(*record_seq);
                } else {
                    checkpoint.contradicted_by.get_or_insert(*record_seq);
                }
            }
        }
    }
    let mut all_consistent = true;
    for (checkpoint, replayed) in found.iter().zip(replayed_at) {
        let name = checkpoint.path.file_name().map_or_else(String::new, |name| name.to_string_lossy().into_owned());
        let decoded = match &checkpoint.decoded {
            Ok(decoded) => decoded,
            Err(reason) => {
                writeln!(out, "{name}: not usable, berthd ignores it: {reason}")?;
                continue;
            }
        };
        let Some(replayed) = replayed else {
            writeln!(
                out,
                "{name}: not usable, berthd ignores it: it covers seq {} but the log ends at seq {}",
                checkpoint.seq,
                log.last_seq()
            )?;
            continue;
        };
        let chain_matches = log.chain_hash_at(checkpoint.seq).is_ok_and(|hash| hash == decoded.chain_hash);
        let equal = decoded.seq == checkpoint.seq && decoded.state == replayed;
        let verdict = match (chain_matches, equal) {
            (true, true) => "equals the replay of the log to its seq".to_string(),
            (false, _) => {
                all_consistent = false;
                format!("MISMATCH: its chain hash is not the one record {} holds", checkpoint.seq)
            }
            (true, false) => {
                all_consistent = false;
                format!("MISMATCH: its state differs from the replay of records 1..={}", checkpoint.seq)
            }
        };
        let vouch = match (checkpoint.vouched_by, checkpoint.contradicted_by) {
            (_, Some(record_seq)) => {
                all_consistent = false;
                format!("record {record_seq} names ANOTHER digest for it (the file was edited)")
            }
            (Some(record_seq), None) => format!("vouched for by record {record_seq}"),
            (None, None) => "no record vouches for it (berthd ignores it)".to_string(),
        };
        writeln!(out, "{name}: seq {}, {verdict}; {vouch}", checkpoint.seq)?;
    }
    if all_consistent {
        writeln!(out, "checkpoints: consistent with the log")?;
    } else {
        writeln!(out, "checkpoints: INCONSISTENT with the log: remove the files named MISMATCH or ANOTHER digest (berthd does not start from them, but they were edited or made by other code)")?;
    }
    Ok(all_consistent)
}
