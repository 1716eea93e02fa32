//! `Images/Import` without the gRPC: an archive spooled into the content store's ingest
//! directory is read into blobs, its layers are unpacked as committed snapshots, and the result
//! is described as the records the log will hold.

use std::io::BufReader;
use std::path::Path;

use berth_projections::{Descriptor, ImageRecord, LayerRecord};

use crate::images::archive::{self, BlobRef, ImportedImage};
use crate::images::content::ContentStore;
use crate::images::snapshot::{SnapshotError, Snapshotter};

/// Why an import failed: the archive's fault (the client can fix it) or the host's.
#[derive(Debug, thiserror::Error)]
pub enum ImportFailure {
    #[error(transparent)]
    Archive(#[from] archive::ImportError),
    #[error("layer {digest}: {source}")]
    Layer { digest: String, source: SnapshotError },
    #[error("cannot read the spooled archive {path}: {source}")]
    Spool { path: String, source: std::io::Error },
}

impl ImportFailure {
    /// Whether the archive is to blame (anything else is the host's: disk, permissions).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ImportFailure::Spool { .. })
    }
}

/// What an import adds to the log: the images, and every blob they keep.
#[derive(Debug, Default)]
pub struct ImportedRecords {
    pub images: Vec<ImageRecord>,
    pub blobs: Vec<Descriptor>,
}

/// Imports the archive at `spool_path` (named `name` when given): blobs into `content`, layers
/// unpacked by `snapshotter`. Blocking; run it off the async runtime. The caller keeps the
/// garbage collector out until the records are durable.
pub fn import_spooled_archive(
    content: &ContentStore,
    snapshotter: &Snapshotter,
    spool_path: &Path,
    name: Option<&str>,
) -> Result<ImportedRecords, ImportFailure> {
    let file = std::fs::File::open(spool_path)
        .map_err(|source| ImportFailure::Spool { path: spool_path.display().to_string(), source })?;
    let images = archive::import_oci_archive(content, BufReader::new(file), name)?;
    let mut records = ImportedRecords::default();
    for image in images {
        for layer in &image.layers {
            let blob_path = content.blob_path(&layer.blob.digest);
            snapshotter
                .commit_layer(&layer.chain_id, &blob_path, &layer.blob.media_type, &layer.diff_id)
                .map_err(|source| ImportFailure::Layer { digest: layer.blob.digest.clone(), source })?;
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
