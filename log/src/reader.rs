//! Reading: `LogReader` (seek, iterate, tail, follow) over the view shared with the writer
//! (view.rs), and the read-only opener for forensic tools (`verify` itself is in verify.rs).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::format::{decode_record_checking, genesis_hash, LOCK_FILE, RECORD_HEADER_LEN};
use crate::recovery::{recover, Access};
use crate::segment::Segment;
use crate::verify::verify_view;
use crate::view::SharedView;
use crate::{LogError, OpenReport, OwnedRecord, Record, RecordDecodeError, RecoveryMode, Seq, Timestamp, VerifyReport};

struct ReaderPosition {
    segment_idx: usize,
    segment: Arc<Segment>,
    offset: u64,
}

/// Iterates records with `seq >= from`, only up to the durable watermark. Holds its own
/// reference to the segment maps and takes no lock the writer waits on.
pub struct LogReader {
    view: Arc<SharedView>,
    next_seq: u64,
    /// `None` until the first record is read (so a reader can be created for a future seq).
    position: Option<ReaderPosition>,
    check_chain: bool,
    /// Off only for a caller that verifies the same records in full beside this reader.
    check_crc: bool,
    previous_hash: [u8; 32],
}

impl LogReader {
    pub(crate) fn new(view: Arc<SharedView>, from: Seq) -> Result<LogReader, LogError> {
        let first_available = view.segments().first().map_or(1, |segment| segment.header.first_seq.0);
        let next_seq = from.0.max(1);
        if next_seq < first_available {
            return Err(LogError::SeqNotFound { requested: from, first_available: Seq(first_available) });
        }
        Ok(LogReader { view, next_seq, position: None, check_chain: false, check_crc: true, previous_hash: [0; 32] })
    }

    /// Also recompute and check every record's chain hash (SHA-256) while reading. Off by
    /// default: CRC and seq continuity are always checked, the chain is `verify`'s job.
    pub fn check_chain(mut self, enabled: bool) -> LogReader {
        self.check_chain = enabled;
        if self.position.is_some() {
            self.position = None; // re-seek so the predecessor's hash is loaded
        }
        self
    }

    /// Skip each record's CRC check (seq continuity is still checked). Only for a caller that
    /// runs `verify` over the same records at the same time and trusts nothing read here until
    /// it passed — berthd's start-up replay, where the CRC would otherwise be computed twice on
    /// the replay's critical path.
    pub fn skip_crc_checks_verified_elsewhere(mut self) -> LogReader {
        self.check_crc = false;
        self
    }

    /// Seq of the next record this reader returns.
    pub fn position(&self) -> Seq {
        Seq(self.next_seq)
    }

    fn seek(&mut self, durable_seq: u64) -> Result<(), LogError> {
        let segments = self.view.segments();
        let segment_idx = segments.partition_point(|segment| segment.header.first_seq.0 <= self.next_seq);
        if segment_idx == 0 {
            let first_available = segments.first().map_or(1, |segment| segment.header.first_seq.0);
            return Err(LogError::SeqNotFound { requested: Seq(self.next_seq), first_available: Seq(first_available) });
        }
        let segment_idx = segment_idx - 1;
        let segment = segments[segment_idx].clone();
        let offset = segment.locate(self.next_seq, durable_seq)?;
        if self.check_chain {
            self.previous_hash = if self.next_seq == segment.header.first_seq.0 {
                segment.header.carried_hash
            } else {
                let previous_offset = segment.locate(self.next_seq - 1, durable_seq)?;
                *segment.expect_record(previous_offset, Seq(self.next_seq - 1))?.chain_hash
            };
        }
        self.position = Some(ReaderPosition { segment_idx, segment, offset });
        Ok(())
    }

    /// Moves to the next segment once the current one has no more records.
    fn advance_segment(&mut self) -> Result<(), LogError> {
        let position = self.position.as_mut().expect("positioned");
        let segments = self.view.segments();
        let Some(next_segment) = segments.get(position.segment_idx + 1) else {
            return Err(position.segment.corruption(
                position.offset,
                format!("segment data ends before durable seq {} and no later segment exists", self.next_seq),
            ));
        };
        if next_segment.header.first_seq.0 != self.next_seq {
            return Err(LogError::ChainBroken {
                seq: Seq(self.next_seq),
                segment: position.segment.path.clone(),
                offset: position.offset,
                reason: format!(
                    "segment ends before seq {} but the next segment starts at seq {}",
                    self.next_seq, next_segment.header.first_seq
                ),
            });
        }
        if self.check_chain && next_segment.header.carried_hash != self.previous_hash {
            return Err(LogError::ChainBroken {
                seq: Seq(self.next_seq),
                segment: next_segment.path.clone(),
                offset: 0,
                reason: "segment header's carried hash differs from the previous segment's last chain hash".to_string(),
            });
        }
        position.segment.release_pages();
        position.segment_idx += 1;
        position.segment = next_segment.clone();
        position.offset = crate::format::SEGMENT_HEADER_LEN as u64;
        Ok(())
    }

