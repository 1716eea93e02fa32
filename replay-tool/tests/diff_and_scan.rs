//! berth-replay diff on a real log, its errors, and the prefiltered, parallel scan behind
//! `history` and `events --container` giving exactly what decoding every record gives.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_log::{Durability, EventLog, LogOptions, Seq, Timestamp};
use berth_projections::{ContainerRecord, Envelope, Event, Origin};

/// 2026-11-29T09:30:00Z; record N is stamped BASE + N seconds.
const BASE_NS: u64 = 1_795_944_600_000_000_000;
const SECOND_NS: u64 = 1_000_000_000;

fn client(pid: i32, method: &str) -> Origin {
    Origin::Client { uid: 1000, gid: 1000, pid, method: method.to_string(), request_id: format!("cli-{pid}") }
}

fn daemon(answers: u64) -> Origin {
    Origin::Daemon { reason: "executor".to_string(), answers: Some(Seq(answers)) }
}

fn container(id: &str) -> ContainerRecord {
    ContainerRecord { id: id.to_string(), image: "busybox".into(), args: vec!["true".into()], ..Default::default() }
}

/// Writes `envelopes` to `root/log`, record N stamped BASE + N seconds.
fn write_log(root: &Path, envelopes: impl IntoIterator<Item = Envelope>) -> PathBuf {
    let log_dir = root.join("log");
    let options = LogOptions { segment_size: 1 << 20, durability: Durability::NoSync, ..LogOptions::default() };
    let (event_log, _) = EventLog::open(&log_dir, options).expect("open test log");
    let payloads: Vec<Vec<u8>> = envelopes.into_iter().map(|envelope| envelope.encode()).collect();
    for (index, payload) in payloads.iter().enumerate() {
        let seq = index as u64 + 1;
        event_log.append_batch_at(&[payload], Timestamp::from_ns(BASE_NS + seq * SECOND_NS)).unwrap();
    }
    log_dir
}

fn replay(log_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth-replay"))
        .args(args)
        .arg("--log")
        .arg(log_dir)
        .output()
        .expect("run berth-replay")
}

fn replay_ok(log_dir: &Path, args: &[&str]) -> String {
    let output = replay(log_dir, args);
    assert!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn lifecycle(id: &str, first_pid: i32, first_seq: u64) -> Vec<Envelope> {
    let ns = "default";
    vec![
        Envelope::new(
            ns,
            client(first_pid, "Containers/Create"),
            vec![Event::ContainerCreated { container: container(id) }],
        ),
        Envelope::new(
            ns,
            client(first_pid + 1, "Tasks/Create"),
            vec![Event::TaskCreateRequested { container_id: id.into() }],
        ),
        Envelope::new(
            ns,
            daemon(first_seq + 1),
            vec![Event::TaskCreated { container_id: id.into(), pid: 9, monitor_pid: 8 }],
        ),
        Envelope::new(
            ns,
            daemon(first_seq + 1),
            vec![Event::TaskExited {
                container_id: id.into(),
                exit_code: 3,
                signal: 0,
                exited_at_ns: Timestamp::from_ns(BASE_NS),
                cause: Default::default(),
            }],
        ),
    ]
}

fn small_log(root: &Path) -> PathBuf {
    let mut envelopes = vec![Envelope::new(
        "default",
        client(10, "Namespaces/Create"),
        vec![Event::NamespaceCreated { name: "default".into(), labels: Default::default() }],
    )];
    envelopes.extend(lifecycle("web", 20, 2));
    envelopes.push(Envelope::new(
        "default",
        client(30, "Containers/Delete"),
        vec![Event::ContainerDeleted { id: "web".into() }],
    ));
    write_log(root, envelopes)
}

#[test]
fn diff_names_each_change_with_its_seq_time_and_caller_in_text_and_json() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = small_log(root.path());
    let text = replay_ok(&log_dir, &["diff", "--from", "1", "--to", "5"]);
    assert!(
        text.starts_with(
            "changes from seq 1 (2026-11-29T09:30:01.000Z) to seq 5 (2026-11-29T09:30:05.000Z): 4 records\n"
        ),
        "{text}"
    );
    assert!(text.contains("containers:\n  seq 2  2026-11-29T09:30:02.000Z  default  added      container web created from image busybox to run [\"true\"]  by uid 1000 pid 20 via Containers/Create\n"), "{text}");
    assert!(text.contains("  seq 4  2026-11-29T09:30:04.000Z  default  created    web task created: pid 9, monitor pid 8  by berthd (executor), asked by uid 1000 pid 21 via Tasks/Create at seq 3\n"), "{text}");
    // Times are taken as RFC 3339, as state --at takes them; the end defaults to the log's end.
    let json: serde_json::Value =
        serde_json::from_str(&replay_ok(&log_dir, &["diff", "--from", "2026-11-29T09:30:01.500Z", "--output", "json"]))
            .unwrap();
    assert_eq!(json["from"]["seq"], 1);
    assert_eq!(json["to"]["seq"], 6);
    let whats: Vec<(&str, &str)> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| (change["area"].as_str().unwrap(), change["what"].as_str().unwrap()))
        .collect();
    // Created and removed within the range: only its task's changes remain.
    assert_eq!(whats, vec![("task", "created"), ("task", "exited")]);
    assert_eq!(json["changes"][0]["requested_by"]["origin"]["pid"], 21);
    assert_eq!(json["changes"][1]["origin"]["kind"], "daemon");
}

