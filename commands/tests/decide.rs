//! Commands checked against a state built by folding their own events: each refusal has the
//! right kind, and an outcome can only be recorded once.

mod support;

use berth_commands::*;
use berth_log::{Seq, Timestamp};
use berth_projections::*;

struct World {
    state: State,
}

impl World {
    fn new() -> World {
        World { state: State::new() }
    }

    /// Decide and, if accepted, fold the events in like the daemon does.
    fn run(&mut self, command: Command, answers: Option<Seq>) -> Result<Seq, CommandError> {
        let events = command.decide(&self.state, "default")?;
        let origin = match answers {
            Some(seq) => Origin::Daemon { reason: "t".into(), answers: Some(seq) },
            None => Origin::Client { uid: 0, gid: 0, pid: 1, method: "t".into(), request_id: "t".into() },
        };
        let seq = self.state.last_seq.next();
        self.state.apply(seq, Timestamp::from_ns(seq.get()), &Envelope::new("default", origin, events));
        Ok(seq)
    }
}

fn import() -> Command {
    let layer = LayerRecord {
        blob: Descriptor { digest: "sha256:l".into(), media_type: "t".into(), size: 1 },
        diff_id: "sha256:d".into(),
        chain_id: "sha256:d".into(),
    };
    Command::ImportImage(ImportImage {
        images: vec![ImageRecord {
            name: "busybox:latest".into(),
            manifest: Descriptor { digest: "sha256:m".into(), media_type: "t".into(), size: 1 },
            config: Descriptor { digest: "sha256:c".into(), media_type: "t".into(), size: 1 },
            layers: vec![layer],
            cmd: vec!["/bin/sh".into()],
            env: vec!["PATH=/bin".into()],
            ..ImageRecord::default()
        }],
        blobs: vec![
            Descriptor { digest: "sha256:m".into(), media_type: "t".into(), size: 1 },
            Descriptor { digest: "sha256:l".into(), media_type: "t".into(), size: 1 },
        ],
    })
}

fn create(id: &str, image: &str) -> Command {
    support::create_container(id, image, vec!["A=1".into()])
}

fn outcome(answers: Option<Seq>, event: Event) -> Command {
    Command::RecordOutcome(RecordOutcome::one(answers, event))
}

#[test]
fn container_creation_checks() {
    let mut world = World::new();
    assert!(matches!(world.run(create("web", "busybox:latest"), None), Err(CommandError::NotFound(_))));
    world.run(import(), None).unwrap();
    assert!(world.state.namespace("default").is_some(), "import creates the namespace on first use");
    world.run(create("web", "busybox:latest"), None).unwrap();
    let record = &world.state.container("default", "web").unwrap().record;
    assert_eq!(record.args, vec!["/bin/sh"]);
    assert_eq!(record.env, vec!["PATH=/bin", "A=1"]);
    assert_eq!(record.working_dir, "/");
    assert_eq!(record.lowers, vec!["sha256:d"]);
    assert!(matches!(world.run(create("web", "busybox:latest"), None), Err(CommandError::AlreadyExists(_))));
    assert!(matches!(world.run(create("../x", "busybox:latest"), None), Err(CommandError::InvalidArgument(_))));
}

