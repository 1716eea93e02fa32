//! End-to-end tests of the berth-replay binary against real logs written with berth-log.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use berth_log::{Durability, EventLog, LogOptions, Seq, Timestamp};
use berth_projections::{ContainerRecord, Descriptor, Envelope, Event, ImageRecord, LayerRecord, Origin, State};

/// 2026-11-29T09:30:00Z; record N is stamped BASE + N seconds.
const BASE_NS: u64 = 1_795_944_600_000_000_000;
const SECOND_NS: u64 = 1_000_000_000;

const SEGMENT_HEADER_LEN: usize = 80;
const RECORD_HEADER_LEN: usize = 56;

fn client(uid: u32, pid: i32, method: &str, request_id: &str) -> Origin {
    Origin::Client { uid, gid: uid, pid, method: method.to_string(), request_id: request_id.to_string() }
}

fn daemon(reason: &str, answers: Option<u64>) -> Origin {
    Origin::Daemon { reason: reason.to_string(), answers: answers.map(Seq) }
}

fn alpine_image() -> ImageRecord {
    let layer_digest = format!("sha256:{}", "1".repeat(64));
    ImageRecord {
        name: "docker.io/library/alpine:3.20".to_string(),
        manifest: Descriptor {
            digest: format!("sha256:{}", "ab".repeat(32)),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
            size: 480,
        },
        config: Descriptor {
            digest: format!("sha256:{}", "cd".repeat(32)),
            media_type: "application/vnd.oci.image.config.v1+json".to_string(),
            size: 600,
        },
        layers: vec![LayerRecord {
            blob: Descriptor {
                digest: layer_digest.clone(),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_string(),
                size: 3_600_000,
            },
            diff_id: format!("sha256:{}", "2".repeat(64)),
            chain_id: format!("sha256:{}", "2".repeat(64)),
        }],
        entrypoint: vec![],
        cmd: vec!["/bin/sh".to_string()],
        env: vec!["PATH=/usr/bin:/bin".to_string()],
        working_dir: "/".to_string(),
        user: String::new(),
    }
}

fn container(id: &str) -> ContainerRecord {
    let image = alpine_image();
    ContainerRecord {
        id: id.to_string(),
        image: image.name.clone(),
        image_digest: image.manifest.digest.clone(),
        args: vec!["/bin/sh".to_string(), "-c".to_string(), "exit 3".to_string()],
        env: image.env.clone(),
        working_dir: "/".to_string(),
        user: String::new(),
        hostname: id.to_string(),
        labels: BTreeMap::new(),
        lowers: image.chain_ids(),
        snapshot_key: id.to_string(),
        open_stdin: false,
        tty: false,
        policies: Default::default(),
        ..ContainerRecord::default()
    }
}

