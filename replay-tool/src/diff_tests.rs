//! Table tests for `diff_states`: a scripted log, cut at two seqs, and the changes expected
//! between them with the seq and caller each is credited to.

use berth_log::{Seq, Timestamp};
use berth_projections::{ContainerRecord, Descriptor, Envelope, Event, ImageRecord, Origin, State, VolumeRecord};

use super::*;

fn client(pid: i32, method: &str) -> Origin {
    Origin::Client { uid: 1000, gid: 1000, pid, method: method.into(), request_id: format!("req-{pid}") }
}

fn daemon(answers: Option<u64>) -> Origin {
    Origin::Daemon { reason: "executor".into(), answers: answers.map(Seq) }
}

fn image(name: &str, digest: &str) -> ImageRecord {
    ImageRecord {
        name: name.into(),
        manifest: Descriptor { digest: digest.into(), media_type: "m".into(), size: 1 },
        ..ImageRecord::default()
    }
}

fn container(id: &str) -> ContainerRecord {
    ContainerRecord {
        id: id.into(),
        image: "busybox".into(),
        args: vec!["sleep".into(), "9".into()],
        ..Default::default()
    }
}

/// Seq 1..: the records of a small day on a host.
fn scripted_log() -> Vec<Envelope> {
    let ns = "default";
    let exited = |id: &str, exit_code| Event::TaskExited {
        container_id: id.into(),
        exit_code,
        signal: 0,
        exited_at_ns: Timestamp::from_ns(0),
        cause: Default::default(),
    };
    vec![
        // 1
        Envelope::new(
            ns,
            client(10, "Images/Create"),
            vec![
                Event::NamespaceCreated { name: ns.into(), labels: Default::default() },
                Event::ContentAdded { digest: "sha256:aa".into(), size: 1, media_type: "m".into() },
                Event::ImageCreated { image: image("busybox", "sha256:1111111111111111") },
            ],
        ),
        // 2
        Envelope::new(
            ns,
            client(11, "Containers/Create"),
            vec![Event::ContainerCreated { container: container("web") }],
        ),
        // 3
        Envelope::new(ns, client(12, "Tasks/Create"), vec![Event::TaskCreateRequested { container_id: "web".into() }]),
        // 4
        Envelope::new(
            ns,
            daemon(Some(3)),
            vec![Event::TaskCreated { container_id: "web".into(), pid: 7, monitor_pid: 6 }],
        ),
        // 5
        Envelope::new(ns, client(13, "Tasks/Start"), vec![Event::TaskStartRequested { container_id: "web".into() }]),
        // 6
        Envelope::new(ns, daemon(Some(5)), vec![Event::TaskStarted { container_id: "web".into(), pid: 7 }]),
        // 7
        Envelope::new(ns, client(14, "Tasks/Pause"), vec![Event::TaskPaused { container_id: "web".into() }]),
        // 8
        Envelope::new(
            ns,
            client(15, "Images/Import"),
            vec![Event::ImageUpdated { image: image("busybox", "sha256:2222222222222222") }],
        ),
        // 9
        Envelope::new(
            ns,
            client(16, "Volumes/Create"),
            vec![Event::VolumeCreated {
                volume: VolumeRecord { name: "data".into(), labels: Default::default(), anonymous_for: None },
            }],
        ),
        // 10
        Envelope::new(ns, client(17, "Tasks/Resume"), vec![Event::TaskResumed { container_id: "web".into() }]),
        // 11
        Envelope::new(ns, daemon(None), vec![exited("web", 3)]),
        // 12
        Envelope::new(
            ns,
            client(18, "Containers/Create"),
            vec![Event::ContainerCreated { container: container("db") }],
        ),
        // 13
        Envelope::new(
            ns,
            client(19, "Tasks/Delete"),
            vec![Event::TaskDeleteRequested { container_id: "web".into(), force: false }],
        ),
        // 14
        Envelope::new(
            ns,
            daemon(Some(13)),
            vec![
                Event::TaskDeleted { container_id: "web".into(), exit_code: Some(3) },
                Event::ContainerDeleted { id: "web".into() },
            ],
        ),
        // 15
        Envelope::new(ns, client(20, "Volumes/Remove"), vec![Event::VolumeRemoved { name: "data".into() }]),
        // 16
        Envelope::new(ns, client(21, "Images/Delete"), vec![Event::ImageRemoved { name: "busybox".into() }]),
    ]
}

fn stamp(seq: u64) -> RecordStamp {
    RecordStamp { seq: Seq(seq), timestamp: Timestamp::from_ns(seq * 1_000_000_000) }
}

/// The diff between seq `from` and seq `to` of the scripted log.
fn diff_between(from: u64, to: u64) -> StateDiff {
    let log = scripted_log();
    let mut before = State::new();
    let mut recorder = RangeRecorder::new();
    for (idx, envelope) in log.iter().enumerate().take(from as usize) {
        before.apply(Seq(idx as u64 + 1), stamp(idx as u64 + 1).timestamp, envelope);
    }
    let mut after = before.clone();
    for (idx, envelope) in log.iter().enumerate().take(to as usize).skip(from as usize) {
        let seq = idx as u64 + 1;
        after.apply(Seq(seq), stamp(seq).timestamp, envelope);
        recorder.record(stamp(seq), envelope);
    }
    diff_states(&before, &after, &recorder)
}

/// (area, subject, what, seq of the cause, pid of the caller or of the client it answered)
type Summary = (&'static str, String, &'static str, u64, i32);

