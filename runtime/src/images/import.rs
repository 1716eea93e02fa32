//! `Images/Import` without the gRPC: an archive, read as it arrives, becomes blobs in the
//! content store, its layers are unpacked as committed snapshots, and the result is described
//! as the records the log will hold.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::ScopedJoinHandle;

use berth_projections::{Descriptor, ImageRecord, LayerRecord};

use crate::images::archive::read::{BlobCopy, BlobTee};
use crate::images::archive::{self, BlobRef, ImportOptions, ImportedImage};
use crate::images::content::ContentStore;
use crate::images::snapshot::{SnapshotError, Snapshotter, StagedLayer};
use crate::sys::io::SyncChannelReader;

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

/// Blobs smaller than this are not unpacked while they stream: configs and manifests are
/// small, and a small layer costs little to read back.
const STAGE_MIN_BLOB_BYTES: u64 = 256 * 1024;
/// Layers unpacked at once while the archive streams; past that, a blob is stored and its
/// layer unpacked after the archive was read, as before.
const MAX_STAGING_THREADS: usize = 4;
/// Pieces in flight between the archive reader and one layer's unpacker (each up to the
/// content store's 256 KiB copy buffer): the memory one staged layer may hold.
const STAGE_CHANNEL_PIECES: usize = 16;

type StagingResult = Result<StagedLayer, SnapshotError>;

/// Unpacks large blobs as they stream into the content store, each on a thread of its own
/// (scoped to the import), so a layer is decompressed and unpacked while the archive is still
/// arriving and never read back. A blob that is not a layer fails to unpack and is ignored; a
/// layer's diff id is checked when it is committed under its chain id.
struct LayerStager<'scope, 'env> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    snapshotter: &'env Snapshotter,
    n_running: Arc<AtomicUsize>,
    staged: Arc<Mutex<HashMap<String, ScopedJoinHandle<'scope, StagingResult>>>>,
}

struct StagingCopy<'scope> {
    sender: SyncSender<Vec<u8>>,
    handle: ScopedJoinHandle<'scope, StagingResult>,
    staged: Arc<Mutex<HashMap<String, ScopedJoinHandle<'scope, StagingResult>>>>,
}

impl Write for StagingCopy<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // A send fails only when the unpacker stopped (not a layer, or damaged): stop copying.
        self.sender.send(bytes.to_vec()).map_err(|_| std::io::Error::other("the layer's unpacker stopped"))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BlobCopy for StagingCopy<'_> {
    fn finish(self: Box<Self>, digest: &str) {
        let StagingCopy { sender, handle, staged } = *self;
        drop(sender); // the end of the stream, for the unpacker
        let mut staged = staged.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The same blob twice in one archive: the first copy is enough.
        staged.entry(digest.to_string()).or_insert(handle);
    }
}

impl<'scope, 'env> BlobTee<'scope> for LayerStager<'scope, 'env> {
    fn start(&self, entry_size: u64) -> Option<Box<dyn BlobCopy + 'scope>> {
        if entry_size < STAGE_MIN_BLOB_BYTES || self.n_running.load(Ordering::Acquire) >= MAX_STAGING_THREADS {
            return None;
        }
        self.n_running.fetch_add(1, Ordering::AcqRel);
        let (sender, receiver) = std::sync::mpsc::sync_channel(STAGE_CHANNEL_PIECES);
        let snapshotter = self.snapshotter;
        let n_running = Arc::clone(&self.n_running);
        let handle = self.scope.spawn(move || {
            let result = snapshotter.stage_layer(SyncChannelReader::new(receiver));
            n_running.fetch_sub(1, Ordering::AcqRel);
            result
        });
        Some(Box::new(StagingCopy { sender, handle, staged: Arc::clone(&self.staged) }))
    }
}

/// Imports the archive read from `archive` (`source_label` names it in errors: the client's
/// file path): blobs into `content`, layers unpacked by `snapshotter` — large ones while they
/// stream in (see `LayerStager`). Blocking; run it off the async runtime. The caller keeps the
/// garbage collector out until the records are durable.
pub fn import_archive_stream(
    content: &ContentStore,
    snapshotter: &Snapshotter,
    archive: impl Read,
    source_label: &str,
    options: &ImportOptions,
) -> Result<ImportedRecords, ImportFailure> {
    std::thread::scope(|scope| {
        let stager = LayerStager {
            scope,
            snapshotter,
            n_running: Arc::new(AtomicUsize::new(0)),
            staged: Arc::new(Mutex::new(HashMap::new())),
        };
        let imported = archive::import_archive_with_tee(content, archive, options, Some(&stager));
        let mut staged = std::mem::take(&mut *stager.staged.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let result = imported
            .map_err(|source| ImportFailure::Archive {
                source_label: source_label.to_string(),
                source: Box::new(source),
            })
            .and_then(|images| commit_images(content, snapshotter, images, &mut staged, source_label));
        // Staged layers no image used (or an import that failed): nothing of them stays.
        for (_, handle) in staged {
            if let Ok(Ok(unused)) = handle.join() {
                let _ = std::fs::remove_dir_all(&unused.tmp_dir);
            }
        }
        result
    })
}

fn commit_images(
    content: &ContentStore,
    snapshotter: &Snapshotter,
    images: Vec<ImportedImage>,
    staged: &mut HashMap<String, ScopedJoinHandle<'_, StagingResult>>,
    source_label: &str,
) -> Result<ImportedRecords, ImportFailure> {
    let mut records = ImportedRecords::default();
    for image in images {
        for layer in &image.layers {
            let layer_failure = |source| ImportFailure::Layer {
                source_label: source_label.to_string(),
                digest: layer.blob.digest.clone(),
                source: Box::new(source),
            };
            let staged_layer = staged.remove(&layer.blob.digest).and_then(|handle| handle.join().ok()?.ok());
            match staged_layer {
                Some(staged_layer) => snapshotter.commit_staged(&layer.chain_id, staged_layer, &layer.diff_id),
                None => {
                    let blob_path = content.blob_path(&layer.blob.digest);
                    snapshotter.commit_layer(&layer.chain_id, &blob_path, &layer.blob.media_type, &layer.diff_id)
                }
            }
            .map_err(layer_failure)?;
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
