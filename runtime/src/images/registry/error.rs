//! What can go wrong talking to a registry, one enum for the registry module: each variant
//! says what the user can do, and [`RegistryError::kind`] tells the API which gRPC code fits.

use std::path::PathBuf;

use crate::images::content::ContentError;
use crate::images::platform::PlatformError;
use crate::images::registry::hosts::HostsError;
use crate::images::registry::reference::ReferenceError;
use crate::images::snapshot::SnapshotError;

/// How the API should report an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryErrorKind {
    /// The request itself (reference, platform): InvalidArgument.
    BadRequest,
    NotFound,
    Unauthenticated,
    /// The registry knows who asks and refuses (403).
    PermissionDenied,
    /// The registry could not be reached: Unavailable.
    Unreachable,
    /// The registry answered with something berth refuses (lies, oversize, unknown type).
    BadRegistry,
    /// The host's fault (disk, config): Internal / FailedPrecondition.
    Host,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Hosts(#[from] HostsError),
    #[error("cannot use CA file {path} for {endpoint}: {reason}; fix the `ca` line in its hosts.toml")]
    CaFile { endpoint: String, path: PathBuf, reason: String },
    #[error("cannot set up an HTTP client for {endpoint}: {reason}")]
    Client { endpoint: String, reason: String },
    #[error("cannot reach registry {endpoint}: {reason}; check the host name and port and that the registry runs (a registry without TLS needs --plain-http or plain_http in its hosts.toml, one with its own CA needs `ca` there)")]
    Unreachable { endpoint: String, reason: String },
    #[error("{what} not found at {tried}; check the repository and tag (`skopeo inspect docker://REFERENCE` shows what the registry has)")]
    NotFound { what: String, tried: String },
    #[error("registry {endpoint} wants credentials for {scope}; log in with `berth login {host}` or pass --user USER[:PASSWORD]")]
    CredentialsNeeded { endpoint: String, host: String, scope: String },
    #[error("registry {endpoint} refused the credentials for {scope}; check the user name and password (`berth login {host}` saves new ones)")]
    CredentialsRefused { endpoint: String, host: String, scope: String },
    #[error("registry {endpoint} asks for an authentication scheme berth does not know ({challenge}); only Basic and Bearer are supported")]
    UnknownChallenge { endpoint: String, challenge: String },
    #[error(
        "cannot get a token from {realm}: {reason}; check the credentials and that the token service is reachable"
    )]
    Token { realm: String, reason: String },
    #[error("registry {endpoint} answered {url} with HTTP {status}; try again later, or check the registry's log")]
    Status { endpoint: String, url: String, status: u16 },
    #[error("registry {endpoint} sent {what} {expected} whose bytes hash to {actual}; the registry or something between is corrupting data: nothing was kept, try again or use another mirror")]
    DigestMismatch { endpoint: String, what: String, expected: String, actual: String },
    #[error("registry {endpoint} sent {actual} bytes for {what} {digest}, but its descriptor says {expected}; nothing was kept, try again or use another mirror")]
    SizeMismatch { endpoint: String, what: String, digest: String, expected: u64, actual: u64 },
    #[error("registry {endpoint} sent a {what} of more than {limit} bytes, over berth's limit; this is not an image berth can pull")]
    TooLarge { endpoint: String, what: String, limit: u64 },
    #[error("the transfer of {what} from {endpoint} broke off: {reason}; pull again, blobs already fetched are kept")]
    Transfer { endpoint: String, what: String, reason: String },
    #[error("{what} {digest} is invalid ({reason}); the image in the registry is broken, push it again")]
    Invalid { what: String, digest: String, reason: String },
    #[error("{digest} has media type {media_type:?}, which berth cannot pull; only OCI and Docker v2 schema 2 images are supported")]
    UnsupportedMediaType { digest: String, media_type: String },
    #[error("{reference} has no image for {wanted} (it has: {available}); choose one of those with --platform")]
    NoMatchingPlatform { reference: String, wanted: String, available: String },
    #[error("layer {digest}: {source}")]
    Layer { digest: String, source: SnapshotError },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("registry {endpoint} denied access to {repository}: the credentials may not push there; log in as a user who may (`berth login {host}`) or push to a repository of your own")]
    Denied { endpoint: String, repository: String, host: String },
    #[error("registry {endpoint} gave an answer berth cannot use: {reason}; check the registry's log")]
    BadAnswer { endpoint: String, reason: String },
    #[error("registry {endpoint} says it stored the {what} {expected} as {actual}; the registry or something between is corrupting data: the push is not recorded, check the registry")]
    PushDigestMismatch { endpoint: String, what: String, expected: String, actual: String },
    #[error("the pull was not recorded: {0}")]
    Record(String),
}

impl RegistryError {
    pub fn kind(&self) -> RegistryErrorKind {
        use RegistryErrorKind::*;
        match self {
            RegistryError::Reference(_) | RegistryError::Platform(_) => BadRequest,
            RegistryError::NotFound { .. } => NotFound,
            RegistryError::CredentialsNeeded { .. } | RegistryError::CredentialsRefused { .. } => Unauthenticated,
            RegistryError::Denied { .. } => PermissionDenied,
            RegistryError::Unreachable { .. } | RegistryError::Transfer { .. } | RegistryError::Token { .. } => {
                Unreachable
            }
            RegistryError::UnknownChallenge { .. }
            | RegistryError::Status { .. }
            | RegistryError::DigestMismatch { .. }
            | RegistryError::SizeMismatch { .. }
            | RegistryError::TooLarge { .. }
            | RegistryError::Invalid { .. }
            | RegistryError::UnsupportedMediaType { .. }
            | RegistryError::BadAnswer { .. }
            | RegistryError::PushDigestMismatch { .. }
            | RegistryError::NoMatchingPlatform { .. } => BadRegistry,
            RegistryError::Layer { .. } => BadRegistry,
            RegistryError::Hosts(_)
            | RegistryError::CaFile { .. }
            | RegistryError::Client { .. }
            | RegistryError::Content(_)
            | RegistryError::Record(_) => Host,
        }
    }
}
