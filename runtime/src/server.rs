//! The gRPC services: thin adapters that turn requests into commands (mutations) or read the
//! projections (queries). Who called is taken from the socket (SO_PEERCRED), never from the
//! request.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_commands::{
    Command, CommandError, CreateContainer, CreateNamespace, CreateTask, DeleteContainer, DeleteTask, ImportImage,
    KillTask, RemoveImage, RemoveNamespace, StartTask,
};
use berth_log::Seq;
use berth_projections::{
    ContainerState, Descriptor, Envelope, ImageRecord, ImageState, LayerRecord, Origin, State, TaskState, TaskStatus,
    EVENT_SCHEMA,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status, Streaming};

use crate::api;
use crate::config::Layout;
use crate::content::ContentStore;
use crate::image_import;
use crate::snapshot::Snapshotter;
use crate::store::{Store, SubmitError, OUTCOME_TIMEOUT};

pub const NAMESPACE_KEY: &str = "berth-namespace";
pub const REQUEST_ID_KEY: &str = "berth-request-id";
pub const DEFAULT_NAMESPACE: &str = "default";

/// What every service shares.
pub struct Services {
    pub store: Arc<Store>,
    pub layout: Layout,
    pub content: Arc<ContentStore>,
    pub snapshotter: Arc<Snapshotter>,
    /// See `Executor`: held shared by an import until its record is durable.
    gc_lock: Arc<tokio::sync::RwLock<()>>,
    request_counter: AtomicU64,
}

impl Services {
    pub fn new(
        store: Arc<Store>,
        layout: Layout,
        content: Arc<ContentStore>,
        snapshotter: Arc<Snapshotter>,
        gc_lock: Arc<tokio::sync::RwLock<()>>,
    ) -> Arc<Services> {
        Arc::new(Services { store, layout, content, snapshotter, gc_lock, request_counter: AtomicU64::new(0) })
    }

