//! Files that must survive a crash whole (write to a temporary name, fsync, rename, fsync the
//! directory), removals made durable, and temporary files that clean up after themselves.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Makes a rename, creation or removal inside `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/file_name` with `contents` so that after a crash the file is either the old
/// version or the new one, and the new one survives power loss once this returns: write a
/// temporary file, fsync it, rename it over the target, fsync the directory.
pub fn write_file_durably(dir: &Path, file_name: &str, contents: &[u8]) -> std::io::Result<()> {
    write_file_by_rename(dir, file_name, contents, true)
}

/// Writes `dir/file_name` so that readers see the old contents or the new, never a mix, without
/// forcing it to disk: for files that mean nothing after a reboot (`monitor.json` names processes).
pub fn write_file_atomically(dir: &Path, file_name: &str, contents: &[u8]) -> std::io::Result<()> {
    write_file_by_rename(dir, file_name, contents, false)
}

fn write_file_by_rename(dir: &Path, file_name: &str, contents: &[u8], durable: bool) -> std::io::Result<()> {
    let temporary_path = dir.join(format!(".{file_name}.tmp"));
    {
        let mut temporary_file =
            OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&temporary_path)?;
        temporary_file.write_all(contents)?;
        if durable {
            temporary_file.sync_all()?;
        }
    }
    std::fs::rename(&temporary_path, dir.join(file_name))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes `dir/file_name` if present and makes the removal durable.
pub fn remove_file_durably(dir: &Path, file_name: &str) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(file_name)) {
        Ok(()) => sync_dir(dir),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Removes a file when dropped, unless [`RemoveOnDrop::keep`] was called: a temporary file that
/// must not outlive an error path. Best effort; what a crash leaves is swept at start-up.
#[derive(Debug)]
pub struct RemoveOnDrop {
    path: Option<PathBuf>,
}

impl RemoveOnDrop {
    pub fn new(path: PathBuf) -> RemoveOnDrop {
        RemoveOnDrop { path: Some(path) }
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("path is kept until drop or keep")
    }

    /// The file stays: it was renamed into place or handed on.
    pub fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Names of the directories in `dir` (none when it is missing or unreadable; names that are not
/// UTF-8 are skipped: berth never creates such names).
pub fn list_dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `path` made absolute against the current directory (unchanged if that fails).
pub fn absolute_or_same(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
