//! `verify`: CRC, seq continuity, segment links and the whole SHA-256 chain from genesis, split
//! into chunks that are checked on several threads and then joined.
//!
//! Why the chain can be checked in parallel: record n stores `hash_n`, and record n-1 stores
//! `hash_{n-1}`, so the link `hash_n = SHA-256(hash_{n-1} || bytes)` can be checked for any n
//! from the two stored values alone, in any order. Checking every link (and that record 1
//! links to genesis) is checking the chain. A chunk starts from the hash stored just before it
//! (or the segment header's carried hash); the join step confirms that each chunk ends exactly
//! where, and with the hash, the next one starts from.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::format::{chain_hash, decode_record, genesis_hash, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::segment::Segment;
use crate::view::SharedView;
use crate::{LogError, RecordDecodeError, Seq, VerifyReport};

/// Offset of the payload length inside a record header.
const RECORD_LEN_AT: u64 = 36;

/// A run of consecutive records inside one segment, checked by one worker.
struct Chunk {
    segment_idx: usize,
    start_offset: u64,
    first_seq: u64,
    /// Last seq to check, inclusive (`first_seq - 1` for an empty chunk).
    last_seq: u64,
    /// The hash the first record must chain from: the segment's carried hash, or the hash
    /// stored in the record right before `start_offset` (confirmed when chunks are joined).
    previous_hash: [u8; 32],
    /// The segment's data must end right after `last_seq`, because the next segment starts at
    /// `last_seq + 1` (only for a segment's final chunk when that whole segment is durable).
    ends_segment: bool,
}

/// What a chunk's worker found when every record in it checked out.
struct ChunkOutcome {
    n_records: u64,
    n_bytes: u64,
    end_offset: u64,
    last_hash: [u8; 32],
}

/// Verifies everything up to the durable watermark at the time of the call, on up to
/// `n_threads` threads (`0`: one per available core). Errors are the ones a sequential walk
/// from seq 1 would report first.
pub(crate) fn verify_view(view: &Arc<SharedView>, n_threads: usize) -> Result<VerifyReport, LogError> {
    // Watermark first, then the segment list: every segment that can hold seqs up to it is in
    // the list, and no byte past the watermark is ever read.
    let durable_seq = view.durable_seq();
    let (segments, (base_seq, base_hash)) = view.segments_and_base();
    let cut = (base_seq != Seq(0)).then_some((base_seq, base_hash));
    debug_assert!(cut.is_some() || base_hash == genesis_hash());
    let empty_report =
        VerifyReport { n_records: 0, n_bytes: 0, first_seq: Seq(0), last_seq: base_seq, head_hash: base_hash, cut };
    let Some(first_segment) = segments.first() else { return Ok(empty_report) };
    let from = match cut {
        Some(_) => format!("the cut at seq {base_seq} recorded in the archive manifest"),
        None => "genesis".to_string(),
    };
    if first_segment.header.first_seq != base_seq.next() {
        return Err(LogError::ChainBroken {
            seq: first_segment.header.first_seq,
            segment: first_segment.path.clone(),
            offset: 0,
            reason: format!("the oldest segment does not start at seq {} (right after {from})", base_seq.next()),
        });
    }
    if first_segment.header.carried_hash != base_hash {
        return Err(LogError::ChainBroken {
            seq: base_seq.next(),
            segment: first_segment.path.clone(),
            offset: 0,
            reason: format!("the oldest segment does not chain from the hash of {from}"),
        });
    }
    if durable_seq <= base_seq.0 {
        return Ok(empty_report);
    }

    let n_threads =
        if n_threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { n_threads };
    let chunks = plan_chunks(&segments, durable_seq, n_threads);
    let outcomes = run_chunks(&segments, &chunks, n_threads);

    let mut report = VerifyReport {
        n_records: 0,
        n_bytes: 0,
        first_seq: base_seq.next(),
        last_seq: base_seq,
        head_hash: base_hash,
        cut,
    };
    let mut previous: Option<(&Chunk, ChunkOutcome)> = None;
    for (chunk, outcome) in chunks.iter().zip(outcomes) {
        if let Some((previous_chunk, previous_outcome)) = &previous {
            check_join(&segments, previous_chunk, previous_outcome, chunk)?;
        }
        let outcome = outcome?;
        report.n_records += outcome.n_records;
        report.n_bytes += outcome.n_bytes;
        previous = Some((chunk, outcome));
    }
    let (last_chunk, last_outcome) = previous.expect("the first segment yields a chunk");
    report.last_seq = Seq(last_chunk.last_seq);
    report.head_hash = last_outcome.last_hash;
    Ok(report)
}