fn summary(diff: &StateDiff) -> Vec<Summary> {
    let pid_of = |origin: &Origin| match origin {
        Origin::Client { pid, .. } => *pid,
        Origin::Daemon { .. } => 0,
    };
    diff.changes
        .iter()
        .map(|change| {
            let (seq, pid) = match &change.cause {
                Some(cause) => {
                    let asker = cause.requested_by.as_ref().map(|(_, origin)| origin).unwrap_or(&cause.origin);
                    (cause.stamp.seq.get(), pid_of(asker))
                }
                None => (0, -1),
            };
            (change.area.name(), change.subject.clone(), change.what, seq, pid)
        })
        .collect()
}

#[test]
fn each_change_is_credited_to_the_record_and_caller_that_made_it() {
    type Case = (u64, u64, Vec<(&'static str, &'static str, &'static str, u64, i32)>);
    let cases: Vec<Case> = vec![
        (0, 0, vec![]),
        (
            0,
            2,
            vec![
                ("namespace", "default", "added", 1, 10),
                ("image", "busybox", "added", 1, 10),
                ("container", "web", "added", 2, 11),
            ],
        ),
        // The daemon's TaskCreated/TaskStarted are credited to the clients whose intents they answer.
        (
            2,
            7,
            vec![
                ("task", "web", "created", 4, 12),
                ("task", "web", "started", 6, 13),
                ("task", "web", "paused", 7, 14),
            ],
        ),
        // The start intent (seq 5) is before the range: only the daemon is known.
        (5, 6, vec![("task", "web", "started", 6, 0)]),
        (
            7,
            11,
            vec![
                ("image", "busybox", "retagged", 8, 15),
                ("task", "web", "resumed", 10, 17),
                ("task", "web", "exited", 11, 0),
                ("volume", "data", "added", 9, 16),
            ],
        ),
        (
            11,
            16,
            vec![
                ("image", "busybox", "removed", 16, 21),
                ("container", "db", "added", 12, 18),
                ("container", "web", "removed", 14, 19),
                ("task", "web", "deleted", 14, 19),
                ("volume", "data", "removed", 15, 20),
            ],
        ),
        // Created and removed within the range: no net change for the volume.
        (
            8,
            16,
            vec![
                ("image", "busybox", "removed", 16, 21),
                ("container", "db", "added", 12, 18),
                ("container", "web", "removed", 14, 19),
                ("task", "web", "resumed", 10, 17),
                ("task", "web", "exited", 11, 0),
                ("task", "web", "deleted", 14, 19),
            ],
        ),
    ];
    for (from, to, expected) in cases {
        let diff = diff_between(from, to);
        let expected: Vec<Summary> = expected
            .into_iter()
            .map(|(area, subject, what, seq, pid)| (area, subject.to_string(), what, seq, pid))
            .collect();
        assert_eq!(summary(&diff), expected, "diff {from}..{to}");
    }
}

#[test]
fn details_say_what_changed_in_words() {
    let diff = diff_between(7, 11);
    let details: Vec<&str> = diff.changes.iter().map(|change| change.detail.as_str()).collect();
    assert_eq!(
        details,
        vec![
            "image busybox now names 222222222222 (was 111111111111)",
            "task resumed (its processes thawed)",
            "task exited with code 3 at an unknown time",
            "volume data created",
        ]
    );
    assert_eq!(diff.store, StoreChanges::default());
    assert_eq!(diff_between(0, 1).store.blobs_added, 1);
}

#[test]
fn a_container_removed_and_created_again_is_recreated() {
    let mut log = scripted_log();
    log.push(Envelope::new(
        "default",
        client(30, "Containers/Create"),
        vec![Event::ContainerCreated { container: container("web") }],
    ));
    let mut before = State::new();
    for (idx, envelope) in log.iter().enumerate().take(12) {
        before.apply(Seq(idx as u64 + 1), stamp(idx as u64 + 1).timestamp, envelope);
    }
    let mut after = before.clone();
    let mut recorder = RangeRecorder::new();
    for (idx, envelope) in log.iter().enumerate().skip(12) {
        let seq = idx as u64 + 1;
        after.apply(Seq(seq), stamp(seq).timestamp, envelope);
        recorder.record(stamp(seq), envelope);
    }
    let diff = diff_states(&before, &after, &recorder);
    let web: Vec<(&str, u64)> = diff
        .changes
        .iter()
        .filter(|change| change.area == Area::Container && change.subject == "web")
        .map(|change| (change.what, change.cause.as_ref().map_or(0, |cause| cause.stamp.seq.get())))
        .collect();
    assert_eq!(web, vec![("recreated", 17)]);
}

#[test]
fn a_new_name_for_a_manifest_another_name_holds_says_so() {
    let mut log = scripted_log();
    log.truncate(2);
    log.push(Envelope::new(
        "default",
        client(40, "Images/Create"),
        vec![Event::ImageCreated { image: image("busybox:copy", "sha256:1111111111111111") }],
    ));
    let mut before = State::new();
    for (idx, envelope) in log.iter().enumerate().take(2) {
        before.apply(Seq(idx as u64 + 1), stamp(idx as u64 + 1).timestamp, envelope);
    }
    let mut after = before.clone();
    let mut recorder = RangeRecorder::new();
    after.apply(Seq(3), stamp(3).timestamp, &log[2]);
    recorder.record(stamp(3), &log[2]);
    let diff = diff_states(&before, &after, &recorder);
    assert_eq!(diff.changes.len(), 1);
    assert_eq!(diff.changes[0].detail, "image busybox:copy added (111111111111, the manifest busybox names)");
}
