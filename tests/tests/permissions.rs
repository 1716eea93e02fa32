//! A local non-root user gets nothing through berth's files: not a setuid program an image
//! carries or a container plants, not an image's device node, not a container's environment
//! from the log or its bundle; `berth-replay` tells such a user it needs root; and a root left
//! open by an older berth is tightened at start-up.
//!
//! The test daemons live in a `tempfile` directory, which is 0700 by itself and would hide
//! everything whatever berth did; each test opens it to 0755, as `/var/lib` and `/run` are.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use berth_tests::{bin, eventually, test_images, Daemon};
use sha2::{Digest, Sha256};

const NOBODY: &str = "65534";

/// Runs `program args` as uid/gid 65534 with no supplementary groups. `program` itself is reached
/// with root's capabilities (setpriv drops them at its execve); everything it opens is not.
fn as_nobody(program: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .arg(program)
        .args(args)
        .output()
        .expect("run setpriv (util-linux)")
}

fn describe(output: &Output) -> String {
    format!(
        "status {}, stdout {:?}, stderr {:?}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap_or_else(|error| panic!("stat {}: {error}", path.display())).mode() & 0o7777
}

fn open_like_var_lib(daemon: &Daemon) {
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// One uncompressed layer: the host's `id` as a setuid-root `bin/suid-id` and a world-writable
/// `dev/image-null` (character device 1:3), as a hostile image would carry them.
fn hostile_layer() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let id_program = std::fs::read("/usr/bin/id").expect("read /usr/bin/id");
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(id_program.len() as u64);
    header.set_mode(0o4755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    builder.append_data(&mut header, "bin/suid-id", id_program.as_slice()).unwrap();
    let mut device = tar::Header::new_gnu();
    device.set_entry_type(tar::EntryType::Char);
    device.set_size(0);
    device.set_mode(0o666);
    device.set_uid(0);
    device.set_gid(0);
    device.set_mtime(0);
    device.set_device_major(1).unwrap();
    device.set_device_minor(3).unwrap();
    builder.append_data(&mut device, "dev/image-null", std::io::empty()).unwrap();
    builder.into_inner().unwrap()
}

/// The busybox test image with [`hostile_layer`] on top, written as an OCI archive at `out`.
fn write_hostile_image(out: &Path) {
    let base = std::fs::read(test_images().join("busybox-oci.tar")).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut archive = tar::Archive::new(base.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().unwrap().to_string_lossy().trim_start_matches("./").to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        files.push((path, bytes));
    }
    let blob = |files: &[(String, Vec<u8>)], digest: &str| -> Vec<u8> {
        let path = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        files.iter().find(|(name, _)| *name == path).unwrap_or_else(|| panic!("{path} missing")).1.clone()
    };
    let mut index: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(name, _)| name == "index.json").unwrap().1).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let mut manifest: serde_json::Value = serde_json::from_slice(&blob(&files, &manifest_digest)).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: serde_json::Value = serde_json::from_slice(&blob(&files, &config_digest)).unwrap();

    let layer = hostile_layer();
    let layer_digest = format!("sha256:{}", sha256_hex(&layer));
    config["rootfs"]["diff_ids"].as_array_mut().unwrap().push(layer_digest.clone().into());
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = format!("sha256:{}", sha256_hex(&config_bytes)).into();
    manifest["config"]["size"] = config_bytes.len().into();
    manifest["layers"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": layer_digest,
        "size": layer.len(),
    }));
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = format!("sha256:{}", sha256_hex(&manifest_bytes)).into();
    index["manifests"][0]["size"] = manifest_bytes.len().into();
    for new_blob in [layer, config_bytes, manifest_bytes] {
        files.push((format!("blobs/sha256/{}", sha256_hex(&new_blob)), new_blob));
    }
    files.retain(|(name, _)| name != "index.json");
    files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));

    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, bytes.as_slice()).unwrap();
    }
    std::fs::write(out, builder.into_inner().unwrap()).unwrap();
}

