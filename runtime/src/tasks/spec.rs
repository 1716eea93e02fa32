//! Builds the OCI runtime spec (a bundle's `config.json`) that runc runs a container from: the
//! image config's process settings merged with the user's overrides, and the same isolation
//! defaults a container started by runc or containerd gets.
//!
//! **Invariant:** resolving a user name reads `etc/passwd` and `etc/group` of the container's
//! rootfs only; symlinks in it are resolved as if the rootfs were `/`, never into the host.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};
use oci_spec::OciSpecError;

use crate::sys::fs::{create_private_dir_all, PRIVATE_FILE_MODE};

/// The PATH a container gets when its image sets none (the value docker and containerd use).
pub use berth_commands::{merge_env, merge_process_args, DEFAULT_PATH_ENV};

/// The capabilities a container gets from docker or containerd by default: enough for the usual
/// root-in-a-container chores (chown, setuid, binding low ports, raw sockets for ping), nothing
/// that administers the host.
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths under /proc and /sys that leak host information or allow host changes; runc hides
/// them (bind-mounts /dev/null or an empty read-only tmpfs over them).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths under /proc that stay visible but read-only.
pub const DEFAULT_READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// How many symlinks an in-rootfs lookup follows before giving up (the kernel's limit too).
const MAX_SYMLINK_HOPS: usize = 40;
/// /etc/passwd and /etc/group larger than this are not user databases we should parse.
const MAX_USER_DATABASE_BYTES: u64 = 16 * 1024 * 1024;

/// What can go wrong building a spec or writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("user {user:?} was looked up in {looked_up}, which has no such entry; use a numeric uid[:gid] or add the user to the image")]
    UnknownUser { user: String, looked_up: PathBuf },
    #[error("group {group:?} was looked up in {looked_up}, which has no such entry; use a numeric gid or add the group to the image")]
    UnknownGroup { group: String, looked_up: PathBuf },
    #[error(
        "user {user:?} is not of the form uid, uid:gid, name or name:group; fix the image's User or the --user flag"
    )]
    InvalidUser { user: String },
    #[error("the container has no command: the image has no entrypoint or cmd and none was given; pass a command")]
    NoCommand,
    #[error("working directory {working_dir:?} is not absolute; give an absolute path such as /app")]
    InvalidWorkingDir { working_dir: String },
    #[error("the generated runtime spec is invalid ({reason}); this is a bug in berth, please report it")]
    InvalidSpec { reason: String },
    #[error("cannot {action} {path}: {source}; check that the bundle directory is writable")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What the spec is built from: the merged process settings plus per-container names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecInput {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Empty means "/".
    pub working_dir: String,
    /// Image form: "", "uid", "uid:gid", "name", "name:group" (names are looked up in the rootfs).
    pub user: String,
    pub hostname: String,
    /// Empty means no cgroupsPath in the spec (runc then picks one).
    pub cgroups_path: String,
    /// `-t`: a pseudo-terminal for the process (runc hands its master to `--console-socket`).
    pub terminal: bool,
}

/// The numeric identity a user string resolves to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(key, _)| key)
}

/// Builds the runtime spec for a container whose root file system is mounted at `rootfs`.
pub fn generate_spec(input: &SpecInput, rootfs: &Path) -> Result<Spec, SpecError> {
    if input.args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let working_dir = if input.working_dir.is_empty() { "/".to_string() } else { input.working_dir.clone() };
    if !working_dir.starts_with('/') {
        return Err(SpecError::InvalidWorkingDir { working_dir });
    }
    let user = resolve_user(rootfs, &input.user)?;
    let mut env = if input.env.iter().any(|entry| env_key(entry) == "PATH") {
        input.env.clone()
    } else {
        merge_env(&input.env, &[])
    };
    // As docker does: programs that draw on a terminal need to know which kind it is.
    if input.terminal && !env.iter().any(|entry| env_key(entry) == "TERM") {
        env.push("TERM=xterm".to_string());
    }

    build_spec(input, &user, env, working_dir).map_err(|error| SpecError::InvalidSpec { reason: error.to_string() })
}

