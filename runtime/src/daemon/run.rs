//! Putting berthd together: open the log (which locks the root), replay it into the
//! projections (from the newest usable checkpoint, `daemon::checkpoint`), reconcile the host with them, then serve the API on the UNIX socket until
//! shutdown.

use std::path::PathBuf;
use std::sync::Arc;

use berth_commands::{Command, RecordDaemonEvent};
use berth_log::{Durability, EventLog, LogError, LogOptions, Seq};
use berth_projections::{Event, Origin};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;

use crate::api;
use crate::api::{
    ContainersService, EventsService, ImagesService, NamespacesService, NetworksService, Services, SystemService,
    TasksService, VersionService, VolumesService,
};
use crate::daemon::archiver::{self, ArchiveSettings};
use crate::daemon::checkpoint::{self, CheckpointPolicy, Recovered, VouchedCheckpoint};
use crate::daemon::config::resolve_binary;
use crate::daemon::layout::Layout;
use crate::daemon::permissions;
use crate::daemon::socket;
use crate::daemon::store::{self, max_record_bytes, Store, StoreError, SubmitError};
use crate::images::content::ContentStore;
use crate::images::snapshot::Snapshotter;
use crate::secrets::forget;
use crate::secrets::keys::KeyStore;
use crate::sys::fs::create_private_dir_all;
use crate::sys::notify::Notifier;
use crate::tasks::executor::Executor;
use crate::tasks::runc::Runc;

