//! A thin wrapper around the runc command line: every container operation berth performs is one
//! `runc --root <root> <verb> ...` invocation, and this file is the only place that builds them.
//!
//! **Invariant:** only `runtime` runs runc, and within `runtime` only this file spells runc's
//! arguments. The monitor uses [`Runc::create_command`] so that `create` is spelled here too.
//! This file is also the only place that reads runc's per-container state file, for
//! [`Runc::delete_exited`], [`Runc::recorded_init`] and [`Runc::has_container`].

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;

/// How long one runc invocation may take before berth gives up on it. runc operations are
/// normally sub-second; a minute means something is wedged (a frozen cgroup, a stuck mount) and
/// the caller is better served by an error than by waiting forever.
const RUNC_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What can go wrong when running runc. Each variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error(
        "runc not found at {}: install it (apt-get install runc) or set `runc` in berthd's config file",
        path.display()
    )]
    NotFound { path: PathBuf },

    #[error("could not run runc at {}: {source}; check that the file is an executable runc binary", path.display())]
    Spawn { path: PathBuf, source: std::io::Error },

    #[error("`runc {}` failed with exit code {code}: {stderr}", args.join(" "))]
    Failed { args: Vec<String>, code: i32, stderr: String },

    #[error("`runc {}` did not finish within {} seconds: check runc's state directory and the container's cgroup for a stuck process", args.join(" "), after.as_secs())]
    TimedOut { args: Vec<String>, after: Duration },

    #[error("`runc {}` printed output berth cannot read ({reason}): use runc 1.1 or newer", args.join(" "))]
    UnexpectedOutput { args: Vec<String>, reason: String },
}

impl RuncError {
    /// True when runc refused because it has no container with that id. runc reports this only
    /// as text, so the text is matched in exactly one place.
    pub fn is_container_missing(&self) -> bool {
        match self {
            // runc 1.1 says "container does not exist"; later versions quote the id in between.
            RuncError::Failed { stderr, .. } => stderr.contains("container") && stderr.contains("does not exist"),
            _ => false,
        }
    }
}

/// One container as runc describes it in `runc state` / `runc list --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RuncContainer {
    pub id: String,
    /// `created`, `running`, `stopped` or `paused`.
    pub status: String,
    /// Host pid of the container's init; 0 once it has stopped.
    pub pid: u32,
    pub bundle: PathBuf,
}

/// Where runc lives and which state directory (`--root`) it keeps its containers in.
#[derive(Debug, Clone)]
pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
}

impl Runc {
    pub fn new(binary: PathBuf, root: PathBuf) -> Runc {
        Runc { binary, root }
    }

