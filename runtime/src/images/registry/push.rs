//! A registry push, the way `Images/Push` runs it: for each blob of the image (config and
//! layers, a few at once) `HEAD` first so what the registry has is not sent again, then a
//! cross-repository mount from a repository of the same registry the image is known to be in,
//! else an upload (one `PUT` for a small blob, `PATCH` chunks then a `PUT` for a large one),
//! streamed from the content store; the manifest last, byte for byte with its own media type, so
//! the registry serves the digest berth has. Whatever the registry answers is checked: a blob or
//! manifest it says landed under another digest fails the push. Nothing here records anything:
//! the caller records the push once this returns.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use berth_projections::{Descriptor, ImageRecord};
use futures_util::StreamExt;
use reqwest::header::{HeaderName, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, Semaphore};

use crate::images::content::ContentStore;
use crate::images::registry::auth::{Credentials, TokenCache};
use crate::images::registry::client::RegistryClient;
use crate::images::registry::error::RegistryError;
use crate::images::registry::hosts::registry_endpoints;
use crate::images::registry::reference::Reference;

/// Blobs sent at once.
const CONCURRENT_BLOB_UPLOADS: usize = 3;
/// Blobs up to this size go up in one PUT; larger ones in PATCH chunks of [`UPLOAD_CHUNK_BYTES`].
pub const MONOLITHIC_UPLOAD_MAX_BYTES: u64 = 32 << 20;
pub const UPLOAD_CHUNK_BYTES: u64 = 16 << 20;
/// A progress message at most this often per blob, in bytes.
const PROGRESS_STEP_BYTES: u64 = 512 * 1024;
/// How much of the file is read per body chunk.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// What to push.
pub struct PushSpec {
    pub reference: Reference,
    pub plain_http: bool,
    pub credentials: Option<Credentials>,
    pub image: ImageRecord,
    /// Repositories of the same registry that hold this image already (mount sources).
    pub mount_sources: Vec<String>,
}