#[test]
fn task_lifecycle_checks_and_outcomes_are_recorded_once() {
    let mut world = World::new();
    world.run(import(), None).unwrap();
    world.run(create("web", "busybox:latest"), None).unwrap();
    let start = || Command::StartTask(StartTask { container_id: "web".into() });
    assert!(matches!(world.run(start(), None), Err(CommandError::NotFound(_))), "no task yet");
    let create_seq =
        world.run(Command::CreateTask(CreateTask { container_id: "web".into(), start: false }), None).unwrap();
    assert!(matches!(world.run(start(), None), Err(CommandError::FailedPrecondition(_))), "create not answered yet");
    let created = Event::TaskCreated { container_id: "web".into(), pid: 10, monitor_pid: 9 };
    world.run(outcome(Some(create_seq), created.clone()), Some(create_seq)).unwrap();
    assert!(
        matches!(
            world.run(outcome(Some(create_seq), created), Some(create_seq)),
            Err(CommandError::FailedPrecondition(_))
        ),
        "a second answer is refused"
    );
    let start_seq = world.run(start(), None).unwrap();
    world
        .run(outcome(Some(start_seq), Event::TaskStarted { container_id: "web".into(), pid: 10 }), Some(start_seq))
        .unwrap();
    let delete = |force| Command::DeleteTask(DeleteTask { container_id: "web".into(), force });
    assert!(matches!(world.run(delete(false), None), Err(CommandError::FailedPrecondition(_))), "running");
    assert!(matches!(
        world.run(Command::DeleteContainer(DeleteContainer { id: "web".into(), remove_volumes: false }), None),
        Err(CommandError::FailedPrecondition(_))
    ));
    let kill = |signal| Command::KillTask(KillTask { container_id: "web".into(), signal, all: false });
    assert!(matches!(world.run(kill(0), None), Err(CommandError::InvalidArgument(_))));
    world.run(kill(9), None).unwrap();
    let exited = Event::TaskExited {
        container_id: "web".into(),
        exit_code: 137,
        signal: 9,
        exited_at_ns: berth_log::Timestamp::from_ns(1),
        cause: berth_projections::ExitCause::Exited,
    };
    world.run(outcome(None, exited.clone()), Some(Seq(0))).unwrap();
    assert!(
        matches!(world.run(outcome(None, exited), Some(Seq(0))), Err(CommandError::FailedPrecondition(_))),
        "exit recorded once"
    );
    assert!(matches!(world.run(kill(9), None), Err(CommandError::FailedPrecondition(_))), "nothing to signal");
    assert!(
        matches!(world.run(start(), None), Err(CommandError::FailedPrecondition(_))),
        "stopped tasks do not restart"
    );
    let delete_seq = world.run(delete(false), None).unwrap();
    world
        .run(
            outcome(Some(delete_seq), Event::TaskDeleted { container_id: "web".into(), exit_code: Some(137) }),
            Some(delete_seq),
        )
        .unwrap();
    world.run(Command::DeleteContainer(DeleteContainer { id: "web".into(), remove_volumes: false }), None).unwrap();
    assert!(matches!(world.run(start(), None), Err(CommandError::NotFound(_))), "start of a deleted container");
}

#[test]
fn a_run_records_the_container_and_both_task_intents_in_one_record() {
    let mut world = World::new();
    world.run(import(), None).unwrap();
    let run = |id: &str| {
        let Command::CreateContainer(mut command) = create(id, "busybox:latest") else { unreachable!() };
        command.start_task = true;
        Command::CreateContainer(command)
    };
    let events = run("web").decide(&world.state, "default").unwrap();
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    assert_eq!(kinds, ["ContainerCreated", "TaskCreateRequested", "TaskStartRequested"]);
    let seq = world.run(run("web"), None).unwrap();
    let task = world.state.container("default", "web").unwrap().task.clone().unwrap();
    assert_eq!(task.pending.len(), 2, "both intents wait for their outcome");
    let created = Event::TaskCreated { container_id: "web".into(), pid: 10, monitor_pid: 9 };
    let started = Event::TaskStarted { container_id: "web".into(), pid: 10 };
    world.run(Command::RecordOutcome(RecordOutcome::together(Some(seq), vec![created, started])), Some(seq)).unwrap();
    let task = world.state.container("default", "web").unwrap().task.clone().unwrap();
    assert!(task.pending.is_empty() && task.status == TaskStatus::Running);

    // A layer gone from the log: nothing is recorded, not even the container.
    world.state.snapshots.clear();
    assert!(matches!(world.run(run("db"), None), Err(CommandError::FailedPrecondition(_))));
    assert!(world.state.container("default", "db").is_none());
}

#[test]
fn a_task_deletion_and_its_containers_removal_can_share_one_record() {
    let mut world = World::new();
    world.run(import(), None).unwrap();
    world.run(create("web", "busybox:latest"), None).unwrap();
    let create_seq =
        world.run(Command::CreateTask(CreateTask { container_id: "web".into(), start: false }), None).unwrap();
    let created = Event::TaskCreated { container_id: "web".into(), pid: 10, monitor_pid: 9 };
    world.run(outcome(Some(create_seq), created), Some(create_seq)).unwrap();
    let delete_seq =
        world.run(Command::DeleteTask(DeleteTask { container_id: "web".into(), force: true }), None).unwrap();
    let deleted = Event::TaskDeleted { container_id: "web".into(), exit_code: None };
    let remove = |id: &str| Some(DeleteContainer { id: id.into(), remove_volumes: true });
    let with_removal = |events: Vec<Event>, then_remove| {
        Command::RecordOutcome(RecordOutcome { answers: Some(delete_seq), events, then_remove })
    };
    // Only after the task's own deletion, and only for its container.
    let failed = Event::TaskDeleteFailed { container_id: "web".into(), error: "busy".into() };
    for refused in [with_removal(vec![failed], remove("web")), with_removal(vec![deleted.clone()], remove("db"))] {
        assert!(matches!(refused.decide(&world.state, "default"), Err(CommandError::InvalidArgument(_))));
    }
    let events = with_removal(vec![deleted.clone()], remove("web")).decide(&world.state, "default").unwrap();
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    // The image still uses the layer, so no snapshot is freed with it.
    assert_eq!(kinds, ["TaskDeleted", "ContainerDeleted"]);
    world.run(with_removal(vec![deleted], remove("web")), Some(delete_seq)).unwrap();
    assert!(world.state.container("default", "web").is_none());
}

