//! Imports an OCI image-layout tar (what `umoci` and `skopeo copy … oci-archive:` write) into the
//! content store and describes the images it holds, so the daemon can record them and the
//! snapshotter can unpack their layers.
//!
//! The archive is read once, front to back: blobs go straight into the content store, verified
//! against their file names as they stream; `oci-layout` and `index.json` are kept in memory.
//! Only then are the manifests and configs read back (verified again) and checked.
//! **Invariant:** an `ImportedImage` is only returned when every blob it names is in the store.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, OciLayout, Os};

use crate::images::content::{ContentError, ContentStore};
use crate::images::digest::{chain_ids, digest_hex};
pub use crate::images::platform::oci_architecture;
use crate::images::platform::{describe_platforms, PlatformSpec};
use crate::sys::io::ExactLengthReader;

const OCI_LAYOUT_ENTRY: &str = "oci-layout";
const INDEX_ENTRY: &str = "index.json";
const BLOBS_SHA256_PREFIX: &str = "blobs/sha256/";
/// `oci-layout` and `index.json` are tiny; a huge one means the archive is not what it claims.
const MAX_METADATA_ENTRY_BYTES: u64 = 16 * 1024 * 1024;

/// The largest image config berth reads. Its process settings become part of a log record (at
/// most 16 MiB, see `daemon::store::max_record_bytes`); real configs are a few KiB.
pub const MAX_IMAGE_CONFIG_BYTES: u64 = 16 << 20;

const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

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

/// How an image's `org.opencontainers.image.ref.name` reads in the `NoName` message.
fn describe_ref_name(ref_name: Option<&str>) -> String {
    match ref_name {
        Some(tag) => format!("its ref name {} is a tag only", berth_commands::validate::shown(tag)),
        None => "it has no ref name".to_string(),
    }
}

