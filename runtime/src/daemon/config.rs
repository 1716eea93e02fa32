//! berthd's configuration: flags over an optional TOML file, and the checks on its values.

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
    pub network: Option<NetworkConfig>,
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
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read config file {}: {error}", path.display()))?;
        toml::from_str(&text).map_err(|error| format!("config file {} is not valid: {error}", path.display()))
    }
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
        std::fs::write(&path, "rooot = \"/typo\"\n").unwrap();
        let error = ConfigFile::load(&path).unwrap_err();
        assert!(error.contains("is not valid") && error.contains("rooot"), "{error}");
        let missing = ConfigFile::load(&dir.path().join("none.toml")).unwrap_err();
        assert!(missing.contains("cannot read config file"), "{missing}");
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
