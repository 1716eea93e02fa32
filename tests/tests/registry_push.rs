//! `berth image push` against a real registry (Debian's docker-registry on loopback, started by
//! scripts/registry.sh) checked with skopeo: the pushed digest is berth's, a copy back out has
//! the same layers, a second push sends no blob, a push to another repository mounts them, the
//! pushed image pulls and runs; TLS with basic auth through `berth login`, the bearer-token flow
//! through scripts/registry-proxy.py, and bad input (unknown image, refused credentials, a
//! registry that answers a wrong digest, a connection cut mid-upload) with nothing recorded.

use std::path::Path;
use std::process::Command;

use berth_tests::registry::{make_certificates, Proxy, Registry};
use berth_tests::{test_images, Daemon};

fn events_of_kind(daemon: &Daemon, kind: &str) -> Vec<serde_json::Value> {
    daemon
        .ok(&["events", "--output", "json"])
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .filter(|event| event["kind"] == kind)
        .map(|event| event["fields"].clone())
        .collect()
}

fn image_digest(daemon: &Daemon, name: &str) -> String {
    let images: serde_json::Value = serde_json::from_str(&daemon.ok(&["image", "ls", "--output", "json"])).unwrap();
    let image = images.as_array().unwrap().iter().find(|image| image["name"] == name);
    image.unwrap_or_else(|| panic!("no image {name} in {images}"))["digest"].as_str().unwrap().to_string()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Requests in the registry's own access log that uploaded blob bytes (a PUT or PATCH of an upload).
fn blob_upload_requests(registry: &Registry) -> usize {
    let log = std::fs::read_to_string(registry.dir.path().join("registry/log")).unwrap_or_default();
    log.lines()
        .filter(|line| {
            (line.contains("\"PUT /v2/") || line.contains("\"PATCH /v2/")) && line.contains("/blobs/uploads/")
        })
        .count()
}

fn layer_digests(manifest: &serde_json::Value) -> Vec<String> {
    manifest["layers"].as_array().unwrap().iter().map(|layer| layer["digest"].as_str().unwrap().to_string()).collect()
}

fn skopeo(args: &[&str]) -> String {
    let output = Command::new("skopeo").args(args).output().unwrap();
    assert!(output.status.success(), "skopeo {args:?}: {}", stderr_of(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn push_round_trips_through_skopeo_sends_nothing_twice_and_mounts_across_repositories() {
    let registry = Registry::start();
    let daemon = Daemon::start();
    daemon.import_busybox();
    let host = registry.host();
    let reference = format!("{host}/team/busybox:1");
    let output = daemon.ok(&["image", "push", "busybox", &reference]);
    assert!(output.contains("pushed") && output.contains("uploaded"), "{output}");

    // The registry serves berth's manifest, byte for byte.
    let local_digest = image_digest(&daemon, "busybox:latest");
    assert_eq!(registry.skopeo_digest("team/busybox:1"), local_digest);
    let pushed = events_of_kind(&daemon, "ImagePushed");
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_eq!(pushed[0]["name"], "busybox:latest");
    assert_eq!(pushed[0]["reference"], reference.as_str());
    assert_eq!(pushed[0]["pushed_to"], format!("http://{host}").as_str());
    assert_eq!(pushed[0]["manifest_digest"], local_digest.as_str());
    assert_eq!((pushed[0]["uploaded_blobs"].as_u64(), pushed[0]["existing_blobs"].as_u64()), (Some(2), Some(0)));
    // Who pushed is the record's origin.
    let recorded = daemon.ok(&["events", "--output", "json"]);
    let origin = recorded
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|event| event["kind"] == "ImagePushed")
        .unwrap()["origin"]
        .clone();
    assert_eq!((origin["method"].as_str(), origin["uid"].as_u64()), (Some("Images/Push"), Some(0)), "{origin}");

    // Copied back out with skopeo: the same layers as the archive berth imported.
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("copy.tar");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci-archive:{}", copy.display()),
    ]);
    let copied: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", &format!("oci-archive:{}", copy.display())])).unwrap();
    let original_archive = test_images().join("busybox-oci.tar");
    let original: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", &format!("oci-archive:{}", original_archive.display())]))
            .unwrap();
    assert_eq!(layer_digests(&copied), layer_digests(&original));

    // Again: every blob is already there, none is sent.
    let uploads_before = blob_upload_requests(&registry);
    assert_eq!(uploads_before, 2, "one PUT per blob for a small image");
    let again = daemon.ok(&["image", "push", "busybox", &reference]);
    assert!(again.contains("0 blobs uploaded") && again.contains("2 already there"), "{again}");
    assert_eq!(blob_upload_requests(&registry), uploads_before);

    // To another repository of the same registry: mounted from the first, not sent.
    let other = format!("{host}/elsewhere/copy:2");
    let mounted = daemon.ok(&["image", "push", "busybox", &other]);
    assert!(mounted.contains("2 mounted"), "{mounted}");
    assert_eq!(blob_upload_requests(&registry), uploads_before);
    let pushed = events_of_kind(&daemon, "ImagePushed");
    assert_eq!(pushed.len(), 3);
    assert_eq!((pushed[2]["mounted_blobs"].as_u64(), pushed[2]["uploaded_blobs"].as_u64()), (Some(2), Some(0)));
    assert_eq!(registry.skopeo_digest("elsewhere/copy:2"), local_digest);

    // What was pushed pulls into a fresh berthd and runs.
    let fresh = Daemon::start();
    fresh.ok(&["image", "pull", &other]);
    assert_eq!(image_digest(&fresh, &other), local_digest);
    let run = fresh.ok(&["run", "--rm", &other, "echo", "pushed-pulled-running"]);
    assert!(run.contains("pushed-pulled-running"), "{run}");
}

#[test]
fn push_of_an_unknown_image_or_to_a_bad_reference_is_refused_and_not_recorded() {
    let registry = Registry::start();
    let daemon = Daemon::start();
    let unknown = daemon.cli(&["image", "push", "nothing-here", &format!("{}/x/y:1", registry.host())]);
    assert!(!unknown.status.success());
    assert!(stderr_of(&unknown).contains("not found"), "{}", stderr_of(&unknown));
    daemon.import_busybox();
    let bad = daemon.cli(&["image", "push", "busybox", "127.0.0.1:5000/UPPER/case"]);
    assert!(!bad.status.success());
    assert!(stderr_of(&bad).contains("lower-case"), "{}", stderr_of(&bad));
    assert!(events_of_kind(&daemon, "ImagePushed").is_empty());
}

/// A berthd whose `[registry] config_path` is `hosts_dir`.
fn daemon_with_hosts_dir(hosts_dir: &Path) -> Daemon {
    let config = format!("[registry]\nconfig_path = {:?}\n", hosts_dir.display().to_string());
    Daemon::start_with_config(|_| config)
}

#[test]
fn push_over_tls_with_basic_auth_through_login() {
    let work = tempfile::tempdir().unwrap();
    let certificates = make_certificates(work.path());
    let registry = Registry::start_tls(&certificates, Some("alice:wonderland"));
    let host = registry.host();
    let hosts_dir = work.path().join("certs.d");
    std::fs::create_dir_all(hosts_dir.join(&host)).unwrap();
    std::fs::write(
        hosts_dir.join(&host).join("hosts.toml"),
        format!("server = \"https://{host}\"\nca = {:?}\n", certificates.ca_cert.display().to_string()),
    )
    .unwrap();
    let daemon = daemon_with_hosts_dir(&hosts_dir);
    daemon.import_busybox();
    let config_home = work.path().join("config");
    let berth = |args: &[&str]| daemon.berth().env("XDG_CONFIG_HOME", &config_home).args(args).output().unwrap();
    let reference = format!("{host}/private/busybox:1");

    let anonymous = berth(&["image", "push", "busybox", &reference]);
    assert!(!anonymous.status.success());
    assert!(stderr_of(&anonymous).contains(&format!("berth login {host}")), "{}", stderr_of(&anonymous));
    let wrong = berth(&["image", "push", "--user", "alice:queen", "busybox", &reference]);
    assert!(!wrong.status.success());
    assert!(stderr_of(&wrong).contains("refused the credentials"), "{}", stderr_of(&wrong));
    assert!(events_of_kind(&daemon, "ImagePushed").is_empty());

    let mut login = daemon
        .berth()
        .env("XDG_CONFIG_HOME", &config_home)
        .args(["login", "--username", "alice", "--password-stdin", &host])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    login.stdin.take().unwrap().write_all(b"wonderland\n").unwrap();
    let login = login.wait_with_output().unwrap();
    assert!(login.status.success(), "{}", stderr_of(&login));
    let pushed = berth(&["image", "push", "--quiet", "busybox", &reference]);
    assert!(pushed.status.success(), "{}", stderr_of(&pushed));
    let local_digest = image_digest(&daemon, "busybox:latest");
    assert_eq!(String::from_utf8_lossy(&pushed.stdout).trim(), local_digest);
    assert_eq!(registry.skopeo_digest("private/busybox:1"), local_digest);
    let recorded = events_of_kind(&daemon, "ImagePushed");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["pushed_to"], format!("https://{host}").as_str());
    let log_dump = String::from_utf8_lossy(&daemon.replay(&["events"]).stdout).into_owned();
    assert!(!log_dump.contains("wonderland"), "the password was recorded");
    assert!(!daemon.daemon_log().contains("wonderland"), "the password was logged");
}

