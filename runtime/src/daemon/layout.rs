//! Where everything berthd keeps lives: the one place a path under the root or the state
//! directory is spelled. Everything outside `log/` is derived from the log or reconciled with it
//! at start-up.
//!
//! ```text
//! <root>/log/                                  the event log (the only source of truth; `[log] dir`
//!                                              or --log-dir puts it elsewhere)
//! <root>/log.anchor                            its last durable (seq, hash), checked at start-up
//! <root>/log.archive/                          archived log segments (`[log] archive_dir` moves it)
//! <root>/checkpoints/<20-digit seq>.ckpt       projection checkpoints (daemon::checkpoint); the newest vouched one bounds archiving
//! <root>/content/blobs/sha256/<hex>            blobs; <root>/content/ingest/ temporary files
//! <root>/snapshots/committed/<chain-hex>/fs    unpacked layers; active/<ns>/<id>/{upper,work}
//! <root>/tasks/<ns>/<id>/                      a task's output and exit.json (tasks::task_dir)
//! <root>/volumes/<ns>/<name>/data              a volume's content (tasks::mounts)
//! <root>/keys/<ns>/<id>.key                    a container's secret key (secrets::keys), not
//!                                              derived from the log: deleting it forgets
//! <state>/bundles/<ns>/<id>/                   config.json and the mounted rootfs
//! <state>/runc/<ns>/                           runc's --root
//! <state>/tasks/<ns>/<id>/                     a task's monitor files (tasks::task_dir)
//! <state>/execs/<ns>/<id>/<exec id>/            one `berth exec`'s monitor files and output, laid
//!                                              out as a task directory (volatile, as bundles:
//!                                              an exec does not outlive the host)
//! <root>/networks/                             conflists, ipam/ (host-local), attachments/ (ADD caches)
//! <state>/netns/<cni container id>             a task's network namespace (network::netns)
//! ```

use std::path::PathBuf;

use crate::tasks::task_dir::{TaskDir, MONITOR_LOCK_FILE};

/// The folder of a task directory where berth before exec directories moved to the state
/// directory kept them.
const LEGACY_EXECS_DIR: &str = "execs";

/// Where everything lives.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub state: PathBuf,
    /// Absolute cgroup path, checked by `config::check_cgroup_parent`.
    pub cgroup_parent: String,
    /// The log's directory when it is not `<root>/log`: a file system of its own, so that
    /// containers filling theirs (writable layers live under the root) cannot fill the log's.
    pub log: Option<PathBuf>,
}

impl Layout {
    pub fn log_dir(&self) -> PathBuf {
        self.log.clone().unwrap_or_else(|| self.root.join(berth_log::LOG_DIR_NAME))
    }

    /// The log's anchor (last durable seq and hash), beside the log directory and outside it,
    /// so that deleting segment files does not delete it too.
    pub fn log_anchor(&self) -> PathBuf {
        self.root.join(berth_log::ANCHOR_FILE_NAME)
    }

    /// Where archived log segments go unless `[log] archive_dir` says otherwise.
    pub fn default_log_archive_dir(&self) -> PathBuf {
        self.root.join("log.archive")
    }

    /// Projection checkpoints, `<20-digit seq>.ckpt` (`daemon::checkpoint`): derived from the
    /// log, and what tells which segments lie wholly before the newest checkpoint.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The content store's directory (`blobs/`, `ingest/`).
    pub fn content_dir(&self) -> PathBuf {
        self.root.join("content")
    }

    /// The snapshotter's directory (`committed/`, `active/`, `tmp/`).
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Every namespace's kept task directories (output, `exit.json`).
    pub fn tasks_dir(&self) -> PathBuf {
        self.root.join("tasks")
    }

    /// Every namespace's task directories for the monitors' working files.
    pub fn task_state_dir(&self) -> PathBuf {
        self.state.join("tasks")
    }

    /// A task's directory: the monitor's working files under the state directory, output and
    /// `exit.json` under the root (`tasks::task_dir`). Where the state directory holds none for
    /// it but the root's has a `monitor.lock`, the task's monitor was started by a berth that
    /// kept everything under the root: that directory alone then, so the monitor is still found
    /// (a new task empties it first and starts in the split layout).
    pub fn task_dir(&self, namespace: &str, id: &str) -> TaskDir {
        let state_dir = self.task_state_dir().join(namespace).join(id);
        let kept_dir = self.tasks_dir().join(namespace).join(id);
        if !state_dir.exists() && kept_dir.join(MONITOR_LOCK_FILE).exists() {
            return TaskDir::new(kept_dir);
        }
        TaskDir::split(state_dir, kept_dir)
    }

