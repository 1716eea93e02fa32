//! The overlay snapshotter, IO side: unpacked layers ("committed" snapshots, one per chain id)
//! and per-container writable layers ("active" snapshots), and the overlay mounts that stack
//! them. Which snapshots *should* exist is a projection of the event log kept elsewhere; this
//! file only makes the disk agree with it, and lists what is on disk for orphan cleanup.
//!
//! Layout under the directory handed to [`Snapshotter::open`] (`<root>/snapshots`):
//! ```text
//! <root>/snapshots/committed/<chain hex>/fs        an unpacked layer, used read-only as a lowerdir
//! <root>/snapshots/active/<namespace>/<key>/upper  a container's writable layer
//! <root>/snapshots/active/<namespace>/<key>/work   overlayfs' scratch directory
//! <root>/snapshots/tmp/                            layers being unpacked; garbage after a crash
//! ```
//! **Invariant:** a `committed/<chain hex>` directory only exists once its layer was unpacked
//! completely and its diff id verified: it is renamed into place as a whole.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::mount::{MntFlags, MsFlags};

use crate::images::digest::digest_hex;
use crate::images::unpack::{unpack_layer, unpack_layer_reader, UnpackError};
use crate::sys::fs::{create_dir_with_mode, create_private_dir_all, sync_dir, CONTAINER_ROOT_DIR_MODE};
use crate::sys::mountinfo::{self, MountInfo};

/// What can go wrong in the snapshotter.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("invalid chain id {chain_id:?}: expected \"sha256:\" followed by 64 lower-case hex digits")]
    InvalidChainId { chain_id: String },
    #[error(
        "invalid snapshot name {name:?}: namespaces and keys must be non-empty, without '/', and not \".\" or \"..\""
    )]
    InvalidName { name: String },
    #[error("layer for chain {chain_id} unpacked to diff id {actual}, but the image config says {expected}; the layer blob does not belong to this image, re-import it")]
    DiffIdMismatch { chain_id: String, expected: String, actual: String },
    #[error(
        "the image layers this container was made on (snapshot {chain_id}) are not on this host: import or pull the image it was created from again (an image built again with other content has other layers)"
    )]
    MissingParent { chain_id: String },
    #[error("unpacking layer for chain {chain_id}: {source}")]
    Unpack {
        chain_id: String,
        #[source]
        source: UnpackError,
    },
    #[error("overlay mount on {target} failed: {source}; check that the kernel has overlayfs and that the lower directories exist")]
    Mount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error(
        "{target} already has a {fs_type} mount that is not this snapshot's overlay; unmount it or pick another target"
    )]
    TargetBusy { target: PathBuf, fs_type: String },
    #[error("unmounting {target} failed: {source}; a process may still use it, stop the container first")]
    Unmount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot {action} {path}: {source}; check that the berth root is writable and the disk is not full")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A layer unpacked into a temporary directory, not committed yet; see [`Snapshotter::stage_layer`].
#[derive(Debug)]
pub struct StagedLayer {
    pub tmp_dir: PathBuf,
    pub diff_id: String,
}

fn io_error<'path>(action: &'static str, path: &'path Path) -> impl FnOnce(io::Error) -> SnapshotError + 'path {
    move |source| SnapshotError::Io { action, path: path.to_path_buf(), source }
}

/// A container's writable layer and the read-only layers beneath it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSnapshot {
    pub upper: PathBuf,
    pub work: PathBuf,
    /// The committed `fs` directories, bottom layer first.
    pub lowers: Vec<PathBuf>,
}

impl ActiveSnapshot {
    /// The overlay mount options for this snapshot. overlayfs wants the topmost lower first.
    pub fn overlay_options(&self) -> String {
        let lowerdir: Vec<String> = self.lowers.iter().rev().map(|lower| lower.display().to_string()).collect();
        format!("lowerdir={},upperdir={},workdir={}", lowerdir.join(":"), self.upper.display(), self.work.display())
    }
}

/// The overlay snapshotter rooted at `<root>/snapshots`.
#[derive(Debug)]
pub struct Snapshotter {
    committed_root: PathBuf,
    active_root: PathBuf,
    tmp_root: PathBuf,
}

