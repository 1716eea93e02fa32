//! Image archives in and out: OCI image-layout tars (what `umoci`, `skopeo copy … oci-archive:`
//! and `ctr export` write) and docker-archive tars (what `docker save` and `skopeo copy …
//! docker-archive:` write) imported into the content store, and OCI image-layout tars written
//! back out ([`export`]).
//!
//! An import reads the tar once, front to back, as it arrives ([`read`]): blobs go straight into
//! the content store, verified as they stream; the small JSON files are kept in memory. Which
//! format it was is decided from what the tar held, never from its file name; then
//! [`oci_layout`] or [`docker_archive`] turns the metadata into manifests, and [`image`] checks
//! each manifest and its config and describes the image.
//! **Invariant:** an `ImportedImage` is only returned when every blob it names is in the store.

pub mod docker_archive;
pub mod export;
pub mod image;
pub mod naming;
pub mod oci_layout;
pub mod read;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

pub use crate::images::archive::image::{
    BlobRef, ImageConfigSummary, ImportedImage, ImportedLayer, MAX_IMAGE_CONFIG_BYTES, MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST,
};
use crate::images::archive::naming::describe_ref_name;
use crate::images::content::{ContentError, ContentStore};
pub use crate::images::platform::oci_architecture;
use crate::images::platform::PlatformSpec;

/// What can go wrong importing an archive. Each variant names what the user can do about it.
/// The caller names the file (`images::import::ImportFailure` puts its path in front).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("it is neither an OCI image layout archive (no oci-layout entry) nor a docker-archive (no manifest.json entry){reason}; write it with `skopeo copy … oci-archive:FILE` or `docker save`")]
    NotAnImageArchive { reason: String },
    #[error("the archive's oci-layout says imageLayoutVersion {version:?}, but only 1.x is supported; re-export it with a current skopeo or umoci")]
    UnsupportedLayoutVersion { version: String },
    #[error("the archive is damaged or truncated at entry {entry:?} ({reason}); export or download it again")]
    CorruptArchive { entry: String, reason: String },
    #[error("archive entry {} leaves the archive's root (\"..\" or an absolute link target); berth refuses such archives, export the image again with a trusted tool", berth_commands::validate::shown(entry))]
    UnsafePath { entry: String },
    #[error("archive entry {entry:?} is {size} bytes, over berth's limit of {max} bytes for a metadata file; the archive is not what it claims to be")]
    MetadataTooLarge { entry: String, size: u64, max: u64 },
    #[error("archive entry {entry:?} does not match its name: it hashes to {actual}, not {expected}; the archive is corrupt, export or download it again")]
    DigestMismatch { entry: String, expected: String, actual: String },
    #[error("the archive's manifest.json names {entry:?}, which the archive does not hold; the archive is incomplete, save or export it again")]
    MissingEntry { entry: String },
    #[error("the archive's manifest.json is invalid ({reason}); save or export the image again")]
    InvalidDockerManifest { reason: String },
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
    #[error("image index {index} nests other indexes deeper than {max_depth} levels; berth reads at most that many")]
    IndexTooDeep { index: String, max_depth: usize },
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

/// How to import: the name to give (see [`naming::choose_name`]) and the platform to pick from
/// multi-platform indexes (`None`: the host's, and a single-platform image is taken as it is).
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub name: Option<String>,
    pub platform: Option<PlatformSpec>,
}

/// Imports the image archive (OCI image layout or docker-archive, told apart by what it holds)
/// read from `archive`.
pub fn import_archive(
    store: &ContentStore,
    archive: impl Read,
    options: &ImportOptions,
) -> Result<Vec<ImportedImage>, ImportError> {
    import_archive_with_tee(store, archive, options, None)
}

/// [`import_archive`], handing each large blob's bytes to `tee` as well while they stream in.
pub fn import_archive_with_tee(
    store: &ContentStore,
    archive: impl Read,
    options: &ImportOptions,
    tee: Option<&dyn read::BlobTee<'_>>,
) -> Result<Vec<ImportedImage>, ImportError> {
    if let Some(given_name) = &options.name {
        naming::validate_name(given_name)?;
    }
    let entries = read::read_archive(store, archive, tee)?;
    if entries.has(oci_layout::OCI_LAYOUT_ENTRY) {
        oci_layout::import_images(store, &entries, options)
    } else if entries.has(docker_archive::MANIFEST_ENTRY) {
        docker_archive::import_images(store, &entries, options)
    } else {
        let reason = if entries.n_entries == 0 { "; it is empty or not a tar".to_string() } else { String::new() };
        Err(ImportError::NotAnImageArchive { reason })
    }
}

/// [`import_archive`] with only a name, for callers that want the host's platform.
pub fn import_oci_archive(
    store: &ContentStore,
    archive: impl Read,
    name: Option<&str>,
) -> Result<Vec<ImportedImage>, ImportError> {
    import_archive(store, archive, &ImportOptions { name: name.map(str::to_string), platform: None })
}

/// Imports the archive at `path`.
pub fn import_oci_archive_file(
    store: &ContentStore,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<ImportedImage>, ImportError> {
    let file = File::open(path).map_err(|error| ImportError::NotAnImageArchive {
        reason: format!("; cannot open {}: {error}", path.display()),
    })?;
    import_oci_archive(store, BufReader::with_capacity(256 * 1024, file), name)
}