    /// Runs `runc --version` and returns its first line, so berthd can refuse to start (with a
    /// useful message) instead of failing on the first container.
    pub fn check(&self) -> Result<String, RuncError> {
        let args = vec!["--version".to_string()];
        let child = {
            let _spawning = crate::sys::process::spawn_lock();
            std::process::Command::new(&self.binary)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        };
        let output =
            child.and_then(std::process::Child::wait_with_output).map_err(|source| self.spawn_error(source))?;
        if !output.status.success() {
            return Err(RuncError::Failed {
                args,
                code: output.status.code().unwrap_or(-1),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        let stdout_text = String::from_utf8_lossy(&output.stdout);
        match stdout_text.lines().next() {
            Some(version_line) if !version_line.trim().is_empty() => Ok(version_line.trim().to_string()),
            _ => Err(RuncError::UnexpectedOutput { args, reason: "empty version output".to_string() }),
        }
    }

    /// `runc start ID`: lets a created container's init exec the user's process.
    pub async fn start(&self, id: &str) -> Result<(), RuncError> {
        self.run(vec!["start".into(), id.into()]).await.map(drop)
    }

    /// `runc update` with a running container's new limits (cgroup values only: rlimits belong
    /// to processes and change with the next task).
    pub async fn update(&self, id: &str, limits: &berth_projections::ResourceLimits) -> Result<(), RuncError> {
        let mut args = vec!["update".to_string()];
        if let Some(bytes) = limits.memory_bytes {
            args.extend(["--memory".to_string(), bytes.to_string()]);
        }
        if let Some(bytes) = limits.memory_swap_bytes {
            args.extend(["--memory-swap".to_string(), bytes.to_string()]);
        }
        if let Some(nano_cpus) = limits.nano_cpus {
            args.extend(["--cpu-period".to_string(), crate::tasks::policies::CPU_PERIOD_US.to_string()]);
            args.extend(["--cpu-quota".to_string(), crate::tasks::policies::cpu_quota_us(nano_cpus).to_string()]);
        }
        if let Some(shares) = limits.cpu_shares {
            args.extend(["--cpu-share".to_string(), shares.to_string()]);
        }
        if let Some(cpus) = &limits.cpuset_cpus {
            args.extend(["--cpuset-cpus".to_string(), cpus.clone()]);
        }
        if let Some(pids) = limits.pids_limit {
            args.extend(["--pids-limit".to_string(), pids.to_string()]);
        }
        if let Some(weight) = limits.blkio_weight {
            args.extend(["--blkio-weight".to_string(), weight.to_string()]);
        }
        args.push(id.to_string());
        self.run(args).await.map(drop)
    }

    /// `runc pause ID`: freezes every process of the container (its cgroup's freezer).
    pub async fn pause(&self, id: &str) -> Result<(), RuncError> {
        self.run(vec!["pause".into(), id.into()]).await.map(drop)
    }

    /// `runc resume ID`: thaws a paused container.
    pub async fn resume(&self, id: &str) -> Result<(), RuncError> {
        self.run(vec!["resume".into(), id.into()]).await.map(drop)
    }

    /// `runc kill [--all] ID SIGNAL`.
    pub async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuncError> {
        let mut args = vec!["kill".to_string()];
        if all {
            args.push("--all".into());
        }
        args.push(id.into());
        args.push(signal.to_string());
        self.run(args).await.map(drop)
    }

    /// `runc delete [--force] ID`. Deleting a container runc does not know is success: the
    /// caller wanted it gone and it is gone, which makes retries after a crash harmless.
    pub async fn delete(&self, id: &str, force: bool) -> Result<(), RuncError> {
        let mut args = vec!["delete".to_string()];
        if force {
            args.push("--force".into());
        }
        args.push(id.into());
        match self.run(args).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_container_missing() => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Removes a container whose init process has exited: what `runc delete` does for a stopped
    /// container (remove its cgroup directories, then its state directory), done here without
    /// starting runc, a Go program that costs ~6 ms of CPU and wall time per call. Anything this
    /// cannot vouch for (the init still there, even as a zombie; a shared pid namespace, whose
    /// other processes may live on; poststop hooks; Intel RDT; rootless; a cgroup directory that
    /// will not go; a state file it cannot read) is left to `runc delete --force`.
    pub async fn delete_exited(&self, id: &str) -> Result<(), RuncError> {
        match self.remove_stopped_in_place(id) {
            Ok(true) => Ok(()),
            Ok(false) => self.delete(id, true).await,
            Err(reason) => {
                tracing::debug!(id, %reason, "removing the stopped container in place failed; asking runc");
                self.delete(id, true).await
            }
        }
    }

    /// `Ok(true)`: removed (or runc had no such container). `Ok(false)`: not a case this
    /// handles. `Err`: it started and failed; `runc delete` picks up where it stopped, since it
    /// ignores cgroup directories that are already gone.
    fn remove_stopped_in_place(&self, id: &str) -> std::io::Result<bool> {
        let Some(state_dir) = self.state_dir(id) else {
            return Ok(false);
        };
        let state_bytes = match std::fs::read(state_dir.join("state.json")) {
            Ok(state_bytes) => state_bytes,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                // No state file: runc has no such container, or an earlier removal here stopped
                // between the state file and its directory (runc would then refuse the id for
                // a new container and `runc delete` would call it missing). Finish that removal.
                return match std::fs::remove_dir_all(&state_dir) {
                    Ok(()) => Ok(true),
                    Err(error) if error.kind() == ErrorKind::NotFound => Ok(true),
                    Err(error) => Err(error),
                };
            }
            Err(error) => return Err(error),
        };
        let Ok(state_file) = serde_json::from_slice::<RuncStateFile>(&state_bytes) else {
            return Ok(false);
        };
        let own_pid_namespace = state_file
            .config
            .namespaces
            .iter()
            .any(|namespace| namespace.kind == "NEWPID" && namespace.path.is_empty());
        let poststop_hooks =
            state_file.config.hooks.as_ref().and_then(|hooks| hooks.get("poststop")).is_some_and(|poststop| {
                !poststop.is_null() && poststop.as_array().is_none_or(|hooks| !hooks.is_empty())
            });
        let init_present = crate::sys::process::read_process_stat(state_file.init_process_pid)
            .is_some_and(|stat| stat.start_time == state_file.init_process_start);
        if state_file.init_process_pid <= 0
            || init_present
            || !own_pid_namespace
            || poststop_hooks
            || state_file.rootless
            || !state_file.intel_rdt_path.is_empty()
        {
            return Ok(false);
        }
        // The rmdirs are the last guard against a live process (a populated cgroup will not
        // go), so a container without cgroups, or with a path outside /sys/fs/cgroup, is left to
        // runc.
        if state_file.cgroup_paths.is_empty() {
            return Ok(false);
        }
        for cgroup_dir in state_file.cgroup_paths.values() {
            let plain = cgroup_dir
                .components()
                .all(|component| matches!(component, std::path::Component::RootDir | std::path::Component::Normal(_)));
            if !plain || !cgroup_dir.starts_with("/sys/fs/cgroup/") {
                return Ok(false);
            }
        }
        for cgroup_dir in state_file.cgroup_paths.values() {
            match std::fs::remove_dir(cgroup_dir) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(std::io::Error::new(error.kind(), format!("rmdir {}: {error}", cgroup_dir.display())))
                }
            }
        }
        std::fs::remove_dir_all(&state_dir)?;
        Ok(true)
    }

    /// The container's init process as runc recorded it: its pid and its start time (clock ticks
    /// after boot, as in field 22 of /proc/<pid>/stat). `None` when runc has no container with
    /// that id or its state file is unreadable.
    pub fn recorded_init(&self, id: &str) -> Option<(u32, u64)> {
        let state_bytes = std::fs::read(self.state_dir(id)?.join("state.json")).ok()?;
        let state_file = serde_json::from_slice::<RuncStateFile>(&state_bytes).ok()?;
        let pid = u32::try_from(state_file.init_process_pid).ok().filter(|&pid| pid > 0)?;
        Some((pid, state_file.init_process_start))
    }

    /// Whether runc has a container with this id, from the state file it keeps for each: what
    /// `runc state` would say, without starting runc (a Go program: ~5 ms).
    pub fn has_container(&self, id: &str) -> bool {
        self.state_dir(id).is_some_and(|state_dir| state_dir.join("state.json").exists())
    }

    /// runc's directory for the container `id` under its root; `None` for an id that is not a
    /// plain file name, which runc would refuse anyway.
    fn state_dir(&self, id: &str) -> Option<PathBuf> {
        let plain = !id.is_empty() && !id.contains('/') && id != "." && id != "..";
        plain.then(|| self.root.join(id))
    }

    /// `runc state ID`, or `None` when runc has no container with that id.
    pub async fn state(&self, id: &str) -> Result<Option<RuncContainer>, RuncError> {
        let args = vec!["state".to_string(), id.to_string()];
        let stdout_bytes = match self.run(args.clone()).await {
            Ok(stdout_bytes) => stdout_bytes,
            Err(error) if error.is_container_missing() => return Ok(None),
            Err(error) => return Err(error),
        };
        serde_json::from_slice::<RuncContainer>(&stdout_bytes)
            .map(Some)
            .map_err(|parse_error| RuncError::UnexpectedOutput { args, reason: parse_error.to_string() })
    }

    /// `runc list --format json`. runc prints `null` (not `[]`) when it has no containers, and
    /// an empty list when its root directory does not exist yet.
    pub async fn list(&self) -> Result<Vec<RuncContainer>, RuncError> {
        let args = vec!["list".to_string(), "--format".to_string(), "json".to_string()];
        let stdout_bytes = self.run(args.clone()).await?;
        serde_json::from_slice::<Option<Vec<RuncContainer>>>(&stdout_bytes)
            .map(Option::unwrap_or_default)
            .map_err(|parse_error| RuncError::UnexpectedOutput { args, reason: parse_error.to_string() })
    }

    /// The `runc create` invocation the monitor runs (`runc run --detach` with `start_too`, which
    /// creates and starts in one runc process). It is a plain std `Command` because the monitor
    /// is synchronous. `--log-format json` lets the monitor pick runc's own error message out of
    /// the log file when create fails. The caller sets stdio: the container inherits it. No
    /// `--pid-file`: runc writes that file with O_SYNC, and [`Runc::recorded_init`] reads the
    /// same pid (and its start time) from the state file runc writes anyway.
    /// With `console_socket`, runc sends the master of the process's pseudo-terminal there.
    pub fn create_command(
        &self,
        id: &str,
        bundle: &Path,
        log_file: &Path,
        start_too: bool,
        console_socket: Option<&Path>,
    ) -> std::process::Command {
        let mut command = std::process::Command::new(&self.binary);
        command.arg("--root").arg(&self.root).arg("--log").arg(log_file).arg("--log-format").arg("json");
        if start_too {
            command.arg("run").arg("--detach");
        } else {
            command.arg("create");
        }
        if let Some(console_socket) = console_socket {
            command.arg("--console-socket").arg(console_socket);
        }
        command.arg("--bundle").arg(bundle).arg(id);
        command
    }

    /// The `runc exec --detach` invocation an exec's monitor runs: the process described in
    /// `process_file` (an OCI process JSON) joins container `id`'s namespaces and cgroup. runc
    /// exits once it runs, and the process is reparented to the monitor (a subreaper).
    pub fn exec_command(
        &self,
        id: &str,
        process_file: &Path,
        pid_file: &Path,
        log_file: &Path,
        console_socket: Option<&Path>,
    ) -> std::process::Command {
        let mut command = std::process::Command::new(&self.binary);
        command.arg("--root").arg(&self.root).arg("--log").arg(log_file).arg("--log-format").arg("json");
        command.arg("exec").arg("--detach").arg("--pid-file").arg(pid_file).arg("--process").arg(process_file);
        if let Some(console_socket) = console_socket {
            command.arg("--console-socket").arg(console_socket);
        }
        command.arg(id);
        command
    }

    /// Runs `runc --root ROOT ARGS...`, returns its stdout on success and its stderr in the
    /// error otherwise.
    async fn run(&self, args: Vec<String>) -> Result<Vec<u8>, RuncError> {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .arg("--root")
            .arg(&self.root)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // If the timeout below fires, the future holding the child is dropped; without this
            // the stuck runc would keep running unobserved.
            .kill_on_drop(true);
        let child = {
            let _spawning = crate::sys::process::spawn_lock();
            command.spawn()
        }
        .map_err(|source| self.spawn_error(source))?;
        let output = match tokio::time::timeout(RUNC_COMMAND_TIMEOUT, child.wait_with_output()).await {
            Ok(result) => result.map_err(|source| self.spawn_error(source))?,
            Err(_elapsed) => {
                return Err(RuncError::TimedOut { args, after: RUNC_COMMAND_TIMEOUT });
            }
        };
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(RuncError::Failed {
            args,
            code: output.status.code().unwrap_or(-1),
            stderr: runc_error_text(&output.stderr),
        })
    }

    fn spawn_error(&self, source: std::io::Error) -> RuncError {
        if source.kind() == ErrorKind::NotFound {
            RuncError::NotFound { path: self.binary.clone() }
        } else {
            RuncError::Spawn { path: self.binary.clone(), source }
        }
    }
}

/// The fields of runc's `<root>/<id>/state.json` that berth reads (runc 1.x).
#[derive(Deserialize)]
struct RuncStateFile {
    init_process_pid: i32,
    init_process_start: u64,
    #[serde(default)]
    cgroup_paths: std::collections::BTreeMap<String, PathBuf>,
    #[serde(default)]
    rootless: bool,
    #[serde(default)]
    intel_rdt_path: String,
    config: RuncStateConfig,
}

#[derive(Deserialize)]
struct RuncStateConfig {
    #[serde(default)]
    namespaces: Vec<RuncStateNamespace>,
    #[serde(rename = "Hooks", default)]
    hooks: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct RuncStateNamespace {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

/// Turns runc's stderr into a readable message. runc prints logrus lines such as
/// `time="..." level=error msg="container does not exist"`; the `msg` part is what a person
/// wants to see, so it is extracted when present and the raw text is kept otherwise.
pub fn runc_error_text(stderr_bytes: &[u8]) -> String {
    let stderr_text = String::from_utf8_lossy(stderr_bytes);
    let messages: Vec<String> = stderr_text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| logrus_message(line).unwrap_or_else(|| line.trim().to_string()))
        .collect();
    messages.join("; ")
}

/// Pulls the quoted `msg="..."` value out of one logrus text line.
fn logrus_message(line: &str) -> Option<String> {
    let start = line.find("msg=\"")? + "msg=\"".len();
    let mut message = String::new();
    let mut characters = line[start..].chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => message.push(characters.next()?),
            '"' => return Some(message),
            other => message.push(other),
        }
    }
    None
}

