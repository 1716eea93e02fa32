//! Projection checkpoints against random command sequences: for any sequence of commands (each
//! decided against the state so far, refusals dropped, as the command thread does), the state
//! folded record by record while deciding == a full replay of the records == a checkpoint
//! (encoded and decoded through `berth_projections::checkpoint`) at any seq plus the records
//! after it.

mod support;

use berth_commands::*;
use berth_log::{Seq, Timestamp};
use berth_projections::checkpoint::{decode_checkpoint, encode_checkpoint};
use berth_projections::*;
use proptest::prelude::*;

const IDS: [&str; 3] = ["web", "db", "job"];

/// One step a client or the executor could take.
#[derive(Clone, Debug)]
enum Step {
    Import,
    RemoveImage,
    CreateContainer(usize),
    DeleteContainer(usize),
    CreateTask(usize, bool),
    StartTask(usize),
    KillTask(usize),
    DeleteTask(usize),
    /// The executor answers the container's oldest pending intent (success or failure).
    Answer(usize, bool),
    Exit(usize, i32),
    CreateVolume(usize),
    RemoveVolume(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let id = 0..IDS.len();
    prop_oneof![
        1 => Just(Step::Import),
        1 => Just(Step::RemoveImage),
        3 => id.clone().prop_map(Step::CreateContainer),
        1 => id.clone().prop_map(Step::DeleteContainer),
        3 => (id.clone(), any::<bool>()).prop_map(|(id, start)| Step::CreateTask(id, start)),
        2 => id.clone().prop_map(Step::StartTask),
        1 => id.clone().prop_map(Step::KillTask),
        2 => id.clone().prop_map(Step::DeleteTask),
        6 => (id.clone(), any::<bool>()).prop_map(|(id, ok)| Step::Answer(id, ok)),
        1 => (id.clone(), 0..3i32).prop_map(|(id, code)| Step::Exit(id, code)),
        1 => id.clone().prop_map(Step::CreateVolume),
        1 => id.prop_map(Step::RemoveVolume),
    ]
}

fn import() -> Command {
    let blob = |digest: &str| Descriptor { digest: digest.into(), media_type: "t".into(), size: 1 };
    Command::ImportImage(ImportImage {
        images: vec![ImageRecord {
            name: "busybox:latest".into(),
            manifest: blob("sha256:m"),
            config: blob("sha256:c"),
            layers: vec![LayerRecord {
                blob: blob("sha256:l"),
                diff_id: "sha256:d".into(),
                chain_id: "sha256:d".into(),
            }],
            cmd: vec!["/bin/sh".into()],
            ..ImageRecord::default()
        }],
        blobs: vec![blob("sha256:m"), blob("sha256:c"), blob("sha256:l")],
    })
}

/// The command for `step` against `state`, and the origin's intent it answers.
fn command(state: &State, step: &Step) -> Option<(Command, Option<Seq>)> {
    let container_id = |idx: usize| IDS[idx].to_string();
    Some(match step {
        Step::Import => (import(), None),
        Step::RemoveImage => (Command::RemoveImage(RemoveImage { name: "busybox:latest".into() }), None),
        Step::CreateContainer(idx) => (support::create_container(IDS[*idx], "busybox:latest", vec![]), None),
        Step::DeleteContainer(idx) => {
            (Command::DeleteContainer(DeleteContainer { id: container_id(*idx), remove_volumes: true }), None)
        }
        Step::CreateTask(idx, start) => {
            (Command::CreateTask(CreateTask { container_id: container_id(*idx), start: *start }), None)
        }
        Step::StartTask(idx) => (Command::StartTask(StartTask { container_id: container_id(*idx) }), None),
        Step::KillTask(idx) => {
            (Command::KillTask(KillTask { container_id: container_id(*idx), signal: 9, all: false }), None)
        }
        Step::DeleteTask(idx) => {
            (Command::DeleteTask(DeleteTask { container_id: container_id(*idx), force: true }), None)
        }
        Step::Answer(idx, ok) => {
            let container_id = container_id(*idx);
            let task = state.container("default", &container_id)?.task.as_ref()?;
            let pending = task.pending.first()?;
            let error = "refused".to_string();
            let event = match (pending, ok) {
                (PendingIntent::Create { .. }, true) => Event::TaskCreated { container_id, pid: 10, monitor_pid: 9 },
                (PendingIntent::Create { .. }, false) => Event::TaskCreateFailed { container_id, error },
                (PendingIntent::Start { .. }, true) => Event::TaskStarted { container_id, pid: 10 },
                (PendingIntent::Start { .. }, false) => Event::TaskStartFailed { container_id, error },
                (PendingIntent::Kill { signal, .. }, true) => {
                    Event::TaskKillDelivered { container_id, signal: *signal }
                }
                (PendingIntent::Kill { signal, .. }, false) => {
                    Event::TaskKillFailed { container_id, signal: *signal, error }
                }
                (PendingIntent::Delete { .. }, true) => {
                    Event::TaskDeleted { container_id, exit_code: task.exit.map(|exit| exit.exit_code) }
                }
                (PendingIntent::Delete { .. }, false) => Event::TaskDeleteFailed { container_id, error },
                (PendingIntent::Exec { .. }, _) => return None,
            };
            let answers = Some(pending.seq());
            (Command::RecordOutcome(RecordOutcome::one(answers, event)), answers)
        }
        Step::Exit(idx, exit_code) => {
            let event = Event::TaskExited {
                container_id: container_id(*idx),
                exit_code: *exit_code,
                signal: 0,
                exited_at_ns: Timestamp::from_ns(7),
                cause: ExitCause::Exited,
            };
            (Command::RecordOutcome(RecordOutcome::one(None, event)), Some(Seq(0)))
        }
        Step::CreateVolume(idx) => {
            (Command::CreateVolume(CreateVolume { name: format!("v-{}", IDS[*idx]), labels: Default::default() }), None)
        }
        Step::RemoveVolume(idx) => (Command::RemoveVolume(RemoveVolume { name: format!("v-{}", IDS[*idx]) }), None),
    })
}

/// Runs `steps` as the command thread would: decide, drop refusals, fold the accepted record.
/// Returns the records (with their timestamps) and the state folded along the way.
fn run(steps: &[Step]) -> (Vec<(Timestamp, Envelope)>, State) {
    let mut state = State::new();
    let mut records = Vec::new();
    for (idx, step) in steps.iter().enumerate() {
        let Some((command, answers)) = command(&state, step) else { continue };
        let Ok(events) = command.decide(&state, "default") else { continue };
        let origin = match answers {
            Some(seq) => Origin::Daemon { reason: "outcome".into(), answers: (seq != Seq(0)).then_some(seq) },
            None => Origin::Client { uid: 0, gid: 0, pid: 1, method: "t".into(), request_id: format!("r{idx}") },
        };
        let envelope = Envelope::new("default", origin, events);
        let timestamp = Timestamp::from_ns(1_000 + idx as u64);
        state.apply(state.last_seq.next(), timestamp, &envelope);
        records.push((timestamp, envelope));
    }
    (records, state)
}

fn fold(records: &[(Timestamp, Envelope)], mut state: State) -> State {
    let first = state.last_seq.get() as usize;
    for (idx, (timestamp, envelope)) in records.iter().enumerate().skip(first) {
        state.apply(Seq(idx as u64 + 1), *timestamp, envelope);
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn full_replay_equals_checkpoint_plus_tail_equals_incremental(
        steps in proptest::collection::vec(step(), 0..80),
        cut in any::<proptest::sample::Index>(),
    ) {
        let (records, incremental) = run(&steps);
        // Records go through their encoding, as they do through the log.
        let records: Vec<(Timestamp, Envelope)> = records
            .into_iter()
            .map(|(timestamp, envelope)| (timestamp, Envelope::decode(&envelope.encode()).unwrap()))
            .collect();
        let full = fold(&records, State::new());
        prop_assert_eq!(&full, &incremental);

        let cut = cut.index(records.len() + 1);
        let at_cut = fold(&records[..cut], State::new());
        let chain_hash = [cut as u8; 32];
        let bytes = encode_checkpoint(&at_cut, &chain_hash);
        let checkpoint = decode_checkpoint(&bytes).unwrap();
        prop_assert_eq!(checkpoint.seq, Seq(cut as u64));
        prop_assert_eq!(checkpoint.chain_hash, chain_hash);
        prop_assert_eq!(&checkpoint.state, &at_cut);
        prop_assert_eq!(&fold(&records, checkpoint.state), &full);
        // The encoding is deterministic: the same state gives the same digest.
        prop_assert_eq!(encode_checkpoint(&at_cut, &chain_hash), bytes);
    }
}

#[test]
fn the_steps_reach_running_and_deleted_tasks() {
    // Guards the generator: a plain sequence gets through decide to a running task.
    let steps = [
        Step::Import,
        Step::CreateContainer(0),
        Step::CreateTask(0, true),
        Step::Answer(0, true),
        Step::Answer(0, true),
    ];
    let (records, state) = run(&steps);
    assert_eq!(records.len(), 5);
    let task = state.container("default", "web").unwrap().task.as_ref().unwrap();
    assert_eq!(task.status, TaskStatus::Running);
}