/// What can go wrong importing an archive. Each variant names what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{source_label} is not an OCI image layout archive (no oci-layout entry{reason}); a docker-archive can be converted with: skopeo copy docker-archive:{source_label} oci-archive:OUT")]
    NotAnOciArchive { source_label: String, reason: String },
    #[error("the archive's oci-layout says imageLayoutVersion {version:?}, but only 1.x is supported; re-export it with a current skopeo or umoci")]
    UnsupportedLayoutVersion { version: String },
    #[error("the archive is damaged or truncated at entry {entry:?} ({reason}); export or download it again")]
    CorruptArchive { entry: String, reason: String },
    #[error("archive entry {entry:?} does not match its name: it hashes to {actual}, not {expected}; the archive is corrupt, export or download it again")]
    DigestMismatch { entry: String, expected: String, actual: String },
    #[error("blob {digest} is referenced by the image but neither in the archive nor in the content store; the archive is incomplete, export it again (with skopeo, all blobs are included)")]
    MissingBlob { digest: String },
    #[error("blob {digest} holds {actual} bytes but its descriptor says {expected}; the archive is corrupt, export it again")]
    SizeMismatch { digest: String, expected: i64, actual: i64 },
    #[error("the archive's index.json is invalid ({reason}); export the image again")]
    InvalidIndex { reason: String },
    #[error("manifest {digest} is invalid ({reason}); export the image again")]
    InvalidManifest { digest: String, reason: String },
    #[error("image config {digest} is invalid ({reason}); export the image again")]
    InvalidConfig { digest: String, reason: String },
    #[error("blob {digest} has media type {media_type:?}, which berth cannot run; only OCI and Docker v2 schema 2 images are supported")]
    UnsupportedMediaType { digest: String, media_type: String },
    #[error("image index {index} has no image for {wanted} (it has: {available}); choose one of those with --platform, or export the image for this platform")]
    NoMatchingPlatform { index: String, wanted: String, available: String },
    #[error("image {image_idx} of the archive has no full name ({}); pass --name REPOSITORY[:TAG], e.g. --name busybox", describe_ref_name(ref_name.as_deref()))]
    NoName { image_idx: usize, ref_name: Option<String> },
    #[error("the archive holds {n_images} images; --name works only for one (give --name without a tag to name each by its own tag)")]
    NameForMultipleImages { n_images: usize },
    #[error(
        "{} is not a valid image name; use REPOSITORY[:TAG], e.g. library/busybox:1.36",
        berth_commands::validate::shown(name)
    )]
    InvalidName { name: String },
    #[error("image config {digest} is {size} bytes, over berth's limit of {max} bytes for an image config; rebuild the image with a smaller config (its environment, labels and history)")]
    ConfigTooLarge { digest: String, size: u64, max: u64 },
    #[error(transparent)]
    Content(#[from] ContentError),
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

/// Imports the OCI image-layout tar read from `archive`. See [`import_oci_archive_file`] for the
/// naming rules of `name`.
pub fn import_oci_archive(
    store: &ContentStore,
    archive: impl Read,
    name: Option<&str>,
) -> Result<Vec<ImportedImage>, ImportError> {
    import_oci_archive_labelled(store, archive, "the archive", name)
}

/// Imports the OCI image-layout tar at `path`; errors name the file.
///
/// Naming, per image of the archive:
/// - `name` with a tag (`repo:tag`): used as is; only allowed when the archive holds one image.
/// - `name` without a tag: `name:<tag>`, the tag taken from the image's ref name, else `latest`.
/// - no `name`: the `io.containerd.image.name` annotation, else the
///   `org.opencontainers.image.ref.name` annotation if it is a full reference (umoci and skopeo
///   put only a tag there, which is not enough: `NoName`).
pub fn import_oci_archive_file(
    store: &ContentStore,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<ImportedImage>, ImportError> {
    let label = path.display().to_string();
    let file = File::open(path).map_err(|error| ImportError::NotAnOciArchive {
        source_label: label.clone(),
        reason: format!("; cannot open it: {error}"),
    })?;
    import_oci_archive_labelled(store, BufReader::with_capacity(256 * 1024, file), &label, name)
}

fn import_oci_archive_labelled(
    store: &ContentStore,
    archive: impl Read,
    source_label: &str,
    name: Option<&str>,
) -> Result<Vec<ImportedImage>, ImportError> {
    if let Some(given_name) = name {
        validate_name(given_name)?;
    }
    let layout = read_layout_streaming(store, archive, source_label)?;
    let version = serde_json::from_slice::<OciLayout>(&layout.oci_layout)
        .map_err(|error| ImportError::NotAnOciArchive {
            source_label: source_label.to_string(),
            reason: format!("; its oci-layout entry is not valid JSON: {error}"),
        })?
        .image_layout_version()
        .clone();
    if !version.starts_with("1.") {
        return Err(ImportError::UnsupportedLayoutVersion { version });
    }
    let index_bytes = layout
        .index_json
        .ok_or_else(|| ImportError::InvalidIndex { reason: "the archive has no index.json entry".to_string() })?;
    let index: ImageIndex = serde_json::from_slice(&index_bytes)
        .map_err(|error| ImportError::InvalidIndex { reason: error.to_string() })?;
    if index.schema_version() != 2 {
        return Err(ImportError::InvalidIndex {
            reason: format!("schemaVersion is {}, expected 2", index.schema_version()),
        });
    }
    let wanted = PlatformSpec::host();
    let top_level: Vec<&Descriptor> =
        index.manifests().iter().filter(|descriptor| wanted.matches(descriptor.platform().as_ref())).collect();
    if index.manifests().is_empty() {
        return Err(ImportError::InvalidIndex { reason: "it lists no images".to_string() });
    }
    if top_level.is_empty() {
        return Err(ImportError::NoMatchingPlatform {
            index: INDEX_ENTRY.to_string(),
            wanted: wanted.to_string(),
            available: describe_platforms(index.manifests()),
        });
    }
    if let Some(given_name) = name {
        if has_tag_or_digest(given_name) && top_level.len() > 1 {
            return Err(ImportError::NameForMultipleImages { n_images: top_level.len() });
        }
    }

    let no_annotations = HashMap::new();
    let mut images = Vec::with_capacity(top_level.len());
    for (image_idx, descriptor) in top_level.into_iter().enumerate() {
        let image_name = choose_name(image_idx, descriptor.annotations().as_ref().unwrap_or(&no_annotations), name)?;
        images.push(import_one_image(store, descriptor, image_name, &wanted)?);
    }
    Ok(images)
}

struct LayoutInMemory {
    oci_layout: Vec<u8>,
    index_json: Option<Vec<u8>>,
}

/// Reads the tar once: blobs into the store, the two small metadata files into memory.
fn read_layout_streaming(
    store: &ContentStore,
    archive: impl Read,
    source_label: &str,
) -> Result<LayoutInMemory, ImportError> {
    let mut tar_archive = tar::Archive::new(archive);
    let mut oci_layout = None;
    let mut index_json = None;
    let mut n_entries_read = 0usize;
    let mut last_entry_name = String::from("(start of archive)");
    let entries = tar_archive.entries().map_err(|error| not_a_tar(source_label, &error))?;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            // An unreadable first header means this was never a tar; later, it was cut or damaged.
            Err(error) if n_entries_read == 0 => return Err(not_a_tar(source_label, &error)),
            Err(error) => {
                return Err(ImportError::CorruptArchive {
                    entry: format!("after {last_entry_name}"),
                    reason: error.to_string(),
                })
            }
        };
        n_entries_read += 1;
        let entry_name = layout_relative_path(&entry.path_bytes());
        last_entry_name = entry_name.clone();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        if entry_name == OCI_LAYOUT_ENTRY {
            oci_layout = Some(read_small_entry(&mut entry, &entry_name)?);
        } else if entry_name == INDEX_ENTRY {
            index_json = Some(read_small_entry(&mut entry, &entry_name)?);
        } else if let Some(hex_part) = entry_name.strip_prefix(BLOBS_SHA256_PREFIX) {
            let expected = format!("sha256:{hex_part}");
            if digest_hex(&expected).is_err() {
                // Not a blob name (stray file); nothing can reference it by digest.
                continue;
            }
            let entry_size = entry.size();
            match store.ingest(Some(&expected), ExactLengthReader { inner: &mut entry, remaining_bytes: entry_size }) {
                Ok(_) => {}
                Err(ContentError::DigestMismatch { expected, actual }) => {
                    return Err(ImportError::DigestMismatch { entry: entry_name, expected, actual })
                }
                Err(ContentError::SourceRead { source }) => {
                    return Err(ImportError::CorruptArchive { entry: entry_name, reason: source.to_string() })
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
    let Some(oci_layout) = oci_layout else {
        let reason = if n_entries_read == 0 { "; it is empty or not a tar".to_string() } else { String::new() };
        return Err(ImportError::NotAnOciArchive { source_label: source_label.to_string(), reason });
    };
    Ok(LayoutInMemory { oci_layout, index_json })
}

fn not_a_tar(source_label: &str, error: &io::Error) -> ImportError {
    ImportError::NotAnOciArchive {
        source_label: source_label.to_string(),
        reason: format!("; it is not a readable tar: {error}"),
    }
}

/// The entry path relative to the layout root: `./blobs/x` and `blobs/x` are the same entry.
fn layout_relative_path(raw_path: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw_path);
    let components: Vec<&str> =
        text.split('/').filter(|component| !component.is_empty() && *component != ".").collect();
    components.join("/")
}

fn read_small_entry(entry: &mut impl Read, entry_name: &str) -> Result<Vec<u8>, ImportError> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_METADATA_ENTRY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| ImportError::CorruptArchive { entry: entry_name.to_string(), reason: error.to_string() })?;
    if bytes.len() as u64 > MAX_METADATA_ENTRY_BYTES {
        return Err(ImportError::CorruptArchive {
            entry: entry_name.to_string(),
            reason: format!("larger than {MAX_METADATA_ENTRY_BYTES} bytes"),
        });
    }
    Ok(bytes)
}

/// True if a reference names a tag or digest: a ':' after the last '/' (a ':' before it is a
/// registry port), or an '@'.
fn has_tag_or_digest(reference: &str) -> bool {
    let last_component = reference.rsplit('/').next().unwrap_or(reference);
    last_component.contains(':') || reference.contains('@')
}

/// The tag part of a full reference, if it has one.
fn tag_of(reference: &str) -> Option<&str> {
    if reference.contains('@') {
        return None;
    }
    let last_component = reference.rsplit('/').next().unwrap_or(reference);
    last_component.split_once(':').map(|(_, tag)| tag)
}

fn validate_name(name: &str) -> Result<(), ImportError> {
    let acceptable = |character: char| character.is_ascii_alphanumeric() || "._-/:@".contains(character);
    if name.is_empty()
        || !name.chars().all(acceptable)
        || name.starts_with(['/', ':', '@', '.', '-'])
        || name.ends_with(['/', ':', '@'])
    {
        return Err(ImportError::InvalidName { name: name.to_string() });
    }
    Ok(())
}

fn choose_name(
    image_idx: usize,
    annotations: &HashMap<String, String>,
    given_name: Option<&str>,
) -> Result<String, ImportError> {
    let containerd_name = annotations.get(ANNOTATION_CONTAINERD_NAME).filter(|value| !value.is_empty());
    let ref_name = annotations.get(ANNOTATION_REF_NAME).filter(|value| !value.is_empty());
    let ref_is_full = |reference: &String| reference.contains('/') || reference.contains(':');
    if let Some(given) = given_name {
        if has_tag_or_digest(given) {
            return Ok(given.to_string());
        }
        // The ref name is either a bare tag (umoci, skopeo) or a full reference with a tag.
        let tag = match (ref_name, containerd_name) {
            (Some(reference), _) if !ref_is_full(reference) => Some(reference.as_str()),
            (Some(reference), _) => tag_of(reference),
            (None, Some(full_name)) => tag_of(full_name),
            (None, None) => None,
        };
        let chosen = format!("{given}:{}", tag.unwrap_or("latest"));
        validate_name(&chosen)?;
        return Ok(chosen);
    }
    // Annotations are the archive's word, no more trusted than a --name flag.
    let chosen = match (containerd_name, ref_name) {
        (Some(full_name), _) => full_name.clone(),
        (None, Some(reference)) if ref_is_full(reference) => reference.clone(),
        _ => return Err(ImportError::NoName { image_idx, ref_name: ref_name.cloned() }),
    };
    validate_name(&chosen)?;
    Ok(chosen)
}

fn is_index_media_type(media_type: &MediaType) -> bool {
    *media_type == MediaType::ImageIndex || media_type.as_ref() == MEDIA_TYPE_DOCKER_MANIFEST_LIST
}

/// A descriptor's size as the content store counts it (i64). A size that passed
/// [`require_blob`] equals a stored blob's and so fits; only a `SizeMismatch` can meet a claim
/// above i64::MAX, and shows it as i64::MAX.
fn stored_size(descriptor: &Descriptor) -> i64 {
    i64::try_from(descriptor.size()).unwrap_or(i64::MAX)
}

fn blob_ref(descriptor: &Descriptor) -> BlobRef {
    BlobRef {
        digest: descriptor.digest().to_string(),
        size: stored_size(descriptor),
        media_type: descriptor.media_type().to_string(),
    }
}

/// Checks the blob is in the store with the size its descriptor claims.
fn require_blob(store: &ContentStore, descriptor: &Descriptor) -> Result<(), ImportError> {
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

fn import_one_image(
    store: &ContentStore,
    top_descriptor: &Descriptor,
    name: String,
    wanted: &PlatformSpec,
) -> Result<ImportedImage, ImportError> {
    let mut extra_blobs = Vec::new();
    let manifest_descriptor = if is_index_media_type(top_descriptor.media_type()) {
        require_blob(store, top_descriptor)?;
        let nested_digest = top_descriptor.digest().as_ref();
        let nested_bytes = store.read_all(nested_digest)?;
        let nested: ImageIndex = serde_json::from_slice(&nested_bytes)
            .map_err(|error| ImportError::InvalidIndex { reason: format!("nested index {nested_digest}: {error}") })?;
        let picked = nested
            .manifests()
            .iter()
            .find(|descriptor| descriptor.platform().is_some() && wanted.matches(descriptor.platform().as_ref()))
            .ok_or_else(|| ImportError::NoMatchingPlatform {
                index: nested_digest.to_string(),
                wanted: wanted.to_string(),
                available: describe_platforms(nested.manifests()),
            })?;
        extra_blobs.push(blob_ref(top_descriptor));
        picked.clone()
    } else {
        top_descriptor.clone()
    };

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

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn naming_rules() {
        let tag_only = annotations(&[(ANNOTATION_REF_NAME, "layers")]);
        assert_eq!(choose_name(0, &tag_only, Some("busybox")).unwrap(), "busybox:layers");
        assert_eq!(choose_name(0, &annotations(&[]), Some("busybox")).unwrap(), "busybox:latest");
        assert_eq!(choose_name(0, &tag_only, Some("reg:5000/busybox:1")).unwrap(), "reg:5000/busybox:1");
        assert_eq!(choose_name(0, &tag_only, Some("reg:5000/busybox")).unwrap(), "reg:5000/busybox:layers");
        assert!(matches!(choose_name(0, &tag_only, None), Err(ImportError::NoName { .. })));
        let full_ref = annotations(&[(ANNOTATION_REF_NAME, "docker.io/library/busybox:1.36")]);
        assert_eq!(choose_name(0, &full_ref, None).unwrap(), "docker.io/library/busybox:1.36");
        assert_eq!(choose_name(0, &full_ref, Some("mine")).unwrap(), "mine:1.36");
        let containerd = annotations(&[(ANNOTATION_CONTAINERD_NAME, "docker.io/x/y:2"), (ANNOTATION_REF_NAME, "2")]);
        assert_eq!(choose_name(0, &containerd, None).unwrap(), "docker.io/x/y:2");
    }

    #[test]
    fn tag_detection_ignores_registry_ports() {
        assert!(!has_tag_or_digest("localhost:5000/busybox"));
        assert!(has_tag_or_digest("localhost:5000/busybox:1"));
        assert!(has_tag_or_digest("busybox@sha256:abc"));
        assert_eq!(tag_of("localhost:5000/busybox:1"), Some("1"));
        assert_eq!(tag_of("localhost:5000/busybox"), None);
    }
}
