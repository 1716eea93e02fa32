//! Fast decoding of record payloads for replay: [`decode_envelope`], which reads the canonical
//! form `Envelope::encode` writes with a small serde deserializer of our own (`canonical.rs`)
//! and asks rmp-serde about anything else, and [`replay_parallel`], which decodes on worker
//! threads in ordered batches while the caller folds. Nothing here opens a file:
//! `replay_parallel` pulls records from a `LogReader` the caller opened.
//!
//! Invariant: [`decode_envelope`] gives exactly what [`Envelope::decode`] gives for every
//! payload. Both go through the serde derives in `event.rs`, the one description of the schema;
//! the fast reader only refuses more (an older or hand-made encoding rmp-serde would still
//! accept, a newer schema, damage), and whatever it refuses goes to `Envelope::decode`, which
//! gives the answer and the error message. No event is named in this file.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread;

use berth_log::{LogError, LogReader, Seq, Timestamp};

use crate::canonical;
use crate::error::DecodeError;
use crate::event::{Envelope, EVENT_SCHEMA};

/// The owned envelope of a payload: the canonical reader when the payload is in the form
/// `Envelope::encode` writes, else `Envelope::decode`. Same result as `Envelope::decode` for
/// every input.
pub fn decode_envelope(payload: &[u8]) -> Result<Envelope, DecodeError> {
    match canonical::from_slice::<Envelope>(payload) {
        Ok(envelope) if envelope.schema <= EVENT_SCHEMA => Ok(envelope),
        _ => Envelope::decode(payload),
    }
}

/// Whether `decode_envelope` reads `payload` without falling back to rmp-serde: true for every
/// payload `Envelope::encode` writes in this build. Tests use it to catch a schema change the
/// canonical reader does not follow (it would stay correct, only slow).
pub fn is_canonical(payload: &[u8]) -> bool {
    matches!(canonical::from_slice::<Envelope>(payload), Ok(envelope) if envelope.schema <= EVENT_SCHEMA)
}

/// Records per batch handed to a decode worker: big enough that the channel round trip and the
/// wake-up are noise (~100 µs of decoding each), small enough that a batch's payloads and
/// envelopes (~0.5 MiB) stay in a core's L2 between decode and fold.
pub const REPLAY_BATCH_RECORDS: usize = 1024;

/// How a payload becomes an envelope in [`replay_parallel_with`]: `decode_envelope` in berth,
/// `Envelope::decode` in the benchmark that measures what the fast reader is worth.
pub type Decoder = fn(&[u8]) -> Result<Envelope, DecodeError>;

/// One batch of records on its way through [`replay_parallel`]: payloads copied out of the map
/// (a `Record` borrows the reader, so records cannot be held across `next`), then their decoded
/// envelopes. Batches are reused, and the envelopes of the last round are dropped by the decode
/// thread that allocated them, when it decodes the next round.
struct ReplayBatch {
    payloads: Vec<u8>,
    /// (seq, timestamp, end of the payload in `payloads`)
    records: Vec<(Seq, Timestamp, usize)>,
    decoded: Vec<Result<Envelope, DecodeError>>,
}

impl ReplayBatch {
    fn new() -> ReplayBatch {
        ReplayBatch {
            payloads: Vec::new(),
            records: Vec::with_capacity(REPLAY_BATCH_RECORDS),
            decoded: Vec::with_capacity(REPLAY_BATCH_RECORDS),
        }
    }

    /// Fills the batch from the reader; a read error ends the batch and is handed back.
    fn fill(&mut self, reader: &mut LogReader) -> Option<LogError> {
        self.payloads.clear();
        self.records.clear();
        while self.records.len() < REPLAY_BATCH_RECORDS {
            match reader.next() {
                None => break,
                Some(Err(error)) => return Some(error),
                Some(Ok(record)) => {
                    self.payloads.extend_from_slice(record.payload);
                    self.records.push((record.seq, record.timestamp, self.payloads.len()));
                }
            }
        }
        None
    }

