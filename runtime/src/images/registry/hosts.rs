//! Per-registry configuration in containerd's `hosts.toml` shape, so a pull of
//! `registry.example/app` can be served by a mirror:
//!
//! ```toml
//! # <config dir>/registry.example/hosts.toml   (config dir: berthd's `[registry] config_path`)
//! server = "https://registry.example"          # default: https://<host> (docker.io: registry-1.docker.io)
//! ca = "/etc/berth/certs.d/registry.example/ca.pem"   # a file or a list of files
//! skip_verify = false
//!
//! [host."https://mirror.example"]              # tried first, in file order
//! capabilities = ["pull", "resolve"]
//! ca = "mirror-ca.pem"                         # relative paths are relative to this file's directory
//! ```
//!
//! `http://` in a URL, `plain_http = true` on a table, or `--plain-http` on the pull (for the
//! server when it has no `server` line) means plain HTTP. Without a hosts.toml a loopback registry
//! (`localhost`, `127.x`, `[::1]`) is spoken to in plain HTTP, as containerd falls back to for
//! loopback; every other registry over HTTPS with the system roots.

use std::path::{Path, PathBuf};

/// Where berthd looks for `<host>/hosts.toml` unless `[registry] config_path` says otherwise.
pub const DEFAULT_HOSTS_CONFIG_DIR: &str = "/etc/berth/certs.d";
const HOSTS_FILE_NAME: &str = "hosts.toml";
/// A hosts.toml is a few lines; a big one is a mistake, not a config.
const MAX_HOSTS_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("cannot read {path}: {source}; fix its permissions or remove it")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid hosts.toml: {reason}; see containerd's hosts.toml format (server, [host.\"URL\"] with capabilities, ca, skip_verify)")]
    Invalid { path: PathBuf, reason: String },
}

/// What an endpoint may be asked for: `resolve` a tag to a manifest, `pull` blobs and manifests
/// by digest, `push` (for the push that builds on this client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub pull: bool,
    pub resolve: bool,
    pub push: bool,
}

impl Capabilities {
    const ALL: Capabilities = Capabilities { pull: true, resolve: true, push: true };
}

/// One place requests for a registry can go: a mirror or the registry itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://mirror.example` or `http://127.0.0.1:5000`, without a trailing slash; the API
    /// is under `<base_url>/v2/`.
    pub base_url: String,
    pub capabilities: Capabilities,
    /// Extra CA certificates (PEM) trusted for this endpoint besides the system roots.
    pub ca_files: Vec<PathBuf>,
    pub skip_verify: bool,
    pub is_mirror: bool,
}

impl Endpoint {
    pub fn is_plain_http(&self) -> bool {
        self.base_url.starts_with("http://")
    }
}

fn is_loopback_host(host: &str) -> bool {
    let without_port = match host.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit()) => name,
        _ => host,
    };
    without_port == "localhost" || without_port.starts_with("127.") || without_port == "[::1]"
}

/// The endpoints for `host` (a normalised registry host), mirrors first, in the order to try.
pub fn registry_endpoints(config_dir: &Path, host: &str, plain_http: bool) -> Result<Vec<Endpoint>, HostsError> {
    let api_host =
        if host == super::reference::DOCKER_HUB_DOMAIN { super::reference::DOCKER_HUB_API_HOST } else { host };
    let default_scheme = if plain_http || is_loopback_host(host) { "http" } else { "https" };
    let mut server = Endpoint {
        base_url: format!("{default_scheme}://{api_host}"),
        capabilities: Capabilities::ALL,
        ca_files: Vec::new(),
        skip_verify: false,
        is_mirror: false,
    };
    let host_dir = config_dir.join(host);
    let path = host_dir.join(HOSTS_FILE_NAME);
    let text = match std::fs::metadata(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(vec![server]),
        Err(source) => return Err(HostsError::Read { path, source }),
        Ok(metadata) if metadata.len() > MAX_HOSTS_FILE_BYTES => {
            return Err(HostsError::Invalid { path, reason: format!("it is over {MAX_HOSTS_FILE_BYTES} bytes") })
        }
        Ok(_) => std::fs::read_to_string(&path).map_err(|source| HostsError::Read { path: path.clone(), source })?,
    };
    let invalid = |reason: String| HostsError::Invalid { path: path.clone(), reason };
    let table: toml::Table = toml::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    let mut mirrors = Vec::new();
    for (key, value) in &table {
        match key.as_str() {
            "server" => {
                let url = value.as_str().ok_or_else(|| invalid("server must be a URL string".into()))?;
                server.base_url = endpoint_url(url, plain_http).map_err(invalid)?;
            }
            "host" => {
                let hosts = value.as_table().ok_or_else(|| invalid("host must be a table of [host.\"URL\"]".into()))?;
                for (url, settings) in hosts {
                    let settings =
                        settings.as_table().ok_or_else(|| invalid(format!("[host.{url:?}] must be a table")))?;
                    let mut mirror = Endpoint {
                        base_url: endpoint_url(url, false).map_err(invalid)?,
                        capabilities: Capabilities::ALL,
                        ca_files: Vec::new(),
                        skip_verify: false,
                        is_mirror: true,
                    };
                    apply_settings(&mut mirror, settings, &host_dir).map_err(invalid)?;
                    mirrors.push(mirror);
                }
            }
            _ => {}
        }
    }
    apply_settings(&mut server, &table, &host_dir).map_err(invalid)?;
    mirrors.push(server);
    Ok(mirrors)
}