    fn caller<T>(&self, request: &Request<T>, method: &str) -> Result<(String, Origin), Status> {
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

    async fn submit(&self, namespace: &str, origin: Origin, command: Command) -> Result<u64, Status> {
        match self.store.submit(namespace, origin, command).await {
            Ok(record) => Ok(record.seq),
            Err(SubmitError::Rejected(error)) => Err(status_from_command_error(error)),
            Err(SubmitError::Stopping) => Err(Status::unavailable("berthd is stopping: retry when it is back")),
        }
    }

    /// Wait (bounded) until the intent recorded at `seq` has an outcome; returns the task then.
    async fn wait_for_outcome(&self, namespace: &str, container_id: &str, seq: u64) -> Result<(TaskState, u64), Status> {
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

fn task_status(status: TaskStatus) -> api::TaskStatus {
    match status {
        TaskStatus::Creating => api::TaskStatus::Creating,
        TaskStatus::Created => api::TaskStatus::Created,
        TaskStatus::Starting => api::TaskStatus::Starting,
        TaskStatus::Running => api::TaskStatus::Running,
        TaskStatus::Stopped => api::TaskStatus::Stopped,
        TaskStatus::Deleting => api::TaskStatus::Deleting,
        TaskStatus::Failed => api::TaskStatus::Failed,
    }
}

fn task_message(container_id: &str, task: &TaskState) -> api::Task {
    let exit = task.exit.unwrap_or(berth_projections::ExitInfo { exit_code: 0, signal: 0, exited_at_ns: 0 });
    api::Task {
        container_id: container_id.to_string(),
        status: task_status(task.status) as i32,
        pid: task.pid,
        exit_code: exit.exit_code,
        exit_signal: exit.signal,
        exited_at_ns: exit.exited_at_ns,
        error: task.error.clone().unwrap_or_default(),
        updated_seq: task.updated_seq,
    }
}

fn container_message(container: &ContainerState) -> api::Container {
    let record = &container.record;
    api::Container {
        id: record.id.clone(),
        image: record.image.clone(),
        image_digest: record.image_digest.clone(),
        args: record.args.clone(),
        env: record.env.clone(),
        working_dir: record.working_dir.clone(),
        user: record.user.clone(),
        hostname: record.hostname.clone(),
        labels: record.labels.clone().into_iter().collect(),
        snapshot_key: record.snapshot_key.clone(),
        created_seq: container.created_seq,
        created_at_ns: container.created_at_ns,
        task: container.task.as_ref().map(|task| task_message(&record.id, task)),
    }
}

fn image_message(image: &ImageState) -> api::Image {
    let record = &image.record;
    api::Image {
        name: record.name.clone(),
        digest: record.manifest.digest.clone(),
        media_type: record.manifest.media_type.clone(),
        size: record.manifest.size + record.config.size + record.layers.iter().map(|layer| layer.blob.size).sum::<i64>(),
        config_digest: record.config.digest.clone(),
        layers: record
            .layers
            .iter()
            .map(|layer| api::Layer {
                digest: layer.blob.digest.clone(),
                diff_id: layer.diff_id.clone(),
                media_type: layer.blob.media_type.clone(),
                size: layer.blob.size,
                chain_id: layer.chain_id.clone(),
            })
            .collect(),
        entrypoint: record.entrypoint.clone(),
        cmd: record.cmd.clone(),
        env: record.env.clone(),
        working_dir: record.working_dir.clone(),
        user: record.user.clone(),
        created_seq: image.created_seq,
        created_at_ns: image.created_at_ns,
    }
}

fn container_not_found(namespace: &str, id: &str) -> Status {
    Status::not_found(format!("container {id:?} not found in namespace {namespace:?}: `berth ps -a` lists them"))
}

// ------------------------------------------------------------------ Version

pub struct VersionService(pub Arc<Services>);

#[tonic::async_trait]
impl api::version_server::Version for VersionService {
    async fn version(&self, _request: Request<api::VersionRequest>) -> Result<Response<api::VersionResponse>, Status> {
        Ok(Response::new(api::VersionResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: option_env!("BERTH_REVISION").unwrap_or("dev").to_string(),
            log_seq: self.0.store.applied_seq(),
            event_schema: EVENT_SCHEMA as u32,
        }))
    }
}

// ------------------------------------------------------------------ Namespaces

pub struct NamespacesService(pub Arc<Services>);

#[tonic::async_trait]
impl api::namespaces_server::Namespaces for NamespacesService {
    async fn create(&self, request: Request<api::CreateNamespaceRequest>) -> Result<Response<api::CreateNamespaceResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Namespaces/Create")?;
        let message = request.into_inner();
        let command = Command::CreateNamespace(CreateNamespace { name: message.name, labels: message.labels.into_iter().collect() });
        let seq = self.0.submit(&namespace, origin, command).await?;
        Ok(Response::new(api::CreateNamespaceResponse { seq }))
    }

    async fn list(&self, _request: Request<api::ListNamespacesRequest>) -> Result<Response<api::ListNamespacesResponse>, Status> {
        let state = self.0.store.state();
        let namespaces = state
            .namespaces
            .iter()
            .map(|(name, namespace)| api::Namespace {
                name: name.clone(),
                labels: namespace.labels.clone().into_iter().collect(),
                created_seq: namespace.created_seq,
            })
            .collect();
        Ok(Response::new(api::ListNamespacesResponse { namespaces }))
    }

    async fn remove(&self, request: Request<api::RemoveNamespaceRequest>) -> Result<Response<api::RemoveNamespaceResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Namespaces/Remove")?;
        let command = Command::RemoveNamespace(RemoveNamespace { name: request.into_inner().name });
        let seq = self.0.submit(&namespace, origin, command).await?;
        Ok(Response::new(api::RemoveNamespaceResponse { seq }))
    }
}

// ------------------------------------------------------------------ Images

pub struct ImagesService(pub Arc<Services>);

