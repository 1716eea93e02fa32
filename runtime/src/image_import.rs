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

use serde::Deserialize;

use crate::content::{digest_hex, ContentError, ContentStore};
use crate::snapshot::chain_ids;

const OCI_LAYOUT_ENTRY: &str = "oci-layout";
const INDEX_ENTRY: &str = "index.json";
const BLOBS_SHA256_PREFIX: &str = "blobs/sha256/";
/// `oci-layout` and `index.json` are tiny; a huge one means the archive is not what it claims.
const MAX_METADATA_ENTRY_BYTES: u64 = 16 * 1024 * 1024;

const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Layer media types we can unpack (see unpack.rs for the compression each implies).
const SUPPORTED_LAYER_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// How an image's `org.opencontainers.image.ref.name` reads in the `NoName` message.
fn describe_ref_name(ref_name: Option<&str>) -> String {
    match ref_name {
        Some(tag) => format!("its ref name {tag:?} is a tag only"),
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
    #[error("image index {index} has no image for linux/{wanted_architecture} (it has: {available}); export the image for this platform, e.g. skopeo copy --override-arch {wanted_architecture}")]
    NoMatchingPlatform { index: String, wanted_architecture: String, available: String },
    #[error("image {image_idx} of the archive has no full name ({}); pass --name REPOSITORY[:TAG], e.g. --name busybox", describe_ref_name(ref_name.as_deref()))]
    NoName { image_idx: usize, ref_name: Option<String> },
    #[error("the archive holds {n_images} images; --name works only for one (give --name without a tag to name each by its own tag)")]
    NameForMultipleImages { n_images: usize },
    #[error("{name:?} is not a valid image name; use REPOSITORY[:TAG], e.g. library/busybox:1.36")]
    InvalidName { name: String },
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

#[derive(Debug, Deserialize)]
struct OciLayoutFile {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Debug, Deserialize)]
struct IndexFile {
    #[serde(rename = "schemaVersion")]
    schema_version: i64,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    #[serde(rename = "schemaVersion")]
    schema_version: i64,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<ContainerConfig>,
    rootfs: RootFs,
}

#[derive(Debug, Default, Deserialize)]
struct ContainerConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "User", default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// This machine's architecture in OCI (GOARCH) spelling.
pub fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Imports the OCI image-layout tar read from `archive`. See [`import_oci_archive_file`] for the
/// naming rules of `name`.
pub fn import_oci_archive(store: &ContentStore, archive: impl Read, name: Option<&str>) -> Result<Vec<ImportedImage>, ImportError> {
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
pub fn import_oci_archive_file(store: &ContentStore, path: &Path, name: Option<&str>) -> Result<Vec<ImportedImage>, ImportError> {
    let label = path.display().to_string();
    let file = File::open(path).map_err(|error| ImportError::NotAnOciArchive { source_label: label.clone(), reason: format!("; cannot open it: {error}") })?;
    import_oci_archive_labelled(store, BufReader::with_capacity(256 * 1024, file), &label, name)
}

fn import_oci_archive_labelled(store: &ContentStore, archive: impl Read, source_label: &str, name: Option<&str>) -> Result<Vec<ImportedImage>, ImportError> {
    if let Some(given_name) = name {
        validate_name(given_name)?;
    }
    let layout = read_layout_streaming(store, archive, source_label)?;
    let version = serde_json::from_slice::<OciLayoutFile>(&layout.oci_layout)
        .map_err(|error| ImportError::NotAnOciArchive { source_label: source_label.to_string(), reason: format!("; its oci-layout entry is not valid JSON: {error}") })?
        .image_layout_version;
    if !version.starts_with("1.") {
        return Err(ImportError::UnsupportedLayoutVersion { version });
    }
    let index_bytes = layout.index_json.ok_or_else(|| ImportError::InvalidIndex { reason: "the archive has no index.json entry".to_string() })?;
    let index: IndexFile = serde_json::from_slice(&index_bytes).map_err(|error| ImportError::InvalidIndex { reason: error.to_string() })?;
    if index.schema_version != 2 {
        return Err(ImportError::InvalidIndex { reason: format!("schemaVersion is {}, expected 2", index.schema_version) });
    }
    let wanted_architecture = oci_architecture();
    let top_level: Vec<&Descriptor> = index.manifests.iter().filter(|descriptor| platform_matches(descriptor.platform.as_ref(), wanted_architecture)).collect();
    if index.manifests.is_empty() {
        return Err(ImportError::InvalidIndex { reason: "it lists no images".to_string() });
    }
    if top_level.is_empty() {
        return Err(ImportError::NoMatchingPlatform {
            index: INDEX_ENTRY.to_string(),
            wanted_architecture: wanted_architecture.to_string(),
            available: describe_platforms(&index.manifests),
        });
    }
    if let Some(given_name) = name {
        if has_tag_or_digest(given_name) && top_level.len() > 1 {
            return Err(ImportError::NameForMultipleImages { n_images: top_level.len() });
        }
    }

    let mut images = Vec::with_capacity(top_level.len());
    for (image_idx, descriptor) in top_level.into_iter().enumerate() {
        let image_name = choose_name(image_idx, &descriptor.annotations, name)?;
        images.push(import_one_image(store, descriptor, image_name, wanted_architecture)?);
    }
    Ok(images)
}

struct LayoutInMemory {
    oci_layout: Vec<u8>,
    index_json: Option<Vec<u8>>,
}

/// Reads the tar once: blobs into the store, the two small metadata files into memory.
fn read_layout_streaming(store: &ContentStore, archive: impl Read, source_label: &str) -> Result<LayoutInMemory, ImportError> {
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
            Err(error) => return Err(ImportError::CorruptArchive { entry: format!("after {last_entry_name}"), reason: error.to_string() }),
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

/// Reads exactly `remaining_bytes` or fails: the tar reader returns a short entry without error
/// when the archive is cut inside it, which would otherwise surface as a misleading digest
/// mismatch instead of "truncated".
pub(crate) struct ExactLengthReader<R> {
    pub(crate) inner: R,
    pub(crate) remaining_bytes: u64,
}

impl<R: Read> Read for ExactLengthReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.remaining_bytes == 0 {
            return Ok(0);
        }
        let n_wanted = buffer.len().min(usize::try_from(self.remaining_bytes).unwrap_or(usize::MAX));
        let n_read = self.inner.read(&mut buffer[..n_wanted])?;
        if n_read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the archive ends {} bytes before the end of this entry", self.remaining_bytes),
            ));
        }
        self.remaining_bytes -= n_read as u64;
        Ok(n_read)
    }
}

