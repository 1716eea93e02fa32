//! The network gate: how a task on a CNI network starts while its network is still being
//! attached, without its process running before the network is there.
//!
//! berthd makes the task's network namespace first, then starts the monitor (and with it runc)
//! and runs CNI ADD at the same time. The spec carries a `createRuntime` hook, `berth-monitor
//! await-network GATE`, which runc runs once the container's namespaces, cgroups and mounts are
//! set up and before its process may start. The hook waits on the gate, a FIFO in the task's
//! directory: berthd writes `go` there once ADD succeeded and `/etc/hosts` names the address.
//!
//! berthd opens the gate for reading and writing before the monitor starts and keeps it open
//! until runc has returned, so the hook never waits for a writer to appear, and sees EOF when
//! berthd gives up (ADD failed: the descriptor is closed without a word) or dies (the kernel
//! closes it). Either way the hook fails, so runc fails the create, and nothing ran without
//! its network. The descriptor is close-on-exec: no child of berthd holds the gate open.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hook, HookBuilder, HooksBuilder, Spec};

use crate::tasks::task_dir::TaskDir;

/// The gate's file name in the task's directory (the state directory's half).
pub const GATE_FILE: &str = "network.gate";
/// berth-monitor's first argument when runc runs it as the gate's hook.
pub const HOOK_COMMAND: &str = "await-network";
/// What berthd writes to open the gate.
const GO: &[u8] = b"go\n";
/// runc kills the hook after this long: longer than an ADD whose plugins all run to their own
/// time limit would take, so only a stuck berthd reaches it.
const HOOK_TIMEOUT_SECS: i64 = 300;

/// berthd's end of a task's gate: made before the monitor starts, dropped once runc returned.
#[derive(Debug)]
pub struct NetworkGate {
    path: PathBuf,
    file: File,
}

impl NetworkGate {
    /// Makes the gate (0600, replacing one an earlier attempt left) and opens it for reading and
    /// writing, so that it has a writer for as long as this value lives.
    pub fn open(task_dir: &TaskDir) -> std::io::Result<NetworkGate> {
        let path = task_dir.make_fifo(GATE_FILE)?;
        // O_RDWR on a FIFO never waits for the other end (Linux); std adds O_CLOEXEC.
        let file = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(&path)?;
        Ok(NetworkGate { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lets the hook return, and with it runc go on to start the process. The word fits the
    /// FIFO's buffer, which nobody else writes, so the write neither blocks nor is cut.
    pub fn open_the_gate(&mut self) -> std::io::Result<()> {
        self.file.write_all(GO)
    }
}

impl Drop for NetworkGate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Adds the gate's hook to `spec`: runc runs `monitor_binary await-network GATE` in berthd's
/// namespaces before the container's process may start.
pub fn add_hook(spec: &mut Spec, monitor_binary: &Path, gate: &Path) -> Result<(), String> {
    if !monitor_binary.is_absolute() {
        return Err(format!(
            "runc needs berth-monitor's absolute path for the network gate's hook, and berthd has {}: set berthd's --monitor to it",
            monitor_binary.display()
        ));
    }
    let hook: Hook = HookBuilder::default()
        .path(monitor_binary)
        .args(vec!["berth-monitor".to_string(), HOOK_COMMAND.to_string(), gate.display().to_string()])
        .timeout(HOOK_TIMEOUT_SECS)
        .build()
        .map_err(|error| format!("cannot describe the network gate's hook: {error}"))?;
    let mut hooks = spec.hooks().clone().unwrap_or_else(|| HooksBuilder::default().build().expect("empty hooks"));
    let mut create_runtime = hooks.create_runtime().clone().unwrap_or_default();
    create_runtime.push(hook);
    hooks.set_create_runtime(Some(create_runtime));
    spec.set_hooks(Some(hooks));
    Ok(())
}

/// The hook's side, in berth-monitor: waits for berthd's word on `gate`. Err (for runc to show
/// in its error) when berthd closed the gate without it or was not there.
pub fn await_gate(gate: &Path) -> Result<(), String> {
    // Non-blocking open: a gate without a writer means berthd is gone, not "wait for one".
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(gate)
        .map_err(|error| format!("cannot open the network gate {}: {error}", gate.display()))?;
    // Then wait for the word (or EOF) in blocking reads.
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL).map_err(|error| error.to_string())?;
    let blocking = nix::fcntl::OFlag::from_bits_truncate(flags) & !nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(blocking)).map_err(|error| error.to_string())?;
    let mut word = [0_u8; 3];
    let mut read = 0;
    while read < word.len() {
        match file.read(&mut word[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(format!("cannot read the network gate {}: {error}", gate.display())),
        }
    }
    if word[..read] == *GO {
        Ok(())
    } else {
        Err("berthd did not attach the container's network (see its error, or berthd's log)".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_dir(dir: &Path) -> TaskDir {
        TaskDir::new(dir.join("task"))
    }

    #[test]
    fn the_hook_passes_once_the_gate_is_opened_and_fails_when_it_is_dropped_without_a_word() {
        let dir = tempfile::tempdir().unwrap();
        let mut gate = NetworkGate::open(&task_dir(dir.path())).unwrap();
        let path = gate.path().to_path_buf();
        let waiter = std::thread::spawn(move || await_gate(&path));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "the hook waits while ADD runs");
        gate.open_the_gate().unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(()));

        let gate = NetworkGate::open(&task_dir(dir.path())).unwrap();
        let path = gate.path().to_path_buf();
        let waiter = std::thread::spawn(move || await_gate(&path));
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(gate);
        assert!(waiter.join().unwrap().unwrap_err().contains("did not attach"));
    }

    #[test]
    fn a_word_written_before_the_hook_opens_is_kept_and_a_gate_nobody_holds_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut gate = NetworkGate::open(&task_dir(dir.path())).unwrap();
        gate.open_the_gate().unwrap();
        assert_eq!(await_gate(gate.path()), Ok(()));

        let path = gate.path().to_path_buf();
        drop(gate);
        assert!(!path.exists(), "berthd removes its gate");

        // berthd gone: a FIFO left (as after a crash) without a writer fails the hook at once.
        let orphan = dir.path().join("orphan.gate");
        nix::unistd::mkfifo(&orphan, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).unwrap();
        assert!(await_gate(&orphan).is_err());
    }

    #[test]
    fn the_hook_goes_into_create_runtime_with_a_timeout() {
        let mut spec = Spec::default();
        add_hook(&mut spec, Path::new("/usr/bin/berth-monitor"), Path::new("/run/berth/tasks/n/c/network.gate"))
            .unwrap();
        let hooks = spec.hooks().as_ref().unwrap().create_runtime().as_ref().unwrap();
        assert_eq!(hooks.len(), 1);
        assert_eq!(hooks[0].path(), Path::new("/usr/bin/berth-monitor"));
        assert_eq!(
            hooks[0].args().as_ref().unwrap(),
            &["berth-monitor", "await-network", "/run/berth/tasks/n/c/network.gate"]
        );
        assert_eq!(hooks[0].timeout(), Some(HOOK_TIMEOUT_SECS));
    }
}
