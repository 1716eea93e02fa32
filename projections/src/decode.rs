//! Fast decoding of record payloads for replay: a borrowed view of an envelope ([`EnvelopeRef`],
//! `&str` fields read straight from the payload bytes), the owned [`Envelope`] built from it
//! ([`decode_envelope`]), [`EnvelopeDecoder`], which decodes into an envelope it reuses so replay
//! allocates nothing per record, and [`replay_parallel`], which decodes on worker threads in
//! ordered batches while the caller folds. Nothing here opens a file: `replay_parallel` pulls
//! records from a `LogReader` the caller opened.
//!
//! Invariant: [`decode_envelope`] and [`EnvelopeDecoder::decode_into`] give exactly what
//! [`Envelope::decode`] gives for every payload. The borrowed reader only accepts the canonical
//! form `Envelope::encode` writes (compact arrays of the exact length, enums as one-entry maps
//! keyed by variant name, strings as msgpack `str`, no trailing bytes, a schema this build
//! reads). Anything else — an older or hand-made encoding rmp-serde would still accept, or
//! damage — goes to `Envelope::decode`, which gives the answer and the error message.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread;

use berth_log::{LogError, LogReader, Seq, Timestamp};

use crate::error::DecodeError;
use crate::event::{ContainerRecord, Descriptor, Envelope, Event, ImageRecord, LayerRecord, Origin, EVENT_SCHEMA};

