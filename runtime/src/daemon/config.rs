//! berthd's configuration: flags over an optional TOML file, and the checks on its values.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use berth_log::DEFAULT_ROOT;
pub const DEFAULT_STATE: &str = "/run/berth";
/// Every container's cgroups are `<cgroup parent>/<namespace>/<id>` in each hierarchy.
pub const DEFAULT_CGROUP_PARENT: &str = "/berth";

/// The TOML file: every key optional; flags win over it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub root: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub address: Option<PathBuf>,
    /// The runc binary (a name looked up in PATH, or a path).
    pub runc: Option<PathBuf>,
    /// The monitor binary; default: berth-monitor beside berthd.
    pub monitor: Option<PathBuf>,
    /// The cgroup under which containers get theirs; two berthds on one host need different
    /// ones, or containers of the same name would share cgroups. Default "/berth".
    pub cgroup_parent: Option<String>,
    pub log: Option<LogConfig>,
    pub registry: Option<RegistryConfig>,
    pub output: Option<OutputConfig>,
    pub grpc: Option<GrpcConfig>,
    pub metrics: Option<MetricsConfig>,
    pub logging: Option<LoggingConfig>,
    pub secrets: Option<SecretsConfig>,
    pub checkpoint: Option<CheckpointConfig>,
    pub network: Option<NetworkConfig>,
}

/// `[grpc]`: who besides root may open the API socket.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// The socket's group (a number, as containerd's `[grpc] gid`): its members may use the
    /// socket, which makes them as good as root. `berthd --group` wins over it.
    pub gid: Option<u32>,
}

/// `--group`: a group name from the group database, or a number.
pub fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return check_gid(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        Ok(None) => {
            Err(format!("--group {group:?}: no such group; create it (groupadd {group}) or give a group number"))
        }
        Err(error) => Err(format!("--group {group:?}: cannot read the group database: {error}")),
    }
}

/// A group id chown can give: (gid_t)-1 means "leave the group as it is" to the kernel.
pub fn check_gid(gid: u32) -> Result<u32, String> {
    if gid == u32::MAX {
        return Err(format!("group id {gid} is not a group (it means \"no change\" to chown): give a real group"));
    }
    Ok(gid)
}

/// `[metrics]`: the Prometheus endpoint, off unless `address` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `HOST:PORT`, or `:PORT` for loopback (see `metrics::address`).
    pub address: Option<String>,
    /// Serve on an address other hosts can reach; the endpoint has no authentication.
    #[serde(default)]
    pub allow_non_loopback: bool,
}

/// `[logging]`: berthd's own log on stderr.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// "text" (default) or "json", one object per line.
    pub format: Option<String>,
}

/// `[secrets]`: when a container's key is deleted, which forgets its sealed environment
/// values (docs/secrets.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Forget a container's key when it is removed (default true).
    pub forget_on_remove: Option<bool>,
    /// With `forget_on_remove = false`: forget a removed container's key this many days after
    /// its removal (default: never; `berth-replay forget` does it by hand).
    pub retention_days: Option<u64>,
}

impl SecretsConfig {
    pub fn policy(&self) -> Result<crate::secrets::SecretsPolicy, String> {
        let forget_on_remove = self.forget_on_remove.unwrap_or(true);
        if forget_on_remove && self.retention_days.is_some() {
            return Err("config: [secrets] retention_days applies only with forget_on_remove = false (keys are otherwise forgotten at removal); drop one".to_string());
        }
        let retention = self.retention_days.map(|days| std::time::Duration::from_secs(days.saturating_mul(86_400)));
        Ok(crate::secrets::SecretsPolicy { forget_on_remove, retention })
    }
}

/// `[checkpoint]`: how often berthd writes a projection checkpoint (`daemon::checkpoint`), so a
/// start replays only the records after the newest one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Default true; false writes none and makes every start replay the whole log.
    pub enabled: Option<bool>,
    /// A checkpoint after this many records (default 100000).
    pub every_records: Option<u64>,
    /// Or after this many seconds with anything recorded (default 300).
    pub every_seconds: Option<u64>,
}

