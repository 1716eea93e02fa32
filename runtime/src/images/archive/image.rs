//! One image from an archive, checked: its manifest (reached through nested indexes for the
//! wanted platform), its config and its layers, all of which must be in the content store.
//! Both archive formats end here, so an image is held to the same rules whichever it came in.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os};

use crate::images::archive::ImportError;
use crate::images::content::{ContentError, ContentStore};
use crate::images::digest::{chain_ids, digest_hex};
use crate::images::platform::{describe_platforms, PlatformSpec};

/// The largest image config berth reads. Its process settings become part of a log record (at
/// most 16 MiB, see `daemon::store::max_record_bytes`); real configs are a few KiB.
pub const MAX_IMAGE_CONFIG_BYTES: u64 = 16 << 20;
/// Indexes inside indexes followed before giving up; real archives nest one level.
pub const MAX_INDEX_DEPTH: usize = 4;

// The OCI media types are oci-spec's `MediaType` variants; Docker's are not among them.
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Docker layer media types we can unpack (see unpack.rs for the compression each implies).
const SUPPORTED_DOCKER_LAYER_MEDIA_TYPES: &[&str] =
    &["application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"];

/// Layer media types we can unpack: every OCI layer form (plain, gzip, zstd, non-distributable)
/// and Docker's gzip layers.
fn is_supported_layer_media_type(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageLayer
        | MediaType::ImageLayerGzip
        | MediaType::ImageLayerZstd
        | MediaType::ImageLayerNonDistributable
        | MediaType::ImageLayerNonDistributableGzip
        | MediaType::ImageLayerNonDistributableZstd => true,
        MediaType::Other(other) => SUPPORTED_DOCKER_LAYER_MEDIA_TYPES.contains(&other.as_str()),
        _ => false,
    }
}

/// A content descriptor: which blob, how big, what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: String,
    pub size: i64,
    pub media_type: String,
}

/// One layer of an image: its blob, the digest of its uncompressed tar (diff id) and the chain id
/// that names it stacked on the layers beneath it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedLayer {
    pub blob: BlobRef,
    pub diff_id: String,
    pub chain_id: String,
}

/// The parts of the image config a container's process is built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfigSummary {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// One image found in the archive, all of whose blobs are in the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    pub name: String,
    pub manifest: BlobRef,
    pub config: BlobRef,
    /// Bottom layer first.
    pub layers: Vec<ImportedLayer>,
    pub config_summary: ImageConfigSummary,
    /// Every blob this image needs kept: manifest, config, layers, and the platform index it was
    /// picked from, if any.
    pub blobs: Vec<BlobRef>,
}

pub fn is_index_media_type(media_type: &MediaType) -> bool {
    *media_type == MediaType::ImageIndex || media_type.as_ref() == MEDIA_TYPE_DOCKER_MANIFEST_LIST
}

/// A descriptor's size as the content store counts it (i64). A size that passed
/// [`require_blob`] equals a stored blob's and so fits; only a `SizeMismatch` can meet a claim
/// above i64::MAX, and shows it as i64::MAX.
fn stored_size(descriptor: &Descriptor) -> i64 {
    i64::try_from(descriptor.size()).unwrap_or(i64::MAX)
}

pub fn blob_ref(descriptor: &Descriptor) -> BlobRef {
    BlobRef {
        digest: descriptor.digest().to_string(),
        size: stored_size(descriptor),
        media_type: descriptor.media_type().to_string(),
    }
}

/// Checks the blob is in the store with the size its descriptor claims.
pub fn require_blob(store: &ContentStore, descriptor: &Descriptor) -> Result<(), ImportError> {
    // oci-spec checks the digest's form only; the store holds sha256 blobs alone.
    let digest = descriptor.digest().as_ref();
    digest_hex(digest).map_err(ContentError::from)?;
    match store.info(digest) {
        Ok(info) if u64::try_from(info.size) == Ok(descriptor.size()) => Ok(()),
        Ok(info) => Err(ImportError::SizeMismatch {
            digest: digest.to_string(),
            expected: stored_size(descriptor),
            actual: info.size,
        }),
        Err(ContentError::NotFound { .. }) => Err(ImportError::MissingBlob { digest: digest.to_string() }),
        Err(other) => Err(other.into()),
    }
}

/// Follows `descriptor` through (nested) indexes to the manifest for `wanted`; every index passed
/// through is added to `index_blobs`, as the image needs them kept.
fn resolve_manifest(
    store: &ContentStore,
    descriptor: &Descriptor,
    wanted: &PlatformSpec,
    index_blobs: &mut Vec<BlobRef>,
) -> Result<Descriptor, ImportError> {
    let mut current = descriptor.clone();
    for _ in 0..=MAX_INDEX_DEPTH {
        if !is_index_media_type(current.media_type()) {
            return Ok(current);
        }
        require_blob(store, &current)?;
        let index_digest = current.digest().to_string();
        let index_bytes = store.read_all(&index_digest)?;
        let index: ImageIndex = serde_json::from_slice(&index_bytes)
            .map_err(|error| ImportError::InvalidIndex { reason: format!("nested index {index_digest}: {error}") })?;
        // Inside an index every entry must say its platform: one without could be anything.
        let picked = index
            .manifests()
            .iter()
            .find(|candidate| candidate.platform().is_some() && wanted.matches(candidate.platform().as_ref()))
            .ok_or_else(|| ImportError::NoMatchingPlatform {
                index: index_digest.clone(),
                wanted: wanted.to_string(),
                available: describe_platforms(index.manifests()),
            })?;
        index_blobs.push(blob_ref(&current));
        current = picked.clone();
    }
    Err(ImportError::IndexTooDeep { index: descriptor.digest().to_string(), max_depth: MAX_INDEX_DEPTH })
}