/// An envelope borrowed from a record payload. Built by [`EnvelopeRef::parse`].
#[derive(Clone, Debug, PartialEq)]
pub struct EnvelopeRef<'a> {
    pub schema: u16,
    pub namespace: &'a str,
    pub origin: OriginRef<'a>,
    // Nearly every record holds one event: keep it inline so the view allocates nothing.
    first_event: Option<EventRef<'a>>,
    more_events: Vec<EventRef<'a>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OriginRef<'a> {
    Client { uid: u32, gid: u32, pid: i32, method: &'a str, request_id: &'a str },
    Daemon { reason: &'a str, answers: Option<u64> },
}

/// [`Event`] with borrowed strings; lists and maps keep their encoded order.
#[derive(Clone, Debug, PartialEq)]
pub enum EventRef<'a> {
    NamespaceCreated { name: &'a str, labels: Vec<(&'a str, &'a str)> },
    NamespaceRemoved { name: &'a str },
    ContentAdded { digest: &'a str, size: i64, media_type: &'a str },
    ContentRemoved { digest: &'a str },
    SnapshotCommitted { chain_id: &'a str, parent: Option<&'a str>, diff_id: &'a str },
    SnapshotRemoved { chain_id: &'a str },
    ImageCreated { image: ImageRecordRef<'a> },
    ImageUpdated { image: ImageRecordRef<'a> },
    ImageRemoved { name: &'a str },
    ContainerCreated { container: ContainerRecordRef<'a> },
    ContainerDeleted { id: &'a str },
    TaskCreateRequested { container_id: &'a str },
    TaskCreated { container_id: &'a str, pid: u32, monitor_pid: i32 },
    TaskCreateFailed { container_id: &'a str, error: &'a str },
    TaskStartRequested { container_id: &'a str },
    TaskStarted { container_id: &'a str, pid: u32 },
    TaskStartFailed { container_id: &'a str, error: &'a str },
    TaskKillRequested { container_id: &'a str, signal: i32, all: bool },
    TaskKillDelivered { container_id: &'a str, signal: i32 },
    TaskKillFailed { container_id: &'a str, signal: i32, error: &'a str },
    TaskExited { container_id: &'a str, exit_code: i32, signal: i32, exited_at_ns: i64 },
    TaskDeleteRequested { container_id: &'a str, force: bool },
    TaskDeleted { container_id: &'a str, exit_code: i32 },
    TaskDeleteFailed { container_id: &'a str, error: &'a str },
    DaemonStarted { version: &'a str, pid: i32, replayed_to: u64 },
    OrphanRemoved { what: &'a str, id: &'a str },
}

#[derive(Clone, Debug, PartialEq)]
pub struct DescriptorRef<'a> {
    pub digest: &'a str,
    pub media_type: &'a str,
    pub size: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LayerRecordRef<'a> {
    pub blob: DescriptorRef<'a>,
    pub diff_id: &'a str,
    pub chain_id: &'a str,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ImageRecordRef<'a> {
    pub name: &'a str,
    pub manifest: DescriptorRef<'a>,
    pub config: DescriptorRef<'a>,
    pub layers: Vec<LayerRecordRef<'a>>,
    pub entrypoint: Vec<&'a str>,
    pub cmd: Vec<&'a str>,
    pub env: Vec<&'a str>,
    pub working_dir: &'a str,
    pub user: &'a str,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ContainerRecordRef<'a> {
    pub id: &'a str,
    pub image: &'a str,
    pub image_digest: &'a str,
    pub args: Vec<&'a str>,
    pub env: Vec<&'a str>,
    pub working_dir: &'a str,
    pub user: &'a str,
    pub hostname: &'a str,
    pub labels: Vec<(&'a str, &'a str)>,
    pub lowers: Vec<&'a str>,
    pub snapshot_key: &'a str,
}

/// The owned envelope of a payload: the borrowed reader when the payload is in canonical form,
/// else `Envelope::decode`. Same result as `Envelope::decode` for every input.
pub fn decode_envelope(payload: &[u8]) -> Result<Envelope, DecodeError> {
    match EnvelopeRef::parse(payload) {
        Some(envelope) => Ok(envelope.to_envelope()),
        None => Envelope::decode(payload),
    }
}

impl<'a> EnvelopeRef<'a> {
    /// Reads a payload in the canonical form `Envelope::encode` writes. `None` means "not
    /// canonical" (or damaged, or from a newer schema): ask `Envelope::decode`, which knows
    /// every form rmp-serde accepts and says what is wrong.
    pub fn parse(payload: &'a [u8]) -> Option<EnvelopeRef<'a>> {
        let mut cursor = Cursor { bytes: payload, position: 0 };
        cursor.expect_array(4)?;
        let schema = cursor.integer::<u16>()?;
        if schema > EVENT_SCHEMA {
            return None;
        }
        let namespace = cursor.str()?;
        let origin = cursor.origin()?;
        let n_events = cursor.array_len()?;
        let mut first_event = None;
        let mut more_events = Vec::new();
        for index in 0..n_events {
            let event = cursor.event()?;
            if index == 0 {
                first_event = Some(event);
            } else {
                more_events.push(event);
            }
        }
        if cursor.position != payload.len() {
            return None; // rmp-serde ignores trailing bytes; leave that judgement to it
        }
        Some(EnvelopeRef { schema, namespace, origin, first_event, more_events })
    }

    pub fn events(&self) -> impl Iterator<Item = &EventRef<'a>> {
        self.first_event.iter().chain(self.more_events.iter())
    }

    pub fn n_events(&self) -> usize {
        self.first_event.is_some() as usize + self.more_events.len()
    }

    pub fn to_envelope(&self) -> Envelope {
        let mut events = Vec::with_capacity(self.n_events());
        events.extend(self.events().map(EventRef::to_event));
        Envelope { schema: self.schema, namespace: self.namespace.to_owned(), origin: self.origin.to_origin(), events }
    }
}

impl OriginRef<'_> {
    pub fn to_origin(&self) -> Origin {
        match *self {
            OriginRef::Client { uid, gid, pid, method, request_id } => {
                Origin::Client { uid, gid, pid, method: method.to_owned(), request_id: request_id.to_owned() }
            }
            OriginRef::Daemon { reason, answers } => Origin::Daemon { reason: reason.to_owned(), answers: answers.map(Seq) },
        }
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|item| (*item).to_owned()).collect()
}

fn string_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    // Later duplicates win, as when serde fills the map.
    pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
}

impl DescriptorRef<'_> {
    pub fn to_descriptor(&self) -> Descriptor {
        Descriptor { digest: self.digest.to_owned(), media_type: self.media_type.to_owned(), size: self.size }
    }
}

impl ImageRecordRef<'_> {
    pub fn to_image_record(&self) -> ImageRecord {
        ImageRecord {
            name: self.name.to_owned(),
            manifest: self.manifest.to_descriptor(),
            config: self.config.to_descriptor(),
            layers: self
                .layers
                .iter()
                .map(|layer| LayerRecord {
                    blob: layer.blob.to_descriptor(),
                    diff_id: layer.diff_id.to_owned(),
                    chain_id: layer.chain_id.to_owned(),
                })
                .collect(),
            entrypoint: strings(&self.entrypoint),
            cmd: strings(&self.cmd),
            env: strings(&self.env),
            working_dir: self.working_dir.to_owned(),
            user: self.user.to_owned(),
        }
    }
}

impl ContainerRecordRef<'_> {
    pub fn to_container_record(&self) -> ContainerRecord {
        ContainerRecord {
            id: self.id.to_owned(),
            image: self.image.to_owned(),
            image_digest: self.image_digest.to_owned(),
            args: strings(&self.args),
            env: strings(&self.env),
            working_dir: self.working_dir.to_owned(),
            user: self.user.to_owned(),
            hostname: self.hostname.to_owned(),
            labels: string_map(&self.labels),
            lowers: strings(&self.lowers),
            snapshot_key: self.snapshot_key.to_owned(),
        }
    }
}

impl EventRef<'_> {
    pub fn to_event(&self) -> Event {
        let own = |text: &str| text.to_owned();
        match *self {
            EventRef::NamespaceCreated { name, ref labels } => Event::NamespaceCreated { name: own(name), labels: string_map(labels) },
            EventRef::NamespaceRemoved { name } => Event::NamespaceRemoved { name: own(name) },
            EventRef::ContentAdded { digest, size, media_type } => {
                Event::ContentAdded { digest: own(digest), size, media_type: own(media_type) }
            }
            EventRef::ContentRemoved { digest } => Event::ContentRemoved { digest: own(digest) },
            EventRef::SnapshotCommitted { chain_id, parent, diff_id } => {
                Event::SnapshotCommitted { chain_id: own(chain_id), parent: parent.map(own), diff_id: own(diff_id) }
            }
            EventRef::SnapshotRemoved { chain_id } => Event::SnapshotRemoved { chain_id: own(chain_id) },
            EventRef::ImageCreated { ref image } => Event::ImageCreated { image: image.to_image_record() },
            EventRef::ImageUpdated { ref image } => Event::ImageUpdated { image: image.to_image_record() },
            EventRef::ImageRemoved { name } => Event::ImageRemoved { name: own(name) },
            EventRef::ContainerCreated { ref container } => Event::ContainerCreated { container: container.to_container_record() },
            EventRef::ContainerDeleted { id } => Event::ContainerDeleted { id: own(id) },
            EventRef::TaskCreateRequested { container_id } => Event::TaskCreateRequested { container_id: own(container_id) },
            EventRef::TaskCreated { container_id, pid, monitor_pid } => {
                Event::TaskCreated { container_id: own(container_id), pid, monitor_pid }
            }
            EventRef::TaskCreateFailed { container_id, error } => {
                Event::TaskCreateFailed { container_id: own(container_id), error: own(error) }
            }
            EventRef::TaskStartRequested { container_id } => Event::TaskStartRequested { container_id: own(container_id) },
            EventRef::TaskStarted { container_id, pid } => Event::TaskStarted { container_id: own(container_id), pid },
            EventRef::TaskStartFailed { container_id, error } => {
                Event::TaskStartFailed { container_id: own(container_id), error: own(error) }
            }
            EventRef::TaskKillRequested { container_id, signal, all } => {
                Event::TaskKillRequested { container_id: own(container_id), signal, all }
            }
            EventRef::TaskKillDelivered { container_id, signal } => {
                Event::TaskKillDelivered { container_id: own(container_id), signal }
            }
            EventRef::TaskKillFailed { container_id, signal, error } => {
                Event::TaskKillFailed { container_id: own(container_id), signal, error: own(error) }
            }
            EventRef::TaskExited { container_id, exit_code, signal, exited_at_ns } => {
                Event::TaskExited { container_id: own(container_id), exit_code, signal, exited_at_ns: Timestamp::from_signed_ns(exited_at_ns).unwrap_or_default() }
            }
            EventRef::TaskDeleteRequested { container_id, force } => {
                Event::TaskDeleteRequested { container_id: own(container_id), force }
            }
            EventRef::TaskDeleted { container_id, exit_code } => Event::TaskDeleted { container_id: own(container_id), exit_code },
            EventRef::TaskDeleteFailed { container_id, error } => {
                Event::TaskDeleteFailed { container_id: own(container_id), error: own(error) }
            }
            EventRef::DaemonStarted { version, pid, replayed_to } => Event::DaemonStarted { version: own(version), pid, replayed_to: Seq(replayed_to) },
            EventRef::OrphanRemoved { what, id } => Event::OrphanRemoved { what: own(what), id: own(id) },
        }
    }
}

/// Decodes payloads into an [`Envelope`] the caller keeps, reusing that envelope's strings and
/// vectors (and a small stock of spare strings): once warm, a replay of ordinary records
/// allocates and frees nothing per record, which is most of what an owned decode costs.
#[derive(Default)]
pub struct EnvelopeDecoder {
    spare: Vec<String>,
}

/// Spare strings kept between records, and the largest one kept: enough for any ordinary
/// record's strings; a huge string is freed instead of being carried along.
const MAX_SPARE_STRINGS: usize = 64;
const MAX_SPARE_CAPACITY: usize = 4096;

impl EnvelopeDecoder {
    pub fn new() -> EnvelopeDecoder {
        EnvelopeDecoder::default()
    }

    /// An empty envelope to decode into.
    pub fn empty_envelope() -> Envelope {
        Envelope { schema: 0, namespace: String::new(), origin: Origin::Daemon { reason: String::new(), answers: None }, events: Vec::new() }
    }

    /// Overwrites `envelope` with the payload's envelope: afterwards `*envelope` equals
    /// `Envelope::decode(payload)?`, whatever it held before. On error it is left as it was.
    pub fn decode_into(&mut self, payload: &[u8], envelope: &mut Envelope) -> Result<(), DecodeError> {
        match EnvelopeRef::parse(payload) {
            Some(borrowed) => {
                self.fill(&borrowed, envelope);
                Ok(())
            }
            None => {
                let decoded = Envelope::decode(payload)?;
                self.recycle_envelope(std::mem::replace(envelope, decoded));
                Ok(())
            }
        }
    }

    fn fill(&mut self, borrowed: &EnvelopeRef<'_>, envelope: &mut Envelope) {
        envelope.schema = borrowed.schema;
        overwrite(&mut envelope.namespace, borrowed.namespace);
        match (&mut envelope.origin, &borrowed.origin) {
            (Origin::Client { uid, gid, pid, method, request_id }, &OriginRef::Client { uid: new_uid, gid: new_gid, pid: new_pid, method: new_method, request_id: new_request_id }) => {
                (*uid, *gid, *pid) = (new_uid, new_gid, new_pid);
                overwrite(method, new_method);
                overwrite(request_id, new_request_id);
            }
            (Origin::Daemon { reason, answers }, &OriginRef::Daemon { reason: new_reason, answers: new_answers }) => {
                overwrite(reason, new_reason);
                *answers = new_answers.map(Seq);
            }
            (origin, borrowed_origin) => {
                let new_origin = match *borrowed_origin {
                    OriginRef::Client { uid, gid, pid, method, request_id } => {
                        Origin::Client { uid, gid, pid, method: self.string(method), request_id: self.string(request_id) }
                    }
                    OriginRef::Daemon { reason, answers } => Origin::Daemon { reason: self.string(reason), answers: answers.map(Seq) },
                };
                let old_origin = std::mem::replace(origin, new_origin);
                self.recycle_origin(old_origin);
            }
        }
        // Events are big (a ContainerRecord is inline): overwrite them where they are.
        let n_events = borrowed.n_events();
        for old_event in envelope.events.drain(n_events.min(envelope.events.len())..) {
            self.recycle_event(old_event);
        }
        for (event_idx, event) in borrowed.events().enumerate() {
            match envelope.events.get_mut(event_idx) {
                Some(slot) => self.fill_event(slot, event),
                None => {
                    let event = self.event(event);
                    envelope.events.push(event);
                }
            }
        }
    }

    /// Overwrites `slot` with `event`: field by field when both are the same kind of small
    /// event (the common case in a replay), else by replacing it.
    fn fill_event(&mut self, slot: &mut Event, event: &EventRef<'_>) {
        match (slot, event) {
            (Event::ContainerDeleted { id }, &EventRef::ContainerDeleted { id: new_id }) => overwrite(id, new_id),
            (Event::TaskCreateRequested { container_id }, &EventRef::TaskCreateRequested { container_id: new_id })
            | (Event::TaskStartRequested { container_id }, &EventRef::TaskStartRequested { container_id: new_id }) => {
                overwrite(container_id, new_id)
            }
            (Event::TaskCreated { container_id, pid, monitor_pid }, &EventRef::TaskCreated { container_id: new_id, pid: new_pid, monitor_pid: new_monitor_pid }) => {
                overwrite(container_id, new_id);
                (*pid, *monitor_pid) = (new_pid, new_monitor_pid);
            }
            (Event::TaskStarted { container_id, pid }, &EventRef::TaskStarted { container_id: new_id, pid: new_pid }) => {
                overwrite(container_id, new_id);
                *pid = new_pid;
            }
            (Event::TaskCreateFailed { container_id, error }, &EventRef::TaskCreateFailed { container_id: new_id, error: new_error })
            | (Event::TaskStartFailed { container_id, error }, &EventRef::TaskStartFailed { container_id: new_id, error: new_error })
            | (Event::TaskDeleteFailed { container_id, error }, &EventRef::TaskDeleteFailed { container_id: new_id, error: new_error }) => {
                overwrite(container_id, new_id);
                overwrite(error, new_error);
            }
            (Event::TaskKillRequested { container_id, signal, all }, &EventRef::TaskKillRequested { container_id: new_id, signal: new_signal, all: new_all }) => {
                overwrite(container_id, new_id);
                (*signal, *all) = (new_signal, new_all);
            }
            (Event::TaskKillDelivered { container_id, signal }, &EventRef::TaskKillDelivered { container_id: new_id, signal: new_signal }) => {
                overwrite(container_id, new_id);
                *signal = new_signal;
            }
            (Event::TaskKillFailed { container_id, signal, error }, &EventRef::TaskKillFailed { container_id: new_id, signal: new_signal, error: new_error }) => {
                overwrite(container_id, new_id);
                *signal = new_signal;
                overwrite(error, new_error);
            }
            (
                Event::TaskExited { container_id, exit_code, signal, exited_at_ns },
                &EventRef::TaskExited { container_id: new_id, exit_code: new_exit_code, signal: new_signal, exited_at_ns: new_exited_at_ns },
            ) => {
                overwrite(container_id, new_id);
                (*exit_code, *signal, *exited_at_ns) = (new_exit_code, new_signal, Timestamp::from_signed_ns(new_exited_at_ns).unwrap_or_default());
            }
            (Event::TaskDeleteRequested { container_id, force }, &EventRef::TaskDeleteRequested { container_id: new_id, force: new_force }) => {
                overwrite(container_id, new_id);
                *force = new_force;
            }
            (Event::TaskDeleted { container_id, exit_code }, &EventRef::TaskDeleted { container_id: new_id, exit_code: new_exit_code }) => {
                overwrite(container_id, new_id);
                *exit_code = new_exit_code;
            }
            (slot, _) => {
                let new_event = self.event(event);
                let old_event = std::mem::replace(slot, new_event);
                self.recycle_event(old_event);
            }
        }
    }

    fn string(&mut self, text: &str) -> String {
        match self.spare.pop() {
            Some(mut string) => {
                overwrite(&mut string, text);
                string
            }
            None => text.to_owned(),
        }
    }

    fn keep(&mut self, string: String) {
        if self.spare.len() < MAX_SPARE_STRINGS && string.capacity() <= MAX_SPARE_CAPACITY {
            self.spare.push(string);
        }
    }

    fn recycle_origin(&mut self, origin: Origin) {
        match origin {
            Origin::Client { method, request_id, .. } => {
                self.keep(method);
                self.keep(request_id);
            }
            Origin::Daemon { reason, .. } => self.keep(reason),
        }
    }

    fn recycle_envelope(&mut self, envelope: Envelope) {
        self.keep(envelope.namespace);
        self.recycle_origin(envelope.origin);
        for event in envelope.events {
            self.recycle_event(event);
        }
    }

    /// Keeps the strings of the events replay sees most; the rare big ones are just dropped.
    fn recycle_event(&mut self, event: Event) {
        match event {
            Event::ContainerDeleted { id: container_id }
            | Event::TaskCreateRequested { container_id }
            | Event::TaskCreated { container_id, .. }
            | Event::TaskStartRequested { container_id }
            | Event::TaskStarted { container_id, .. }
            | Event::TaskKillRequested { container_id, .. }
            | Event::TaskKillDelivered { container_id, .. }
            | Event::TaskExited { container_id, .. }
            | Event::TaskDeleteRequested { container_id, .. }
            | Event::TaskDeleted { container_id, .. } => self.keep(container_id),
            Event::TaskCreateFailed { container_id, error }
            | Event::TaskStartFailed { container_id, error }
            | Event::TaskKillFailed { container_id, error, .. }
            | Event::TaskDeleteFailed { container_id, error } => {
                self.keep(container_id);
                self.keep(error);
            }
            _ => {}
        }
    }

    fn event(&mut self, event: &EventRef<'_>) -> Event {
        match *event {
            EventRef::ContainerDeleted { id } => Event::ContainerDeleted { id: self.string(id) },
            EventRef::TaskCreateRequested { container_id } => Event::TaskCreateRequested { container_id: self.string(container_id) },
            EventRef::TaskCreated { container_id, pid, monitor_pid } => {
                Event::TaskCreated { container_id: self.string(container_id), pid, monitor_pid }
            }
            EventRef::TaskCreateFailed { container_id, error } => {
                Event::TaskCreateFailed { container_id: self.string(container_id), error: self.string(error) }
            }
            EventRef::TaskStartRequested { container_id } => Event::TaskStartRequested { container_id: self.string(container_id) },
            EventRef::TaskStarted { container_id, pid } => Event::TaskStarted { container_id: self.string(container_id), pid },
            EventRef::TaskStartFailed { container_id, error } => {
                Event::TaskStartFailed { container_id: self.string(container_id), error: self.string(error) }
            }
            EventRef::TaskKillRequested { container_id, signal, all } => {
                Event::TaskKillRequested { container_id: self.string(container_id), signal, all }
            }
            EventRef::TaskKillDelivered { container_id, signal } => {
                Event::TaskKillDelivered { container_id: self.string(container_id), signal }
            }
            EventRef::TaskKillFailed { container_id, signal, error } => {
                Event::TaskKillFailed { container_id: self.string(container_id), signal, error: self.string(error) }
            }
            EventRef::TaskExited { container_id, exit_code, signal, exited_at_ns } => {
                Event::TaskExited { container_id: self.string(container_id), exit_code, signal, exited_at_ns: Timestamp::from_signed_ns(exited_at_ns).unwrap_or_default() }
            }
            EventRef::TaskDeleteRequested { container_id, force } => {
                Event::TaskDeleteRequested { container_id: self.string(container_id), force }
            }
            EventRef::TaskDeleted { container_id, exit_code } => Event::TaskDeleted { container_id: self.string(container_id), exit_code },
            EventRef::TaskDeleteFailed { container_id, error } => {
                Event::TaskDeleteFailed { container_id: self.string(container_id), error: self.string(error) }
            }
            ref other => other.to_event(),
        }
    }
}

/// `*string = text.to_owned()`, in the allocation `string` already has when it is big enough.
#[inline]
fn overwrite(string: &mut String, text: &str) {
    string.clear();
    string.push_str(text);
}

/// Records per batch handed to a decode worker: big enough that the channel round trip and the
/// wake-up are noise (~100 µs of decoding each), small enough that a batch's payloads and
/// envelopes (~0.5 MiB) stay in a core's L2 between decode and fold.
pub const REPLAY_BATCH_RECORDS: usize = 1024;

/// One batch of records on its way through [`replay_parallel`]: payloads copied out of the map
/// (a `Record` borrows the reader, so records cannot be held across `next`), then their decoded
/// envelopes. Batches and their envelopes are reused, so the heap stays the same size however
/// long the log is.
struct ReplayBatch {
    payloads: Vec<u8>,
    /// (seq, timestamp_ns, end of the payload in `payloads`)
    records: Vec<(Seq, u64, usize)>,
    envelopes: Vec<Envelope>,
    results: Vec<Result<(), DecodeError>>,
}

impl ReplayBatch {
    fn new() -> ReplayBatch {
        ReplayBatch {
            payloads: Vec::new(),
            records: Vec::with_capacity(REPLAY_BATCH_RECORDS),
            envelopes: Vec::with_capacity(REPLAY_BATCH_RECORDS),
            results: Vec::with_capacity(REPLAY_BATCH_RECORDS),
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
                    self.records.push((record.seq, record.timestamp.as_ns(), self.payloads.len()));
                }
            }
        }
        None
    }

    fn decode(&mut self, decoder: &mut EnvelopeDecoder) {
        self.results.clear();
        let mut start = 0;
        for (record_idx, &(_, _, end)) in self.records.iter().enumerate() {
            if record_idx == self.envelopes.len() {
                self.envelopes.push(EnvelopeDecoder::empty_envelope());
            }
            self.results.push(decoder.decode_into(&self.payloads[start..end], &mut self.envelopes[record_idx]));
            start = end;
        }
    }
}

/// Reads every record from `reader` (CRC and seq checked by the reader), decodes the payloads
/// on `n_workers` threads in ordered batches of [`REPLAY_BATCH_RECORDS`], and calls `on_record`
/// on the calling thread for each record in seq order — the same calls, in the same order, with
/// equal envelopes, as reading and calling `Envelope::decode` one record at a time. With
/// `n_workers == 0` everything runs on the calling thread. Stops at the first error `on_record`
/// returns; a read error is returned (as `E::from`) only after every record before it was
/// handed over. Returns the number of records handed over.
pub fn replay_parallel<E: From<LogError>>(
    reader: &mut LogReader,
    n_workers: usize,
    mut on_record: impl FnMut(Seq, Timestamp, Result<&Envelope, &DecodeError>) -> Result<(), E>,
) -> Result<u64, E> {
    if n_workers == 0 {
        let mut decoder = EnvelopeDecoder::new();
        let mut envelope = EnvelopeDecoder::empty_envelope();
        let mut n_records = 0;
        while let Some(record) = reader.next() {
            let record = record?;
            let decoded = decoder.decode_into(record.payload, &mut envelope);
            on_record(record.seq, record.timestamp, decoded.as_ref().map(|()| &envelope))?;
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
                    let mut decoder = EnvelopeDecoder::new();
                    for mut batch in jobs {
                        batch.decode(&mut decoder);
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
        let mut in_flight = std::collections::VecDeque::with_capacity(2 * n_workers);
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
            for ((&(seq, timestamp_ns, _), result), envelope) in batch.records.iter().zip(&batch.results).zip(&batch.envelopes) {
                on_record(seq, Timestamp::from_ns(timestamp_ns), result.as_ref().map(|()| envelope))?;
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

/// A msgpack reader over one payload that understands only the canonical encoding; every method
/// returns `None` for anything else.
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.position)?;
        self.position += 1;
        Some(byte)
    }

    #[inline]
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.position.checked_add(len)?;
        let taken = self.bytes.get(self.position..end)?;
        self.position = end;
        Some(taken)
    }

    #[inline]
    fn be<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    #[inline]
    fn array_len(&mut self) -> Option<u32> {
        match self.byte()? {
            marker @ 0x90..=0x9f => Some(u32::from(marker & 0x0f)),
            0xdc => Some(u32::from(u16::from_be_bytes(self.be()?))),
            0xdd => Some(u32::from_be_bytes(self.be()?)),
            _ => None,
        }
    }

    #[inline]
    fn expect_array(&mut self, len: u32) -> Option<()> {
        (self.array_len()? == len).then_some(())
    }

    #[inline]
    fn map_len(&mut self) -> Option<u32> {
        match self.byte()? {
            marker @ 0x80..=0x8f => Some(u32::from(marker & 0x0f)),
            0xde => Some(u32::from(u16::from_be_bytes(self.be()?))),
            0xdf => Some(u32::from_be_bytes(self.be()?)),
            _ => None,
        }
    }

    #[inline]
    fn str(&mut self) -> Option<&'a str> {
        let len = match self.byte()? {
            marker @ 0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => usize::from(u16::from_be_bytes(self.be()?)),
            0xdb => u32::from_be_bytes(self.be()?) as usize,
            _ => return None,
        };
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn option_str(&mut self) -> Option<Option<&'a str>> {
        if self.bytes.get(self.position) == Some(&0xc0) {
            self.position += 1;
            return Some(None);
        }
        self.str().map(Some)
    }

    fn str_list(&mut self) -> Option<Vec<&'a str>> {
        let len = self.array_len()?;
        // Never trust a length for an allocation: each element takes at least one byte.
        let mut list = Vec::with_capacity((len as usize).min(self.bytes.len() - self.position));
        for _ in 0..len {
            list.push(self.str()?);
        }
        Some(list)
    }

    fn str_map(&mut self) -> Option<Vec<(&'a str, &'a str)>> {
        let len = self.map_len()?;
        let mut pairs = Vec::with_capacity((len as usize).min((self.bytes.len() - self.position) / 2));
        for _ in 0..len {
            pairs.push((self.str()?, self.str()?));
        }
        Some(pairs)
    }

    /// Any msgpack integer that fits `T`, as serde's integer visitors accept.
    #[inline]
    fn integer<T: TryFrom<i64> + TryFrom<u64>>(&mut self) -> Option<T> {
        match self.byte()? {
            marker @ 0x00..=0x7f => T::try_from(u64::from(marker)).ok(),
            marker @ 0xe0..=0xff => T::try_from(i64::from(marker as i8)).ok(),
            0xcc => T::try_from(u64::from(self.byte()?)).ok(),
            0xcd => T::try_from(u64::from(u16::from_be_bytes(self.be()?))).ok(),
            0xce => T::try_from(u64::from(u32::from_be_bytes(self.be()?))).ok(),
            0xcf => T::try_from(u64::from_be_bytes(self.be()?)).ok(),
            0xd0 => T::try_from(i64::from(self.byte()? as i8)).ok(),
            0xd1 => T::try_from(i64::from(i16::from_be_bytes(self.be()?))).ok(),
            0xd2 => T::try_from(i64::from(i32::from_be_bytes(self.be()?))).ok(),
            0xd3 => T::try_from(i64::from_be_bytes(self.be()?)).ok(),
            _ => None,
        }
    }

    fn option_u64(&mut self) -> Option<Option<u64>> {
        if self.bytes.get(self.position) == Some(&0xc0) {
            self.position += 1;
            return Some(None);
        }
        self.integer().map(Some)
    }

    fn bool(&mut self) -> Option<bool> {
        match self.byte()? {
            0xc2 => Some(false),
            0xc3 => Some(true),
            _ => None,
        }
    }

    /// An enum value: a one-entry map from the variant name to the variant's field array, whose
    /// length is checked against `n_fields(name)`.
    #[inline]
    fn variant(&mut self) -> Option<&'a str> {
        if self.map_len()? != 1 {
            return None;
        }
        self.str()
    }

    fn origin(&mut self) -> Option<OriginRef<'a>> {
        match self.variant()? {
            "Client" => {
                self.expect_array(5)?;
                Some(OriginRef::Client {
                    uid: self.integer()?,
                    gid: self.integer()?,
                    pid: self.integer()?,
                    method: self.str()?,
                    request_id: self.str()?,
                })
            }
            "Daemon" => {
                self.expect_array(2)?;
                Some(OriginRef::Daemon { reason: self.str()?, answers: self.option_u64()? })
            }
            _ => None,
        }
    }

    fn descriptor(&mut self) -> Option<DescriptorRef<'a>> {
        self.expect_array(3)?;
        Some(DescriptorRef { digest: self.str()?, media_type: self.str()?, size: self.integer()? })
    }

    fn image_record(&mut self) -> Option<ImageRecordRef<'a>> {
        self.expect_array(9)?;
        let name = self.str()?;
        let manifest = self.descriptor()?;
        let config = self.descriptor()?;
        let n_layers = self.array_len()?;
        let mut layers = Vec::with_capacity((n_layers as usize).min(self.bytes.len() - self.position));
        for _ in 0..n_layers {
            self.expect_array(3)?;
            layers.push(LayerRecordRef { blob: self.descriptor()?, diff_id: self.str()?, chain_id: self.str()? });
        }
        Some(ImageRecordRef {
            name,
            manifest,
            config,
            layers,
            entrypoint: self.str_list()?,
            cmd: self.str_list()?,
            env: self.str_list()?,
            working_dir: self.str()?,
            user: self.str()?,
        })
    }

    fn container_record(&mut self) -> Option<ContainerRecordRef<'a>> {
        self.expect_array(11)?;
        Some(ContainerRecordRef {
            id: self.str()?,
            image: self.str()?,
            image_digest: self.str()?,
            args: self.str_list()?,
            env: self.str_list()?,
            working_dir: self.str()?,
            user: self.str()?,
            hostname: self.str()?,
            labels: self.str_map()?,
            lowers: self.str_list()?,
            snapshot_key: self.str()?,
        })
    }

    fn event(&mut self) -> Option<EventRef<'a>> {
        let name = self.variant()?;
        // Struct fields are read in declaration order (the struct expressions below evaluate
        // left to right), which is the order serde wrote them.
        let event = match name {
            "NamespaceCreated" => {
                self.expect_array(2)?;
                EventRef::NamespaceCreated { name: self.str()?, labels: self.str_map()? }
            }
            "NamespaceRemoved" => {
                self.expect_array(1)?;
                EventRef::NamespaceRemoved { name: self.str()? }
            }
            "ContentAdded" => {
                self.expect_array(3)?;
                EventRef::ContentAdded { digest: self.str()?, size: self.integer()?, media_type: self.str()? }
            }
            "ContentRemoved" => {
                self.expect_array(1)?;
                EventRef::ContentRemoved { digest: self.str()? }
            }
            "SnapshotCommitted" => {
                self.expect_array(3)?;
                EventRef::SnapshotCommitted { chain_id: self.str()?, parent: self.option_str()?, diff_id: self.str()? }
            }
            "SnapshotRemoved" => {
                self.expect_array(1)?;
                EventRef::SnapshotRemoved { chain_id: self.str()? }
            }
            "ImageCreated" => {
                self.expect_array(1)?;
                EventRef::ImageCreated { image: self.image_record()? }
            }
            "ImageUpdated" => {
                self.expect_array(1)?;
                EventRef::ImageUpdated { image: self.image_record()? }
            }
            "ImageRemoved" => {
                self.expect_array(1)?;
                EventRef::ImageRemoved { name: self.str()? }
            }
            "ContainerCreated" => {
                self.expect_array(1)?;
                EventRef::ContainerCreated { container: self.container_record()? }
            }
            "ContainerDeleted" => {
                self.expect_array(1)?;
                EventRef::ContainerDeleted { id: self.str()? }
            }
            "TaskCreateRequested" => {
                self.expect_array(1)?;
                EventRef::TaskCreateRequested { container_id: self.str()? }
            }
            "TaskCreated" => {
                self.expect_array(3)?;
                EventRef::TaskCreated { container_id: self.str()?, pid: self.integer()?, monitor_pid: self.integer()? }
            }
            "TaskCreateFailed" => {
                self.expect_array(2)?;
                EventRef::TaskCreateFailed { container_id: self.str()?, error: self.str()? }
            }
            "TaskStartRequested" => {
                self.expect_array(1)?;
                EventRef::TaskStartRequested { container_id: self.str()? }
            }
            "TaskStarted" => {
                self.expect_array(2)?;
                EventRef::TaskStarted { container_id: self.str()?, pid: self.integer()? }
            }
            "TaskStartFailed" => {
                self.expect_array(2)?;
                EventRef::TaskStartFailed { container_id: self.str()?, error: self.str()? }
            }
            "TaskKillRequested" => {
                self.expect_array(3)?;
                EventRef::TaskKillRequested { container_id: self.str()?, signal: self.integer()?, all: self.bool()? }
            }
            "TaskKillDelivered" => {
                self.expect_array(2)?;
                EventRef::TaskKillDelivered { container_id: self.str()?, signal: self.integer()? }
            }
            "TaskKillFailed" => {
                self.expect_array(3)?;
                EventRef::TaskKillFailed { container_id: self.str()?, signal: self.integer()?, error: self.str()? }
            }
            "TaskExited" => {
                self.expect_array(4)?;
                EventRef::TaskExited {
                    container_id: self.str()?,
                    exit_code: self.integer()?,
                    signal: self.integer()?,
                    exited_at_ns: self.integer()?,
                }
            }
            "TaskDeleteRequested" => {
                self.expect_array(2)?;
                EventRef::TaskDeleteRequested { container_id: self.str()?, force: self.bool()? }
            }
            "TaskDeleted" => {
                self.expect_array(2)?;
                EventRef::TaskDeleted { container_id: self.str()?, exit_code: self.integer()? }
            }
            "TaskDeleteFailed" => {
                self.expect_array(2)?;
                EventRef::TaskDeleteFailed { container_id: self.str()?, error: self.str()? }
            }
            "DaemonStarted" => {
                self.expect_array(3)?;
                EventRef::DaemonStarted { version: self.str()?, pid: self.integer()?, replayed_to: self.integer()? }
            }
            "OrphanRemoved" => {
                self.expect_array(2)?;
                EventRef::OrphanRemoved { what: self.str()?, id: self.str()? }
            }
            _ => return None,
        };
        Some(event)
    }
}
