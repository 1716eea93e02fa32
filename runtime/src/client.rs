//! Client side of berthd's gRPC API: connecting over the UNIX socket and naming every request.
//!
//! The `berth` CLI is built on this module; integration tests and other tools can use it too.
//! It knows nothing about tables or terminals — only how to reach the daemon, how to stamp the
//! metadata the API's conventions ask for (`berth-namespace`, `berth-request-id`), and how to
//! turn a failure into a message that says what to do next.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hyper_util::rt::TokioIo;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::api::containers_client::ContainersClient;
use crate::api::events_client::EventsClient;
use crate::api::images_client::ImagesClient;
use crate::api::namespaces_client::NamespacesClient;
use crate::api::system_client::SystemClient;
use crate::api::tasks_client::TasksClient;
use crate::api::version_client::VersionClient;
use crate::api::volumes_client::VolumesClient;
use crate::api::MAX_MESSAGE_BYTES;

/// The wire conventions, defined once beside the generated API types.
pub use crate::api::{DEFAULT_ADDRESS, DEFAULT_NAMESPACE, NAMESPACE_KEY, REQUEST_ID_KEY};

/// What the user should do when berthd cannot be reached at all.
const START_DAEMON_HINT: &str = "is it running? start it with `berthd` or pass --address / BERTH_ADDRESS";

/// Why talking to berthd failed, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket: it does not exist, or nobody accepts on it.
    #[error("cannot reach berthd at {}: {START_DAEMON_HINT}", socket_path.display())]
    DaemonNotRunning { socket_path: PathBuf },

    /// The socket exists but this user may not open it.
    #[error(
        "cannot reach berthd at {}: permission denied; run berth as root, or as a member of the socket's group (berthd --group, or [grpc] gid in its config)",
        socket_path.display()
    )]
    PermissionDenied { socket_path: PathBuf },

    /// Connecting failed for another reason (the path is not a socket, the handshake failed...).
    #[error(
        "cannot reach berthd at {}: {reason}; check that berthd is running and listening on that socket",
        socket_path.display()
    )]
    Connect { socket_path: PathBuf, reason: String },

    /// berthd went away or is shutting down (gRPC UNAVAILABLE).
    #[error("berthd at {} is unavailable ({message}): {START_DAEMON_HINT}", socket_path.display())]
    Unavailable { socket_path: PathBuf, message: String },

    /// The namespace cannot be sent as gRPC metadata.
    #[error(
        "invalid namespace {namespace:?}: namespaces are sent as gRPC metadata and must be non-empty printable ASCII without spaces; pick a name like \"default\" or \"build-42\""
    )]
    InvalidNamespace { namespace: String },

    /// berthd answered with an error. Its message already says what went wrong and what to do.
    #[error("{}", describe_status(.0))]
    Rpc(tonic::Status),
}

impl ClientError {
    /// Turns a failed call into a `ClientError`, keeping the hint about starting berthd for the
    /// cases where the daemon is not there (anymore).
    pub fn from_status(status: tonic::Status, socket_path: &Path) -> ClientError {
        // When the daemon went away mid-session, the channel's reconnect fails and the status
        // carries the socket error: report that the same way as a failed first connect.
        if let Some(io_error) = find_io_error(&status) {
            return connect_error_from_io(io_error, socket_path);
        }
        if status.code() == tonic::Code::Unavailable {
            return ClientError::Unavailable {
                socket_path: socket_path.to_path_buf(),
                message: status.message().to_string(),
            };
        }
        ClientError::Rpc(status)
    }

    /// The gRPC status code when berthd answered with an error.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Rpc(status) => Some(status.code()),
            ClientError::Unavailable { .. } => Some(tonic::Code::Unavailable),
            _ => None,
        }
    }
}

fn describe_status(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("berthd answered {:?} without a message; look at berthd's log for details", status.code())
    } else {
        status.message().to_string()
    }
}

/// Walks an error's source chain looking for the `std::io::Error` that caused it.
fn find_io_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(candidate) = current {
        if let Some(io_error) = candidate.downcast_ref::<std::io::Error>() {
            return Some(io_error);
        }
        current = candidate.source();
    }
    None
}