pub struct PushEnvironment {
    pub content: Arc<ContentStore>,
    pub hosts_config_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushBlobState {
    AlreadyThere,
    Uploading,
    Uploaded,
    Mounted,
}

#[derive(Clone, Debug)]
pub struct PushProgress {
    pub digest: String,
    pub media_type: String,
    pub total_bytes: u64,
    pub done_bytes: u64,
    pub state: PushBlobState,
}

#[derive(Debug)]
pub struct PushedImage {
    pub pushed_to: String,
    pub manifest_digest: String,
    pub uploaded_blobs: u32,
    pub uploaded_bytes: u64,
    pub existing_blobs: u32,
    pub mounted_blobs: u32,
}

/// How one blob reached the registry.
enum BlobOutcome {
    AlreadyThere,
    Mounted,
    Uploaded(u64),
}

pub async fn push_image(
    environment: &PushEnvironment,
    spec: PushSpec,
    progress: mpsc::Sender<PushProgress>,
) -> Result<PushedImage, RegistryError> {
    let reference = &spec.reference;
    let endpoints = registry_endpoints(&environment.hosts_config_dir, &reference.domain, spec.plain_http)?;
    let endpoint =
        endpoints.into_iter().find(|endpoint| endpoint.capabilities.push).ok_or_else(|| RegistryError::NotFound {
            what: format!("an endpoint to push {reference} to"),
            tried: "no endpoint (hosts.toml gives none the push capability)".into(),
        })?;
    let client = Arc::new(
        RegistryClient::new(
            endpoint,
            &reference.domain,
            &reference.repository,
            spec.credentials.clone(),
            Arc::new(TokenCache::default()),
        )?
        .for_push(),
    );
    let manifest = &spec.image.manifest;
    // Everything is read from the content store: refuse before sending anything if a blob is gone.
    let mut blobs: Vec<Descriptor> = vec![spec.image.config.clone()];
    blobs.extend(spec.image.layers.iter().map(|layer| layer.blob.clone()));
    for blob in blobs.iter().chain([manifest]) {
        let info = environment.content.info(&blob.digest)?;
        if info.size != blob.size {
            return Err(RegistryError::Invalid {
                what: "local blob".into(),
                digest: blob.digest.clone(),
                reason: format!("it holds {} bytes, its descriptor says {}", info.size, blob.size),
            });
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    blobs.retain(|blob| seen.insert(blob.digest.clone()));

    let slots = Arc::new(Semaphore::new(CONCURRENT_BLOB_UPLOADS));
    let mount_sources = Arc::new(spec.mount_sources.clone());
    let mut uploads = tokio::task::JoinSet::new();
    for blob in blobs {
        let (client, content, slots, progress, mount_sources) = (
            Arc::clone(&client),
            Arc::clone(&environment.content),
            Arc::clone(&slots),
            progress.clone(),
            Arc::clone(&mount_sources),
        );
        uploads.spawn(async move {
            let _slot = slots.acquire().await.map_err(|error| RegistryError::Record(error.to_string()))?;
            push_blob(&client, &content, &blob, &mount_sources, &progress).await
        });
    }
    let mut pushed = PushedImage {
        pushed_to: client.endpoint.base_url.clone(),
        manifest_digest: manifest.digest.clone(),
        uploaded_blobs: 0,
        uploaded_bytes: 0,
        existing_blobs: 0,
        mounted_blobs: 0,
    };
    // Dropping the set on an error aborts the other uploads.
    while let Some(joined) = uploads.join_next().await {
        match joined.map_err(|error| RegistryError::Record(error.to_string()))?? {
            BlobOutcome::AlreadyThere => pushed.existing_blobs += 1,
            BlobOutcome::Mounted => pushed.mounted_blobs += 1,
            BlobOutcome::Uploaded(n_bytes) => {
                pushed.uploaded_blobs += 1;
                pushed.uploaded_bytes += n_bytes;
            }
        }
    }
    put_manifest(&client, &environment.content, manifest, reference.manifest_reference()).await?;
    Ok(pushed)
}

async fn report(progress: &mpsc::Sender<PushProgress>, blob: &Descriptor, done_bytes: u64, state: PushBlobState) {
    let update = PushProgress {
        digest: blob.digest.clone(),
        media_type: blob.media_type.clone(),
        total_bytes: blob.size as u64,
        done_bytes,
        state,
    };
    // Progress is best effort: a caller that went away ends the push through its own channel.
    let _ = progress.send(update).await;
}

fn status_error(client: &RegistryClient, url: &str, response: &Response) -> RegistryError {
    let endpoint = client.endpoint.base_url.clone();
    match response.status() {
        StatusCode::FORBIDDEN => RegistryError::Denied {
            endpoint,
            repository: client.repository().to_string(),
            host: client.registry_host().to_string(),
        },
        status => RegistryError::Status { endpoint, url: url.to_string(), status: status.as_u16() },
    }
}

async fn push_blob(
    client: &RegistryClient,
    content: &ContentStore,
    blob: &Descriptor,
    mount_sources: &[String],
    progress: &mpsc::Sender<PushProgress>,
) -> Result<BlobOutcome, RegistryError> {
    let size = blob.size as u64;
    let blob_url = client.url(&format!("blobs/{}", blob.digest));
    let head = client.send(Method::HEAD, &blob_url, &[]).await?;
    match head.status() {
        status if status.is_success() => {
            report(progress, blob, size, PushBlobState::AlreadyThere).await;
            return Ok(BlobOutcome::AlreadyThere);
        }
        StatusCode::NOT_FOUND => {}
        _ => return Err(status_error(client, &blob_url, &head)),
    }
    let uploads_url = client.url("blobs/uploads/");
    let mut upload_location = None;
    // One mount attempt, from where the image was recorded last: a 202 opens an upload, which is
    // used rather than left behind to try another source.
    if let Some(source) = mount_sources.last() {
        let mount_url = format!("{uploads_url}?mount={}&from={source}", blob.digest);
        let response = client.send(Method::POST, &mount_url, &[]).await?;
        match response.status() {
            StatusCode::CREATED => {
                check_answered_digest(client, &response, "blob", &blob.digest)?;
                report(progress, blob, size, PushBlobState::Mounted).await;
                return Ok(BlobOutcome::Mounted);
            }
            // Not mountable from there (the registry does not allow it, or the source lacks
            // the blob): the registry opened an upload instead.
            StatusCode::ACCEPTED => upload_location = Some(location_of(client, &response, &mount_url)?),
            _ => return Err(status_error(client, &mount_url, &response)),
        }
    }
    let mut location = match upload_location {
        Some(location) => location,
        None => {
            let response = client.send(Method::POST, &uploads_url, &[]).await?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(status_error(client, &uploads_url, &response));
            }
            location_of(client, &response, &uploads_url)?
        }
    };
    report(progress, blob, 0, PushBlobState::Uploading).await;
    let path = content.checked_blob_path(&blob.digest)?;
    let sent = Arc::new(AtomicU64::new(0));
    let body_source = BodySource { path, blob: blob.clone(), sent: Arc::clone(&sent), progress: progress.clone() };
    let octet_stream = (CONTENT_TYPE, "application/octet-stream".to_string());
    let final_body_range = if size <= MONOLITHIC_UPLOAD_MAX_BYTES {
        Some((0, size))
    } else {
        let mut offset = 0;
        while offset < size {
            let length = UPLOAD_CHUNK_BYTES.min(size - offset);
            let headers = [
                octet_stream.clone(),
                (CONTENT_LENGTH, length.to_string()),
                (CONTENT_RANGE, format!("{offset}-{}", offset + length - 1)),
            ];
            let make_body = || body_source.body(offset, length);
            let response = client.send_with(Method::PATCH, &location, &[], &headers, Some(&make_body)).await?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(status_error(client, &location, &response));
            }
            location = location_of(client, &response, &location)?;
            offset += length;
        }
        None
    };
    let mut put_url = reqwest::Url::parse(&location).map_err(|error| bad_location(client, &location, error))?;
    put_url.query_pairs_mut().append_pair("digest", &blob.digest);
    let put_url = put_url.to_string();
    let response = match final_body_range {
        Some((offset, length)) => {
            let headers = [octet_stream, (CONTENT_LENGTH, length.to_string())];
            let make_body = || body_source.body(offset, length);
            client.send_with(Method::PUT, &put_url, &[], &headers, Some(&make_body)).await?
        }
        None => client.send_with(Method::PUT, &put_url, &[], &[(CONTENT_LENGTH, "0".into())], None).await?,
    };
    if response.status() != StatusCode::CREATED {
        return Err(status_error(client, &put_url, &response));
    }
    check_answered_digest(client, &response, "blob", &blob.digest)?;
    report(progress, blob, size, PushBlobState::Uploaded).await;
    Ok(BlobOutcome::Uploaded(size))
}

/// Reads a stretch of a blob's file as a request body, counting what goes out for progress.
struct BodySource {
    path: PathBuf,
    blob: Descriptor,
    sent: Arc<AtomicU64>,
    progress: mpsc::Sender<PushProgress>,
}

impl BodySource {
    fn body(&self, offset: u64, length: u64) -> reqwest::Body {
        // A retry (after a 401) sends the stretch again: count from its start.
        self.sent.store(offset, Ordering::Relaxed);
        let (path, blob, sent, progress) =
            (self.path.clone(), self.blob.clone(), Arc::clone(&self.sent), self.progress.clone());
        let state = (None::<tokio::fs::File>, length, offset + PROGRESS_STEP_BYTES);
        let chunks = futures_util::stream::unfold(state, move |(file, left, mut next_report)| {
            let (path, blob, sent, progress) = (path.clone(), blob.clone(), Arc::clone(&sent), progress.clone());
            async move {
                if left == 0 {
                    return None;
                }
                let mut file = match file {
                    Some(file) => file,
                    None => match open_at(&path, offset).await {
                        Ok(file) => file,
                        Err(error) => return Some((Err(error), (None, 0, next_report))),
                    },
                };
                let mut buffer = vec![0; READ_BUFFER_BYTES.min(left as usize)];
                match file.read(&mut buffer).await {
                    Ok(0) => Some((Err(std::io::Error::other("the blob file ended early")), (None, 0, next_report))),
                    Ok(n_read) => {
                        buffer.truncate(n_read);
                        let done = sent.fetch_add(n_read as u64, Ordering::Relaxed) + n_read as u64;
                        if done >= next_report {
                            next_report = done + PROGRESS_STEP_BYTES;
                            // Dropped when the caller is behind: the next one says more.
                            let _ = progress.try_send(PushProgress {
                                digest: blob.digest.clone(),
                                media_type: blob.media_type.clone(),
                                total_bytes: blob.size as u64,
                                done_bytes: done,
                                state: PushBlobState::Uploading,
                            });
                        }
                        Some((Ok(buffer), (Some(file), left - n_read as u64, next_report)))
                    }
                    Err(error) => Some((Err(error), (None, 0, next_report))),
                }
            }
        });
        reqwest::Body::wrap_stream(chunks.boxed())
    }
}

async fn open_at(path: &std::path::Path, offset: u64) -> std::io::Result<tokio::fs::File> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    Ok(file)
}