/// Reads the error messages that runc appended to its `--log-format json` log file after byte
/// offset `since_offset`, oldest first, at most the last `max_messages` of them. Used to explain
/// a failed `runc create` without quoting failures of earlier runs.
pub fn runc_log_errors_since(log_file: &Path, since_offset: u64, max_messages: usize) -> Vec<String> {
    #[derive(Deserialize)]
    struct LogLine {
        level: String,
        msg: String,
    }
    let Ok(log_bytes) = std::fs::read(log_file) else {
        return Vec::new();
    };
    let start = usize::try_from(since_offset).unwrap_or(usize::MAX).min(log_bytes.len());
    let log_text = String::from_utf8_lossy(&log_bytes[start..]);
    let mut messages: Vec<String> = log_text
        .lines()
        .filter_map(|line| serde_json::from_str::<LogLine>(line).ok())
        .filter(|log_line| log_line.level == "error" || log_line.level == "fatal")
        .map(|log_line| log_line.msg)
        .collect();
    let n_dropped = messages.len().saturating_sub(max_messages);
    messages.drain(..n_dropped);
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logrus_lines_are_reduced_to_their_message() {
        let stderr_bytes = b"time=\"2026-01-01T00:00:00Z\" level=error msg=\"container \\\"x\\\" does not exist\"\n";
        assert_eq!(runc_error_text(stderr_bytes), "container \"x\" does not exist");
    }

    #[test]
    fn plain_stderr_is_kept() {
        assert_eq!(runc_error_text(b"runc create failed: boom\n\n"), "runc create failed: boom");
    }
}
