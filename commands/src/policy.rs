//! Limits, restart policies and security options as a client spells them (`--memory 512m`,
//! `--restart on-failure:3`, `--cap-add net_admin`), checked and resolved into the typed
//! `ContainerPolicies` a container record holds, so a container berth cannot run as asked is
//! refused at create, with a message that names the flag and what it takes.
//!
//! What depends on the host (its online cpus) is observed by the caller and passed in, so the
//! checks stay pure.

use berth_projections::{
    ContainerPolicies, DeviceMapping, ResourceLimits, RestartMode, RestartPolicy, SecurityOptions, Ulimit,
};

use crate::validate::shown;
use crate::CommandError;

/// Docker's floor for `--memory`: below it the runtime itself does not start.
pub const MIN_MEMORY_BYTES: i64 = 6 * 1024 * 1024;
/// The kernel's range for cpu.shares (v1).
pub const CPU_SHARES_RANGE: std::ops::RangeInclusive<u64> = 2..=262_144;
/// blkio.weight's range (v1) and io.bfq.weight's (v2).
pub const BLKIO_WEIGHT_RANGE: std::ops::RangeInclusive<u16> = 10..=1000;
/// A custom seccomp profile is recorded in the container's record: bounded like everything else
/// a client may ask berth to record (Docker's own default profile is about 20 KiB of JSON).
pub const MAX_SECCOMP_PROFILE_BYTES: usize = 256 * 1024;
/// At most this many ulimits, devices, capabilities or extra groups: more than the kernel has.
const MAX_LIST_ITEMS: usize = 128;

/// The rlimit names the kernel has (RLIMIT_*), lower-case as `--ulimit` takes them.
pub const ULIMIT_NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Every capability of Linux 6.x (capability.h), in bit order.
pub const CAPABILITY_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Limits as given on the command line; an empty string leaves that limit unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsRequest {
    pub memory: String,
    pub memory_swap: String,
    pub cpus: String,
    pub cpu_shares: String,
    pub cpuset_cpus: String,
    pub pids_limit: String,
    pub blkio_weight: String,
    /// `name=soft[:hard]` each.
    pub ulimits: Vec<String>,
}

/// Security options as given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityRequest {
    pub privileged: bool,
    pub seccomp_unconfined: bool,
    /// The profile's JSON text (the CLI reads `seccomp=FILE`); checked by berthd against the
    /// OCI schema before it gets here.
    pub seccomp_profile: String,
    /// "", "true" or "false".
    pub no_new_privileges: String,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `HOST[:CONTAINER[:PERMISSIONS]]` each.
    pub devices: Vec<String>,
    pub group_add: Vec<String>,
    /// `CONTAINER_ID:HOST_ID:SIZE`; refused (see [`userns_refusal`]).
    pub userns_remap: String,
}

/// What berthd observed of this host for the checks (pure here, observed there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The cpus online (`/sys/devices/system/cpu/online`).
    pub online_cpus: Vec<u32>,
    /// Whether the blkio (v1) or io (v2) controller has a weight file: it has one only with
    /// the BFQ (or the old CFQ) I/O scheduler.
    pub blkio_weight_supported: bool,
}

/// Everything a create may ask for beyond the process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRequest {
    pub limits: LimitsRequest,
    /// `no`, `on-failure[:N]`, `always`, `unless-stopped`; empty is `no`.
    pub restart: String,
    pub security: SecurityRequest,
}

fn invalid(message: String) -> CommandError {
    CommandError::InvalidArgument(message)
}

impl PolicyRequest {
    /// Checks every option and resolves it against what this host has.
    pub fn resolve(&self, host: &HostFacts) -> Result<ContainerPolicies, CommandError> {
        Ok(ContainerPolicies {
            limits: self.limits.resolve(&ResourceLimits::default(), host)?,
            restart: parse_restart(&self.restart)?,
            security: self.security.resolve()?,
        })
    }
}

