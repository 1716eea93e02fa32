//! A real registry for pull tests: Debian's docker-registry started by `scripts/registry.sh` on
//! a free loopback port (plain HTTP, or TLS with a CA made here by openssl, with or without
//! htpasswd basic auth), the test images pushed into it with skopeo, and
//! `scripts/registry-proxy.py` in front of it where a test needs a bearer-token endpoint, a
//! request count, or a blob that stalls mid-transfer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, test_images};

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scripts")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

fn run_checked(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with openssl.
pub struct TestCertificates {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

pub fn make_certificates(dir: &Path) -> TestCertificates {
    let path = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        run_checked(Command::new("openssl").args(args).current_dir(dir), &format!("openssl {}", args[0]));
    };
    openssl(
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=berth test CA"]
            .iter()
            .copied()
            .chain(["-keyout", "ca.key", "-out", "ca.pem"])
            .collect::<Vec<_>>(),
    );
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(path("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    TestCertificates { ca_cert: path("ca.pem"), server_cert: path("server.pem"), server_key: path("server.key") }
}

/// A running docker-registry; stopped when dropped.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    ca: Option<PathBuf>,
    creds: Option<String>,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn start() -> Registry {
        Registry::start_with(&[], None, None)
    }

    /// TLS with the given certificates; with `htpasswd_user` ("user:password"), basic auth.
    pub fn start_tls(certificates: &TestCertificates, htpasswd_user: Option<&str>) -> Registry {
        let mut args: Vec<String> = vec![
            "--tls".into(),
            certificates.server_cert.display().to_string(),
            certificates.server_key.display().to_string(),
        ];
        let dir = tempfile::Builder::new().prefix("berth-registry-").tempdir_in("/var/tmp").unwrap();
        if let Some(user) = htpasswd_user {
            let (name, password) = user.split_once(':').unwrap();
            let htpasswd = run_checked(Command::new("htpasswd").args(["-Bbn", name, password]), "htpasswd");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, htpasswd).unwrap();
            args.extend(["--htpasswd".into(), file.display().to_string()]);
        }
        Registry::start_in(dir, &args, Some(certificates.ca_cert.clone()), htpasswd_user.map(str::to_string))
    }

    fn start_with(args: &[String], ca: Option<PathBuf>, creds: Option<String>) -> Registry {
        let dir = tempfile::Builder::new().prefix("berth-registry-").tempdir_in("/var/tmp").unwrap();
        Registry::start_in(dir, args, ca, creds)
    }

    fn start_in(dir: tempfile::TempDir, args: &[String], ca: Option<PathBuf>, creds: Option<String>) -> Registry {
        crate::require_root();
        let port = free_port();
        run_checked(
            Command::new("bash")
                .arg(scripts_dir().join("registry.sh"))
                .arg("start")
                .arg(dir.path().join("registry"))
                .arg(port.to_string())
                .args(args),
            "scripts/registry.sh start",
        );
        Registry { dir, port, ca, creds }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes one of the test images (`busybox`, `layers`) as `repository:tag`.
    pub fn push(&self, test_image: &str, target: &str) {
        let archive = test_images().join(format!("{test_image}-oci.tar"));
        let mut command = Command::new("bash");
        command
            .arg(scripts_dir().join("registry.sh"))
            .arg("push")
            .arg(self.dir.path().join("registry"))
            .arg(self.port.to_string())
            .arg(archive)
            .arg(target);
        if let Some(ca) = &self.ca {
            command.arg("--ca").arg(ca);
        }
        if let Some(creds) = &self.creds {
            command.args(["--creds", creds]);
        }
        run_checked(&mut command, "scripts/registry.sh push");
    }

    /// The manifest digest the registry serves for `repository:tag`, as skopeo sees it.
    pub fn skopeo_digest(&self, target: &str) -> String {
        let mut command = Command::new("skopeo");
        command.args(["inspect", "--format", "{{.Digest}}", "--tls-verify=false"]);
        if let Some(creds) = &self.creds {
            command.args(["--creds", creds]);
        }
        let scheme_host = format!("docker://{}/{target}", self.host());
        run_checked(command.arg(scheme_host), "skopeo inspect").trim().to_string()
    }

    /// The raw manifest for `repository:tag` (skopeo inspect --raw).
    pub fn skopeo_raw(&self, target: &str) -> serde_json::Value {
        let output = run_checked(
            Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("docker://{}/{target}", self.host())),
            "skopeo inspect --raw",
        );
        serde_json::from_str(&output).expect("manifest json")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(scripts_dir().join("registry.sh"))
            .arg("stop")
            .arg(self.dir.path().join("registry"))
            .output();
    }
}

/// `scripts/registry-proxy.py` in front of a registry; killed when dropped.
pub struct Proxy {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub stall_file: PathBuf,
    /// Lines like `corrupt-blob DIGEST`; see scripts/registry-proxy.py.
    pub lie_file: PathBuf,
}

impl Proxy {
    /// `token`: "user:password" to demand bearer tokens issued for those credentials.
    pub fn start(dir: &Path, upstream_port: u16, token: Option<&str>) -> Proxy {
        let port = free_port();
        let log = dir.join(format!("proxy-{port}.log"));
        let stall_file = dir.join(format!("proxy-{port}.stall"));
        let lie_file = dir.join(format!("proxy-{port}.lies"));
        let mut command = Command::new("python3");
        command
            .arg(scripts_dir().join("registry-proxy.py"))
            .arg(port.to_string())
            .arg(upstream_port.to_string())
            .arg(&log)
            .arg("--stall-file")
            .arg(&stall_file)
            .arg("--lie-file")
            .arg(&lie_file);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("python3");
        let proxy = Proxy { child, port, log, stall_file, lie_file };
        eventually(Duration::from_secs(20), "the registry proxy to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        proxy
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every logged line ("GET /v2/... 200").
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// How many GETs of blob `digest` got an answer from the registry (not counting 401s).
    pub fn blob_fetches(&self, digest: &str) -> usize {
        self.requests()
            .iter()
            .filter(|line| {
                line.starts_with("GET ") && line.contains(&format!("/blobs/{digest} ")) && !line.ends_with(" 401")
            })
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
