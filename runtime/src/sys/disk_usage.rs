//! How much disk a directory tree uses, measured the way `du -s -B1` counts it (blocks
//! allocated, each hard-linked inode once), without ever leaving the tree: every directory is
//! opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)` relative to
//! the measured directory, so a symlink a container planted in its writable layer (or swapped
//! in for a directory while the walk runs) is counted as the link it is and never followed,
//! and no other file system mounted inside is entered.
//!
//! Only directory paths are kept between steps, never descriptors, so a deep tree costs memory
//! for its names, not one open descriptor per level; what nests deeper than PATH_MAX is not
//! measured below that depth (and the daemon log says so).

use std::collections::HashSet;
use std::ffi::{CStr, OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

/// What a walk found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes allocated (`st_blocks` × 512), directories and the top one included.
    pub disk_bytes: u64,
    /// Entries counted (files, directories, links, …), the top directory included.
    pub n_entries: u64,
}

impl std::ops::AddAssign for DiskUsage {
    fn add_assign(&mut self, other: DiskUsage) {
        self.disk_bytes += other.disk_bytes;
        self.n_entries += other.n_entries;
    }
}

/// Measures `dir` and everything under it on the same file system. An absent `dir` measures
/// as zero; an entry that vanishes while the walk runs is skipped (containers keep writing).
/// `seen` holds the (device, inode) pairs of hard-linked files already counted, so a caller
/// measuring several trees counts a file linked into two of them once, as `du` does.
pub fn measure_tree(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> std::io::Result<DiskUsage> {
    let top_fd =
        match open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(DiskUsage::default()),
            Err(errno) => return Err(errno.into()),
        };
    let top_stat = fstat(&top_fd)?;
    let mut usage = DiskUsage::default();
    count(&top_stat, seen, &mut usage);
    // Directories still to list, relative to `dir`.
    let mut pending: Vec<PathBuf> = vec![PathBuf::from(".")];
    while let Some(relative_dir) = pending.pop() {
        let dir_fd = match open_beneath(&top_fd, &relative_dir) {
            Ok(fd) => fd,
            // Gone, or replaced by a symlink or a mount since it was listed: not ours to follow.
            Err(Errno::ENOENT | Errno::ELOOP | Errno::EXDEV | Errno::ENOTDIR) => continue,
            // Nested past PATH_MAX: counted itself, not what is under it.
            Err(Errno::ENAMETOOLONG) => {
                tracing::warn!(dir = %dir.display(), "a directory nests too deep to measure below it; df undercounts it");
                continue;
            }
            Err(errno) => return Err(errno.into()),
        };
        let mut listing = Dir::from_fd(dir_fd)?;
        let listing_fd = listing.as_fd().try_clone_to_owned()?;
        for entry in listing.iter() {
            let entry = entry?;
            let name = entry.file_name();
            if is_dot_or_dot_dot(name) {
                continue;
            }
            let stat = match fstatat(&listing_fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::ENOENT) => continue,
                Err(errno) => return Err(errno.into()),
            };
            count(&stat, seen, &mut usage);
            let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
            if is_dir && stat.st_dev == top_stat.st_dev {
                pending.push(relative_dir.join(OsStr::from_bytes(name.to_bytes())));
            }
        }
    }
    Ok(usage)
}

fn open_beneath(top_fd: &OwnedFd, relative_dir: &Path) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_XDEV);
    openat2(top_fd, relative_dir, how)
}

fn is_dot_or_dot_dot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

fn count(stat: &FileStat, seen: &mut HashSet<(u64, u64)>, usage: &mut DiskUsage) {
    let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    if !is_dir && stat.st_nlink > 1 && !seen.insert((stat.st_dev, stat.st_ino)) {
        return;
    }
    usage.disk_bytes += (stat.st_blocks as u64) * 512;
    usage.n_entries += 1;
}

/// The names in `dir` (absent: none), for callers that measure each child on its own.
pub fn child_names(dir: &Path) -> std::io::Result<Vec<OsString>> {
    let read_dir = match std::fs::read_dir(dir) {
        Ok(read_dir) => read_dir,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut names = Vec::new();
    for entry in read_dir {
        names.push(entry?.file_name());
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn du(dir: &Path) -> u64 {
        let output = std::process::Command::new("du").args(["-s", "-B1"]).arg(dir).output().expect("run du");
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace().next().unwrap().parse().unwrap()
    }

    #[test]
    fn counts_as_du_does_and_never_follows_a_symlink_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![1_u8; 1 << 20]).unwrap();
        let tree = tempfile::tempdir().unwrap();
        let nested = tree.path().join("a/b/c");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("file"), vec![2_u8; 100_000]).unwrap();
        std::fs::hard_link(nested.join("file"), tree.path().join("a/link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.path().join("a/out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("big"), tree.path().join("big")).unwrap();

        let usage = measure_tree(tree.path(), &mut HashSet::new()).unwrap();
        assert_eq!(usage.disk_bytes, du(tree.path()));
        assert!(usage.disk_bytes < 1 << 20, "followed a symlink out: {usage:?}");
        // top, a, b, c, file, out, big (the hard link counted once).
        assert_eq!(usage.n_entries, 7);
        assert_eq!(measure_tree(&tree.path().join("absent"), &mut HashSet::new()).unwrap(), DiskUsage::default());
    }

    #[test]
    fn a_symlink_given_as_the_top_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.path().join("link")).unwrap();
        assert!(measure_tree(&tree.path().join("link"), &mut HashSet::new()).is_err());
    }

    #[test]
    fn a_deep_tree_needs_no_descriptor_per_level() {
        let tree = tempfile::tempdir().unwrap();
        let mut deep = tree.path().to_path_buf();
        // Deeper than PATH_MAX allows in one path: created step by step.
        let mut current = std::fs::File::open(&deep).unwrap();
        for _ in 0..600 {
            nix::sys::stat::mkdirat(current.as_fd(), "dd", Mode::from_bits_truncate(0o700)).unwrap();
            let next =
                nix::fcntl::openat(current.as_fd(), "dd", OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
            current = std::fs::File::from(next);
            deep.push("dd");
        }
        let usage = measure_tree(tree.path(), &mut HashSet::new()).unwrap();
        assert_eq!(usage.n_entries, 601);
    }
}