/// The first path matching `<dir>/*/<relative>` (as root).
fn find_below(dir: &Path, relative: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("read {}: {error}", dir.display()))
        .flatten()
        .map(|entry| entry.path().join(relative))
        .find(|path| path.symlink_metadata().is_ok())
        .unwrap_or_else(|| panic!("no */{relative} under {}", dir.display()))
}

fn assert_nobody_cannot_run(program: &Path) {
    assert!(mode_of(program) & 0o4000 != 0, "{} should be setuid for this test to mean anything", program.display());
    // Through a shell: setpriv keeps root's capabilities until its own execve, so it would
    // reach the program where uid 65534 cannot.
    let output = as_nobody(Path::new("/bin/sh"), &["-c", "exec \"$0\" -u", program.to_str().unwrap()]);
    assert!(
        !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("Permission denied"),
        "uid 65534 ran setuid {}: {}",
        program.display(),
        describe(&output)
    );
}

fn assert_nobody_cannot_read(path: &Path) {
    let output = as_nobody(Path::new("/bin/cat"), &[path.to_str().unwrap()]);
    assert!(
        !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("Permission denied"),
        "uid 65534 read {}: {}",
        path.display(),
        describe(&output)
    );
}

#[test]
fn a_non_root_user_gets_nothing_from_a_fresh_daemon() {
    let daemon = Daemon::start();
    open_like_var_lib(&daemon);
    let hostile = daemon.dir.path().join("hostile.tar");
    write_hostile_image(&hostile);
    daemon.ok(&["image", "import", hostile.to_str().unwrap(), "--name", "hostile"]);
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "planter",
        "--env",
        "SECRET=hunter2",
        "hostile",
        "sh",
        "-c",
        "cp /bin/suid-id /tmp/planted && chmod 4755 /tmp/planted && touch /tmp/done && sleep 1000",
    ]);
    let root = daemon.root.clone();
    let state = daemon.state.clone();
    let upper = root.join("snapshots/active/default/planter/upper");
    eventually(Duration::from_secs(20), "the container to plant its setuid file", || {
        upper.join("tmp/done").exists().then_some(())
    });

    // The modes themselves, each with its reason in daemon::permissions.
    let bundle = state.join("bundles/default/planter");
    let task_dir = root.join("tasks/default/planter");
    let task_state_dir = state.join("tasks/default/planter");
    for private_dir in [
        root.clone(),
        state.clone(),
        root.join("log"),
        root.join("content/blobs/sha256"),
        root.join("content/ingest"),
        root.join("snapshots/committed"),
        root.join("snapshots/active/default/planter"),
        root.join("tasks"),
        task_dir.clone(),
        state.join("tasks"),
        task_state_dir.clone(),
        state.join("bundles"),
        bundle.clone(),
        state.join("runc"),
    ] {
        assert_eq!(mode_of(&private_dir), 0o700, "{}", private_dir.display());
    }
    let mut private_files: Vec<PathBuf> = vec![
        bundle.join("config.json"),
        task_dir.join("stdout.log"),
        task_dir.join("stderr.log"),
        task_state_dir.join("monitor.json"),
        task_state_dir.join("monitor.log"),
    ];
    for dir in [root.join("log"), root.join("content/blobs/sha256")] {
        private_files.extend(std::fs::read_dir(dir).unwrap().flatten().map(|entry| entry.path()));
    }
    for private_file in &private_files {
        assert_eq!(mode_of(private_file), 0o600, "{}", private_file.display());
    }
    assert_eq!(mode_of(&upper), 0o755, "the container's / must stay walkable for its own users");

    // What a local user tried: run setuid programs from the image layer, the writable layer and
    // the mounted rootfs; write to an image's device node; read the environment.
    let layer_fs = find_below(&root.join("snapshots/committed"), "fs/bin/suid-id");
    assert_nobody_cannot_run(&layer_fs);
    assert_nobody_cannot_run(&upper.join("tmp/planted"));
    assert_nobody_cannot_run(&bundle.join("rootfs/tmp/planted"));
    let device = find_below(&root.join("snapshots/committed"), "fs/dev/image-null");
    let write = as_nobody(Path::new("/bin/sh"), &["-c", &format!("echo x > {}", device.display())]);
    assert!(!write.status.success(), "uid 65534 wrote to the image's device node: {}", describe(&write));
    assert_nobody_cannot_read(&bundle.join("config.json"));
    let segment = root.join("log/00000000000000000001.seg");
    assert_nobody_cannot_read(&segment);
    let grep = as_nobody(Path::new("/bin/grep"), &["-r", "hunter2", root.to_str().unwrap(), state.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&grep.stdout).contains("hunter2"), "the secret leaked: {}", describe(&grep));

    // berth-replay run by that user says it needs root instead of "no log".
    let replay = as_nobody(&bin("berth-replay"), &["--root", root.to_str().unwrap(), "verify"]);
    let replay_stderr = String::from_utf8_lossy(&replay.stderr);
    assert!(
        !replay.status.success() && replay_stderr.contains("permission") && replay_stderr.contains("needs root"),
        "{}",
        describe(&replay)
    );
    daemon.ok(&["rm", "-f", "planter"]);
}

