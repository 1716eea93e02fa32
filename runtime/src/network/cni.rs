//! Running CNI plugins as the CNI specification (1.0) says: each plugin of a network's conflist
//! is executed with `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH` in its
//! environment and its own configuration (the list's `name` and `cniVersion`, the previous
//! plugin's result as `prevResult`, the `runtimeConfig` its `capabilities` ask for) on stdin.
//! ADD runs the list in order and returns the last result; DEL runs it in reverse, every plugin
//! even after one failed (a teardown removes all it can), with the ADD's result as `prevResult`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;

/// A plugin that hangs (a stuck iptables lock) must not hold a task's worker for ever.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("CNI plugin {plugin:?} not found in {bin_dir}: install Debian's containernetworking-plugins, or point berthd's --cni-bin-dir at the plugins")]
    PluginMissing { plugin: String, bin_dir: PathBuf },
    #[error("CNI plugin {plugin} {command} failed: {message}")]
    Failed { plugin: String, command: String, message: String },
    #[error("CNI plugin {plugin} {command} did not finish in {PLUGIN_TIMEOUT:?}")]
    TimedOut { plugin: String, command: String },
    #[error("the network configuration is malformed: {0}")]
    BadConfig(String),
}

/// What one invocation of a network's plugins is about.
#[derive(Debug, Clone)]
pub struct CniCall<'a> {
    pub bin_dir: &'a Path,
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub interface: &'a str,
    /// Values for the plugins' `capabilities` (`portMappings`), passed as `runtimeConfig`.
    pub runtime_config: &'a Value,
    /// Whether the plugins run as background work, at the lowest CPU priority.
    pub urgency: Urgency,
}

/// How soon a plugin's work is wanted. A deleted task's release is [`Urgency::Background`]:
/// nothing waits for it but the container's next task, and at normal priority its DEL (about
/// twice an ADD's CPU) slowed the next container's start on a busy host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Now,
    Background,
    /// A spare attachment's ADD: background work, but wanted before the releases.
    Spare,
}

/// A spare attachment's plugins yield to the host's work (nice 0), but take most of what it
/// leaves from the releases (nice 19), which nothing waits for.
const SPARE_NICENESS: i32 = 10;

impl Urgency {
    /// The niceness this urgency runs its children at, added to berthd's own.
    pub fn niceness(self) -> i32 {
        match self {
            Urgency::Now => 0,
            Urgency::Background => crate::sys::process::BACKGROUND_NICENESS,
            Urgency::Spare => SPARE_NICENESS,
        }
    }

    /// A command that runs `program` at this urgency.
    pub fn command(self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        crate::sys::process::command_at_niceness(program, self.niceness())
    }
}

/// CNI ADD of every plugin in `conflist`; the last plugin's result.
pub async fn add(conflist: &Value, call: &CniCall<'_>) -> Result<Value, CniError> {
    let mut previous: Option<Value> = None;
    for plugin in plugins(conflist)? {
        let config = plugin_config(conflist, plugin, previous.as_ref(), call.runtime_config)?;
        previous = Some(exec_plugin("ADD", &config, call).await?);
    }
    previous.ok_or_else(|| CniError::BadConfig("the list has no plugins".into()))
}

