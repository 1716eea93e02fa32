//! `Images/Import` without the gRPC: an archive, read as it arrives, becomes blobs in the
//! content store, its layers are unpacked as committed snapshots, and the result is described
//! as the records the log will hold.

use std::io::Read;

use berth_projections::{Descriptor, ImageRecord, LayerRecord};

use crate::images::archive::{self, BlobRef, ImportOptions, ImportedImage};
use crate::images::content::ContentStore;
use crate::images::snapshot::{SnapshotError, Snapshotter};

/// Why an import failed: the archive's fault (the client can fix it) or the host's.
#[derive(Debug, thiserror::Error)]
pub enum ImportFailure {
    #[error("cannot import {source_label}: {source}")]
    Archive { source_label: String, source: Box<archive::ImportError> },
    #[error("cannot import {source_label}: layer {digest}: {source}")]
    Layer { source_label: String, digest: String, source: Box<SnapshotError> },
}

impl ImportFailure {
    /// Whether the archive is to blame (anything else is the host's: disk, permissions).
    pub fn is_bad_input(&self) -> bool {
        match self {
            ImportFailure::Archive { source, .. } => !matches!(
                source.as_ref(),
                archive::ImportError::Content(crate::images::content::ContentError::Io { .. })
            ),
            ImportFailure::Layer { source, .. } => !matches!(source.as_ref(), SnapshotError::Io { .. }),
        }
    }
}

/// What an import adds to the log: the images, and every blob they keep.
#[derive(Debug, Default)]
pub struct ImportedRecords {
    pub images: Vec<ImageRecord>,
    pub blobs: Vec<Descriptor>,
}

/// Imports the archive read from `archive` (`source_label` names it in errors: the client's
/// file path): blobs into `content`, layers unpacked by `snapshotter`. Blocking; run it off the
/// async runtime. The caller keeps the garbage collector out until the records are durable.
pub fn import_archive_stream(
    content: &ContentStore,
    snapshotter: &Snapshotter,
    archive: impl Read,
    source_label: &str,
    options: &ImportOptions,
) -> Result<ImportedRecords, ImportFailure> {
    let images = archive::import_archive(content, archive, options).map_err(|source| ImportFailure::Archive {
        source_label: source_label.to_string(),
        source: Box::new(source),
    })?;
    let mut records = ImportedRecords::default();
    for image in images {
        for layer in &image.layers {
            let blob_path = content.blob_path(&layer.blob.digest);
            snapshotter.commit_layer(&layer.chain_id, &blob_path, &layer.blob.media_type, &layer.diff_id).map_err(
                |source| ImportFailure::Layer {
                    source_label: source_label.to_string(),
                    digest: layer.blob.digest.clone(),
                    source: Box::new(source),
                },
            )?;
        }
        records.blobs.extend(image.blobs.iter().map(descriptor));
        records.images.push(image_record(&image));
    }
    Ok(records)
}

fn image_record(image: &ImportedImage) -> ImageRecord {
    ImageRecord {
        name: image.name.clone(),
        manifest: descriptor(&image.manifest),
        config: descriptor(&image.config),
        layers: image
            .layers
            .iter()
            .map(|layer| LayerRecord {
                blob: descriptor(&layer.blob),
                diff_id: layer.diff_id.clone(),
                chain_id: layer.chain_id.clone(),
            })
            .collect(),
        entrypoint: image.config_summary.entrypoint.clone(),
        cmd: image.config_summary.cmd.clone(),
        env: image.config_summary.env.clone(),
        working_dir: image.config_summary.working_dir.clone(),
        user: image.config_summary.user.clone(),
    }
}

fn descriptor(blob: &BlobRef) -> Descriptor {
    Descriptor { digest: blob.digest.clone(), media_type: blob.media_type.clone(), size: blob.size }
}
