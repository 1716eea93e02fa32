//! `berth image pull` against a real registry (Debian's docker-registry on loopback, started by
//! scripts/registry.sh; images pushed with skopeo): plain HTTP, a multi-platform index, TLS with
//! a CA of the test's own via hosts.toml, basic auth with `berth login`, the bearer-token flow,
//! a mirror, bad input, and a pull cut off by kill -9 that resumes with only what was missing.

use std::path::Path;
use std::time::Duration;

use berth_tests::registry::{make_certificates, Proxy, Registry};
use berth_tests::{eventually, Daemon};

/// Every event berthd recorded, as `berth events --output json` prints them.
fn events(daemon: &Daemon) -> Vec<serde_json::Value> {
    daemon
        .ok(&["events", "--output", "json"])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect()
}

fn events_of_kind(daemon: &Daemon, kind: &str) -> Vec<serde_json::Value> {
    events(daemon).into_iter().filter(|event| event["kind"] == kind).map(|event| event["fields"].clone()).collect()
}

fn image_digest(daemon: &Daemon, name: &str) -> String {
    let images: serde_json::Value = serde_json::from_str(&daemon.ok(&["image", "ls", "--output", "json"])).unwrap();
    let image = images.as_array().unwrap().iter().find(|image| image["name"] == name);
    image.unwrap_or_else(|| panic!("no image {name} in {images}"))["digest"].as_str().unwrap().to_string()
}

fn ingest_is_empty(daemon: &Daemon) -> bool {
    std::fs::read_dir(daemon.root.join("content/ingest")).unwrap().next().is_none()
}

