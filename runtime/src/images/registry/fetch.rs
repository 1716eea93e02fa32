//! Fetching from a registry's endpoints in order — the mirrors hosts.toml names, then the
//! registry — with what comes back verified: manifests read whole under a cap and hashed,
//! blobs streamed and checked by the caller. A mirror that fails or lacks something is passed
//! over; the registry's own answer is the one reported.

use std::sync::Arc;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Response, StatusCode};

use crate::images::archive::{MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST};
use crate::images::digest::digest_of_bytes;
use crate::images::registry::auth::{Credentials, TokenCache};
use crate::images::registry::client::{read_capped, CappedReadError, RegistryClient};
use crate::images::registry::error::RegistryError;
use crate::images::registry::hosts::Endpoint;

/// The largest manifest or index berth reads (as Docker and containerd cap them).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_ACCEPT: &[&str] =
    &[OCI_MANIFEST, OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST];

/// A manifest or index as fetched and verified.
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub digest: String,
    /// The Content-Type the endpoint sent (may be empty; the document's mediaType then decides).
    pub media_type: String,
    pub served_by: String,
}

/// What one pull talks to: a client per endpoint, sharing one token cache.
pub struct Fetcher {
    pub clients: Vec<Arc<RegistryClient>>,
}

/// What to do after one endpoint's answer.
enum Attempt<T> {
    Done(T),
    /// Not there, or not reachable: the next endpoint may have it.
    TryNext(RegistryError),
}

impl Fetcher {
    pub fn new(
        endpoints: Vec<Endpoint>,
        registry_host: &str,
        repository: &str,
        credentials: Option<Credentials>,
    ) -> Result<Fetcher, RegistryError> {
        let tokens = Arc::new(TokenCache::default());
        let clients = endpoints
            .into_iter()
            .map(|endpoint| {
                RegistryClient::new(endpoint, registry_host, repository, credentials.clone(), Arc::clone(&tokens))
                    .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Fetcher { clients })
    }

    /// Fetches a manifest or index by tag or digest. By digest, the bytes must hash to it (and
    /// have `expected_size`, when known); by tag, a Docker-Content-Digest header must agree.
    pub async fn manifest(
        &self,
        what: &str,
        reference: &str,
        expected_size: Option<u64>,
    ) -> Result<FetchedManifest, RegistryError> {
        let by_digest = reference.starts_with("sha256:");
        let mut last_error = None;
        for client in &self.clients {
            let capable =
                if by_digest { client.endpoint.capabilities.pull } else { client.endpoint.capabilities.resolve };
            if !capable {
                continue;
            }
            match self.manifest_from(client, what, reference, expected_size).await {
                Ok(Attempt::Done(fetched)) => return Ok(fetched),
                Ok(Attempt::TryNext(error)) => last_error = Some(error),
                Err(error) if client.endpoint.is_mirror => {
                    tracing::warn!(mirror = %client.endpoint.base_url, %error, "mirror failed; trying the next endpoint");
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| RegistryError::NotFound {
            what: what.to_string(),
            tried: "no endpoint (hosts.toml gives none the capability)".into(),
        }))
    }

    async fn manifest_from(
        &self,
        client: &RegistryClient,
        what: &str,
        reference: &str,
        expected_size: Option<u64>,
    ) -> Result<Attempt<FetchedManifest>, RegistryError> {
        let endpoint = client.endpoint.base_url.clone();
        let url = client.url(&format!("manifests/{reference}"));
        let response = match client.send(Method::GET, &url, MANIFEST_ACCEPT).await {
            Ok(response) => response,
            Err(error @ RegistryError::Unreachable { .. }) => return Ok(Attempt::TryNext(error)),
            Err(error) => return Err(error),
        };
        if let Some(next) = not_there(&response, what, &url, &endpoint) {
            return Ok(next);
        }
        let header_digest =
            response.headers().get("docker-content-digest").and_then(|value| value.to_str().ok()).map(str::to_string);
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let bytes = read_capped(response, MAX_MANIFEST_BYTES).await.map_err(|error| match error {
            CappedReadError::TooLarge { limit } => {
                RegistryError::TooLarge { endpoint: endpoint.clone(), what: what.to_string(), limit }
            }
            CappedReadError::Broken(reason) => {
                RegistryError::Transfer { endpoint: endpoint.clone(), what: what.to_string(), reason }
            }
        })?;
        let digest = digest_of_bytes(&bytes);
        let expected_digest =
            if reference.starts_with("sha256:") { Some(reference.to_string()) } else { header_digest };
        if let Some(expected) = expected_digest.filter(|expected| *expected != digest) {
            return Err(RegistryError::DigestMismatch { endpoint, what: what.to_string(), expected, actual: digest });
        }
        if let Some(expected) = expected_size.filter(|expected| *expected != bytes.len() as u64) {
            return Err(RegistryError::SizeMismatch {
                endpoint,
                what: what.to_string(),
                digest,
                expected,
                actual: bytes.len() as u64,
            });
        }
        Ok(Attempt::Done(FetchedManifest { bytes, digest, media_type, served_by: endpoint }))
    }

    /// Opens a blob for streaming from the first endpoint that has it; the caller verifies.
    pub async fn open_blob(&self, what: &str, digest: &str) -> Result<(Response, String), RegistryError> {
        let mut last_error = None;
        for client in self.clients.iter().filter(|client| client.endpoint.capabilities.pull) {
            let url = client.url(&format!("blobs/{digest}"));
            let endpoint = client.endpoint.base_url.clone();
            let outcome: Result<(), RegistryError> = match client.send(Method::GET, &url, &[]).await {
                Ok(response) => match not_there::<std::convert::Infallible>(&response, what, &url, &endpoint) {
                    Some(Attempt::TryNext(error)) => Err(error),
                    Some(Attempt::Done(never)) => match never {},
                    None => return Ok((response, endpoint)),
                },
                Err(error) => Err(error),
            };
            if let Err(error) = outcome {
                let passable = client.endpoint.is_mirror
                    || matches!(error, RegistryError::Unreachable { .. } | RegistryError::NotFound { .. });
                if !passable {
                    return Err(error);
                }
                last_error = Some(error);
            }
        }
        Err(last_error.unwrap_or_else(|| RegistryError::NotFound {
            what: what.to_string(),
            tried: "no endpoint (hosts.toml gives none the pull capability)".into(),
        }))
    }
}

/// None for a success; otherwise the error that lets the next endpoint try (404) or not.
fn not_there<T>(response: &Response, what: &str, url: &str, endpoint: &str) -> Option<Attempt<T>> {
    match response.status() {
        status if status.is_success() => None,
        StatusCode::NOT_FOUND => {
            Some(Attempt::TryNext(RegistryError::NotFound { what: what.to_string(), tried: url.to_string() }))
        }
        status => Some(Attempt::TryNext(RegistryError::Status {
            endpoint: endpoint.to_string(),
            url: url.to_string(),
            status: status.as_u16(),
        })),
    }
}
