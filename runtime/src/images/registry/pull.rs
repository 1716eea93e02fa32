//! A registry pull, the way `Images/Pull` runs it: resolve the reference to a manifest (through
//! an index or manifest list for the wanted platform), fetch the config, then the layers
//! concurrently — each streamed into the content store's ingest directory with its digest and
//! size checked as it arrives and, when large, unpacked beside its download ([`super::stage`]) —
//! and commit them as snapshots in chain order while the later ones still download.
//!
//! Every blob is reported for recording ([`PullEvent::Record`]) as soon as it is verified and
//! before the pull goes on, so a pull cut off (client gone, network error, berthd killed)
//! fetches only what is missing the next time; a killed berthd's half-written ingest files and
//! unrecorded snapshots are removed at its next start (`tasks::reconcile`).

use std::sync::Arc;

use berth_projections::{Descriptor, ImageRecord, LayerRecord};
use futures_util::StreamExt;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::images::archive::{MAX_IMAGE_CONFIG_BYTES, MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_DOCKER_MANIFEST};
use crate::images::content::{ContentError, ContentStore};
use crate::images::digest::{chain_ids, digest_hex};
use crate::images::platform::{describe_platforms, PlatformSpec};
use crate::images::registry::auth::Credentials;
use crate::images::registry::error::RegistryError;
use crate::images::registry::fetch::{FetchedManifest, Fetcher};
use crate::images::registry::hosts::registry_endpoints;
use crate::images::registry::reference::Reference;
use crate::images::registry::stage::{self, StagingJob, STAGE_MIN_LAYER_BYTES};
use crate::images::snapshot::{Snapshotter, StagedLayer};

/// Layers downloaded at once (containerd's default is 3).
const CONCURRENT_LAYER_DOWNLOADS: usize = 3;
/// A progress message at most this often per layer, in bytes.
const PROGRESS_STEP_BYTES: u64 = 512 * 1024;

const LAYER_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// What to pull.
pub struct PullSpec {
    pub reference: Reference,
    pub platform: PlatformSpec,
    pub plain_http: bool,
    pub credentials: Option<Credentials>,
}