#[tonic::async_trait]
impl api::images_server::Images for ImagesService {
    async fn import(&self, request: Request<Streaming<api::ImportChunk>>) -> Result<Response<api::ImportResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Images/Import")?;
        let mut stream = request.into_inner();
        // Spool the archive to disk first: the import reads it as a plain file.
        let spool_dir = self.0.layout.root.join("content").join("ingest");
        tokio::fs::create_dir_all(&spool_dir).await.map_err(|error| Status::internal(format!("cannot create {}: {error}", spool_dir.display())))?;
        let spool_path = spool_dir.join(format!("import-{}-{}", std::process::id(), rand::random::<u64>()));
        let _spool_guard = RemoveOnDrop(spool_path.clone());
        let mut spool = tokio::fs::File::create(&spool_path).await.map_err(|error| Status::internal(error.to_string()))?;
        let mut name = None;
        let mut first = true;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if first {
                name = Some(chunk.name.clone()).filter(|name| !name.is_empty());
                first = false;
            }
            spool.write_all(&chunk.data).await.map_err(|error| Status::internal(format!("cannot spool the archive: {error}")))?;
        }
        spool.flush().await.map_err(|error| Status::internal(error.to_string()))?;
        drop(spool);

        // From the first blob written until the record saying it exists is durable.
        let _import_guard = self.0.gc_lock.read().await;
        let services = Arc::clone(&self.0);
        let imported = tokio::task::spawn_blocking(move || -> Result<(Vec<ImageRecord>, Vec<Descriptor>), Status> {
            let file = std::fs::File::open(&spool_path).map_err(|error| Status::internal(error.to_string()))?;
            let images = image_import::import_oci_archive(&services.content, std::io::BufReader::new(file), name.as_deref())
                .map_err(|error| Status::invalid_argument(error.to_string()))?;
            let mut records = Vec::new();
            let mut blobs = Vec::new();
            for image in images {
                for layer in &image.layers {
                    let blob_path = services.content.blob_path(&layer.blob.digest);
                    services
                        .snapshotter
                        .commit_layer(&layer.chain_id, &blob_path, &layer.blob.media_type, &layer.diff_id)
                        .map_err(|error| Status::invalid_argument(format!("layer {}: {error}", layer.blob.digest)))?;
                }
                blobs.extend(image.blobs.iter().map(|blob| Descriptor {
                    digest: blob.digest.clone(),
                    media_type: blob.media_type.clone(),
                    size: blob.size,
                }));
                records.push(ImageRecord {
                    name: image.name.clone(),
                    manifest: descriptor(&image.manifest),
                    config: descriptor(&image.config),
                    layers: image
                        .layers
                        .iter()
                        .map(|layer| LayerRecord { blob: descriptor(&layer.blob), diff_id: layer.diff_id.clone(), chain_id: layer.chain_id.clone() })
                        .collect(),
                    entrypoint: image.config_summary.entrypoint.clone(),
                    cmd: image.config_summary.cmd.clone(),
                    env: image.config_summary.env.clone(),
                    working_dir: image.config_summary.working_dir.clone(),
                    user: image.config_summary.user.clone(),
                });
            }
            Ok((records, blobs))
        })
        .await
        .map_err(|error| Status::internal(error.to_string()))??;
        let (images, blobs) = imported;
        let names: Vec<String> = images.iter().map(|image| image.name.clone()).collect();
        let seq = self.0.submit(&namespace, origin, Command::ImportImage(ImportImage { images, blobs })).await?;
        let state = self.0.store.state();
        let images = names.iter().filter_map(|name| state.image(&namespace, name)).map(image_message).collect();
        Ok(Response::new(api::ImportResponse { images, seq }))
    }

    async fn list(&self, request: Request<api::ListImagesRequest>) -> Result<Response<api::ListImagesResponse>, Status> {
        let (namespace, _) = self.0.caller(&request, "Images/List")?;
        let state = self.0.store.state();
        let images = state.namespace(&namespace).map(|ns| ns.images.values().map(image_message).collect()).unwrap_or_default();
        Ok(Response::new(api::ListImagesResponse { images }))
    }

    async fn get(&self, request: Request<api::GetImageRequest>) -> Result<Response<api::Image>, Status> {
        let (namespace, _) = self.0.caller(&request, "Images/Get")?;
        let name = request.into_inner().name;
        let state = self.0.store.state();
        berth_commands::resolve_image(&state, &namespace, &name)
            .map(|image| Response::new(image_message(image)))
            .ok_or_else(|| status_from_command_error(berth_commands::image_not_found(&state, &namespace, &name)))
    }

    async fn remove(&self, request: Request<api::RemoveImageRequest>) -> Result<Response<api::RemoveImageResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Images/Remove")?;
        let command = Command::RemoveImage(RemoveImage { name: request.into_inner().name });
        let seq = self.0.submit(&namespace, origin, command).await?;
        Ok(Response::new(api::RemoveImageResponse { seq }))
    }
}

