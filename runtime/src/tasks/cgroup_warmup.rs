//! Starting the kernel's wait for a cgroup migration before runc needs it.
//!
//! Moving a process into a cgroup (runc writes the container's init, or an exec's process, to
//! `cgroup.procs`) takes the kernel's global `cgroup_threadgroup_rwsem` for writing. Unless a
//! hierarchy is mounted with `favordynmods`, the first writer after a quiet moment waits for an
//! RCU grace period before it gets the lock; writers that follow within about one more grace
//! period do not. On the machine BENCHMARKS.md was measured on that wait was ~10 ms of a ~29 ms
//! `runc run --detach`, paid by every container start and every `runc exec`.
//!
//! So berthd starts that wait itself as soon as a request that will run a process arrives
//! ([`kick`]): a thread of its own writes berthd's pid to the `cgroup.procs` of the cgroup
//! berthd is already in (a migration that moves nothing, but takes the lock like any other).
//! The grace period then passes while berthd records the intent, mounts the rootfs and runc
//! starts, and runc's own migration finds the lock's fast path open.
//!
//! ## Invariants
//! - The write never moves anything: it names berthd's own process and the cgroup it is in.
//! - It never blocks a caller: [`kick`] hands it to the thread and returns; kicks that come
//!   while one write waits are folded into one more write at most.
//! - Anything unexpected (no cgroup file system, a cgroup berthd may not write, a write that
//!   fails) turns the warm-up off for the life of the process, with one debug line: it is only
//!   ever a head start, never needed.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;

use crate::sys::mountinfo::{self, MountInfo};

/// The warm-up of this process, made at the first kick.
static WARMUP: OnceLock<Option<SyncSender<()>>> = OnceLock::new();

/// Starts the cgroup migration wait now, in the background, if this process can.
pub fn kick() {
    let sender = WARMUP.get_or_init(|| match own_cgroup_procs_file() {
        Some(path) => start(path),
        None => {
            tracing::debug!("no cgroup of berthd's own found; cgroup migrations are not warmed up");
            None
        }
    });
    if let Some(sender) = sender {
        // Full: a write is waiting already and one more is queued; this kick adds nothing.
        let _ = sender.try_send(());
    }
}

/// A thread that writes this process's pid to `path` once per kick.
fn start(path: PathBuf) -> Option<SyncSender<()>> {
    let (sender, kicks) = sync_channel::<()>(1);
    let spawned = std::thread::Builder::new().name("cgroup-warmup".into()).spawn(move || {
        let pid = format!("{}\n", std::process::id());
        let mut file = match File::options().write(true).open(&path) {
            Ok(file) => file,
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "cgroup migrations are not warmed up");
                return;
            }
        };
        for () in kicks {
            if let Err(error) = file.write_all(pid.as_bytes()) {
                tracing::debug!(path = %path.display(), %error, "cgroup migrations are no longer warmed up");
                return;
            }
        }
    });
    match spawned {
        Ok(_) => Some(sender),
        Err(error) => {
            tracing::debug!(%error, "no thread for the cgroup warm-up");
            None
        }
    }
}

/// The `cgroup.procs` file of the cgroup this process is in, on any mounted hierarchy (the
/// lock is the same for all of them): the unified one when it is mounted, else the first v1
/// hierarchy found.
fn own_cgroup_procs_file() -> Option<PathBuf> {
    let memberships = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup_procs_file(&memberships, &mounts).filter(|path| path.is_file())
}

/// [`own_cgroup_procs_file`] from the text of `/proc/self/cgroup` and `/proc/self/mountinfo`.
fn cgroup_procs_file(memberships: &str, mounts: &str) -> Option<PathBuf> {
    let mounts: Vec<MountInfo> = mounts
        .lines()
        .filter_map(mountinfo::parse_line)
        .filter(|mount| matches!(mount.fs_type.as_str(), "cgroup" | "cgroup2"))
        .collect();
    let mut candidates = Vec::new();
    for line in memberships.lines() {
        // hierarchy-id:controllers:path; v2 is `0::path`.
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let mount = mounts.iter().find(|mount| {
            if controllers.is_empty() {
                return mount.fs_type == "cgroup2";
            }
            // A v1 hierarchy's super options name its controllers (and `name=…`).
            mount.fs_type == "cgroup"
                && controllers
                    .split(',')
                    .all(|controller| mount.super_options.split(',').any(|option| option == controller))
        });
        let Some(mount) = mount else { continue };
        // The mount shows the hierarchy from `root` down; a path outside it is not reachable.
        let Ok(relative) = Path::new(path).strip_prefix(&mount.root) else { continue };
        let file = Path::new(&mount.mount_point).join(relative).join("cgroup.procs");
        if controllers.is_empty() {
            return Some(file);
        }
        candidates.push(file);
    }
    candidates.into_iter().next()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::TrySendError;

    use super::*;

    const HYBRID_MOUNTS: &str = "\
25 20 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/cpu\\040set rw,relatime - cgroup cgroup rw,cpuset
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 /inner /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn the_unified_hierarchy_comes_first_then_the_first_v1_one() {
        let hybrid =
            "5:memory:/inner/berthd\n4:cpu,cpuacct:/system.slice\n3:cpuset:/\n0::/system.slice/berthd.service\n";
        assert_eq!(
            cgroup_procs_file(hybrid, HYBRID_MOUNTS),
            Some(PathBuf::from("/sys/fs/cgroup/unified/system.slice/berthd.service/cgroup.procs"))
        );
        let v1_only = "5:memory:/inner/berthd\n4:cpu,cpuacct:/system.slice\n";
        assert_eq!(
            cgroup_procs_file(v1_only, HYBRID_MOUNTS),
            Some(PathBuf::from("/sys/fs/cgroup/memory/berthd/cgroup.procs")),
            "the memory mount shows the hierarchy from /inner down"
        );
        assert_eq!(
            cgroup_procs_file("3:cpuset:/a b\n", HYBRID_MOUNTS),
            Some(PathBuf::from("/sys/fs/cgroup/cpu set/a b/cgroup.procs"))
        );
    }

    #[test]
    fn nothing_reachable_gives_none() {
        assert_eq!(cgroup_procs_file("5:memory:/elsewhere\n", HYBRID_MOUNTS), None, "outside the mount's root");
        assert_eq!(cgroup_procs_file("2:freezer:/\n", HYBRID_MOUNTS), None, "hierarchy not mounted");
        assert_eq!(cgroup_procs_file("0::/\n", "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"), None);
        assert_eq!(cgroup_procs_file("garbage\n", "garbage\n"), None);
    }

    #[test]
    fn each_kick_writes_the_pid_and_a_failing_file_ends_it_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cgroup.procs");
        std::fs::write(&path, "").unwrap();
        let sender = start(path.clone()).unwrap();
        sender.send(()).unwrap();
        sender.send(()).unwrap();
        let expected = format!("{0}\n{0}\n", std::process::id());
        for _ in 0..200 {
            if std::fs::read_to_string(&path).unwrap() == expected {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
        let gone = start(dir.path().join("missing/cgroup.procs")).unwrap();
        let disconnected = |sender: &SyncSender<()>| matches!(sender.try_send(()), Err(TrySendError::Disconnected(())));
        for _ in 0..200 {
            if disconnected(&gone) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(disconnected(&gone), "the thread ended: nothing takes kicks any more");
    }
}