impl CheckpointConfig {
    /// The policy, refusing intervals of zero.
    pub fn policy(&self) -> Result<crate::daemon::checkpoint::CheckpointPolicy, String> {
        let defaults = crate::daemon::checkpoint::CheckpointPolicy::default();
        let every_records = self.every_records.unwrap_or(defaults.every_records);
        let every_seconds = self.every_seconds.unwrap_or(defaults.every.as_secs());
        if every_records == 0 || every_seconds == 0 {
            return Err(format!(
                "config: [checkpoint] every_records and every_seconds must be at least 1 (got {every_records} and {every_seconds}); set enabled = false to write no checkpoints"
            ));
        }
        Ok(crate::daemon::checkpoint::CheckpointPolicy {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            every_records,
            every: std::time::Duration::from_secs(every_seconds),
        })
    }
}

/// `[network]`: where the CNI plugins are and the default bridge network.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Default /usr/lib/cni (Debian's containernetworking-plugins).
    pub cni_bin_dir: Option<PathBuf>,
    /// The default bridge's Linux name, default "berth0"; two berthds on one host need different ones.
    pub bridge_name: Option<String>,
    /// The default bridge's IPv4 subnet, default 10.213.0.0/16.
    pub bridge_subnet: Option<String>,
    /// Keep one spare attachment to the default network ready (default true).
    pub spare: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The directory of `<host>/hosts.toml` files (mirrors, CA files, plain HTTP), as
    /// containerd's `config_path`; default /etc/berth/certs.d.
    pub config_path: Option<PathBuf>,
}

/// `[output]`: how much of each container's stdout and stderr is kept on disk.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// A stream's file is rotated at about this size (default 10 MiB).
    pub max_file_bytes: Option<u64>,
    /// Files kept per stream, the current one included (default 3).
    pub max_files: Option<u32>,
}

impl OutputConfig {
    /// The limits, refusing ones that would keep nothing.
    pub fn limits(&self) -> Result<crate::tasks::output_log::OutputLimits, String> {
        let defaults = crate::tasks::output_log::OutputLimits::default();
        let limits = crate::tasks::output_log::OutputLimits {
            max_file_bytes: self.max_file_bytes.unwrap_or(defaults.max_file_bytes),
            max_files: self.max_files.unwrap_or(defaults.max_files),
        };
        if limits.max_file_bytes < 4096
            || limits.max_files == 0
            || limits.max_files > crate::tasks::output_log::MAX_FILES_LIMIT
        {
            return Err(format!(
                "config: [output] max_file_bytes must be at least 4096 and max_files 1 to 100 (got {} and {})",
                limits.max_file_bytes, limits.max_files
            ));
        }
        Ok(limits)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// The log's directory (default `<root>/log`). Give it a file system of its own so that a
    /// container filling its writable layer (under the root) cannot leave the log without room.
    pub dir: Option<PathBuf>,
    pub segment_size: Option<u64>,
    /// "sync" (default) or "nosync" — nosync loses records on a crash; for benchmarks only.
    pub durability: Option<String>,
    /// Where archived segments go (default `<root>/log.archive`); may be another file system.
    pub archive_dir: Option<PathBuf>,
    /// Seconds between two archiver passes of a running berthd (default 300; 0: never).
    pub archive_interval_secs: Option<u64>,
    /// Retention: drop archived segments whose newest record is older than this many seconds.
    pub retain_max_age_secs: Option<u64>,
    /// Retention: drop the oldest archived segments while the archive holds more bytes.
    pub retain_max_bytes: Option<u64>,
}

impl LogConfig {
    /// The archiver's settings; `root_default` is used when `archive_dir` is not set.
    pub fn archive_settings(&self, root_default: PathBuf) -> Result<crate::daemon::archiver::ArchiveSettings, String> {
        let dir = self.archive_dir.clone().unwrap_or(root_default);
        let plain = dir.to_str().is_some_and(|text| !text.chars().any(|c| c.is_whitespace() || c.is_control()));
        if !dir.is_absolute() || !plain {
            return Err(format!(
                "config: [log] archive_dir {:?} must be an absolute UTF-8 path without spaces or control characters",
                dir.display().to_string()
            ));
        }
        let interval = match self.archive_interval_secs {
            None => Some(crate::daemon::archiver::DEFAULT_ARCHIVE_INTERVAL),
            Some(0) => None,
            Some(secs) => Some(std::time::Duration::from_secs(secs)),
        };
        let retention = berth_log::RetentionPolicy {
            max_age: self.retain_max_age_secs.map(std::time::Duration::from_secs),
            max_bytes: self.retain_max_bytes,
        };
        Ok(crate::daemon::archiver::ArchiveSettings { dir, interval, retention })
    }
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read config file {}: {error}", path.display()))?;
        let metadata =
            std::fs::metadata(path).map_err(|error| format!("cannot read config file {}: {error}", path.display()))?;
        check_config_owner(path, metadata.uid(), metadata.mode(), nix::unistd::Uid::effective().as_raw())?;
        toml::from_str(&text).map_err(|error| format!("config file {} is not valid: {error}", path.display()))
    }
}