#[test]
fn outcomes_that_happened_together_are_checked_in_order() {
    let mut world = World::new();
    world.run(import(), None).unwrap();
    world.run(create("web", "busybox:latest"), None).unwrap();
    world.run(create("db", "busybox:latest"), None).unwrap();
    let both = world.run(Command::CreateTask(CreateTask { container_id: "web".into(), start: true }), None).unwrap();
    let together = |events: Vec<Event>| Command::RecordOutcome(RecordOutcome::together(Some(both), events));
    let created = Event::TaskCreated { container_id: "web".into(), pid: 10, monitor_pid: 9 };
    let started = Event::TaskStarted { container_id: "web".into(), pid: 10 };
    let exited = Event::TaskExited {
        container_id: "web".into(),
        exit_code: 0,
        signal: 0,
        exited_at_ns: berth_log::Timestamp::from_ns(1),
        cause: berth_projections::ExitCause::Exited,
    };
    let refused = |world: &mut World, events| {
        matches!(
            world.run(together(events), Some(both)),
            Err(CommandError::FailedPrecondition(_) | CommandError::InvalidArgument(_))
        )
    };
    assert!(refused(&mut world, vec![]), "an empty record");
    assert!(refused(&mut world, vec![started.clone(), started.clone()]), "the start answered twice in one record");
    let db_created = Event::TaskCreated { container_id: "db".into(), pid: 11, monitor_pid: 12 };
    assert!(refused(&mut world, vec![created.clone(), db_created]), "two tasks in one record");
    assert!(refused(&mut world, vec![created.clone(), exited.clone(), exited.clone()]), "the exit twice");
    world.run(together(vec![created.clone(), started.clone(), exited]), Some(both)).unwrap();
    let task = world.state.container("default", "web").unwrap().task.clone().unwrap();
    assert_eq!(
        (task.status, task.pending.len(), task.exit.map(|exit| exit.exit_code)),
        (TaskStatus::Stopped, 0, Some(0))
    );
    assert!(refused(&mut world, vec![created, started]), "answered already");
}

#[test]
fn removing_an_image_frees_only_what_nothing_else_uses() {
    let mut world = World::new();
    world.run(import(), None).unwrap();
    world.run(create("web", "busybox:latest"), None).unwrap();
    let events =
        Command::RemoveImage(RemoveImage { name: "busybox:latest".into() }).decide(&world.state, "default").unwrap();
    assert!(events.iter().any(|event| matches!(event, Event::ContentRemoved { .. })));
    assert!(
        !events.iter().any(|event| matches!(event, Event::SnapshotRemoved { .. })),
        "the container still uses the layer"
    );
    assert!(matches!(
        Command::RemoveImage(RemoveImage { name: "nope".into() }).decide(&world.state, "default"),
        Err(CommandError::NotFound(_))
    ));
}

#[test]
fn an_untagged_reference_means_latest_and_the_refusal_names_the_tags_there_are() {
    let mut world = World::new();
    world.run(import(), None).unwrap();
    // "busybox" means busybox:latest, which exists.
    world.run(create("a", "busybox"), None).unwrap();
    assert_eq!(world.state.container("default", "a").unwrap().record.image, "busybox:latest");
    let Err(CommandError::NotFound(message)) = world.run(create("b", "busybox:1.36"), None) else {
        panic!("expected NotFound")
    };
    assert!(message.contains("it has busybox:latest"), "{message}");
    let Err(CommandError::NotFound(message)) = world.run(create("c", "alpine"), None) else {
        panic!("expected NotFound")
    };
    assert!(message.contains("(that is alpine:latest)") && message.contains("berth image import"), "{message}");
}