#[test]
fn push_through_a_bearer_token_endpoint() {
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let proxy = Proxy::start(work.path(), registry.port, Some("bob:builder"));
    let daemon = Daemon::start();
    daemon.import_busybox();
    let reference = format!("{}/tokens/busybox:1", proxy.host());
    let anonymous = daemon.cli(&["image", "push", "busybox", &reference]);
    assert!(!anonymous.status.success());
    assert!(stderr_of(&anonymous).contains("wants credentials"), "{}", stderr_of(&anonymous));
    daemon.ok(&["image", "push", "--user", "bob:builder", "busybox", &reference]);
    assert_eq!(registry.skopeo_digest("tokens/busybox:1"), image_digest(&daemon, "busybox:latest"));
    let requests = proxy.requests();
    assert!(requests.iter().any(|line| line == "GET /token 200"), "{requests:?}");
    assert!(requests.iter().any(|line| line.starts_with("PUT /v2/tokens/busybox/manifests/1 201")), "{requests:?}");
    assert_eq!(events_of_kind(&daemon, "ImagePushed").len(), 1);
}

#[test]
fn a_registry_that_answers_a_wrong_digest_or_drops_the_upload_fails_the_push_with_nothing_recorded() {
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let proxy = Proxy::start(work.path(), registry.port, None);
    let daemon = Daemon::start();
    daemon.import_busybox();

    std::fs::write(&proxy.lie_file, "wrong-digest-header\n").unwrap();
    let lied = daemon.cli(&["image", "push", "busybox", &format!("{}/lies/busybox:1", proxy.host())]);
    assert!(!lied.status.success());
    assert!(stderr_of(&lied).contains("says it stored"), "{}", stderr_of(&lied));

    std::fs::write(&proxy.lie_file, "deny-push\n").unwrap();
    let denied = daemon.cli(&["image", "push", "busybox", &format!("{}/denied/busybox:1", proxy.host())]);
    assert!(!denied.status.success());
    assert!(stderr_of(&denied).contains("denied access to denied/busybox"), "{}", stderr_of(&denied));

    std::fs::write(&proxy.lie_file, "drop-upload\n").unwrap();
    let dropped = daemon.cli(&["image", "push", "busybox", &format!("{}/dropped/busybox:1", proxy.host())]);
    assert!(!dropped.status.success());
    assert!(stderr_of(&dropped).contains("cannot reach registry"), "{}", stderr_of(&dropped));
    assert!(events_of_kind(&daemon, "ImagePushed").is_empty());

    // The registry behaving again, the same push goes through.
    std::fs::write(&proxy.lie_file, "").unwrap();
    daemon.ok(&["image", "push", "busybox", &format!("{}/dropped/busybox:1", proxy.host())]);
    assert_eq!(events_of_kind(&daemon, "ImagePushed").len(), 1);
}

