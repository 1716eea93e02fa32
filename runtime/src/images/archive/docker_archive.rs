//! docker-archive tars, as `docker save` and `skopeo copy … docker-archive:` write them:
//! `manifest.json` lists each image's config file, its `RepoTags` and its layer files
//! (`<id>/layer.tar`, `<digest>.tar` or `blobs/sha256/<hex>`, in any compression). berth gives
//! each image the OCI manifest such an archive leaves out, stores it, and from there treats it
//! like any OCI image.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;

use oci_spec::image::{Descriptor, MediaType};
use serde::Deserialize;

use crate::images::archive::image::{import_one_image, ImportedImage};
use crate::images::archive::naming::{choose_name, has_tag_or_digest, ANNOTATION_CONTAINERD_NAME};
use crate::images::archive::read::ArchiveEntries;
use crate::images::archive::{ImportError, ImportOptions};
use crate::images::content::{BlobInfo, ContentError, ContentStore};
use crate::images::digest::digest_of_bytes;
use crate::images::platform::PlatformSpec;
use crate::images::unpack::LayerCompression;

pub const MANIFEST_ENTRY: &str = "manifest.json";

/// One image of `manifest.json`. Docker spells the keys in PascalCase.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// The images a docker-archive holds: one per name in `RepoTags` (an image saved under two
/// tags is two names for one manifest), or one unnamed, which then needs `--name`.
pub fn import_images(
    store: &ContentStore,
    entries: &ArchiveEntries,
    options: &ImportOptions,
) -> Result<Vec<ImportedImage>, ImportError> {
    let manifest_bytes = entries.small_file(MANIFEST_ENTRY)?.unwrap_or_default();
    let archive_images: Vec<DockerArchiveImage> = serde_json::from_slice(manifest_bytes)
        .map_err(|error| ImportError::InvalidDockerManifest { reason: error.to_string() })?;
    if archive_images.is_empty() {
        return Err(ImportError::InvalidDockerManifest { reason: "it lists no images".to_string() });
    }
    let mut named: Vec<(Descriptor, HashMap<String, String>)> = Vec::new();
    for archive_image in &archive_images {
        let manifest_descriptor = store_manifest(store, entries, archive_image)?;
        let repo_tags = archive_image.repo_tags.clone().unwrap_or_default();
        if repo_tags.is_empty() {
            named.push((manifest_descriptor.clone(), HashMap::new()));
        }
        for repo_tag in repo_tags {
            let annotations = HashMap::from([(ANNOTATION_CONTAINERD_NAME.to_string(), repo_tag)]);
            named.push((manifest_descriptor.clone(), annotations));
        }
    }
    let given_name = options.name.as_deref();
    if let Some(given_name) = given_name {
        if has_tag_or_digest(given_name) && named.len() > 1 {
            return Err(ImportError::NameForMultipleImages { n_images: named.len() });
        }
    }
    let wanted = options.platform.clone().unwrap_or_else(PlatformSpec::host);
    let mut images = Vec::with_capacity(named.len());
    for (image_idx, (descriptor, annotations)) in named.iter().enumerate() {
        let image_name = choose_name(image_idx, annotations, given_name)?;
        images.push(import_one_image(store, descriptor, image_name, &wanted, options.platform.is_some())?);
    }
    Ok(images)
}

/// The blob an entry of `manifest.json` names: a file the archive held (as a blob), or a
/// metadata file (a `.json` config), stored now.
fn blob_for_entry(store: &ContentStore, entries: &ArchiveEntries, path: &str) -> Result<BlobInfo, ImportError> {
    if let Some(info) = entries.blob(path)? {
        return Ok(info.clone());
    }
    let Some(bytes) = entries.small_file(path)? else {
        return Err(ImportError::MissingEntry { entry: path.to_string() });
    };
    // A config file is named by its digest (`<hex>.json`); a name that lies is caught here.
    let file_stem = path.rsplit('/').next().unwrap_or(path).trim_end_matches(".json");
    let named_digest = format!("sha256:{file_stem}");
    let expected = crate::images::digest::digest_hex(&named_digest).is_ok().then_some(named_digest);
    match store.ingest(expected.as_deref(), bytes) {
        Ok(info) => Ok(info),
        Err(ContentError::DigestMismatch { expected, actual }) => {
            Err(ImportError::DigestMismatch { entry: path.to_string(), expected, actual })
        }
        Err(other) => Err(other.into()),
    }
}

/// What a stored layer blob starts with says how it is compressed (docker-archive has no
/// media types): the OCI layer media type for that.
fn layer_media_type(store: &ContentStore, digest: &str) -> Result<MediaType, ImportError> {
    let path = store.checked_blob_path(digest)?;
    let mut first_bytes = [0u8; 4];
    let mut file =
        File::open(&path).map_err(|source| ContentError::Io { action: "open", path: path.clone(), source })?;
    let mut n_filled = 0;
    while n_filled < first_bytes.len() {
        let n_read = file.read(&mut first_bytes[n_filled..]).map_err(|source| ContentError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        if n_read == 0 {
            break;
        }
        n_filled += n_read;
    }
    Ok(match LayerCompression::sniff(&first_bytes[..n_filled]) {
        LayerCompression::None => MediaType::ImageLayer,
        LayerCompression::Gzip => MediaType::ImageLayerGzip,
        LayerCompression::Zstd => MediaType::ImageLayerZstd,
    })
}

/// Writes the OCI manifest of one docker-archive image into the store; returns its descriptor.
fn store_manifest(
    store: &ContentStore,
    entries: &ArchiveEntries,
    archive_image: &DockerArchiveImage,
) -> Result<Descriptor, ImportError> {
    let config = blob_for_entry(store, entries, &archive_image.config)?;
    let mut layers = Vec::with_capacity(archive_image.layers.len());
    for layer_path in &archive_image.layers {
        let layer = blob_for_entry(store, entries, layer_path)?;
        let media_type = layer_media_type(store, &layer.digest)?;
        layers.push(serde_json::json!({
            "mediaType": media_type.to_string(),
            "digest": layer.digest,
            "size": layer.size,
        }));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest.to_string(),
        "config": {
            "mediaType": MediaType::ImageConfig.to_string(),
            "digest": config.digest,
            "size": config.size,
        },
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|error| ImportError::InvalidDockerManifest {
        reason: format!("cannot write its OCI manifest: {error}"),
    })?;
    let digest = digest_of_bytes(&manifest_bytes);
    store.ingest(Some(&digest), &manifest_bytes[..])?;
    let descriptor_json = serde_json::json!({
        "mediaType": MediaType::ImageManifest.to_string(),
        "digest": digest,
        "size": manifest_bytes.len(),
    });
    serde_json::from_value(descriptor_json).map_err(|error| ImportError::InvalidDockerManifest {
        reason: format!("cannot describe its manifest: {error}"),
    })
}
