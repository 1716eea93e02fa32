//! A container's recorded policies in its runtime spec — limits into `linux.resources` and
//! rlimits, security options into capabilities, seccomp, devices and masked paths — and the host
//! facts the API observes to check them at create (online cpus, a blkio weight file, devices).

use std::path::{Path, PathBuf};

use berth_commands::policy::{parse_cpu_list, HostFacts};
use berth_projections::{ContainerPolicies, DeviceMapping, ResourceLimits, SecurityOptions};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxPidsBuilder, PosixRlimit, PosixRlimitBuilder,
    PosixRlimitType, Spec,
};

use crate::tasks::seccomp::{self, SeccompError};
use crate::tasks::spec::{self, SpecError, DEFAULT_CAPABILITIES};

/// The CFS period `--cpus` is a quota of (100 ms, as Docker uses).
pub const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{host_path}: {why}; --device takes a character or block device node such as /dev/fuse")]
    NotADevice { host_path: PathBuf, why: String },
    #[error("unknown capability {name:?}; this berth cannot grant it")]
    UnknownCapability { name: String },
    #[error("unknown ulimit {name:?}")]
    UnknownUlimit { name: String },
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(
        "the runtime spec could not take the container's policies ({reason}); this is a bug in berth, please report it"
    )]
    Build { reason: String },
}

fn build_error(error: impl std::fmt::Display) -> PolicyError {
    PolicyError::Build { reason: error.to_string() }
}

/// What the API checks a create or update against.
pub fn observe_host() -> HostFacts {
    let online_cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|text| parse_cpu_list(text.trim()).ok())
        .unwrap_or_else(|| (0..std::thread::available_parallelism().map_or(1, |n| n.get() as u32)).collect());
    let blkio_weight_supported = ["blkio/blkio.weight", "blkio/blkio.bfq.weight", "io.bfq.weight", "io.weight"]
        .iter()
        .any(|file| Path::new("/sys/fs/cgroup").join(file).exists());
    HostFacts { online_cpus, blkio_weight_supported }
}

/// The device node at `host_path`, as runc creates it at `container_path`.
pub fn device_node(host_path: &Path, container_path: &Path) -> Result<LinuxDevice, PolicyError> {
    let not_a_device = |why: String| PolicyError::NotADevice { host_path: host_path.to_path_buf(), why };
    let status = nix::sys::stat::stat(host_path).map_err(|errno| not_a_device(errno.desc().to_lowercase()))?;
    let kind = status.st_mode & libc::S_IFMT;
    let typ = match kind {
        libc::S_IFCHR => LinuxDeviceType::C,
        libc::S_IFBLK => LinuxDeviceType::B,
        _ => return Err(not_a_device("not a device node".to_string())),
    };
    LinuxDeviceBuilder::default()
        .path(container_path)
        .typ(typ)
        .major(nix::sys::stat::major(status.st_rdev) as i64)
        .minor(nix::sys::stat::minor(status.st_rdev) as i64)
        .file_mode(status.st_mode & 0o7777)
        .uid(status.st_uid)
        .gid(status.st_gid)
        .build()
        .map_err(build_error)
}

/// Every device node under the host's /dev, for `--privileged` (as Docker gives it): not the
/// container's own pseudo-terminals and shared memory, which it gets fresh.
pub fn host_devices() -> Vec<LinuxDevice> {
    let mut devices = Vec::new();
    let mut pending = vec![PathBuf::from("/dev")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(file_type) = entry.file_type() else { continue };
            if file_type.is_dir() {
                let skipped = ["pts", "shm", "mqueue", "fd"].iter().any(|name| path == Path::new("/dev").join(name));
                if !skipped {
                    pending.push(path);
                }
            } else if path != Path::new("/dev/console") {
                if let Ok(device) = device_node(&path, &path) {
                    devices.push(device);
                }
            }
        }
    }
    devices.sort_by(|left, right| left.path().cmp(right.path()));
    devices
}

/// Writes `policies` into `spec`, which `spec::generate_spec` built with berth's defaults.
pub fn apply_policies(spec: &mut Spec, policies: &ContainerPolicies, rootfs: &Path) -> Result<(), PolicyError> {
    apply_limits(spec, &policies.limits)?;
    apply_security(spec, &policies.security, rootfs)
}

