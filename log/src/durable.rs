//! Small durable-file steps shared by the writer, recovery, the anchor and the archive: sync a
//! directory (so a rename or removal in it survives a crash), write a whole file and sync it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::LogError;

pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| LogError::io("syncing directory", dir, source))
}

/// Creates `path` (mode 0600), writes `bytes` and fsyncs it.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| LogError::io("creating", path, source))?;
    file.write_all(bytes).map_err(|source| LogError::io("writing", path, source))?;
    file.sync_all().map_err(|source| LogError::io("syncing", path, source))
}