/// The config names programs berthd runs as root (`runc`, `monitor`): a file another user may
/// write is not trusted. It must belong to berthd's own user or root, writable by its owner only.
pub fn check_config_owner(path: &Path, file_uid: u32, file_mode: u32, berthd_uid: u32) -> Result<(), String> {
    if file_uid != 0 && file_uid != berthd_uid {
        return Err(format!(
            "config file {} belongs to uid {file_uid}, and it names programs berthd runs as root: chown root {}",
            path.display(),
            path.display()
        ));
    }
    if file_mode & 0o022 != 0 {
        return Err(format!(
            "config file {} may be written by other users (mode {:o}), and it names programs berthd runs as root: chmod go-w {}",
            path.display(),
            file_mode & 0o7777,
            path.display()
        ));
    }
    Ok(())
}

/// A cgroup parent is an absolute path of plain names (letters, digits, `_`, `-`, `.`, and not
/// a cgroup's own control files such as `cgroup.procs`): "/berth", "/tenants/a".
pub fn check_cgroup_parent(cgroup_parent: &str) -> Result<(), String> {
    let plain_name = |name: &str| {
        !name.is_empty()
            && name != "."
            && name != ".."
            && !name.starts_with("cgroup.")
            && name.chars().all(|character| character.is_ascii_alphanumeric() || matches!(character, '_' | '-' | '.'))
    };
    let names_ok =
        cgroup_parent.strip_prefix('/').is_some_and(|rest| !rest.is_empty() && rest.split('/').all(plain_name));
    if names_ok {
        Ok(())
    } else {
        Err(format!(
            "cgroup parent {cgroup_parent:?} is not an absolute cgroup path of plain names; use e.g. \"/berth\""
        ))
    }
}