fn tag(source: &str, target: &str) -> Command {
    Command::TagImage(TagImage { source: source.into(), target: target.into() })
}

#[test]
fn a_tag_is_recorded_as_the_image_under_its_new_name() {
    let mut world = World::new();
    world.run(import(), None).unwrap();
    let events = tag("busybox", "mine/bb:2").decide(&world.state, "default").unwrap();
    let [Event::ImageCreated { image }] = &events[..] else { panic!("expected one ImageCreated: {events:?}") };
    let source = &world.state.image("default", "busybox:latest").unwrap().record;
    assert_eq!(*image, ImageRecord { name: "mine/bb:2".into(), ..source.clone() });
    world.run(tag("busybox", "mine/bb:2"), None).unwrap();
    // The same again records nothing; a tagless target means :latest.
    assert!(tag("busybox:latest", "mine/bb:2").decide(&world.state, "default").unwrap().is_empty());
    world.run(tag("busybox", "other"), None).unwrap();
    assert!(world.state.image("default", "other:latest").is_some());
    assert!(matches!(tag("nope", "x:1").decide(&world.state, "default"), Err(CommandError::NotFound(_))));
    for bad in ["", "Bad Name", "-x", "x:"] {
        assert!(
            matches!(tag("busybox", bad).decide(&world.state, "default"), Err(CommandError::InvalidArgument(_))),
            "{bad:?} was accepted"
        );
    }
}

#[test]
fn a_tag_onto_an_existing_name_updates_it() {
    let mut world = World::new();
    world.run(import(), None).unwrap();
    let mut other = match import() {
        Command::ImportImage(import) => import,
        _ => unreachable!(),
    };
    other.images[0].name = "mine/bb:2".into();
    other.images[0].manifest.digest = "sha256:m2".into();
    world.run(Command::ImportImage(other), None).unwrap();
    let events = tag("busybox", "mine/bb:2").decide(&world.state, "default").unwrap();
    assert!(
        matches!(&events[..], [Event::ImageUpdated { image }] if image.manifest.digest == "sha256:m"),
        "{events:?}"
    );
}
fn volume_mount(source: &str, destination: &str) -> MountRecord {
    MountRecord { kind: "volume".into(), source: source.into(), destination: destination.into(), ..Default::default() }
}

fn create_with(id: &str, mounts: Vec<MountRecord>, image_volumes: &[&str]) -> Command {
    let Command::CreateContainer(mut command) = create(id, "busybox:latest") else { unreachable!() };
    command.mounts = mounts;
    command.image_volumes = image_volumes.iter().map(|path| path.to_string()).collect();
    Command::CreateContainer(command)
}

#[test]
fn volumes_are_created_on_first_use_kept_while_used_and_anonymous_ones_go_with_rm_v() {
    let mut world = World::new();
    world.run(import(), None).unwrap();
    world.run(Command::CreateVolume(CreateVolume { name: "data".into(), labels: Default::default() }), None).unwrap();
    assert!(matches!(
        world.run(Command::CreateVolume(CreateVolume { name: "data".into(), labels: Default::default() }), None),
        Err(CommandError::AlreadyExists(_))
    ));
    assert!(matches!(
        world.run(Command::CreateVolume(CreateVolume { name: "../x".into(), labels: Default::default() }), None),
        Err(CommandError::InvalidArgument(_))
    ));
    // A named mount of a new volume creates it; an image VOLUME not covered gets an anonymous one;
    // one covered by a mount (here /data) gets none.
    world
        .run(
            create_with(
                "web",
                vec![volume_mount("data", "/data"), volume_mount("cache", "/cache")],
                &["/data/", "/logs"],
            ),
            None,
        )
        .unwrap();
    let namespace = world.state.namespace("default").unwrap();
    assert_eq!(namespace.volumes.keys().collect::<Vec<_>>(), ["cache", "data", "web-volume-0"]);
    assert_eq!(namespace.volumes["web-volume-0"].record.anonymous_for.as_deref(), Some("web"));
    assert_eq!(world.state.container("default", "web").unwrap().record.mounts.len(), 3);

    let remove = |name: &str| Command::RemoveVolume(RemoveVolume { name: name.into() });
    assert!(matches!(world.run(remove("data"), None), Err(CommandError::FailedPrecondition(_))), "in use");
    assert!(matches!(world.run(remove("nothing"), None), Err(CommandError::NotFound(_))));
    world.run(Command::DeleteContainer(DeleteContainer { id: "web".into(), remove_volumes: true }), None).unwrap();
    let namespace = world.state.namespace("default").unwrap();
    assert_eq!(namespace.volumes.keys().collect::<Vec<_>>(), ["cache", "data"], "named volumes stay");
    world.run(remove("data"), None).unwrap();

    // Mount checks: relative or duplicate destinations, unknown kinds, options on a bind.
    let bind = |destination: &str, options: Vec<String>| MountRecord {
        kind: "bind".into(),
        source: "/srv".into(),
        destination: destination.into(),
        read_only: false,
        options,
    };
    for mounts in [
        vec![bind("relative", vec![])],
        vec![bind("/", vec![])],
        vec![bind("/a/../b", vec![])],
        vec![bind("/a", vec![]), bind("/a/", vec![])],
        vec![bind("/a", vec!["size=1m".into()])],
        vec![MountRecord { kind: "nfs".into(), destination: "/a".into(), ..Default::default() }],
    ] {
        assert!(
            matches!(world.run(create_with("bad", mounts.clone(), &[]), None), Err(CommandError::InvalidArgument(_))),
            "{mounts:?}"
        );
    }
}

