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
//! The write takes the host-wide `cgroup_mutex` first and holds it through the grace period, as
//! runc's own write does: cgroup directories made or removed meanwhile (runc's `mkdir`s for the
//! container) wait for it, which costs them nothing they would not have waited for in runc's
//! write.
//!
//! ## Invariants
//! - The write never moves anything: it names berthd's own process and the cgroup it is in. The
//!   file is used only if it lists berthd's pid when opened, and before each write berthd's
//!   `/proc/self/cgroup` must still name it: berthd moved by someone else is never moved back.
//! - It never blocks a caller: [`kick`] only hands a token to the warm-up thread (the first one
//!   also starts it; the thread finds the file); kicks that come while a write waits are folded
//!   into one more write at most.
//! - Anything unexpected (no cgroup file system, a cgroup berthd may not write, berthd moved, a
//!   write that fails) turns the warm-up off for the life of the process, with one debug line:
//!   it is only ever a head start, never needed.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;

use crate::sys::mountinfo::{self, MountInfo};

/// The warm-up of this process, started at the first kick.
static WARMUP: OnceLock<Option<SyncSender<()>>> = OnceLock::new();

/// Starts the cgroup migration wait now, in the background, if this process can.
pub fn kick() {
    if let Some(sender) = WARMUP.get_or_init(|| start(Warmer::for_this_process)) {
        // Full: a write is waiting already and one more is queued; this kick adds nothing.
        let _ = sender.try_send(());
    }
}

/// What the warm-up thread writes to, and how it knows the file is still berthd's own cgroup.
struct Warmer {
    path: PathBuf,
    file: File,
    still_ours: Box<dyn Fn(&Path) -> bool + Send>,
}

impl Warmer {
    /// The `cgroup.procs` of the cgroup this process is in, checked to list this process.
    fn for_this_process() -> Result<Warmer, String> {
        let mounts = mountinfo::read_own().map_err(|error| format!("cannot read the mount table: {error}"))?;
        let memberships = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|error| format!("cannot read its cgroups: {error}"))?;
        let path = cgroup_procs_file(&memberships, &mounts).ok_or("no mounted hierarchy shows its cgroup")?;
        let pid = std::process::id().to_string();
        let listed = std::fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?
            .lines()
            .any(|line| line == pid);
        if !listed {
            return Err(format!("{} does not list berthd", path.display()));
        }
        let file = File::options()
            .write(true)
            .open(&path)
            .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
        let still_ours = Box::new(move |path: &Path| {
            std::fs::read_to_string("/proc/self/cgroup")
                .is_ok_and(|memberships| cgroup_procs_file(&memberships, &mounts).as_deref() == Some(path))
        });
        Ok(Warmer { path, file, still_ours })
    }

    fn write(&mut self) -> Result<(), String> {
        if !(self.still_ours)(&self.path) {
            return Err("berthd is no longer in that cgroup".to_string());
        }
        self.file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(|error| error.to_string())
    }
}

