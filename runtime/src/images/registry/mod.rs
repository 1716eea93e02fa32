//! Pulling images from OCI distribution registries, one file per concern: [`reference`]
//! (parsing and normalising `busybox` → `docker.io/library/busybox:latest`), [`hosts`] (the
//! containerd-style hosts.toml: mirrors, CA files, plain HTTP), [`auth`] (credentials, challenges,
//! bearer tokens), [`client`] (HTTP for one endpoint, authenticating on demand), [`fetch`]
//! (endpoints in order, manifests verified and capped), [`pull`] (the whole pull, streaming
//! into the content store and committing in chain order), [`stage`] (unpacking a layer beside
//! its download), [`push`] (HEAD, mount or upload each
//! blob, then the manifest byte for byte), [`error`].

pub mod auth;
pub mod client;
pub mod error;
pub mod fetch;
pub mod hosts;
pub mod pull;
pub mod push;
pub mod reference;
pub mod stage;

pub use error::{RegistryError, RegistryErrorKind};
