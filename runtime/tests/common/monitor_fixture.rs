//! Test fixture for the monitor tests: a busybox bundle, a private runc root and a task directory
//! in a temporary directory, built without berth's own image code so these tests stand alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use berth_runtime::tasks::monitor::MonitorPaths;
use berth_runtime::tasks::runc::Runc;
use berth_runtime::tasks::task_dir::TaskDir;

pub const RUNC_BINARY: &str = "/usr/sbin/runc";
pub const BUSYBOX_BINARY: &str = "/bin/busybox";

/// One container's worth of scratch space. Dropping it force-deletes the runc container, so a
/// failing test leaves no container (and no monitor waiting on one) behind.
pub struct TestTask {
    pub runc_id: String,
    pub bundle: PathBuf,
    pub task_dir: TaskDir,
    pub runc_root: PathBuf,
    pub paths: MonitorPaths,
    // Declared last so it is removed after Drop::drop has deleted the container. Some test
    // crates only keep it for that removal.
    #[allow(dead_code)]
    pub temp_dir: tempfile::TempDir,
}

impl TestTask {
    /// Builds a bundle whose process runs `process_args` (e.g. `["sh", "-c", "exit 7"]`).
    pub fn new(test_name: &str, process_args: &[&str]) -> TestTask {
        require_root_and_runc();
        let temp_dir = tempfile::Builder::new()
            .prefix(&format!("berth-monitor-{test_name}-"))
            .tempdir()
            .expect("create a temporary directory");
        let bundle = temp_dir.path().join("bundle");
        let task_dir = temp_dir.path().join("task");
        let runc_root = temp_dir.path().join("runc-root");
        build_busybox_bundle(&bundle, process_args);
        let runc_id = unique_runc_id(test_name);
        let paths = MonitorPaths {
            monitor_binary: PathBuf::from(env!("CARGO_BIN_EXE_berth-monitor")),
            runc: Runc::new(PathBuf::from(RUNC_BINARY), runc_root.clone()),
            output_limits: Default::default(),
            standby: None,
        };
        TestTask { runc_id, bundle, task_dir: TaskDir::new(task_dir), runc_root, paths, temp_dir }
    }
}

impl Drop for TestTask {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop cannot await, and this must also run while a test panics.
        let _ = Command::new(RUNC_BINARY)
            .arg("--root")
            .arg(&self.runc_root)
            .args(["delete", "--force", &self.runc_id])
            .output();
    }
}

/// These tests drive real runc and need root; in CI both are given, so a missing one is a
/// failure with a reason rather than a silent pass.
pub fn require_root_and_runc() {
    assert!(nix::unistd::Uid::effective().is_root(), "the monitor tests run real containers and must run as root");
    assert!(Path::new(RUNC_BINARY).is_file(), "the monitor tests need runc at {RUNC_BINARY}: apt-get install runc");
    assert!(
        Path::new(BUSYBOX_BINARY).is_file(),
        "the monitor tests need a static busybox at {BUSYBOX_BINARY}: apt-get install busybox-static"
    );
}

/// Container ids must be unique machine-wide, not only per runc root: with cgroup v1 runc names
/// the container's cgroups after the id.
fn unique_runc_id(test_name: &str) -> String {
    static N_IDS: AtomicU32 = AtomicU32::new(0);
    format!("berth-test-{test_name}-{}-{}", std::process::id(), N_IDS.fetch_add(1, Ordering::Relaxed))
}

/// rootfs = busybox plus one symlink per applet; config.json = `runc spec` without a terminal
/// and with the requested process.
fn build_busybox_bundle(bundle: &Path, process_args: &[&str]) {
    let rootfs_bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&rootfs_bin).expect("create rootfs/bin");
    std::fs::copy(BUSYBOX_BINARY, rootfs_bin.join("busybox")).expect("copy busybox");
    let applet_list = Command::new(BUSYBOX_BINARY).arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&applet_list.stdout).lines() {
        // The `busybox` applet itself would replace the binary with a symlink to itself.
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        std::os::unix::fs::symlink("busybox", rootfs_bin.join(applet)).expect("link applet");
    }

    let runc_spec = Command::new(RUNC_BINARY).arg("spec").arg("--bundle").arg(bundle).output().expect("run runc spec");
    assert!(runc_spec.status.success(), "runc spec failed: {runc_spec:?}");
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).expect("read config.json")).expect("parse config.json");
    config["process"]["terminal"] = serde_json::Value::Bool(false);
    config["process"]["args"] = serde_json::json!(process_args);
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).expect("serialize config"))
        .expect("write config.json");
}