pub struct DaemonOptions {
    pub layout: Layout,
    pub address: PathBuf,
    pub runc: PathBuf,
    /// The monitor binary (`berth-monitor`).
    pub monitor: PathBuf,
    pub segment_size: Option<u64>,
    pub durability: Durability,
    /// Where `<host>/hosts.toml` files for registries are (`[registry] config_path`).
    pub registry_hosts_dir: PathBuf,
    /// How much of each container's output is kept (`[output]`).
    pub output_limits: crate::tasks::output_log::OutputLimits,
    /// The group that may open the socket besides root (`[grpc] gid`, `--group`).
    pub socket_gid: Option<u32>,
    /// The service manager to tell when berthd is ready and when it stops (`$NOTIFY_SOCKET`).
    pub notifier: Option<Arc<Notifier>>,
    /// Where to serve Prometheus metrics (`--metrics-address`), already checked; `None`: off.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Where and how often old log segments are archived (`[log] archive_*`, `retain_*`).
    pub archive: ArchiveSettings,
    /// When keys are forgotten (`[secrets]`).
    pub secrets: crate::secrets::SecretsPolicy,
    /// When projection checkpoints are written (`[checkpoint]`).
    pub checkpoints: CheckpointPolicy,
    /// The CNI plugins' directory and the default bridge (`[network]`).
    pub network: crate::network::config::NetworkOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("another berthd holds {root}: stop it first, or give this one another --root")]
    RootLocked { root: PathBuf },
    #[error("the log of {root} stayed locked for 5 s by {holders}, which is not a berthd: most likely a process a killed berthd started and that has not ended; wait for it or kill it, then start berthd again")]
    LogHeld { root: PathBuf, holders: String },
    #[error("{0}")]
    Setup(String),
    #[error("cannot open the log: {0}")]
    Log(#[from] LogError),
    /// The log is damaged or altered: berthd does not serve it, and says what the operator can do.
    #[error("the log at {log_dir} is damaged or was altered, so berthd will not start: {damage}. See how much of it verifies with `berth-replay --root {root} verify`; then restore {log_dir} from a trusted copy, or run `berthd --root {root} --salvage` to keep every record up to the last one that verifies (the damaged log is moved aside, not deleted), and start berthd again")]
    LogDamaged { root: PathBuf, log_dir: PathBuf, damage: String },
    #[error(transparent)]
    Store(#[from] crate::daemon::store::StoreError),
    #[error("serving the API failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// How berthd opens its log: the configured segment size and durability, and the anchor.
fn log_options(layout: &Layout, segment_size: Option<u64>, durability: Durability) -> LogOptions {
    let mut log_options = LogOptions { durability, anchor: Some(layout.log_anchor()), ..LogOptions::default() };
    if let Some(segment_size) = segment_size {
        log_options.segment_size = segment_size;
    }
    log_options
}

/// Damage found at start-up becomes `LogDamaged`, which names the remedies.
fn log_error(layout: &Layout, error: LogError) -> DaemonError {
    if error.is_damage() {
        DaemonError::LogDamaged {
            root: layout.root.clone(),
            log_dir: layout.log_dir(),
            damage: error.damage_description(),
        }
    } else {
        DaemonError::Log(error)
    }
}

/// `berthd --salvage`: keeps the log's records up to the last one whose checksum and hash chain
/// verify, moves a damaged log aside, resets the anchor, and returns what to tell the operator.
/// Runs instead of the daemon, with no daemon holding the root.
pub fn salvage(layout: &Layout, segment_size: Option<u64>) -> Result<String, DaemonError> {
    let log_dir = layout.log_dir();
    let report = match berth_log::salvage(&log_dir, &log_options(layout, segment_size, Durability::Sync)) {
        Ok(report) => report,
        Err(LogError::Locked { .. }) => return Err(DaemonError::RootLocked { root: layout.root.clone() }),
        Err(error) => return Err(DaemonError::Log(error)),
    };
    let hash: String = report.head_hash.iter().map(|byte| format!("{byte:02x}")).collect();
    let mut lines = Vec::new();
    match (&report.damage, &report.moved_aside_to) {
        (Some(damage), Some(aside)) => {
            lines.push(format!("damage found: {damage}"));
            lines.push(format!(
                "kept records 1..={} in {}; the damaged log is untouched in {} (inspect it with `berth-replay --log {} verify`)",
                report.kept_through,
                log_dir.display(),
                aside.display(),
                aside.display()
            ));
        }
        _ => lines.push(format!("every record verifies: the log at {} was kept as it is", log_dir.display())),
    }
    if let Some(previous) = report.previous_anchor.filter(|previous| previous.seq > report.kept_through) {
        lines.push(format!(
            "the anchor said seq {} was durable: records {}..={} are lost unless a trusted copy of the log has them",
            previous.seq,
            report.kept_through.next(),
            previous.seq
        ));
    }
    lines.push(format!("anchor reset to {}:{hash}; start berthd to serve this log", report.kept_through));
    Ok(lines.join("\n"))
}

/// `berthd --archive-now`: with berthd stopped, archives the finished segments at or below
/// `through` (default: the newest checkpoint the log vouches for, found as start-up finds it:
/// its file checked against the log and the tail after it replayed), applies retention, and
/// says what it did.
pub fn archive_now(
    layout: &Layout,
    segment_size: Option<u64>,
    settings: &ArchiveSettings,
    through: Option<berth_log::Seq>,
) -> Result<String, DaemonError> {
    let log_options = log_options(layout, segment_size, Durability::Sync);
    let (log, _) = match EventLog::open(&layout.log_dir(), log_options) {
        Ok(opened) => opened,
        Err(LogError::Locked { .. }) => {
            return Err(DaemonError::Setup(format!(
                "berthd is running on {}: stop it first (a running berthd archives by itself every [log] archive_interval_secs)",
                layout.root.display()
            )))
        }
        Err(error) => return Err(log_error(layout, error)),
    };
    let checkpoints_dir = layout.checkpoints_dir();
    let vouched = if checkpoints_dir.is_dir() {
        checkpoint::recover_state(&log, &checkpoints_dir)
            .map_err(|error| {
                DaemonError::Setup(format!(
                    "cannot tell which checkpoint in {} the log vouches for, so nothing was archived: {error}",
                    checkpoints_dir.display()
                ))
            })?
            .from_checkpoint
    } else {
        None
    };
    archiver::archive_pass(&log, settings, vouched, through).map_err(DaemonError::Setup)
}

fn setup<E: std::fmt::Display>(what: String) -> impl FnOnce(E) -> DaemonError {
    move |error| DaemonError::Setup(format!("{what}: {error}"))
}

/// Runs berthd until `shutdown` completes.
pub async fn run(
    options: DaemonOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let layout = options.layout.clone();
    for dir in [&layout.root, &layout.state] {
        create_private_dir_all(dir).map_err(setup(format!("cannot create {}", dir.display())))?;
    }
    // The state directory keeps group search when it leads the socket group to the socket.
    let socket_group_dir = options.address.parent().filter(|_| options.socket_gid.is_some());
    tighten_open_modes(&layout, socket_group_dir);
    let notify = |lines: &[String]| {
        if let Some(notifier) = &options.notifier {
            notifier.notify(lines);
        }
    };
    notify(&[format!("STATUS=replaying the log in {}", layout.log_dir().display())]);
    let runc_binary = resolve_binary(&options.runc).ok_or_else(|| {
        DaemonError::Setup(format!(
            "runc not found ({}): install it (apt-get install runc) or set `runc` in the config file",
            options.runc.display()
        ))
    })?;
    Runc::new(runc_binary.clone(), layout.runc_root("default")).check().map_err(setup("runc does not work".into()))?;
    if !options.monitor.is_file() {
        return Err(DaemonError::Setup(format!(
            "the monitor binary {} is missing: install berth-monitor beside berthd or set `monitor` in the config file",
            options.monitor.display()
        )));
    }

    let log_options = log_options(&layout, options.segment_size, options.durability);
    // Made here, private, so the log crate's own create_dir_all never makes it open.
    create_private_dir_all(&layout.log_dir())
        .map_err(setup(format!("cannot create {}", layout.log_dir().display())))?;
    let record_limit = max_record_bytes(log_options.segment_size);
    let (log, report) = match crate::daemon::log_lock::open_log(&layout.log_dir(), log_options).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) => return Err(log_error(&layout, error)),
        Err(holders) if crate::daemon::log_lock::held_by_berthd(&holders) || holders.is_empty() => {
            return Err(DaemonError::RootLocked { root: layout.root.clone() })
        }
        Err(holders) => {
            let holders = crate::daemon::log_lock::describe(&holders);
            return Err(DaemonError::LogHeld { root: layout.root.clone(), holders });
        }
    };
    // Bound before replay and before anything is recorded: a taken port stops this berthd
    // at once, having changed nothing.
    let metrics_listener = match options.metrics_address {
        Some(address) => Some(crate::metrics::http::bind(address).await.map_err(DaemonError::Setup)?),
        None => None,
    };
    if let Some(torn) = &report.torn_tail {
        tracing::warn!(segment = %torn.segment.display(), offset = torn.offset, dropped_bytes = torn.dropped_bytes, "the log had a torn tail (an append that was never acknowledged); it was cut off");
    }
    let replay_started = std::time::Instant::now();
    let checkpoints_dir = layout.checkpoints_dir();
    let recovered = if options.checkpoints.enabled {
        create_private_dir_all(&checkpoints_dir)
            .map_err(setup(format!("cannot create {}", checkpoints_dir.display())))?;
        checkpoint::remove_temporary_files(&checkpoints_dir);
        checkpoint::recover_state(&log, &checkpoints_dir)
    } else {
        store::replay_verified(&log).map(|state| Recovered { state, from_checkpoint: None })
    };
    let Recovered { state, from_checkpoint } = recovered.map_err(|error| match error {
        StoreError::Log(LogError::SeqNotFound { first_available, .. }) => DaemonError::Setup(format!(
            "the log's history before seq {first_available} was dropped by the archive's retention policy (see {}/archive.manifest), and no usable projection checkpoint at or after seq {} was found (the warnings above say why each was passed over): restore the dropped archived segments from a backup, or a checkpoint of this log into <root>/checkpoints",
            layout.log_dir().display(),
            first_available.get().saturating_sub(1)
        )),
        StoreError::Log(error) => log_error(&layout, error),
        other => other.into(),
    })?;
    let (store, committed) = Store::open_with_state(log, state, record_limit);
    let replayed_to = store.applied_seq();
    store.counters().set_replay_duration(replay_started.elapsed());
    let vouched = VouchedCheckpoint::new(from_checkpoint);
    archiver::spawn_periodic(store.log(), options.archive.clone(), vouched.clone());
    tracing::info!(
        replayed_to = replayed_to.get(),
        from_checkpoint = from_checkpoint.map(Seq::get),
        elapsed_ms = replay_started.elapsed().as_millis() as u64,
        "log replayed"
    );

    let content =
        Arc::new(ContentStore::open(&layout.content_dir()).map_err(setup("cannot open the content store".into()))?);
    let snapshotter =
        Arc::new(Snapshotter::open(&layout.snapshots_dir()).map_err(setup("cannot open the snapshotter".into()))?);
    let gc_lock = Arc::new(tokio::sync::RwLock::new(()));
    let keys = Arc::new(KeyStore::new(layout.keys_dir()));
    options.network.check().map_err(DaemonError::Setup)?;
    let networking = Arc::new(
        crate::network::Networking::open(options.network.clone(), &layout)
            .map_err(setup("cannot set up networking".into()))?,
    );
    networking.sync_conflists(&store.state());
    let executor = Executor::new(
        Arc::clone(&store),
        layout.clone(),
        runc_binary.clone(),
        options.monitor.clone(),
        Arc::clone(&content),
        Arc::clone(&snapshotter),
        Arc::clone(&gc_lock),
        options.output_limits,
        Arc::clone(&keys),
        options.secrets,
        Arc::clone(&networking),
    );
    let started = Event::DaemonStarted {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id() as i32,
        replayed_to,
    };
    let origin = Origin::Daemon { reason: "berthd started".into(), answers: None };
    match store.submit("", origin, Command::RecordDaemonEvent(RecordDaemonEvent { event: started })).await {
        Ok(_) => {}
        // A full log file system must not keep berthd from serving reads: start without the
        // record, refuse writes until there is room.
        Err(SubmitError::NoSpace(error)) => {
            tracing::warn!(%error, "the start is not recorded: the log has no room; serving reads, refusing writes")
        }
        Err(error) => return Err(DaemonError::Setup(format!("cannot record the start: {error}"))),
    }
    // Intents recorded from here on reach the executor through `committed`; those recorded
    // before are reconciled by `recover`, which runs before any client can connect.
    let executor_loop = tokio::spawn(Arc::clone(&executor).run(committed));
    executor.recover().await;
    executor.resume_restarts().await;
    // Before any client: no create is in flight, so a key no record uses is a crash's leftover.
    forget::sweep_at_start(&store, &keys, options.secrets).await;
    tokio::spawn(forget::retention_loop(Arc::clone(&store), Arc::clone(&keys), options.secrets));

    let services = Services::new(Arc::clone(&store), layout.clone(), content, snapshotter, gc_lock, runc_binary, keys)
        .with_registry_hosts_dir(options.registry_hosts_dir.clone())
        .with_networking(Arc::clone(&networking))
        .with_removals_after_delete(executor.removals_after_delete());
    let listener = socket::bind(&options.address, &layout.state, options.socket_gid).map_err(DaemonError::Setup)?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<api::tasks_server::TasksServer<TasksService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(setup("cannot build the reflection service".into()))?;
    tracing::info!(address = %options.address.display(), "serving");
    let metrics_server = metrics_listener.map(|listener| {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "serving metrics at /metrics");
        }
        let registry = std::sync::Arc::new(crate::metrics::registry(Arc::clone(&store), layout.clone()));
        tokio::spawn(crate::metrics::http::serve(listener, registry))
    });
    if from_checkpoint.is_some() {
        let damage_layout = layout.clone();
        checkpoint::verify_prefix_in_background(Arc::clone(store.log()), checkpoints_dir.clone(), move |error| {
            log_error(&damage_layout, error).to_string()
        });
    }
    let (stop_checkpointer, checkpointer_stop) = tokio::sync::watch::channel(false);
    let checkpointer = options.checkpoints.enabled.then(|| {
        tokio::spawn(checkpoint::run_checkpointer(
            Arc::clone(&store),
            checkpoints_dir.clone(),
            options.checkpoints,
            vouched,
            checkpointer_stop,
        ))
    });
    let shutdown_store = Arc::clone(&store);
    let shutdown_notifier = options.notifier.clone();
    let shutdown = async move {
        shutdown.await;
        if let Some(notifier) = shutdown_notifier {
            notifier.notify(&["STOPPING=1".to_string(), "STATUS=stopping; containers keep running".to_string()]);
        }
        // Followers of the log and of task output would keep their connections, and so the
        // server, open for ever: end their streams first.
        shutdown_store.begin_shutdown();
    };
    macro_rules! limited {
        ($server:expr, $max_request:expr) => {
            $server.max_decoding_message_size($max_request).max_encoding_message_size(api::MAX_MESSAGE_BYTES)
        };
    }
    let serve = tonic::transport::Server::builder()
        .layer(api::cap_status_messages_layer())
        .add_service(health_service)
        .add_service(reflection)
        .add_service(limited!(
            api::version_server::VersionServer::new(VersionService(Arc::clone(&services))),
            api::MAX_REQUEST_BYTES
        ))
        .add_service(limited!(
            api::namespaces_server::NamespacesServer::new(NamespacesService(Arc::clone(&services))),
            api::MAX_REQUEST_BYTES
        ))
        .add_service(limited!(
            api::images_server::ImagesServer::new(ImagesService(Arc::clone(&services))),
            api::MAX_IMPORT_CHUNK_BYTES
        ))
        .add_service(limited!(
            api::containers_server::ContainersServer::new(ContainersService(Arc::clone(&services))),
            api::MAX_REQUEST_BYTES
        ))
        .add_service(limited!(
            api::tasks_server::TasksServer::new(TasksService(Arc::clone(&services))),
            api::MAX_REQUEST_BYTES
        ))
        .add_service(limited!(
            api::volumes_server::VolumesServer::new(VolumesService(Arc::clone(&services))),
            api::MAX_REQUEST_BYTES
        ))
        .add_service(limited!(
            api::networks_server::NetworksServer::new(NetworksService(Arc::clone(&services))),
            api::MAX_REQUEST_BYTES
        ))
        .add_service(limited!(
            api::events_server::EventsServer::new(EventsService(Arc::clone(&services))),
            api::MAX_REQUEST_BYTES
        ))
        .add_service(limited!(
            api::system_server::SystemServer::new(SystemService(Arc::clone(&services))),
            api::MAX_REQUEST_BYTES
        ))
        .serve_with_incoming_shutdown(
            // Stock C-core gRPC clients send the socket path as `:authority` (api::authority).
            UnixListenerStream::new(listener).map(|connection| connection.map(api::AuthorityRepair::new)),
            shutdown,
        );
    // The listener is bound: a client that connects from now on is accepted as soon as `serve`
    // is first polled, just below.
    notify(&[
        "READY=1".to_string(),
        format!("MAINPID={}", std::process::id()),
        format!("STATUS=serving on {}", options.address.display()),
    ]);
    let stopping = store.stopping();
    let served = tokio::select! {
        served = serve => served,
        () = async move {
            stopping.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            // A unary call still waiting (Tasks/Wait, say) does not hold berthd up: its client
            // sees the connection close and can ask again once berthd is back.
            tracing::warn!(grace_ms = SHUTDOWN_GRACE.as_millis() as u64, "requests still open after the shutdown grace period; closing them");
            Ok(())
        }
    };
    executor_loop.abort();
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    let _ = std::fs::remove_file(&options.address);
    // The spare network attachment is released, and deleted tasks' networks still being
    // released finish, so that no CNI DEL is cut off half-way and their records come before the
    // last checkpoint; what is left past the limit is finished by the next start.
    let released = async {
        networking.release_spare().await;
        networking.settle().await;
    };
    if tokio::time::timeout(NETWORK_RELEASE_AT_STOP_LIMIT, released).await.is_err() {
        tracing::warn!("network releases still running at stop; the next start finishes them");
    }
    // A clean stop leaves a checkpoint of everything recorded, so the next start replays only
    // the records after it (its vouching record and its own start).
    stop_checkpointer.send_replace(true);
    if let Some(checkpointer) = checkpointer {
        if tokio::time::timeout(CHECKPOINT_AT_STOP_LIMIT, checkpointer).await.is_err() {
            tracing::warn!("the checkpoint at stop took too long; the next start replays more of the log");
        }
    }
    served?;
    Ok(())
}