/// The typed assembly of the spec. oci-spec's builders start every field they are not given
/// from oci-spec's own `Default` (youki's: hostname "youki", a read-only root, inheritable and
/// ambient capabilities, empty annotations), so every such field is set here, or cleared after
/// `build`, to say exactly what runc gets.
fn build_spec(
    input: &SpecInput,
    user: &ResolvedUser,
    env: Vec<String>,
    working_dir: String,
) -> Result<Spec, OciSpecError> {
    let mut process_user = UserBuilder::default().uid(user.uid).gid(user.gid);
    if !user.additional_gids.is_empty() {
        // Left out when empty, as runc spec writes it.
        process_user = process_user.additional_gids(user.additional_gids.clone());
    }
    let process = ProcessBuilder::default()
        .terminal(input.terminal)
        .user(process_user.build()?)
        .args(input.args.clone())
        .env(env)
        .cwd(working_dir)
        .capabilities(default_capabilities()?)
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(1024u64)
            .soft(1024u64)
            .build()?])
        .no_new_privileges(true)
        .build()?;

    let mut linux = LinuxBuilder::default()
        // Deny every device, then allow the harmless ones a process expects to find.
        .resources(LinuxResourcesBuilder::default().devices(default_device_rules()?).build()?)
        .namespaces(default_namespaces()?)
        .masked_paths(DEFAULT_MASKED_PATHS.iter().map(|path| path.to_string()).collect::<Vec<String>>())
        .readonly_paths(DEFAULT_READONLY_PATHS.iter().map(|path| path.to_string()).collect::<Vec<String>>());
    if !input.cgroups_path.is_empty() {
        linux = linux.cgroups_path(PathBuf::from(&input.cgroups_path));
    }

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path("rootfs").readonly(false).build()?)
        .mounts(default_mounts()?)
        .process(process)
        .linux(linux.build()?)
        .build()?;
    // No hostname: the container keeps the one runc gives a new UTS namespace.
    spec.set_hostname(if input.hostname.is_empty() { None } else { Some(input.hostname.clone()) });
    spec.set_annotations(None);
    Ok(spec)
}

/// Bounding, effective and permitted get [`DEFAULT_CAPABILITIES`]; inheritable and ambient stay
/// empty, so an exec'd program cannot carry capabilities past a uid change.
fn default_capabilities() -> Result<LinuxCapabilities, OciSpecError> {
    let capabilities: Capabilities = DEFAULT_CAPABILITIES.iter().copied().collect();
    let mut linux_capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(capabilities.clone())
        .effective(capabilities.clone())
        .permitted(capabilities)
        .build()?;
    linux_capabilities.set_inheritable(None);
    linux_capabilities.set_ambient(None);
    Ok(linux_capabilities)
}

fn default_namespaces() -> Result<Vec<LinuxNamespace>, OciSpecError> {
    [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        // A new network namespace without a path: runc gives it a loopback device only.
        LinuxNamespaceType::Network,
    ]
    .into_iter()
    .map(|namespace_type| LinuxNamespaceBuilder::default().typ(namespace_type).build())
    .collect()
}

