//! A task's network namespace as a file: made by a short-lived thread that unshares a new
//! network namespace and bind-mounts its `/proc/self/task/<tid>/ns/net` onto an empty file in
//! `<state>/netns/` (0700), as `ip netns add` does. The file keeps the namespace alive without a
//! process, so CNI can configure it before runc joins it, and berthd can find it after a crash.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Makes `path` a new network namespace. A file left at `path` by an earlier attempt is
/// removed first.
pub fn create(path: &Path) -> io::Result<()> {
    if path.exists() {
        remove(path)?;
    }
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    let target = path.to_path_buf();
    // The thread's namespace changes, not berthd's: unshare affects the calling thread only,
    // and the thread ends right after the bind mount.
    let made = std::thread::spawn(move || -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        let own = PathBuf::from(format!("/proc/self/task/{}/ns/net", nix::unistd::gettid()));
        mount(Some(&own), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(io::Error::from)
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the thread making the network namespace panicked")));
    if let Err(error) = made {
        let _ = std::fs::remove_file(path);
        return Err(error);
    }
    Ok(())
}

/// Unmounts and removes the namespace file (the namespace ends once nothing else holds it).
/// A missing file is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(error) => return Err(error.into()),
    }
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// True when `path` is a bind-mounted network namespace (its device is nsfs's).
pub fn is_mounted(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|stat| stat.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}