impl LimitsRequest {
    /// `current` with every limit this request sets replaced (so `berth update --cpus 1` keeps
    /// the memory limit), checked as a whole.
    pub fn resolve(&self, current: &ResourceLimits, host: &HostFacts) -> Result<ResourceLimits, CommandError> {
        let host_cpus = &host.online_cpus;
        let mut limits = current.clone();
        if !self.memory.is_empty() {
            let bytes = parse_bytes("--memory", &self.memory)?;
            if bytes < MIN_MEMORY_BYTES {
                return Err(invalid(format!(
                    "--memory {} is below the minimum of 6 MiB: give at least 6m",
                    shown(&self.memory)
                )));
            }
            limits.memory_bytes = Some(bytes);
        }
        if !self.memory_swap.is_empty() {
            limits.memory_swap_bytes = Some(if self.memory_swap.trim() == "-1" {
                -1
            } else {
                parse_bytes("--memory-swap", &self.memory_swap)?
            });
        }
        if let Some(swap) = limits.memory_swap_bytes {
            let Some(memory) = limits.memory_bytes else {
                return Err(invalid(
                    "--memory-swap needs --memory as well: it is memory plus swap, e.g. --memory 512m --memory-swap 1g"
                        .to_string(),
                ));
            };
            if swap != -1 && swap < memory {
                return Err(invalid(format!(
                    "--memory-swap ({swap} bytes) is less than --memory ({memory} bytes): it counts memory plus swap, so give at least as much, or -1 for unlimited swap"
                )));
            }
        }
        if !self.cpus.is_empty() {
            let nano_cpus = parse_nano_cpus(&self.cpus)?;
            let n_host_cpus = host_cpus.len().max(1) as u64;
            if nano_cpus > n_host_cpus * 1_000_000_000 {
                return Err(invalid(format!(
                    "--cpus {} is more than the {n_host_cpus} cpus this host has: give at most {n_host_cpus}",
                    shown(&self.cpus)
                )));
            }
            limits.nano_cpus = Some(nano_cpus);
        }
        if !self.cpu_shares.is_empty() {
            let shares = self.cpu_shares.trim().parse::<u64>().ok().filter(|shares| CPU_SHARES_RANGE.contains(shares));
            limits.cpu_shares = Some(shares.ok_or_else(|| {
                invalid(format!(
                    "--cpu-shares {} is not a number from 2 to 262144 (1024 is the default weight)",
                    shown(&self.cpu_shares)
                ))
            })?);
        }
        if !self.cpuset_cpus.is_empty() {
            let cpus = parse_cpu_list(&self.cpuset_cpus)?;
            if let Some(missing) = cpus.iter().find(|cpu| !host_cpus.contains(cpu)) {
                return Err(invalid(format!(
                    "--cpuset-cpus {} names cpu {missing}, which this host does not have online (it has {}): name only those",
                    shown(&self.cpuset_cpus),
                    format_cpu_list(host_cpus)
                )));
            }
            limits.cpuset_cpus = Some(format_cpu_list(&cpus));
        }
        if !self.pids_limit.is_empty() {
            let pids = self.pids_limit.trim().parse::<i64>().ok().filter(|pids| *pids >= -1).ok_or_else(|| {
                invalid(format!(
                    "--pids-limit {} is not a number of processes: give a positive number, or -1 (or 0) for no limit",
                    shown(&self.pids_limit)
                ))
            })?;
            limits.pids_limit = Some(if pids == 0 { -1 } else { pids });
        }
        if !self.blkio_weight.is_empty() {
            let weight =
                self.blkio_weight.trim().parse::<u16>().ok().filter(|weight| BLKIO_WEIGHT_RANGE.contains(weight));
            limits.blkio_weight = Some(weight.ok_or_else(|| {
                invalid(format!("--blkio-weight {} is not a number from 10 to 1000", shown(&self.blkio_weight)))
            })?);
            if !host.blkio_weight_supported {
                return Err(CommandError::FailedPrecondition(
                    "--blkio-weight: this host's block I/O cgroup has no weight file (its disks do not use the BFQ scheduler), so the weight could not be applied; leave it out".to_string(),
                ));
            }
        }
        if self.ulimits.len() > MAX_LIST_ITEMS {
            return Err(invalid(format!("{} --ulimit flags: give at most {MAX_LIST_ITEMS}", self.ulimits.len())));
        }
        for text in &self.ulimits {
            let ulimit = parse_ulimit(text)?;
            // A later flag for the same limit replaces the earlier (and an update, the recorded one).
            limits.ulimits.retain(|existing| existing.name != ulimit.name);
            limits.ulimits.push(ulimit);
        }
        Ok(limits)
    }