fn default_mounts() -> Result<Vec<Mount>, OciSpecError> {
    let mount = |destination: &str, mount_type: &str, source: &str, options: &[&str]| {
        let mut builder = MountBuilder::default().destination(destination).typ(mount_type).source(source);
        if !options.is_empty() {
            builder = builder.options(options.iter().map(|option| option.to_string()).collect::<Vec<String>>());
        }
        builder.build()
    };
    Ok(vec![
        // nosuid,noexec,nodev as containerd and docker mount it: nothing in /proc is a program
        // or a device, and a setuid bit there must not count.
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"])?,
        // A fresh /run per container, as podman gives and as programs that keep pid files and
        // sockets there expect; the image's own /run stays hidden beneath it.
        mount("/run", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=755", "size=65536k"])?,
    ])
}

/// `runc spec` writes only the deny-all rule and relies on runc adding its built-in allow-list;
/// we write that allow-list out so the bundle says what the container may open.
fn default_device_rules() -> Result<Vec<LinuxDeviceCgroup>, OciSpecError> {
    let allow_char = |major: i64, minor: Option<i64>| {
        let rule = LinuxDeviceCgroupBuilder::default().allow(true).typ(LinuxDeviceType::C).major(major).access("rwm");
        match minor {
            Some(minor) => rule.minor(minor).build(),
            None => rule.build(),
        }
    };
    Ok(vec![
        LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build()?,
        allow_char(1, Some(3))?, // /dev/null
        allow_char(1, Some(5))?, // /dev/zero
        allow_char(1, Some(7))?, // /dev/full
        allow_char(1, Some(8))?, // /dev/random
        allow_char(1, Some(9))?, // /dev/urandom
        allow_char(5, Some(0))?, // /dev/tty
        allow_char(5, Some(2))?, // /dev/ptmx
        allow_char(136, None)?,  // /dev/pts/*
    ])
}

/// Resolves an image-form user string to numeric ids, reading `etc/passwd` and `etc/group` inside
/// `rootfs` when names are used (or to find a numeric user's primary group and groups).
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser, SpecError> {
    if user.is_empty() {
        return Ok(ResolvedUser::default());
    }
    let (user_part, group_part) = match user.split_once(':') {
        Some((user_part, group_part)) => (user_part, Some(group_part)),
        None => (user, None),
    };
    if user_part.is_empty() || group_part == Some("") || group_part.is_some_and(|group| group.contains(':')) {
        return Err(SpecError::InvalidUser { user: user.to_string() });
    }
    let passwd_path = rootfs.join("etc/passwd");
    let group_path = rootfs.join("etc/group");
    let passwd_entries = read_user_database(rootfs, "etc/passwd")?;

    let (uid, passwd_gid, user_name) = match user_part.parse::<u32>() {
        Ok(uid) => {
            let entry = passwd_entries
                .iter()
                .find(|fields| fields.get(2).and_then(|field| field.parse::<u32>().ok()) == Some(uid));
            let gid = entry.and_then(|fields| fields.get(3)).and_then(|field| field.parse::<u32>().ok());
            (uid, gid, entry.map(|fields| fields[0].clone()))
        }
        Err(_) => {
            let entry = passwd_entries.iter().find(|fields| fields[0] == user_part).ok_or_else(|| {
                SpecError::UnknownUser { user: user_part.to_string(), looked_up: passwd_path.clone() }
            })?;
            let uid = entry.get(2).and_then(|field| field.parse::<u32>().ok());
            let gid = entry.get(3).and_then(|field| field.parse::<u32>().ok());
            let (Some(uid), Some(gid)) = (uid, gid) else {
                return Err(SpecError::UnknownUser { user: user_part.to_string(), looked_up: passwd_path });
            };
            (uid, Some(gid), Some(user_part.to_string()))
        }
    };

    let need_groups = user_name.is_some() || group_part.is_some_and(|group| group.parse::<u32>().is_err());
    let group_entries = if need_groups { read_user_database(rootfs, "etc/group")? } else { Vec::new() };
    let gid = match group_part {
        None => passwd_gid.unwrap_or(0),
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries
                .iter()
                .find(|fields| fields[0] == group)
                .and_then(|fields| fields.get(2))
                .and_then(|field| field.parse::<u32>().ok())
                .ok_or_else(|| SpecError::UnknownGroup { group: group.to_string(), looked_up: group_path.clone() })?,
        },
    };
    let mut additional_gids = Vec::new();
    if let Some(name) = &user_name {
        for fields in &group_entries {
            let is_member = fields.get(3).is_some_and(|members| members.split(',').any(|member| member.trim() == name));
            if let Some(group_gid) = fields.get(2).and_then(|field| field.parse::<u32>().ok()) {
                if is_member && group_gid != gid && !additional_gids.contains(&group_gid) {
                    additional_gids.push(group_gid);
                }
            }
        }
    }
    Ok(ResolvedUser { uid, gid, additional_gids })
}

/// A group for `--group-add`: a gid as it is, or a name looked up in the rootfs's `etc/group`.
pub fn resolve_group(rootfs: &Path, group: &str) -> Result<u32, SpecError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    read_user_database(rootfs, "etc/group")?
        .iter()
        .find(|fields| fields[0] == group)
        .and_then(|fields| fields.get(2))
        .and_then(|field| field.parse::<u32>().ok())
        .ok_or_else(|| SpecError::UnknownGroup { group: group.to_string(), looked_up: rootfs.join("etc/group") })
}

/// Reads a colon-separated database (passwd, group) inside the rootfs; a missing file is empty.
fn read_user_database(rootfs: &Path, relative_path: &str) -> Result<Vec<Vec<String>>, SpecError> {
    let display_path = rootfs.join(relative_path);
    let file = match open_in_root(rootfs, relative_path) {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(Vec::new()),
        Err(source) => return Err(SpecError::Io { action: "read", path: display_path, source }),
    };
    let mut bytes = Vec::new();
    file.take(MAX_USER_DATABASE_BYTES).read_to_end(&mut bytes).map_err(|source| SpecError::Io {
        action: "read",
        path: display_path.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split(':').map(str::to_string).collect::<Vec<String>>())
        .filter(|fields| !fields[0].is_empty())
        .collect())
}

