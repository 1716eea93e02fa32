//! Who may enter berthd's directories and read its files, and tightening what an older berth
//! left open: observe the modes of the paths berth itself makes, plan (pure) which must lose
//! bits, apply the chmods. Image content is never touched: modes inside a layer (`fs`), a
//! writable layer (`upper`, `work`) or a mounted rootfs belong to the image and the container.
//!
//! Why every mode is what it is (runc 1.1, no user namespace in the spec):
//! - The root and the state directory, and every directory berth makes under them, are 0700;
//!   the socket's directory alone is 0710 for a socket group (`daemon::socket` says why).
//!   Nothing but root needs to walk them: runc resolves the bundle's `rootfs` and the sources of
//!   its bind mounts as root on the host, before `pivot_root`; a non-root container process
//!   only ever sees paths below the new root and its descriptors opened by the monitor; and
//!   overlayfs reaches `lowerdir`, `upperdir` and `workdir` with the credentials of whoever
//!   mounted it (berthd), not of the process looking. A user namespace would change this (runc
//!   would resolve the rootfs as the mapped root): the bundle's parents would then need 0711 and
//!   the bundle itself the mapped root as owner, as containerd does; berth has no user
//!   namespaces yet (ARCHITECTURE.md, known limits).
//! - Files holding container config, output or records (log segments, `config.json`,
//!   `monitor.json`, `exit.json`, output logs, blobs, spooled uploads) are 0600.
//! - A layer's root and a writable layer's `upper` are 0755, like `/` anywhere: overlayfs shows
//!   the container its root with the upper directory's mode, so a non-root container user must
//!   be able to walk it. They are safe only because their parents are 0700.
//! - The bundle's `hostname`, `hosts` and `resolv.conf` are 0644: they are bind-mounted into
//!   the container, whose non-root users read them through the mount (the bundle directory
//!   around them stays 0700).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::daemon::layout::Layout;
use crate::daemon::socket::GROUP_SEARCH_DIR_MODE;
use crate::sys::fs::{PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};

/// A path berth made, as found on disk (symlinks are never observed: berth makes none there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedPath {
    pub path: PathBuf,
    pub is_dir: bool,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// One chmod the plan asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightening {
    pub path: PathBuf,
    pub from_mode: u32,
    pub to_mode: u32,
}

/// Which observed paths must lose bits: directories keep at most [`PRIVATE_DIR_MODE`], files at
/// most [`PRIVATE_FILE_MODE`]. Bits are only ever removed, never added (a file an operator made
/// 0400 stays 0400). `socket_group_dir`, the directory that leads a socket group to the API
/// socket (`daemon::socket`), may keep group search as well.
pub fn plan_tightening(observed: &[ObservedPath], socket_group_dir: Option<&Path>) -> Vec<Tightening> {
    observed
        .iter()
        .filter_map(|found| {
            let allowed = match found.is_dir {
                true if socket_group_dir == Some(found.path.as_path()) => GROUP_SEARCH_DIR_MODE,
                true => PRIVATE_DIR_MODE,
                false => PRIVATE_FILE_MODE,
            };
            let to_mode = found.mode & allowed;
            (to_mode != found.mode).then(|| Tightening { path: found.path.clone(), from_mode: found.mode, to_mode })
        })
        .collect()
}

/// The modes of every path berth makes under the root and the state directory, as they are now.
pub fn observe(layout: &Layout) -> Vec<ObservedPath> {
    let mut observed = Vec::new();
    let mut look = |path: PathBuf| {
        if let Ok(metadata) = std::fs::symlink_metadata(&path) {
            if !metadata.file_type().is_symlink() {
                observed.push(ObservedPath { path, is_dir: metadata.is_dir(), mode: metadata.mode() & 0o7777 });
            }
        }
    };
    look(layout.root.clone());
    look(layout.state.clone());

    look_down(&layout.log_dir(), 1, &mut look);

    // Checkpoints hold the whole state: every container's environment, like the log.
    look_down(&layout.checkpoints_dir(), 1, &mut look);

    let content_dir = layout.content_dir();
    look(content_dir.clone());
    look(content_dir.join("blobs"));
    for store_dir in [content_dir.join("blobs").join("sha256"), content_dir.join("ingest")] {
        look_down(&store_dir, 1, &mut look);
    }

    let snapshots_dir = layout.snapshots_dir();
    look(snapshots_dir.clone());
    for part in ["committed", "tmp"] {
        // committed/<chain hex> (not its `fs`), tmp/<work dir>.
        look_down(&snapshots_dir.join(part), 1, &mut look);
    }
    // active/<ns>/<id> (not its `upper` and `work`).
    look_down(&snapshots_dir.join("active"), 2, &mut look);

    // <ns>/<id>/<file>: the kept task directories, the monitors' working files, and a level
    // deeper each exec's directory.
    look_down(&layout.tasks_dir(), 3, &mut look);
    look_down(&layout.task_state_dir(), 3, &mut look);
    look_down(&layout.execs_dir(), 4, &mut look);

    let bundles_dir = layout.bundles_dir();
    look(bundles_dir.clone());
    for namespace_dir in children(&bundles_dir) {
        look(namespace_dir.clone());
        for bundle_dir in children(&namespace_dir) {
            look(bundle_dir.clone());
            // Only the spec: `rootfs` may be a mounted container root (a chmod there would
            // change the container's `/`) and the files bind-mounted into it stay readable.
            look(bundle_dir.join("config.json"));
        }
    }

    // Not `keys/`: no older berth made it, so a key or key directory open to others was opened
    // by someone, and its key may be copied already; `secrets::keys` refuses it, naming the
    // file, rather than hiding that here.

    look_down(&layout.runc_dir(), 1, &mut look);

    // Conflists, ADD caches, host-local's ipam/<network>/<reservations>; the netns directory
    // but not its files (nsfs mounts, whose mode cannot change).
    let networks_dir = layout.networks_dir();
    look_down(&networks_dir, 1, &mut look);
    children(&networks_dir.join("attachments")).into_iter().for_each(&mut look);
    for ipam_network_dir in children(&networks_dir.join("ipam")) {
        look_down(&ipam_network_dir, 1, &mut look);
    }
    look(layout.netns_dir());
    observed
}