#[test]
fn a_large_layer_goes_up_in_chunks() {
    let registry = Registry::start();
    let daemon = Daemon::start();
    let archive = test_images().join("debian-oci.tar");
    daemon.ok(&["image", "import", archive.to_str().unwrap(), "--name", "debian"]);
    let reference = format!("{}/big/debian:1", registry.host());
    daemon.ok(&["image", "push", "debian:bookworm", &reference]);
    assert_eq!(registry.skopeo_digest("big/debian:1"), image_digest(&daemon, "debian:bookworm"));
    let log = std::fs::read_to_string(registry.dir.path().join("registry/log")).unwrap();
    let patches = log.lines().filter(|line| line.contains("\"PATCH /v2/big/debian/blobs/uploads/")).count();
    // A 95 MB layer in 16 MiB chunks.
    assert_eq!(patches, 6, "{}", berth_tests::tail(&log, 30));
}

#[test]
fn a_mount_the_registry_answers_with_202_falls_back_to_an_upload() {
    let registry = Registry::start();
    let daemon = Daemon::start();
    daemon.import_busybox();
    let host = registry.host();
    daemon.ok(&["image", "push", "busybox", &format!("{host}/first/busybox:1")]);
    // The first repository loses its blob links: a mount from it cannot succeed.
    let layers = registry.dir.path().join("registry/data/docker/registry/v2/repositories/first/busybox/_layers");
    std::fs::remove_dir_all(&layers).unwrap_or_else(|error| panic!("{}: {error}", layers.display()));
    let second = daemon.ok(&["image", "push", "busybox", &format!("{host}/second/busybox:1")]);
    assert!(second.contains("2 blobs uploaded") && second.contains("0 mounted"), "{second}");
    let log = std::fs::read_to_string(registry.dir.path().join("registry/log")).unwrap();
    let refused_mounts = log
        .lines()
        .filter(|line| line.contains("\"POST /v2/second/busybox/blobs/uploads/?mount=") && line.contains("\" 202 "))
        .count();
    assert_eq!(refused_mounts, 2, "{}", berth_tests::tail(&log, 20));
    assert_eq!(registry.skopeo_digest("second/busybox:1"), image_digest(&daemon, "busybox:latest"));
}
