//! The fast replay path is exactly the plain one: `decode_envelope` == `Envelope::decode` for
//! any payload (canonical, non-canonical or damaged), every payload this build writes takes the
//! fast path, and folding a real log through `replay_parallel` gives the same State, in the same
//! order, with the same first error, as `Envelope::decode` + `State::apply` one record at a time.

use std::collections::BTreeMap;

use berth_log::{Durability, EventLog, LogError, LogOptions, Seq, Timestamp};
use berth_projections::decode::{decode_envelope, is_canonical, replay_parallel, REPLAY_BATCH_RECORDS};
use berth_projections::*;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Mostly short ASCII ids, sometimes any Unicode, sometimes long enough for str16.
    prop_oneof![4 => "[a-f0-9]{0,12}", 1 => any::<String>(), 1 => "[a-z]{200,300}"]
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    vec(text(), 0..4)
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(text(), text(), 0..3)
}

fn descriptor() -> impl Strategy<Value = Descriptor> {
    (text(), text(), any::<i64>()).prop_map(|(digest, media_type, size)| Descriptor { digest, media_type, size })
}

fn image() -> impl Strategy<Value = ImageRecord> {
    let layer =
        (descriptor(), text(), text()).prop_map(|(blob, diff_id, chain_id)| LayerRecord { blob, diff_id, chain_id });
    (text(), descriptor(), descriptor(), vec(layer, 0..3), texts(), texts(), texts(), text(), text()).prop_map(
        |(name, manifest, config, layers, entrypoint, cmd, env, working_dir, user)| ImageRecord {
            name,
            manifest,
            config,
            layers,
            entrypoint,
            cmd,
            env,
            working_dir,
            user,
        },
    )
}

fn limits() -> impl Strategy<Value = ResourceLimits> {
    let ulimit = (text(), any::<u64>(), any::<u64>()).prop_map(|(name, soft, hard)| Ulimit { name, soft, hard });
    (
        (any::<Option<i64>>(), any::<Option<i64>>(), any::<Option<u64>>(), any::<Option<u64>>()),
        (proptest::option::of(text()), any::<Option<i64>>(), any::<Option<u16>>(), vec(ulimit, 0..3)),
    )
        .prop_map(
            |(
                (memory_bytes, memory_swap_bytes, nano_cpus, cpu_shares),
                (cpuset_cpus, pids_limit, blkio_weight, ulimits),
            )| ResourceLimits {
                memory_bytes,
                memory_swap_bytes,
                nano_cpus,
                cpu_shares,
                cpuset_cpus,
                pids_limit,
                blkio_weight,
                ulimits,
            },
        )
}

fn policies() -> impl Strategy<Value = ContainerPolicies> {
    let device = (text(), text(), text()).prop_map(|(host_path, container_path, permissions)| DeviceMapping {
        host_path,
        container_path,
        permissions,
    });
    let restart = (0..4usize, any::<u32>())
        .prop_map(|(mode, max_retries)| RestartPolicy { mode: RestartMode::ALL[mode], max_retries });
    let security = (
        (any::<bool>(), any::<bool>(), proptest::option::of(text()), any::<Option<bool>>()),
        (texts(), texts(), vec(device, 0..2), texts()),
    )
        .prop_map(
            |(
                (privileged, seccomp_unconfined, seccomp_profile, no_new_privileges),
                (cap_add, cap_drop, devices, group_add),
            )| {
                SecurityOptions {
                    privileged,
                    seccomp_unconfined,
                    seccomp_profile,
                    no_new_privileges,
                    cap_add,
                    cap_drop,
                    devices,
                    group_add,
                }
            },
        );
    (limits(), restart, security).prop_map(|(limits, restart, security)| ContainerPolicies {
        limits,
        restart,
        security,
    })
}

fn mount() -> impl Strategy<Value = MountRecord> {
    (text(), text(), text(), any::<bool>(), texts()).prop_map(|(kind, source, destination, read_only, options)| {
        MountRecord { kind, source, destination, read_only, options }
    })
}

fn sealed_env() -> impl Strategy<Value = SealedEnv> {
    (text(), text(), text(), text())
        .prop_map(|(name, key_id, nonce, ciphertext)| SealedEnv { name, value: Sealed { key_id, nonce, ciphertext } })
}

