//! Data-driven tests of the fold: a list of records in, the expected state out; and the
//! property that full replay, record-by-record application and checkpoint-plus-tail agree.

use berth_log::{Seq, Timestamp};
use berth_projections::*;
use proptest::prelude::*;

fn client(method: &str) -> Origin {
    Origin::Client { uid: 0, gid: 0, pid: 42, method: method.into(), request_id: "r".into() }
}

fn daemon(answers: u64) -> Origin {
    Origin::Daemon { reason: "test".into(), answers: Some(Seq(answers)) }
}

fn image() -> ImageRecord {
    ImageRecord {
        name: "busybox:latest".into(),
        manifest: Descriptor { digest: "sha256:m".into(), media_type: "m".into(), size: 1 },
        config: Descriptor { digest: "sha256:c".into(), media_type: "c".into(), size: 1 },
        layers: vec![LayerRecord {
            blob: Descriptor::default(),
            diff_id: "sha256:d".into(),
            chain_id: "sha256:d".into(),
        }],
        cmd: vec!["/bin/sh".into()],
        ..ImageRecord::default()
    }
}

fn container(id: &str) -> ContainerRecord {
    ContainerRecord {
        id: id.into(),
        image: "busybox:latest".into(),
        args: vec!["true".into()],
        ..ContainerRecord::default()
    }
}

/// A container's whole life: created, task created, started, killed, exited, deleted.
fn lifecycle() -> Vec<Envelope> {
    let c = || "web".to_string();
    vec![
        Envelope::new(
            "default",
            client("Images/Import"),
            vec![
                Event::NamespaceCreated { name: "default".into(), labels: Default::default() },
                Event::SnapshotCommitted { chain_id: "sha256:d".into(), parent: None, diff_id: "sha256:d".into() },
                Event::ImageCreated { image: image() },
            ],
        ),
        Envelope::new(
            "default",
            client("Containers/Create"),
            vec![Event::ContainerCreated { container: container("web") }],
        ),
        Envelope::new("default", client("Tasks/Create"), vec![Event::TaskCreateRequested { container_id: c() }]),
        Envelope::new("default", daemon(3), vec![Event::TaskCreated { container_id: c(), pid: 100, monitor_pid: 99 }]),
        Envelope::new("default", client("Tasks/Start"), vec![Event::TaskStartRequested { container_id: c() }]),
        Envelope::new("default", daemon(5), vec![Event::TaskStarted { container_id: c(), pid: 100 }]),
        Envelope::new(
            "default",
            client("Tasks/Kill"),
            vec![Event::TaskKillRequested { container_id: c(), signal: 9, all: false }],
        ),
        Envelope::new("default", daemon(7), vec![Event::TaskKillDelivered { container_id: c(), signal: 9 }]),
        Envelope::new(
            "default",
            Origin::Daemon { reason: "exit".into(), answers: None },
            vec![Event::TaskExited {
                container_id: c(),
                exit_code: 137,
                signal: 9,
                exited_at_ns: berth_log::Timestamp::from_ns(1_000),
                cause: berth_projections::ExitCause::Exited,
            }],
        ),
        Envelope::new(
            "default",
            client("Tasks/Delete"),
            vec![Event::TaskDeleteRequested { container_id: c(), force: false }],
        ),
        Envelope::new("default", daemon(10), vec![Event::TaskDeleted { container_id: c(), exit_code: Some(137) }]),
        Envelope::new("default", client("Containers/Delete"), vec![Event::ContainerDeleted { id: c() }]),
    ]
}

fn fold(records: &[Envelope]) -> State {
    let mut state = State::new();
    for (index, envelope) in records.iter().enumerate() {
        state.apply(Seq(index as u64 + 1), Timestamp::from_ns(1_000 + index as u64), envelope);
    }
    state
}

fn task(state: &State) -> Option<TaskState> {
    state.container("default", "web").and_then(|container| container.task.clone())
}

#[test]
fn task_state_machine_follows_the_lifecycle() {
    let records = lifecycle();
    let expected: &[(usize, Option<TaskStatus>, usize)] = &[
        // (records folded, task status, pending intents)
        (2, None, 0),
        (3, Some(TaskStatus::Creating), 1),
        (4, Some(TaskStatus::Created), 0),
        (5, Some(TaskStatus::Starting), 1),
        (6, Some(TaskStatus::Running), 0),
        (7, Some(TaskStatus::Running), 1),
        (8, Some(TaskStatus::Running), 0),
        (9, Some(TaskStatus::Stopped), 0),
        (10, Some(TaskStatus::Deleting), 1),
        (11, None, 0),
    ];
    for &(n_records, status, n_pending) in expected {
        let state = fold(&records[..n_records]);
        let task = task(&state);
        assert_eq!(task.as_ref().map(|task| task.status), status, "after {n_records} records");
        assert_eq!(task.map(|task| task.pending.len()).unwrap_or(0), n_pending, "pending after {n_records} records");
    }
    let state = fold(&records[..9]);
    let exit = task(&state).unwrap().exit.unwrap();
    assert_eq!((exit.exit_code, exit.signal, exit.exited_at_ns), (137, 9, Timestamp::from_ns(1_000)));
    assert_eq!(task(&state).unwrap().pid, 100);
    let end = fold(&records);
    assert!(end.container("default", "web").is_none());
    assert!(end.image("default", "busybox:latest").is_some());
    assert_eq!(end.last_seq, Seq(records.len() as u64));
}