fn connect_error_from_io(io_error: &std::io::Error, socket_path: &Path) -> ClientError {
    let socket_path = socket_path.to_path_buf();
    match io_error.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::DaemonNotRunning { socket_path }
        }
        std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { socket_path },
        _ => ClientError::Connect { socket_path, reason: io_error.to_string() },
    }
}

/// Opens a gRPC channel to berthd over the UNIX socket at `socket_path`.
///
/// The connection is made eagerly, so a missing daemon is reported here rather than at the
/// first call. Later calls reconnect on their own if the connection drops.
pub async fn connect(socket_path: &Path) -> Result<Channel, ClientError> {
    // tonic wants a URI; the host is never resolved because the connector below ignores it.
    let endpoint = Endpoint::from_static("http://berthd.localhost");
    let connector_socket_path = socket_path.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let socket_path = connector_socket_path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(&socket_path).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    endpoint.connect_with_connector(connector).await.map_err(|transport_error| match find_io_error(&transport_error) {
        Some(io_error) => connect_error_from_io(io_error, socket_path),
        None => ClientError::Connect { socket_path: socket_path.to_path_buf(), reason: transport_error.to_string() },
    })
}

/// How many items the client asks for per `List` page (berthd also stops a page at
/// `api::MAX_PAGE_BYTES`).
const LIST_PAGE_SIZE: u32 = 100;

/// A channel to berthd plus the namespace every request is sent in.
///
/// Build one with [`BerthClient::connect`] or [`BerthClient::new`]; take a generated client per
/// service (`client.containers()`, all sharing the one channel) and build each request with
/// [`BerthClient::request`].
#[derive(Clone, Debug)]
pub struct BerthClient {
    pub channel: Channel,
    pub namespace: String,
}

impl BerthClient {
    /// Wraps an open channel, checking that `namespace` can be sent as metadata.
    pub fn new(channel: Channel, namespace: impl Into<String>) -> Result<BerthClient, ClientError> {
        let namespace = namespace.into();
        if !is_sendable_namespace(&namespace) {
            return Err(ClientError::InvalidNamespace { namespace });
        }
        Ok(BerthClient { channel, namespace })
    }

    /// Connects to berthd at `socket_path` and acts in `namespace`.
    pub async fn connect(socket_path: &Path, namespace: impl Into<String>) -> Result<BerthClient, ClientError> {
        let namespace = namespace.into();
        // Check the namespace before connecting: a bad flag should not wait on a socket.
        if !is_sendable_namespace(&namespace) {
            return Err(ClientError::InvalidNamespace { namespace });
        }
        let channel = connect(socket_path).await?;
        Ok(BerthClient { channel, namespace })
    }