static NEXT_TMP_IDX: AtomicU64 = AtomicU64::new(0);
const MAX_STACKED_UNMOUNTS: usize = 16;

fn chain_hex(chain_id: &str) -> Result<&str, SnapshotError> {
    digest_hex(chain_id).map_err(|_| SnapshotError::InvalidChainId { chain_id: chain_id.to_string() })
}

fn check_name(name: &str) -> Result<(), SnapshotError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(SnapshotError::InvalidName { name: name.to_string() });
    }
    Ok(())
}

impl Snapshotter {
    /// Opens (creating if needed) the snapshot directories in `snapshots_root`
    /// (`Layout::snapshots_dir`).
    pub fn open(snapshots_root: &Path) -> Result<Snapshotter, SnapshotError> {
        let snapshotter = Snapshotter {
            committed_root: snapshots_root.join("committed"),
            active_root: snapshots_root.join("active"),
            tmp_root: snapshots_root.join("tmp"),
        };
        for dir in [&snapshotter.committed_root, &snapshotter.active_root, &snapshotter.tmp_root] {
            create_private_dir_all(dir).map_err(io_error("create", dir))?;
        }
        Ok(snapshotter)
    }

    /// The `fs` directory of a committed snapshot (whether or not it exists). An invalid chain id
    /// gives a path that never exists.
    pub fn committed_dir(&self, chain_id: &str) -> PathBuf {
        match chain_hex(chain_id) {
            Ok(hex_part) => self.committed_root.join(hex_part).join("fs"),
            Err(_) => self.tmp_root.join("invalid-chain-id-never-committed"),
        }
    }

    /// Whether a mounted overlay has this committed layer among its lower directories: the
    /// rootfs of a task that is deleted but not yet unmounted, say. A mount table that cannot
    /// be read says no.
    pub fn committed_in_use(&self, chain_id: &str) -> bool {
        let layer = self.committed_dir(chain_id).to_string_lossy().into_owned();
        mountinfo::read_own().is_ok_and(|mounts| overlay_uses(&mounts, &layer))
    }

    /// True if the layer for this chain id is unpacked and committed.
    pub fn has_committed(&self, chain_id: &str) -> bool {
        chain_hex(chain_id).is_ok() && self.committed_dir(chain_id).is_dir()
    }