fn port() -> impl Strategy<Value = PortMapping> {
    (text(), any::<u16>(), any::<u16>(), text()).prop_map(|(host_ip, host_port, container_port, protocol)| {
        PortMapping { host_ip, host_port, container_port, protocol }
    })
}

fn container_network() -> impl Strategy<Value = ContainerNetwork> {
    (text(), vec(port(), 0..3), texts(), texts()).prop_map(|(mode, ports, dns, extra_hosts)| ContainerNetwork {
        mode,
        ports,
        dns,
        extra_hosts,
    })
}

fn attachment() -> impl Strategy<Value = NetworkAttachment> {
    ((text(), text(), text()), texts(), (text(), text()), vec(port(), 0..3), text()).prop_map(
        |((network, netns, interface), addresses, (gateway, mac), ports, cni_container_id)| NetworkAttachment {
            network,
            netns,
            interface,
            addresses,
            gateway,
            mac,
            ports,
            cni_container_id,
        },
    )
}

fn container() -> impl Strategy<Value = ContainerRecord> {
    let storage = (vec(mount(), 0..3), any::<bool>(), any::<bool>(), vec(sealed_env(), 0..3), container_network());
    (
        text(),
        text(),
        text(),
        texts(),
        texts(),
        (text(), text(), text()),
        labels(),
        texts(),
        (text(), any::<bool>(), any::<bool>()),
        policies(),
        storage,
    )
        .prop_map(
            |(
                id,
                image,
                image_digest,
                args,
                env,
                (working_dir, user, hostname),
                labels,
                lowers,
                (snapshot_key, open_stdin, tty),
                policies,
                (mounts, read_only_rootfs, auto_remove, sealed_env, network),
            )| {
                ContainerRecord {
                    id,
                    image,
                    image_digest,
                    args,
                    env,
                    working_dir,
                    user,
                    hostname,
                    labels,
                    lowers,
                    snapshot_key,
                    open_stdin,
                    tty,
                    policies: Box::new(policies),
                    mounts,
                    read_only_rootfs,
                    auto_remove,
                    sealed_env,
                    network,
                }
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    let id = text;
    prop_oneof![
        (text(), labels()).prop_map(|(name, labels)| Event::NamespaceCreated { name, labels }),
        text().prop_map(|name| Event::NamespaceRemoved { name }),
        (text(), any::<i64>(), text()).prop_map(|(digest, size, media_type)| Event::ContentAdded {
            digest,
            size,
            media_type
        }),
        text().prop_map(|digest| Event::ContentRemoved { digest }),
        (text(), proptest::option::of(text()), text())
            .prop_map(|(chain_id, parent, diff_id)| Event::SnapshotCommitted { chain_id, parent, diff_id }),
        text().prop_map(|chain_id| Event::SnapshotRemoved { chain_id }),
        image().prop_map(|image| Event::ImageCreated { image }),
        image().prop_map(|image| Event::ImageUpdated { image }),
        text().prop_map(|name| Event::ImageRemoved { name }),
        (text(), text(), text(), text(), text()).prop_map(|(name, reference, served_by, manifest_digest, platform)| {
            Event::ImagePulled { name, reference, served_by, manifest_digest, platform }
        }),
        (text(), text(), text(), text(), any::<u32>(), any::<u64>(), any::<u32>(), any::<u32>()).prop_map(
            |(
                name,
                reference,
                pushed_to,
                manifest_digest,
                uploaded_blobs,
                uploaded_bytes,
                existing_blobs,
                mounted_blobs,
            )| {
                Event::ImagePushed {
                    name,
                    reference,
                    pushed_to,
                    manifest_digest,
                    uploaded_blobs,
                    uploaded_bytes,
                    existing_blobs,
                    mounted_blobs,
                }
            }
        ),
        container().prop_map(|container| Event::ContainerCreated { container }),
        id().prop_map(|id| Event::ContainerDeleted { id }),
        (id(), limits()).prop_map(|(id, limits)| Event::ContainerUpdated { id, limits }),
        (id(), any::<u32>(), text(), any::<u64>()).prop_map(|(container_id, attempt, cause, delay_ms)| {
            Event::TaskRestartScheduled { container_id, attempt, cause, delay_ms }
        }),
        id().prop_map(|container_id| Event::TaskCreateRequested { container_id }),
        (id(), any::<u32>(), any::<i32>()).prop_map(|(container_id, pid, monitor_pid)| Event::TaskCreated {
            container_id,
            pid,
            monitor_pid
        }),
        (id(), text()).prop_map(|(container_id, error)| Event::TaskCreateFailed { container_id, error }),
        id().prop_map(|container_id| Event::TaskStartRequested { container_id }),
        (id(), any::<u32>()).prop_map(|(container_id, pid)| Event::TaskStarted { container_id, pid }),
        (id(), text()).prop_map(|(container_id, error)| Event::TaskStartFailed { container_id, error }),
        (id(), any::<i32>(), any::<bool>()).prop_map(|(container_id, signal, all)| Event::TaskKillRequested {
            container_id,
            signal,
            all
        }),
        (id(), any::<i32>()).prop_map(|(container_id, signal)| Event::TaskKillDelivered { container_id, signal }),
        id().prop_map(|container_id| Event::TaskPaused { container_id }),
        id().prop_map(|container_id| Event::TaskResumed { container_id }),
        (id(), any::<i32>(), text()).prop_map(|(container_id, signal, error)| Event::TaskKillFailed {
            container_id,
            signal,
            error
        }),
        (id(), any::<i32>(), any::<i32>(), any::<u64>(), 0..3u8).prop_map(
            |(container_id, exit_code, signal, exited_at_ns, cause)| Event::TaskExited {
                container_id,
                exit_code,
                signal,
                exited_at_ns: Timestamp::from_ns(exited_at_ns),
                cause: [ExitCause::Exited, ExitCause::OomKilled, ExitCause::MonitorLost][cause as usize],
            }
        ),
        (id(), text(), texts(), texts(), (text(), text(), any::<bool>(), any::<bool>()), vec(sealed_env(), 0..3))
            .prop_map(|(container_id, exec_id, args, env, (working_dir, user, tty, open_stdin), sealed_env)| {
                Event::ExecRequested {
                    container_id,
                    exec_id,
                    process: berth_projections::ExecProcess {
                        args,
                        env,
                        working_dir,
                        user,
                        tty,
                        open_stdin,
                        sealed_env,
                    },
                }
            }),
        (id(), text(), any::<u32>()).prop_map(|(container_id, exec_id, pid)| Event::ExecStarted {
            container_id,
            exec_id,
            pid
        }),
        (id(), text(), text()).prop_map(|(container_id, exec_id, error)| Event::ExecStartFailed {
            container_id,
            exec_id,
            error
        }),
        (id(), text(), any::<i32>(), any::<i32>(), any::<u64>()).prop_map(
            |(container_id, exec_id, exit_code, signal, exited_at_ns)| Event::ExecExited {
                container_id,
                exec_id,
                exit_code,
                signal,
                exited_at_ns: Timestamp::from_ns(exited_at_ns),
            }
        ),
        (id(), any::<bool>()).prop_map(|(container_id, force)| Event::TaskDeleteRequested { container_id, force }),
        (id(), any::<Option<i32>>())
            .prop_map(|(container_id, exit_code)| Event::TaskDeleted { container_id, exit_code }),
        (id(), text()).prop_map(|(container_id, error)| Event::TaskDeleteFailed { container_id, error }),
        (text(), any::<i32>(), any::<u64>()).prop_map(|(version, pid, replayed_to)| Event::DaemonStarted {
            version,
            pid,
            replayed_to: Seq(replayed_to)
        }),
        (text(), text()).prop_map(|(what, id)| Event::OrphanRemoved { what, id }),
        (text(), labels(), proptest::option::of(text())).prop_map(|(name, labels, anonymous_for)| {
            Event::VolumeCreated { volume: VolumeRecord { name, labels, anonymous_for } }
        }),
        text().prop_map(|name| Event::VolumeRemoved { name }),
        (id(), text(), text()).prop_map(|(container_id, key_id, reason)| Event::SecretsForgotten {
            container_id,
            key_id,
            reason
        }),
        (any::<u64>(), text()).prop_map(|(covers, digest)| Event::CheckpointWritten { covers: Seq(covers), digest }),
        (text(), text(), text(), text()).prop_map(|(name, bridge, subnet, gateway)| Event::NetworkCreated {
            network: NetworkRecord { name, bridge, subnet, gateway }
        }),
        text().prop_map(|name| Event::NetworkRemoved { name }),
        (id(), attachment()).prop_map(|(container_id, attachment)| Event::NetworkAttached { container_id, attachment }),
        (id(), text()).prop_map(|(container_id, network)| Event::NetworkDetached { container_id, network }),
        (id(), text()).prop_map(|(container_id, network)| Event::NetworkReleased { container_id, network }),
    ]
}

fn origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        (any::<u32>(), any::<u32>(), any::<i32>(), text(), text())
            .prop_map(|(uid, gid, pid, method, request_id)| Origin::Client { uid, gid, pid, method, request_id }),
        (text(), proptest::option::of(any::<u64>()))
            .prop_map(|(reason, answers)| Origin::Daemon { reason, answers: answers.map(Seq) }),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (0..=EVENT_SCHEMA, text(), origin(), vec(event(), 0..4)).prop_map(|(schema, namespace, origin, events)| Envelope {
        schema,
        namespace,
        origin,
        events,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every payload this build writes takes the fast path and comes back unchanged. A new
    /// event (add it to `event()` above) that fails here is one the canonical reader refuses:
    /// still decoded right, by rmp-serde, but slowly — see projections/src/canonical.rs.
    #[test]
    fn canonical_payloads_take_the_fast_path(envelope in envelope()) {
        let payload = envelope.encode();
        prop_assert!(is_canonical(&payload), "canonical payload refused by the fast reader");
        prop_assert_eq!(decode_envelope(&payload), Ok(envelope));
    }

    /// Damaged payloads (cut anywhere, one byte changed anywhere, bytes appended) and the
    /// struct-as-map form rmp-serde also reads: the same answer, error included, as
    /// `Envelope::decode`.
    #[test]
    fn any_payload_decodes_as_envelope_decode_does(envelope in envelope(), position in any::<prop::sample::Index>(), byte in any::<u8>(), tail in vec(any::<u8>(), 1..4)) {
        let payload = envelope.encode();
        let cut = &payload[..position.index(payload.len())];
        prop_assert_eq!(decode_envelope(cut), Envelope::decode(cut));
        let mut flipped = payload.clone();
        flipped[position.index(payload.len())] = byte;
        prop_assert_eq!(decode_envelope(&flipped), Envelope::decode(&flipped));
        let mut longer = payload.clone();
        longer.extend_from_slice(&tail);
        prop_assert_eq!(decode_envelope(&longer), Envelope::decode(&longer));
        let named = rmp_serde::to_vec_named(&envelope).unwrap();
        prop_assert_eq!(decode_envelope(&named), Envelope::decode(&named));
        prop_assert_eq!(decode_envelope(&named), Ok(envelope));
    }
}

#[test]
fn struct_arrays_of_another_length_get_envelope_decode_answers() {
    let envelope = Envelope::new(
        "default",
        Origin::Daemon { reason: "r".into(), answers: Some(Seq(7)) },
        vec![Event::TaskStarted { container_id: "c".into(), pid: 9 }],
    );
    let payload = envelope.encode();
    assert_eq!(payload[0], 0x94, "an envelope is a 4-element array");
    // Fewer fields than the struct has (an older record, or damage): the derive decides.
    let mut shorter = payload.clone();
    shorter[0] = 0x93;
    assert_eq!(decode_envelope(&shorter), Envelope::decode(&shorter));
    assert!(decode_envelope(&shorter).is_err());
    // More fields than the struct has.
    let mut longer = payload.clone();
    longer[0] = 0x95;
    longer.push(0xc0);
    assert_eq!(decode_envelope(&longer), Envelope::decode(&longer));
    // A struct variant's fields, one short: TaskStarted's [container_id, pid] as [container_id].
    let fields_at = payload.windows(2).position(|pair| pair == [0x92, 0xa1]).expect("TaskStarted's field array");
    let mut short_variant = payload[..fields_at].to_vec();
    short_variant.extend_from_slice(&[0x91, 0xa1, b'c']);
    assert_eq!(decode_envelope(&short_variant), Envelope::decode(&short_variant));
    assert!(decode_envelope(&short_variant).is_err());
}

#[test]
fn newer_schemas_and_garbage_get_envelope_decode_errors() {
    let mut newer = Envelope::new("default", Origin::Daemon { reason: "r".into(), answers: None }, vec![]);
    newer.schema = EVENT_SCHEMA + 1;
    let payload = newer.encode();
    assert!(!is_canonical(&payload));
    assert!(matches!(decode_envelope(&payload), Err(DecodeError::NewerSchema { .. })));
    assert!(matches!(decode_envelope(b"\xc1garbage"), Err(DecodeError::Malformed { .. })));
    assert_eq!(decode_envelope(b""), Envelope::decode(b""));
}

/// Container lifecycles over a few ids, answered by daemon outcomes, with a failure now and
/// then: enough records to cross several replay batches.
fn lifecycle_log(n_records: usize) -> Vec<Envelope> {
    let client =
        |method: &str| Origin::Client { uid: 0, gid: 0, pid: 42, method: method.into(), request_id: "r".into() };
    let daemon = |answers: usize| Origin::Daemon { reason: "executor".into(), answers: Some(Seq(answers as u64)) };
    let mut records = vec![Envelope::new(
        "default",
        client("Namespaces/Create"),
        vec![Event::NamespaceCreated { name: "default".into(), labels: Default::default() }],
    )];
    let mut round = 0;
    while records.len() < n_records {
        let id = format!("{:012x}", round % 7);
        let seq = records.len() + 1; // seq of the next record
        let container = ContainerRecord { id: id.clone(), args: vec!["true".into()], ..ContainerRecord::default() };
        let c = || id.clone();
        let mut cycle = vec![
            Envelope::new("default", client("Containers/Create"), vec![Event::ContainerCreated { container }]),
            Envelope::new("default", client("Tasks/Create"), vec![Event::TaskCreateRequested { container_id: c() }]),
            Envelope::new(
                "default",
                daemon(seq + 1),
                vec![Event::TaskCreated { container_id: c(), pid: round as u32, monitor_pid: 1 }],
            ),
            Envelope::new("default", client("Tasks/Start"), vec![Event::TaskStartRequested { container_id: c() }]),
        ];
        if round % 5 == 0 {
            cycle.push(Envelope::new(
                "default",
                daemon(seq + 3),
                vec![Event::TaskStartFailed { container_id: c(), error: "no".into() }],
            ));
        } else {
            cycle.push(Envelope::new(
                "default",
                daemon(seq + 3),
                vec![Event::TaskStarted { container_id: c(), pid: 7 }],
            ));
        }
        if round % 3 != 0 {
            // Every third container stays, so the final state holds something.
            cycle.push(Envelope::new(
                "default",
                client("Tasks/Delete"),
                vec![Event::TaskDeleteRequested { container_id: c(), force: true }],
            ));
            cycle.push(Envelope::new(
                "default",
                daemon(seq + 5),
                vec![Event::TaskDeleted { container_id: c(), exit_code: Some(0) }, Event::ContainerDeleted { id: c() }],
            ));
        }
        records.extend(cycle);
        round += 1;
    }
    records.truncate(n_records);
    records
}

fn write_log(dir: &std::path::Path, payloads: &[Vec<u8>]) -> EventLog {
    let (log, _) = EventLog::open(
        dir,
        LogOptions { durability: Durability::NoSync, segment_size: 1 << 20, ..LogOptions::default() },
    )
    .unwrap();
    for chunk in payloads.chunks(256) {
        let chunk: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        log.append_batch(&chunk).unwrap();
    }
    log
}

/// What store.rs's replay did before: read, `Envelope::decode`, apply, stop at the first error.
fn plain_fold(log: &EventLog) -> (State, Vec<u64>, Option<(u64, String)>) {
    let mut state = State::new();
    let mut seen = Vec::new();
    let mut reader = log.reader(Seq(1)).unwrap();
    while let Some(record) = reader.next() {
        let record = record.unwrap();
        seen.push(record.seq.get());
        match Envelope::decode(record.payload) {
            Ok(envelope) => state.apply(record.seq, record.timestamp, &envelope),
            Err(error) => return (state, seen, Some((record.seq.get(), error.to_string()))),
        }
    }
    (state, seen, None)
}

#[derive(Debug)]
enum FoldError {
    Log(LogError),
    Decode(u64, String),
}

impl From<LogError> for FoldError {
    fn from(error: LogError) -> FoldError {
        FoldError::Log(error)
    }
}

fn parallel_fold(log: &EventLog, n_workers: usize) -> (State, Vec<u64>, Option<(u64, String)>) {
    let mut state = State::new();
    let mut seen = Vec::new();
    let result = replay_parallel(&mut log.reader(Seq(1)).unwrap(), n_workers, |seq, timestamp_ns, envelope| {
        seen.push(seq.get());
        let envelope = envelope.map_err(|error| FoldError::Decode(seq.get(), error.to_string()))?;
        state.apply(seq, timestamp_ns, envelope);
        Ok(())
    });
    match result {
        Ok(n_records) => {
            assert_eq!(n_records, seen.len() as u64);
            (state, seen, None)
        }
        Err(FoldError::Decode(seq, error)) => (state, seen, Some((seq, error))),
        Err(FoldError::Log(error)) => panic!("unexpected log error: {error}"),
    }
}

#[test]
fn parallel_replay_folds_the_same_state_as_the_plain_path() {
    let n_records = 3 * REPLAY_BATCH_RECORDS + 123;
    // One record in 97 in the struct-as-map form rmp-serde also reads: the fallback path.
    let payloads: Vec<Vec<u8>> = lifecycle_log(n_records)
        .iter()
        .enumerate()
        .map(
            |(index, envelope)| {
                if index % 97 == 3 {
                    rmp_serde::to_vec_named(envelope).unwrap()
                } else {
                    envelope.encode()
                }
            },
        )
        .collect();
    assert!(!is_canonical(&payloads[3]));
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), &payloads);
    let (expected, expected_seen, expected_error) = plain_fold(&log);
    assert!(expected_error.is_none());
    assert_eq!(expected.last_seq, Seq(n_records as u64));
    assert!(expected.containers().count() > 0, "the test log should leave containers behind");
    for n_workers in [0, 1, 2, 3] {
        let (state, seen, error) = parallel_fold(&log, n_workers);
        assert!(error.is_none(), "{n_workers} workers: {error:?}");
        assert_eq!(seen, expected_seen, "{n_workers} workers: records out of order");
        assert_eq!(state, expected, "{n_workers} workers: different state");
    }
}

#[test]
fn parallel_replay_stops_at_the_first_bad_record_like_the_plain_path() {
    let mut payloads: Vec<Vec<u8>> =
        lifecycle_log(2 * REPLAY_BATCH_RECORDS + 10).iter().map(Envelope::encode).collect();
    // A bad record in the second batch, and another later that must never be reported.
    let first_bad = REPLAY_BATCH_RECORDS + 17;
    payloads[first_bad - 1] = b"\x94\x01".to_vec();
    payloads[first_bad + 50] = b"\xc1".to_vec();
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), &payloads);
    let (expected, expected_seen, expected_error) = plain_fold(&log);
    assert_eq!(expected_error.as_ref().map(|(seq, _)| *seq), Some(first_bad as u64));
    for n_workers in [0, 1, 2] {
        let (state, seen, error) = parallel_fold(&log, n_workers);
        assert_eq!(error, expected_error, "{n_workers} workers");
        assert_eq!(seen, expected_seen, "{n_workers} workers");
        assert_eq!(state, expected, "{n_workers} workers");
    }
}