/// One chunk per segment that holds durable seqs; when there are fewer such segments than
/// threads, each is cut into about `n_threads / n_segments` pieces by stepping over record
/// lengths (unchecked here; the chunk workers check every record, and the joins every cut).
fn plan_chunks(segments: &[Arc<Segment>], durable_seq: u64, n_threads: usize) -> Vec<Chunk> {
    let n_durable_segments = segments.iter().take_while(|segment| segment.header.first_seq.0 <= durable_seq).count();
    let pieces_per_segment = n_threads.div_ceil(n_durable_segments.max(1)).max(1);
    let mut chunks = Vec::new();
    for segment_idx in 0..n_durable_segments {
        let segment = &segments[segment_idx];
        let first_seq = segment.header.first_seq.0;
        let next_first_seq = segments.get(segment_idx + 1).map(|next| next.header.first_seq.0);
        let segment_last_seq =
            next_first_seq.map_or(durable_seq, |next_first_seq| next_first_seq.saturating_sub(1).min(durable_seq));
        let ends_segment = next_first_seq.is_some_and(|next_first_seq| next_first_seq <= durable_seq + 1);
        let mut chunk = Chunk {
            segment_idx,
            start_offset: SEGMENT_HEADER_LEN as u64,
            first_seq,
            last_seq: segment_last_seq,
            previous_hash: segment.header.carried_hash,
            ends_segment,
        };
        let n_records = (segment_last_seq + 1).saturating_sub(first_seq);
        let records_per_piece = n_records.div_ceil(pieces_per_segment as u64).max(1);
        if pieces_per_segment > 1 && n_records > records_per_piece {
            let (mut seq, mut offset, mut previous_offset) = (first_seq, SEGMENT_HEADER_LEN as u64, None);
            while seq <= segment_last_seq {
                if seq - chunk.first_seq == records_per_piece {
                    let Some(previous_offset) = previous_offset else { break };
                    let hash_bytes = segment.bytes(previous_offset, previous_offset + 32);
                    let Ok(previous_hash) = <[u8; 32]>::try_from(hash_bytes) else { break };
                    let next_chunk = Chunk {
                        segment_idx,
                        start_offset: offset,
                        first_seq: seq,
                        last_seq: segment_last_seq,
                        previous_hash,
                        ends_segment,
                    };
                    chunks.push(Chunk {
                        last_seq: seq - 1,
                        ends_segment: false,
                        ..std::mem::replace(&mut chunk, next_chunk)
                    });
                }
                let len_bytes = segment.bytes(offset + RECORD_LEN_AT, offset + RECORD_LEN_AT + 4);
                let Ok(len_bytes) = <[u8; 4]>::try_from(len_bytes) else { break };
                previous_offset = Some(offset);
                offset += crate::format::encoded_record_len(u32::from_le_bytes(len_bytes) as usize) as u64;
                seq += 1;
            }
        }
        chunks.push(chunk);
    }
    chunks
}

/// Checks `chunks` on up to `n_threads` scoped threads, each taking the next unchecked chunk.
fn run_chunks(segments: &[Arc<Segment>], chunks: &[Chunk], n_threads: usize) -> Vec<Result<ChunkOutcome, LogError>> {
    let n_workers = n_threads.min(chunks.len()).max(1);
    if n_workers == 1 {
        return chunks.iter().map(|chunk| check_chunk(segments, chunk)).collect();
    }
    let next_chunk_idx = AtomicUsize::new(0);
    let mut outcomes: Vec<(usize, Result<ChunkOutcome, LogError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..n_workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let chunk_idx = next_chunk_idx.fetch_add(1, Ordering::Relaxed);
                        let Some(chunk) = chunks.get(chunk_idx) else { return done };
                        done.push((chunk_idx, check_chunk(segments, chunk)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("verify worker panicked")).collect()
    });
    outcomes.sort_by_key(|(chunk_idx, _)| *chunk_idx);
    outcomes.into_iter().map(|(_, outcome)| outcome).collect()
}