/// The story the tests replay: container `web` (namespace default) is created by uid 1000,
/// runs, exits with code 3 and is deleted; container `db` (namespace prod) keeps running.
fn scenario() -> Vec<Envelope> {
    let tasks = "/berth.v1.Tasks";
    vec![
        /* 1 */
        Envelope::new(
            "",
            daemon("berthd started", None),
            vec![Event::DaemonStarted { version: "0.1.0".into(), pid: 900, replayed_to: Seq(0) }],
        ),
        /* 2 */
        Envelope::new(
            "default",
            client(0, 100, "/berth.v1.Namespaces/Create", "cli-100-1"),
            vec![Event::NamespaceCreated { name: "default".into(), labels: BTreeMap::new() }],
        ),
        /* 3 */
        Envelope::new(
            "default",
            client(0, 101, "/berth.v1.Images/Import", "cli-101-1"),
            vec![
                Event::ContentAdded {
                    digest: format!("sha256:{}", "1".repeat(64)),
                    size: 3_600_000,
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                },
                Event::SnapshotCommitted {
                    chain_id: format!("sha256:{}", "2".repeat(64)),
                    parent: None,
                    diff_id: format!("sha256:{}", "2".repeat(64)),
                },
                Event::ImageCreated { image: alpine_image() },
            ],
        ),
        /* 4 */
        Envelope::new(
            "default",
            client(1000, 4242, "/berth.v1.Containers/Create", "cli-4242-1"),
            vec![Event::ContainerCreated { container: container("web") }],
        ),
        /* 5 */
        Envelope::new(
            "default",
            client(1000, 4242, &format!("{tasks}/Create"), "cli-4242-2"),
            vec![Event::TaskCreateRequested { container_id: "web".into() }],
        ),
        /* 6 */
        Envelope::new(
            "default",
            daemon("task created", Some(5)),
            vec![Event::TaskCreated { container_id: "web".into(), pid: 5001, monitor_pid: 5000 }],
        ),
        /* 7 */
        Envelope::new(
            "default",
            client(1000, 4243, &format!("{tasks}/Start"), "cli-4243-1"),
            vec![Event::TaskStartRequested { container_id: "web".into() }],
        ),
        /* 8 */
        Envelope::new(
            "default",
            daemon("task start", Some(7)),
            vec![Event::TaskStarted { container_id: "web".into(), pid: 5001 }],
        ),
        /* 9 */
        Envelope::new(
            "default",
            daemon("task exited", None),
            vec![Event::TaskExited {
                container_id: "web".into(),
                exit_code: 3,
                signal: 0,
                exited_at_ns: Timestamp::from_ns(BASE_NS + 8 * SECOND_NS + SECOND_NS / 2),
                cause: berth_projections::ExitCause::Exited,
            }],
        ),
        /* 10 */
        Envelope::new(
            "prod",
            client(0, 102, "/berth.v1.Namespaces/Create", "cli-102-1"),
            vec![Event::NamespaceCreated { name: "prod".into(), labels: BTreeMap::new() }],
        ),
        /* 11 */
        Envelope::new(
            "prod",
            client(0, 103, "/berth.v1.Containers/Create", "cli-103-1"),
            vec![Event::ContainerCreated { container: container("db") }],
        ),
        /* 12 */
        Envelope::new(
            "prod",
            client(0, 103, &format!("{tasks}/Create"), "cli-103-2"),
            vec![Event::TaskCreateRequested { container_id: "db".into() }],
        ),
        /* 13 */
        Envelope::new(
            "prod",
            daemon("task created", Some(12)),
            vec![Event::TaskCreated { container_id: "db".into(), pid: 6001, monitor_pid: 6000 }],
        ),
        /* 14 */
        Envelope::new(
            "prod",
            client(0, 103, &format!("{tasks}/Start"), "cli-103-3"),
            vec![Event::TaskStartRequested { container_id: "db".into() }],
        ),
        /* 15 */
        Envelope::new(
            "prod",
            daemon("task start", Some(14)),
            vec![Event::TaskStarted { container_id: "db".into(), pid: 6001 }],
        ),
        /* 16 */
        Envelope::new(
            "default",
            client(1000, 4244, &format!("{tasks}/Delete"), "cli-4244-1"),
            vec![Event::TaskDeleteRequested { container_id: "web".into(), force: false }],
        ),
        /* 17 */
        Envelope::new(
            "default",
            daemon("task delete", Some(16)),
            vec![Event::TaskDeleted { container_id: "web".into(), exit_code: Some(3) }],
        ),
        /* 18 */
        Envelope::new(
            "default",
            client(1000, 4245, "/berth.v1.Containers/Delete", "cli-4245-1"),
            vec![Event::ContainerDeleted { id: "web".into() }],
        ),
    ]
}

fn timestamp_of(seq: u64) -> Timestamp {
    Timestamp::from_ns(BASE_NS + seq * SECOND_NS)
}

fn open_writer(dir: &Path) -> EventLog {
    let options = LogOptions { segment_size: 64 * 1024, durability: Durability::NoSync, ..LogOptions::default() };
    EventLog::open(dir, options).expect("open test log").0
}