    /// Wraps `message` in a request carrying this client's namespace and a fresh request id.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(NAMESPACE_KEY, namespace_metadata_value(&self.namespace));
        // Request ids are made of ASCII digits and letters only, so they always parse.
        if let Ok(request_id) = MetadataValue::try_from(next_request_id().as_str()) {
            metadata.insert(REQUEST_ID_KEY, request_id);
        }
        request
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn namespaces(&self) -> NamespacesClient<Channel> {
        NamespacesClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn volumes(&self) -> VolumesClient<Channel> {
        VolumesClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn networks(&self) -> crate::api::networks_client::NetworksClient<Channel> {
        crate::api::networks_client::NetworksClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn events(&self) -> EventsClient<Channel> {
        EventsClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Every image of the namespace, page by page (see `ListImagesRequest`).
    pub async fn list_all_images(&self) -> Result<Vec<crate::api::Image>, tonic::Status> {
        let mut images = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = crate::api::ListImagesRequest { page_size: LIST_PAGE_SIZE, page_token };
            let page = self.images().list(self.request(request)).await?.into_inner();
            images.extend(page.images);
            match page.next_page_token {
                token if token.is_empty() => return Ok(images),
                token => page_token = token,
            }
        }
    }

    /// Every container of the namespace, page by page (see `ListContainersRequest`).
    pub async fn list_all_containers(&self) -> Result<Vec<crate::api::Container>, tonic::Status> {
        let mut containers = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = crate::api::ListContainersRequest { page_size: LIST_PAGE_SIZE, page_token };
            let page = self.containers().list(self.request(request)).await?.into_inner();
            containers.extend(page.containers);
            match page.next_page_token {
                token if token.is_empty() => return Ok(containers),
                token => page_token = token,
            }
        }
    }

    pub fn version(&self) -> VersionClient<Channel> {
        VersionClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn system(&self) -> SystemClient<Channel> {
        SystemClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Whether `namespace` survives the trip as metadata unchanged. Header values may carry bytes
/// above 0x7f, but a server reading them as text would see no namespace at all and fall back
/// to "default", so only printable ASCII is let through.
fn is_sendable_namespace(namespace: &str) -> bool {
    !namespace.is_empty() && namespace.bytes().all(|byte| byte.is_ascii_graphic())
}

/// The namespace as a metadata value. `BerthClient::new` rejects names that
/// `is_sendable_namespace` refuses; if such a name is put into the public field afterwards, it
/// is percent-escaped rather than dropped, so the request can never silently land in the
/// "default" namespace.
fn namespace_metadata_value(namespace: &str) -> MetadataValue<tonic::metadata::Ascii> {
    if is_sendable_namespace(namespace) {
        if let Ok(value) = MetadataValue::try_from(namespace) {
            return value;
        }
    }
    let mut escaped = String::with_capacity(namespace.len() * 3);
    for byte in namespace.bytes() {
        if byte.is_ascii_graphic() && byte != b'%' {
            escaped.push(byte as char);
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    MetadataValue::try_from(escaped.as_str()).unwrap_or_else(|_| MetadataValue::from_static("%invalid-namespace"))
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A request id unique within this process and unlikely to collide across processes:
/// `cli-<pid>-<counter>`.
pub fn next_request_id() -> String {
    let request_idx = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("cli-{}-{}", std::process::id(), request_idx)
}

/// A fresh container id: 12 lower-case hex characters, like the short ids people are used to.
pub fn generate_container_id() -> String {
    let random_bytes: [u8; 6] = rand::random();
    hex::encode(random_bytes)
}

/// The exit status a shell would report for a process: its exit code, or 128 + the signal
/// number when a signal killed it.
pub fn shell_exit_status(exit_code: i32, exit_signal: i32) -> i32 {
    if exit_signal > 0 {
        128 + exit_signal
    } else {
        exit_code
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::version_client::VersionClient;
    use crate::api::version_server::{Version, VersionServer};
    use crate::api::{VersionRequest, VersionResponse};

    #[test]
    fn container_ids_are_twelve_lower_case_hex_characters() {
        let container_id = generate_container_id();
        assert_eq!(container_id.len(), 12);
        assert!(container_id.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_ne!(container_id, generate_container_id());
    }

    #[test]
    fn request_ids_differ_and_name_the_process() {
        let first = next_request_id();
        let second = next_request_id();
        assert_ne!(first, second);
        assert!(first.starts_with(&format!("cli-{}-", std::process::id())));
    }

    #[test]
    fn shell_exit_status_adds_128_for_signals() {
        assert_eq!(shell_exit_status(7, 0), 7);
        assert_eq!(shell_exit_status(0, 9), 137);
        assert_eq!(shell_exit_status(0, 2), 130);
    }

    #[test]
    fn namespace_metadata_escapes_unprintable_names_instead_of_dropping_them() {
        assert_eq!(namespace_metadata_value("build-42").to_str().unwrap(), "build-42");
        assert_eq!(namespace_metadata_value("café").to_str().unwrap(), "caf%C3%A9");
        assert_eq!(namespace_metadata_value("a\nb").to_str().unwrap(), "a%0Ab");
        assert_eq!(namespace_metadata_value("").to_str().unwrap(), "");
        assert!(is_sendable_namespace("default"));
        assert!(!is_sendable_namespace(""));
        assert!(!is_sendable_namespace("café"));
        assert!(!is_sendable_namespace("two words"));
    }

    #[test]
    fn unavailable_status_keeps_the_start_daemon_hint() {
        let error =
            ClientError::from_status(tonic::Status::unavailable("daemon shutting down"), Path::new("/tmp/x.sock"));
        let message = error.to_string();
        assert!(message.contains("/tmp/x.sock"), "{message}");
        assert!(message.contains("daemon shutting down"), "{message}");
        assert!(message.contains("start it with `berthd`"), "{message}");
    }

    #[test]
    fn other_statuses_print_the_server_message_as_is() {
        let error = ClientError::from_status(
            tonic::Status::not_found("container \"x\" not found: list containers with `berth ps -a`"),
            Path::new("/tmp/x.sock"),
        );
        assert_eq!(error.code(), Some(tonic::Code::NotFound));
        assert_eq!(error.to_string(), "container \"x\" not found: list containers with `berth ps -a`");
        let empty = ClientError::from_status(tonic::Status::internal(""), Path::new("/x"));
        assert!(empty.to_string().contains("without a message"), "{empty}");
    }

    #[tokio::test]
    async fn invalid_namespace_is_rejected_before_connecting() {
        for namespace in ["café", "a\nb", ""] {
            let result = BerthClient::connect(Path::new("/nonexistent/berthd.sock"), namespace).await;
            assert!(matches!(result, Err(ClientError::InvalidNamespace { .. })), "{result:?}");
        }
    }

    #[tokio::test]
    async fn missing_socket_says_how_to_start_berthd() {
        let scratch_dir = tempfile::tempdir().unwrap();
        let socket_path = scratch_dir.path().join("berthd.sock");
        let error = connect(&socket_path).await.unwrap_err();
        assert!(matches!(error, ClientError::DaemonNotRunning { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "cannot reach berthd at {}: is it running? start it with `berthd` or pass --address / BERTH_ADDRESS",
                socket_path.display()
            )
        );
    }

    #[tokio::test]
    async fn stale_socket_without_listener_says_how_to_start_berthd() {
        let scratch_dir = tempfile::tempdir().unwrap();
        let socket_path = scratch_dir.path().join("berthd.sock");
        // Binding and dropping leaves the socket file behind with nobody accepting on it,
        // which is what a crashed daemon leaves.
        drop(std::os::unix::net::UnixListener::bind(&socket_path).unwrap());
        let error = connect(&socket_path).await.unwrap_err();
        assert!(matches!(error, ClientError::DaemonNotRunning { .. }), "{error:?}");
    }

    /// Answers Version with the metadata it received, so the test can see what was sent.
    struct EchoMetadata;

    #[tonic::async_trait]
    impl Version for EchoMetadata {
        async fn version(
            &self,
            request: tonic::Request<VersionRequest>,
        ) -> Result<tonic::Response<VersionResponse>, tonic::Status> {
            let metadata_text =
                |key: &str| request.metadata().get(key).and_then(|value| value.to_str().ok()).unwrap_or("").to_string();
            Ok(tonic::Response::new(VersionResponse {
                version: metadata_text(NAMESPACE_KEY),
                revision: metadata_text(REQUEST_ID_KEY),
                log_seq: 0,
                event_schema: 0,
            }))
        }
    }

    #[tokio::test]
    async fn requests_carry_namespace_and_request_id_over_the_socket() {
        let scratch_dir = tempfile::tempdir().unwrap();
        let socket_path = scratch_dir.path().join("berthd.sock");
        let listener = tokio::net::UnixListener::bind(&socket_path).unwrap();
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(VersionServer::new(EchoMetadata))
                .serve_with_incoming(incoming),
        );

        let client = BerthClient::connect(&socket_path, "build-42").await.unwrap();
        let mut version_client = VersionClient::new(client.channel.clone());
        let first = version_client.version(client.request(VersionRequest {})).await.unwrap().into_inner();
        let second = version_client.version(client.request(VersionRequest {})).await.unwrap().into_inner();
        assert_eq!(first.version, "build-42");
        assert!(first.revision.starts_with("cli-"), "{}", first.revision);
        assert_ne!(first.revision, second.revision);
        server.abort();
    }
}
