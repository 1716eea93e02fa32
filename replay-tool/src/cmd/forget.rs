//! `berth-replay forget --container ID`: forgets a removed container's sealed environment values
//! offline by deleting its key file — the one file berth-replay ever deletes; it opens none for
//! writing and leaves the log as it is, so every hash still verifies. Refused while berthd holds
//! the log (it would record the forgetting itself, see docs/secrets.md) and while the log says the
//! container exists (its task needs the key to start again). berthd records `SecretsForgotten`
//! for the deleted key at its next start.

use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::ReplayError;
use crate::fold::{fold_to, FoldPoint};
use crate::location::open_log;
use crate::secrets::KeyDir;

/// Whether a berthd holds the log's lock (`LOCK` in the log directory, flocked exclusively
/// while it runs). Tested with a shared lock on a read-only descriptor, dropped at once.
fn berthd_holds(log_dir: &Path) -> bool {
    let Ok(lock_file) = std::fs::File::open(log_dir.join("LOCK")) else { return false };
    // SAFETY: flock on a descriptor `lock_file` owns and keeps open across the call.
    let rc = unsafe { libc::flock(lock_file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    rc != 0
}

pub fn run_forget(
    log_dir: &Path,
    keys: &KeyDir,
    namespace: &str,
    container_id: &str,
    out: &mut dyn Write,
) -> Result<(), ReplayError> {
    let refuse = |reason: String| Err(ReplayError::ForgetRefused { reason });
    let Some(keys_dir) = keys.path() else {
        return refuse("forget needs the key directory: pass --root DIR (keys in DIR/keys) or --keys DIR".to_string());
    };
    if berthd_holds(log_dir) {
        return refuse(format!(
            "berthd is running on {}: remove the container with `berth rm {container_id}` (forget_on_remove), or stop berthd first",
            log_dir.display()
        ));
    }
    let (log, _report) = open_log(log_dir)?;
    let state = fold_to(&log, FoldPoint::End)?.state;
    if state.container(namespace, container_id).is_some() {
        return refuse(format!(
            "container {container_id} in namespace {namespace} still exists and needs its key to start: remove it with `berth rm {container_id}` first"
        ));
    }
    let Some(key_use) = state.secret_key(namespace, container_id) else {
        return refuse(format!(
            "the log holds no sealed value of container {container_id} in namespace {namespace}: nothing to forget"
        ));
    };
    let path = KeyDir::key_path(keys_dir, namespace, container_id);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::NotFound => {
            writeln!(out, "the key of container {container_id} is already gone: its values show as <forgotten>")?;
            return Ok(());
        }
        Err(source) => return Err(ReplayError::ForgetFailed { path, source }),
    }
    // The deletion must survive a power loss: fsync the directory (opened read-only).
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| ReplayError::ForgetFailed { path: path.clone(), source })?;
    }
    writeln!(
        out,
        "forgot the secrets of container {container_id} in namespace {namespace} (key {}): its values now show as <forgotten>; berthd records this at its next start",
        key_use.key_id
    )?;
    Ok(())
}