/// A temp root with the scenario written to `root/log`, record N stamped `timestamp_of(N)`.
fn scenario_root() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let log_dir = root.path().join("log");
    let event_log = open_writer(&log_dir);
    for (index, envelope) in scenario().iter().enumerate() {
        let seq = index as u64 + 1;
        let appended = event_log.append_batch_at(&[&envelope.encode()], timestamp_of(seq)).unwrap();
        assert_eq!(appended, Seq(seq));
    }
    drop(event_log);
    (root, log_dir)
}

fn folded_directly(to_seq: u64) -> State {
    let mut state = State::new();
    for (index, envelope) in scenario().iter().enumerate().take(to_seq as usize) {
        let seq = index as u64 + 1;
        state.apply(Seq(seq), timestamp_of(seq), envelope);
    }
    state
}

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth-replay")).args(args).output().expect("run berth-replay")
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Runs with `--log DIR`, asserts exit 0, returns stdout.
fn replay_ok(log_dir: &Path, args: &[&str]) -> String {
    let mut full_args = args.to_vec();
    full_args.extend(["--log", log_dir.to_str().unwrap()]);
    let output = replay(&full_args);
    assert!(output.status.success(), "{full_args:?} failed: {}{}", stdout_of(&output), stderr_of(&output));
    stdout_of(&output)
}