/// Opens `relative_path` inside `root` as if `root` were `/`: symlinks (absolute or relative) and
/// `..` are resolved by hand and can never climb above `root`. `Ok(None)` when it does not exist.
pub fn open_in_root(root: &Path, relative_path: &str) -> io::Result<Option<File>> {
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root_fd: OwnedFd = nix::fcntl::open(root, dir_flags, Mode::empty())?;
    // Components still to walk, front first; symlink targets are spliced in front.
    let mut pending: Vec<Vec<u8>> = split_components(relative_path.as_bytes());
    pending.reverse();
    // The directories walked so far, so `..` can step back (never above the root).
    let mut dir_stack: Vec<OwnedFd> = Vec::new();
    let mut n_symlink_hops = 0usize;
    while let Some(component) = pending.pop() {
        if component == b".." {
            dir_stack.pop();
            continue;
        }
        let current_dir = dir_stack.last().unwrap_or(&root_fd);
        let name = OsStr::from_bytes(&component);
        let is_last = pending.is_empty();
        let open_flags = if is_last {
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
        } else {
            dir_flags | OFlag::O_NOFOLLOW
        };
        match openat(current_dir, name, open_flags, Mode::empty()) {
            Ok(fd) if is_last => return Ok(Some(File::from(fd))),
            Ok(fd) => dir_stack.push(fd),
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                let target = match readlinkat(current_dir, name) {
                    Ok(target) => target,
                    // Not a symlink: a file where a directory was needed.
                    Err(Errno::EINVAL) => return Ok(None),
                    Err(errno) => return Err(errno.into()),
                };
                n_symlink_hops += 1;
                if n_symlink_hops > MAX_SYMLINK_HOPS {
                    return Err(io::Error::from(Errno::ELOOP));
                }
                let target_bytes = target.as_bytes();
                if target_bytes.starts_with(b"/") {
                    dir_stack.clear();
                }
                for target_component in split_components(target_bytes).into_iter().rev() {
                    pending.push(target_component);
                }
            }
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(None)
}

fn split_components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&byte| byte == b'/')
        .filter(|component| !component.is_empty() && *component != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

/// Writes `bundle_dir/config.json` atomically (temp file, rename), with
/// root.path set to "rootfs" relative to the bundle whatever the spec said.
pub fn write_bundle(bundle_dir: &Path, spec: &Spec) -> Result<(), SpecError> {
    let io_error = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| SpecError::Io { action, path, source }
    };
    create_private_dir_all(bundle_dir).map_err(io_error("create", bundle_dir))?;
    let mut spec_to_write = spec.clone();
    let mut root = spec_to_write.root().clone().unwrap_or_default();
    root.set_path(PathBuf::from("rootfs"));
    spec_to_write.set_root(Some(root));
    let bytes = serde_json::to_vec_pretty(&spec_to_write)
        .map_err(|error| SpecError::InvalidSpec { reason: error.to_string() })?;

    let final_path = bundle_dir.join("config.json");
    let tmp_path = bundle_dir.join(".config.json.tmp");
    let mut tmp_file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        // The spec holds the container's environment, secrets included: root's alone.
        .mode(PRIVATE_FILE_MODE)
        .open(&tmp_path)
        .map_err(io_error("create", &tmp_path))?;
    tmp_file.write_all(&bytes).map_err(io_error("write", &tmp_path))?;
    drop(tmp_file);
    // Renamed into place so runc never reads half a file; not fsynced: a bundle is rebuilt from
    // the log for every task, and it lives in the state directory, which does not outlive a
    // reboot (tmpfs by default), so durability would buy nothing.
    fs::rename(&tmp_path, &final_path).map_err(io_error("rename into place", &final_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The written config.json as JSON, with the capability sets sorted: oci-spec keeps them in
    /// a HashSet, so their order in the file is not stable.
    fn written_config(spec: &Spec) -> serde_json::Value {
        let bundle = tempfile::tempdir().unwrap();
        write_bundle(bundle.path(), spec).unwrap();
        let mut written: serde_json::Value =
            serde_json::from_slice(&fs::read(bundle.path().join("config.json")).unwrap()).unwrap();
        for set_name in ["bounding", "effective", "permitted"] {
            let set = written["process"]["capabilities"][set_name].as_array_mut().unwrap();
            set.sort_by(|left, right| left.as_str().cmp(&right.as_str()));
        }
        written
    }

    fn rootfs_with_users() -> tempfile::TempDir {
        let rootfs = tempfile::tempdir().unwrap();
        fs::create_dir_all(rootfs.path().join("etc")).unwrap();
        fs::write(
            rootfs.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:web:/home/web:/bin/sh\n",
        )
        .unwrap();
        fs::write(rootfs.path().join("etc/group"), "root:x:0:\nweb:x:1001:\naudio:x:29:web\nstaff:x:50:web\n").unwrap();
        rootfs
    }

    /// Pins the whole config.json runc gets, so a field the builders fill from oci-spec's own
    /// defaults (a hostname, a read-only root, ambient capabilities) cannot slip in unnoticed.
    #[test]
    fn the_generated_config_is_exactly_the_runc_defaults_plus_the_input() {
        let rootfs = rootfs_with_users();
        let input = SpecInput {
            args: vec!["/bin/sh".to_string(), "-c".to_string(), "echo hi".to_string()],
            env: vec!["PATH=/bin".to_string(), "LANG=C".to_string()],
            working_dir: "/app".to_string(),
            user: "web".to_string(),
            hostname: "box".to_string(),
            cgroups_path: "/berth/default/c1".to_string(),
            terminal: false,
        };
        let spec = generate_spec(&input, rootfs.path()).unwrap();
        let mut capabilities: Vec<&str> = vec![
            "CAP_AUDIT_WRITE",
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_MKNOD",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_RAW",
            "CAP_SETFCAP",
            "CAP_SETGID",
            "CAP_SETPCAP",
            "CAP_SETUID",
            "CAP_SYS_CHROOT",
        ];
        capabilities.sort_unstable();
        let allow_char = |major: i64, minor: i64| json!({ "allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm" });
        let expected = json!({
            "ociVersion": "1.0.2",
            "root": { "path": "rootfs", "readonly": false },
            "hostname": "box",
            "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"] },
                { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
                { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
                { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
                { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
                { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] },
                { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] },
                { "destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755", "size=65536k"] },
            ],
            "process": {
                "terminal": false,
                "user": { "uid": 1000, "gid": 1001, "additionalGids": [29, 50] },
                "args": ["/bin/sh", "-c", "echo hi"],
                "env": ["PATH=/bin", "LANG=C"],
                "cwd": "/app",
                "capabilities": { "bounding": capabilities, "effective": capabilities, "permitted": capabilities },
                "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
                "noNewPrivileges": true,
            },
            "linux": {
                "resources": {
                    "devices": [
                        { "allow": false, "access": "rwm" },
                        allow_char(1, 3),
                        allow_char(1, 5),
                        allow_char(1, 7),
                        allow_char(1, 8),
                        allow_char(1, 9),
                        allow_char(5, 0),
                        allow_char(5, 2),
                        { "allow": true, "type": "c", "major": 136, "access": "rwm" },
                    ],
                },
                "cgroupsPath": "/berth/default/c1",
                "namespaces": [{ "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "network" }],
                "maskedPaths": DEFAULT_MASKED_PATHS,
                "readonlyPaths": DEFAULT_READONLY_PATHS,
            },
        });
        assert_eq!(written_config(&spec), expected);
    }

    /// What an empty input leaves out: no hostname (runc's UTS default), no cgroupsPath (runc
    /// picks one), no additionalGids; and PATH is filled in when the environment has none.
    #[test]
    fn optional_fields_are_left_out_when_the_input_has_none() {
        let rootfs = tempfile::tempdir().unwrap();
        let input =
            SpecInput { args: vec!["/bin/true".to_string()], env: vec!["A=1".to_string()], ..SpecInput::default() };
        let written = written_config(&generate_spec(&input, rootfs.path()).unwrap());
        // serde_json's Map sorts its keys.
        let top_level_keys: Vec<&str> = written.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(top_level_keys, vec!["linux", "mounts", "ociVersion", "process", "root"]);
        assert_eq!(written["process"]["user"], json!({ "uid": 0, "gid": 0 }));
        assert_eq!(written["process"]["cwd"], "/");
        assert_eq!(written["process"]["env"], json!(["A=1", DEFAULT_PATH_ENV]));
        assert!(
            written["process"]["capabilities"].get("inheritable").is_none()
                && written["process"]["capabilities"].get("ambient").is_none()
        );
        assert!(written["linux"].get("cgroupsPath").is_none());
        let linux_keys: Vec<&str> = written["linux"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(linux_keys, vec!["maskedPaths", "namespaces", "readonlyPaths", "resources"]);
    }
}
