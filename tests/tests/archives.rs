//! Image archives end to end with the real tools: docker-archives and OCI archives as skopeo
//! writes them (gzip and zstd layers; docker-archive's uncompressed ones) imported and run, `berth image export` read
//! back by skopeo and by `ctr images import` in a throwaway containerd, `--platform` through a
//! nested index, tag and inspect, and broken docker-archives refused with nothing recorded.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::docker_archive::{self, sha256_hex};
use berth_tests::oci_archive::small_layer;
use berth_tests::{test_images, Daemon};

fn run_tool(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|error| panic!("run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn skopeo_copy(extra: &[&str], from: &str, to: &str) {
    let mut args = vec!["copy", "-q"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[from, to]);
    run_tool("skopeo", &args);
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn images_json(daemon: &Daemon) -> Vec<serde_json::Value> {
    let out = daemon.ok(&["image", "ls", "--output", "json"]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().cloned().unwrap()
}

/// What an import leaves in the snapshotter's temporary directory (layers unpacked while
/// streaming that were not committed): nothing, whether the import worked or not.
fn leftover_tmp(daemon: &Daemon) -> Vec<String> {
    berth_runtime::sys::fs::list_dir_names(&daemon.root.join("snapshots/tmp"))
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_docker_archive_written_by_skopeo_imports_and_runs() {
    let daemon = Daemon::start();
    let archive = daemon.dir.path().join("bb-docker.tar");
    let busybox = format!("oci-archive:{}", path_str(&test_images().join("busybox-oci.tar")));
    skopeo_copy(&[], &busybox, &format!("docker-archive:{}:example/bb:1", path_str(&archive)));
    daemon.ok(&["image", "import", path_str(&archive)]);
    // skopeo writes the name fully qualified in RepoTags; berth keeps it as written.
    let images = images_json(&daemon);
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["name"], "docker.io/example/bb:1");
    // docker-archive layers are uncompressed tars (skopeo decompresses them): found from the bytes.
    assert_eq!(images[0]["layers"][0]["media_type"], "application/vnd.oci.image.layer.v1.tar");
    let out = daemon.ok(&["run", "--rm", "docker.io/example/bb:1", "echo", "from-a-docker-archive"]);
    assert_eq!(out.trim(), "from-a-docker-archive");
    // The layer is the same uncompressed tar the OCI archive holds gzipped: same diff id.
    let oci_imported =
        daemon.ok(&["image", "import", path_str(&test_images().join("busybox-oci.tar")), "--name", "bb"]);
    assert!(oci_imported.contains("bb:latest"), "{oci_imported}");
    let images = images_json(&daemon);
    assert_eq!(images[0]["layers"][0]["diff_id"], images[1]["layers"][0]["diff_id"]);
    assert_eq!(leftover_tmp(&daemon), Vec::<String>::new());
}

#[test]
fn zstd_layers_from_skopeo_import_and_run() {
    let daemon = Daemon::start();
    let busybox = format!("oci-archive:{}", path_str(&test_images().join("busybox-oci.tar")));
    let zstd_archive = daemon.dir.path().join("zstd.tar");
    skopeo_copy(
        &["--dest-compress-format", "zstd", "--dest-compress"],
        &busybox,
        &format!("oci-archive:{}:z", path_str(&zstd_archive)),
    );
    daemon.ok(&["image", "import", path_str(&zstd_archive), "--name", "bb"]);
    let images = images_json(&daemon);
    assert_eq!(images[0]["layers"][0]["media_type"], "application/vnd.oci.image.layer.v1.tar+zstd");
    assert_eq!(daemon.ok(&["run", "--rm", "bb:z", "echo", "zstd"]).trim(), "zstd");
}

/// An OCI layout directory written by skopeo with two images, tarred: several images, one archive.
#[test]
fn an_oci_archive_with_several_images_imports_each_under_its_ref_name() {
    let daemon = Daemon::start();
    let layout_dir = daemon.dir.path().join("layout");
    let layout = path_str(&layout_dir);
    let busybox = format!("oci-archive:{}", path_str(&test_images().join("busybox-oci.tar")));
    let layers = format!("oci-archive:{}", path_str(&test_images().join("layers-oci.tar")));
    skopeo_copy(&[], &busybox, &format!("oci:{layout}:one"));
    skopeo_copy(&[], &layers, &format!("oci:{layout}:two"));
    let archive = daemon.dir.path().join("two-images.tar");
    run_tool("tar", &["-C", layout, "-cf", path_str(&archive), "."]);

    let with_tag = daemon.cli(&["image", "import", path_str(&archive), "--name", "x:1"]);
    assert!(!with_tag.status.success());
    assert!(stderr_of(&with_tag).contains("holds 2 images"), "{}", stderr_of(&with_tag));
    daemon.ok(&["image", "import", path_str(&archive), "--name", "multi"]);
    let names: Vec<String> =
        images_json(&daemon).iter().map(|image| image["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["multi:one", "multi:two"]);
    assert_eq!(daemon.ok(&["run", "--rm", "multi:one", "echo", "one"]).trim(), "one");
}

/// index.json → a nested index for two platforms → manifests; both images share the one layer.
fn nested_index_archive() -> Vec<u8> {
    let layer = small_layer();
    let mut blobs: Vec<Vec<u8>> = vec![layer.clone()];
    let mut platform_manifests = Vec::new();
    for (architecture, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let config = serde_json::json!({
            "architecture": architecture, "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&layer))] },
        });
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": format!("sha256:{}", sha256_hex(&config_bytes)), "size": config_bytes.len() },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar",
                         "digest": format!("sha256:{}", sha256_hex(&layer)), "size": layer.len() }],
        });
        let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
        let mut platform = serde_json::json!({ "os": "linux", "architecture": architecture });
        if let Some(variant) = variant {
            platform["variant"] = variant.into();
        }
        platform_manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha256_hex(&manifest_bytes)), "size": manifest_bytes.len(),
            "platform": platform,
        }));
        blobs.push(config_bytes);
        blobs.push(manifest_bytes);
    }
    let nested = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": platform_manifests,
    });
    let nested_bytes = serde_json::to_vec(&nested).unwrap();
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": format!("sha256:{}", sha256_hex(&nested_bytes)), "size": nested_bytes.len(),
        "annotations": { "io.containerd.image.name": "example/multi:1" },
    }]});
    blobs.push(nested_bytes);
    let mut files = vec![
        ("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json".to_string(), serde_json::to_vec(&index).unwrap()),
    ];
    files.extend(blobs.into_iter().map(|blob| (format!("blobs/sha256/{}", sha256_hex(&blob)), blob)));
    docker_archive::tar_of(&files)
}