/// Checks and describes the image `top_descriptor` names (a manifest, or an index to choose
/// from for `wanted`). With `explicit_platform`, the config's os/architecture must fit it too,
/// so `--platform` refuses a single-platform image built for another machine.
pub fn import_one_image(
    store: &ContentStore,
    top_descriptor: &Descriptor,
    name: String,
    wanted: &PlatformSpec,
    explicit_platform: bool,
) -> Result<ImportedImage, ImportError> {
    let mut extra_blobs = Vec::new();
    let manifest_descriptor = resolve_manifest(store, top_descriptor, wanted, &mut extra_blobs)?;

    require_blob(store, &manifest_descriptor)?;
    let manifest_digest = manifest_descriptor.digest().to_string();
    let invalid_manifest = |reason: String| ImportError::InvalidManifest { digest: manifest_digest.clone(), reason };
    let manifest_bytes = store.read_all(&manifest_digest)?;
    let manifest: ImageManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|error| invalid_manifest(error.to_string()))?;
    if manifest.schema_version() != 2 {
        return Err(invalid_manifest(format!("schemaVersion is {}, expected 2", manifest.schema_version())));
    }
    // The manifest's own mediaType, else its descriptor's; Docker manifests always say which.
    let manifest_media_type = [manifest.media_type().as_ref(), Some(manifest_descriptor.media_type())]
        .into_iter()
        .flatten()
        .map(MediaType::to_string)
        .find(|media_type| !media_type.is_empty())
        .unwrap_or_else(|| MediaType::ImageManifest.to_string());
    if manifest_media_type != MediaType::ImageManifest.as_ref() && manifest_media_type != MEDIA_TYPE_DOCKER_MANIFEST {
        return Err(ImportError::UnsupportedMediaType { digest: manifest_digest, media_type: manifest_media_type });
    }
    let config_descriptor = manifest.config();
    let config_media_type = config_descriptor.media_type();
    if *config_media_type != MediaType::ImageConfig && config_media_type.as_ref() != MEDIA_TYPE_DOCKER_CONFIG {
        return Err(ImportError::UnsupportedMediaType {
            digest: config_descriptor.digest().to_string(),
            media_type: config_media_type.to_string(),
        });
    }
    for layer in manifest.layers() {
        if !is_supported_layer_media_type(layer.media_type()) {
            return Err(ImportError::UnsupportedMediaType {
                digest: layer.digest().to_string(),
                media_type: layer.media_type().to_string(),
            });
        }
    }

    require_blob(store, config_descriptor)?;
    let config_digest = config_descriptor.digest().to_string();
    if config_descriptor.size() > MAX_IMAGE_CONFIG_BYTES {
        return Err(ImportError::ConfigTooLarge {
            digest: config_digest,
            size: config_descriptor.size(),
            max: MAX_IMAGE_CONFIG_BYTES,
        });
    }
    let invalid_config = |reason: String| ImportError::InvalidConfig { digest: config_digest.clone(), reason };
    let config_bytes = store.read_all(&config_digest)?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|error| invalid_config(error.to_string()))?;
    let config_os = config.os().to_string();
    if !config_os.is_empty() && *config.os() != Os::Linux {
        return Err(invalid_config(format!("it is an image for {config_os:?}, berth runs linux images only")));
    }
    if explicit_platform {
        let config_platform = format!("{}/{}", config.os(), config.architecture());
        let fits = config.os().to_string() == wanted.os && config.architecture().to_string() == wanted.architecture;
        if !fits {
            return Err(ImportError::NoMatchingPlatform {
                index: format!("(the image's config {config_digest})"),
                wanted: wanted.to_string(),
                available: config_platform,
            });
        }
    }
    let rootfs = config.rootfs();
    if rootfs.typ() != "layers" {
        return Err(invalid_config(format!("rootfs.type is {:?}, expected \"layers\"", rootfs.typ())));
    }
    let diff_ids = rootfs.diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(invalid_config(format!(
            "it lists {} diff_ids but the manifest has {} layers",
            diff_ids.len(),
            manifest.layers().len()
        )));
    }
    for diff_id in diff_ids {
        digest_hex(diff_id).map_err(|_| invalid_config(format!("diff_id {diff_id:?} is not a sha256 digest")))?;
    }
    for layer in manifest.layers() {
        require_blob(store, layer)?;
    }

    let layer_chain_ids = chain_ids(diff_ids);
    let layers: Vec<ImportedLayer> = manifest
        .layers()
        .iter()
        .zip(diff_ids.iter())
        .zip(layer_chain_ids)
        .map(|((layer, diff_id), chain_id)| ImportedLayer { blob: blob_ref(layer), diff_id: diff_id.clone(), chain_id })
        .collect();

    let config_summary = match config.config() {
        Some(process_config) => ImageConfigSummary {
            entrypoint: process_config.entrypoint().clone().unwrap_or_default(),
            cmd: process_config.cmd().clone().unwrap_or_default(),
            env: process_config.env().clone().unwrap_or_default(),
            working_dir: process_config.working_dir().clone().unwrap_or_default(),
            user: process_config.user().clone().unwrap_or_default(),
        },
        None => ImageConfigSummary::default(),
    };

    let manifest_ref = BlobRef { media_type: manifest_media_type, ..blob_ref(&manifest_descriptor) };
    let config_ref = blob_ref(config_descriptor);
    let mut blobs = vec![manifest_ref.clone(), config_ref.clone()];
    blobs.extend(layers.iter().map(|layer| layer.blob.clone()));
    blobs.extend(extra_blobs);
    Ok(ImportedImage { name, manifest: manifest_ref, config: config_ref, layers, config_summary, blobs })
}