fn segment_path(log_dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(log_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect();
    segments.sort();
    segments.into_iter().next().expect("a segment file")
}

/// Offset of record `seq` in the first segment, walking the record headers (docs/log-format.md:
/// an 80-byte segment header, then records of a 56-byte header with the payload length at
/// offset 36, payload, and padding to 8 bytes).
fn record_offset(bytes: &[u8], seq: u64) -> usize {
    let mut offset = SEGMENT_HEADER_LEN;
    for _ in 1..seq {
        let payload_len = u32::from_le_bytes(bytes[offset + 36..offset + 40].try_into().unwrap()) as usize;
        offset += (RECORD_HEADER_LEN + payload_len).next_multiple_of(8);
    }
    assert_eq!(u64::from_le_bytes(bytes[offset + 40..offset + 48].try_into().unwrap()), seq);
    offset
}

/// CRC-32 (IEEE, reflected), the checksum berth-log puts in every record.
fn crc32(chunks: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for chunk in chunks {
        for &byte in *chunk {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
    }
    !crc
}

fn flip_payload_byte(log_dir: &Path, seq: u64, fix_crc: bool) -> PathBuf {
    let path = segment_path(log_dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let offset = record_offset(&bytes, seq);
    let payload_len = u32::from_le_bytes(bytes[offset + 36..offset + 40].try_into().unwrap()) as usize;
    bytes[offset + RECORD_HEADER_LEN + payload_len / 2] ^= 0x01;
    if fix_crc {
        let record = &bytes[offset..offset + RECORD_HEADER_LEN + payload_len];
        let crc = crc32(&[&record[..32], &record[36..]]);
        bytes[offset + 32..offset + 36].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(&path, &bytes).unwrap();
    path
}

fn directory_snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
            (path.clone(), (std::fs::read(&path).unwrap(), modified))
        })
        .collect()
}

#[test]
fn history_tells_who_asked_what_and_how_the_task_exited() {
    let (_root, log_dir) = scenario_root();
    let text = replay_ok(&log_dir, &["history", "--container", "web"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("history of container web in namespace default"), "{text}");
    // Creation, task create/start/exit/delete and deletion, in seq order.
    let seqs: Vec<&str> =
        lines[1..lines.len() - 1].iter().map(|line| line.split_whitespace().next().unwrap()).collect();
    assert_eq!(seqs, ["4.0", "5.0", "6.0", "7.0", "8.0", "9.0", "16.0", "17.0", "18.0"], "{text}");
    let line_of = |seq: &str| *lines.iter().find(|line| line.starts_with(&format!("{seq} "))).unwrap();
    assert!(
        line_of("4.0").contains("uid 1000 gid 1000 pid 4242 via /berth.v1.Containers/Create (request cli-4242-1)"),
        "{text}"
    );
    assert!(
        line_of("4.0").contains("created the container from image docker.io/library/alpine:3.20 (abababababab)"),
        "{text}"
    );
    assert!(line_of("7.0").contains("pid 4243 via /berth.v1.Tasks/Start (request cli-4243-1)"), "{text}");
    assert!(line_of("7.0").contains("asked to start the task"), "{text}");
    assert!(line_of("8.0").contains("berthd (task start), answers seq 7"), "{text}");
    assert!(line_of("8.0").contains("task started: pid 5001"), "{text}");
    assert!(line_of("9.0").contains("task exited with code 3 at 2026-11-29T09:30:08.500Z"), "{text}");
    assert!(line_of("9.0").contains("2026-11-29T09:30:09.000Z"), "{text}");
    let summary = lines.last().unwrap();
    assert_eq!(
        *summary,
        "summary: container web in namespace default: created at 2026-11-29T09:30:04.000Z (seq 4) by uid 1000 pid 4242 via /berth.v1.Containers/Create; deleted at 2026-11-29T09:30:18.000Z (seq 18)"
    );
    // Other containers and namespaces stay out of it.
    assert!(!text.contains("db"), "{text}");
}

#[test]
fn history_of_a_live_container_ends_with_its_current_status() {
    let (root, _log_dir) = scenario_root();
    let output =
        replay(&["history", "--container", "db", "--namespace", "prod", "--root", root.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let text = stdout_of(&output);
    assert!(text.lines().last().unwrap().ends_with("now running, pid 6001 (as of seq 18)"), "{text}");
    // In the default namespace there is no db.
    let output = replay(&["history", "--container", "db", "--root", root.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("no event in this log is about container db in namespace default"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn state_at_seq_shows_the_task_running_before_its_exit_and_stopped_after() {
    let (_root, log_dir) = scenario_root();
    let before_exit = replay_ok(&log_dir, &["state", "--at", "8"]);
    assert!(before_exit.starts_with("state at seq 8 (2026-11-29T09:30:08.000Z); 8 records folded"), "{before_exit}");
    assert!(before_exit.contains("next record: seq 9 (2026-11-29T09:30:09.000Z), not folded"), "{before_exit}");
    let web_line = before_exit.lines().find(|line| line.trim_start().starts_with("web ")).expect("web listed");
    assert!(web_line.contains("task: running, pid 5001"), "{web_line}");
    assert!(before_exit.contains("docker.io/library/alpine:3.20  abababababab  1 layer"), "{before_exit}");
    assert!(!before_exit.contains("namespace prod"), "{before_exit}");

    let after_exit = replay_ok(&log_dir, &["state", "--at", "9"]);
    let web_line = after_exit.lines().find(|line| line.trim_start().starts_with("web ")).expect("web listed");
    assert!(web_line.contains("task: stopped, pid 5001, exit code 3 at 2026-11-29T09:30:08.500Z"), "{web_line}");

    let at_end = replay_ok(&log_dir, &["state"]);
    assert!(!at_end.lines().any(|line| line.trim_start().starts_with("web ")), "{at_end}");
    assert!(at_end.contains("namespace prod"), "{at_end}");
    assert!(at_end.contains("db  image docker.io/library/alpine:3.20"), "{at_end}");

    let nothing = replay_ok(&log_dir, &["state", "--at", "0"]);
    assert!(nothing.contains("seq 0 (before the first record)") && nothing.contains("namespaces: none"), "{nothing}");
}

#[test]
fn state_at_time_folds_up_to_the_last_record_at_or_before_that_time() {
    let (_root, log_dir) = scenario_root();
    // Half a second after record 8: record 8 is the last one at or before it.
    let between = replay_ok(&log_dir, &["state", "--at-time", "2026-11-29T09:30:08.5Z"]);
    assert!(
        between.starts_with("state at 2026-11-29T09:30:08.500Z: the last record at or before it is seq 8"),
        "{between}"
    );
    assert!(between.contains("task: running, pid 5001"), "{between}");
    // Exactly the timestamp of record 9 includes record 9.
    let exact = replay_ok(&log_dir, &["state", "--at-time", &timestamp_of(9).to_string()]);
    assert!(exact.contains("the last record at or before it is seq 9"), "{exact}");
    assert!(exact.contains("task: stopped"), "{exact}");
    // One nanosecond earlier it does not.
    let just_before = replay_ok(&log_dir, &["state", "--at-time", "2026-11-29T09:30:08.999999999Z"]);
    assert!(just_before.contains("is seq 8"), "{just_before}");
    // An offset is converted to UTC.
    let with_offset = replay_ok(&log_dir, &["state", "--at-time", "2026-11-29T10:30:03+01:00"]);
    assert!(with_offset.contains("is seq 3"), "{with_offset}");
    // Before the first record: nothing folded.
    let before = replay_ok(&log_dir, &["state", "--at-time", "2026-11-29T09:00:00Z"]);
    assert!(before.contains("seq 0 (before the first record)") && before.contains("namespaces: none"), "{before}");
    // JSON at a time equals the direct fold at the chosen seq.
    let json = replay_ok(&log_dir, &["state", "--at-time", "2026-11-29T09:30:08.5Z", "--json"]);
    assert_eq!(json, format!("{}\n", serde_json::to_string_pretty(&folded_directly(8)).unwrap()));
}

#[test]
fn state_json_equals_the_state_folded_directly() {
    let (_root, log_dir) = scenario_root();
    for (args, to_seq) in [
        (vec!["state", "--json"], 18),
        (vec!["state", "--json", "--at", "9"], 9),
        (vec!["state", "--at", "13", "--json"], 13),
    ] {
        let dump = replay_ok(&log_dir, &args);
        let expected = format!("{}\n", serde_json::to_string_pretty(&folded_directly(to_seq)).unwrap());
        assert_eq!(dump, expected, "{args:?}");
        assert_eq!(serde_json::from_str::<State>(&dump).unwrap(), folded_directly(to_seq));
        // Deterministic: a second run prints the same bytes.
        assert_eq!(replay_ok(&log_dir, &args), dump);
    }
}

#[test]
fn verify_passes_an_intact_log_and_prints_its_head_hash() {
    let (_root, log_dir) = scenario_root();
    let expected_head = {
        let (read_only, _report) = berth_log::open_read_only(&log_dir).unwrap();
        read_only.verify().unwrap().head_hash.iter().map(|byte| format!("{byte:02x}")).collect::<String>()
    };
    let text = replay_ok(&log_dir, &["verify"]);
    assert!(text.contains("records:    18 (seq 1..=18)"), "{text}");
    assert!(text.contains(&format!("head hash:  {expected_head}")), "{text}");
    assert!(text.contains("torn tail:  none"), "{text}");
    assert!(text.contains("result:     intact"), "{text}");
}

#[test]
fn verify_names_a_flipped_payload_byte_and_the_last_intact_seq() {
    let (_root, log_dir) = scenario_root();
    let segment = flip_payload_byte(&log_dir, 5, false);
    let offset = record_offset(&std::fs::read(&segment).unwrap(), 5);
    let output = replay(&["verify", "--log", log_dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout_of(&output));
    let text = stdout_of(&output);
    assert!(text.contains("result:     DAMAGED"), "{text}");
    assert!(text.contains("crc mismatch"), "{text}");
    assert!(text.contains(&format!("segment:    {}", segment.display())), "{text}");
    assert!(text.contains(&format!("offset:     {offset}")), "{text}");
    assert!(text.contains("seq:        5"), "{text}");
    assert!(text.contains("intact:     seq 1..=4"), "{text}");
    assert!(stderr_of(&output).contains("the log has been altered or damaged after seq 4"), "{}", stderr_of(&output));

    // The other commands refuse the damaged log and point at verify.
    let output = replay(&["state", "--log", log_dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_of(&output).contains("run `berth-replay verify --log"), "{}", stderr_of(&output));
}

#[test]
fn verify_catches_an_edit_whose_checksum_was_recomputed_by_the_hash_chain() {
    let (_root, log_dir) = scenario_root();
    let segment = flip_payload_byte(&log_dir, 7, true);
    let output = replay(&["verify", "--log", log_dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout_of(&output));
    let text = stdout_of(&output);
    assert!(text.contains("problem:    the hash chain is broken"), "{text}");
    assert!(text.contains(&format!("segment:    {}", segment.display())), "{text}");
    assert!(text.contains("seq:        7"), "{text}");
    assert!(text.contains("the log has been altered or damaged after seq 6"), "{text}");
}

#[test]
fn verify_reports_a_torn_tail_and_fails_on_it_only_when_strict() {
    let (_root, log_dir) = scenario_root();
    flip_payload_byte(&log_dir, 18, false);
    let text = replay_ok(&log_dir, &["verify"]);
    assert!(text.contains("records:    17 (seq 1..=17)"), "{text}");
    assert!(text.contains("torn tail:  ") && !text.contains("torn tail:  none"), "{text}");
    assert!(text.contains("result:     intact"), "{text}");
    let output = replay(&["verify", "--strict", "--log", log_dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_of(&output).contains("the log has been altered or damaged after seq 17"), "{}", stderr_of(&output));
}

#[test]
fn no_command_changes_a_byte_of_the_log_even_with_a_torn_tail() {
    let (_root, log_dir) = scenario_root();
    flip_payload_byte(&log_dir, 18, false);
    let before = directory_snapshot(&log_dir);
    for args in [
        vec!["verify"],
        vec!["verify", "--strict"],
        vec!["events"],
        vec!["history", "--container", "web"],
        vec!["state", "--at", "3"],
        vec!["state", "--at-time", "2026-11-29T09:30:05Z", "--json"],
        vec!["stats"],
    ] {
        let mut full_args = args.clone();
        full_args.extend(["--log", log_dir.to_str().unwrap()]);
        replay(&full_args);
    }
    assert!(before == directory_snapshot(&log_dir), "a read-only command changed the log directory");
}

#[test]
fn events_print_one_line_per_event_and_filter() {
    let (_root, log_dir) = scenario_root();
    let all = replay_ok(&log_dir, &["events"]);
    // Record 3 carries three events.
    assert_eq!(all.lines().count(), 20, "{all}");
    let exit_line = all.lines().find(|line| line.starts_with("9.0 ")).unwrap();
    assert_eq!(
        exit_line,
        format!(
            "9.0  2026-11-29T09:30:09.000Z  default  TaskExited  daemon (task exited)  {{\"cause\":\"exited\",\"container_id\":\"web\",\"exit_code\":3,\"exited_at_ns\":{},\"signal\":0}}",
            BASE_NS + 8 * SECOND_NS + SECOND_NS / 2
        )
    );
    assert!(
        all.lines().any(|line| line.starts_with(
            "3.2  2026-11-29T09:30:03.000Z  default  ImageCreated  uid=0 gid=0 pid=101 /berth.v1.Images/Import req=cli-101-1  {"
        )),
        "{all}"
    );
    assert!(
        all.lines()
            .any(|line| line.starts_with("1.0  2026-11-29T09:30:01.000Z  -  DaemonStarted  daemon (berthd started)")),
        "{all}"
    );

    let first_seq = |text: &str| -> Vec<String> {
        text.lines().map(|line| line.split_whitespace().next().unwrap().to_string()).collect()
    };
    assert_eq!(
        first_seq(&replay_ok(&log_dir, &["events", "--container", "db"])),
        ["11.0", "12.0", "13.0", "14.0", "15.0"]
    );
    assert_eq!(
        first_seq(&replay_ok(&log_dir, &["events", "--kind", "taskexited", "--kind", "TaskStarted"])),
        ["8.0", "9.0", "15.0"]
    );
    assert_eq!(
        first_seq(&replay_ok(&log_dir, &["events", "--namespace", "prod", "--from", "12", "--to", "13"])),
        ["12.0", "13.0"]
    );
    assert_eq!(first_seq(&replay_ok(&log_dir, &["events", "--namespace", ""])), ["1.0"]);
    assert_eq!(replay_ok(&log_dir, &["events", "--from", "100"]), "");

    let json = replay_ok(&log_dir, &["events", "--json", "--container", "web", "--kind", "TaskStarted"]);
    let objects: Vec<serde_json::Value> = json.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(objects.len(), 1);
    let started = &objects[0];
    assert_eq!(started["seq"], 8);
    assert_eq!(started["index"], 0);
    assert_eq!(started["timestamp_ns"], timestamp_of(8).as_ns());
    assert_eq!(started["namespace"], "default");
    assert_eq!(started["kind"], "TaskStarted");
    assert_eq!(started["origin"], serde_json::json!({"kind": "daemon", "reason": "task start", "answers": 7}));
    assert_eq!(started["fields"], serde_json::json!({"container_id": "web", "pid": 5001}));
}

#[test]
fn events_follow_prints_records_appended_while_it_runs() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = root.path().join("log");
    let event_log = open_writer(&log_dir);
    let scenario = scenario();
    event_log.append(&scenario[0].encode()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth-replay"))
        .args(["events", "--follow", "--to", "4", "--log", log_dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (line_sender, line_receiver) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if line_sender.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next_line = || line_receiver.recv_timeout(Duration::from_secs(20)).expect("a followed line within 20 s");
    assert!(next_line().starts_with("1.0 "));
    for envelope in &scenario[1..4] {
        event_log.append(&envelope.encode()).unwrap();
    }
    let followed: Vec<String> = (0..5).map(|_| next_line()).collect();
    let seqs: Vec<&str> = followed.iter().map(|line| line.split_whitespace().next().unwrap()).collect();
    assert_eq!(seqs, ["2.0", "3.0", "3.1", "3.2", "4.0"]);
    // --to 4 was reached, so it exits by itself.
    let status = child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn stats_count_records_events_and_measure_replay_speed() {
    let (_root, log_dir) = scenario_root();
    let text = replay_ok(&log_dir, &["stats"]);
    assert!(text.contains("records:      18 (seq 1..=18)"), "{text}");
    assert!(text.contains("first record: 2026-11-29T09:30:01.000Z (seq 1)"), "{text}");
    assert!(text.contains("last record:  2026-11-29T09:30:18.000Z (seq 18)"), "{text}");
    assert!(text.contains("namespaces:   3"), "{text}");
    assert!(text.contains("events:       20"), "{text}");
    assert!(text.lines().any(|line| line.split_whitespace().collect::<Vec<_>>() == ["TaskCreated", "2"]), "{text}");
    assert!(text.contains("records/s (this run)"), "{text}");
    assert!(text.contains("segments:     1 in use"), "{text}");
}

#[test]
fn errors_say_what_to_do() {
    let (root, log_dir) = scenario_root();
    let missing = root.path().join("nope");
    let output = replay(&["stats", "--root", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains(&format!("no log at {}/log: pass --root", missing.display())),
        "{}",
        stderr_of(&output)
    );

    let output = replay(&["state", "--at", "99", "--log", log_dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("seq 99 is past the end of the log (its last seq is 18); pass a seq of at most 18"),
        "{}",
        stderr_of(&output)
    );

    let output = replay(&["state", "--at-time", "2026-11-29 09:30", "--log", log_dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("write RFC 3339 UTC like 2026-11-29T09:30:00Z"), "{}", stderr_of(&output));

    let output = replay(&["events", "--from", "5", "--to", "2", "--log", log_dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_of(&output).contains("swap them"), "{}", stderr_of(&output));

    let output = replay(&["--help"]);
    assert!(stdout_of(&output).contains("never opens anything for writing"));
}

/// The scenario three times over in 4 KiB segments, so the log spans several segment files.
fn multi_segment_log() -> (tempfile::TempDir, PathBuf, u64) {
    let root = tempfile::tempdir().unwrap();
    let log_dir = root.path().join("log");
    let options = LogOptions { segment_size: 4096, durability: Durability::NoSync, ..LogOptions::default() };
    let (event_log, _report) = EventLog::open(&log_dir, options).unwrap();
    let mut n_records = 0;
    for round in 0..3 {
        for envelope in scenario() {
            n_records += 1;
            let mut envelope = envelope;
            if round > 0 {
                // Same story in namespaces of its own, so every round folds.
                envelope.namespace = match envelope.namespace.as_str() {
                    "" => String::new(),
                    namespace => format!("{namespace}-{round}"),
                };
                for event in &mut envelope.events {
                    if let Event::NamespaceCreated { name, .. } = event {
                        *name = format!("{name}-{round}");
                    }
                }
            }
            event_log.append_batch_at(&[&envelope.encode()], timestamp_of(n_records)).unwrap();
        }
    }
    drop(event_log);
    (root, log_dir, n_records)
}

#[test]
fn a_log_of_several_segments_verifies_replays_and_pins_damage_in_an_early_segment() {
    let (_root, log_dir, n_records) = multi_segment_log();
    let stats = replay_ok(&log_dir, &["stats"]);
    let n_segments: usize = stats
        .lines()
        .find_map(|line| line.strip_prefix("segments:     "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(n_segments >= 3, "{stats}");
    assert!(replay_ok(&log_dir, &["verify"]).contains(&format!("records:    {n_records} (seq 1..={n_records})")));
    let events = replay_ok(&log_dir, &["events", "--kind", "TaskExited"]);
    assert_eq!(events.lines().count(), 3, "{events}");
    let state = replay_ok(&log_dir, &["state", "--json"]);
    let state: State = serde_json::from_str(&state).unwrap();
    assert_eq!(state.last_seq, Seq(n_records));
    assert!(state.container("prod-2", "db").is_some());

    // Damage in the first segment, which the read-only open does not scan: verify finds it.
    let segment = flip_payload_byte(&log_dir, 6, false);
    let output = replay(&["verify", "--log", log_dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout_of(&output));
    let text = stdout_of(&output);
    assert!(text.contains(&format!("segment:    {}", segment.display())), "{text}");
    assert!(text.contains("intact:     seq 1..=5"), "{text}");
    assert!(stderr_of(&output).contains("the log has been altered or damaged after seq 5"), "{}", stderr_of(&output));
    // Reading past it fails with the place, not with a wrong state.
    let output = replay(&["state", "--log", log_dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_of(&output).contains(&format!("corruption in {}", segment.display())), "{}", stderr_of(&output));
    // Before it, the state is still there.
    replay_ok(&log_dir, &["state", "--at", "5"]);
}

#[test]
fn at_time_with_a_clock_set_back_folds_to_the_last_record_stamped_at_or_before() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = root.path().join("log");
    let event_log = open_writer(&log_dir);
    // Seconds after BASE of records 1..=6: the clock jumps ahead at seq 4 and back at seq 5.
    let offsets_s = [1u64, 2, 3, 10, 4, 5];
    for (envelope, offset_s) in scenario().iter().zip(offsets_s) {
        event_log.append_batch_at(&[&envelope.encode()], Timestamp::from_ns(BASE_NS + offset_s * SECOND_NS)).unwrap();
    }
    drop(event_log);
    let text = replay_ok(&log_dir, &["state", "--at-time", "2026-11-29T09:30:04.5Z"]);
    assert!(text.contains("the last record at or before it is seq 5"), "{text}");
    assert!(text.contains("timestamps go backwards at seq 5"), "{text}");
    let text = replay_ok(&log_dir, &["state", "--at-time", "2026-11-29T09:30:03.5Z"]);
    assert!(text.contains("is seq 3"), "{text}");
}