fn config_architecture(daemon: &Daemon, name: &str) -> String {
    let inspected: serde_json::Value = serde_json::from_str(&daemon.ok(&["image", "inspect", name])).unwrap();
    inspected["config"]["architecture"].as_str().unwrap().to_string()
}

#[test]
fn platform_picks_from_a_nested_index_and_a_missing_one_is_refused_with_the_choices() {
    let daemon = Daemon::start();
    let archive = daemon.dir.path().join("nested.tar");
    std::fs::write(&archive, nested_index_archive()).unwrap();
    let before = daemon.state_dump();
    let missing = daemon.cli(&["image", "import", path_str(&archive), "--platform", "linux/s390x"]);
    assert!(!missing.status.success());
    let message = stderr_of(&missing);
    assert!(message.contains("linux/amd64, linux/arm64/v8") && message.contains("linux/s390x"), "{message}");
    assert!(message.contains(path_str(&archive)), "the error names the file: {message}");
    let mut after = daemon.state_dump();
    after["last_seq"] = before["last_seq"].clone();
    assert_eq!(after, before, "a refused import records nothing");

    daemon.ok(&["image", "import", path_str(&archive), "--platform", "linux/arm64/v8"]);
    assert_eq!(config_architecture(&daemon, "example/multi:1"), "arm64");
    daemon.ok(&["image", "import", path_str(&archive)]);
    assert_eq!(config_architecture(&daemon, "example/multi:1"), berth_runtime::images::archive::oci_architecture());
    let malformed = daemon.cli(&["image", "import", path_str(&archive), "--platform", "linux"]);
    assert!(stderr_of(&malformed).contains("os/arch"), "{}", stderr_of(&malformed));
}

