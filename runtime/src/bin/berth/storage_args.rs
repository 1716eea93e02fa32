//! The storage flags of `run` and `create` (`-v`, `--mount`, `--tmpfs`, `--read-only`) and the
//! environment files, parsed into the API's `Mount`s and `KEY=VALUE` entries as docker spells them.

use std::path::{Path, PathBuf};

use berth_runtime::api;
use clap::Args;

use crate::session::CliError;

#[derive(Args, Debug, Default)]
pub struct StorageArgs {
    /// Bind a host directory (HOST:CTR[:ro]) or mount a named volume (NAME:CTR[:ro]); a bare
    /// CTR gets an anonymous volume (repeatable)
    #[arg(short = 'v', long = "volume", value_name = "SRC:CTR[:ro]", value_parser = parse_volume_flag)]
    pub volumes: Vec<api::Mount>,

    /// Mount as docker spells it: type=bind|volume|tmpfs,src=…,dst=…[,readonly][,tmpfs-size=…]
    /// (repeatable)
    #[arg(long = "mount", value_name = "SPEC", value_parser = parse_mount_flag)]
    pub mounts: Vec<api::Mount>,

    /// Mount a fresh tmpfs at CTR, with options such as size=64m,mode=1777 (repeatable)
    #[arg(long = "tmpfs", value_name = "CTR[:OPTIONS]", value_parser = parse_tmpfs_flag)]
    pub tmpfs: Vec<api::Mount>,

    /// Mount the container's root file system read-only
    #[arg(long)]
    pub read_only: bool,

    /// Read environment variables from a file: KEY=VALUE lines, `#` comments, a bare KEY takes
    /// the caller's value (repeatable)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
}

impl StorageArgs {
    /// Every mount, in the order docker applies them: -v, --mount, --tmpfs.
    pub fn all_mounts(&self) -> Vec<api::Mount> {
        self.volumes.iter().chain(&self.mounts).chain(&self.tmpfs).cloned().collect()
    }
}

fn mount(kind: &str, source: &str, destination: &str, read_only: bool, options: Vec<String>) -> api::Mount {
    api::Mount {
        r#type: kind.to_string(),
        source: source.to_string(),
        destination: destination.to_string(),
        read_only,
        options,
    }
}

/// `HOST:CTR[:ro|rw]` (a bind when HOST starts with `/` or `.`), `NAME:CTR[:ro|rw]` (a named
/// volume), or `CTR` alone (an anonymous volume).
pub fn parse_volume_flag(text: &str) -> Result<api::Mount, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, destination, mode) = match parts.as_slice() {
        [destination] => ("", *destination, ""),
        [source, destination] => (*source, *destination, ""),
        [source, destination, mode] => (*source, *destination, *mode),
        _ => return Err("expected SRC:CTR[:ro], e.g. /srv/data:/data:ro or cache:/var/cache".to_string()),
    };
    let read_only = match mode {
        "" | "rw" => false,
        "ro" => true,
        other => return Err(format!("unknown volume mode {other:?}: use ro or rw")),
    };
    if !destination.starts_with('/') {
        return Err(format!("container path {destination:?} is not absolute: write it as /path"));
    }
    if source.starts_with('/') || source.starts_with('.') {
        let host_path = absolute_host_path(source)?;
        Ok(mount("bind", &host_path, destination, read_only, Vec::new()))
    } else {
        Ok(mount("volume", source, destination, read_only, Vec::new()))
    }
}

/// `type=bind,src=/a,dst=/b,readonly`; `source`/`target`/`destination`/`ro` too, and
/// `tmpfs-size`/`tmpfs-mode` for tmpfs.
pub fn parse_mount_flag(text: &str) -> Result<api::Mount, String> {
    let mut kind = "volume".to_string();
    let (mut source, mut destination, mut read_only, mut options) = (String::new(), String::new(), false, Vec::new());
    for field in text.split(',') {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        match key {
            "type" => kind = value.to_string(),
            "src" | "source" => source = value.to_string(),
            "dst" | "destination" | "target" => destination = value.to_string(),
            "readonly" | "ro" => read_only = matches!(value, "" | "true" | "1"),
            "tmpfs-size" => options.push(format!("size={value}")),
            "tmpfs-mode" => options.push(format!("mode={value}")),
            other => return Err(format!("unknown --mount field {other:?}: use type, src, dst, readonly, tmpfs-size")),
        }
    }
    if destination.is_empty() {
        return Err("--mount needs dst=/path/in/container".to_string());
    }
    match kind.as_str() {
        "bind" => {
            let host_path = absolute_host_path(&source)?;
            Ok(mount("bind", &host_path, &destination, read_only, options))
        }
        "volume" | "tmpfs" => Ok(mount(&kind, &source, &destination, read_only, options)),
        other => Err(format!("unknown mount type {other:?}: use bind, volume or tmpfs")),
    }
}

