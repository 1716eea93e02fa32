//! `berth-replay state`: the host as the log says it was at a seq or a moment — namespaces,
//! images, containers and their tasks — as text or as the full `State` in JSON.

use std::io::Write;
use std::path::Path;

use berth_log::Timestamp;

use crate::error::ReplayError;
use crate::fold::{fold_to, FoldPoint, Folded};
use crate::location::open_log;
use crate::render::{state_json, write_state_text};
use crate::secrets::KeyDir;

/// Folds the log at `dir` up to `point`.
pub fn fold_log(dir: &Path, point: FoldPoint) -> Result<Folded, ReplayError> {
    let (log, _open_report) = open_log(dir)?;
    fold_to(&log, point)
}

fn write_header(out: &mut dyn Write, point: FoldPoint, folded: &Folded) -> std::io::Result<()> {
    let position = match folded.last_record {
        Some(stamp) => format!("seq {} ({})", stamp.seq, stamp.timestamp),
        None => "seq 0 (before the first record)".to_string(),
    };
    match point {
        FoldPoint::Time(timestamp_ns) => writeln!(
            out,
            "state at {}: the last record at or before it is {position}; {} records folded",
            Timestamp::from_ns(timestamp_ns),
            folded.n_records
        )?,
        FoldPoint::Seq(_) | FoldPoint::End => {
            writeln!(out, "state at {position}; {} records folded", folded.n_records)?
        }
    }
    if let Some(next) = folded.next_record {
        writeln!(out, "next record: seq {} ({}), not folded", next.seq, next.timestamp)?;
    }
    if let Some(seq) = folded.clock_went_back_at {
        writeln!(
            out,
            "note: record timestamps go backwards at seq {seq} (the clock was set back); the fold is the prefix up to the last record stamped at or before the time"
        )?;
    }
    Ok(())
}

pub fn run_state(
    dir: &Path,
    point: FoldPoint,
    json: bool,
    keys: &KeyDir,
    out: &mut dyn Write,
) -> Result<(), ReplayError> {
    let folded = fold_log(dir, point)?;
    if json {
        out.write_all(state_json(&folded.state).as_bytes())?;
        return Ok(());
    }
    write_header(out, point, &folded)?;
    write_state_text(out, &folded.state, keys)?;
    Ok(())
}