#[test]
fn parallel_replay_of_an_empty_log_hands_over_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), &[]);
    for n_workers in [0, 2] {
        let (state, seen, error) = parallel_fold(&log, n_workers);
        assert!(seen.is_empty() && error.is_none());
        assert_eq!(state, State::new());
    }
}

/// A `TaskExited` written before the exit cause existed (four fields) still decodes, on both
/// paths, as an ordinary exit.
#[test]
fn task_exits_recorded_before_the_cause_existed_decode_as_exited() {
    #[derive(serde::Serialize)]
    enum OldEvent {
        TaskExited { container_id: String, exit_code: i32, signal: i32, exited_at_ns: Timestamp },
    }
    let origin = Origin::Daemon { reason: "task exited".into(), answers: None };
    let old_event = OldEvent::TaskExited {
        container_id: "web".into(),
        exit_code: 137,
        signal: 9,
        exited_at_ns: Timestamp::from_ns(7),
    };
    let payload = rmp_serde::to_vec(&(EVENT_SCHEMA, "default", &origin, vec![old_event])).unwrap();
    let expected = Envelope::new(
        "default",
        origin,
        vec![Event::TaskExited {
            container_id: "web".into(),
            exit_code: 137,
            signal: 9,
            exited_at_ns: Timestamp::from_ns(7),
            cause: ExitCause::Exited,
        }],
    );
    assert_eq!(Envelope::decode(&payload), Ok(expected.clone()));
    assert_eq!(decode_envelope(&payload), Ok(expected));
}
