//! `berth-replay verify`: every record's CRC, seq continuity, segment links and the SHA-256 hash
//! chain from genesis, then every payload decoded as an envelope. On damage: exactly where, and
//! up to which seq the log can still be trusted.

use std::io::Write;
use std::path::Path;

use berth_log::{
    open_read_only, open_read_only_with, read_anchor, Anchor, LogError, OpenReport, ReadOnlyLog, RecoveryMode, Seq,
    TornTail,
};
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

#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Treat a torn tail as damage (for a log whose daemon is known to have stopped cleanly).
    pub strict: bool,
    /// A point published earlier (`berth-replay head`): the log must still contain it.
    pub expect: Option<Anchor>,
    /// berthd's anchor file for this log, checked when it exists: the log must contain it.
    pub anchor: Option<std::path::PathBuf>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Parses `SEQ:HASH` (HASH: 64 hex digits), as `berth-replay head` prints it.
pub fn parse_point(text: &str) -> Result<Anchor, String> {
    let usage =
        || format!("{text:?} is not SEQ:HASH (a seq, a colon, 64 hex digits), as `berth-replay head` prints it");
    let (seq_text, hash_text) = text.trim().split_once(':').ok_or_else(usage)?;
    let seq = seq_text.parse::<u64>().map_err(|_| usage())?;
    if hash_text.len() != 64 || !hash_text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(usage());
    }
    let mut hash = [0u8; 32];
    for (idx, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hash_text[2 * idx..2 * idx + 2], 16).map_err(|_| usage())?;
    }
    Ok(Anchor { seq: Seq(seq), hash })
}

/// `SEQ:HASH` of a point.
pub fn format_point(point: &Anchor) -> String {
    format!("{}:{}", point.seq, hex(&point.hash))
}

/// Whether the (verified) log holds `point`: `None` if it does, else why not.
fn missing_point(log: &ReadOnlyLog, point: &Anchor) -> Result<Option<String>, ReplayError> {
    if point.seq > log.last_seq() {
        return Ok(Some(format!(
            "the log ends at seq {}, before seq {}: records were removed from its end",
            log.last_seq(),
            point.seq
        )));
    }
    let hash =
        log.chain_hash_at(point.seq).map_err(|source| ReplayError::Read { dir: log.dir().to_path_buf(), source })?;
    if hash != point.hash {
        return Ok(Some(format!(
            "record seq {} has chain hash {}, not {}: the log was rewritten",
            point.seq,
            hex(&hash),
            hex(&point.hash)
        )));
    }
    Ok(None)
}

/// Prints a point the log must contain, and returns the outcome if it does not.
fn check_point(
    out: &mut dyn Write,
    log: &ReadOnlyLog,
    label: &str,
    point: &Anchor,
) -> Result<Option<VerifyOutcome>, ReplayError> {
    let Some(reason) = missing_point(log, point)? else {
        writeln!(out, "{label:<11} {} present", format_point(point))?;
        return Ok(None);
    };
    writeln!(out, "{label:<11} {} MISSING: {reason}", format_point(point))?;
    writeln!(out, "result:     DAMAGED")?;
    let summary = format!(
        "the log does not contain {label} point {}: {reason}; restore it from a trusted copy",
        format_point(point),
        label = label.trim_end_matches(':')
    );
    writeln!(out, "{summary}")?;
    let intact_through = point.seq.get().saturating_sub(1).min(log.last_seq().get());
    Ok(Some(VerifyOutcome::Damaged { intact_through, summary }))
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
    let Ok(reader) = log.reader(log.first_seq()) else { return 0 };
    let mut reader = reader.check_chain(true);
    let mut last_good = 0;
    while let Some(Ok(record)) = reader.next() {
        last_good = record.seq.get();
    }
    last_good
}

