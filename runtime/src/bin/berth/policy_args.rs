//! The flags for limits, restart policies and security options (`run`, `create`, `update`),
//! and `berth update`. They go to berthd as spelled (`512m`, `on-failure:3`): berthd checks
//! and resolves them in one place, so every client gets the same errors. Only what needs the
//! caller's files is done here: `--security-opt seccomp=FILE` sends the file's contents.

use std::process::ExitCode;

use berth_runtime::api;
use clap::Args;

use crate::output::print_stdout;
use crate::session::{CliError, Session};

/// Resource limits (`run`, `create` and `update`).
#[derive(Args, Debug, Default, Clone)]
pub struct LimitArgs {
    /// Memory limit, e.g. 512m or 1g (units b, k, m, g, t)
    #[arg(short = 'm', long, value_name = "BYTES", help_heading = "Limits")]
    pub memory: Option<String>,

    /// Memory plus swap limit (at least --memory); -1 for unlimited swap
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true, help_heading = "Limits")]
    pub memory_swap: Option<String>,

    /// CPUs the container may use, e.g. 0.5 or 2 (a CFS quota)
    #[arg(long, value_name = "CPUS", help_heading = "Limits")]
    pub cpus: Option<String>,

    /// CPU weight relative to other containers (2 to 262144, default 1024)
    #[arg(short = 'c', long, value_name = "SHARES", help_heading = "Limits")]
    pub cpu_shares: Option<String>,

    /// CPUs the container may run on, e.g. 0-1 or 0,2
    #[arg(long, value_name = "LIST", help_heading = "Limits")]
    pub cpuset_cpus: Option<String>,

    /// Most processes the container may have; -1 for no limit
    #[arg(long, value_name = "N", allow_hyphen_values = true, help_heading = "Limits")]
    pub pids_limit: Option<String>,

    /// Block I/O weight (10 to 1000), where the host's I/O scheduler has weights
    #[arg(long, value_name = "WEIGHT", help_heading = "Limits")]
    pub blkio_weight: Option<String>,
}

/// Everything `run` and `create` take beyond the process.
#[derive(Args, Debug, Default, Clone)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub limits: LimitArgs,

    /// A process limit, name=soft[:hard], e.g. nofile=1024:2048 (repeatable)
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]", help_heading = "Limits")]
    pub ulimits: Vec<String>,

    /// Restart policy: no, on-failure[:N], always or unless-stopped
    #[arg(long, value_name = "POLICY", help_heading = "Restart")]
    pub restart: Option<String>,

    /// seccomp=FILE (an OCI linux.seccomp JSON object), seccomp=unconfined, or
    /// no-new-privileges[=true|false] (repeatable)
    #[arg(long = "security-opt", value_name = "OPTION", value_parser = parse_security_opt, help_heading = "Security")]
    pub security_opts: Vec<SecurityOpt>,

    /// Add a capability, e.g. NET_ADMIN or CAP_SYS_PTRACE, or ALL (repeatable)
    #[arg(long, value_name = "CAP", help_heading = "Security")]
    pub cap_add: Vec<String>,

    /// Drop a capability, or ALL (repeatable)
    #[arg(long, value_name = "CAP", help_heading = "Security")]
    pub cap_drop: Vec<String>,

    /// All capabilities, the host's devices, no masked paths and no seccomp filter
    #[arg(long, help_heading = "Security")]
    pub privileged: bool,

    /// A host device in the container, HOST[:CONTAINER[:rwm]] (repeatable)
    #[arg(long = "device", value_name = "HOST[:CTR[:rwm]]", help_heading = "Security")]
    pub devices: Vec<String>,

    /// An extra group for the process, by gid or by name in the image (repeatable)
    #[arg(long, value_name = "GROUP", help_heading = "Security")]
    pub group_add: Vec<String>,

    /// Run in a user namespace with this map, CONTAINER_ID:HOST_ID:SIZE (e.g. 0:100000:65536);
    /// refused by this berthd, which says why
    #[arg(long, value_name = "MAP", help_heading = "Security")]
    pub userns_remap: Option<String>,
}

/// One `--security-opt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOpt {
    SeccompUnconfined,
    /// The profile file's contents.
    SeccompProfile(String),
    NoNewPrivileges(bool),
}