    /// A fresh temporary directory (`<tmp>/…/fs`, the layer's root, mode of `/`) to unpack a
    /// layer into before it is committed; returns the directory and its `fs`.
    fn new_tmp_dir(&self, label: &str) -> Result<(PathBuf, PathBuf), SnapshotError> {
        let tmp_dir = self.tmp_root.join(format!(
            "{label}-{}-{}",
            std::process::id(),
            NEXT_TMP_IDX.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp_fs = tmp_dir.join("fs");
        // The layer's root gets the mode of `/` anywhere (its own `./` entry, if any, wins while
        // unpacking); the directory above it, like everything under the root, is private.
        create_dir_with_mode(&tmp_fs, CONTAINER_ROOT_DIR_MODE).map_err(io_error("create", &tmp_fs))?;
        Ok((tmp_dir, tmp_fs))
    }

    /// Unpacks a layer blob into a fresh temporary directory, checks its diff id, and renames it
    /// into place. Already committed → Ok without unpacking again.
    pub fn commit_layer(
        &self,
        chain_id: &str,
        blob: &Path,
        media_type: &str,
        expected_diff_id: &str,
    ) -> Result<(), SnapshotError> {
        let hex_part = chain_hex(chain_id)?.to_string();
        if self.has_committed(chain_id) {
            return Ok(());
        }
        let (tmp_dir, tmp_fs) = self.new_tmp_dir(&format!("commit-{hex_part}"))?;
        let result = unpack_layer(blob, media_type, &tmp_fs)
            .map_err(|source| SnapshotError::Unpack { chain_id: chain_id.to_string(), source })
            .and_then(|actual_diff_id| self.rename_into_place(chain_id, &actual_diff_id, expected_diff_id, &tmp_dir));
        if result.is_err() || tmp_dir.exists() {
            // Best effort: anything left behind is removed by clean_tmp at the next start.
            let _ = fs::remove_dir_all(&tmp_dir);
        }
        result
    }

    /// Unpacks a layer from `reader` before anyone knows its chain id — while its blob is still
    /// streaming in — so the blob is not read back and decompressed a second time.
    pub fn stage_layer(&self, reader: impl std::io::Read) -> Result<StagedLayer, SnapshotError> {
        let (tmp_dir, tmp_fs) = self.new_tmp_dir("staged")?;
        match unpack_layer_reader(reader, None, &tmp_fs) {
            Ok(diff_id) => Ok(StagedLayer { tmp_dir, diff_id }),
            Err(source) => {
                let _ = fs::remove_dir_all(&tmp_dir);
                Err(SnapshotError::Unpack { chain_id: "(staged)".to_string(), source })
            }
        }
    }

    /// Commits a staged layer as `chain_id` when its diff id is the expected one (otherwise
    /// `DiffIdMismatch`); already committed → Ok, and the staged copy is dropped.
    pub fn commit_staged(
        &self,
        chain_id: &str,
        staged: StagedLayer,
        expected_diff_id: &str,
    ) -> Result<(), SnapshotError> {
        chain_hex(chain_id)?;
        let result = match self.has_committed(chain_id) {
            true => Ok(()),
            false => self.rename_into_place(chain_id, &staged.diff_id, expected_diff_id, &staged.tmp_dir),
        };
        if staged.tmp_dir.exists() {
            let _ = fs::remove_dir_all(&staged.tmp_dir);
        }
        result
    }

    fn rename_into_place(
        &self,
        chain_id: &str,
        actual_diff_id: &str,
        expected_diff_id: &str,
        tmp_dir: &Path,
    ) -> Result<(), SnapshotError> {
        if actual_diff_id != expected_diff_id {
            return Err(SnapshotError::DiffIdMismatch {
                chain_id: chain_id.to_string(),
                expected: expected_diff_id.to_string(),
                actual: actual_diff_id.to_string(),
            });
        }
        // Unpacked files are written without fsync one by one (that would be very slow); one
        // syncfs of the file system before the rename makes the whole layer durable first.
        sync_filesystem_of(tmp_dir).map_err(io_error("sync file system of", tmp_dir))?;
        let final_dir = self.committed_root.join(chain_hex(chain_id)?);
        match fs::rename(tmp_dir, &final_dir) {
            Ok(()) => {}
            // A concurrent commit of the same chain won the race; its content is the same.
            Err(error)
                if final_dir.join("fs").is_dir()
                    && matches!(error.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) =>
            {
                return Ok(());
            }
            Err(error) => return Err(io_error("rename into place", &final_dir)(error)),
        }
        sync_dir(&self.committed_root).map_err(io_error("fsync", &self.committed_root))
    }

    fn active_dir(&self, namespace: &str, key: &str) -> Result<PathBuf, SnapshotError> {
        check_name(namespace)?;
        check_name(key)?;
        Ok(self.active_root.join(namespace).join(key))
    }

    /// Creates the writable layer of a container over the given committed layers (bottom first).
    /// Calling it again for the same key returns the same snapshot and keeps the upper content.
    pub fn prepare_active(
        &self,
        namespace: &str,
        key: &str,
        lowers_bottom_to_top: &[String],
    ) -> Result<ActiveSnapshot, SnapshotError> {
        let active_dir = self.active_dir(namespace, key)?;
        let mut lowers = Vec::with_capacity(lowers_bottom_to_top.len());
        for chain_id in lowers_bottom_to_top {
            chain_hex(chain_id)?;
            if !self.has_committed(chain_id) {
                return Err(SnapshotError::MissingParent { chain_id: chain_id.clone() });
            }
            lowers.push(self.committed_dir(chain_id));
        }
        let upper = active_dir.join("upper");
        let work = active_dir.join("work");
        // overlayfs shows the container its `/` with the upper directory's mode: 0755, so its
        // non-root users can walk it. The private `active/<ns>/<id>` above keeps host users out.
        create_dir_with_mode(&upper, CONTAINER_ROOT_DIR_MODE).map_err(io_error("create", &upper))?;
        create_private_dir_all(&work).map_err(io_error("create", &work))?;
        Ok(ActiveSnapshot { upper, work, lowers })
    }

    /// Mounts the overlay of `active` on `target` (which must exist). Already mounted there with
    /// this snapshot's upper directory → Ok; anything else mounted there → `TargetBusy`.
    pub fn mount(&self, active: &ActiveSnapshot, target: &Path) -> Result<(), SnapshotError> {
        // The cheap check first: only a target that is already a mount point needs the
        // mount table read to tell whether it is this snapshot's mount.
        let existing = if is_mount_point(target)? { topmost_mount_at(target)? } else { None };
        if let Some(existing) = existing {
            let ours = existing.fs_type == "overlay"
                && existing.super_option_list().any(|option| option == format!("upperdir={}", active.upper.display()));
            if ours {
                return Ok(());
            }
            return Err(SnapshotError::TargetBusy { target: target.to_path_buf(), fs_type: existing.fs_type });
        }
        let options = active.overlay_options();
        nix::mount::mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
            .map_err(|source| SnapshotError::Mount { target: target.to_path_buf(), source })
    }

    /// Unmounts `target`. Not mounted, or not existing at all → Ok.
    pub fn unmount(target: &Path) -> Result<(), SnapshotError> {
        // Mounts may be stacked when one was repeated outside our idempotence check; unmount
        // until nothing is left, but never loop forever on a mount the kernel will not drop.
        for _ in 0..MAX_STACKED_UNMOUNTS {
            if !is_mount_point(target)? {
                return Ok(());
            }
            match nix::mount::umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
                Ok(()) => {}
                // Gone between our check and the call: someone else unmounted it.
                Err(nix::Error::EINVAL) if !is_mount_point(target)? => return Ok(()),
                Err(source) => return Err(SnapshotError::Unmount { target: target.to_path_buf(), source }),
            }
        }
        Err(SnapshotError::Unmount { target: target.to_path_buf(), source: nix::Error::EBUSY })
    }

    /// Removes a container's writable layer. Absent → Ok. Unmount it first.
    pub fn remove_active(&self, namespace: &str, key: &str) -> Result<(), SnapshotError> {
        let active_dir = self.active_dir(namespace, key)?;
        // The namespace directory stays, even empty: removing it with its last snapshot made
        // every `run --rm` on a quiet host create and delete it again.
        remove_dir_all_tolerant(&active_dir)
    }

    /// Removes a committed layer. Absent → Ok. The caller checks nothing still stacks on it.
    pub fn remove_committed(&self, chain_id: &str) -> Result<(), SnapshotError> {
        match self.move_committed_aside(chain_id)? {
            Some(doomed) => self.delete_moved_aside(&doomed),
            None => Ok(()),
        }
    }

    /// The quick half of a removal: renames the layer out of `committed/` into `tmp/` (durably),
    /// so it is no longer a layer anyone can name, and answers where it went (`None`: it was
    /// not there). A crash before [`Snapshotter::delete_moved_aside`] finishes leaves only a
    /// directory in `tmp/`, which the start-up clean-up empties; never half a layer under a
    /// name `has_committed` would accept.
    pub fn move_committed_aside(&self, chain_id: &str) -> Result<Option<PathBuf>, SnapshotError> {
        let hex_part = chain_hex(chain_id)?;
        let committed = self.committed_root.join(hex_part);
        let doomed = self.tmp_root.join(format!(
            "remove-{hex_part}-{}-{}",
            std::process::id(),
            NEXT_TMP_IDX.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::rename(&committed, &doomed) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("move aside", &committed)(error)),
        }
        sync_dir(&self.committed_root).map_err(io_error("fsync", &self.committed_root))?;
        Ok(Some(doomed))
    }

    /// The slow half: deletes a tree [`Snapshotter::move_committed_aside`] moved aside. Nothing
    /// can name it any more, so it needs no lock against imports.
    pub fn delete_moved_aside(&self, doomed: &Path) -> Result<(), SnapshotError> {
        if !doomed.starts_with(&self.tmp_root) {
            return Err(io_error("delete", doomed)(io::Error::other("not a tree this snapshotter moved aside")));
        }
        if crate::sys::failpoint_armed("snapshot-removal-partway") {
            remove_first_entry_of(&doomed.join("fs"))?;
            crate::sys::failpoint("snapshot-removal-partway");
        }
        remove_dir_all_tolerant(doomed)
    }

    /// Chain ids of every committed layer on disk, sorted.
    pub fn list_committed(&self) -> Result<Vec<String>, SnapshotError> {
        let mut chain_ids_on_disk = Vec::new();
        for name in list_dir_names(&self.committed_root)? {
            let chain_id = format!("sha256:{name}");
            if chain_hex(&chain_id).is_ok() {
                chain_ids_on_disk.push(chain_id);
            }
        }
        chain_ids_on_disk.sort();
        Ok(chain_ids_on_disk)
    }

    /// `(namespace, key)` of every active snapshot on disk, sorted.
    pub fn list_active(&self) -> Result<Vec<(String, String)>, SnapshotError> {
        let mut active = Vec::new();
        for namespace in list_dir_names(&self.active_root)? {
            for key in list_dir_names(&self.active_root.join(&namespace))? {
                active.push((namespace.clone(), key));
            }
        }
        active.sort();
        Ok(active)
    }

    /// Removes leftovers of interrupted commits and removals. Call at start, before any commit.
    pub fn clean_tmp(&self) -> Result<(), SnapshotError> {
        for name in list_dir_names(&self.tmp_root)? {
            remove_dir_all_tolerant(&self.tmp_root.join(name))?;
        }
        Ok(())
    }
}

/// For the crash test of a removal stopped half-way: deletes one entry of the tree.
fn remove_first_entry_of(dir: &Path) -> Result<(), SnapshotError> {
    if let Some(name) = list_dir_names(dir)?.into_iter().min() {
        let path = dir.join(name);
        let removed = match fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        removed.map_err(io_error("remove", &path))?;
    }
    Ok(())
}

fn remove_dir_all_tolerant(dir: &Path) -> Result<(), SnapshotError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error("remove", dir)(error)),
    }
}