fn descriptor(blob: &image_import::BlobRef) -> Descriptor {
    Descriptor { digest: blob.digest.clone(), media_type: blob.media_type.clone(), size: blob.size }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ------------------------------------------------------------------ Containers

pub struct ContainersService(pub Arc<Services>);

#[tonic::async_trait]
impl api::containers_server::Containers for ContainersService {
    async fn create(&self, request: Request<api::CreateContainerRequest>) -> Result<Response<api::CreateContainerResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Containers/Create")?;
        let message = request.into_inner();
        let id = message.id.clone();
        let command = Command::CreateContainer(CreateContainer {
            id: message.id,
            image: message.image,
            args: message.args,
            entrypoint: message.entrypoint,
            env: message.env,
            working_dir: message.working_dir,
            user: message.user,
            hostname: message.hostname,
            labels: message.labels.into_iter().collect::<BTreeMap<_, _>>(),
        });
        let seq = self.0.submit(&namespace, origin, command).await?;
        let container = self.0.store.state().container(&namespace, &id).map(container_message);
        Ok(Response::new(api::CreateContainerResponse { container, seq }))
    }

    async fn get(&self, request: Request<api::GetContainerRequest>) -> Result<Response<api::Container>, Status> {
        let (namespace, _) = self.0.caller(&request, "Containers/Get")?;
        let id = request.into_inner().id;
        let state = self.0.store.state();
        state.container(&namespace, &id).map(|c| Response::new(container_message(c))).ok_or_else(|| container_not_found(&namespace, &id))
    }

    async fn list(&self, request: Request<api::ListContainersRequest>) -> Result<Response<api::ListContainersResponse>, Status> {
        let (namespace, _) = self.0.caller(&request, "Containers/List")?;
        let state = self.0.store.state();
        let containers = state.namespace(&namespace).map(|ns| ns.containers.values().map(container_message).collect()).unwrap_or_default();
        Ok(Response::new(api::ListContainersResponse { containers }))
    }

    async fn delete(&self, request: Request<api::DeleteContainerRequest>) -> Result<Response<api::DeleteContainerResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Containers/Delete")?;
        let command = Command::DeleteContainer(DeleteContainer { id: request.into_inner().id });
        let seq = self.0.submit(&namespace, origin, command).await?;
        Ok(Response::new(api::DeleteContainerResponse { seq }))
    }
}

// ------------------------------------------------------------------ Tasks

pub struct TasksService(pub Arc<Services>);

type LogStream = Pin<Box<dyn Stream<Item = Result<api::LogChunk, Status>> + Send>>;

impl TasksService {
    async fn intent_then_outcome(
        &self,
        namespace: &str,
        origin: Origin,
        container_id: &str,
        command: Command,
    ) -> Result<Response<api::TaskResponse>, Status> {
        let seq = self.0.submit(namespace, origin, command).await?;
        let (task, outcome_seq) = self.0.wait_for_outcome(namespace, container_id, seq).await?;
        if let (TaskStatus::Failed, Some(error)) = (task.status, &task.error) {
            return Err(Status::failed_precondition(format!(
                "the task of {container_id:?} failed: {error} (delete it with `berth rm -f {container_id}`)"
            )));
        }
        Ok(Response::new(api::TaskResponse { task: Some(task_message(container_id, &task)), seq, outcome_seq }))
    }
}