fn not_a_tar(source_label: &str, error: &io::Error) -> ImportError {
    ImportError::NotAnOciArchive { source_label: source_label.to_string(), reason: format!("; it is not a readable tar: {error}") }
}

/// The entry path relative to the layout root: `./blobs/x` and `blobs/x` are the same entry.
fn layout_relative_path(raw_path: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw_path);
    let components: Vec<&str> = text.split('/').filter(|component| !component.is_empty() && *component != ".").collect();
    components.join("/")
}

fn read_small_entry(entry: &mut impl Read, entry_name: &str) -> Result<Vec<u8>, ImportError> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_METADATA_ENTRY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| ImportError::CorruptArchive { entry: entry_name.to_string(), reason: error.to_string() })?;
    if bytes.len() as u64 > MAX_METADATA_ENTRY_BYTES {
        return Err(ImportError::CorruptArchive { entry: entry_name.to_string(), reason: format!("larger than {MAX_METADATA_ENTRY_BYTES} bytes") });
    }
    Ok(bytes)
}

/// A descriptor without a platform is taken to fit (single-platform layouts leave it out).
fn platform_matches(platform: Option<&Platform>, wanted_architecture: &str) -> bool {
    match platform {
        None => true,
        Some(platform) => platform.os == "linux" && platform.architecture == wanted_architecture,
    }
}