/// Prints what the archive manifest says (archived segments, the retention cut) and returns
/// where the verified chain starts from.
fn write_archive(
    out: &mut dyn Write,
    log: &ReadOnlyLog,
    report: &berth_log::VerifyReport,
) -> Result<String, ReplayError> {
    let manifest = log.archive_manifest().map_err(|source| ReplayError::open(log.dir(), source))?;
    let Some(manifest) = manifest else { return Ok("genesis".to_string()) };
    if let (Some(first), Some(last)) = (manifest.archived.first(), manifest.archived.last()) {
        writeln!(
            out,
            "archived:   {} segment(s), seq {}..={}, in {} (manifest head {})",
            manifest.archived.len(),
            first.first_seq,
            last.last_seq,
            first.dir.display(),
            hex(&manifest.head_hash)
        )?;
    }
    match report.cut {
        None => Ok("genesis".to_string()),
        Some((seq, hash)) => {
            writeln!(out, "cut:        verified from cut at seq {seq} (hash {})", hex(&hash))?;
            Ok(format!("the cut at seq {seq}"))
        }
    }
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
        "the log has been altered or damaged after seq {intact_through}: berthd will not start on it as it is; restore it from a trusted copy, or stop berthd and run `berthd --salvage` to keep seq 1..={intact_through} (the damaged log is moved aside)"
    );
    writeln!(out, "{summary}")?;
    Ok(VerifyOutcome::Damaged { intact_through, summary })
}

/// Every payload must decode: a record with a valid checksum that is not an envelope means a
/// bug in the writer or a newer berth.
fn check_envelopes(log: &ReadOnlyLog) -> Result<Option<(u64, String)>, ReplayError> {
    let mut reader =
        log.reader(log.first_seq()).map_err(|source| ReplayError::Read { dir: log.dir().to_path_buf(), source })?;
    while let Some(result) = reader.next() {
        let record = result.map_err(|source| ReplayError::Read { dir: log.dir().to_path_buf(), source })?;
        if let Err(decode_error) = Envelope::decode(record.payload) {
            return Ok(Some((record.seq.get(), decode_error.to_string())));
        }
    }
    Ok(None)
}

pub fn run_verify(dir: &Path, options: &VerifyOptions, out: &mut dyn Write) -> Result<VerifyOutcome, ReplayError> {
    check_log_dir(dir)?;
    writeln!(out, "log:        {}", dir.display())?;
    // Read before the log is opened: berthd writes the anchor only after the records it names
    // are durable, so a log opened after it holds at least that point.
    let anchor = match &options.anchor {
        Some(anchor_path) => read_anchor(anchor_path)
            .map_err(|source| ReplayError::Open { dir: dir.to_path_buf(), source })?
            .map(|anchor| (anchor_path.clone(), anchor)),
        None => None,
    };
    let (log, open_report): (ReadOnlyLog, OpenReport) = match open_read_only(dir) {
        Ok(opened) => opened,
        Err(error @ LogError::ArchiveMissing { .. }) => return report_damage(out, &error, 0),
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
    let chain_from = write_archive(out, &log, &verify_report)?;
    write_torn_tail(out, open_report.torn_tail.as_ref())?;
    if let Some((anchor_path, anchor)) = &anchor {
        writeln!(out, "anchor file: {}", anchor_path.display())?;
        if let Some(outcome) = check_point(out, &log, "anchor:", anchor)? {
            return Ok(outcome);
        }
    }
    if let Some(expected) = &options.expect {
        if let Some(outcome) = check_point(out, &log, "expected:", expected)? {
            return Ok(outcome);
        }
    }
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
    writeln!(
        out,
        "result:     intact (every checksum and the hash chain from {chain_from} verify; every payload decodes)"
    )?;
    Ok(VerifyOutcome::Intact)
}

/// `berth-replay head`: verifies the whole log, then prints its last point as `SEQ:HASH`, to be
/// published or stored elsewhere and later checked with `verify --expect SEQ:HASH`.
pub fn run_head(dir: &Path, out: &mut dyn Write) -> Result<(), ReplayError> {
    check_log_dir(dir)?;
    let (log, _report) = open_read_only(dir).map_err(|source| ReplayError::Open { dir: dir.to_path_buf(), source })?;
    let verified = log.verify().map_err(|source| ReplayError::Read { dir: dir.to_path_buf(), source })?;
    writeln!(out, "{}", format_point(&Anchor { seq: verified.last_seq, hash: verified.head_hash }))?;
    Ok(())
}