/// Every path an older berth left 0755 (directories) or 0644 (files), below the root and the
/// state directory, skipping image content (`fs`, `upper`, `work`, a mounted `rootfs`) and the
/// bundle's `/etc` files.
fn open_up_like_an_older_berth(dir: &Path, opened: &mut Vec<PathBuf>) {
    let metadata = std::fs::symlink_metadata(dir).unwrap();
    // runc's own state (runc/<ns>/<id>) is made 0700 by runc, whichever berth ran it.
    let in_runc_state =
        dir.parent().and_then(Path::parent).and_then(Path::file_name).is_some_and(|name| name == "runc");
    // A task's network namespace file is an nsfs mount, whose mode cannot be changed.
    let is_netns_file = dir.parent().and_then(Path::file_name).is_some_and(|name| name == "netns");
    if metadata.file_type().is_symlink() || in_runc_state || is_netns_file {
        return;
    }
    let mode = if metadata.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    opened.push(dir.to_path_buf());
    if metadata.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name();
            // Image content, and the bundle's /etc files, which are 0644 on purpose. `keys`: no
            // older berth made it, so an open key is tampering, refused rather than tightened
            // (tests/tests/secrets.rs).
            let skipped = ["fs", "upper", "work", "rootfs", "hostname", "hosts", "resolv.conf", "keys"];
            if !skipped.contains(&name.to_str().unwrap_or_default()) {
                open_up_like_an_older_berth(&entry.path(), opened);
            }
        }
    }
}

#[test]
fn an_older_root_with_open_modes_is_tightened_at_start_up() {
    let mut daemon = Daemon::start();
    open_like_var_lib(&daemon);
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "kept", "--env", "SECRET=hunter2", "busybox", "sleep", "1000"]);
    daemon.stop();

    let mut opened = Vec::new();
    open_up_like_an_older_berth(&daemon.root.clone(), &mut opened);
    open_up_like_an_older_berth(&daemon.state.clone(), &mut opened);
    let config_json = daemon.state.join("bundles/default/kept/config.json");
    assert!(opened.contains(&config_json) && opened.iter().any(|path| path.extension().is_some_and(|e| e == "seg")));
    // Before the restart, uid 65534 can read the secret: the test would mean nothing otherwise.
    let before = as_nobody(Path::new("/bin/cat"), &[config_json.to_str().unwrap()]);
    assert!(before.status.success(), "{}", describe(&before));

    daemon.start_again();
    for path in &opened {
        let mode = mode_of(path);
        assert_eq!(mode & 0o077, 0, "{} is still {mode:o}", path.display());
    }
    assert_nobody_cannot_read(&config_json);
    assert!(daemon.daemon_log().contains("older berth"), "{}", daemon.daemon_log());
    // The running container survived the restart and still works.
    assert_eq!(daemon.ps()[0]["task"]["status"], "running");
    daemon.ok(&["rm", "-f", "kept"]);
}