fn describe_platforms(descriptors: &[Descriptor]) -> String {
    let platforms: Vec<String> = descriptors
        .iter()
        .map(|descriptor| match &descriptor.platform {
            Some(platform) => format!("{}/{}", platform.os, platform.architecture),
            None => "unspecified".to_string(),
        })
        .collect();
    if platforms.is_empty() { "none".to_string() } else { platforms.join(", ") }
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
    if name.is_empty() || !name.chars().all(acceptable) || name.starts_with(['/', ':', '@', '.', '-']) || name.ends_with(['/', ':', '@']) {
        return Err(ImportError::InvalidName { name: name.to_string() });
    }
    Ok(())
}

fn choose_name(image_idx: usize, annotations: &HashMap<String, String>, given_name: Option<&str>) -> Result<String, ImportError> {
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
    if let Some(full_name) = containerd_name {
        return Ok(full_name.clone());
    }
    match ref_name {
        Some(reference) if ref_is_full(reference) => Ok(reference.clone()),
        _ => Err(ImportError::NoName { image_idx, ref_name: ref_name.cloned() }),
    }
}

fn is_index_media_type(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST
}

fn blob_ref(descriptor: &Descriptor) -> BlobRef {
    BlobRef { digest: descriptor.digest.clone(), size: descriptor.size, media_type: descriptor.media_type.clone() }
}

/// Checks the blob is in the store with the size its descriptor claims.
fn require_blob(store: &ContentStore, descriptor: &Descriptor) -> Result<(), ImportError> {
    digest_hex(&descriptor.digest)?;
    match store.info(&descriptor.digest) {
        Ok(info) if info.size == descriptor.size => Ok(()),
        Ok(info) => Err(ImportError::SizeMismatch { digest: descriptor.digest.clone(), expected: descriptor.size, actual: info.size }),
        Err(ContentError::NotFound { .. }) => Err(ImportError::MissingBlob { digest: descriptor.digest.clone() }),
        Err(other) => Err(other.into()),
    }
}

