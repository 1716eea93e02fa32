//! Writes images as an OCI image-layout tar (`oci-layout`, `index.json`, `blobs/sha256/…`),
//! the form `skopeo copy oci-archive:`, `ctr images import` and berth's own import read. Blobs
//! are copied byte for byte from the content store, so every digest stays what it was.
//! `index.json` comes first, then the blobs: a reader that streams can know the images before
//! their layers arrive.

use std::collections::BTreeSet;
use std::io::{self, Write};

use crate::images::archive::image::BlobRef;
use crate::images::archive::naming::{tag_of, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use crate::images::content::{ContentError, ContentStore};

/// One image to write: its name, its manifest, and every blob it needs (manifest, config, layers).
#[derive(Debug, Clone)]
pub struct ExportImage {
    pub name: String,
    pub manifest: BlobRef,
    pub blobs: Vec<BlobRef>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("blob {digest} of image {image} is not in the content store; import the image again")]
    MissingBlob { image: String, digest: String },
    #[error("cannot write the archive: {source}; check that the destination has room")]
    Write {
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Content(#[from] ContentError),
}

/// The layout's `index.json`: one manifest descriptor per image, named by the annotations
/// containerd (`io.containerd.image.name`, the full name) and the OCI spec (`ref.name`) read.
pub fn index_json(images: &[ExportImage]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|image| {
            serde_json::json!({
                "mediaType": image.manifest.media_type,
                "digest": image.manifest.digest,
                "size": image.manifest.size,
                "annotations": {
                    ANNOTATION_CONTAINERD_NAME: image.name,
                    // The OCI spec's form is the tag alone (what skopeo and umoci write).
                    ANNOTATION_REF_NAME: tag_of(&image.name).unwrap_or(&image.name),
                },
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    serde_json::to_vec(&index).unwrap_or_default()
}

fn header_for(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

/// Writes the images as one OCI image-layout tar to `writer`; each blob once.
pub fn write_oci_archive(store: &ContentStore, images: &[ExportImage], writer: impl Write) -> Result<(), ExportError> {
    let write_error = |source: io::Error| ExportError::Write { source };
    // Everything is checked before the first byte goes out: a missing blob is an error, not a
    // truncated archive.
    for image in images {
        for blob in &image.blobs {
            if !store.contains(&blob.digest) {
                return Err(ExportError::MissingBlob { image: image.name.clone(), digest: blob.digest.clone() });
            }
        }
    }
    let mut builder = tar::Builder::new(writer);
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    builder.append_data(&mut header_for(layout.len() as u64), "oci-layout", &layout[..]).map_err(write_error)?;
    let index = index_json(images);
    builder.append_data(&mut header_for(index.len() as u64), "index.json", &index[..]).map_err(write_error)?;
    let mut written = BTreeSet::new();
    for blob in images.iter().flat_map(|image| image.blobs.iter()) {
        if !written.insert(blob.digest.clone()) {
            continue;
        }
        let path = store.checked_blob_path(&blob.digest)?;
        let file = std::fs::File::open(&path).map_err(|source| ContentError::Io {
            action: "open",
            path: path.clone(),
            source,
        })?;
        let size =
            file.metadata().map_err(|source| ContentError::Io { action: "stat", path: path.clone(), source })?.len();
        let hex_part = &blob.digest["sha256:".len()..];
        builder
            .append_data(
                &mut header_for(size),
                format!("blobs/sha256/{hex_part}"),
                io::BufReader::with_capacity(256 * 1024, file),
            )
            .map_err(write_error)?;
    }
    builder.into_inner().map_err(write_error)?.flush().map_err(write_error)
}