/// How long a stopping berthd waits for the releases of deleted tasks' networks.
const NETWORK_RELEASE_AT_STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a stopping berthd waits for its last checkpoint.
const CHECKPOINT_AT_STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a stopping berthd lets requests still in flight finish once every stream was ended.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// A root or state directory made by an older berth (everything 0755, files 0644) is brought to
/// today's modes before anything is opened, and the log says which paths were open. A chmod that
/// fails is logged and does not stop berthd: the directory above it still protects it.
fn tighten_open_modes(layout: &Layout, socket_group_dir: Option<&std::path::Path>) {
    let plan = permissions::plan_tightening(&permissions::observe(layout), socket_group_dir);
    if plan.is_empty() {
        return;
    }
    let (changed, failed) = permissions::apply(&plan);
    for step in &changed {
        tracing::warn!(path = %step.path.display(), from = format!("{:o}", step.from_mode), to = format!("{:o}", step.to_mode), "tightened the mode of a path an older berth left open to other users");
    }
    for (path, error) in &failed {
        tracing::error!(path = %path.display(), %error, "cannot tighten the mode of a path other users may read; chmod it by hand (go-rwx)");
    }
    tracing::warn!(
        n_tightened = changed.len(),
        root = %layout.root.display(),
        state = %layout.state.display(),
        "this root was made by an older berth with modes other users could use; they are now root-only"
    );
}