    /// The next record and its on-disk length, or `None` at the durable end.
    fn next_with_len(&mut self) -> Option<Result<(Record<'_>, u64), LogError>> {
        let durable_seq = self.view.durable_seq();
        if self.next_seq > durable_seq {
            return None;
        }
        if self.position.is_none() {
            if let Err(error) = self.seek(durable_seq) {
                return Some(Err(error));
            }
        }
        let (offset, encoded_len, timestamp_ns, payload_len) = loop {
            let position = self.position.as_ref().expect("positioned");
            let segment = &position.segment;
            match decode_record_checking(segment.record_bytes_at(position.offset), self.check_crc) {
                Ok(record) if record.seq.0 == self.next_seq => {
                    if self.check_chain {
                        if !record.chains_from(&self.previous_hash) {
                            return Some(Err(LogError::ChainBroken {
                                seq: record.seq,
                                segment: segment.path.clone(),
                                offset: position.offset,
                                reason:
                                    "stored chain hash differs from SHA-256 of the previous chain hash and this record"
                                        .to_string(),
                            }));
                        }
                        self.previous_hash = *record.chain_hash;
                    }
                    break (
                        position.offset,
                        record.encoded_len as u64,
                        record.timestamp_ns,
                        record.payload.len() as u64,
                    );
                }
                Ok(record) => {
                    return Some(Err(LogError::ChainBroken {
                        seq: Seq(self.next_seq),
                        segment: segment.path.clone(),
                        offset: position.offset,
                        reason: format!("expected seq {}, found seq {}", self.next_seq, record.seq),
                    }))
                }
                Err(RecordDecodeError::ZeroHeader) => {}
                Err(RecordDecodeError::Truncated { needed, .. }) if needed == RECORD_HEADER_LEN as u64 => {}
                Err(decode_error) => return Some(Err(segment.corruption(position.offset, decode_error.to_string()))),
            }
            if let Err(error) = self.advance_segment() {
                return Some(Err(error));
            }
        };
        let seq = Seq(self.next_seq);
        self.next_seq += 1;
        let position = self.position.as_mut().expect("positioned");
        position.offset = offset + encoded_len;
        let payload_start = offset + RECORD_HEADER_LEN as u64;
        let payload = position.segment.bytes(payload_start, payload_start + payload_len);
        Some(Ok((Record { seq, timestamp: Timestamp::from_ns(timestamp_ns), payload }, encoded_len)))
    }

    /// The next durable record, borrowed from the map; `None` at the current durable end (call
    /// again later to tail). After an error the same error is returned again.
    #[allow(clippy::should_implement_trait)] // borrows from self, so it cannot be an Iterator
    pub fn next(&mut self) -> Option<Result<Record<'_>, LogError>> {
        self.next_with_len().map(|result| result.map(|(record, _)| record))
    }

    pub fn next_owned(&mut self) -> Option<Result<OwnedRecord, LogError>> {
        self.next().map(|result| result.map(|record| record.to_owned_record()))
    }

    /// Like `next_owned`, but waits (up to `timeout`, forever with `None`) for a new durable
    /// record. `None` means the timeout passed.
    pub fn next_blocking(&mut self, timeout: Option<Duration>) -> Option<Result<OwnedRecord, LogError>> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        loop {
            if let Some(result) = self.next_owned() {
                return Some(result);
            }
            let remaining = match deadline {
                None => None,
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    Some(deadline - now)
                }
            };
            self.view.wait_for(self.next_seq, remaining);
        }
    }

    /// Calls `on_record` for every record up to the current durable end, without copying
    /// payloads; returns how many there were. The replay hook: decode the payload in the closure.
    pub fn replay<F: FnMut(Record<'_>)>(&mut self, mut on_record: F) -> Result<u64, LogError> {
        let mut n_records = 0;
        while let Some(result) = self.next() {
            on_record(result?);
            n_records += 1;
        }
        Ok(n_records)
    }
}

/// A log opened without the lock, for forensic tools: changes nothing on disk, sees the durable
/// state at the time of opening (a record the daemon is writing right then is reported as a
/// torn tail, not read).
pub struct ReadOnlyLog {
    view: Arc<SharedView>,
}

impl ReadOnlyLog {
    pub fn reader(&self, from: Seq) -> Result<LogReader, LogError> {
        LogReader::new(self.view.clone(), from)
    }