#[tonic::async_trait]
impl api::tasks_server::Tasks for TasksService {
    type LogsStream = LogStream;

    async fn create(&self, request: Request<api::CreateTaskRequest>) -> Result<Response<api::TaskResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Tasks/Create")?;
        let message = request.into_inner();
        let container_id = message.container_id;
        let command = Command::CreateTask(CreateTask { container_id: container_id.clone(), start: message.start });
        self.intent_then_outcome(&namespace, origin, &container_id, command).await
    }

    async fn start(&self, request: Request<api::StartTaskRequest>) -> Result<Response<api::TaskResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Tasks/Start")?;
        let container_id = request.into_inner().container_id;
        let command = Command::StartTask(StartTask { container_id: container_id.clone() });
        self.intent_then_outcome(&namespace, origin, &container_id, command).await
    }

    async fn kill(&self, request: Request<api::KillTaskRequest>) -> Result<Response<api::KillTaskResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Tasks/Kill")?;
        let message = request.into_inner();
        let signal = i32::try_from(message.signal).unwrap_or(i32::MAX);
        let command = Command::KillTask(KillTask { container_id: message.container_id.clone(), signal, all: message.all });
        let seq = self.0.submit(&namespace, origin, command).await?;
        let (task, outcome_seq) = self.0.wait_for_outcome(&namespace, &message.container_id, seq).await?;
        if let Some(error) = task.error.filter(|_| task.updated_seq == outcome_seq && task.exit.is_none()) {
            return Err(Status::failed_precondition(format!("signal not delivered: {error}")));
        }
        Ok(Response::new(api::KillTaskResponse { seq, outcome_seq }))
    }

    async fn wait(&self, request: Request<api::WaitTaskRequest>) -> Result<Response<api::WaitTaskResponse>, Status> {
        let (namespace, _) = self.0.caller(&request, "Tasks/Wait")?;
        let container_id = request.into_inner().container_id;
        let found = self
            .0
            .store
            .wait_until(|state: &State| match state.container(&namespace, &container_id) {
                None => Some(Err(container_not_found(&namespace, &container_id))),
                Some(container) => match &container.task {
                    None => Some(Err(Status::not_found(format!(
                        "container {container_id:?} has no task: start it with `berth start {container_id}`"
                    )))),
                    Some(task) => match (task.exit, task.status) {
                        (Some(exit), _) => Some(Ok((exit, task.updated_seq))),
                        (None, TaskStatus::Failed) => Some(Err(Status::failed_precondition(format!(
                            "the task of {container_id:?} failed and never ran: {}",
                            task.error.clone().unwrap_or_default()
                        )))),
                        _ => None,
                    },
                },
            })
            .await?;
        let (exit, seq) = found;
        Ok(Response::new(api::WaitTaskResponse {
            exit_code: exit.exit_code,
            exit_signal: exit.signal,
            exited_at_ns: exit.exited_at_ns,
            seq,
        }))
    }

    async fn delete(&self, request: Request<api::DeleteTaskRequest>) -> Result<Response<api::DeleteTaskResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Tasks/Delete")?;
        let message = request.into_inner();
        let container_id = message.container_id.clone();
        let command = Command::DeleteTask(DeleteTask { container_id: container_id.clone(), force: message.force });
        let seq = self.0.submit(&namespace, origin, command).await?;
        // Done when the delete intent is no longer pending (the task gone, or still there with
        // the delete answered by a failure, or already replaced by a newer task).
        let wait = self.0.store.wait_until(|state| {
            let pending = state
                .container(&namespace, &container_id)
                .and_then(|container| container.task.as_ref())
                .is_some_and(|task| task.pending.iter().any(|intent| intent.seq() == seq));
            (!pending).then_some(state.last_seq)
        });
        let applied_seq = tokio::time::timeout(OUTCOME_TIMEOUT, wait)
            .await
            .map_err(|_| Status::deadline_exceeded(format!("the delete at seq {seq} has no outcome yet: check `berth ps -a`")))?;
        // The record that answers the intent says what happened, and holds the exit code.
        let mut exit_code = 0;
        let mut outcome_seq = applied_seq;
        let mut failure = None;
        if let Ok(mut reader) = self.0.store.log().reader(Seq(seq + 1)) {
            while let Some(Ok(record)) = reader.next() {
                if record.seq.get() > applied_seq {
                    break;
                }
                let Ok(envelope) = Envelope::decode(record.payload) else { continue };
                if envelope.namespace != namespace || envelope.answers() != Some(seq) {
                    continue;
                }
                let answer = envelope.events.iter().find_map(|event| match event {
                    berth_projections::Event::TaskDeleted { exit_code, .. } => Some(Ok(*exit_code)),
                    berth_projections::Event::TaskDeleteFailed { error, .. } => Some(Err(error.clone())),
                    _ => None,
                });
                match answer {
                    Some(Ok(code)) => exit_code = code,
                    Some(Err(error)) => failure = Some(error),
                    None => continue,
                }
                outcome_seq = record.seq.get();
                break;
            }
        }
        if let Some(error) = failure {
            return Err(Status::failed_precondition(format!("deleting the task of {container_id:?} failed: {error}")));
        }
        Ok(Response::new(api::DeleteTaskResponse { exit_code, seq, outcome_seq }))
    }

    async fn list(&self, request: Request<api::ListTasksRequest>) -> Result<Response<api::ListTasksResponse>, Status> {
        let (namespace, _) = self.0.caller(&request, "Tasks/List")?;
        let state = self.0.store.state();
        let tasks = state
            .namespace(&namespace)
            .map(|ns| {
                ns.containers
                    .values()
                    .filter_map(|container| container.task.as_ref().map(|task| task_message(&container.record.id, task)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(api::ListTasksResponse { tasks }))
    }

    async fn get(&self, request: Request<api::GetTaskRequest>) -> Result<Response<api::Task>, Status> {
        let (namespace, _) = self.0.caller(&request, "Tasks/Get")?;
        let container_id = request.into_inner().container_id;
        let state = self.0.store.state();
        let container = state.container(&namespace, &container_id).ok_or_else(|| container_not_found(&namespace, &container_id))?;
        let task = container.task.as_ref().ok_or_else(|| Status::not_found(format!("container {container_id:?} has no task")))?;
        Ok(Response::new(task_message(&container_id, task)))
    }

    async fn logs(&self, request: Request<api::LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let (namespace, _) = self.0.caller(&request, "Tasks/Logs")?;
        let message = request.into_inner();
        let container_id = message.container_id;
        if self.0.store.state().container(&namespace, &container_id).is_none() {
            return Err(container_not_found(&namespace, &container_id));
        }
        let task_dir = self.0.layout.task_dir(&namespace, &container_id);
        let (sender, receiver) = mpsc::channel(16);
        let store = Arc::clone(&self.0.store);
        tokio::spawn(stream_logs(store, namespace, container_id, task_dir, message.follow, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Sends what the task wrote to its stdout and stderr files; with `follow`, keeps reading until
/// the task has exited (or is gone) and both files are drained.
async fn stream_logs(
    store: Arc<Store>,
    namespace: String,
    container_id: String,
    task_dir: PathBuf,
    follow: bool,
    sender: mpsc::Sender<Result<api::LogChunk, Status>>,
) {
    use tokio::io::AsyncReadExt;
    let streams = [
        (crate::monitor::stdout_path(&task_dir), api::log_chunk::Stream::Stdout),
        (crate::monitor::stderr_path(&task_dir), api::log_chunk::Stream::Stderr),
    ];
    let mut offsets = [0u64; 2];
    let mut buffer = vec![0u8; 64 * 1024];
    let mut applied = store.watch_applied();
    loop {
        // Decide "finished" before reading, so output written just before the exit is read.
        let finished = {
            let state = store.state();
            match state.container(&namespace, &container_id).and_then(|container| container.task.as_ref()) {
                Some(task) => task.exit.is_some() || matches!(task.status, TaskStatus::Failed),
                None => true,
            }
        };
        let mut read_any = false;
        for (index, (path, stream)) in streams.iter().enumerate() {
            let Ok(mut file) = tokio::fs::File::open(path).await else { continue };
            if tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(offsets[index])).await.is_err() {
                continue;
            }
            while let Ok(n) = file.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                read_any = true;
                offsets[index] += n as u64;
                let chunk = api::LogChunk { stream: *stream as i32, data: buffer[..n].to_vec() };
                if sender.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        }
        if !follow || (finished && !read_any) {
            return;
        }
        if !read_any {
            // New output is polled for; the exit is noticed as soon as it is recorded.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = applied.changed() => {}
            }
        }
    }
}

// ------------------------------------------------------------------ Events

pub struct EventsService(pub Arc<Services>);

type EventStream = Pin<Box<dyn Stream<Item = Result<api::Event, Status>> + Send>>;

#[tonic::async_trait]
impl api::events_server::Events for EventsService {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, request: Request<api::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let (namespace, _) = self.0.caller(&request, "Events/Subscribe")?;
        let message = request.into_inner();
        let filter = match message.namespace.as_str() {
            "" => Some(namespace),
            "*" => None,
            other => Some(other.to_string()),
        };
        let store = Arc::clone(&self.0.store);
        let since = if message.since == 0 { store.applied_seq() + 1 } else { message.since };
        let (sender, receiver) = mpsc::channel(256);
        tokio::spawn(stream_events(store, since, message.follow, filter, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Reads the log from `since`, then (with `follow`) waits for each newly applied record.
async fn stream_events(
    store: Arc<Store>,
    since: u64,
    follow: bool,
    namespace: Option<String>,
    sender: mpsc::Sender<Result<api::Event, Status>>,
) {
    let mut reader = match store.log().reader(Seq(since)) {
        Ok(reader) => reader,
        Err(error) => {
            let _ = sender.send(Err(Status::internal(format!("cannot read the log: {error}")))).await;
            return;
        }
    };
    let mut applied = store.watch_applied();
    loop {
        // Drain what is durable now, in small synchronous steps (the map reads do not block).
        let mut batch = Vec::new();
        while batch.len() < 256 {
            match reader.next_owned() {
                Some(Ok(record)) => batch.push(record),
                Some(Err(error)) => {
                    let _ = sender.send(Err(Status::internal(format!("cannot read the log: {error}")))).await;
                    return;
                }
                None => break,
            }
        }
        let drained = batch.len() < 256;
        for record in batch {
            let envelope = match Envelope::decode(&record.payload) {
                Ok(envelope) => envelope,
                Err(error) => {
                    let _ = sender.send(Err(Status::internal(format!("record {}: {error}", record.seq)))).await;
                    return;
                }
            };
            if namespace.as_ref().is_some_and(|wanted| *wanted != envelope.namespace) {
                continue;
            }
            for message in event_messages(record.seq.get(), record.timestamp_ns, &envelope) {
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        }
        if drained {
            if !follow {
                return;
            }
            if applied.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The API form of one record's events.
pub fn event_messages(seq: u64, timestamp_ns: u64, envelope: &Envelope) -> Vec<api::Event> {
    let origin = match &envelope.origin {
        Origin::Client { uid, gid, pid, method, request_id } => api::Origin {
            kind: "client".into(),
            uid: *uid,
            gid: *gid,
            pid: *pid,
            method: method.clone(),
            request_id: request_id.clone(),
            answers_seq: 0,
            reason: String::new(),
        },
        Origin::Daemon { reason, answers } => api::Origin {
            kind: "daemon".into(),
            answers_seq: answers.unwrap_or(0),
            reason: reason.clone(),
            ..api::Origin::default()
        },
    };
    envelope
        .events
        .iter()
        .enumerate()
        .map(|(index, event)| api::Event {
            seq,
            index: index as u32,
            timestamp_ns: timestamp_ns as i64,
            namespace: envelope.namespace.clone(),
            origin: Some(origin.clone()),
            kind: event.kind().to_string(),
            json: event.fields_json().to_string(),
        })
        .collect()
}