    pub fn is_empty(&self) -> bool {
        self == &LimitsRequest::default()
    }
}

/// A byte size: a number with an optional binary unit, `b`, `k`, `m`, `g` or `t` (upper or lower
/// case, a trailing `b` allowed: `512m`, `1GB`, `1.5g`), as Docker takes it.
pub fn parse_bytes(flag: &str, text: &str) -> Result<i64, CommandError> {
    let error = || {
        invalid(format!(
            "{flag} {} is not a size: give a number with an optional unit b, k, m, g or t, e.g. 512m or 1g",
            shown(text)
        ))
    };
    let lower = text.trim().to_ascii_lowercase();
    let without_b = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, multiplier) = match without_b.chars().last() {
        Some('k') => (&without_b[..without_b.len() - 1], 1u64 << 10),
        Some('m') => (&without_b[..without_b.len() - 1], 1 << 20),
        Some('g') => (&without_b[..without_b.len() - 1], 1 << 30),
        Some('t') => (&without_b[..without_b.len() - 1], 1 << 40),
        _ => (without_b, 1),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(error());
    }
    let all_digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) || fraction.len() > 9 {
        return Err(error());
    }
    let whole_value: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| error())? };
    let fraction_value: u64 = if fraction.is_empty() { 0 } else { fraction.parse().map_err(|_| error())? };
    let scale = 10u64.pow(fraction.len() as u32);
    let bytes = whole_value
        .checked_mul(multiplier)
        .and_then(|bytes| bytes.checked_add(fraction_value.checked_mul(multiplier)? / scale))
        .and_then(|bytes| i64::try_from(bytes).ok())
        .ok_or_else(error)?;
    if bytes == 0 {
        return Err(invalid(format!("{flag} {} is zero: give a positive size, e.g. 512m", shown(text))));
    }
    Ok(bytes)
}

/// `--cpus` as billionths of a cpu: a positive decimal with at most 9 fractional digits.
fn parse_nano_cpus(text: &str) -> Result<u64, CommandError> {
    let error =
        || invalid(format!("--cpus {} is not a number of cpus: give a positive decimal, e.g. 0.5 or 2", shown(text)));
    let trimmed = text.trim();
    let (whole, fraction) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    let all_digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) || fraction.len() > 9 {
        return Err(error());
    }
    let whole_value: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| error())? };
    let fraction_value: u64 = if fraction.is_empty() { 0 } else { fraction.parse().map_err(|_| error())? };
    let nano = whole_value
        .checked_mul(1_000_000_000)
        .and_then(|nano| nano.checked_add(fraction_value * 10u64.pow(9 - fraction.len() as u32)))
        .ok_or_else(error)?;
    // The kernel's smallest CFS quota is 1 ms per 100 ms period: 0.01 cpu.
    if nano < 10_000_000 {
        return Err(invalid(format!("--cpus {} is below 0.01, the smallest quota the kernel takes", shown(text))));
    }
    Ok(nano)
}