/// Where the pull puts things.
pub struct PullEnvironment {
    pub content: Arc<ContentStore>,
    pub snapshotter: Arc<Snapshotter>,
    pub hosts_config_dir: std::path::PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobState {
    Waiting,
    Downloading,
    Downloaded,
    AlreadyPresent,
    Unpacked,
}

#[derive(Clone, Debug)]
pub struct BlobProgress {
    pub digest: String,
    pub media_type: String,
    pub total_bytes: u64,
    pub done_bytes: u64,
    pub state: BlobState,
}

/// What the pull tells its caller while it runs.
pub enum PullEvent {
    Progress(BlobProgress),
    /// These blobs are verified in the store: record them, then answer; the pull waits.
    Record {
        blobs: Vec<Descriptor>,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// A finished pull: what to record.
pub struct PulledImage {
    pub image: ImageRecord,
    /// Every blob the image keeps: index (if any), manifest, config, layers.
    pub blobs: Vec<Descriptor>,
    pub served_by: String,
    pub manifest_digest: String,
    /// The platform chosen from an index; empty for a single manifest.
    pub platform: String,
    pub fetched_bytes: u64,
    pub fetched_blobs: u32,
}

/// Aborts the layer downloads still running when the pull ends early (its caller went away,
/// or another layer failed); their ingest files go with them.
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

pub async fn pull_image(
    environment: &PullEnvironment,
    spec: PullSpec,
    events: mpsc::Sender<PullEvent>,
) -> Result<PulledImage, RegistryError> {
    let reference = &spec.reference;
    let endpoints = registry_endpoints(&environment.hosts_config_dir, &reference.domain, spec.plain_http)?;
    let fetcher = Arc::new(Fetcher::new(endpoints, &reference.domain, &reference.repository, spec.credentials)?);
    let mut kept_blobs = Vec::new();

    let resolved = fetcher.manifest(&format!("manifest {reference}"), reference.manifest_reference(), None).await?;
    let served_by = resolved.served_by.clone();
    let mut platform = String::new();
    let manifest = if is_index(&resolved) {
        let index: ImageIndex = serde_json::from_slice(&resolved.bytes).map_err(|error| RegistryError::Invalid {
            what: "image index".into(),
            digest: resolved.digest.clone(),
            reason: error.to_string(),
        })?;
        let chosen = spec.platform.choose(index.manifests()).ok_or_else(|| RegistryError::NoMatchingPlatform {
            reference: reference.to_string(),
            wanted: spec.platform.to_string(),
            available: describe_platforms(index.manifests()),
        })?;
        platform = match chosen.platform() {
            Some(found) => PlatformSpec {
                os: found.os().to_string(),
                architecture: found.architecture().to_string(),
                variant: found.variant().clone(),
            }
            .to_string(),
            None => spec.platform.to_string(),
        };
        kept_blobs.push(store_manifest(&environment.content, &resolved, &resolved_media_type(&resolved))?);
        let digest = chosen.digest().to_string();
        fetcher.manifest(&format!("manifest {digest} for {platform}"), &digest, Some(chosen.size())).await?
    } else {
        resolved
    };

    let manifest_media_type = resolved_media_type(&manifest);
    let invalid_manifest =
        |reason: String| RegistryError::Invalid { what: "manifest".into(), digest: manifest.digest.clone(), reason };
    if manifest_media_type != MediaType::ImageManifest.as_ref() && manifest_media_type != MEDIA_TYPE_DOCKER_MANIFEST {
        return Err(RegistryError::UnsupportedMediaType {
            digest: manifest.digest.clone(),
            media_type: manifest_media_type,
        });
    }
    let parsed: ImageManifest =
        serde_json::from_slice(&manifest.bytes).map_err(|error| invalid_manifest(error.to_string()))?;
    if parsed.schema_version() != 2 {
        return Err(invalid_manifest(format!("schemaVersion is {}, expected 2", parsed.schema_version())));
    }
    let config_descriptor = parsed.config();
    let config_media_type = config_descriptor.media_type().to_string();
    if config_media_type != MediaType::ImageConfig.as_ref() && config_media_type != MEDIA_TYPE_DOCKER_CONFIG {
        return Err(RegistryError::UnsupportedMediaType {
            digest: config_descriptor.digest().to_string(),
            media_type: config_media_type,
        });
    }
    for layer in parsed.layers() {
        if !LAYER_MEDIA_TYPES.contains(&layer.media_type().as_ref()) {
            return Err(RegistryError::UnsupportedMediaType {
                digest: layer.digest().to_string(),
                media_type: layer.media_type().to_string(),
            });
        }
        digest_hex(layer.digest().as_ref()).map_err(|_| invalid_manifest("a layer digest is not sha256".into()))?;
    }
    let manifest_blob = store_manifest(&environment.content, &manifest, &manifest_media_type)?;
    kept_blobs.push(manifest_blob.clone());

    // The config: capped, verified, parsed before any layer is fetched.
    let config_digest = config_descriptor.digest().to_string();
    digest_hex(&config_digest).map_err(|_| invalid_manifest("the config digest is not sha256".into()))?;
    if config_descriptor.size() > MAX_IMAGE_CONFIG_BYTES {
        return Err(RegistryError::TooLarge {
            endpoint: served_by.clone(),
            what: format!("image config {config_digest}"),
            limit: MAX_IMAGE_CONFIG_BYTES,
        });
    }
    let config_blob = Descriptor {
        digest: config_digest.clone(),
        media_type: config_media_type,
        size: config_descriptor.size() as i64,
    };
    let mut fetched_bytes = 0;
    let mut fetched_blobs = 0;
    if !environment.content.contains(&config_digest) {
        fetched_bytes +=
            download_blob(&fetcher, &environment.content, &config_blob, "image config", None, None).await?.0;
        fetched_blobs += 1;
    }
    kept_blobs.push(config_blob.clone());
    let config_bytes = environment.content.read_all(&config_digest)?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes).map_err(|error| RegistryError::Invalid {
        what: "image config".into(),
        digest: config_digest.clone(),
        reason: error.to_string(),
    })?;
    let invalid_config =
        |reason: String| RegistryError::Invalid { what: "image config".into(), digest: config_digest.clone(), reason };
    if !config.os().to_string().is_empty() && *config.os() != Os::Linux {
        return Err(invalid_config(format!("it is an image for {}, berth runs linux images only", config.os())));
    }
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != parsed.layers().len() {
        return Err(invalid_config(format!(
            "it lists {} diff_ids but the manifest has {} layers",
            diff_ids.len(),
            parsed.layers().len()
        )));
    }
    for diff_id in diff_ids {
        digest_hex(diff_id).map_err(|_| invalid_config(format!("diff_id {diff_id:?} is not a sha256 digest")))?;
    }
    record(&events, kept_blobs.clone()).await?;

    // The layers: downloads run on their own tasks; this one unpacks them in chain order.
    let layer_blobs: Vec<Descriptor> = parsed
        .layers()
        .iter()
        .map(|layer| Descriptor {
            digest: layer.digest().to_string(),
            media_type: layer.media_type().to_string(),
            size: layer.size() as i64,
        })
        .collect();
    let download_slots = Arc::new(Semaphore::new(CONCURRENT_LAYER_DOWNLOADS));
    let mut downloads = Vec::new();
    let mut abort_guard = AbortOnDrop(Vec::new());
    for layer in &layer_blobs {
        let (fetcher, content, snapshotter, events, slots, layer) = (
            Arc::clone(&fetcher),
            Arc::clone(&environment.content),
            Arc::clone(&environment.snapshotter),
            events.clone(),
            Arc::clone(&download_slots),
            layer.clone(),
        );
        let handle =
            tokio::spawn(async move { fetch_layer(&fetcher, &content, &snapshotter, &events, &slots, &layer).await });
        abort_guard.0.push(handle.abort_handle());
        downloads.push(handle);
    }
    let layer_chain_ids = chain_ids(diff_ids);
    let mut layers = Vec::with_capacity(layer_blobs.len());
    // Downloads whose result was taken: a JoinHandle must not be awaited twice.
    let mut awaited = 0;
    let unpacked: Result<(), RegistryError> = async {
        for (((layer, diff_id), chain_id), download) in
            layer_blobs.iter().zip(diff_ids).zip(layer_chain_ids).zip(downloads.iter_mut())
        {
            let joined = download.await;
            awaited += 1;
            let (n_fetched, staged) = joined.map_err(|error| RegistryError::Record(error.to_string()))??;
            if n_fetched > 0 {
                fetched_bytes += n_fetched;
                fetched_blobs += 1;
            }
            let (snapshotter, blob_path) =
                (Arc::clone(&environment.snapshotter), environment.content.blob_path(&layer.digest));
            let (unpack_chain_id, media_type, unpack_diff_id) =
                (chain_id.clone(), layer.media_type.clone(), diff_id.clone());
            tokio::task::spawn_blocking(move || match staged {
                Some(staged) => snapshotter.commit_staged(&unpack_chain_id, staged, &unpack_diff_id),
                None => snapshotter.commit_layer(&unpack_chain_id, &blob_path, &media_type, &unpack_diff_id),
            })
            .await
            .map_err(|error| RegistryError::Record(error.to_string()))?
            .map_err(|source| RegistryError::Layer { digest: layer.digest.clone(), source })?;
            progress(&events, layer, layer.size as u64, BlobState::Unpacked).await;
            layers.push(LayerRecord { blob: layer.clone(), diff_id: diff_id.clone(), chain_id });
        }
        Ok(())
    }
    .await;
    if let Err(error) = unpacked {
        // Stop the other downloads and wait until each is gone, so their ingest files are
        // removed before the client hears of the failure.
        for download in &downloads {
            download.abort();
        }
        for download in downloads.into_iter().skip(awaited) {
            if let Ok(Ok((_, Some(staged)))) = download.await {
                stage::discard(staged);
            }
        }
        return Err(error);
    }
    drop(abort_guard);
    kept_blobs.extend(layer_blobs);

    let process = config.config().clone().unwrap_or_default();
    let image = ImageRecord {
        name: reference.image_name(),
        manifest: manifest_blob,
        config: config_blob,
        layers,
        entrypoint: process.entrypoint().clone().unwrap_or_default(),
        cmd: process.cmd().clone().unwrap_or_default(),
        env: process.env().clone().unwrap_or_default(),
        working_dir: process.working_dir().clone().unwrap_or_default(),
        user: process.user().clone().unwrap_or_default(),
    };
    Ok(PulledImage {
        image,
        blobs: kept_blobs,
        served_by,
        manifest_digest: manifest.digest.clone(),
        platform,
        fetched_bytes,
        fetched_blobs,
    })
}

/// The manifest's media type: its own `mediaType`, else what the endpoint said it was.
fn resolved_media_type(fetched: &FetchedManifest) -> String {
    #[derive(serde::Deserialize)]
    struct MediaTypeOnly {
        #[serde(rename = "mediaType", default)]
        media_type: String,
    }
    let declared =
        serde_json::from_slice::<MediaTypeOnly>(&fetched.bytes).map(|only| only.media_type).unwrap_or_default();
    if !declared.is_empty() {
        return declared;
    }
    if !fetched.media_type.is_empty() && fetched.media_type != "application/json" {
        return fetched.media_type.clone();
    }
    // An OCI document without mediaType: an index has "manifests", a manifest "config".
    let looks_like_index = serde_json::from_slice::<serde_json::Value>(&fetched.bytes)
        .map(|value| value.get("manifests").is_some())
        .unwrap_or(false);
    if looks_like_index { MediaType::ImageIndex } else { MediaType::ImageManifest }.to_string()
}

fn is_index(fetched: &FetchedManifest) -> bool {
    let media_type = resolved_media_type(fetched);
    media_type == MediaType::ImageIndex.as_ref()
        || media_type == crate::images::archive::MEDIA_TYPE_DOCKER_MANIFEST_LIST
}

fn store_manifest(
    content: &ContentStore,
    fetched: &FetchedManifest,
    media_type: &str,
) -> Result<Descriptor, RegistryError> {
    content.ingest(Some(&fetched.digest), fetched.bytes.as_slice())?;
    Ok(Descriptor {
        digest: fetched.digest.clone(),
        media_type: media_type.to_string(),
        size: fetched.bytes.len() as i64,
    })
}

async fn record(events: &mpsc::Sender<PullEvent>, blobs: Vec<Descriptor>) -> Result<(), RegistryError> {
    let (reply, answer) = oneshot::channel();
    events
        .send(PullEvent::Record { blobs, reply })
        .await
        .map_err(|_| RegistryError::Record("the pull was cancelled".into()))?;
    answer.await.map_err(|_| RegistryError::Record("the pull was cancelled".into()))?.map_err(RegistryError::Record)
}

async fn progress(events: &mpsc::Sender<PullEvent>, blob: &Descriptor, done_bytes: u64, state: BlobState) {
    let update = BlobProgress {
        digest: blob.digest.clone(),
        media_type: blob.media_type.clone(),
        total_bytes: blob.size as u64,
        done_bytes,
        state,
    };
    // A caller that went away ends the pull through its own channel; progress is best effort.
    let _ = events.send(PullEvent::Progress(update)).await;
}

/// One layer: already present (nothing fetched), or downloaded, verified and recorded.
/// Returns the bytes fetched.
async fn fetch_layer(
    fetcher: &Fetcher,
    content: &Arc<ContentStore>,
    snapshotter: &Arc<Snapshotter>,
    events: &mpsc::Sender<PullEvent>,
    slots: &Semaphore,
    layer: &Descriptor,
) -> Result<(u64, Option<StagedLayer>), RegistryError> {
    if content.info(&layer.digest).is_ok_and(|info| info.size == layer.size) {
        progress(events, layer, layer.size as u64, BlobState::AlreadyPresent).await;
        record(events, vec![layer.clone()]).await?;
        return Ok((0, None));
    }
    progress(events, layer, 0, BlobState::Waiting).await;
    let _slot = slots.acquire().await.map_err(|error| RegistryError::Record(error.to_string()))?;
    let stage = (layer.size as u64 >= STAGE_MIN_LAYER_BYTES).then_some(snapshotter);
    let (n_bytes, staged) = download_blob(fetcher, content, layer, "layer", Some(events), stage).await?;
    progress(events, layer, n_bytes, BlobState::Downloaded).await;
    if let Err(error) = record(events, vec![layer.clone()]).await {
        if let Some(unused) = staged {
            stage::discard(unused);
        }
        return Err(error);
    }
    Ok((n_bytes, staged))
}

/// Streams a blob into the content store: never more bytes than its descriptor says, and
/// committed only if the digest and size both match. Returns the bytes fetched.
async fn download_blob(
    fetcher: &Fetcher,
    content: &Arc<ContentStore>,
    blob: &Descriptor,
    what: &str,
    events: Option<&mpsc::Sender<PullEvent>>,
    stage: Option<&Arc<Snapshotter>>,
) -> Result<(u64, Option<StagedLayer>), RegistryError> {
    let what = format!("{what} {}", blob.digest);
    let (response, endpoint) = fetcher.open_blob(&what, &blob.digest).await?;
    let expected_size = blob.size as u64;
    let mut writer = content.begin_ingest("pull")?;
    let mut staging = stage.map(StagingJob::start);
    let mut chunks = response.bytes_stream();
    let mut next_report = PROGRESS_STEP_BYTES;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| RegistryError::Transfer {
            endpoint: endpoint.clone(),
            what: what.clone(),
            reason: error.to_string(),
        })?;
        if writer.written_bytes() + chunk.len() as u64 > expected_size {
            return Err(RegistryError::SizeMismatch {
                endpoint,
                what,
                digest: blob.digest.clone(),
                expected: expected_size,
                actual: writer.written_bytes() + chunk.len() as u64,
            });
        }
        writer.write(&chunk)?;
        if let Some(staging) = &mut staging {
            staging.feed(&chunk).await;
        }
        if let Some(events) = events.filter(|_| writer.written_bytes() >= next_report) {
            next_report = writer.written_bytes() + PROGRESS_STEP_BYTES;
            let update = BlobProgress {
                digest: blob.digest.clone(),
                media_type: blob.media_type.clone(),
                total_bytes: expected_size,
                done_bytes: writer.written_bytes(),
                state: BlobState::Downloading,
            };
            // Dropped when the caller is behind: the next one says more.
            let _ = events.try_send(PullEvent::Progress(update));
        }
    }
    let n_bytes = writer.written_bytes();
    if n_bytes != expected_size {
        return Err(RegistryError::SizeMismatch {
            endpoint,
            what,
            digest: blob.digest.clone(),
            expected: expected_size,
            actual: n_bytes,
        });
    }
    let (store, expected_digest) = (Arc::clone(content), blob.digest.clone());
    let committed = tokio::task::spawn_blocking(move || writer.commit(&store, &expected_digest))
        .await
        .map_err(|error| RegistryError::Record(error.to_string()))?;
    let staged = match staging {
        Some(staging) => staging.finish().await,
        None => None,
    };
    let staged = match committed {
        Ok(_) => staged,
        // Unpacked from bytes that failed their digest: none of it stays.
        Err(_) => staged.and_then(|unused| {
            stage::discard(unused);
            None
        }),
    };
    match committed {
        Ok(_) => Ok((n_bytes, staged)),
        Err(ContentError::DigestMismatch { expected, actual }) => {
            Err(RegistryError::DigestMismatch { endpoint, what, expected, actual })
        }
        Err(other) => Err(other.into()),
    }
}