fn import_one_image(store: &ContentStore, top_descriptor: &Descriptor, name: String, wanted_architecture: &str) -> Result<ImportedImage, ImportError> {
    let mut extra_blobs = Vec::new();
    let manifest_descriptor = if is_index_media_type(&top_descriptor.media_type) {
        require_blob(store, top_descriptor)?;
        let nested_bytes = store.read_all(&top_descriptor.digest)?;
        let nested: IndexFile = serde_json::from_slice(&nested_bytes)
            .map_err(|error| ImportError::InvalidIndex { reason: format!("nested index {}: {error}", top_descriptor.digest) })?;
        let picked = nested
            .manifests
            .iter()
            .find(|descriptor| descriptor.platform.as_ref().is_some_and(|platform| platform_matches(Some(platform), wanted_architecture)))
            .ok_or_else(|| ImportError::NoMatchingPlatform {
                index: top_descriptor.digest.clone(),
                wanted_architecture: wanted_architecture.to_string(),
                available: describe_platforms(&nested.manifests),
            })?;
        extra_blobs.push(blob_ref(top_descriptor));
        picked.clone()
    } else {
        top_descriptor.clone()
    };

    require_blob(store, &manifest_descriptor)?;
    let manifest_digest = manifest_descriptor.digest.clone();
    let invalid_manifest = |reason: String| ImportError::InvalidManifest { digest: manifest_digest.clone(), reason };
    let manifest_bytes = store.read_all(&manifest_digest)?;
    let manifest: ManifestFile = serde_json::from_slice(&manifest_bytes).map_err(|error| invalid_manifest(error.to_string()))?;
    if manifest.schema_version != 2 {
        return Err(invalid_manifest(format!("schemaVersion is {}, expected 2", manifest.schema_version)));
    }
    let manifest_media_type = manifest.media_type.clone().filter(|media_type| !media_type.is_empty()).unwrap_or_else(|| {
        if manifest_descriptor.media_type.is_empty() { MEDIA_TYPE_OCI_MANIFEST.to_string() } else { manifest_descriptor.media_type.clone() }
    });
    if manifest_media_type != MEDIA_TYPE_OCI_MANIFEST && manifest_media_type != MEDIA_TYPE_DOCKER_MANIFEST {
        return Err(ImportError::UnsupportedMediaType { digest: manifest_digest, media_type: manifest_media_type });
    }
    let config_media_type = &manifest.config.media_type;
    if config_media_type != MEDIA_TYPE_OCI_CONFIG && config_media_type != MEDIA_TYPE_DOCKER_CONFIG {
        return Err(ImportError::UnsupportedMediaType { digest: manifest.config.digest.clone(), media_type: config_media_type.clone() });
    }
    for layer in &manifest.layers {
        if !SUPPORTED_LAYER_MEDIA_TYPES.contains(&layer.media_type.as_str()) {
            return Err(ImportError::UnsupportedMediaType { digest: layer.digest.clone(), media_type: layer.media_type.clone() });
        }
    }

    require_blob(store, &manifest.config)?;
    let config_digest = manifest.config.digest.clone();
    let invalid_config = |reason: String| ImportError::InvalidConfig { digest: config_digest.clone(), reason };
    let config_bytes = store.read_all(&config_digest)?;
    let config: ConfigFile = serde_json::from_slice(&config_bytes).map_err(|error| invalid_config(error.to_string()))?;
    if !config.os.is_empty() && config.os != "linux" {
        return Err(invalid_config(format!("it is an image for {:?}, berth runs linux images only", config.os)));
    }
    if config.rootfs.kind != "layers" {
        return Err(invalid_config(format!("rootfs.type is {:?}, expected \"layers\"", config.rootfs.kind)));
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(invalid_config(format!(
            "it lists {} diff_ids but the manifest has {} layers",
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    for diff_id in &config.rootfs.diff_ids {
        digest_hex(diff_id).map_err(|_| invalid_config(format!("diff_id {diff_id:?} is not a sha256 digest")))?;
    }
    for layer in &manifest.layers {
        require_blob(store, layer)?;
    }

    let layer_chain_ids = chain_ids(&config.rootfs.diff_ids);
    let layers: Vec<ImportedLayer> = manifest
        .layers
        .iter()
        .zip(config.rootfs.diff_ids.iter())
        .zip(layer_chain_ids)
        .map(|((layer, diff_id), chain_id)| ImportedLayer { blob: blob_ref(layer), diff_id: diff_id.clone(), chain_id })
        .collect();

    let container_config = config.config.unwrap_or_default();
    let config_summary = ImageConfigSummary {
        entrypoint: container_config.entrypoint.unwrap_or_default(),
        cmd: container_config.cmd.unwrap_or_default(),
        env: container_config.env.unwrap_or_default(),
        working_dir: container_config.working_dir.unwrap_or_default(),
        user: container_config.user.unwrap_or_default(),
    };

    let manifest_ref = BlobRef { digest: manifest_descriptor.digest.clone(), size: manifest_descriptor.size, media_type: manifest_media_type };
    let config_ref = blob_ref(&manifest.config);
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

    /// A small image layout built in memory. Descriptors name their blob with a placeholder
    /// digest ("@layer", "@config", "@manifest", "@nested") that [`SyntheticLayout::archive`]
    /// replaces by the real digest and, unless the test set one, the real size.
    struct SyntheticLayout {
        oci_layout: serde_json::Value,
        layer: Vec<u8>,
        config: serde_json::Value,
        manifest: serde_json::Value,
        nested_index: Option<serde_json::Value>,
        index: serde_json::Value,
    }

    fn sha256_of(bytes: &[u8]) -> String {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
    }

    fn fill_descriptors(value: &mut serde_json::Value, known: &HashMap<String, (String, usize)>) {
        match value {
            serde_json::Value::Object(object) => {
                let placeholder = object.get("digest").and_then(|digest| digest.as_str()).map(str::to_string);
                if let Some((digest, size)) = placeholder.and_then(|name| known.get(&name)) {
                    object.insert("digest".to_string(), serde_json::json!(digest));
                    object.entry("size").or_insert(serde_json::json!(size));
                }
                object.values_mut().for_each(|child| fill_descriptors(child, known));
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|child| fill_descriptors(child, known)),
            _ => {}
        }
    }

    impl SyntheticLayout {
        fn new() -> SyntheticLayout {
            let layer = b"not really a tar; the import never opens layers".to_vec();
            SyntheticLayout {
                oci_layout: serde_json::json!({ "imageLayoutVersion": "1.0.0" }),
                config: serde_json::json!({
                    "architecture": oci_architecture(),
                    "os": "linux",
                    "config": {
                        "Entrypoint": ["/entry"],
                        "Cmd": ["serve", "--port", "80"],
                        "Env": ["PATH=/usr/bin", "MODE=test"],
                        "WorkingDir": "/srv",
                        "User": "web:web",
                        "ExposedPorts": { "80/tcp": {} },
                        "Labels": { "a": "b" },
                    },
                    "rootfs": { "type": "layers", "diff_ids": [sha256_of(&layer)] },
                    "history": [{ "created_by": "a test" }],
                }),
                layer,
                manifest: serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                    "config": { "mediaType": MEDIA_TYPE_OCI_CONFIG, "digest": "@config" },
                    "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "@layer" }],
                }),
                nested_index: None,
                index: serde_json::json!({
                    "schemaVersion": 2,
                    "manifests": [{
                        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                        "digest": "@manifest",
                        "annotations": { ANNOTATION_REF_NAME: "v1" },
                    }],
                }),
            }
        }

        /// A multi-platform layout as skopeo copies it with --all: index.json names an image
        /// index, which names the manifest for this machine and one for another architecture.
        fn multi_platform() -> SyntheticLayout {
            let mut layout = SyntheticLayout::new();
            layout.nested_index = Some(serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_OCI_INDEX,
                "manifests": [
                    { "mediaType": MEDIA_TYPE_OCI_MANIFEST, "digest": "@manifest", "platform": { "architecture": "not-this-one", "os": "linux" } },
                    { "mediaType": MEDIA_TYPE_OCI_MANIFEST, "digest": "@manifest", "platform": { "architecture": oci_architecture(), "os": "linux" } },
                ],
            }));
            layout.index["manifests"][0]["mediaType"] = serde_json::json!(MEDIA_TYPE_OCI_INDEX);
            layout.index["manifests"][0]["digest"] = serde_json::json!("@nested");
            layout
        }

        fn archive(&self) -> Vec<u8> {
            let mut known: HashMap<String, (String, usize)> = HashMap::new();
            let mut blobs: Vec<Vec<u8>> = vec![self.layer.clone()];
            known.insert("@layer".to_string(), (sha256_of(&self.layer), self.layer.len()));
            let mut documents = vec![("@config", Some(self.config.clone())), ("@manifest", Some(self.manifest.clone()))];
            documents.push(("@nested", self.nested_index.clone()));
            for (placeholder, document) in documents {
                let Some(mut document) = document else { continue };
                fill_descriptors(&mut document, &known);
                let bytes = serde_json::to_vec(&document).unwrap();
                known.insert(placeholder.to_string(), (sha256_of(&bytes), bytes.len()));
                blobs.push(bytes);
            }
            let mut index = self.index.clone();
            fill_descriptors(&mut index, &known);

            let mut builder = tar::Builder::new(Vec::new());
            let mut append = |path: String, bytes: &[u8]| {
                let mut header = tar::Header::new_gnu();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                header.set_entry_type(tar::EntryType::Regular);
                builder.append_data(&mut header, path, bytes).unwrap();
            };
            append(OCI_LAYOUT_ENTRY.to_string(), &serde_json::to_vec(&self.oci_layout).unwrap());
            append(INDEX_ENTRY.to_string(), &serde_json::to_vec(&index).unwrap());
            for blob in &blobs {
                append(format!("{BLOBS_SHA256_PREFIX}{}", &sha256_of(blob)["sha256:".len()..]), blob);
            }
            builder.into_inner().unwrap()
        }

        fn import(&self) -> Result<Vec<ImportedImage>, ImportError> {
            let store_dir = tempfile::tempdir().unwrap();
            let store = ContentStore::open(store_dir.path()).unwrap();
            import_oci_archive(&store, io::Cursor::new(self.archive()), Some("example/app"))
        }
    }

    #[test]
    fn a_synthetic_layout_imports_with_its_config_summary() {
        let layout = SyntheticLayout::new();
        let images = layout.import().unwrap();
        assert_eq!(images.len(), 1);
        let image = &images[0];
        assert_eq!(image.name, "example/app:v1");
        assert_eq!(image.manifest.media_type, MEDIA_TYPE_OCI_MANIFEST);
        assert_eq!(image.config.media_type, MEDIA_TYPE_OCI_CONFIG);
        assert_eq!(image.layers.len(), 1);
        assert_eq!(image.layers[0].blob.digest, sha256_of(&layout.layer));
        assert_eq!(image.layers[0].blob.size, layout.layer.len() as i64);
        assert_eq!(image.layers[0].diff_id, sha256_of(&layout.layer));
        let expected_summary = ImageConfigSummary {
            entrypoint: vec!["/entry".to_string()],
            cmd: vec!["serve".to_string(), "--port".to_string(), "80".to_string()],
            env: vec!["PATH=/usr/bin".to_string(), "MODE=test".to_string()],
            working_dir: "/srv".to_string(),
            user: "web:web".to_string(),
        };
        assert_eq!(image.config_summary, expected_summary);
        assert_eq!(image.blobs.len(), 3, "manifest, config, layer");
    }

    #[test]
    fn docker_schema_2_media_types_are_accepted_and_a_config_may_leave_out_its_process() {
        let mut layout = SyntheticLayout::new();
        layout.manifest["mediaType"] = serde_json::json!(MEDIA_TYPE_DOCKER_MANIFEST);
        layout.manifest["config"]["mediaType"] = serde_json::json!(MEDIA_TYPE_DOCKER_CONFIG);
        layout.manifest["layers"][0]["mediaType"] = serde_json::json!("application/vnd.docker.image.rootfs.diff.tar.gzip");
        layout.index["manifests"][0]["mediaType"] = serde_json::json!(MEDIA_TYPE_DOCKER_MANIFEST);
        layout.config.as_object_mut().unwrap().remove("config");
        let image = layout.import().unwrap().remove(0);
        assert_eq!(image.manifest.media_type, MEDIA_TYPE_DOCKER_MANIFEST);
        assert_eq!(image.config.media_type, MEDIA_TYPE_DOCKER_CONFIG);
        assert_eq!(image.config_summary, ImageConfigSummary::default());
    }

    #[test]
    fn the_manifest_media_type_falls_back_to_the_descriptor_then_to_oci() {
        let mut layout = SyntheticLayout::new();
        layout.manifest.as_object_mut().unwrap().remove("mediaType");
        layout.index["manifests"][0]["mediaType"] = serde_json::json!(MEDIA_TYPE_DOCKER_MANIFEST);
        assert_eq!(layout.import().unwrap()[0].manifest.media_type, MEDIA_TYPE_DOCKER_MANIFEST);
        layout.index["manifests"][0]["mediaType"] = serde_json::json!("");
        assert_eq!(layout.import().unwrap()[0].manifest.media_type, MEDIA_TYPE_OCI_MANIFEST);
    }

    #[test]
    fn a_multi_platform_index_yields_the_image_for_this_machine() {
        let layout = SyntheticLayout::multi_platform();
        let image = layout.import().unwrap().remove(0);
        assert_eq!(image.name, "example/app:v1");
        assert_eq!(image.blobs.len(), 4, "the platform index is kept too");
        assert_eq!(image.blobs[3].media_type, MEDIA_TYPE_OCI_INDEX);

        let mut foreign = SyntheticLayout::multi_platform();
        foreign.nested_index.as_mut().unwrap()["manifests"].as_array_mut().unwrap().remove(1);
        match foreign.import() {
            Err(error @ ImportError::NoMatchingPlatform { .. }) => {
                assert!(error.to_string().contains("(it has: linux/not-this-one)"), "{error}");
            }
            other => panic!("expected NoMatchingPlatform, got {other:?}"),
        }
    }

    /// Every check the import makes, each with the words of its message that tell the user what
    /// is wrong: one broken field at a time on an otherwise good layout.
    #[test]
    fn each_validation_keeps_its_error_and_message() {
        type Breakage = fn(&mut SyntheticLayout);
        let cases: Vec<(&str, Breakage, &str)> = vec![
            ("layout version", |layout| layout.oci_layout["imageLayoutVersion"] = serde_json::json!("2.0.0"), "only 1.x is supported"),
            ("index schema", |layout| layout.index["schemaVersion"] = serde_json::json!(1), "index.json is invalid (schemaVersion is 1, expected 2)"),
            ("empty index", |layout| layout.index["manifests"] = serde_json::json!([]), "index.json is invalid (it lists no images)"),
            ("index not an object", |layout| layout.index = serde_json::json!([1, 2]), "index.json is invalid"),
            (
                "foreign platform",
                |layout| layout.index["manifests"][0]["platform"] = serde_json::json!({ "architecture": "not-this-one", "os": "linux" }),
                "has no image for linux/",
            ),
            ("manifest schema", |layout| layout.manifest["schemaVersion"] = serde_json::json!(1), "is invalid (schemaVersion is 1, expected 2)"),
            (
                "manifest media type",
                |layout| layout.manifest["mediaType"] = serde_json::json!("application/vnd.docker.distribution.manifest.v1+json"),
                "has media type \"application/vnd.docker.distribution.manifest.v1+json\", which berth cannot run",
            ),
            (
                "config media type",
                |layout| layout.manifest["config"]["mediaType"] = serde_json::json!("application/octet-stream"),
                "has media type \"application/octet-stream\"",
            ),
            (
                "layer media type",
                |layout| layout.manifest["layers"][0]["mediaType"] = serde_json::json!("application/vnd.oci.image.layer.v1.tar+bzip2"),
                "has media type \"application/vnd.oci.image.layer.v1.tar+bzip2\"",
            ),
            ("layer size", |layout| layout.manifest["layers"][0]["size"] = serde_json::json!(3), "bytes but its descriptor says 3"),
            ("config os", |layout| layout.config["os"] = serde_json::json!("windows"), "it is an image for \"windows\", berth runs linux images only"),
            ("rootfs type", |layout| layout.config["rootfs"]["type"] = serde_json::json!("tarballs"), "rootfs.type is \"tarballs\", expected \"layers\""),
            (
                "diff id count",
                |layout| layout.config["rootfs"]["diff_ids"].as_array_mut().unwrap().push(serde_json::json!(sha256_of(b"x"))),
                "it lists 2 diff_ids but the manifest has 1 layers",
            ),
            (
                "diff id form",
                |layout| layout.config["rootfs"]["diff_ids"][0] = serde_json::json!("md5:0123"),
                "diff_id \"md5:0123\" is not a sha256 digest",
            ),
            ("config without rootfs", |layout| drop(layout.config.as_object_mut().unwrap().remove("rootfs")), "image config sha256:"),
        ];
        for (case, breakage, expected_words) in cases {
            let mut layout = SyntheticLayout::new();
            breakage(&mut layout);
            let message = match layout.import() {
                Ok(images) => panic!("{case}: imported {images:?}"),
                Err(error) => error.to_string(),
            };
            assert!(message.contains(expected_words), "{case}: {message}");
        }
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