    /// Decodes every payload of the batch. Each envelope of the last round is dropped right
    /// after its slot's new one is made, so the allocator hands the same few blocks back and
    /// forth as it does when records are decoded one at a time; dropping the whole last round
    /// first and then allocating a whole new one cost ~35% more CPU per event (glibc's per-thread
    /// cache holds only a few blocks of each size).
    fn decode(&mut self, decoder: Decoder) {
        self.decoded.truncate(self.records.len());
        let mut start = 0;
        for (record_idx, &(_, _, end)) in self.records.iter().enumerate() {
            let decoded = decoder(&self.payloads[start..end]);
            match self.decoded.get_mut(record_idx) {
                Some(slot) => *slot = decoded,
                None => self.decoded.push(decoded),
            }
            start = end;
        }
    }
}

/// Reads every record from `reader` (CRC and seq checked by the reader), decodes the payloads
/// with [`decode_envelope`] on `n_workers` threads in ordered batches of
/// [`REPLAY_BATCH_RECORDS`], and calls `on_record` on the calling thread for each record in seq
/// order — the same calls, in the same order, with equal envelopes, as reading and calling
/// `Envelope::decode` one record at a time. With `n_workers == 0` everything runs on the calling
/// thread. Stops at the first error `on_record` returns; a read error is returned (as `E::from`)
/// only after every record before it was handed over. Returns the number of records handed over.
pub fn replay_parallel<E: From<LogError>>(
    reader: &mut LogReader,
    n_workers: usize,
    on_record: impl FnMut(Seq, Timestamp, Result<&Envelope, &DecodeError>) -> Result<(), E>,
) -> Result<u64, E> {
    replay_parallel_with(reader, n_workers, decode_envelope, on_record)
}

/// [`replay_parallel`] with the payload decoder chosen by the caller.
pub fn replay_parallel_with<E: From<LogError>>(
    reader: &mut LogReader,
    n_workers: usize,
    decoder: Decoder,
    mut on_record: impl FnMut(Seq, Timestamp, Result<&Envelope, &DecodeError>) -> Result<(), E>,
) -> Result<u64, E> {
    if n_workers == 0 {
        let mut n_records = 0;
        while let Some(record) = reader.next() {
            let record = record?;
            on_record(record.seq, record.timestamp, decoder(record.payload).as_ref())?;
            n_records += 1;
        }
        return Ok(n_records);
    }
    thread::scope(|scope| {
        let mut workers = Vec::with_capacity(n_workers);
        for worker_idx in 0..n_workers {
            let (job_sender, jobs) = mpsc::channel::<ReplayBatch>();
            let (done_sender, done) = mpsc::channel::<ReplayBatch>();
            thread::Builder::new()
                .name(format!("berth-decode-{worker_idx}"))
                .spawn_scoped(scope, move || {
                    for mut batch in jobs {
                        batch.decode(decoder);
                        if done_sender.send(batch).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawn a decode thread");
            workers.push((job_sender, done));
        }
        // Two batches per worker: one being decoded while the other is folded.
        let mut spare: Vec<ReplayBatch> = (0..2 * n_workers).map(|_| ReplayBatch::new()).collect();
        let mut in_flight = VecDeque::with_capacity(2 * n_workers);
        let mut next_worker = 0;
        let mut read_error = None;
        let mut reading = true;
        let mut n_records = 0u64;
        loop {
            while reading {
                let Some(mut batch) = spare.pop() else { break };
                read_error = batch.fill(reader);
                reading = read_error.is_none() && batch.records.len() == REPLAY_BATCH_RECORDS;
                if batch.records.is_empty() {
                    reading = false;
                    spare.push(batch);
                    break;
                }
                workers[next_worker].0.send(batch).expect("decode thread is running");
                in_flight.push_back(next_worker);
                next_worker = (next_worker + 1) % n_workers;
            }
            let Some(worker_idx) = in_flight.pop_front() else { break };
            let batch = workers[worker_idx].1.recv().expect("decode thread panicked");
            for (&(seq, timestamp, _), decoded) in batch.records.iter().zip(&batch.decoded) {
                on_record(seq, timestamp, decoded.as_ref())?;
                n_records += 1;
            }
            spare.push(batch);
        }
        match read_error {
            Some(error) => Err(error.into()),
            None => Ok(n_records),
        }
    })
}