fn bad_location(client: &RegistryClient, location: &str, reason: impl std::fmt::Display) -> RegistryError {
    RegistryError::BadAnswer {
        endpoint: client.endpoint.base_url.clone(),
        reason: format!("its upload location {} is not a URL: {reason}", berth_commands::validate::shown(location)),
    }
}

/// The upload URL a 202 names, resolved against the URL the request went to.
fn location_of(client: &RegistryClient, response: &Response, request_url: &str) -> Result<String, RegistryError> {
    let location = response.headers().get(LOCATION).and_then(|value| value.to_str().ok()).ok_or_else(|| {
        RegistryError::BadAnswer {
            endpoint: client.endpoint.base_url.clone(),
            reason: format!("it answered HTTP {} without a Location header for the upload", response.status().as_u16()),
        }
    })?;
    let base = reqwest::Url::parse(request_url).map_err(|error| bad_location(client, request_url, error))?;
    let resolved = base.join(location).map_err(|error| bad_location(client, location, error))?;
    if resolved.origin() != base.origin() {
        // An upload elsewhere would need its own credentials and trust: berth does not follow it.
        return Err(bad_location(client, location, "it points at another host"));
    }
    Ok(resolved.to_string())
}

/// A registry that says it stored something under another digest (header or location) lies or
/// is broken: refuse, so berth never records a push the registry does not serve.
fn check_answered_digest(
    client: &RegistryClient,
    response: &Response,
    what: &str,
    expected: &str,
) -> Result<(), RegistryError> {
    let header = |name: HeaderName| response.headers().get(name).and_then(|value| value.to_str().ok());
    let mut answered = Vec::new();
    if let Some(digest) = header(HeaderName::from_static("docker-content-digest")) {
        answered.push(digest.to_string());
    }
    if let Some(location) = header(LOCATION) {
        let last = location.split('?').next().unwrap_or("").rsplit('/').next().unwrap_or("");
        if last.starts_with("sha256:") {
            answered.push(last.to_string());
        }
    }
    match answered.into_iter().find(|digest| digest != expected) {
        Some(actual) => Err(RegistryError::PushDigestMismatch {
            endpoint: client.endpoint.base_url.clone(),
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        }),
        None => Ok(()),
    }
}

async fn put_manifest(
    client: &RegistryClient,
    content: &ContentStore,
    manifest: &Descriptor,
    tag_or_digest: &str,
) -> Result<(), RegistryError> {
    let bytes = content.read_all(&manifest.digest)?;
    let url = client.url(&format!("manifests/{tag_or_digest}"));
    let headers = [(CONTENT_TYPE, manifest.media_type.clone()), (CONTENT_LENGTH, bytes.len().to_string())];
    let make_body = || reqwest::Body::from(bytes.clone());
    let response = client.send_with(Method::PUT, &url, &[], &headers, Some(&make_body)).await?;
    if response.status() != StatusCode::CREATED {
        return Err(status_error(client, &url, &response));
    }
    check_answered_digest(client, &response, "manifest", &manifest.digest)
}
