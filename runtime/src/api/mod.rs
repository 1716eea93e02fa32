//! berthd's gRPC API: the generated types of `proto/berth/v1/berth.proto`, the wire conventions
//! every client follows, and one file per service. Each service is a thin adapter: it turns a
//! request into a command (mutations) or reads the projections (queries); the work itself lives
//! in the domain it belongs to (`images`, `tasks`, `daemon::store`).

mod authority;
mod containers;
mod convert;
mod events;
mod execs;
mod image_pull;
mod image_push;
mod images;
mod logs;
mod namespaces;
mod networks;
mod paging;
mod services;
mod status_limit;
mod system;
mod task_delete;
mod task_freeze;
mod task_io;
mod task_stats;
mod task_stop;
mod tasks;
mod version;
mod volumes;

#[allow(clippy::all)]
mod proto {
    tonic::include_proto!("berth.v1");
}

pub use authority::AuthorityRepair;
pub use convert::event_messages;
pub use paging::MAX_PAGE_BYTES;
pub use proto::*;
pub use services::{status_from_command_error, Services};
pub use status_limit::{cap_status_messages_layer, MAX_STATUS_MESSAGE_BYTES};
pub use {
    containers::ContainersService, events::EventsService, images::ImagesService, namespaces::NamespacesService,
    networks::NetworksService, system::SystemService, tasks::TasksService, version::VersionService,
    volumes::VolumesService,
};

/// Shows whether credentials are set, never what they are: a request that carries them may be
/// printed with `{:?}` by tracing or an error path.
impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RegistryCredentials")
            .field("username", &if self.username.is_empty() { "" } else { "<set>" })
            .field("password", &if self.password.is_empty() { "" } else { "<redacted>" })
            .finish()
    }
}

/// Serialized descriptors of the API, served through gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("berth_descriptor");

/// Request metadata naming the namespace a call acts in (absent or empty: [`DEFAULT_NAMESPACE`]).
pub const NAMESPACE_KEY: &str = "berth-namespace";
/// Request metadata naming the request, recorded in the log as who-did-what; berthd makes one up
/// when it is absent.
pub const REQUEST_ID_KEY: &str = "berth-request-id";
pub const DEFAULT_NAMESPACE: &str = "default";
/// Where berthd listens and the CLI connects unless told otherwise (`--address` / `BERTH_ADDRESS`).
pub const DEFAULT_ADDRESS: &str = "/run/berth/berthd.sock";

/// The largest message either side sends or accepts, the same in berthd and in the client, so
/// that anything berthd answers the CLI can read. A single image or container is bounded well
/// below it by the record limit; lists are paged.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// The largest unary request berthd decodes: a container's settings are bounded far below it
/// (`berth_commands::validate`), so more is not a request berthd would accept anyway.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// The largest chunk of an image import stream.
pub const MAX_IMPORT_CHUNK_BYTES: usize = 64 << 20;