/// A cpuset list: `0-3,5`, numbers and ranges, as the kernel writes `cpuset.cpus`. Sorted, no
/// duplicates.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, CommandError> {
    let error = || {
        invalid(format!("--cpuset-cpus {} is not a cpu list: give numbers and ranges, e.g. 0-1 or 0,2", shown(text)))
    };
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let first: u32 = first.trim().parse().map_err(|_| error())?;
        let last: u32 = last.trim().parse().map_err(|_| error())?;
        if first > last || last - first > 4096 {
            return Err(error());
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// The kernel's spelling of a cpu list: ranges joined with commas (`0-2,5`).
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while index < cpus.len() {
        let start = cpus[index];
        let mut end = start;
        while index + 1 < cpus.len() && cpus[index + 1] == end + 1 {
            index += 1;
            end = cpus[index];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        index += 1;
    }
    parts.join(",")
}

/// `name=soft[:hard]`; `-1` or `unlimited` is no limit.
fn parse_ulimit(text: &str) -> Result<Ulimit, CommandError> {
    let Some((name, values)) = text.split_once('=') else {
        return Err(invalid(format!("--ulimit {} is not name=soft[:hard]: e.g. nofile=1024:2048", shown(text))));
    };
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("rlimit_").unwrap_or(&name).to_string();
    if !ULIMIT_NAMES.contains(&name.as_str()) {
        return Err(invalid(format!(
            "--ulimit {}: unknown limit; use one of {}",
            shown(text),
            ULIMIT_NAMES.join(", ")
        )));
    }
    let value = |part: &str| -> Result<u64, CommandError> {
        match part.trim() {
            "-1" | "unlimited" => Ok(u64::MAX),
            number => number.parse::<u64>().map_err(|_| {
                invalid(format!("--ulimit {}: {} is not a number (or -1 for unlimited)", shown(text), shown(number)))
            }),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (value(soft)?, value(hard)?),
        None => (value(values)?, value(values)?),
    };
    if soft > hard {
        return Err(invalid(format!(
            "--ulimit {}: the soft limit is above the hard one; give soft <= hard",
            shown(text)
        )));
    }
    Ok(Ulimit { name, soft, hard })
}

/// `no`, `on-failure[:N]`, `always`, `unless-stopped`.
pub fn parse_restart(text: &str) -> Result<RestartPolicy, CommandError> {
    let error = || {
        invalid(format!(
            "--restart {} is not a restart policy: use no, on-failure[:N], always or unless-stopped",
            shown(text)
        ))
    };
    let (name, count) = match text.trim().split_once(':') {
        Some((name, count)) => (name, Some(count)),
        None => (text.trim(), None),
    };
    let mode = match name {
        "" | "no" => RestartMode::No,
        "on-failure" => RestartMode::OnFailure,
        "always" => RestartMode::Always,
        "unless-stopped" => RestartMode::UnlessStopped,
        _ => return Err(error()),
    };
    let max_retries = match count {
        None => 0,
        Some(count) if mode == RestartMode::OnFailure => count.parse::<u32>().map_err(|_| {
            invalid(format!("--restart {}: the retry count must be a number, e.g. on-failure:3", shown(text)))
        })?,
        Some(_) => {
            return Err(invalid(format!(
                "--restart {}: only on-failure takes a retry count (on-failure:N)",
                shown(text)
            )))
        }
    };
    Ok(RestartPolicy { mode, max_retries })
}

/// A capability name as the kernel spells it, from `net_admin`, `NET_ADMIN` or `CAP_NET_ADMIN`;
/// `ALL` stays `ALL`.
pub fn capability_name(text: &str) -> Result<String, CommandError> {
    let upper = text.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let name = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    if CAPABILITY_NAMES.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(invalid(format!(
            "unknown capability {}: use a name from capabilities(7) such as NET_ADMIN or SYS_PTRACE (with or without CAP_), or ALL",
            shown(text)
        )))
    }
}

/// `HOST[:CONTAINER[:PERMISSIONS]]`, or `HOST:PERMISSIONS`.
pub fn parse_device(text: &str) -> Result<DeviceMapping, CommandError> {
    let error =
        |why: &str| invalid(format!("--device {}: {why}; give HOST[:CONTAINER[:rwm]], e.g. /dev/fuse", shown(text)));
    let parts: Vec<&str> = text.split(':').collect();
    let is_permissions = |part: &str| !part.is_empty() && part.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let (host_path, container_path, permissions) = match parts.as_slice() {
        [host] => (*host, *host, "rwm"),
        [host, permissions] if is_permissions(permissions) => (*host, *host, *permissions),
        [host, container] => (*host, *container, "rwm"),
        [host, container, permissions] => (*host, *container, *permissions),
        _ => return Err(error("too many colons")),
    };
    if !host_path.starts_with('/') || !container_path.starts_with('/') {
        return Err(error("both paths must be absolute"));
    }
    if !is_permissions(permissions) {
        return Err(error("permissions are some of r, w and m"));
    }
    if host_path.split('/').any(|component| component == "..") || container_path.split('/').any(|c| c == "..") {
        return Err(error("paths may not contain `..`"));
    }
    Ok(DeviceMapping {
        host_path: host_path.to_string(),
        container_path: container_path.to_string(),
        permissions: permissions.to_string(),
    })
}

/// Why `--userns-remap` is refused on this build, after its syntax is checked: the mapped root
/// must own the rootfs, and berth's layers are shared read-only overlay lowers that cannot be
/// chowned per container; the other way, an idmapped rootfs mount, needs runc 1.2 or later
/// (`linux.uidMappings` with idmapped mounts) and berth does not yet set it up.
pub fn userns_refusal(text: &str) -> CommandError {
    let fields: Vec<Option<u32>> = text.split(':').map(|field| field.trim().parse::<u32>().ok()).collect();
    let well_formed = fields.len() == 3 && fields.iter().all(Option::is_some) && fields[2] != Some(0);
    if !well_formed {
        return invalid(format!(
            "--userns-remap {} is not CONTAINER_ID:HOST_ID:SIZE, e.g. 0:100000:65536",
            shown(text)
        ));
    }
    CommandError::FailedPrecondition(format!(
        "--userns-remap {} is not supported yet: the mapped root must own the container's rootfs, which is a stack of shared read-only layers berth cannot chown per container, and the runc berth drives (1.1) cannot mount a rootfs idmapped; run without --userns-remap",
        shown(text)
    ))
}

impl SecurityRequest {
    pub fn resolve(&self) -> Result<SecurityOptions, CommandError> {
        if !self.userns_remap.is_empty() {
            return Err(userns_refusal(&self.userns_remap));
        }
        if self.seccomp_unconfined && !self.seccomp_profile.is_empty() {
            return Err(invalid("--security-opt seccomp=unconfined and seccomp=FILE together: choose one".to_string()));
        }
        if self.seccomp_profile.len() > MAX_SECCOMP_PROFILE_BYTES {
            return Err(invalid(format!(
                "the seccomp profile is {} bytes, more than the {MAX_SECCOMP_PROFILE_BYTES} berth records: shorten it",
                self.seccomp_profile.len()
            )));
        }
        let no_new_privileges = match self.no_new_privileges.as_str() {
            "" => None,
            "true" => Some(true),
            "false" => Some(false),
            other => return Err(invalid(format!("no-new-privileges={} is not true or false", shown(other)))),
        };
        for (flag, list) in [
            ("--cap-add", &self.cap_add),
            ("--cap-drop", &self.cap_drop),
            ("--device", &self.devices),
            ("--group-add", &self.group_add),
        ] {
            if list.len() > MAX_LIST_ITEMS {
                return Err(invalid(format!("{} {flag} flags: give at most {MAX_LIST_ITEMS}", list.len())));
            }
        }
        let cap_add = self.cap_add.iter().map(|name| capability_name(name)).collect::<Result<Vec<_>, _>>()?;
        let cap_drop = self.cap_drop.iter().map(|name| capability_name(name)).collect::<Result<Vec<_>, _>>()?;
        let devices = self.devices.iter().map(|text| parse_device(text)).collect::<Result<Vec<_>, _>>()?;
        for group in &self.group_add {
            let plain = !group.is_empty()
                && group.len() <= 256
                && group.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !plain {
                return Err(invalid(format!(
                    "--group-add {} is not a group: give a gid or a group name from the image's /etc/group",
                    shown(group)
                )));
            }
        }
        Ok(SecurityOptions {
            privileged: self.privileged,
            seccomp_unconfined: self.seccomp_unconfined,
            seccomp_profile: (!self.seccomp_profile.is_empty()).then(|| self.seccomp_profile.clone()),
            no_new_privileges,
            cap_add,
            cap_drop,
            devices,
            group_add: self.group_add.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(edit: impl FnOnce(&mut LimitsRequest)) -> Result<ResourceLimits, CommandError> {
        let mut request = LimitsRequest::default();
        edit(&mut request);
        request.resolve(&ResourceLimits::default(), &two_cpus())
    }

    fn two_cpus() -> HostFacts {
        HostFacts { online_cpus: vec![0, 1], blkio_weight_supported: true }
    }

    fn message(error: CommandError) -> String {
        error.to_string()
    }

    #[test]
    fn sizes_take_docker_units() {
        assert_eq!(parse_bytes("--memory", "512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("--memory", "1GB"), Ok(1 << 30));
        assert_eq!(parse_bytes("--memory", "1.5g"), Ok(3 << 29));
        assert_eq!(parse_bytes("--memory", "4096"), Ok(4096));
        assert_eq!(parse_bytes("--memory", "8k"), Ok(8192));
        for bad in ["", "m", "12x", "-5m", "1.2.3g", "0", "99999999999t"] {
            assert!(parse_bytes("--memory", bad).is_err(), "{bad}");
        }
        assert!(message(parse_bytes("--memory", "12x").unwrap_err()).contains("unit b, k, m, g or t"));
    }

    #[test]
    fn limits_are_checked_against_each_other_and_the_host() {
        assert_eq!(limits(|r| r.memory = "8m".into()).unwrap().memory_bytes, Some(8 << 20));
        assert!(message(limits(|r| r.memory = "4m".into()).unwrap_err()).contains("minimum of 6 MiB"));
        assert!(message(limits(|r| r.memory_swap = "1g".into()).unwrap_err()).contains("needs --memory"));
        let swap_below = limits(|r| {
            r.memory = "1g".into();
            r.memory_swap = "512m".into()
        });
        assert!(message(swap_below.unwrap_err()).contains("less than --memory"));
        assert_eq!(limits(|r| r.cpus = "1.5".into()).unwrap().nano_cpus, Some(1_500_000_000));
        assert_eq!(limits(|r| r.cpus = ".25".into()).unwrap().nano_cpus, Some(250_000_000));
        assert!(message(limits(|r| r.cpus = "3".into()).unwrap_err()).contains("more than the 2 cpus"));
        assert!(limits(|r| r.cpus = "0".into()).is_err());
        assert!(limits(|r| r.cpus = "abc".into()).is_err());
        assert!(limits(|r| r.cpu_shares = "1".into()).is_err());
        assert_eq!(limits(|r| r.cpu_shares = "512".into()).unwrap().cpu_shares, Some(512));
        assert_eq!(limits(|r| r.cpuset_cpus = "1,0".into()).unwrap().cpuset_cpus.as_deref(), Some("0-1"));
        let missing_cpu = message(limits(|r| r.cpuset_cpus = "0-3".into()).unwrap_err());
        assert!(missing_cpu.contains("cpu 2, which this host does not have online (it has 0-1)"), "{missing_cpu}");
        assert!(limits(|r| r.cpuset_cpus = "1-0".into()).is_err());
        assert!(limits(|r| r.cpuset_cpus = "a".into()).is_err());
        assert_eq!(limits(|r| r.pids_limit = "0".into()).unwrap().pids_limit, Some(-1));
        assert_eq!(limits(|r| r.pids_limit = "64".into()).unwrap().pids_limit, Some(64));
        assert!(limits(|r| r.pids_limit = "-7".into()).is_err());
        assert!(limits(|r| r.blkio_weight = "5".into()).is_err());
        assert_eq!(limits(|r| r.blkio_weight = "300".into()).unwrap().blkio_weight, Some(300));
        let no_bfq = HostFacts { blkio_weight_supported: false, ..two_cpus() };
        let refused = LimitsRequest { blkio_weight: "300".into(), ..LimitsRequest::default() }
            .resolve(&ResourceLimits::default(), &no_bfq)
            .unwrap_err();
        assert!(matches!(refused, CommandError::FailedPrecondition(_)), "{refused:?}");
    }

    #[test]
    fn ulimits_take_soft_and_hard_and_later_flags_win() {
        let resolved = limits(|r| r.ulimits = vec!["nofile=100:200".into(), "NPROC=50".into(), "nofile=300".into()]);
        let resolved = resolved.unwrap().ulimits;
        assert_eq!(
            resolved,
            vec![
                Ulimit { name: "nproc".into(), soft: 50, hard: 50 },
                Ulimit { name: "nofile".into(), soft: 300, hard: 300 },
            ]
        );
        assert_eq!(parse_ulimit("core=-1").unwrap().hard, u64::MAX);
        assert!(message(parse_ulimit("nofile=10:5").unwrap_err()).contains("soft limit is above the hard"));
        assert!(message(parse_ulimit("bogus=1").unwrap_err()).contains("unknown limit"));
        assert!(parse_ulimit("nofile").is_err());
    }

    #[test]
    fn an_update_keeps_what_it_does_not_set() {
        let current = limits(|r| {
            r.memory = "64m".into();
            r.cpus = "1".into()
        })
        .unwrap();
        let update = LimitsRequest { pids_limit: "10".into(), ..LimitsRequest::default() };
        let updated = update.resolve(&current, &two_cpus()).unwrap();
        assert_eq!(updated.memory_bytes, Some(64 << 20));
        assert_eq!(updated.nano_cpus, Some(1_000_000_000));
        assert_eq!(updated.pids_limit, Some(10));
    }

    #[test]
    fn restart_policies_parse_as_docker_spells_them() {
        assert_eq!(parse_restart(""), Ok(RestartPolicy::default()));
        assert_eq!(parse_restart("on-failure:2"), Ok(RestartPolicy { mode: RestartMode::OnFailure, max_retries: 2 }));
        assert_eq!(parse_restart("on-failure").unwrap().max_retries, 0);
        assert_eq!(parse_restart("always").unwrap().mode, RestartMode::Always);
        assert_eq!(parse_restart("unless-stopped").unwrap().mode, RestartMode::UnlessStopped);
        assert!(message(parse_restart("always:3").unwrap_err()).contains("only on-failure takes a retry count"));
        assert!(parse_restart("sometimes").is_err());
        assert!(parse_restart("on-failure:x").is_err());
    }

    #[test]
    fn security_options_are_normalized() {
        assert_eq!(capability_name("net_admin"), Ok("CAP_NET_ADMIN".to_string()));
        assert_eq!(capability_name("CAP_SYS_PTRACE"), Ok("CAP_SYS_PTRACE".to_string()));
        assert_eq!(capability_name("all"), Ok("ALL".to_string()));
        assert!(capability_name("CAP_FLY").is_err());
        assert_eq!(
            parse_device("/dev/fuse"),
            Ok(DeviceMapping {
                host_path: "/dev/fuse".into(),
                container_path: "/dev/fuse".into(),
                permissions: "rwm".into()
            })
        );
        assert_eq!(parse_device("/dev/null:/dev/mynull:r").unwrap().container_path, "/dev/mynull");
        assert_eq!(parse_device("/dev/null:rw").unwrap().permissions, "rw");
        assert!(parse_device("dev/null").is_err());
        assert!(parse_device("/dev/null:/x:q").is_err());
        assert!(parse_device("/dev/../etc/shadow").is_err());
        let request = SecurityRequest { group_add: vec!["a b".into()], ..SecurityRequest::default() };
        assert!(request.resolve().is_err());
        let request = SecurityRequest { no_new_privileges: "maybe".into(), ..SecurityRequest::default() };
        assert!(request.resolve().is_err());
    }

    #[test]
    fn user_namespaces_are_refused_with_the_reason() {
        let refused = SecurityRequest { userns_remap: "0:100000:65536".into(), ..SecurityRequest::default() };
        let error = refused.resolve().unwrap_err();
        assert!(matches!(error, CommandError::FailedPrecondition(_)), "{error:?}");
        assert!(error.to_string().contains("cannot mount a rootfs idmapped"), "{error}");
        assert!(matches!(userns_refusal("0:1"), CommandError::InvalidArgument(_)));
    }

    #[test]
    fn cpu_lists_round_trip_in_the_kernels_spelling() {
        assert_eq!(parse_cpu_list("0-2,5,7-8").unwrap(), vec![0, 1, 2, 5, 7, 8]);
        assert_eq!(format_cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(format_cpu_list(&[3]), "3");
    }
}