fn apply_limits(spec: &mut Spec, limits: &ResourceLimits) -> Result<(), PolicyError> {
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut resources = linux.resources().clone().unwrap_or_default();
    if limits.memory_bytes.is_some() || limits.memory_swap_bytes.is_some() {
        let mut memory = LinuxMemoryBuilder::default();
        if let Some(bytes) = limits.memory_bytes {
            memory = memory.limit(bytes);
        }
        if let Some(swap) = limits.memory_swap_bytes {
            memory = memory.swap(swap);
        }
        resources.set_memory(Some(memory.build().map_err(build_error)?));
    }
    if limits.nano_cpus.is_some() || limits.cpu_shares.is_some() || limits.cpuset_cpus.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(nano_cpus) = limits.nano_cpus {
            cpu = cpu.period(CPU_PERIOD_US).quota(cpu_quota_us(nano_cpus));
        }
        if let Some(shares) = limits.cpu_shares {
            cpu = cpu.shares(shares);
        }
        if let Some(cpus) = &limits.cpuset_cpus {
            cpu = cpu.cpus(cpus.clone());
        }
        resources.set_cpu(Some(cpu.build().map_err(build_error)?));
    }
    if let Some(pids) = limits.pids_limit {
        resources.set_pids(Some(LinuxPidsBuilder::default().limit(pids).build().map_err(build_error)?));
    }
    if let Some(weight) = limits.blkio_weight {
        resources.set_block_io(Some(LinuxBlockIoBuilder::default().weight(weight).build().map_err(build_error)?));
    }
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));

    if !limits.ulimits.is_empty() {
        let mut process = spec.process().clone().unwrap_or_default();
        let mut rlimits: Vec<PosixRlimit> = process.rlimits().clone().unwrap_or_default();
        for ulimit in &limits.ulimits {
            let typ: PosixRlimitType =
                serde_json::from_value(serde_json::Value::String(format!("RLIMIT_{}", ulimit.name.to_uppercase())))
                    .map_err(|_| PolicyError::UnknownUlimit { name: ulimit.name.clone() })?;
            rlimits.retain(|existing| existing.typ() != typ);
            rlimits.push(
                PosixRlimitBuilder::default()
                    .typ(typ)
                    .soft(ulimit.soft)
                    .hard(ulimit.hard)
                    .build()
                    .map_err(build_error)?,
            );
        }
        process.set_rlimits(Some(rlimits));
        spec.set_process(Some(process));
    }
    Ok(())
}

/// `--cpus` as a CFS quota per [`CPU_PERIOD_US`].
pub fn cpu_quota_us(nano_cpus: u64) -> i64 {
    i64::try_from(nano_cpus / (1_000_000_000 / CPU_PERIOD_US)).unwrap_or(i64::MAX)
}

fn capability(name: &str) -> Result<Capability, PolicyError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| PolicyError::UnknownCapability { name: name.to_string() })
}

/// Every capability whose bit is set in `mask` (bit n is capability n, as in CapBnd).
fn capabilities_in(mask: u64) -> Capabilities {
    berth_commands::policy::CAPABILITY_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .filter_map(|(_, name)| capability(name).ok())
        .collect()
}

/// berthd's own bounding set (CapBnd of /proc/self/status): "all capabilities" can be no more
/// than these, or runc fails to apply them (a host that runs berthd in a restricted container
/// lacks some).
pub fn own_bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// The capability set after `--privileged`, `--cap-add` and `--cap-drop`, as Docker combines
/// them: ALL in cap-add grants every one (every one in `host_bounding`, berthd's own bounding
/// set); ALL in cap-drop starts from none; then adds, then drops.
pub fn effective_capabilities(security: &SecurityOptions, host_bounding: u64) -> Result<Capabilities, PolicyError> {
    if security.privileged || security.cap_add.iter().any(|name| name == "ALL") {
        let mut capabilities = capabilities_in(host_bounding);
        for name in security.cap_drop.iter().filter(|name| *name != "ALL") {
            capabilities.remove(&capability(name)?);
        }
        return Ok(capabilities);
    }
    let mut capabilities: Capabilities = if security.cap_drop.iter().any(|name| name == "ALL") {
        Capabilities::new()
    } else {
        DEFAULT_CAPABILITIES.iter().copied().collect()
    };
    for name in &security.cap_add {
        capabilities.insert(capability(name)?);
    }
    for name in security.cap_drop.iter().filter(|name| *name != "ALL") {
        if !security.cap_add.contains(name) {
            capabilities.remove(&capability(name)?);
        }
    }
    Ok(capabilities)
}