/// CRC, seq and chain link of every record in `chunk`, each record's bytes read once (the CRC
/// and the SHA-256 both run over the same slice of the map while it is in cache).
fn check_chunk(segments: &[Arc<Segment>], chunk: &Chunk) -> Result<ChunkOutcome, LogError> {
    let segment = &segments[chunk.segment_idx];
    segment.check_archived()?;
    let mut offset = chunk.start_offset;
    let mut previous_hash = chunk.previous_hash;
    let mut n_bytes = 0u64;
    for seq in chunk.first_seq..=chunk.last_seq {
        let record = match decode_record(segment.record_bytes_at(offset)) {
            Ok(record) if record.seq.0 == seq => record,
            Ok(record) => {
                return Err(LogError::ChainBroken {
                    seq: Seq(seq),
                    segment: segment.path.clone(),
                    offset,
                    reason: format!("expected seq {seq}, found seq {}", record.seq),
                });
            }
            Err(RecordDecodeError::ZeroHeader) => {
                return Err(data_ends_early(segments, chunk.segment_idx, offset, seq))
            }
            Err(RecordDecodeError::Truncated { needed, .. }) if needed == RECORD_HEADER_LEN as u64 => {
                return Err(data_ends_early(segments, chunk.segment_idx, offset, seq))
            }
            Err(decode_error) => return Err(segment.corruption(offset, decode_error.to_string())),
        };
        if chain_hash(&previous_hash, record.hashed_bytes) != *record.chain_hash {
            return Err(LogError::ChainBroken {
                seq: Seq(seq),
                segment: segment.path.clone(),
                offset,
                reason: "stored chain hash differs from SHA-256 of the previous chain hash and this record".to_string(),
            });
        }
        previous_hash = *record.chain_hash;
        offset += record.encoded_len as u64;
        n_bytes += record.encoded_len as u64;
    }
    if chunk.ends_segment {
        // A finished segment: nothing may follow its last record (the next segment holds it).
        let next_first_seq = chunk.last_seq + 1;
        match decode_record(segment.record_bytes_at(offset)) {
            Err(RecordDecodeError::ZeroHeader) => {}
            Err(RecordDecodeError::Truncated { needed, .. }) if needed == RECORD_HEADER_LEN as u64 => {}
            Ok(record) => {
                return Err(LogError::ChainBroken {
                    seq: Seq(next_first_seq),
                    segment: segment.path.clone(),
                    offset,
                    reason: format!(
                        "segment holds seq {} after seq {} but the next segment starts at seq {next_first_seq}",
                        record.seq, chunk.last_seq
                    ),
                })
            }
            Err(decode_error) => return Err(segment.corruption(offset, decode_error.to_string())),
        }
    }
    Ok(ChunkOutcome {
        n_records: (chunk.last_seq + 1).saturating_sub(chunk.first_seq),
        n_bytes,
        end_offset: offset,
        last_hash: previous_hash,
    })
}

/// The segment's records stop before `seq`, which is durable.
fn data_ends_early(segments: &[Arc<Segment>], segment_idx: usize, offset: u64, seq: u64) -> LogError {
    let segment = &segments[segment_idx];
    match segments.get(segment_idx + 1) {
        None => segment
            .corruption(offset, format!("segment data ends before durable seq {seq} and no later segment exists")),
        Some(next_segment) => LogError::ChainBroken {
            seq: Seq(seq),
            segment: segment.path.clone(),
            offset,
            reason: format!(
                "segment ends before seq {seq} but the next segment starts at seq {}",
                next_segment.header.first_seq
            ),
        },
    }
}

/// `chunk` must continue exactly where `previous` (checked, without error) ended.
fn check_join(
    segments: &[Arc<Segment>],
    previous: &Chunk,
    previous_outcome: &ChunkOutcome,
    chunk: &Chunk,
) -> Result<(), LogError> {
    let segment = &segments[chunk.segment_idx];
    if chunk.segment_idx != previous.segment_idx {
        // Segment boundary: the previous segment ended (checked by its last chunk) and this
        // one's header carries the hash the previous segment ended with.
        if previous_outcome.last_hash != chunk.previous_hash {
            return Err(LogError::ChainBroken {
                seq: Seq(chunk.first_seq),
                segment: segment.path.clone(),
                offset: 0,
                reason: "segment header's carried hash differs from the previous segment's last chain hash".to_string(),
            });
        }
        return Ok(());
    }
    // A cut inside a segment, made by stepping over lengths that the previous chunk has now
    // checked: it lands on the same offset and hash unless the bytes changed underneath.
    if previous_outcome.end_offset != chunk.start_offset
        || previous_outcome.last_hash != chunk.previous_hash
        || previous.last_seq + 1 != chunk.first_seq
    {
        return Err(segment.corruption(
            chunk.start_offset,
            format!(
                "verify chunks do not join at seq {}: the segment changed while it was being verified",
                chunk.first_seq
            ),
        ));
    }
    Ok(())
}
