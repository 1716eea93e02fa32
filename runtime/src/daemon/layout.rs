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
//! <root>/tasks/<ns>/<id>/                      a task's monitor files (tasks::task_dir)
//! <root>/volumes/<ns>/<name>/data              a volume's content (tasks::mounts)
//! <root>/keys/<ns>/<id>.key                    a container's secret key (secrets::keys), not
//!                                              derived from the log: deleting it forgets
//! <state>/bundles/<ns>/<id>/                   config.json and the mounted rootfs
//! <state>/runc/<ns>/                           runc's --root
//! <root>/networks/                             conflists, ipam/ (host-local), attachments/ (ADD caches)
//! <state>/netns/<cni container id>             a task's network namespace (network::netns)
//! ```

use std::path::PathBuf;

use crate::tasks::task_dir::TaskDir;

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

    /// Every namespace's task directories.
    pub fn tasks_dir(&self) -> PathBuf {
        self.root.join("tasks")
    }

    /// Persistent per-task files: output, `monitor.json`, `exit.json`, the monitor lock.
    pub fn task_dir(&self, namespace: &str, id: &str) -> TaskDir {
        TaskDir::new(self.tasks_dir().join(namespace).join(id))
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
        assert_eq!(layout.task_dir("a", "x").path(), Path::new("/r/tasks/a/x"));
        assert_eq!(layout.bundle_dir("b", "x"), Path::new("/s/bundles/b/x"));
        assert_eq!(layout.runc_root("a"), Path::new("/s/runc/a"));
        assert_eq!(layout.cgroups_path("a", "x"), "/berth/a/x");
    }
}