/// Whether nothing is left unpacked beside a download (layers staged while they stream): a
/// staged tree is removed when its pull gives up on it, at the latest a few seconds after.
fn staging_area_empties(daemon: &Daemon) -> bool {
    let tmp = daemon.root.join("snapshots/tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let empty = std::fs::read_dir(&tmp).map(|mut entries| entries.next().is_none()).unwrap_or(true);
        if empty || std::time::Instant::now() > deadline {
            return empty;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A berthd whose `[registry] config_path` is `hosts_dir`.
fn daemon_with_hosts_dir(hosts_dir: &Path) -> Daemon {
    let config = format!("[registry]\nconfig_path = {:?}\n", hosts_dir.display().to_string());
    Daemon::start_with_config(|_| config)
}

fn write_hosts_toml(hosts_dir: &Path, host: &str, text: &str) {
    std::fs::create_dir_all(hosts_dir.join(host)).unwrap();
    std::fs::write(hosts_dir.join(host).join("hosts.toml"), text).unwrap();
}

#[test]
fn pull_over_plain_http_records_the_pull_and_runs_a_container() {
    let registry = Registry::start();
    registry.push("busybox", "local/busybox:1");
    let daemon = Daemon::start();
    let reference = format!("{}/local/busybox:1", registry.host());
    let output = daemon.ok(&["image", "pull", &reference]);
    assert!(output.contains("pulled") && output.contains("unpacked"), "{output}");

    assert_eq!(image_digest(&daemon, &reference), registry.skopeo_digest("local/busybox:1"));
    let pulled = events_of_kind(&daemon, "ImagePulled");
    assert_eq!(pulled.len(), 1, "{pulled:?}");
    assert_eq!(pulled[0]["reference"], reference.as_str());
    assert_eq!(pulled[0]["served_by"], format!("http://{}", registry.host()).as_str());
    assert_eq!(pulled[0]["manifest_digest"], registry.skopeo_digest("local/busybox:1").as_str());
    assert!(ingest_is_empty(&daemon));

    let run = daemon.ok(&["run", "--rm", &reference, "echo", "pulled-and-running"]);
    assert!(run.contains("pulled-and-running"), "{run}");

    // Pulled again: nothing fetched, the same image.
    let again = daemon.ok(&["image", "pull", "--quiet", &reference]);
    assert_eq!(again.trim(), reference);
    let kept = daemon.ok(&["image", "pull", &reference]);
    assert!(kept.contains("0 blobs, 0 B fetched"), "{kept}");
}

#[test]
fn pull_chooses_the_platform_from_an_index() {
    let registry = Registry::start();
    registry.push("busybox", "local/multi:amd64");
    registry.push("layers", "local/multi:arm64");
    let manifest_entry = |tag: &str, architecture: &str| {
        let raw = registry.skopeo_raw(&format!("local/multi:{tag}"));
        serde_json::json!({
            "mediaType": raw["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json"),
            "digest": registry.skopeo_digest(&format!("local/multi:{tag}")),
            "size": serde_json::to_vec(&raw).unwrap().len(),
            "platform": {"os": "linux", "architecture": architecture},
        })
    };
    // skopeo's --raw output is the stored bytes re-serialised; take the real size from the registry.
    let size_of = |tag: &str| -> usize {
        let url = format!("http://{}/v2/local/multi/manifests/{tag}", registry.host());
        let output = std::process::Command::new("curl")
            .args(["-sf", "-H", "Accept: application/vnd.oci.image.manifest.v1+json", &url])
            .output()
            .unwrap();
        output.stdout.len()
    };
    let mut amd64 = manifest_entry("amd64", "amd64");
    amd64["size"] = size_of("amd64").into();
    let mut arm64 = manifest_entry("arm64", "arm64");
    arm64["size"] = size_of("arm64").into();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [amd64, arm64],
    });
    let put = std::process::Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H", "Content-Type: application/vnd.oci.image.index.v1+json", "--data-binary"])
        .arg(index.to_string())
        .arg(format!("http://{}/v2/local/multi/manifests/latest", registry.host()))
        .output()
        .unwrap();
    assert!(put.status.success(), "PUT index: {}", String::from_utf8_lossy(&put.stderr));

    let daemon = Daemon::start();
    let reference = format!("{}/local/multi:latest", registry.host());
    daemon.ok(&["image", "pull", "--platform", "linux/arm64", &reference]);
    assert_eq!(image_digest(&daemon, &reference), registry.skopeo_digest("local/multi:arm64"));
    assert_eq!(events_of_kind(&daemon, "ImagePulled")[0]["platform"], "linux/arm64");
    daemon.ok(&["image", "pull", "--platform", "linux/amd64", &reference]);
    assert_eq!(image_digest(&daemon, &reference), registry.skopeo_digest("local/multi:amd64"));

    let missing = daemon.cli(&["image", "pull", "--platform", "linux/s390x", &reference]);
    assert!(!missing.status.success());
    let message = stderr_of(&missing);
    assert!(message.contains("no image for linux/s390x") && message.contains("linux/arm64"), "{message}");
}

#[test]
fn pull_over_tls_with_a_ca_from_hosts_toml_and_basic_auth_through_login() {
    let work = tempfile::tempdir().unwrap();
    let certificates = make_certificates(work.path());
    let registry = Registry::start_tls(&certificates, Some("alice:wonderland"));
    registry.push("busybox", "private/busybox:1");
    let hosts_dir = work.path().join("certs.d");
    let host = registry.host();
    let daemon = daemon_with_hosts_dir(&hosts_dir);
    let reference = format!("{host}/private/busybox:1");
    let config_home = work.path().join("config");
    let berth = |args: &[&str], stdin: Option<&str>| {
        let mut command = daemon.berth();
        command.env("XDG_CONFIG_HOME", &config_home).args(args);
        if let Some(text) = stdin {
            use std::io::Write;
            command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = command.spawn().unwrap();
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            return child.wait_with_output().unwrap();
        }
        command.output().unwrap()
    };

    // Without hosts.toml the registry's certificate is not trusted (and loopback defaults to HTTP).
    let untrusted = berth(&["image", "pull", "--user", "alice:wonderland", &reference], None);
    assert!(!untrusted.status.success());
    write_hosts_toml(
        &hosts_dir,
        &host,
        &format!("server = \"https://{host}\"\nca = {:?}\n", certificates.ca_cert.display().to_string()),
    );

    let anonymous = berth(&["image", "pull", &reference], None);
    assert!(!anonymous.status.success());
    assert!(stderr_of(&anonymous).contains(&format!("berth login {host}")), "{}", stderr_of(&anonymous));

    let wrong = berth(&["login", "--username", "alice", "--password-stdin", &host], Some("queen\n"));
    assert!(!wrong.status.success());
    assert!(stderr_of(&wrong).contains("refused the credentials"), "{}", stderr_of(&wrong));
    assert!(!config_home.join("berth/auth.json").exists());

    let login = berth(&["login", "--username", "alice", "--password-stdin", &host], Some("wonderland\n"));
    assert!(login.status.success(), "{}", stderr_of(&login));
    let auth_file = config_home.join("berth/auth.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&auth_file).unwrap().permissions().mode() & 0o777, 0o600);

    let pulled = berth(&["image", "pull", &reference], None);
    assert!(pulled.status.success(), "{}", stderr_of(&pulled));
    assert_eq!(image_digest(&daemon, &reference), registry.skopeo_digest("private/busybox:1"));
    assert_eq!(events_of_kind(&daemon, "ImagePulled")[0]["served_by"], format!("https://{host}").as_str());
    // The password is nowhere in the log.
    let log_dump = String::from_utf8_lossy(&daemon.replay(&["events"]).stdout).into_owned();
    assert!(!log_dump.contains("wonderland"), "the password was recorded");
    assert!(!daemon.daemon_log().contains("wonderland"), "the password was logged");

    // A credentials file others may read is refused, not used.
    std::fs::set_permissions(&auth_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exposed = berth(&["image", "pull", &reference], None);
    assert!(!exposed.status.success());
    assert!(stderr_of(&exposed).contains("chmod 600"), "{}", stderr_of(&exposed));
    std::fs::set_permissions(&auth_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let logout = berth(&["logout", &host], None);
    assert!(logout.status.success());
    let after_logout = berth(&["image", "pull", &reference], None);
    assert!(!after_logout.status.success());
}

#[test]
fn pull_through_the_bearer_token_flow() {
    let registry = Registry::start();
    registry.push("busybox", "local/busybox:1");
    let work = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(work.path(), registry.port, Some("bob:builder"));
    let daemon = Daemon::start();
    let reference = format!("{}/local/busybox:1", proxy.host());

    let anonymous = daemon.cli(&["image", "pull", &reference]);
    assert!(!anonymous.status.success());
    assert!(stderr_of(&anonymous).contains("refused the credentials") || stderr_of(&anonymous).contains("berth login"));
    let wrong = daemon.cli(&["image", "pull", "--user", "bob:fixer", &reference]);
    assert!(stderr_of(&wrong).contains("refused the credentials"), "{}", stderr_of(&wrong));

    daemon.ok(&["image", "pull", "--user", "bob:builder", &reference]);
    assert_eq!(image_digest(&daemon, &reference), registry.skopeo_digest("local/busybox:1"));
    // One token for the repository's scope, reused by every request after the first 401.
    let requests = proxy.requests();
    let good_tokens = requests.iter().filter(|line| *line == "GET /token 200").count();
    assert_eq!(good_tokens, 1, "{requests:?}");
}

#[test]
fn a_mirror_in_hosts_toml_serves_the_pull_after_a_dead_one() {
    let registry = Registry::start();
    registry.push("busybox", "library/app:1");
    let work = tempfile::tempdir().unwrap();
    let hosts_dir = work.path().join("certs.d");
    let dead_port = berth_tests::registry::free_port();
    // The registry's own name does not resolve: only the mirror can serve it.
    write_hosts_toml(
        &hosts_dir,
        "registry.invalid",
        &format!(
            "server = \"https://registry.invalid\"\n[host.\"http://127.0.0.1:{dead_port}\"]\ncapabilities = [\"pull\", \"resolve\"]\n[host.\"http://{}\"]\ncapabilities = [\"pull\", \"resolve\"]\n",
            registry.host()
        ),
    );
    let daemon = daemon_with_hosts_dir(&hosts_dir);
    daemon.ok(&["image", "pull", "registry.invalid/library/app:1"]);
    let pulled = events_of_kind(&daemon, "ImagePulled");
    assert_eq!(pulled[0]["served_by"], format!("http://{}", registry.host()).as_str());
    assert_eq!(image_digest(&daemon, "registry.invalid/library/app:1"), registry.skopeo_digest("library/app:1"));
}

#[test]
fn bad_references_and_registries_are_refused_with_what_to_do_and_nothing_recorded() {
    let registry = Registry::start();
    registry.push("busybox", "local/busybox:1");
    let daemon = Daemon::start();
    let n_events_before = events(&daemon).len();
    let host = registry.host();
    let cases: Vec<(String, &str)> = vec![
        ("Not A Reference".into(), "is not an image reference"),
        (format!("{host}/local/busybox:nope"), "not found"),
        (format!("{host}/local/absent:1"), "not found"),
        (format!("127.0.0.1:{}/x:1", berth_tests::registry::free_port()), "cannot reach registry"),
        ("unknown-host.invalid/x:1".into(), "cannot reach registry"),
    ];
    for (reference, expected) in cases {
        let output = daemon.cli(&["image", "pull", &reference]);
        assert!(!output.status.success(), "{reference} was pulled");
        assert!(stderr_of(&output).contains(expected), "{reference}: {}", stderr_of(&output));
    }
    let bad_platform = daemon.cli(&["image", "pull", "--platform", "linux", &format!("{host}/local/busybox:1")]);
    assert!(stderr_of(&bad_platform).contains("os/arch"), "{}", stderr_of(&bad_platform));
    assert_eq!(events(&daemon).len(), n_events_before, "a refused pull recorded something");
    assert!(ingest_is_empty(&daemon));
}

#[test]
fn a_pull_killed_mid_layer_resumes_fetching_only_what_was_missing() {
    let registry = Registry::start();
    registry.push("layers", "local/layers:1");
    let work = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(work.path(), registry.port, None);
    let manifest = registry.skopeo_raw("local/layers:1");
    let layer_digests: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_string())
        .collect();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let big_layer = layer_digests[0].clone();
    std::fs::write(&proxy.stall_file, format!("{big_layer}\n")).unwrap();

    let mut daemon = Daemon::start();
    let reference = format!("{}/local/layers:1", proxy.host());
    let mut pull = daemon
        .berth()
        .args(["image", "pull", &reference])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the big layer is stalled half-way and every other blob is recorded.
    eventually(Duration::from_secs(60), "the big layer to stall and the others to be recorded", || {
        let stalled = proxy.requests().iter().any(|line| line == &format!("STALLED {big_layer}"));
        let recorded: Vec<String> = events_of_kind(&daemon, "ContentAdded")
            .iter()
            .map(|event| event["digest"].as_str().unwrap().to_string())
            .collect();
        let others_recorded = layer_digests[1..].iter().chain([&config_digest]).all(|digest| recorded.contains(digest));
        (stalled && others_recorded).then_some(())
    });
    assert!(!ingest_is_empty(&daemon), "the stalled layer is not being ingested");
    daemon.kill9();
    let _ = pull.wait();

    std::fs::remove_file(&proxy.stall_file).unwrap();
    daemon.start_again();
    assert!(ingest_is_empty(&daemon), "content/ingest kept a partial blob after the restart");
    assert!(
        !events_of_kind(&daemon, "ContentAdded").iter().any(|event| event["digest"] == big_layer.as_str()),
        "the half-fetched layer was recorded"
    );
    assert!(events_of_kind(&daemon, "ImageCreated").is_empty());

    daemon.ok(&["image", "pull", &reference]);
    assert_eq!(proxy.blob_fetches(&big_layer), 2, "{:?}", proxy.requests());
    for digest in layer_digests[1..].iter().chain([&config_digest]) {
        assert_eq!(proxy.blob_fetches(digest), 1, "{digest} was fetched again: {:?}", proxy.requests());
    }
    assert_eq!(image_digest(&daemon, &reference), registry.skopeo_digest("local/layers:1"));
    assert!(ingest_is_empty(&daemon));
    let run = daemon.ok(&["run", "--rm", &reference, "ls", "/"]);
    assert!(!run.is_empty());
}

#[test]
fn a_registry_that_lies_is_refused_and_nothing_of_the_lie_is_kept() {
    let registry = Registry::start();
    registry.push("layers", "local/layers:1");
    let work = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(work.path(), registry.port, None);
    let manifest = registry.skopeo_raw("local/layers:1");
    let big_layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    let daemon = Daemon::start();
    let reference = format!("{}/local/layers:1", proxy.host());
    let cases = [
        (format!("corrupt-blob {big_layer}"), "whose bytes hash to"),
        ("shrink-layer-sizes".to_string(), "but its descriptor says"),
        ("huge-manifest".to_string(), "over berth's limit"),
        ("wrong-digest-header".to_string(), "whose bytes hash to"),
    ];
    for (lie, expected) in cases {
        std::fs::write(&proxy.lie_file, format!("{lie}\n")).unwrap();
        let output = daemon.cli(&["image", "pull", &reference]);
        assert!(!output.status.success(), "{lie}: pulled anyway");
        assert!(stderr_of(&output).contains(expected), "{lie}: {}\n{}", stderr_of(&output), daemon.daemon_log());
        assert!(ingest_is_empty(&daemon), "{lie}: ingest not empty");
        assert!(staging_area_empties(&daemon), "{lie}: a staged layer was left in snapshots/tmp");
        assert!(
            !events_of_kind(&daemon, "ContentAdded").iter().any(|event| event["digest"] == big_layer.as_str()),
            "{lie}: the lied-about layer was recorded"
        );
        assert!(events_of_kind(&daemon, "ImageCreated").is_empty(), "{lie}: an image was recorded");
    }
    std::fs::remove_file(&proxy.lie_file).unwrap();
    daemon.ok(&["image", "pull", &reference]);
    assert_eq!(image_digest(&daemon, &reference), registry.skopeo_digest("local/layers:1"));
}

#[test]
fn busybox_means_docker_hub_and_a_docker_hub_mirror_serves_it() {
    let registry = Registry::start();
    registry.push("busybox", "library/busybox:latest");
    let work = tempfile::tempdir().unwrap();
    let hosts_dir = work.path().join("certs.d");
    // No network here: Docker Hub itself is unreachable, so only the mirror can answer.
    write_hosts_toml(
        &hosts_dir,
        "docker.io",
        &format!("[host.\"http://{}\"]\ncapabilities = [\"pull\", \"resolve\"]\n", registry.host()),
    );
    let daemon = daemon_with_hosts_dir(&hosts_dir);
    daemon.ok(&["image", "pull", "busybox"]);
    assert_eq!(
        image_digest(&daemon, "docker.io/library/busybox:latest"),
        registry.skopeo_digest("library/busybox:latest")
    );
    let pulled = events_of_kind(&daemon, "ImagePulled");
    assert_eq!(pulled[0]["reference"], "docker.io/library/busybox:latest");
    let run = daemon.ok(&["run", "--rm", "busybox", "echo", "short-name"]);
    assert!(run.contains("short-name"), "{run}");
}

#[test]
fn a_pull_whose_client_goes_away_stops_and_the_next_fetches_only_what_is_missing() {
    let registry = Registry::start();
    registry.push("layers", "local/layers:1");
    let work = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(work.path(), registry.port, None);
    let manifest = registry.skopeo_raw("local/layers:1");
    let big_layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    let small_layer = manifest["layers"][2]["digest"].as_str().unwrap().to_string();
    std::fs::write(&proxy.stall_file, format!("{big_layer}\n")).unwrap();
    let daemon = Daemon::start();
    let reference = format!("{}/local/layers:1", proxy.host());
    let mut pull =
        daemon.berth().args(["image", "pull", &reference]).stdout(std::process::Stdio::null()).spawn().unwrap();
    eventually(Duration::from_secs(60), "the big layer to stall and the small one to be recorded", || {
        let stalled = proxy.requests().iter().any(|line| line == &format!("STALLED {big_layer}"));
        let recorded =
            events_of_kind(&daemon, "ContentAdded").iter().any(|event| event["digest"] == small_layer.as_str());
        (stalled && recorded).then_some(())
    });
    pull.kill().unwrap();
    let _ = pull.wait();
    // berthd notices, drops the half-downloaded blob and records nothing more.
    eventually(Duration::from_secs(30), "the abandoned download to leave content/ingest", || {
        ingest_is_empty(&daemon).then_some(())
    });
    assert!(events_of_kind(&daemon, "ImageCreated").is_empty());
    std::fs::remove_file(&proxy.stall_file).unwrap();
    daemon.ok(&["image", "pull", &reference]);
    assert_eq!(proxy.blob_fetches(&big_layer), 2, "{:?}", proxy.requests());
    assert_eq!(proxy.blob_fetches(&small_layer), 1, "{:?}", proxy.requests());
}