/// `https://x`, `http://x`, or a bare `x` (HTTPS unless plain HTTP was asked for).
fn endpoint_url(given: &str, plain_http: bool) -> Result<String, String> {
    let trimmed = given.trim_end_matches('/');
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        Some((scheme, _)) => return Err(format!("{given:?} has scheme {scheme:?}; use http:// or https://")),
        None => (if plain_http { "http" } else { "https" }, trimmed),
    };
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(format!("{given:?} is not a URL"));
    }
    Ok(format!("{scheme}://{rest}"))
}

fn apply_settings(endpoint: &mut Endpoint, settings: &toml::Table, host_dir: &Path) -> Result<(), String> {
    for (key, value) in settings {
        match key.as_str() {
            "capabilities" => {
                let names = value.as_array().ok_or("capabilities must be a list like [\"pull\", \"resolve\"]")?;
                let mut capabilities = Capabilities { pull: false, resolve: false, push: false };
                for name in names {
                    match name.as_str() {
                        Some("pull") => capabilities.pull = true,
                        Some("resolve") => capabilities.resolve = true,
                        Some("push") => capabilities.push = true,
                        _ => return Err(format!("capability {name} is not one of \"pull\", \"resolve\", \"push\"")),
                    }
                }
                endpoint.capabilities = capabilities;
            }
            "ca" => {
                let files: Vec<&str> = match value {
                    toml::Value::String(file) => vec![file.as_str()],
                    toml::Value::Array(files) => files.iter().filter_map(toml::Value::as_str).collect(),
                    _ => return Err("ca must be a file name or a list of them".into()),
                };
                endpoint.ca_files = files.iter().map(|file| host_dir.join(file)).collect();
            }
            "skip_verify" => endpoint.skip_verify = value.as_bool().ok_or("skip_verify must be true or false")?,
            "plain_http" if value.as_bool() == Some(true) => {
                endpoint.base_url = endpoint.base_url.replacen("https://", "http://", 1);
            }
            "plain_http" if value.as_bool().is_none() => return Err("plain_http must be true or false".into()),
            // Keys containerd knows that berth does not use yet (client certificates, headers,
            // override_path) are read past rather than refused, so one file serves both.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_hosts_file() {
        let dir = tempfile::tempdir().unwrap();
        let urls = |host: &str, plain: bool| -> Vec<String> {
            registry_endpoints(dir.path(), host, plain).unwrap().into_iter().map(|e| e.base_url).collect()
        };
        assert_eq!(urls("docker.io", false), ["https://registry-1.docker.io"]);
        assert_eq!(urls("registry.example:5000", false), ["https://registry.example:5000"]);
        assert_eq!(urls("registry.example", true), ["http://registry.example"]);
        assert_eq!(urls("127.0.0.1:5000", false), ["http://127.0.0.1:5000"]);
        assert_eq!(urls("localhost", false), ["http://localhost"]);
    }

    #[test]
    fn mirrors_in_file_order_then_the_server() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("registry.example")).unwrap();
        std::fs::write(
            dir.path().join("registry.example/hosts.toml"),
            r#"
server = "https://registry.example"
ca = "ca.pem"
[host."http://zz-mirror:5000"]
capabilities = ["pull"]
[host."https://aa-mirror"]
capabilities = ["pull", "resolve"]
skip_verify = true
ca = ["/abs/one.pem", "two.pem"]
"#,
        )
        .unwrap();
        let endpoints = registry_endpoints(dir.path(), "registry.example", false).unwrap();
        let urls: Vec<&str> = endpoints.iter().map(|e| e.base_url.as_str()).collect();
        assert_eq!(urls, ["http://zz-mirror:5000", "https://aa-mirror", "https://registry.example"]);
        assert_eq!(endpoints[0].capabilities, Capabilities { pull: true, resolve: false, push: false });
        assert!(endpoints[1].skip_verify && endpoints[1].is_mirror && !endpoints[2].is_mirror);
        assert_eq!(endpoints[1].ca_files, [PathBuf::from("/abs/one.pem"), dir.path().join("registry.example/two.pem")]);
        assert_eq!(endpoints[2].ca_files, [dir.path().join("registry.example/ca.pem")]);
        assert!(endpoints[0].is_plain_http() && !endpoints[2].is_plain_http());
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("r.example")).unwrap();
        for bad in
            ["server = 3", "server = \"ftp://x\"", "[host.\"https://m\"]\ncapabilities = [\"fly\"]", "ca = 1", "= ="]
        {
            std::fs::write(dir.path().join("r.example/hosts.toml"), bad).unwrap();
            let error = registry_endpoints(dir.path(), "r.example", false).unwrap_err().to_string();
            assert!(error.contains("is not a valid hosts.toml"), "{bad}: {error}");
        }
    }
}