#[test]
fn tag_names_the_same_manifest_again_and_inspect_shows_layers_and_history() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["image", "tag", "busybox", "mine/bb:2"]);
    let images = images_json(&daemon);
    assert_eq!(images.len(), 2);
    assert_eq!(images[0]["digest"], images[1]["digest"]);
    let events = daemon.ok(&["events", "--output", "json"]);
    assert!(events.contains("Images/Tag"), "the tag is recorded with its origin: {events}");
    let refused = daemon.cli(&["image", "tag", "nope", "x:1"]);
    assert!(stderr_of(&refused).contains("not found"), "{}", stderr_of(&refused));
    let bad_name = daemon.cli(&["image", "tag", "busybox", "Bad Name"]);
    assert!(stderr_of(&bad_name).contains("not a valid image name"), "{}", stderr_of(&bad_name));

    let inspected: serde_json::Value = serde_json::from_str(&daemon.ok(&["image", "inspect", "mine/bb:2"])).unwrap();
    assert_eq!(inspected["name"], "mine/bb:2");
    assert_eq!(inspected["digest"], images[0]["digest"]);
    assert_eq!(inspected["manifest"]["layers"][0]["digest"], inspected["layers"][0]["digest"]);
    assert!(inspected["layers"][0]["size"].as_i64().unwrap() > 0);
    assert_eq!(inspected["config"]["rootfs"]["diff_ids"][0], inspected["layers"][0]["diff_id"]);
    assert!(!inspected["history"].as_array().unwrap().is_empty(), "{inspected}");
}

/// Runs `peer-containerd.sh` against a containerd of the test's own.
fn peer_containerd(peer_dir: &Path, args: &[&str]) -> std::process::Output {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/peer-containerd.sh");
    Command::new("bash")
        .arg(script)
        .args(args)
        .env("PEER_CONTAINERD_DIR", peer_dir)
        .output()
        .expect("run peer-containerd.sh")
}

#[test]
fn an_export_is_read_by_skopeo_with_identical_digests_and_by_ctr_images_import() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["image", "import", path_str(&test_images().join("layers-oci.tar")), "--name", "layers"]);
    let exported = daemon.dir.path().join("export.tar");
    daemon.ok(&["image", "export", "busybox", "layers:layers", path_str(&exported)]);
    let images = images_json(&daemon);
    let busybox = images.iter().find(|image| image["name"] == "busybox:latest").unwrap();

    let inspected: serde_json::Value =
        serde_json::from_str(&run_tool("skopeo", &["inspect", &format!("oci-archive:{}:latest", path_str(&exported))]))
            .unwrap();
    assert_eq!(inspected["Digest"], busybox["digest"]);
    assert_eq!(inspected["Layers"][0], busybox["layers"][0]["digest"]);
    // Copied back out into a layout directory, every blob keeps its digest.
    let copied = daemon.dir.path().join("copied");
    skopeo_copy(
        &["--preserve-digests"],
        &format!("oci-archive:{}:latest", path_str(&exported)),
        &format!("oci:{}:latest", path_str(&copied)),
    );
    let copied_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copied.join("index.json")).unwrap()).unwrap();
    assert_eq!(copied_index["manifests"][0]["digest"], busybox["digest"]);
    let layer_hex = &busybox["layers"][0]["digest"].as_str().unwrap()[7..];
    assert!(copied.join("blobs/sha256").join(layer_hex).is_file());

    // berth reads its own export in a fresh daemon.
    let fresh = Daemon::start();
    fresh.ok(&["image", "import", path_str(&exported)]);
    let fresh_images = images_json(&fresh);
    assert_eq!(fresh_images.len(), 2, "{fresh_images:?}");
    assert_eq!(fresh_images[0]["digest"], busybox["digest"]);
    // To stdout as well, byte for byte the same.
    let to_stdout = daemon.berth().args(["image", "export", "busybox", "layers:layers", "-"]).output().unwrap();
    assert!(to_stdout.status.success());
    assert_eq!(to_stdout.stdout, std::fs::read(&exported).unwrap());

    let peer_dir = tempfile::Builder::new().prefix("berth-ctr-").tempdir_in("/var/tmp").unwrap();
    let started = peer_containerd(peer_dir.path(), &["start"]);
    assert!(started.status.success(), "containerd did not start: {}", stderr_of(&started));
    let imported = peer_containerd(peer_dir.path(), &["ctr", "images", "import", path_str(&exported)]);
    let listed = peer_containerd(peer_dir.path(), &["ctr", "images", "ls", "-q"]);
    let stopped = peer_containerd(peer_dir.path(), &["stop"]);
    assert!(imported.status.success(), "ctr images import failed: {}", stderr_of(&imported));
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.lines().any(|line| line == "busybox:latest"), "{listed}");
    assert!(listed.lines().any(|line| line == "layers:layers"), "{listed}");
    assert!(stopped.status.success(), "{}", stderr_of(&stopped));
}

