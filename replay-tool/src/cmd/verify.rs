//! `berth-replay verify`: every record's CRC, seq continuity, segment links and the SHA-256 hash
//! chain from genesis, then every payload decoded as an envelope. On damage: exactly where, and
//! up to which seq the log can still be trusted.

use std::io::Write;
use std::path::Path;

use berth_log::{open_read_only, open_read_only_with, LogError, OpenReport, ReadOnlyLog, RecoveryMode, Seq, TornTail};
use berth_projections::Envelope;

use crate::error::ReplayError;
use crate::location::check_log_dir;

/// What `verify` concluded; the binary maps it to the exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// Every record verifies (a torn tail may follow them, see the report).
    Intact,
    /// The log is damaged or was altered; records up to `intact_through` verify.
    Damaged { intact_through: u64, summary: String },
}

#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    /// Treat a torn tail as damage (for a log whose daemon is known to have stopped cleanly).
    pub strict: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn write_torn_tail(out: &mut dyn Write, torn_tail: Option<&TornTail>) -> std::io::Result<()> {
    match torn_tail {
        None => writeln!(out, "torn tail:  none"),
        Some(torn) => writeln!(
            out,
            "torn tail:  {} bytes at offset {} in {} are not a complete record ({}); berthd drops them when it next opens the log. Normal after a crash, or while berthd is writing",
            torn.dropped_bytes,
            torn.offset,
            torn.segment.display(),
            torn.reason
        ),
    }
}

/// The last seq that reads back with valid CRC and chain links, reading from seq 1.
fn last_readable_seq(log: &ReadOnlyLog) -> u64 {
    let Ok(reader) = log.reader(Seq(1)) else { return 0 };
    let mut reader = reader.check_chain(true);
    let mut last_good = 0;
    while let Some(Ok(record)) = reader.next() {
        last_good = record.seq.get();
    }
    last_good
}

/// Prints where the damage is and returns the outcome.
fn report_damage(out: &mut dyn Write, error: &LogError, intact_through: u64) -> Result<VerifyOutcome, ReplayError> {
    writeln!(out, "result:     DAMAGED")?;
    match error {
        LogError::Corruption { segment, offset, reason } => {
            writeln!(out, "problem:    a record does not match its checksum or is not a valid record: {reason}")?;
            writeln!(out, "segment:    {}", segment.display())?;
            writeln!(out, "offset:     {offset}")?;
            writeln!(out, "seq:        {} (the first record after the last intact one)", intact_through + 1)?;
        }
        LogError::ChainBroken { seq, segment, offset, reason } => {
            writeln!(out, "problem:    the hash chain is broken: {reason}")?;
            writeln!(out, "segment:    {}", segment.display())?;
            writeln!(out, "offset:     {offset}")?;
            writeln!(out, "seq:        {seq}")?;
        }
        other => writeln!(out, "problem:    {other}")?,
    }
    if intact_through == 0 {
        writeln!(out, "intact:     no record verifies")?;
    } else {
        writeln!(out, "intact:     seq 1..={intact_through} (checksums and hash chain from genesis)")?;
    }
    let summary = format!(
        "the log has been altered or damaged after seq {intact_through}: restore it from a trusted copy; berthd will not open it as it is"
    );
    writeln!(out, "{summary}")?;
    Ok(VerifyOutcome::Damaged { intact_through, summary })
}

/// Every payload must decode: a record with a valid checksum that is not an envelope means a
/// bug in the writer or a newer berth.
fn check_envelopes(log: &ReadOnlyLog) -> Result<Option<(u64, String)>, ReplayError> {
    let mut reader = log.reader(Seq(1)).map_err(|source| ReplayError::Read { dir: log.dir().to_path_buf(), source })?;
    while let Some(result) = reader.next() {
        let record = result.map_err(|source| ReplayError::Read { dir: log.dir().to_path_buf(), source })?;
        if let Err(decode_error) = Envelope::decode(record.payload) {
            return Ok(Some((record.seq.get(), decode_error.to_string())));
        }
    }
    Ok(None)
}

pub fn run_verify(dir: &Path, options: VerifyOptions, out: &mut dyn Write) -> Result<VerifyOutcome, ReplayError> {
    check_log_dir(dir)?;
    writeln!(out, "log:        {}", dir.display())?;
    let (log, open_report): (ReadOnlyLog, OpenReport) = match open_read_only(dir) {
        Ok(opened) => opened,
        Err(error @ (LogError::Corruption { .. } | LogError::ChainBroken { .. })) => {
            // The damage is before the tail, so the default open refuses the log. Salvage mode
            // (still read-only) keeps the valid prefix, which says how much can be trusted.
            let intact_through = match open_read_only_with(dir, RecoveryMode::Salvage) {
                Ok((salvaged, _report)) => last_readable_seq(&salvaged),
                Err(_) => 0,
            };
            return report_damage(out, &error, intact_through);
        }
        Err(source) => return Err(ReplayError::open(dir, source)),
    };
    let verify_report = match log.verify() {
        Ok(verify_report) => verify_report,
        Err(error) => {
            let intact_through = match &error {
                LogError::ChainBroken { seq, .. } => seq.get().saturating_sub(1).min(last_readable_seq(&log)),
                _ => last_readable_seq(&log),
            };
            return report_damage(out, &error, intact_through);
        }
    };
    writeln!(out, "segments:   {}", open_report.n_segments)?;
    if verify_report.n_records == 0 {
        writeln!(out, "records:    0 (the log is empty)")?;
    } else {
        writeln!(
            out,
            "records:    {} (seq {}..={})",
            verify_report.n_records, verify_report.first_seq, verify_report.last_seq
        )?;
    }
    writeln!(out, "bytes:      {}", verify_report.n_bytes)?;
    writeln!(out, "head hash:  {}", hex(&verify_report.head_hash))?;
    write_torn_tail(out, open_report.torn_tail.as_ref())?;
    if let Some((seq, reason)) = check_envelopes(&log)? {
        writeln!(out, "result:     UNREADABLE")?;
        let summary = format!(
            "record seq {seq} passes its checksum and hash chain but its payload does not decode ({reason}); records after seq {} cannot be replayed by this build",
            seq - 1
        );
        writeln!(out, "{summary}")?;
        return Ok(VerifyOutcome::Damaged { intact_through: seq - 1, summary });
    }
    if options.strict {
        if let Some(torn) = &open_report.torn_tail {
            writeln!(out, "result:     TORN (--strict)")?;
            let summary = format!(
                "the log has been altered or damaged after seq {}: {} bytes at offset {} in {} are not a complete record ({})",
                verify_report.last_seq,
                torn.dropped_bytes,
                torn.offset,
                torn.segment.display(),
                torn.reason
            );
            writeln!(out, "{summary}")?;
            return Ok(VerifyOutcome::Damaged { intact_through: verify_report.last_seq.get(), summary });
        }
    }
    writeln!(out, "result:     intact (every checksum and the hash chain from genesis verify; every payload decodes)")?;
    Ok(VerifyOutcome::Intact)
}
