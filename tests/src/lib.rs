//! berth-tests: helpers shared by the integration tests in tests/tests/ — a real berthd on a
//! temporary root, state dir and socket, the real `berth` CLI and `berth-replay` against it.
//!
//! These tests need root, runc and the test images (scripts/build-test-images.sh). Where any
//! is missing they fail with what to do; they never pass silently.

pub mod docker_archive;
pub mod oci_archive;
pub mod registry;
pub mod small_fs;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// target/debug (or whichever profile built this test).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> -> target/debug
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// Runs berthd to completion on root, state and socket of its own under `dir`, with
/// `extra_args`: for a second daemon or flags it must refuse.
pub fn berthd_in(dir: &Path, extra_args: &[&str]) -> Output {
    Command::new(bin("berthd"))
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--address")
        .arg(dir.join("berthd.sock"))
        .args(extra_args)
        .stdin(Stdio::null())
        .output()
        .expect("run berthd")
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

pub fn test_images() -> PathBuf {
    let dir = std::env::var_os("BERTH_TESTIMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/berth-testimages"));
    assert!(
        dir.join("busybox-oci.tar").is_file(),
        "test images missing in {}: run scripts/build-test-images.sh",
        dir.display()
    );
    dir
}

pub fn require_root() {
    assert!(nix::unistd::Uid::effective().is_root(), "these tests run real containers and need root");
}

