//! Unpacking a layer while it downloads: the pull copies each piece it writes to the content
//! store into a channel that a blocking thread unpacks into `snapshots/tmp`
//! (`Snapshotter::stage_layer`), so the layer is decompressed and unpacked beside the download
//! instead of read back after it. Nothing staged is trusted: the blob's digest is checked by the
//! content store, the diff id when the staged tree is committed under its chain id
//! (`Snapshotter::commit_staged`), and a staged tree nobody commits is removed.

use std::io;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::images::snapshot::{SnapshotError, Snapshotter, StagedLayer};
use crate::sys::io::ChannelReader;

/// Layers smaller than this are unpacked from the stored blob afterwards: staging costs a
/// thread, and a small layer costs little to read back.
pub const STAGE_MIN_LAYER_BYTES: u64 = 256 * 1024;
/// Pieces in flight to one unpacker: what a staged layer may hold in memory (each piece is one
/// network read, a few KiB to 64 KiB).
const STAGE_CHANNEL_PIECES: usize = 64;

/// One layer being unpacked beside its download. Dropped without [`StagingJob::finish`] (the
/// download failed, or the pull was cancelled), it ends the stream and removes what was staged.
pub struct StagingJob {
    sender: Option<mpsc::Sender<io::Result<Vec<u8>>>>,
    handle: Option<JoinHandle<Result<StagedLayer, SnapshotError>>>,
}

impl StagingJob {
    pub fn start(snapshotter: &Arc<Snapshotter>) -> StagingJob {
        let (sender, receiver) = mpsc::channel(STAGE_CHANNEL_PIECES);
        let snapshotter = Arc::clone(snapshotter);
        let handle = tokio::task::spawn_blocking(move || snapshotter.stage_layer(ChannelReader::new(receiver)));
        StagingJob { sender: Some(sender), handle: Some(handle) }
    }

    /// Hands the unpacker the next piece. When it has stopped (not a layer it can read), the
    /// copying stops and the layer is unpacked from the stored blob later.
    pub async fn feed(&mut self, piece: &[u8]) {
        if let Some(sender) = &self.sender {
            if sender.send(Ok(piece.to_vec())).await.is_err() {
                self.sender = None;
            }
        }
    }

    /// Ends the stream and waits for the unpacker: the staged layer, or `None` when it could
    /// not unpack (the caller unpacks from the stored blob instead, which reports the error).
    pub async fn finish(mut self) -> Option<StagedLayer> {
        self.sender = None;
        let handle = self.handle.take()?;
        handle.await.ok()?.ok()
    }
}

impl Drop for StagingJob {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(handle) = self.handle.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Ok(Ok(unused)) = handle.await {
                        discard(unused);
                    }
                });
            }
        }
    }
}

/// Removes a staged tree that will not be committed.
pub fn discard(staged: StagedLayer) {
    if let Err(error) = std::fs::remove_dir_all(&staged.tmp_dir) {
        tracing::warn!(path = %staged.tmp_dir.display(), %error, "cannot remove a staged layer; start-up clean-up retries");
    }
}