fn sealer(random: u8) -> Sealer {
    let key = SecretKey::generate("default", "web", [random; berth_projections::sealed::NEW_KEY_RANDOM_BYTES]);
    Sealer { key, seed: [random; 32] }
}

#[test]
fn a_sealed_create_records_no_clear_value_and_forgetting_is_recorded_once_after_removal() {
    let mut world = World::new();
    world.run(import(), None).unwrap();
    let Command::CreateContainer(mut sealed_create) = create("web", "busybox:latest") else { unreachable!() };
    sealed_create.env = vec!["SECRET=hunter2".into()];
    sealed_create.sealer = Some(sealer(1));
    let created_seq = world.run(Command::CreateContainer(sealed_create), None).unwrap();
    let record = world.state.container("default", "web").unwrap().record.clone();
    assert!(record.env.is_empty(), "{:?}", record.env);
    let names: Vec<&str> = record.sealed_env.iter().map(|entry| entry.name.as_str()).collect();
    assert_eq!(names, ["PATH", "SECRET"]);
    assert!(!format!("{record:?}").contains("hunter2"));
    let key = sealer(1).key;
    assert_eq!(record.environment("default", Some(&key)).unwrap(), ["PATH=/bin", "SECRET=hunter2"]);
    assert_eq!(record.environment("default", None).unwrap(), ["PATH=<forgotten>", "SECRET=<forgotten>"]);
    let key_use = world.state.secret_key("default", "web").unwrap().clone();
    assert_eq!((key_use.key_id.as_str(), key_use.sealed_seq), (key.key_id.as_str(), created_seq));

    let forget = |key_missing| {
        Command::ForgetSecrets(ForgetSecrets {
            container_id: "web".into(),
            key_id: key.key_id.clone(),
            reason: "test".into(),
            key_missing,
        })
    };
    assert!(matches!(world.run(forget(false), None), Err(CommandError::FailedPrecondition(_))), "still exists");
    world.run(Command::DeleteContainer(DeleteContainer { id: "web".into(), remove_volumes: false }), None).unwrap();
    assert!(world.state.secret_key("default", "web").unwrap().released_at.is_some());
    let forgotten_seq = world.run(forget(false), None).unwrap();
    assert_eq!(world.state.secret_key("default", "web").unwrap().forgotten_seq, Some(forgotten_seq));
    assert!(matches!(world.run(forget(false), None), Err(CommandError::AlreadyExists(_))), "once");

    // A create that read the key just before it was forgotten is refused; with a new key it fits.
    let Command::CreateContainer(mut late) = create("web", "busybox:latest") else { unreachable!() };
    late.sealer = Some(sealer(1));
    let refusal = world.run(Command::CreateContainer(late), None).unwrap_err();
    assert!(matches!(&refusal, CommandError::FailedPrecondition(message) if message.contains("send it again")));
    let Command::CreateContainer(mut fresh) = create("web", "busybox:latest") else { unreachable!() };
    fresh.sealer = Some(sealer(2));
    world.run(Command::CreateContainer(fresh), None).unwrap();
    assert_eq!(world.state.secret_key("default", "web").unwrap().forgotten_seq, None);
}