/// Imports `files` as a docker-archive and insists it is refused with `expected` in the message,
/// the file named, and nothing recorded.
fn refused(daemon: &Daemon, label: &str, files: &[(String, Vec<u8>)], expected: &str) {
    let archive = daemon.dir.path().join(format!("{label}.tar"));
    std::fs::write(&archive, docker_archive::tar_of(files)).unwrap();
    let before = daemon.state_dump();
    let output = daemon.cli(&["image", "import", path_str(&archive)]);
    let message = stderr_of(&output);
    assert!(!output.status.success(), "{label} was accepted");
    assert!(message.contains(expected), "{label}: {message}");
    assert!(message.contains(path_str(&archive)), "{label}: the error names the file: {message}");
    let mut after = daemon.state_dump();
    after["last_seq"] = before["last_seq"].clone();
    assert_eq!(after, before, "{label}: a refused import records nothing");
    assert_eq!(leftover_tmp(daemon), Vec::<String>::new(), "{label}");
}

#[test]
fn broken_docker_archives_are_refused_clearly_and_nothing_is_recorded() {
    let daemon = Daemon::start();
    let whole = docker_archive::files(&small_layer(), "example/small:1");

    let mut missing_layer = whole.clone();
    missing_layer.retain(|(path, _)| !path.ends_with("layer.tar"));
    refused(&daemon, "missing-layer", &missing_layer, "which the archive does not hold");

    // manifest.json names a config file whose content is another config.
    let mut lying_config = whole.clone();
    lying_config[0].1 = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    refused(&daemon, "lying-config", &lying_config, "does not match its name");

    // A config whose diff ids do not belong to the layer it lists.
    let mut other_layer = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    other_layer.append_data(&mut header, "other", &b"abc"[..]).unwrap();
    let mut wrong_layer = whole.clone();
    wrong_layer[1].1 = other_layer.into_inner().unwrap();
    refused(&daemon, "wrong-layer", &wrong_layer, "diff id");

    let mut traversal = whole.clone();
    traversal.insert(0, ("../../etc/berth-was-here".to_string(), b"x".to_vec()));
    refused(&daemon, "traversal", &traversal, "leaves the archive's root");

    let mut oversized = whole.clone();
    let huge = format!("[{}]", " ".repeat(17 << 20));
    oversized.retain(|(path, _)| path != "manifest.json");
    oversized.push(("manifest.json".to_string(), huge.into_bytes()));
    refused(&daemon, "oversized", &oversized, "over berth's limit");

    // And the whole one imports, so the refusals were about the damage.
    let archive = daemon.dir.path().join("whole.tar");
    std::fs::write(&archive, docker_archive::tar_of(&whole)).unwrap();
    daemon.ok(&["image", "import", path_str(&archive)]);
    assert_eq!(images_json(&daemon)[0]["name"], "example/small:1");
    assert!(!Path::new("/etc/berth-was-here").exists());
}
