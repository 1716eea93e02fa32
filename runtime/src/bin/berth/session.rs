//! The one connection a berth invocation makes, and the errors every verb can end with.

use std::path::{Path, PathBuf};

use berth_runtime::api::containers_client::ContainersClient;
use berth_runtime::api::events_client::EventsClient;
use berth_runtime::api::images_client::ImagesClient;
use berth_runtime::api::namespaces_client::NamespacesClient;
use berth_runtime::api::system_client::SystemClient;
use berth_runtime::api::tasks_client::TasksClient;
use berth_runtime::api::version_client::VersionClient;
use berth_runtime::api::volumes_client::VolumesClient;
use berth_runtime::client::{BerthClient, ClientError};
use tonic::transport::Channel;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reaching berthd failed, or berthd answered with an error.
    #[error(transparent)]
    Client(#[from] ClientError),

    #[error("cannot read {}: {source}; check the path and that you may read it", path.display())]
    ReadFile { path: PathBuf, source: std::io::Error },

    #[error("cannot write {}: {source}; check that its directory exists, is writable and has room", path.display())]
    WriteFile { path: PathBuf, source: std::io::Error },

    #[error("cannot write to standard output or error: {0}; check where the output goes (disk full?)")]
    WriteOutput(std::io::Error),

    #[error("cannot watch for Ctrl-C: {0}; run without a terminal, e.g. with --detach")]
    InstallSignalHandler(std::io::Error),

    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialsError),

    /// The command line asks for something that cannot be done; the text says what to do.
    #[error("{0}")]
    Usage(String),
    #[error("the input is not a terminal, and -t needs one: run berth in a terminal, or drop -t (with -i a pipe still works)")]
    NotATerminal,

    #[error("container {container_id} is not running: start it with `berth start {container_id}`")]
    NotRunning { container_id: String },

    #[error("cannot set up the local terminal: {0}; run without -t")]
    Terminal(std::io::Error),
    #[error("unknown filter {filter:?}: use status=, name=, label= or ancestor=")]
    UnknownFilter { filter: String },

    /// Several targets failed; each was already reported on its own line.
    #[error("{n_failed} of {n_total} failed (see above)")]
    SomeFailed { n_failed: usize, n_total: usize },
}

/// A connected client plus the socket path, which error messages name. `main` makes exactly one
/// and lends it to the verb.
pub struct Session {
    client: BerthClient,
    socket_path: PathBuf,
}

impl Session {
    pub async fn connect(socket_path: &Path, namespace: &str) -> Result<Session, CliError> {
        let client = BerthClient::connect(socket_path, namespace).await?;
        Ok(Session { client, socket_path: socket_path.to_path_buf() })
    }

    /// `message` with this session's namespace and a fresh request id.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.client.request(message)
    }

    /// Turns a gRPC status into the error berth prints.
    pub fn rpc_error(&self) -> impl Fn(tonic::Status) -> CliError + '_ {
        move |status| CliError::Client(ClientError::from_status(status, &self.socket_path))
    }

    /// [`Session::request`] for a task spawned beside the verb, which cannot borrow the session.
    pub fn request_maker<T>(&self) -> impl Fn(T) -> tonic::Request<T> + Send + 'static {
        let client = self.client.clone();
        move |message| client.request(message)
    }

    /// [`Session::rpc_error`] for a task spawned beside the verb, which cannot borrow the session.
    pub fn rpc_error_owned(&self) -> impl Fn(tonic::Status) -> CliError + Send + 'static {
        let socket_path = self.socket_path.clone();
        move |status| CliError::Client(ClientError::from_status(status, &socket_path))
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        self.client.containers()
    }

    pub fn tasks(&self) -> TasksClient<Channel> {
        self.client.tasks()
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        self.client.images()
    }

    pub fn namespaces(&self) -> NamespacesClient<Channel> {
        self.client.namespaces()
    }

    pub fn volumes(&self) -> VolumesClient<Channel> {
        self.client.volumes()
    }

    pub fn networks(&self) -> berth_runtime::api::networks_client::NetworksClient<Channel> {
        self.client.networks()
    }

    pub fn events(&self) -> EventsClient<Channel> {
        self.client.events()
    }

    pub fn version(&self) -> VersionClient<Channel> {
        self.client.version()
    }

    pub fn system(&self) -> SystemClient<Channel> {
        self.client.system()
    }

    pub async fn list_all_images(&self) -> Result<Vec<berth_runtime::api::Image>, tonic::Status> {
        self.client.list_all_images().await
    }

    pub async fn list_all_containers(&self) -> Result<Vec<berth_runtime::api::Container>, tonic::Status> {
        self.client.list_all_containers().await
    }
}