/// `CTR[:OPTIONS]`, OPTIONS comma-separated (size=64m,mode=1777; ro for read-only).
pub fn parse_tmpfs_flag(text: &str) -> Result<api::Mount, String> {
    let (destination, option_text) = text.split_once(':').unwrap_or((text, ""));
    if !destination.starts_with('/') {
        return Err(format!("tmpfs path {destination:?} is not absolute: write it as /path"));
    }
    let mut read_only = false;
    let mut options = Vec::new();
    for option in option_text.split(',').filter(|option| !option.is_empty()) {
        match option {
            "ro" => read_only = true,
            "rw" => read_only = false,
            other => options.push(other.to_string()),
        }
    }
    Ok(mount("tmpfs", "", destination, read_only, options))
}

/// A relative bind source is taken from the current directory, as docker does; berthd then
/// resolves symlinks and checks that it exists.
fn absolute_host_path(source: &str) -> Result<String, String> {
    if source.is_empty() {
        return Err("a bind mount needs a host path: src=/path".to_string());
    }
    if source.starts_with('/') {
        return Ok(source.to_string());
    }
    let current_dir = std::env::current_dir().map_err(|error| format!("cannot read the current directory: {error}"))?;
    current_dir.join(source).into_os_string().into_string().map_err(|_| "the host path is not UTF-8".to_string())
}

/// `KEY=VALUE` as given; a bare `KEY` takes the caller's value, or is left out when the caller
/// has none (as docker does).
pub fn environment_entry(entry: &str) -> Option<String> {
    if entry.contains('=') {
        return Some(entry.to_string());
    }
    std::env::var(entry).ok().map(|value| format!("{entry}={value}"))
}

/// The entries of an env file: one KEY=VALUE (or bare KEY) a line, blank lines and `#`
/// comments skipped, values taken literally (no quotes removed, as docker reads them).
pub fn read_env_file(path: &Path) -> Result<Vec<String>, CliError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| CliError::ReadFile { path: path.to_path_buf(), source })?;
    Ok(text
        .lines()
        .map(|line| line.trim_start())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(environment_entry)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flags_read_as_docker_writes_them() {
        let bind = parse_volume_flag("/srv:/data:ro").unwrap();
        assert_eq!((bind.r#type.as_str(), bind.source.as_str(), bind.destination.as_str()), ("bind", "/srv", "/data"));
        assert!(bind.read_only);
        let named = parse_volume_flag("cache:/var/cache").unwrap();
        assert_eq!((named.r#type.as_str(), named.source.as_str(), named.read_only), ("volume", "cache", false));
        let anonymous = parse_volume_flag("/scratch").unwrap();
        assert_eq!((anonymous.r#type.as_str(), anonymous.source.as_str()), ("volume", ""));
        assert!(parse_volume_flag("/a:/b:rx").is_err());
        assert!(parse_volume_flag("/a:relative").is_err());
    }

    #[test]
    fn mount_and_tmpfs_flags_parse() {
        let bind = parse_mount_flag("type=bind,src=/srv,dst=/data,readonly").unwrap();
        assert_eq!((bind.r#type.as_str(), bind.source.as_str(), bind.read_only), ("bind", "/srv", true));
        let tmpfs = parse_mount_flag("type=tmpfs,dst=/t,tmpfs-size=1m").unwrap();
        assert_eq!(tmpfs.options, ["size=1m"]);
        assert!(parse_mount_flag("type=nfs,dst=/x").is_err());
        assert!(parse_mount_flag("type=bind,src=/a").is_err());
        let flag = parse_tmpfs_flag("/run/x:size=2m,mode=1777,ro").unwrap();
        assert_eq!(flag.options, ["size=2m", "mode=1777"]);
        assert!(flag.read_only);
    }

    #[test]
    fn bare_keys_take_the_callers_value_or_are_left_out() {
        assert_eq!(environment_entry("A=1"), Some("A=1".to_string()));
        assert_eq!(environment_entry("BERTH_SURELY_UNSET_VARIABLE_X"), None);
        let path = std::env::var("PATH").unwrap();
        assert_eq!(environment_entry("PATH"), Some(format!("PATH={path}")));
    }
}
