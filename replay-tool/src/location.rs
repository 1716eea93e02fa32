//! Finding and opening the log: `--root DIR` means `DIR/log`, `--log DIR` is the directory
//! itself. Opening is always `berth_log::open_read_only`: no lock, nothing written, ever.

use std::path::{Path, PathBuf};

use berth_log::{open_read_only, OpenReport, ReadOnlyLog};

use crate::error::ReplayError;

pub use berth_log::DEFAULT_ROOT;

/// The log directory for `--root` / `--log` (at most one of them is given).
pub fn resolve_log_dir(root: Option<&Path>, log: Option<&Path>) -> PathBuf {
    match (log, root) {
        (Some(log_dir), _) => log_dir.to_path_buf(),
        (None, Some(root_dir)) => root_dir.join(berth_log::LOG_DIR_NAME),
        (None, None) => Path::new(DEFAULT_ROOT).join(berth_log::LOG_DIR_NAME),
    }
}

/// Segment files (`*.seg`) in `dir`, sorted by name (which sorts them by segment id).
pub fn segment_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(PathBuf, u64)> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_str().is_some_and(|name| name.ends_with(".seg")))
        .map(|entry| {
            let len = entry.metadata().map(|metadata| metadata.len()).unwrap_or(0);
            (entry.path(), len)
        })
        .collect();
    found.sort();
    found
}

/// Fails with a message that says what to pass when `dir` is missing or is not a log.
pub fn check_log_dir(dir: &Path) -> Result<(), ReplayError> {
    let denied = |error: &std::io::Error| error.kind() == std::io::ErrorKind::PermissionDenied;
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => {}
        // A directory above the log that this user may not enter looks like no log at all.
        Err(error) if denied(&error) => return Err(ReplayError::PermissionDenied { path: dir.to_path_buf() }),
        _ => return Err(ReplayError::NoLog { dir: dir.to_path_buf() }),
    }
    if let Err(error) = std::fs::read_dir(dir) {
        if denied(&error) {
            return Err(ReplayError::PermissionDenied { path: dir.to_path_buf() });
        }
    }
    if segment_files(dir).is_empty() {
        return Err(ReplayError::NotALog { dir: dir.to_path_buf() });
    }
    Ok(())
}

/// Opens the log read-only. A torn tail (a record being written right now, or the last write
/// before a crash) is reported in the `OpenReport`, not treated as an error.
pub fn open_log(dir: &Path) -> Result<(ReadOnlyLog, OpenReport), ReplayError> {
    check_log_dir(dir)?;
    open_read_only(dir).map_err(|source| ReplayError::open(dir, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_dir_comes_from_log_then_root_then_default() {
        assert_eq!(resolve_log_dir(None, None), PathBuf::from("/var/lib/berth/log"));
        assert_eq!(resolve_log_dir(Some(Path::new("/srv/b")), None), PathBuf::from("/srv/b/log"));
        assert_eq!(resolve_log_dir(None, Some(Path::new("/x/y"))), PathBuf::from("/x/y"));
    }

    #[test]
    fn missing_and_empty_directories_say_what_to_pass() {
        let temp = tempfile::tempdir().unwrap();
        let missing = temp.path().join("nope");
        let message = check_log_dir(&missing).unwrap_err().to_string();
        assert!(message.starts_with(&format!("no log at {}", missing.display())), "{message}");
        assert!(message.contains("pass --root"), "{message}");
        let message = check_log_dir(temp.path()).unwrap_err().to_string();
        assert!(message.contains("not a berth log directory"), "{message}");
    }
}