    /// Checks CRCs, seq continuity, segment links and the full hash chain, on one thread per
    /// core (see `EventLog::verify`).
    pub fn verify(&self) -> Result<VerifyReport, LogError> {
        verify_view(&self.view, 0)
    }

    /// `verify` on at most `n_threads` threads (`1`: on the calling thread only).
    pub fn verify_with_threads(&self, n_threads: usize) -> Result<VerifyReport, LogError> {
        verify_view(&self.view, n_threads.max(1))
    }

    pub fn last_seq(&self) -> Seq {
        Seq(self.view.durable_seq())
    }

    /// The first seq the log still holds: 1, or the seq after a retention cut.
    pub fn first_seq(&self) -> Seq {
        self.view.base().0.next()
    }

    /// The archive manifest (`None`: nothing was ever archived).
    pub fn archive_manifest(&self) -> Result<Option<crate::Manifest>, LogError> {
        crate::Manifest::read(&self.view.dir)
    }

    /// The chain hash stored in record `seq` (the genesis hash for seq 0). Checks that record's
    /// CRC, not the chain up to it: run `verify` for that.
    pub fn chain_hash_at(&self, seq: Seq) -> Result<[u8; 32], LogError> {
        chain_hash_at(&self.view, seq)
    }

    pub fn dir(&self) -> &Path {
        &self.view.dir
    }
}

/// The chain hash stored in durable record `seq`; the genesis hash for seq 0.
pub(crate) fn chain_hash_at(view: &SharedView, seq: Seq) -> Result<[u8; 32], LogError> {
    let durable_seq = view.durable_seq();
    let (segments, (base_seq, base_hash)) = view.segments_and_base();
    if seq == base_seq {
        return Ok(base_hash);
    }
    if seq.0 == 0 {
        return Ok(genesis_hash());
    }
    let segment_idx = segments.partition_point(|segment| segment.header.first_seq.0 <= seq.0);
    if seq.0 > durable_seq || segment_idx == 0 {
        return Err(LogError::SeqNotFound { requested: seq, first_available: base_seq.next() });
    }
    let segment = &segments[segment_idx - 1];
    let offset = segment.locate(seq.0, durable_seq)?;
    Ok(*segment.expect_record(offset, seq)?.chain_hash)
}

/// Opens `dir` read-only with the default recovery rules: a torn tail is reported (not
/// touched), other damage fails with `LogError::Corruption`.
pub fn open_read_only(dir: &Path) -> Result<(ReadOnlyLog, OpenReport), LogError> {
    open_read_only_with(dir, RecoveryMode::TruncateTornTail)
}

/// Opens `dir` read-only; with `RecoveryMode::Salvage` damage is reported in
/// `OpenReport::salvaged` and the valid prefix is readable. Nothing on disk changes either way.
///
/// A log a live writer holds (berthd running) is read again, a few times over about a second,
/// when the read meets damage: a batch being written shows for an instant as a zero header with
/// written records after it, which a writer-less log would rightly call corruption. Damage that
/// stays is reported as such.
pub fn open_read_only_with(dir: &Path, recovery: RecoveryMode) -> Result<(ReadOnlyLog, OpenReport), LogError> {
    let mut rereads_left = LIVE_WRITER_REREADS;
    let recovered = loop {
        match recover(dir, recovery, Access::ReadOnly) {
            Err(LogError::Corruption { .. }) if rereads_left > 0 && writer_holds_lock(dir) => {
                rereads_left -= 1;
                std::thread::sleep(LIVE_WRITER_REREAD_PAUSE);
            }
            result => break result?,
        }
    };
    let view = Arc::new(recovered.view(dir));
    Ok((ReadOnlyLog { view }, recovered.report))
}

/// Rereads of a live log that looked damaged, and the pause before each.
const LIVE_WRITER_REREADS: u32 = 100;
const LIVE_WRITER_REREAD_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Whether a writer holds `dir/LOCK` (the flock `EventLog::open` takes), read from
/// /proc/locks: taking even a shared lock to find out could make a starting writer fail.
fn writer_holds_lock(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(metadata) = std::fs::metadata(dir.join(LOCK_FILE)) else { return false };
    let dev = metadata.dev();
    // /proc/locks names the file as major:minor:inode, the numbers in hex, hex, decimal.
    let file_id = format!(" {:02x}:{:02x}:{} ", libc::major(dev), libc::minor(dev), metadata.ino());
    std::fs::read_to_string("/proc/locks").is_ok_and(|locks| {
        locks.lines().any(|line| line.contains(" FLOCK ") && line.contains(" WRITE ") && line.contains(&file_id))
    })
}