/// Applies the plan; returns what was changed, and the paths whose chmod failed with why.
pub fn apply(plan: &[Tightening]) -> (Vec<Tightening>, Vec<(PathBuf, std::io::Error)>) {
    let mut changed = Vec::new();
    let mut failed = Vec::new();
    for step in plan {
        match std::fs::set_permissions(&step.path, std::fs::Permissions::from_mode(step.to_mode)) {
            Ok(()) => changed.push(step.clone()),
            // Gone since it was observed: nothing is open any more.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => failed.push((step.path.clone(), error)),
        }
    }
    (changed, failed)
}

/// Looks at `dir` and, `levels` deep, at what is under it (in name order).
fn look_down(dir: &Path, levels: usize, look: &mut impl FnMut(PathBuf)) {
    look(dir.to_path_buf());
    if levels > 0 {
        for child in children(dir) {
            look_down(&child, levels - 1, look);
        }
    }
}

/// Entries of `dir`, sorted (none when it is missing or unreadable).
fn children(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(path: &str, is_dir: bool, mode: u32) -> ObservedPath {
        ObservedPath { path: PathBuf::from(path), is_dir, mode }
    }

    #[test]
    fn open_modes_lose_group_and_other_bits_and_private_ones_are_left_alone() {
        let observed = [
            found("/r", true, 0o755),
            found("/r/log", true, 0o700),
            found("/r/log/1.seg", false, 0o644),
            found("/r/log/2.seg", false, 0o600),
            found("/r/log/LOCK", false, 0o400),
            found("/s/bundles/default/web/config.json", false, 0o666),
            found("/s", true, 0o2775),
            found("/r/tasks", true, 0o711),
        ];
        let plan = plan_tightening(&observed, None);
        let as_tuples: Vec<(&str, u32, u32)> =
            plan.iter().map(|step| (step.path.to_str().unwrap(), step.from_mode, step.to_mode)).collect();
        assert_eq!(
            as_tuples,
            [
                ("/r", 0o755, 0o700),
                ("/r/log/1.seg", 0o644, 0o600),
                ("/s/bundles/default/web/config.json", 0o666, 0o600),
                ("/s", 0o2775, 0o700),
                ("/r/tasks", 0o711, 0o700),
            ]
        );
    }

    #[test]
    fn the_socket_groups_directory_keeps_group_search_and_nothing_more() {
        let observed = [found("/s", true, 0o2770), found("/s/bundles", true, 0o710), found("/r", true, 0o710)];
        let plan = plan_tightening(&observed, Some(Path::new("/s")));
        let as_tuples: Vec<(&str, u32, u32)> =
            plan.iter().map(|step| (step.path.to_str().unwrap(), step.from_mode, step.to_mode)).collect();
        assert_eq!(as_tuples, [("/s", 0o2770, 0o710), ("/s/bundles", 0o710, 0o700), ("/r", 0o710, 0o700)]);
    }

    #[test]
    fn image_content_is_never_observed() {
        let temp = tempfile::tempdir().unwrap();
        let layout = Layout {
            root: temp.path().join("root"),
            state: temp.path().join("state"),
            cgroup_parent: "/berth".into(),
            log: None,
        };
        let layer_fs = layout.snapshots_dir().join("committed").join("ab").join("fs");
        let upper = layout.snapshots_dir().join("active").join("default").join("web").join("upper");
        let rootfs = layout.bundle_dir("default", "web").join("rootfs");
        for dir in [&layer_fs, &upper, &rootfs] {
            std::fs::create_dir_all(dir.join("bin")).unwrap();
        }
        let paths: Vec<PathBuf> = observe(&layout).into_iter().map(|found| found.path).collect();
        assert!(paths.contains(&layout.snapshots_dir().join("committed").join("ab")));
        assert!(paths.contains(&layout.snapshots_dir().join("active").join("default").join("web")));
        assert!(paths.contains(&layout.bundle_dir("default", "web")));
        for inside_an_image in [&layer_fs, &upper, &rootfs] {
            assert!(!paths.iter().any(|path| path.starts_with(inside_an_image)), "{inside_an_image:?} observed");
        }
    }
}