/// Finds `name` in PATH when it has no slash.
pub fn resolve_binary(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 || name.is_absolute() {
        return name.exists().then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_keys_parse_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berthd.toml");
        std::fs::write(
            &path,
            "root = \"/srv/berth\"\nrunc = \"/usr/sbin/runc\"\n[log]\ndir = \"/logfs/berth\"\nsegment_size = 1048576\ndurability = \"sync\"\n",
        )
        .unwrap();
        let config = ConfigFile::load(&path).unwrap();
        assert_eq!(config.root.as_deref(), Some(Path::new("/srv/berth")));
        assert_eq!(config.log.as_ref().and_then(|log| log.segment_size), Some(1 << 20));
        assert_eq!(config.log.as_ref().and_then(|log| log.dir.as_deref()), Some(Path::new("/logfs/berth")));
        std::fs::write(&path, "[metrics]\naddress = \":9323\"\n[logging]\nformat = \"json\"\n").unwrap();
        let config = ConfigFile::load(&path).unwrap();
        assert_eq!(config.metrics.as_ref().and_then(|metrics| metrics.address.as_deref()), Some(":9323"));
        assert!(!config.metrics.as_ref().unwrap().allow_non_loopback);
        assert_eq!(config.logging.as_ref().and_then(|logging| logging.format.as_deref()), Some("json"));
        std::fs::write(&path, "rooot = \"/typo\"\n").unwrap();
        let error = ConfigFile::load(&path).unwrap_err();
        assert!(error.contains("is not valid") && error.contains("rooot"), "{error}");
        std::fs::write(&path, "[grpc]\ngid = 1500\n").unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().grpc.and_then(|grpc| grpc.gid), Some(1500));
        std::fs::write(&path, "[grpc]\ngid = \"berth\"\n").unwrap();
        assert!(ConfigFile::load(&path).unwrap_err().contains("gid"));
        std::fs::write(&path, "[checkpoint]\nevery_records = 5\nevery_seconds = 2\n").unwrap();
        let policy = ConfigFile::load(&path).unwrap().checkpoint.unwrap().policy().unwrap();
        assert_eq!((policy.enabled, policy.every_records, policy.every.as_secs()), (true, 5, 2));
        std::fs::write(&path, "[checkpoint]\nevery_records = 0\n").unwrap();
        let zero = ConfigFile::load(&path).unwrap().checkpoint.unwrap().policy().unwrap_err();
        assert!(zero.contains("at least 1") && zero.contains("enabled = false"), "{zero}");
        let missing = ConfigFile::load(&dir.path().join("none.toml")).unwrap_err();
        assert!(missing.contains("cannot read config file"), "{missing}");
    }

    /// contrib/berthd.toml documents every key: with its defaults uncommented it parses (so no
    /// key there is unknown) and leaves no key unset (so none is missing from it).
    #[test]
    fn the_example_config_names_every_key() {
        let example = include_str!("../../../contrib/berthd.toml");
        let uncommented: String = example
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(setting) if !setting.starts_with([' ', '#']) && !setting.is_empty() => setting,
                Some(_) => "",
                None => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let config: ConfigFile = toml::from_str(&uncommented).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("None"), "a key is missing from contrib/berthd.toml: {shown}");
        let active: ConfigFile = toml::from_str(example).unwrap();
        assert!(active.root.is_none() && active.log.is_some(), "the example sets only defaults: {active:?}");
    }

    #[test]
    fn a_config_file_others_may_write_is_refused() {
        let path = Path::new("/etc/berth/berthd.toml");
        assert!(check_config_owner(path, 0, 0o100600, 0).is_ok());
        assert!(check_config_owner(path, 0, 0o100644, 0).is_ok());
        let group_writable = check_config_owner(path, 0, 0o100664, 0).unwrap_err();
        assert!(group_writable.contains("mode 664") && group_writable.contains("chmod go-w"), "{group_writable}");
        assert!(check_config_owner(path, 0, 0o100602, 0).unwrap_err().contains("chmod go-w"));
        let foreign = check_config_owner(path, 1000, 0o100600, 0).unwrap_err();
        assert!(foreign.contains("uid 1000") && foreign.contains("chown root"), "{foreign}");
        assert!(check_config_owner(path, 1000, 0o100600, 1000).is_ok());
    }

    #[test]
    fn groups_are_names_or_numbers() {
        assert_eq!(resolve_group("root"), Ok(0));
        assert_eq!(resolve_group("1500"), Ok(1500));
        assert!(resolve_group("4294967295").unwrap_err().contains("not a group"));
        let error = resolve_group("no-such-group-berth").unwrap_err();
        assert!(error.contains("no such group") && error.contains("groupadd"), "{error}");
    }

    #[test]
    fn archive_settings_have_defaults_and_refuse_paths_the_manifest_cannot_hold() {
        let root_default = PathBuf::from("/var/lib/berth/log.archive");
        let settings = LogConfig::default().archive_settings(root_default.clone()).unwrap();
        assert_eq!(settings.dir, root_default);
        assert_eq!(settings.interval, Some(crate::daemon::archiver::DEFAULT_ARCHIVE_INTERVAL));
        assert_eq!(settings.retention, berth_log::RetentionPolicy::default());
        let configured = LogConfig {
            archive_dir: Some(PathBuf::from("/mnt/archive")),
            archive_interval_secs: Some(0),
            retain_max_age_secs: Some(86_400),
            retain_max_bytes: Some(1 << 30),
            ..LogConfig::default()
        };
        let settings = configured.archive_settings(root_default.clone()).unwrap();
        assert_eq!((settings.dir.as_path(), settings.interval), (Path::new("/mnt/archive"), None));
        assert_eq!(settings.retention.max_bytes, Some(1 << 30));
        for bad in ["relative/archive", "/mnt/with space", "/mnt/new\nline"] {
            let config = LogConfig { archive_dir: Some(PathBuf::from(bad)), ..LogConfig::default() };
            let error = config.archive_settings(root_default.clone()).unwrap_err();
            assert!(error.contains("archive_dir") && error.contains("absolute"), "{error}");
        }
    }

    #[test]
    fn cgroup_parents_are_absolute_plain_paths() {
        for good in ["/berth", "/tenants/a"] {
            assert!(check_cgroup_parent(good).is_ok(), "{good}");
        }
        for bad in ["", "/", "berth", "/berth/", "/a//b", "/a/../b", "/.", "/cgroup.procs", "/a:b", "/a b"] {
            assert!(check_cgroup_parent(bad).unwrap_err().contains("/berth"), "{bad}");
        }
    }
}