#[test]
fn exit_before_started_is_recorded_keeps_the_task_stopped() {
    let mut records = lifecycle()[..5].to_vec();
    records.push(Envelope::new(
        "default",
        Origin::Daemon { reason: "exit".into(), answers: None },
        vec![Event::TaskExited {
            container_id: "web".into(),
            exit_code: 0,
            signal: 0,
            exited_at_ns: berth_log::Timestamp::from_ns(5),
            cause: berth_projections::ExitCause::Exited,
        }],
    ));
    records.push(Envelope::new(
        "default",
        daemon(5),
        vec![Event::TaskStarted { container_id: "web".into(), pid: 100 }],
    ));
    let task = task(&fold(&records)).unwrap();
    assert_eq!(task.status, TaskStatus::Stopped);
    assert!(task.pending.is_empty());
}

#[test]
fn failed_create_is_visible_with_its_error() {
    let mut records = lifecycle()[..3].to_vec();
    records.push(Envelope::new(
        "default",
        daemon(3),
        vec![Event::TaskCreateFailed { container_id: "web".into(), error: "runc said no".into() }],
    ));
    let task = task(&fold(&records)).unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.error.as_deref(), Some("runc said no"));
}

#[test]
fn namespaces_are_isolated() {
    let mut records = lifecycle()[..2].to_vec();
    records.push(Envelope::new(
        "other",
        client("Containers/Create"),
        vec![Event::ContainerCreated { container: container("web") }],
    ));
    let state = fold(&records);
    // "other" was never created, so nothing lands there; "default" is untouched.
    assert!(state.namespace("other").is_none());
    assert_eq!(state.namespace("default").unwrap().containers.len(), 1);
}

#[test]
fn envelopes_round_trip_and_newer_schemas_are_refused() {
    for envelope in lifecycle() {
        assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
    }
    let mut newer = lifecycle()[0].clone();
    newer.schema = EVENT_SCHEMA + 1;
    assert!(matches!(Envelope::decode(&newer.encode()), Err(DecodeError::NewerSchema { .. })));
    assert!(matches!(Envelope::decode(b"\xc1garbage"), Err(DecodeError::Malformed { .. })));
}

proptest! {
    /// Full replay == incremental application == checkpoint (serialized state) + tail, for any
    /// prefix split of any interleaving of container lifecycles.
    #[test]
    fn replay_is_deterministic_and_checkpointable(n_containers in 1usize..4, split in 0usize..40) {
        let mut records = lifecycle()[..1].to_vec();
        for index in 0..n_containers {
            let id = format!("c{index}");
            for envelope in lifecycle()[1..].iter() {
                let mut envelope = envelope.clone();
                for event in &mut envelope.events {
                    rename(event, &id);
                }
                records.push(envelope);
            }
        }
        let full = fold(&records);
        let split = split.min(records.len());
        let checkpoint = serde_json::to_string(&fold(&records[..split])).unwrap();
        let mut resumed: State = serde_json::from_str(&checkpoint).unwrap();
        for (index, envelope) in records.iter().enumerate().skip(split) {
            resumed.apply(Seq(index as u64 + 1), Timestamp::from_ns(1_000 + index as u64), envelope);
        }
        prop_assert_eq!(&full, &resumed);
        prop_assert_eq!(&full, &fold(&records));
    }
}

fn rename(event: &mut Event, id: &str) {
    match event {
        Event::ContainerCreated { container } => container.id = id.into(),
        Event::ContainerDeleted { id: old } => *old = id.into(),
        Event::TaskCreateRequested { container_id }
        | Event::TaskCreated { container_id, .. }
        | Event::TaskStartRequested { container_id }
        | Event::TaskStarted { container_id, .. }
        | Event::TaskKillRequested { container_id, .. }
        | Event::TaskKillDelivered { container_id, .. }
        | Event::TaskExited { container_id, .. }
        | Event::TaskDeleteRequested { container_id, .. }
        | Event::TaskDeleted { container_id, .. } => *container_id = id.into(),
        _ => {}
    }
}

#[test]
fn create_and_start_in_one_record_waits_for_both_outcomes() {
    let mut records = lifecycle()[..2].to_vec();
    records.push(Envelope::new(
        "default",
        client("Tasks/Create"),
        vec![
            Event::TaskCreateRequested { container_id: "web".into() },
            Event::TaskStartRequested { container_id: "web".into() },
        ],
    ));
    let task_after = |records: &[Envelope]| task(&fold(records)).unwrap();
    assert_eq!(task_after(&records).status, TaskStatus::Creating);
    assert_eq!(task_after(&records).pending.len(), 2);
    let mut created = records.clone();
    created.push(Envelope::new(
        "default",
        daemon(3),
        vec![Event::TaskCreated { container_id: "web".into(), pid: 7, monitor_pid: 6 }],
    ));
    assert_eq!(task_after(&created).status, TaskStatus::Starting);
    let mut started = created.clone();
    started.push(Envelope::new("default", daemon(3), vec![Event::TaskStarted { container_id: "web".into(), pid: 7 }]));
    assert_eq!(task_after(&started).status, TaskStatus::Running);
    assert!(task_after(&started).pending.is_empty());
    // A failed create answers the start too.
    let mut failed = records.clone();
    failed.push(Envelope::new(
        "default",
        daemon(3),
        vec![Event::TaskCreateFailed { container_id: "web".into(), error: "no".into() }],
    ));
    assert_eq!(task_after(&failed).status, TaskStatus::Failed);
    assert!(task_after(&failed).pending.is_empty());
}