fn apply_security(spec: &mut Spec, security: &SecurityOptions, rootfs: &Path) -> Result<(), PolicyError> {
    let mut process = spec.process().clone().unwrap_or_default();
    let capabilities = effective_capabilities(security, own_bounding_set())?;
    let mut linux_capabilities = process.capabilities().clone().unwrap_or_default();
    linux_capabilities.set_bounding(Some(capabilities.clone()));
    linux_capabilities.set_effective(Some(capabilities.clone()));
    linux_capabilities.set_permitted(Some(capabilities));
    process.set_capabilities(Some(linux_capabilities));
    if let Some(no_new_privileges) = security.no_new_privileges {
        process.set_no_new_privileges(Some(no_new_privileges));
    }
    if !security.group_add.is_empty() {
        let mut user = process.user().clone();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        for group in &security.group_add {
            let gid = spec::resolve_group(rootfs, group)?;
            if !gids.contains(&gid) {
                gids.push(gid);
            }
        }
        user.set_additional_gids(Some(gids));
        process.set_user(user);
    }
    spec.set_process(Some(process));

    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut resources = linux.resources().clone().unwrap_or_default();
    let mut device_rules: Vec<LinuxDeviceCgroup> = resources.devices().clone().unwrap_or_default();
    let mut devices: Vec<LinuxDevice> = linux.devices().clone().unwrap_or_default();
    if security.privileged {
        device_rules =
            vec![LinuxDeviceCgroupBuilder::default().allow(true).access("rwm").build().map_err(build_error)?];
        devices.extend(host_devices());
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
        // /sys and its cgroups writable, as Docker mounts them for a privileged container.
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for mount in &mut mounts {
            if mount.destination() == Path::new("/sys") || mount.destination() == Path::new("/sys/fs/cgroup") {
                let options = mount.options().clone().unwrap_or_default();
                mount.set_options(Some(options.into_iter().filter(|option| option != "ro").collect()));
            }
        }
        spec.set_mounts(Some(mounts));
    }
    for mapping in &security.devices {
        let DeviceMapping { host_path, container_path, permissions } = mapping;
        let device = device_node(Path::new(host_path), Path::new(container_path))?;
        device_rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(device.typ())
                .major(device.major())
                .minor(device.minor())
                .access(permissions.clone())
                .build()
                .map_err(build_error)?,
        );
        devices.retain(|existing| existing.path() != device.path());
        devices.push(device);
    }
    resources.set_devices(Some(device_rules));
    linux.set_resources(Some(resources));
    linux.set_devices(if devices.is_empty() { None } else { Some(devices) });
    let seccomp = if security.privileged || security.seccomp_unconfined {
        None
    } else if let Some(profile) = &security.seccomp_profile {
        Some(seccomp::parse_custom_profile(profile)?)
    } else {
        Some(seccomp::default_profile(seccomp::host_kernel_version(), seccomp::host_architectures())?)
    };
    linux.set_seccomp(seccomp);
    spec.set_linux(Some(linux));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_projections::Ulimit;

    fn base_spec(rootfs: &Path) -> Spec {
        let input = spec::SpecInput { args: vec!["/bin/true".to_string()], ..spec::SpecInput::default() };
        spec::generate_spec(&input, rootfs).unwrap()
    }

    #[test]
    fn limits_land_in_resources_and_rlimits() {
        let rootfs = tempfile::tempdir().unwrap();
        let mut runtime_spec = base_spec(rootfs.path());
        let policies = ContainerPolicies {
            limits: ResourceLimits {
                memory_bytes: Some(64 << 20),
                memory_swap_bytes: Some(128 << 20),
                nano_cpus: Some(1_500_000_000),
                cpu_shares: Some(512),
                cpuset_cpus: Some("0".to_string()),
                pids_limit: Some(20),
                blkio_weight: Some(300),
                ulimits: vec![
                    Ulimit { name: "nofile".into(), soft: 100, hard: 200 },
                    Ulimit { name: "nproc".into(), soft: 5, hard: 6 },
                ],
            },
            ..ContainerPolicies::default()
        };
        apply_policies(&mut runtime_spec, &policies, rootfs.path()).unwrap();
        let json = serde_json::to_value(&runtime_spec).unwrap();
        let resources = &json["linux"]["resources"];
        assert_eq!(resources["memory"], serde_json::json!({ "limit": 64 << 20, "swap": 128 << 20 }));
        assert_eq!(
            resources["cpu"],
            serde_json::json!({ "shares": 512, "quota": 150_000, "period": 100_000, "cpus": "0" })
        );
        assert_eq!(resources["pids"], serde_json::json!({ "limit": 20 }));
        assert_eq!(resources["blockIO"], serde_json::json!({ "weight": 300 }));
        assert_eq!(
            json["process"]["rlimits"],
            serde_json::json!([
                { "type": "RLIMIT_NOFILE", "soft": 100, "hard": 200 },
                { "type": "RLIMIT_NPROC", "soft": 5, "hard": 6 },
            ])
        );
        // The default seccomp profile is there too.
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    }

    #[test]
    fn capabilities_combine_as_docker_documents() {
        let names = |security: SecurityOptions| {
            let mut names: Vec<String> = effective_capabilities(&security, u64::MAX)
                .unwrap()
                .into_iter()
                .map(|capability| serde_json::to_value(capability).unwrap().as_str().unwrap().to_string())
                .collect();
            names.sort();
            names
        };
        let added = names(SecurityOptions { cap_add: vec!["CAP_NET_ADMIN".into()], ..Default::default() });
        assert!(added.contains(&"CAP_NET_ADMIN".to_string()) && added.contains(&"CAP_CHOWN".to_string()));
        let dropped = names(SecurityOptions { cap_drop: vec!["CAP_CHOWN".into()], ..Default::default() });
        assert!(!dropped.contains(&"CAP_CHOWN".to_string()) && dropped.len() == DEFAULT_CAPABILITIES.len() - 1);
        let only_kill = names(SecurityOptions {
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["CAP_KILL".into()],
            ..Default::default()
        });
        assert_eq!(only_kill, ["CAP_KILL"]);
        let everything = names(SecurityOptions { privileged: true, ..Default::default() });
        assert_eq!(everything.len(), berth_commands::policy::CAPABILITY_NAMES.len());
        // A host whose bounding set lacks CAP_SYS_RESOURCE (bit 24) cannot grant it.
        let without_sys_resource =
            effective_capabilities(&SecurityOptions { privileged: true, ..Default::default() }, !(1u64 << 24)).unwrap();
        assert!(!without_sys_resource.contains(&Capability::SysResource));
        assert_eq!(without_sys_resource.len(), berth_commands::policy::CAPABILITY_NAMES.len() - 1);
    }

    #[test]
    fn privileged_and_unconfined_drop_the_filters() {
        let rootfs = tempfile::tempdir().unwrap();
        let mut runtime_spec = base_spec(rootfs.path());
        let mut policies = ContainerPolicies::default();
        policies.security.privileged = true;
        apply_policies(&mut runtime_spec, &policies, rootfs.path()).unwrap();
        let json = serde_json::to_value(&runtime_spec).unwrap();
        assert!(json["linux"].get("seccomp").is_none());
        assert!(json["linux"].get("maskedPaths").is_none() && json["linux"].get("readonlyPaths").is_none());
        assert_eq!(json["linux"]["resources"]["devices"], serde_json::json!([{ "allow": true, "access": "rwm" }]));
        assert!(json["linux"]["devices"].as_array().unwrap().iter().any(|device| device["path"] == "/dev/null"));
        let sys = json["mounts"].as_array().unwrap().iter().find(|mount| mount["destination"] == "/sys").unwrap();
        assert!(!sys["options"].as_array().unwrap().iter().any(|option| option == "ro"));

        let mut unconfined = base_spec(rootfs.path());
        let mut policies = ContainerPolicies::default();
        policies.security.seccomp_unconfined = true;
        apply_policies(&mut unconfined, &policies, rootfs.path()).unwrap();
        assert!(unconfined.linux().as_ref().unwrap().seccomp().is_none());
    }

    #[test]
    fn a_device_mapping_adds_the_node_and_its_cgroup_rule() {
        let rootfs = tempfile::tempdir().unwrap();
        let mut runtime_spec = base_spec(rootfs.path());
        let mut policies = ContainerPolicies::default();
        policies.security.devices = vec![DeviceMapping {
            host_path: "/dev/null".into(),
            container_path: "/dev/mynull".into(),
            permissions: "r".into(),
        }];
        apply_policies(&mut runtime_spec, &policies, rootfs.path()).unwrap();
        let json = serde_json::to_value(&runtime_spec).unwrap();
        assert_eq!(json["linux"]["devices"][0]["path"], "/dev/mynull");
        assert_eq!(
            (json["linux"]["devices"][0]["major"].as_i64(), json["linux"]["devices"][0]["minor"].as_i64()),
            (Some(1), Some(3))
        );
        let rules = json["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(
            rules.last().unwrap(),
            &serde_json::json!({ "allow": true, "type": "c", "major": 1, "minor": 3, "access": "r" })
        );
        assert!(matches!(device_node(Path::new("/etc/passwd"), Path::new("/x")), Err(PolicyError::NotADevice { .. })));
    }
}