    /// Every namespace's volumes.
    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// One volume: `data/` is what containers mount (made at first use).
    pub fn volume_dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.volumes_dir().join(namespace).join(name)
    }

    /// Every container's secret key (`secrets::keys`).
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join(berth_projections::sealed::KEYS_DIR_NAME)
    }

    /// Every namespace's bundles.
    pub fn bundles_dir(&self) -> PathBuf {
        self.state.join("bundles")
    }

    /// The OCI bundle: config.json and the rootfs mount point.
    pub fn bundle_dir(&self, namespace: &str, id: &str) -> PathBuf {
        self.bundles_dir().join(namespace).join(id)
    }

    /// Every namespace's exec directories.
    pub fn execs_dir(&self) -> PathBuf {
        self.state.join("execs")
    }

    /// The exec directories of one container's current task.
    pub fn task_execs_dir(&self, namespace: &str, id: &str) -> PathBuf {
        self.execs_dir().join(namespace).join(id)
    }

    /// Where berthd makes the directory of exec `exec_id`: in the state directory, which is a
    /// tmpfs where the host mounts one on `/run` (the default), so the ten files an exec's
    /// monitor, runc and berthd create cost no disk metadata.
    pub fn exec_dir(&self, namespace: &str, id: &str, exec_id: &str) -> TaskDir {
        TaskDir::new(self.task_execs_dir(namespace, id).join(exec_id))
    }

    /// The directory of an exec that may have been started by a berthd that kept exec
    /// directories inside the task directory (`<root>/tasks/<ns>/<id>/execs/<exec id>`): that one
    /// when it exists and the new one does not, so execs running across an upgrade are still
    /// found. The old directories go with their task directory.
    pub fn existing_exec_dir(&self, namespace: &str, id: &str, exec_id: &str) -> TaskDir {
        let exec_dir = self.exec_dir(namespace, id, exec_id);
        if !exec_dir.path().exists() {
            let earlier = self.tasks_dir().join(namespace).join(id).join(LEGACY_EXECS_DIR).join(exec_id);
            if earlier.is_dir() {
                return TaskDir::new(earlier);
            }
        }
        exec_dir
    }

    /// Every namespace's runc state.
    pub fn runc_dir(&self) -> PathBuf {
        self.state.join("runc")
    }

    /// runc's --root, one per namespace so ids only need to be unique inside one.
    pub fn runc_root(&self, namespace: &str) -> PathBuf {
        self.runc_dir().join(namespace)
    }

    /// Networks' conflists, host-local's data (`ipam/`) and CNI ADD caches (`attachments/`).
    pub fn networks_dir(&self) -> PathBuf {
        self.root.join("networks")
    }

    /// Tasks' network namespace files.
    pub fn netns_dir(&self) -> PathBuf {
        self.state.join("netns")
    }

    pub fn cgroups_path(&self, namespace: &str, id: &str) -> String {
        format!("{}/{namespace}/{id}", self.cgroup_parent)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn layout_keeps_namespaces_apart() {
        let layout =
            Layout { root: PathBuf::from("/r"), state: PathBuf::from("/s"), cgroup_parent: "/berth".into(), log: None };
        assert_eq!(layout.task_dir("a", "x").path(), Path::new("/s/tasks/a/x"));
        assert_eq!(layout.task_dir("a", "x").kept_dir(), Path::new("/r/tasks/a/x"));
        assert_eq!(layout.bundle_dir("b", "x"), Path::new("/s/bundles/b/x"));
        assert_eq!(layout.runc_root("a"), Path::new("/s/runc/a"));
        assert_eq!(layout.cgroups_path("a", "x"), "/berth/a/x");
        assert_eq!(layout.exec_dir("a", "x", "e1").path(), Path::new("/s/execs/a/x/e1"));
    }

    fn layout_in(dir: &Path) -> Layout {
        Layout { root: dir.join("root"), state: dir.join("state"), cgroup_parent: "/berth".into(), log: None }
    }

    #[test]
    fn an_exec_an_older_berth_started_is_found_in_its_task_directory_and_new_ones_in_the_state() {
        let scratch = tempfile::tempdir().unwrap();
        let layout = layout_in(scratch.path());
        // Nothing anywhere: where a new exec goes.
        assert_eq!(layout.existing_exec_dir("ns", "c", "old"), layout.exec_dir("ns", "c", "old"));
        let earlier = scratch.path().join("root/tasks/ns/c/execs/old");
        std::fs::create_dir_all(&earlier).unwrap();
        assert_eq!(layout.existing_exec_dir("ns", "c", "old").path(), earlier);
        // Both: the state directory's wins (the older one belongs to an earlier task).
        std::fs::create_dir_all(layout.exec_dir("ns", "c", "old").path()).unwrap();
        assert_eq!(layout.existing_exec_dir("ns", "c", "old"), layout.exec_dir("ns", "c", "old"));
    }

    #[test]
    fn a_task_an_older_berth_started_keeps_its_one_directory_until_the_next_task() {
        let scratch = tempfile::tempdir().unwrap();
        let layout = layout_in(scratch.path());
        let kept = scratch.path().join("root/tasks/ns/c");
        let split = layout.task_dir("ns", "c");
        assert_eq!(
            (split.path(), split.kept_dir()),
            (scratch.path().join("state/tasks/ns/c").as_path(), kept.as_path())
        );
        // An older berth's monitor: its lock (and everything else) under the root.
        std::fs::create_dir_all(&kept).unwrap();
        std::fs::write(kept.join(MONITOR_LOCK_FILE), "").unwrap();
        let legacy = layout.task_dir("ns", "c");
        assert_eq!((legacy.path(), legacy.kept_dir()), (kept.as_path(), kept.as_path()));
        // The next task empties it and starts split.
        legacy.remove().unwrap();
        assert_eq!(layout.task_dir("ns", "c"), split);
    }
}
