//! What a container was created with beyond its process: resource limits, its restart policy and
//! its security options — validated and resolved by `berth-commands`, recorded in the
//! container's record, and turned into the runtime spec by berthd.
//!
//! Encoding: as every recorded type, fields are only added at the end with `#[serde(default)]`;
//! enums are encoded as plain strings (see `ExitCause`) so the canonical reader takes them.

use serde::{Deserialize, Serialize};

/// Everything this module describes, as one field of `ContainerRecord`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ContainerPolicies {
    pub limits: ResourceLimits,
    pub restart: RestartPolicy,
    pub security: SecurityOptions,
}

/// Resource limits; `None` (or empty) leaves the kernel's default.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ResourceLimits {
    /// memory.limit_in_bytes (v1) / memory.max (v2).
    pub memory_bytes: Option<i64>,
    /// Memory plus swap; -1 is unlimited swap (Docker's meaning).
    pub memory_swap_bytes: Option<i64>,
    /// CPUs in billionths (`--cpus 1.5` is 1_500_000_000), written as a CFS quota per 100 ms period.
    pub nano_cpus: Option<u64>,
    /// cpu.shares (v1) / cpu.weight (v2, converted by runc).
    pub cpu_shares: Option<u64>,
    /// A cpuset list such as "0-1" or "0,2".
    pub cpuset_cpus: Option<String>,
    /// pids.max; -1 is unlimited.
    pub pids_limit: Option<i64>,
    /// blkio.weight (v1) / io.bfq.weight (v2), 10 to 1000.
    pub blkio_weight: Option<u16>,
    /// Process rlimits, by their short name ("nofile", "nproc", …).
    pub ulimits: Vec<Ulimit>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Ulimit {
    /// Short lower-case name without RLIMIT_: "nofile", "nproc", "core", …
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// When berthd starts a container's task again after it ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(into = "String", try_from = "String")]
pub enum RestartMode {
    #[default]
    No,
    /// After a non-zero exit (or a signal), at most `max_retries` times when that is not 0.
    OnFailure,
    /// After every exit, except after a user's stop or kill (until berthd restarts).
    Always,
    /// After every exit, except after a user's stop or kill (also across berthd restarts).
    UnlessStopped,
}

impl RestartMode {
    /// The spelling of `--restart`: "no", "on-failure", "always", "unless-stopped".
    pub fn name(self) -> &'static str {
        match self {
            RestartMode::No => "no",
            RestartMode::OnFailure => "on-failure",
            RestartMode::Always => "always",
            RestartMode::UnlessStopped => "unless-stopped",
        }
    }

    pub const ALL: [RestartMode; 4] =
        [RestartMode::No, RestartMode::OnFailure, RestartMode::Always, RestartMode::UnlessStopped];
}

impl From<RestartMode> for String {
    fn from(mode: RestartMode) -> String {
        mode.name().to_string()
    }
}

impl TryFrom<String> for RestartMode {
    type Error = String;

    fn try_from(name: String) -> Result<RestartMode, String> {
        RestartMode::ALL
            .into_iter()
            .find(|mode| mode.name() == name)
            .ok_or_else(|| format!("unknown restart mode {name:?}: read this log with a newer berth"))
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RestartPolicy {
    pub mode: RestartMode,
    /// For on-failure: how many restarts in a row at most; 0 is no limit.
    pub max_retries: u32,
}

/// How much of the host a container may reach.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct SecurityOptions {
    /// All capabilities, the host's devices, no masked or read-only paths, no seccomp filter.
    pub privileged: bool,
    /// No seccomp filter at all (`--security-opt seccomp=unconfined`).
    pub seccomp_unconfined: bool,
    /// A profile of the caller's own, as the OCI `linux.seccomp` JSON object; `None` is berth's
    /// default profile.
    pub seccomp_profile: Option<String>,
    /// `None` keeps berth's default (no new privileges); `Some(false)` lets setuid programs work.
    pub no_new_privileges: Option<bool>,
    /// Capability names as the kernel spells them ("CAP_NET_ADMIN"), or "ALL".
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub devices: Vec<DeviceMapping>,
    /// Extra groups for the process: numbers, or names looked up in the image's /etc/group.
    pub group_add: Vec<String>,
}

/// A host device node made visible inside the container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct DeviceMapping {
    pub host_path: String,
    pub container_path: String,
    /// Some of "rwm".
    pub permissions: String,
}