#[test]
fn diff_refuses_a_range_backwards_or_past_the_end_or_a_bad_time_and_says_what_to_do() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = small_log(root.path());
    let stderr = |args: &[&str]| {
        let output = replay(&log_dir, args);
        assert!(!output.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(stderr(&["diff", "--from", "5", "--to", "2"]).contains("--from 5 is after --to 2"));
    assert!(stderr(&["diff", "--from", "1", "--to", "99"])
        .contains("seq 99 is past the end of the log (its last seq is 6)"));
    let bad_time = stderr(&["diff", "--from", "yesterday"]);
    assert!(bad_time.contains("pass a seq (digits) or an RFC 3339 UTC time"), "{bad_time}");
    assert!(stderr(&["diff"]).contains("--from"));
    // state --at takes the same: a seq, or a time (the last record at or before it).
    let at_time: serde_json::Value =
        serde_json::from_str(&replay_ok(&log_dir, &["state", "--at", "2026-11-29T09:30:03.500Z", "--output", "json"]))
            .unwrap();
    assert_eq!(at_time["last_seq"], 3);
    let at_seq: serde_json::Value =
        serde_json::from_str(&replay_ok(&log_dir, &["state", "--at", "3", "--json"])).unwrap();
    assert_eq!(at_seq, at_time);
    assert!(stderr(&["state", "--at", "3", "--at-time", "5"]).contains("cannot be used with"));
    // The same moment twice: nothing changed.
    assert!(replay_ok(&log_dir, &["diff", "--from", "3", "--to", "3"])
        .contains("no namespace, image, container, task or volume changed"));
}

/// Over 2^16 records the scan runs on several threads: history and events --container must give
/// what the one-thread scan gives on the same records, and what decoding everything gives.
#[test]
fn a_big_log_is_scanned_in_parallel_with_the_same_answers() {
    let root = tempfile::tempdir().unwrap();
    let mut envelopes = vec![Envelope::new(
        "default",
        client(10, "Namespaces/Create"),
        vec![Event::NamespaceCreated { name: "default".into(), labels: Default::default() }],
    )];
    // Container c-N's four records, then the next; c-7 lives at the start and again near the end,
    // and c-70 is a name that holds c-7's bytes (the prefilter keeps it, the exact filter not).
    let mut n_containers = 0;
    while envelopes.len() < 90_000 {
        let id = match n_containers {
            20_000 => "c-7".to_string(),
            n => format!("c-{n}"),
        };
        if n_containers == 20_000 {
            envelopes.push(Envelope::new(
                "default",
                client(1, "Containers/Delete"),
                vec![Event::ContainerDeleted { id: id.clone() }],
            ));
        }
        let first_seq = envelopes.len() as u64 + 1;
        envelopes.extend(lifecycle(&id, 100, first_seq));
        n_containers += 1;
    }
    let log_dir = write_log(root.path(), envelopes.clone());
    let events = replay_ok(&log_dir, &["events", "--container", "c-7", "--json"]);
    let seqs: Vec<u64> = events
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = envelopes
        .iter()
        .enumerate()
        .filter(|(_, envelope)| envelope.events.iter().any(|event| event.container_id() == Some("c-7")))
        .map(|(index, _)| index as u64 + 1)
        .collect();
    assert_eq!(seqs, expected);
    assert_eq!(seqs.len(), 9, "two lives of four records and the delete between");
    // The same range below the parallel threshold takes the one-thread path.
    let tail_from = expected[4].to_string();
    let tail = replay_ok(&log_dir, &["events", "--container", "c-7", "--json", "--from", &tail_from]);
    assert!(events.ends_with(&tail), "{tail}");
    let history = replay_ok(&log_dir, &["history", "--container", "c-7"]);
    assert!(history.starts_with("history of container c-7 in namespace default (9 events)\n"), "{history}");
    assert!(history.contains("summary: container c-7 in namespace default: created at"), "{history}");
    assert!(history.contains("now stopped, pid 9, exit code 3"), "{history}");
}

#[test]
fn diff_by_time_on_a_log_whose_clock_went_back_says_so() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = root.path().join("log");
    let options = LogOptions { segment_size: 1 << 20, durability: Durability::NoSync, ..LogOptions::default() };
    let (event_log, _) = EventLog::open(&log_dir, options).unwrap();
    let namespace = Envelope::new(
        "default",
        client(10, "Namespaces/Create"),
        vec![Event::NamespaceCreated { name: "default".into(), labels: Default::default() }],
    );
    let created = |id: &str| {
        Envelope::new(
            "default",
            client(11, "Containers/Create"),
            vec![Event::ContainerCreated { container: container(id) }],
        )
    };
    // Seconds 1, 3, then 2: the clock was set back before seq 3.
    for (envelope, second) in [(namespace, 1), (created("early"), 3), (created("late"), 2)] {
        event_log.append_batch_at(&[&envelope.encode()], Timestamp::from_ns(BASE_NS + second * SECOND_NS)).unwrap();
    }
    drop(event_log);
    let text = replay_ok(&log_dir, &["diff", "--from", "2026-11-29T09:30:01Z", "--to", "2026-11-29T09:30:02.500Z"]);
    assert!(text.contains("note: record timestamps go backwards at seq 3"), "{text}");
    // "at or before 2.5 s" is seq 3 (stamped 2 s), so both containers are in the range.
    assert!(text.contains("container early created") && text.contains("container late created"), "{text}");
}
