//! The realistic log generator shared by the replay and start-up benchmarks: envelopes as a busy
//! daemon writes them (client intents with SO_PEERCRED origins, gRPC methods and request ids,
//! answered by daemon outcomes) over many interleaved container lifecycles. Included with
//! `mod generator;` here and `#[path]` from runtime/benches/startup.rs.

// Each bench uses its own part of this file.
#![allow(dead_code)]

use berth_log::EventLog;
use berth_projections::{ContainerRecord, Descriptor, Envelope, Event, ImageRecord, LayerRecord, Origin};

pub const APPEND_BATCH: usize = 256;
/// Containers alive at once; each goes through a whole lifecycle and is deleted, so the state
/// stays this small however long the log is.
pub const LIVE_CONTAINERS: usize = 64;

/// A small deterministic generator (xorshift64*), so every run writes the same log.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn hex(&mut self, len: usize) -> String {
        let mut text = String::with_capacity(len);
        while text.len() < len {
            text.push_str(&format!("{:016x}", self.next()));
        }
        text.truncate(len);
        text
    }
}

/// One container working through its lifecycle, one record per step.
struct Slot {
    id: String,
    step: usize,
    /// Seq of the intent the next daemon outcome answers.
    intent_seq: u64,
    fails_to_start: bool,
}

/// Writes envelopes that look like a busy daemon's: client intents (SO_PEERCRED origin, gRPC
/// method, request id) answered by daemon outcomes, over many interleaved container lifecycles.
struct LogWriter {
    rng: Rng,
    slots: Vec<Slot>,
    next_seq: u64,
    image_digest: String,
    chain_ids: Vec<String>,
}

const BUSYBOX: &str = "docker.io/library/busybox:latest";

impl LogWriter {
    fn new() -> LogWriter {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let image_digest = format!("sha256:{}", rng.hex(64));
        let chain_ids = (0..2).map(|_| format!("sha256:{}", rng.hex(64))).collect();
        LogWriter { rng, slots: Vec::new(), next_seq: 1, image_digest, chain_ids }
    }

    fn client(&mut self, method: &str) -> Origin {
        let request_id = format!(
            "berth-cli-{}-{}-4{}-{}-{}",
            self.rng.hex(8),
            self.rng.hex(4),
            self.rng.hex(3),
            self.rng.hex(4),
            self.rng.hex(12)
        );
        Origin::Client {
            uid: 0,
            gid: 0,
            pid: 1000 + self.rng.below(60_000) as i32,
            method: format!("/containerd.services.{method}"),
            request_id,
        }
    }

    fn daemon(reason: &str, answers: Option<u64>) -> Origin {
        Origin::Daemon { reason: reason.to_string(), answers: answers.map(berth_log::Seq) }
    }