/// CNI DEL of every plugin in `conflist`, last first, each even when an earlier one failed;
/// `previous_result` is what ADD returned (when it is known). The first failure is returned.
pub async fn del(conflist: &Value, call: &CniCall<'_>, previous_result: Option<&Value>) -> Result<(), CniError> {
    let mut first_error = None;
    for plugin in plugins(conflist)?.iter().rev() {
        let outcome = match plugin_config(conflist, plugin, previous_result, call.runtime_config) {
            Ok(config) => exec_plugin("DEL", &config, call).await.map(drop),
            Err(error) => Err(error),
        };
        if let Err(error) = outcome {
            tracing::warn!(container_id = call.container_id, %error, "CNI DEL of one plugin failed; the others still run");
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn plugins(conflist: &Value) -> Result<&Vec<Value>, CniError> {
    conflist
        .get("plugins")
        .and_then(Value::as_array)
        .ok_or_else(|| CniError::BadConfig("the conflist has no \"plugins\" array".into()))
}

/// One plugin's stdin: its own keys, the list's name and version, `prevResult`, and the
/// `runtimeConfig` entries its capabilities name.
pub fn plugin_config(
    conflist: &Value,
    plugin: &Value,
    previous_result: Option<&Value>,
    runtime_config: &Value,
) -> Result<Value, CniError> {
    let mut config: Map<String, Value> =
        plugin.as_object().cloned().ok_or_else(|| CniError::BadConfig("a plugin entry is not an object".into()))?;
    config.insert("name".into(), conflist.get("name").cloned().unwrap_or(Value::Null));
    config.insert("cniVersion".into(), conflist.get("cniVersion").cloned().unwrap_or(Value::Null));
    if let Some(previous_result) = previous_result {
        config.insert("prevResult".into(), previous_result.clone());
    }
    let wanted: Vec<String> = plugin
        .get("capabilities")
        .and_then(Value::as_object)
        .map(|capabilities| {
            capabilities
                .iter()
                .filter(|(_, enabled)| enabled.as_bool() == Some(true))
                .map(|(key, _)| key.clone())
                .collect()
        })
        .unwrap_or_default();
    let given: Map<String, Value> =
        wanted.iter().filter_map(|key| runtime_config.get(key).map(|value| (key.clone(), value.clone()))).collect();
    if !given.is_empty() {
        config.insert("runtimeConfig".into(), Value::Object(given));
    }
    config.remove("capabilities");
    Ok(Value::Object(config))
}

async fn exec_plugin(command: &str, config: &Value, call: &CniCall<'_>) -> Result<Value, CniError> {
    let plugin = config.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    if plugin.is_empty() || plugin.contains('/') {
        return Err(CniError::BadConfig(format!("plugin type {plugin:?} is not a plugin name")));
    }
    let binary = call.bin_dir.join(&plugin);
    if !binary.is_file() {
        return Err(CniError::PluginMissing { plugin, bin_dir: call.bin_dir.to_path_buf() });
    }
    let failed = |message: String| CniError::Failed { plugin: plugin.clone(), command: command.into(), message };
    let mut process = call.urgency.command(&binary);
    process
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", call.netns)
        .env("CNI_IFNAME", call.interface)
        .env("CNI_PATH", call.bin_dir)
        // portmap and firewall run iptables.
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = {
        let _spawning = crate::sys::process::spawn_lock();
        process.spawn()
    }
    .map_err(|error| failed(format!("cannot run {}: {error}", binary.display())))?;
    let input = serde_json::to_vec(config).map_err(|error| CniError::BadConfig(error.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&input).await.map_err(|error| failed(format!("cannot write its config: {error}")))?;
    }
    let output = match tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output()).await {
        Ok(result) => result.map_err(|error| failed(error.to_string()))?,
        Err(_) => return Err(CniError::TimedOut { plugin, command: command.into() }),
    };
    if !output.status.success() {
        return Err(failed(error_message(&output.stdout, &output.stderr)));
    }
    if command == "DEL" || output.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&output.stdout).map_err(|error| failed(format!("its result is not JSON: {error}")))
}

/// A plugin's error: the spec's `{"code", "msg", "details"}` on stdout, else its stderr.
fn error_message(stdout: &[u8], stderr: &[u8]) -> String {
    if let Ok(error) = serde_json::from_slice::<Value>(stdout) {
        let message = error.get("msg").and_then(Value::as_str).unwrap_or_default();
        let details = error.get("details").and_then(Value::as_str).unwrap_or_default();
        let code = error.get("code").and_then(Value::as_u64).unwrap_or_default();
        if !message.is_empty() {
            return if details.is_empty() {
                format!("{message} (code {code})")
            } else {
                format!("{message}: {details} (code {code})")
            };
        }
    }
    String::from_utf8_lossy(stderr).trim().chars().take(2048).collect()
}

/// The parts of a CNI result berth records: addresses (CIDR), the gateway, the container
/// interface's MAC.
pub fn summarize_result(result: &Value, interface: &str) -> (Vec<String>, String, String) {
    let addresses = result
        .get("ips")
        .and_then(Value::as_array)
        .map(|ips| ips.iter().filter_map(|ip| ip.get("address")?.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let gateway = result
        .get("ips")
        .and_then(Value::as_array)
        .and_then(|ips| ips.iter().find_map(|ip| ip.get("gateway")?.as_str().map(str::to_string)))
        .unwrap_or_default();
    let mac = result
        .get("interfaces")
        .and_then(Value::as_array)
        .and_then(|interfaces| {
            interfaces.iter().find(|candidate| {
                candidate.get("name").and_then(Value::as_str) == Some(interface) && candidate.get("sandbox").is_some()
            })
        })
        .and_then(|found| found.get("mac")?.as_str().map(str::to_string))
        .unwrap_or_default();
    (addresses, gateway, mac)
}

/// Kills the plugin processes (and the iptables they run) a killed berthd left running, found by
/// the `CNI_CONTAINERID` they were started with — `id_prefix` followed by `-` or `_` — and waits
/// up to 2 s for them to be gone; how many were killed. Nothing kills a child when its parent
/// dies, so an ADD under way at a kill -9 would go on adding (the firewall's rules come last)
/// after start-up's teardown had run DEL for it. This berthd's own children, and processes in
/// another mount namespace (a container's, given such a variable), are left alone.
pub async fn kill_left_running(id_prefix: &str) -> usize {
    use crate::sys::process::{all_pids, open_pidfd, read_process_stat, signal_pidfd};
    let own_pid = std::process::id() as i32;
    let own_mounts = std::fs::read_link("/proc/self/ns/mnt").ok();
    let mut killed = Vec::new();
    for pid in all_pids().into_iter().filter(|&pid| pid != own_pid) {
        // Checked once the pidfd pins the process, so a recycled pid is never signalled.
        let Ok(pidfd) = open_pidfd(pid) else { continue };
        let left_by_berthd = read_process_stat(pid).is_some_and(|stat| stat.parent_pid != own_pid)
            // Plugins run in berthd's mount namespace; a container's processes never do (runc
            // always gives a container its own), whatever environment they were given.
            && own_mounts.is_some()
            && std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok() == own_mounts
            && std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| started_for(&environ, id_prefix));
        if left_by_berthd && signal_pidfd(&pidfd, libc::SIGKILL).is_ok() {
            killed.push(pid);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    // Gone, or a zombie its new parent has yet to reap.
    let running = |pid: &i32| read_process_stat(*pid).is_some_and(|stat| stat.is_running());
    while killed.iter().any(running) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    killed.len()
}

/// Whether a process environment (`/proc/<pid>/environ`) has `CNI_CONTAINERID=<id_prefix>-…` or
/// `…_…`.
fn started_for(environ: &[u8], id_prefix: &str) -> bool {
    let wanted = format!("CNI_CONTAINERID={id_prefix}");
    environ.split(|byte| *byte == 0).any(|variable| {
        variable.strip_prefix(wanted.as_bytes()).is_some_and(|rest| matches!(rest.first(), Some(b'-' | b'_')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_plugin_gets_the_list_name_its_previous_result_and_only_the_capabilities_it_asks_for() {
        let conflist = json!({"cniVersion": "1.0.0", "name": "front", "plugins": [
            {"type": "bridge", "bridge": "br0"},
            {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}},
        ]});
        let runtime =
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}], "bandwidth": {}});
        let plugins = plugins(&conflist).unwrap();
        let first = plugin_config(&conflist, &plugins[0], None, &runtime).unwrap();
        assert_eq!(first, json!({"type": "bridge", "bridge": "br0", "name": "front", "cniVersion": "1.0.0"}));
        let previous = json!({"ips": [{"address": "10.1.0.2/24"}]});
        let second = plugin_config(&conflist, &plugins[1], Some(&previous), &runtime).unwrap();
        assert_eq!(second["prevResult"], previous);
        assert_eq!(second["runtimeConfig"], json!({"portMappings": runtime["portMappings"]}));
        assert!(second.get("capabilities").is_none());
    }

    #[test]
    fn results_and_errors_are_read_as_the_spec_writes_them() {
        let result = json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "br0", "mac": "aa"}, {"name": "eth0", "mac": "02:42:0a:00:00:02", "sandbox": "/n"}],
            "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 1}]});
        assert_eq!(
            summarize_result(&result, "eth0"),
            (vec!["10.1.0.2/24".to_string()], "10.1.0.1".to_string(), "02:42:0a:00:00:02".to_string())
        );
        assert_eq!(error_message(br#"{"code": 11, "msg": "no addresses left"}"#, b""), "no addresses left (code 11)");
        assert_eq!(error_message(b"garbage", b"  plain stderr\n"), "plain stderr");
    }

    #[test]
    fn a_plugin_left_running_is_known_by_its_container_id() {
        let environ = b"PATH=/bin\0CNI_COMMAND=ADD\0CNI_CONTAINERID=berth-ab12_spare-f00\0";
        assert!(started_for(environ, "berth-ab12"));
        assert!(started_for(b"CNI_CONTAINERID=berth-ab12-default-web\0", "berth-ab12"));
        assert!(!started_for(b"CNI_CONTAINERID=berth-ab123-default-web\0", "berth-ab12"), "another berthd's");
        assert!(!started_for(b"X_CNI_CONTAINERID=berth-ab12-default-web\0", "berth-ab12"));
        assert!(!started_for(b"PATH=/bin\0", "berth-ab12"));
    }
}