/// A thread that sets itself up with `open`, then writes once per kick.
fn start(open: impl FnOnce() -> Result<Warmer, String> + Send + 'static) -> Option<SyncSender<()>> {
    let (sender, kicks) = sync_channel::<()>(1);
    let spawned = std::thread::Builder::new().name("cgroup-warmup".into()).spawn(move || {
        let mut warmer = match open() {
            Ok(warmer) => warmer,
            Err(reason) => {
                tracing::debug!(%reason, "cgroup migrations are not warmed up");
                return;
            }
        };
        tracing::debug!(path = %warmer.path.display(), "cgroup migrations are warmed up through this file");
        for () in kicks {
            if let Err(reason) = warmer.write() {
                tracing::debug!(path = %warmer.path.display(), %reason, "cgroup migrations are no longer warmed up");
                return;
            }
            tracing::debug!("cgroup migration lock warmed");
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

/// The `cgroup.procs` file of the cgroup named in `memberships` (the text of
/// `/proc/self/cgroup`) on any mounted hierarchy (the lock is the same for all of them): the
/// unified one when it is mounted, else the first v1 hierarchy found. Of several mounts of one
/// hierarchy the topmost (listed last) is tried first, and each in turn until one shows the
/// cgroup.
fn cgroup_procs_file(memberships: &str, mounts: &[MountInfo]) -> Option<PathBuf> {
    let mut v1_files = Vec::new();
    for line in memberships.lines() {
        // hierarchy-id:controllers:path; v2 is `0::path`.
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let shows_hierarchy = |mount: &&MountInfo| {
            if controllers.is_empty() {
                return mount.fs_type == "cgroup2";
            }
            // A v1 hierarchy's super options name its controllers (and `name=…`).
            mount.fs_type == "cgroup"
                && controllers.split(',').all(|controller| mount.super_option_list().any(|option| option == controller))
        };
        // A mount another one was later made on top of is hidden: the path would lead through the
        // one on top. The mount shows the hierarchy from its root down; a path outside it is not
        // reachable through it.
        let visible = |(index, mount): &(usize, &MountInfo)| {
            !mounts[index + 1..].iter().any(|later| later.mount_point == mount.mount_point)
        };
        let file =
            mounts.iter().enumerate().filter(visible).map(|(_, mount)| mount).rev().filter(shows_hierarchy).find_map(
                |mount| {
                    let relative = Path::new(path).strip_prefix(&mount.root).ok()?;
                    Some(Path::new(&mount.mount_point).join(relative).join("cgroup.procs"))
                },
            );
        match file {
            Some(file) if controllers.is_empty() => return Some(file),
            Some(file) => v1_files.push(file),
            None => {}
        }
    }
    v1_files.into_iter().next()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::TrySendError;
    use std::time::Duration;

    use super::*;

    const HYBRID_MOUNTS: &str = "\
25 20 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/cpu\\040set rw,relatime - cgroup cgroup rw,cpuset
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 /inner /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";

    fn mounts(text: &str) -> Vec<MountInfo> {
        text.lines().filter_map(mountinfo::parse_line).collect()
    }

    #[test]
    fn the_unified_hierarchy_comes_first_then_the_first_v1_one() {
        let hybrid =
            "5:memory:/inner/berthd\n4:cpu,cpuacct:/system.slice\n3:cpuset:/\n0::/system.slice/berthd.service\n";
        assert_eq!(
            cgroup_procs_file(hybrid, &mounts(HYBRID_MOUNTS)),
            Some(PathBuf::from("/sys/fs/cgroup/unified/system.slice/berthd.service/cgroup.procs"))
        );
        let v1_only = "5:memory:/inner/berthd\n4:cpu,cpuacct:/system.slice\n";
        assert_eq!(
            cgroup_procs_file(v1_only, &mounts(HYBRID_MOUNTS)),
            Some(PathBuf::from("/sys/fs/cgroup/memory/berthd/cgroup.procs")),
            "the memory mount shows the hierarchy from /inner down"
        );
        assert_eq!(
            cgroup_procs_file("3:cpuset:/a b\n", &mounts(HYBRID_MOUNTS)),
            Some(PathBuf::from("/sys/fs/cgroup/cpu set/a b/cgroup.procs"))
        );
    }

    #[test]
    fn a_hidden_mount_is_never_used() {
        // A cgroup2 mounted over another at the same place, showing the hierarchy from /inner.
        let stacked = "\
30 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
31 1 0:30 /inner /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup_procs_file("0::/inner/berthd\n", &mounts(stacked)),
            Some(PathBuf::from("/sys/fs/cgroup/berthd/cgroup.procs"))
        );
        assert_eq!(cgroup_procs_file("0::/other\n", &mounts(stacked)), None, "only the hidden mount shows it");
    }

    #[test]
    fn nothing_reachable_gives_none() {
        let hybrid = mounts(HYBRID_MOUNTS);
        assert_eq!(cgroup_procs_file("5:memory:/elsewhere\n", &hybrid), None, "outside the mount's root");
        assert_eq!(cgroup_procs_file("2:freezer:/\n", &hybrid), None, "hierarchy not mounted");
        assert_eq!(cgroup_procs_file("0::/\n", &mounts("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n")), None);
        assert_eq!(cgroup_procs_file("garbage\n", &mounts("garbage\n")), None);
    }

    /// A warmer writing to a plain file, `still_ours` telling whether it may.
    fn file_warmer(path: PathBuf, still_ours: bool) -> impl FnOnce() -> Result<Warmer, String> + Send + 'static {
        move || {
            let file = File::options().write(true).open(&path).map_err(|error| error.to_string())?;
            Ok(Warmer { path, file, still_ours: Box::new(move |_| still_ours) })
        }
    }

    /// Waits up to two seconds for `path` to hold `expected`.
    fn wait_for_contents(path: &Path, expected: &str) {
        for _ in 0..400 {
            if std::fs::read_to_string(path).unwrap() == expected {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn ends(sender: &SyncSender<()>) -> bool {
        for _ in 0..400 {
            if matches!(sender.try_send(()), Err(TrySendError::Disconnected(()))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn kicks_that_come_while_a_write_waits_make_one_more_write_at_most() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cgroup.procs");
        std::fs::write(&path, "").unwrap();
        // Each write waits for a gate, as a write waits for the grace period.
        let (gates, gate) = std::sync::mpsc::channel::<()>();
        let gate = std::sync::Mutex::new(gate);
        let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
        let entered_tx = std::sync::Mutex::new(entered_tx);
        let open_path = path.clone();
        let sender = start(move || {
            let file = File::options().write(true).open(&open_path).map_err(|error| error.to_string())?;
            let still_ours = Box::new(move |_: &Path| {
                let _ = entered_tx.lock().unwrap().send(());
                gate.lock().unwrap().recv().is_ok()
            });
            Ok(Warmer { path: open_path, file, still_ours })
        })
        .unwrap();
        sender.try_send(()).unwrap();
        entered.recv_timeout(Duration::from_secs(5)).expect("the first write began");
        let taken: usize = (0..10).map(|_| usize::from(sender.try_send(()).is_ok())).sum();
        assert_eq!(taken, 1, "one kick queued behind the waiting write, the rest folded into it");
        for _ in 0..2 {
            gates.send(()).unwrap();
        }
        let expected = format!("{0}\n{0}\n", std::process::id());
        wait_for_contents(&path, &expected);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected, "two writes for eleven kicks");
    }

    #[test]
    fn each_kick_writes_the_pid_and_anything_wrong_ends_the_warm_up_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cgroup.procs");
        std::fs::write(&path, "").unwrap();
        let sender = start(file_warmer(path.clone(), true)).unwrap();
        sender.send(()).unwrap();
        sender.send(()).unwrap();
        let expected = format!("{0}\n{0}\n", std::process::id());
        wait_for_contents(&path, &expected);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);

        let unopenable = start(file_warmer(dir.path().join("missing/cgroup.procs"), true)).unwrap();
        assert!(ends(&unopenable), "a file that cannot be opened ends it");

        let moved_path = dir.path().join("moved.procs");
        std::fs::write(&moved_path, "").unwrap();
        let moved = start(file_warmer(moved_path.clone(), false)).unwrap();
        assert!(ends(&moved), "berthd moved elsewhere ends it");
        assert_eq!(std::fs::read_to_string(&moved_path).unwrap(), "", "and nothing was written");
    }
}