/// `seccomp=unconfined`, `seccomp=FILE` (read now), `no-new-privileges[=|:true|false]`.
pub fn parse_security_opt(text: &str) -> Result<SecurityOpt, String> {
    let (key, value) = match text.split_once(['=', ':']) {
        Some((key, value)) => (key, Some(value)),
        None => (text, None),
    };
    match (key, value) {
        ("seccomp", Some("unconfined")) => Ok(SecurityOpt::SeccompUnconfined),
        ("seccomp", Some(path)) if !path.is_empty() => std::fs::read_to_string(path)
            .map(SecurityOpt::SeccompProfile)
            .map_err(|error| format!("cannot read the seccomp profile {path}: {error}")),
        ("no-new-privileges", None | Some("true")) => Ok(SecurityOpt::NoNewPrivileges(true)),
        ("no-new-privileges", Some("false")) => Ok(SecurityOpt::NoNewPrivileges(false)),
        _ => Err("use seccomp=FILE, seccomp=unconfined or no-new-privileges[=true|false]".to_string()),
    }
}

impl LimitArgs {
    pub fn message(&self, ulimits: &[String]) -> api::ResourceLimits {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        api::ResourceLimits {
            memory: text(&self.memory),
            memory_swap: text(&self.memory_swap),
            cpus: text(&self.cpus),
            cpu_shares: text(&self.cpu_shares),
            cpuset_cpus: text(&self.cpuset_cpus),
            pids_limit: text(&self.pids_limit),
            blkio_weight: text(&self.blkio_weight),
            ulimits: ulimits.to_vec(),
        }
    }
}

impl PolicyArgs {
    pub fn message(&self) -> api::ContainerPolicies {
        let mut security = api::SecurityOptions {
            privileged: self.privileged,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            devices: self.devices.clone(),
            group_add: self.group_add.clone(),
            userns_remap: self.userns_remap.clone().unwrap_or_default(),
            ..api::SecurityOptions::default()
        };
        for option in &self.security_opts {
            match option {
                SecurityOpt::SeccompUnconfined => security.seccomp_unconfined = true,
                SecurityOpt::SeccompProfile(profile) => security.seccomp_profile = profile.clone(),
                SecurityOpt::NoNewPrivileges(value) => security.no_new_privileges = value.to_string(),
            }
        }
        api::ContainerPolicies {
            limits: Some(self.limits.message(&self.ulimits)),
            restart: self.restart.clone().unwrap_or_default(),
            security: Some(security),
        }
    }
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub limits: LimitArgs,

    /// Containers to update
    #[arg(value_name = "ID", required = true)]
    pub container_ids: Vec<String>,
}

/// `berth update`: new limits for running (or stopped) containers; later tasks keep them.
pub async fn update_containers(session: &Session, update_args: UpdateArgs) -> Result<ExitCode, CliError> {
    let mut exit_code = ExitCode::SUCCESS;
    for container_id in &update_args.container_ids {
        let request =
            api::UpdateContainerRequest { id: container_id.clone(), limits: Some(update_args.limits.message(&[])) };
        match session.containers().update(session.request(request)).await {
            Ok(_) => print_stdout(&format!("{container_id}\n"))?,
            Err(status) => {
                eprintln!("berth: {}", session.rpc_error()(status));
                exit_code = ExitCode::from(1);
            }
        }
    }
    Ok(exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_options_parse_and_read_the_profile_file() {
        assert_eq!(parse_security_opt("seccomp=unconfined"), Ok(SecurityOpt::SeccompUnconfined));
        assert_eq!(parse_security_opt("no-new-privileges"), Ok(SecurityOpt::NoNewPrivileges(true)));
        assert_eq!(parse_security_opt("no-new-privileges:false"), Ok(SecurityOpt::NoNewPrivileges(false)));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "{}").unwrap();
        let option = format!("seccomp={}", file.path().display());
        assert_eq!(parse_security_opt(&option), Ok(SecurityOpt::SeccompProfile("{}".to_string())));
        assert!(parse_security_opt("seccomp=/nonexistent/profile.json").unwrap_err().contains("cannot read"));
        assert!(parse_security_opt("apparmor=unconfined").is_err());
    }
}