fn list_dir_names(dir: &Path) -> Result<Vec<String>, SnapshotError> {
    let mut names = Vec::new();
    let read_dir = match fs::read_dir(dir) {
        Ok(read_dir) => read_dir,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(names),
        Err(error) => return Err(io_error("list", dir)(error)),
    };
    for dir_entry in read_dir {
        let dir_entry = dir_entry.map_err(io_error("list", dir))?;
        if let Some(name) = dir_entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn sync_filesystem_of(path: &Path) -> io::Result<()> {
    let dir = fs::File::open(path)?;
    nix::unistd::syncfs(&dir).map_err(io::Error::from)
}

/// Whether one of `mounts` is an overlay with `layer` in its `lowerdir=` list. (berth mounts
/// with mount(2), whose options the kernel shows as one `lowerdir=` list; an overlay made with
/// the new mount API may show `lowerdir+=` per layer, which this does not read.)
fn overlay_uses(mounts: &[MountInfo], layer: &str) -> bool {
    mounts.iter().filter(|mount| mount.fs_type == "overlay").any(|mount| {
        let lowers = mount.super_option_list().find_map(|option| option.strip_prefix("lowerdir=").map(str::to_string));
        lowers.is_some_and(|lowers| lowers.split(':').any(|lower| lower == layer))
    })
}

/// The mount on top at exactly `target` (the last listed there), if any.
pub fn topmost_mount_at(target: &Path) -> Result<Option<MountInfo>, SnapshotError> {
    let canonical = match fs::canonicalize(target) {
        Ok(canonical) => canonical,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("resolve", target)(error)),
    };
    let mounts = mountinfo::read_own().map_err(io_error("read", Path::new("/proc/self/mountinfo")))?;
    let wanted = canonical.to_string_lossy();
    Ok(mounts.into_iter().rev().find(|mount| mount.mount_point == wanted))
}

/// True if something is mounted exactly on `target`.
pub fn is_mount_point(target: &Path) -> Result<bool, SnapshotError> {
    match mount_root_attribute(target) {
        Some(answer) => answer.map_err(io_error("stat", target)),
        // A kernel without STATX_ATTR_MOUNT_ROOT (before 5.8): read the mount table.
        None => Ok(topmost_mount_at(target)?.is_some()),
    }
}

/// Whether `target` is the root of a mount, from statx's STATX_ATTR_MOUNT_ROOT: one syscall
/// instead of reading /proc/self/mountinfo, which lists every mount on the host. `None` when
/// the kernel does not report the attribute. A missing target is not a mount point.
fn mount_root_attribute(target: &Path) -> Option<io::Result<bool>> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(target.as_os_str().as_bytes()) else {
        return Some(Err(io::Error::from(io::ErrorKind::InvalidInput)));
    };
    // SAFETY: statx only writes into the zeroed struct it is given, which lives until it returns;
    // the path is a NUL-terminated string that outlives the call.
    let mut statx_buf: libc::statx = unsafe { std::mem::zeroed() };
    let result = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
            libc::STATX_BASIC_STATS,
            &mut statx_buf,
        )
    };
    if result != 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ENOENT) => Some(Ok(false)),
            // No statx (an old kernel, or a seccomp filter that refuses it): read the table.
            Some(libc::ENOSYS) | Some(libc::EPERM) => None,
            _ => Some(Err(error)),
        };
    }
    let mount_root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if statx_buf.stx_attributes_mask & mount_root == 0 {
        return None;
    }
    Some(Ok(statx_buf.stx_attributes & mount_root != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_told_apart_the_same_way_by_statx_and_by_the_mount_table() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let target = dir.path().join("mnt");
        assert!(!is_mount_point(&target).unwrap(), "a missing directory is not a mount point");
        fs::create_dir(&target).unwrap();
        assert!(!is_mount_point(&target).unwrap());
        assert_eq!(topmost_mount_at(&target).unwrap().map(|mount| mount.fs_type), None);
        nix::mount::mount(Some("tmpfs"), &target, Some("tmpfs"), MsFlags::empty(), Some("size=1m"))
            .expect("mount tmpfs (root needed)");
        let statx_says = mount_root_attribute(&target).map(Result::unwrap);
        let table_says = topmost_mount_at(&target).unwrap().map(|mount| mount.fs_type);
        Snapshotter::unmount(&target).unwrap();
        assert_eq!(table_says.as_deref(), Some("tmpfs"));
        assert_ne!(statx_says, Some(false), "statx disagrees with the mount table");
        assert!(!is_mount_point(&target).unwrap(), "unmounted again");
        assert!(!is_mount_point(dir.path()).unwrap(), "a plain directory on the same file system");
    }

    #[test]
    fn a_layer_is_in_use_while_an_overlay_names_it_as_a_lower_directory() {
        let mounts: Vec<MountInfo> = [
            "1 0 8:1 / / rw - ext4 /dev/sda1 rw",
            "2 1 0:50 / /b/rootfs rw - overlay overlay rw,lowerdir=/s/c/aa/fs:/s/c/bb/fs,upperdir=/u,workdir=/w",
        ]
        .iter()
        .filter_map(|line| mountinfo::parse_line(line))
        .collect();
        assert!(overlay_uses(&mounts, "/s/c/aa/fs"));
        assert!(overlay_uses(&mounts, "/s/c/bb/fs"));
        assert!(!overlay_uses(&mounts, "/s/c/cc/fs"));
        assert!(!overlay_uses(&mounts, "/u"), "an upper directory is not a lower one");
    }

    #[test]
    fn overlay_options_put_the_top_layer_first() {
        let active =
            ActiveSnapshot { upper: "/u".into(), work: "/w".into(), lowers: vec!["/bottom".into(), "/top".into()] };
        assert_eq!(active.overlay_options(), "lowerdir=/top:/bottom,upperdir=/u,workdir=/w");
    }
}