/// A berthd on its own temporary directories.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
    pub namespace: String,
    env: Vec<(String, String)>,
    config_file: Option<PathBuf>,
    /// More berthd flags, from the next (re)start on.
    pub extra_args: Vec<String>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with_env(&[])
    }

    /// Start with a config file from the first start on: `config` gets the daemon's temporary
    /// directory (to set up, say, a small file system in it) and returns the TOML text.
    pub fn start_with_config(config: impl FnOnce(&Path) -> String) -> Daemon {
        let mut daemon = Daemon::unstarted(&[]);
        let toml_text = config(daemon.dir.path());
        daemon.set_config(&toml_text);
        daemon.spawn();
        daemon
    }

    /// Start with extra environment for berthd (e.g. a failpoint).
    pub fn start_with_env(env: &[(&str, &str)]) -> Daemon {
        let mut daemon = Daemon::unstarted(env);
        daemon.spawn();
        daemon
    }

    /// A daemon not started yet: change its socket, flags or environment, then `start_again`
    /// (or `spawn_process` to watch it come up).
    pub fn unstarted(env: &[(&str, &str)]) -> Daemon {
        require_root();
        let dir = tempfile::Builder::new().prefix("berth-it-").tempdir_in("/var/tmp").expect("temp dir");
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let socket = dir.path().join("berthd.sock");
        let mut daemon = Daemon {
            dir,
            root,
            state,
            socket,
            child: None,
            namespace: "default".into(),
            env: Vec::new(),
            config_file: None,
            extra_args: Vec::new(),
        };
        daemon.env = env.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        daemon
    }

    /// Replace berthd's extra environment for the next (re)start.
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
    }

    /// Use this TOML as berthd's config file from the next (re)start on (`--config`).
    pub fn set_config(&mut self, toml_text: &str) {
        let path = self.dir.path().join("berthd.toml");
        std::fs::write(&path, toml_text).expect("write the config file");
        // berthd refuses a config file other users may write, whatever the umask made it.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod the config");
        self.config_file = Some(path);
    }

    /// Wait for berthd to exit by itself (e.g. at a failpoint).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("berthd running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "berthd did not exit:\n{}", tail(&self.daemon_log(), 30));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start berthd again after it stopped by itself.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "berthd still running");
        self.spawn();
    }

    fn spawn(&mut self) {
        self.spawn_process();
        self.wait_until_serving();
    }

    /// Starts berthd and returns at once.
    pub fn spawn_process(&mut self) {
        let log_path = self.dir.path().join("berthd.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("daemon log");
        let child = self
            .berthd_command()
            .env("BERTHD_LOG", "info,berth_runtime=debug")
            .envs(self.env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        self.child = Some(child);
    }

    /// Waits until `berth version` gets an answer (berthd dying meanwhile fails the test).
    pub fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.socket.exists() && self.child.is_some() && self.cli(&["version"]).status.success() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                panic!("berthd exited with {status} during start-up:\n{}", self.daemon_log());
            }
            assert!(Instant::now() < deadline, "berthd did not come up in 30 s:\n{}", self.daemon_log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// berthd with this daemon's root, state, socket, cgroup parent and config file (if any):
    /// for one-shot runs such as `--salvage` or `--archive-now` while the daemon is stopped.
    pub fn berthd_command(&self) -> Command {
        let mut command = Command::new(bin("berthd"));
        command
            .arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--address")
            .arg(&self.socket)
            .arg("--cgroup-parent")
            .arg(self.cgroup_parent())
            .arg("--bridge-name")
            .arg(self.bridge_name())
            .arg("--bridge-subnet")
            .arg(self.bridge_subnet())
            .args(self.config_file.iter().flat_map(|path| [std::ffi::OsStr::new("--config"), path.as_os_str()]))
            .args(&self.extra_args);
        command
    }

    /// Each test daemon's containers get cgroups of their own (`/<temp dir name>/<ns>/<id>`), so
    /// test daemons running at once never share one even when their containers' names match.
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.dir.path().file_name().expect("temp dir name").to_string_lossy())
    }

    /// Each test daemon's default bridge network has a bridge and a /24 of its own, so test
    /// daemons running at once never share addresses or iptables chains.
    pub fn bridge_name(&self) -> String {
        format!("bt{:08x}", self.network_hash())
    }

    /// `10.X.Y.0/24` with X in 200..250, from the same hash as the bridge's name.
    pub fn bridge_subnet(&self) -> String {
        let hash = self.network_hash();
        format!("10.{}.{}.0/24", 200 + (hash >> 8) % 50, hash & 0xff)
    }

    fn network_hash(&self) -> u32 {
        let name = self.dir.path().file_name().expect("temp dir name").to_string_lossy().to_string();
        name.bytes().fold(0x811c_9dc5u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    /// SIGKILL berthd, as a crash would; containers keep running under their monitors.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }

    /// Send SIGTERM and return at once (`wait_for_exit` then bounds how long stopping takes).
    pub fn send_sigterm(&self) {
        let child = self.child.as_ref().expect("berthd running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .expect("send SIGTERM to berthd");
    }

    /// berthd's pid, for tests that signal it themselves.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("berthd running").id()
    }

    /// Append one record to the log while berthd is down: an intent made durable by a berthd
    /// that died before its executor acted on it.
    pub fn inject(&self, namespace: &str, events: Vec<berth_projections::Event>) -> u64 {
        assert!(self.child.is_none(), "stop berthd before injecting into its log");
        let (log, _) =
            berth_log::EventLog::open(&self.root.join("log"), berth_log::LogOptions::default()).expect("open the log");
        let origin = berth_projections::Origin::Client {
            uid: 0,
            gid: 0,
            pid: std::process::id() as i32,
            method: "test/inject".into(),
            request_id: "inject".into(),
        };
        let envelope = berth_projections::Envelope::new(namespace, origin, events);
        log.append(&envelope.encode()).expect("append").get()
    }

    pub fn berth(&self) -> Command {
        let mut command = Command::new(bin("berth"));
        command.arg("--address").arg(&self.socket).arg("--namespace").arg(&self.namespace);
        command.stdin(Stdio::null());
        command
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.berth().args(args).output().expect("run berth")
    }

    /// Run the CLI and insist it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "berth {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndaemon log tail:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            tail(&self.daemon_log(), 40)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn import_busybox(&self) {
        let archive = test_images().join("busybox-oci.tar");
        self.ok(&["image", "import", archive.to_str().unwrap(), "--name", "busybox"]);
    }

    pub fn replay(&self, args: &[&str]) -> Output {
        Command::new(bin("berth-replay")).args(args).arg("--root").arg(&self.root).output().expect("run berth-replay")
    }

    /// `berth-replay history --container ID`: the container's story as the log tells it.
    pub fn history(&self, container_id: &str) -> String {
        let output = self.replay(&["history", "--container", container_id]);
        assert!(output.status.success(), "berth-replay history: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The projections as berth-replay folds them from the log (deterministic JSON).
    pub fn state_dump(&self) -> serde_json::Value {
        let output = self.replay(&["state", "--json"]);
        assert!(output.status.success(), "berth-replay state failed: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("state json")
    }

    /// `berth ps -a --output json`, parsed.
    pub fn ps(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["ps", "-a", "--output", "json"]);
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap_or_else(|error| panic!("ps json: {error}: {out}"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The container's OCI bundle directory (config.json, the etc files, the rootfs mount point).
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.state.join("bundles").join(&self.namespace).join(id)
    }

    /// Whether anything is mounted at or below `path` (read from /proc/self/mountinfo).
    pub fn mounted_under(path: &Path) -> bool {
        let prefix = path.to_string_lossy().to_string();
        mount_targets()
            .expect("read mountinfo")
            .iter()
            .any(|target| *target == prefix || target.starts_with(&format!("{prefix}/")))
    }

    /// runc containers berthd's runc root knows in the namespace.
    pub fn runc_list(&self) -> Vec<String> {
        let output = Command::new("runc")
            .arg("--root")
            .arg(self.state.join("runc").join(&self.namespace))
            .args(["list", "-q"])
            .output()
            .expect("runc list");
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).filter(|line| !line.is_empty()).collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        // Kill and remove every container this daemon left, so nothing leaks between tests.
        if let Ok(namespaces) = std::fs::read_dir(self.state.join("runc")) {
            for namespace in namespaces.flatten() {
                let runc_root = namespace.path();
                let listed = Command::new("runc").arg("--root").arg(&runc_root).args(["list", "-q"]).output();
                if let Ok(listed) = listed {
                    for id in String::from_utf8_lossy(&listed.stdout).lines() {
                        let _ = Command::new("runc").arg("--root").arg(&runc_root).args(["delete", "-f", id]).output();
                    }
                }
            }
        }
        let prefix = self.dir.path().to_string_lossy().to_string();
        let mut targets: Vec<String> =
            mount_targets().unwrap_or_default().into_iter().filter(|t| t.starts_with(&prefix)).collect();
        targets.sort_by_key(|target| std::cmp::Reverse(target.len()));
        for target in targets {
            let _ = nix::mount::umount2(target.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // The netns files are unmounted above, so the containers' veths are gone with their
        // namespaces; the bridge and the iptables rules CNI made for them stay unless removed.
        kill_plugins_left_running(&self.root);
        remove_network_leftovers(&self.bridge_name(), &self.bridge_subnet());
        // runc removes a container's own cgroups; the parents it made stay. Remove the empty
        // ones this daemon's containers used, in every hierarchy.
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for hierarchy in hierarchies.flatten() {
                let parent = hierarchy.path().join(self.cgroup_parent().trim_start_matches('/'));
                if let Ok(namespaces) = std::fs::read_dir(&parent) {
                    for namespace in
                        namespaces.flatten().filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                    {
                        let _ = std::fs::remove_dir(namespace.path());
                    }
                }
                let _ = std::fs::remove_dir(&parent);
            }
        }
    }
}

/// Kills the CNI plugins (and their iptables) a killed berthd with this `root` left running, as
/// berthd's own start-up does (`cni::kill_left_running`), by the CNI ids of its ADD caches
/// (`berth-<token>-…`, `berth-<token>_spare-…`; a plugin runs only while its cache exists); how
/// many. Without this an ADD under way at the kill goes on adding rules after the clean-up.
pub fn kill_plugins_left_running(root: &Path) -> usize {
    let prefixes: std::collections::BTreeSet<String> = std::fs::read_dir(root.join("networks/attachments"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let token_end = name.strip_prefix("berth-")?.find(['-', '_'])? + "berth-".len();
                    Some(name[..token_end].to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    if prefixes.is_empty() {
        return 0;
    }
    // A thread of its own: a runtime cannot be started inside another (a test's, say).
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a tokio runtime");
        prefixes.iter().map(|prefix| runtime.block_on(berth_runtime::network::cni::kill_left_running(prefix))).sum()
    })
    .join()
    .expect("killing the plugins left running")
}

/// Whether process `pid` exists and is not a zombie (this machine's pid 1 may be slow to reap
/// the orphans it inherits).
pub fn is_running(pid: i32) -> bool {
    berth_runtime::sys::process::read_process_stat(pid).is_some_and(|stat| stat.is_running())
}

/// Removes what a killed daemon's default bridge network left on the host: the bridge, and every
/// iptables rule naming its CNI network (`berth-<bridge>`) or an address of its subnet, with the
/// per-container chains those rules jump to. Shared chains (CNI-FORWARD, CNI-HOSTPORT-*) stay.
pub fn remove_network_leftovers(bridge: &str, subnet: &str) {
    let _ = Command::new("ip").args(["link", "delete", bridge]).stderr(Stdio::null()).status();
    let prefix: String = subnet.rsplit_once('.').map(|(head, _)| format!("{head}.")).unwrap_or_default();
    for (table, rule) in network_rules(bridge, &prefix) {
        let deleted = Command::new("sh")
            .arg("-c")
            .arg(format!("iptables -w -t {table} -D {rule}"))
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        let target = rule.split(" -j ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap_or_default();
        let shared = matches!(target, "CNI-FORWARD" | "CNI-ADMIN") || target.starts_with("CNI-HOSTPORT");
        if deleted && target.starts_with("CNI-") && !shared {
            for flag in ["-F", "-X"] {
                let _ = Command::new("iptables").args(["-w", "-t", table.as_str(), flag, target]).status();
            }
        }
    }
}

/// (table, rule without its `-A`) of every iptables rule naming `berth-<bridge>` or an address
/// starting with `prefix`.
pub fn network_rules(bridge: &str, prefix: &str) -> Vec<(String, String)> {
    let Ok(output) = Command::new("iptables-save").output() else { return Vec::new() };
    let network_name = format!("\\\"berth-{bridge}\\\"");
    let mut table = String::new();
    let mut rules = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.to_string();
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let names_address = !prefix.is_empty()
                && rule.split_whitespace().any(|word| word.starts_with(prefix) || word.contains(&format!(":{prefix}")));
            if names_address || rule.contains(&network_name) {
                rules.push((table.clone(), rule.to_string()));
            }
        }
    }
    rules
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Every mount point of this process's mount namespace (field 5 of /proc/self/mountinfo).
pub fn mount_targets() -> std::io::Result<Vec<String>> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mounts.lines().filter_map(|line| line.split(' ').nth(4)).map(str::to_string).collect())
}

/// Poll `check` until it returns Some, or panic after `timeout` with `what`.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
