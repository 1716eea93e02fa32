//! Files that must survive a crash whole (write to a temporary name, fsync, rename, fsync the
//! directory), removals made durable, temporary files that clean up after themselves, and the
//! modes everything berth keeps is created with.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Directories under berth's root and state directory: root's alone. A local user who could
/// enter them could run a setuid program an image carries, write to its device nodes, or read
/// containers' environments (see `daemon::permissions` for why no path needs more).
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Files that hold container config, output or log records: readable by root only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// The umask berthd runs under, so that whatever is created without an explicit mode is private
/// from its first moment, never open and then tightened.
pub const DAEMON_UMASK: u32 = 0o077;
/// Directories that are a container's view of `/` (a layer's root, a writable layer): the mode a
/// root directory has on any system, so the container's non-root users can walk it.
pub const CONTAINER_ROOT_DIR_MODE: u32 = 0o755;

/// Creates `dir` and any missing parents with [`PRIVATE_DIR_MODE`]. Directories that already
/// exist keep their mode (`daemon::permissions` tightens those at start-up).
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(PRIVATE_DIR_MODE).create(dir)
}

/// Creates `dir` (parents private) and gives it exactly `mode`, whatever the umask.
pub fn create_dir_with_mode(dir: &Path, mode: u32) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        create_private_dir_all(parent)?;
    }
    match DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(error) => return Err(error),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

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
            OpenOptions::new().write(true).create(true).truncate(true).mode(PRIVATE_FILE_MODE).open(&temporary_path)?;
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

/// Removes `dir` and everything in it; absent is fine.
pub fn remove_dir_all_if_present(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
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
    list_names(dir, std::fs::FileType::is_dir)
}

/// Names of the files (not directories) in `dir`, temporary `.`-files skipped; none when it is
/// missing or unreadable.
pub fn list_file_names(dir: &Path) -> Vec<String> {
    list_names(dir, std::fs::FileType::is_file).into_iter().filter(|name| !name.starts_with('.')).collect()
}

fn list_names(dir: &Path, wanted: fn(&std::fs::FileType) -> bool) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_type().is_ok_and(|kind| wanted(&kind)))
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `path` made absolute against the current directory (unchanged if that fails).
pub fn absolute_or_same(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