    fn first_record(&mut self) -> Envelope {
        let layer = |chain_id: &String| LayerRecord {
            blob: Descriptor {
                digest: chain_id.clone(),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                size: 2_155_123,
            },
            diff_id: chain_id.clone(),
            chain_id: chain_id.clone(),
        };
        let image = ImageRecord {
            name: BUSYBOX.into(),
            manifest: Descriptor {
                digest: self.image_digest.clone(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: 610,
            },
            config: Descriptor {
                digest: format!("sha256:{}", self.rng.hex(64)),
                media_type: "application/vnd.oci.image.config.v1+json".into(),
                size: 1_457,
            },
            layers: self.chain_ids.iter().map(layer).collect(),
            cmd: vec!["sh".into()],
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            ..ImageRecord::default()
        };
        let mut events = vec![Event::NamespaceCreated { name: "default".into(), labels: Default::default() }];
        let mut parent = None;
        for chain_id in &self.chain_ids {
            events.push(Event::SnapshotCommitted {
                chain_id: chain_id.clone(),
                parent: parent.clone(),
                diff_id: chain_id.clone(),
            });
            parent = Some(chain_id.clone());
        }
        events.push(Event::ImageCreated { image });
        Envelope::new("default", self.client("images.v1.Images/Create"), events)
    }

    fn container_created(&mut self, id: &str) -> Envelope {
        let container = ContainerRecord {
            id: id.to_string(),
            image: BUSYBOX.into(),
            image_digest: self.image_digest.clone(),
            args: vec!["/bin/sh".into(), "-c".into(), format!("while sleep {}; do date; done", 1 + self.rng.below(9))],
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                format!("HOSTNAME={id}"),
                "TERM=xterm".into(),
            ],
            working_dir: "/".into(),
            user: "0:0".into(),
            hostname: id.to_string(),
            labels: [
                ("io.berth.created-by", "berth run".to_string()),
                ("io.berth.image.ref", BUSYBOX.to_string()),
                ("org.opencontainers.image.created", "2024-09-26T21:31:42Z".to_string()),
                ("com.example.team", format!("team-{}", self.rng.below(40))),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
            lowers: self.chain_ids.clone(),
            snapshot_key: id.to_string(),
            open_stdin: false,
            tty: false,
            policies: Default::default(),
            ..ContainerRecord::default()
        };
        Envelope::new(
            "default",
            self.client("containers.v1.Containers/Create"),
            vec![Event::ContainerCreated { container }],
        )
    }

    /// The next record of a random live container (a new container takes a finished one's slot).
    fn next_record(&mut self) -> Envelope {
        let seq = self.next_seq;
        self.next_seq += 1;
        if seq == 1 {
            return self.first_record();
        }
        if seq.is_multiple_of(100_000) {
            return Envelope::new(
                "",
                Self::daemon("started", None),
                vec![Event::DaemonStarted { version: "0.1.0".into(), pid: 4242, replayed_to: berth_log::Seq(seq - 1) }],
            );
        }
        if self.slots.len() < LIVE_CONTAINERS {
            self.slots.push(Slot { id: String::new(), step: 0, intent_seq: 0, fails_to_start: false });
        }
        let slot_idx = self.rng.below(self.slots.len() as u64) as usize;
        let step = self.slots[slot_idx].step;
        if step == 0 {
            let id = self.rng.hex(12);
            let fails_to_start = self.rng.below(50) == 0;
            self.slots[slot_idx] = Slot { id: id.clone(), step: 1, intent_seq: 0, fails_to_start };
            return self.container_created(&id);
        }
        let Slot { id, intent_seq, fails_to_start, .. } = &self.slots[slot_idx];
        let (container_id, intent_seq, fails_to_start) = (id.clone(), *intent_seq, *fails_to_start);
        let pid = 10_000 + (seq % 50_000) as u32;
        let (envelope, is_intent, next_step) = match step {
            1 => (
                Envelope::new(
                    "default",
                    self.client("tasks.v1.Tasks/Create"),
                    vec![Event::TaskCreateRequested { container_id }],
                ),
                true,
                2,
            ),
            2 => (
                Envelope::new(
                    "default",
                    Self::daemon("executor: runc create exited 0, task is created", Some(intent_seq)),
                    vec![Event::TaskCreated { container_id, pid, monitor_pid: pid as i32 - 1 }],
                ),
                false,
                3,
            ),
            3 => (
                Envelope::new(
                    "default",
                    self.client("tasks.v1.Tasks/Start"),
                    vec![Event::TaskStartRequested { container_id }],
                ),
                true,
                4,
            ),
            4 if fails_to_start => (
                Envelope::new(
                    "default",
                    Self::daemon("executor: runc start exited, outcome recorded", Some(intent_seq)),
                    vec![Event::TaskStartFailed {
                        container_id,
                        error: "runc start: exec: \"/bin/sh\": permission denied".into(),
                    }],
                ),
                false,
                8,
            ),
            4 => (
                Envelope::new(
                    "default",
                    Self::daemon("executor: runc start exited, outcome recorded", Some(intent_seq)),
                    vec![Event::TaskStarted { container_id, pid }],
                ),
                false,
                5,
            ),
            5 => (
                Envelope::new(
                    "default",
                    self.client("tasks.v1.Tasks/Kill"),
                    vec![Event::TaskKillRequested { container_id, signal: 15, all: false }],
                ),
                true,
                6,
            ),
            6 => (
                Envelope::new(
                    "default",
                    Self::daemon("executor: runc kill delivered the signal to the init", Some(intent_seq)),
                    vec![Event::TaskKillDelivered { container_id, signal: 15 }],
                ),
                false,
                7,
            ),
            7 => (
                Envelope::new(
                    "default",
                    Self::daemon("monitor: init process reaped, exit status recorded", None),
                    vec![Event::TaskExited {
                        container_id,
                        exit_code: 143,
                        signal: 15,
                        exited_at_ns: berth_log::Timestamp::from_ns(1_700_000_000_000_000_000 + seq),
                        cause: berth_projections::ExitCause::Exited,
                    }],
                ),
                false,
                8,
            ),
            8 => (
                Envelope::new(
                    "default",
                    self.client("tasks.v1.Tasks/Delete"),
                    vec![Event::TaskDeleteRequested { container_id, force: false }],
                ),
                true,
                9,
            ),
            9 => (
                Envelope::new(
                    "default",
                    Self::daemon("executor: runc delete exited 0, task state removed", Some(intent_seq)),
                    vec![Event::TaskDeleted { container_id, exit_code: Some(143) }],
                ),
                false,
                10,
            ),
            _ => (
                Envelope::new(
                    "default",
                    self.client("containers.v1.Containers/Delete"),
                    vec![Event::ContainerDeleted { id: container_id }],
                ),
                false,
                0,
            ),
        };
        let slot = &mut self.slots[slot_idx];
        if is_intent {
            slot.intent_seq = seq;
        }
        slot.step = next_step;
        envelope
    }
}

/// Writes envelopes until the segment files hold `target_bytes` of records; returns the record
/// count and the payload bytes.
pub fn build_log(log: &EventLog, target_bytes: u64) -> (u64, u64) {
    let mut writer = LogWriter::new();
    let mut n_records = 0u64;
    let mut payload_bytes = 0u64;
    let mut on_disk_bytes = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(APPEND_BATCH);
    while on_disk_bytes < target_bytes {
        batch.clear();
        for _ in 0..APPEND_BATCH {
            let payload = writer.next_record().encode();
            payload_bytes += payload.len() as u64;
            on_disk_bytes += berth_log::format::encoded_record_len(payload.len()) as u64;
            batch.push(payload);
        }
        let payloads: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        log.append_batch(&payloads).unwrap();
        n_records += APPEND_BATCH as u64;
    }
    (n_records, payload_bytes)
}

/// Appends exactly `n_records` envelopes in batches of `APPEND_BATCH`; returns the payload bytes.
pub fn append_records(log: &EventLog, n_records: u64) -> u64 {
    append_records_pausing(log, n_records, u64::MAX, |_| {})
}

/// [`append_records`], calling `pause` once right after the `pause_after`-th record is durable
/// (before any later one), so a caller can act on the log there: write a checkpoint, say.
pub fn append_records_pausing(
    log: &EventLog,
    n_records: u64,
    pause_after: u64,
    mut pause: impl FnMut(&EventLog),
) -> u64 {
    let mut writer = LogWriter::new();
    let mut payload_bytes = 0u64;
    let mut n_written = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(APPEND_BATCH);
    while n_written < n_records {
        batch.clear();
        let mut n_batch = (n_records - n_written).min(APPEND_BATCH as u64);
        if n_written < pause_after {
            n_batch = n_batch.min(pause_after - n_written);
        }
        for _ in 0..n_batch {
            let payload = writer.next_record().encode();
            payload_bytes += payload.len() as u64;
            batch.push(payload);
        }
        let payloads: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        log.append_batch(&payloads).unwrap();
        n_written += n_batch;
        if n_written == pause_after {
            pause(log);
        }
    }
    payload_bytes
}
