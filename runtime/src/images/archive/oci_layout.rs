//! The OCI image layout: `oci-layout` says the version, `index.json` lists the images (each a
//! manifest, or an index per platform, nested as deep as the tool that wrote it chose), and
//! every blob sits under `blobs/sha256/`.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, OciLayout};

use crate::images::archive::image::{import_one_image, ImportedImage};
use crate::images::archive::naming::{choose_name, has_tag_or_digest};
use crate::images::archive::read::ArchiveEntries;
use crate::images::archive::{ImportError, ImportOptions};
use crate::images::content::ContentStore;
use crate::images::platform::{describe_platforms, PlatformSpec};

pub const OCI_LAYOUT_ENTRY: &str = "oci-layout";
pub const INDEX_ENTRY: &str = "index.json";

/// The images an OCI image-layout archive holds, for `options.platform` (else the host's).
pub fn import_images(
    store: &ContentStore,
    entries: &ArchiveEntries,
    options: &ImportOptions,
) -> Result<Vec<ImportedImage>, ImportError> {
    let layout_bytes = entries.small_file(OCI_LAYOUT_ENTRY)?.unwrap_or_default();
    let version = serde_json::from_slice::<OciLayout>(layout_bytes)
        .map_err(|error| ImportError::NotAnImageArchive {
            reason: format!("; its oci-layout entry is not valid JSON: {error}"),
        })?
        .image_layout_version()
        .clone();
    if !version.starts_with("1.") {
        return Err(ImportError::UnsupportedLayoutVersion { version });
    }
    let index_bytes = entries
        .small_file(INDEX_ENTRY)?
        .ok_or_else(|| ImportError::InvalidIndex { reason: "the archive has no index.json entry".to_string() })?;
    let index: ImageIndex =
        serde_json::from_slice(index_bytes).map_err(|error| ImportError::InvalidIndex { reason: error.to_string() })?;
    if index.schema_version() != 2 {
        return Err(ImportError::InvalidIndex {
            reason: format!("schemaVersion is {}, expected 2", index.schema_version()),
        });
    }
    if index.manifests().is_empty() {
        return Err(ImportError::InvalidIndex { reason: "it lists no images".to_string() });
    }
    let wanted = options.platform.clone().unwrap_or_else(PlatformSpec::host);
    let top_level: Vec<&Descriptor> =
        index.manifests().iter().filter(|descriptor| wanted.matches(descriptor.platform().as_ref())).collect();
    if top_level.is_empty() {
        return Err(ImportError::NoMatchingPlatform {
            index: INDEX_ENTRY.to_string(),
            wanted: wanted.to_string(),
            available: describe_platforms(index.manifests()),
        });
    }
    let given_name = options.name.as_deref();
    if let Some(given_name) = given_name {
        if has_tag_or_digest(given_name) && top_level.len() > 1 {
            return Err(ImportError::NameForMultipleImages { n_images: top_level.len() });
        }
    }

    let no_annotations = HashMap::new();
    let mut images = Vec::with_capacity(top_level.len());
    for (image_idx, descriptor) in top_level.into_iter().enumerate() {
        let annotations = descriptor.annotations().as_ref().unwrap_or(&no_annotations);
        let image_name = choose_name(image_idx, annotations, given_name)?;
        images.push(import_one_image(store, descriptor, image_name, &wanted, options.platform.is_some())?);
    }
    Ok(images)
}
