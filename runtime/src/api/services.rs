//! What every gRPC service shares: the store and the host domains, who called (the namespace
//! from metadata, uid/gid/pid from SO_PEERCRED — never from the request), submitting a command,
//! waiting for an intent's outcome, and the one mapping from a command's error to a gRPC status.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use berth_commands::{Command, CommandError};
use berth_log::Seq;
use berth_projections::{Origin, TaskState};
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

use crate::api::{DEFAULT_NAMESPACE, NAMESPACE_KEY, REQUEST_ID_KEY};
use crate::daemon::layout::Layout;
use crate::daemon::store::{CommittedRecord, Store, SubmitError, OUTCOME_TIMEOUT};
use crate::images::content::ContentStore;
use crate::images::snapshot::Snapshotter;
use crate::secrets::keys::KeyStore;

/// What every service shares.
pub struct Services {
    pub store: Arc<Store>,
    pub layout: Layout,
    pub content: Arc<ContentStore>,
    pub snapshotter: Arc<Snapshotter>,
    /// See `Executor`: held shared by an import until its record is durable.
    pub gc_lock: Arc<tokio::sync::RwLock<()>>,
    /// Where registries' `<host>/hosts.toml` files are.
    pub registry_hosts_dir: std::path::PathBuf,
    /// For `runc update` of a running task's limits (`Containers/Update`).
    pub runc_binary: std::path::PathBuf,
    /// Containers' secret keys: the API seals environment values with them before a command
    /// is decided, and opens them for `Containers/Get`.
    pub keys: Arc<KeyStore>,
    /// CNI networks: `Networks/*` keeps their conflists and bridges.
    pub networking: Option<Arc<crate::network::Networking>>,
    /// Where `Containers/Delete` leaves the executor its hint to remove the container with the
    /// task's deletion; the executor's own (`with_removals_after_delete`) once wired.
    pub removals_after_delete: Arc<crate::tasks::removals_after_delete::RemovalsAfterDelete>,
    request_counter: AtomicU64,
}

impl Services {
    pub fn new(
        store: Arc<Store>,
        layout: Layout,
        content: Arc<ContentStore>,
        snapshotter: Arc<Snapshotter>,
        gc_lock: Arc<tokio::sync::RwLock<()>>,
        runc_binary: std::path::PathBuf,
        keys: Arc<KeyStore>,
    ) -> Arc<Services> {
        Arc::new(Services {
            store,
            layout,
            content,
            snapshotter,
            gc_lock,
            registry_hosts_dir: crate::images::registry::hosts::DEFAULT_HOSTS_CONFIG_DIR.into(),
            runc_binary,
            keys,
            networking: None,
            removals_after_delete: Arc::default(),
            request_counter: AtomicU64::new(0),
        })
    }

    /// Sets where registries' hosts.toml files are; call it before the services are shared.
    pub fn with_registry_hosts_dir(mut self: Arc<Services>, dir: std::path::PathBuf) -> Arc<Services> {
        if let Some(services) = Arc::get_mut(&mut self) {
            services.registry_hosts_dir = dir;
        }
        self
    }

    /// Shares the executor's container removals (`tasks::removals_after_delete`); call
    /// it before the services are shared.
    pub fn with_removals_after_delete(
        mut self: Arc<Services>,
        removals: Arc<crate::tasks::removals_after_delete::RemovalsAfterDelete>,
    ) -> Arc<Services> {
        if let Some(services) = Arc::get_mut(&mut self) {
            services.removals_after_delete = removals;
        }
        self
    }

    /// Sets berthd's networking; call it before the services are shared.
    pub fn with_networking(mut self: Arc<Services>, networking: Arc<crate::network::Networking>) -> Arc<Services> {
        if let Some(services) = Arc::get_mut(&mut self) {
            services.networking = Some(networking);
        }
        self
    }

    pub(crate) fn caller<T>(&self, request: &Request<T>, method: &str) -> Result<(String, Origin), Status> {
        let namespace = request
            .metadata()
            .get(NAMESPACE_KEY)
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string();
        berth_commands::validate::namespace_name(&namespace).map_err(status_from_command_error)?;
        let request_id = request
            .metadata()
            .get(REQUEST_ID_KEY)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| format!("berthd-{}", self.request_counter.fetch_add(1, Ordering::Relaxed) + 1));
        let credentials = request.extensions().get::<UdsConnectInfo>().and_then(|info| info.peer_cred);
        let (uid, gid, pid) = match credentials {
            Some(credentials) => (credentials.uid(), credentials.gid(), credentials.pid().unwrap_or(-1)),
            None => (u32::MAX, u32::MAX, -1),
        };
        Ok((namespace, Origin::Client { uid, gid, pid, method: method.to_string(), request_id }))
    }

    pub(crate) async fn submit(&self, namespace: &str, origin: Origin, command: Command) -> Result<Seq, Status> {
        self.submit_for_record(namespace, origin, command).await.map(|record| record.seq)
    }

    /// Like [`Services::submit`], and answers the record itself: its events are what was decided.
    pub(crate) async fn submit_for_record(
        &self,
        namespace: &str,
        origin: Origin,
        command: Command,
    ) -> Result<CommittedRecord, Status> {
        match self.store.submit(namespace, origin, command).await {
            Ok(record) => Ok(record),
            Err(SubmitError::Rejected(error)) => Err(status_from_command_error(error)),
            Err(SubmitError::Stopping) => Err(Status::unavailable("berthd is stopping: retry when it is back")),
            Err(SubmitError::NoSpace(message)) => Err(Status::resource_exhausted(format!(
                "not recorded, berthd refuses writes until its log has room ({message}); reads still work"
            ))),
            Err(error @ SubmitError::RecordTooLarge { .. }) => Err(Status::resource_exhausted(error.to_string())),
        }
    }

    /// Wait (bounded) until the intent recorded at `seq` has an outcome; returns the task then.
    pub(crate) async fn wait_for_outcome(
        &self,
        namespace: &str,
        container_id: &str,
        seq: Seq,
    ) -> Result<(TaskState, Seq), Status> {
        let wait = self.store.wait_until(|state| {
            let task = state.container(namespace, container_id).and_then(|container| container.task.clone());
            match task {
                Some(task) if task.pending.iter().any(|intent| intent.seq() == seq) => None,
                Some(task) => Some(Some((task.clone(), task.updated_seq))),
                None => Some(None),
            }
        });
        match tokio::time::timeout(OUTCOME_TIMEOUT, wait).await {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(Status::not_found(format!("the task of {container_id:?} is gone"))),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no outcome for request seq {seq} yet: check with `berth ps -a` and `berth events --since {seq}`"
            ))),
        }
    }
}

/// The one place a command's error kind becomes a gRPC status.
pub fn status_from_command_error(error: CommandError) -> Status {
    match error {
        CommandError::NotFound(message) => Status::not_found(message),
        CommandError::AlreadyExists(message) => Status::already_exists(message),
        CommandError::FailedPrecondition(message) => Status::failed_precondition(message),
        CommandError::InvalidArgument(message) => Status::invalid_argument(message),
    }
}

pub(crate) fn container_not_found(namespace: &str, id: &str) -> Status {
    Status::not_found(format!("container {id:?} not found in namespace {namespace:?}: `berth ps -a` lists them"))
}
