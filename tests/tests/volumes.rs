//! Storage against real runc and busybox: bind mounts (rw, ro, symlinked, refused), tmpfs,
//! `--read-only`, named volumes that outlive containers (seeded from the image, refused removal
//! while used, recorded), and the anonymous volumes an image's `VOLUME` gets.

use std::os::unix::fs::symlink;
use std::time::Duration;

use berth_tests::oci_archive::{archive, small_layer};
use berth_tests::{eventually, require_root, Daemon};

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn inspect(daemon: &Daemon, id: &str) -> serde_json::Value {
    let text = daemon.ok(&["inspect", id]);
    let documents: serde_json::Value = serde_json::from_str(&text).expect("inspect json");
    documents[0].clone()
}

fn event_kinds(daemon: &Daemon) -> Vec<String> {
    let text = daemon.ok(&["events", "--since", "1", "--output", "json"]);
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|event| event["kind"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn bind_mounts_are_writable_or_read_only_as_asked() {
    require_root();
    let daemon = Daemon::start();
    daemon.import_busybox();
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("in"), "from the host\n").unwrap();
    let source = host_dir.path().to_str().unwrap();

    let out = daemon.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{source}:/data"),
        "busybox",
        "sh",
        "-c",
        "cat /data/in; echo written > /data/out",
    ]);
    assert_eq!(out, "from the host\n");
    assert_eq!(std::fs::read_to_string(host_dir.path().join("out")).unwrap(), "written\n");

    let read_only = daemon.cli(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,src={source},dst=/data,readonly"),
        "busybox",
        "sh",
        "-c",
        "cat /data/in && echo no > /data/other",
    ]);
    let stdout = String::from_utf8_lossy(&read_only.stdout);
    assert!(stdout.contains("from the host"), "{stdout}");
    assert!(
        stdout.contains("Read-only file system") || stderr_of(&read_only).contains("Read-only file system"),
        "{stdout}"
    );
    assert_ne!(read_only.status.code(), Some(0));
    assert!(!host_dir.path().join("other").exists());
}

#[test]
fn tmpfs_and_a_read_only_root() {
    require_root();
    let daemon = Daemon::start();
    daemon.import_busybox();
    let out = daemon.cli(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch:size=1m,mode=1777",
        "busybox",
        "sh",
        "-c",
        "echo kept > /scratch/a && cat /scratch/a && grep ' /scratch ' /proc/mounts; touch /rootfile 2>&1; exit 0",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("kept\n"), "{stdout} {}", stderr_of(&out));
    assert!(stdout.contains("tmpfs /scratch tmpfs") && stdout.contains("size=1024k"), "{stdout}");
    assert!(stdout.contains("Read-only file system"), "the root was writable: {stdout}");
}

#[test]
fn a_named_volume_outlives_its_container_is_seeded_and_cannot_be_removed_while_used() {
    require_root();
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["volume", "create", "store"]);
    daemon.ok(&["run", "--name", "writer", "-v", "store:/store", "busybox", "sh", "-c", "echo kept > /store/file"]);
    daemon.ok(&["rm", "writer"]);
    let out = daemon.ok(&["run", "--name", "reader", "-v", "store:/store:ro", "busybox", "cat", "/store/file"]);
    assert_eq!(out, "kept\n");

    let refused = daemon.cli(&["volume", "rm", "store"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr_of(&refused).contains("used by container(s) reader"), "{}", stderr_of(&refused));
    let listed = daemon.ok(&["volume", "inspect", "store"]);
    assert!(listed.contains("\"reader\""), "{listed}");

    // A volume named for the first time is created, and filled with what the image has there.
    let seeded = daemon.ok(&["run", "--rm", "-v", "seeded:/etc", "busybox", "cat", "/etc/group"]);
    assert!(seeded.contains("root:x:0:"), "{seeded}");
    assert!(daemon.ok(&["volume", "ls"]).contains("seeded"));

    daemon.ok(&["rm", "reader"]);
    daemon.ok(&["volume", "rm", "store"]);
    // The directory goes once the removal is durable, after the answer.
    let volume_dir = daemon.root.join("volumes/default/store");
    eventually(Duration::from_secs(10), "the volume's directory to go", || (!volume_dir.exists()).then_some(()));
    let kinds = event_kinds(&daemon);
    assert!(kinds.iter().filter(|kind| *kind == "VolumeCreated").count() >= 2, "{kinds:?}");
    assert!(kinds.iter().any(|kind| kind == "VolumeRemoved"), "{kinds:?}");
}

#[test]
fn an_image_volume_gets_an_anonymous_volume_removed_with_rm_v() {
    require_root();
    let daemon = Daemon::start();
    let image =
        archive(&small_layer(), serde_json::json!({"Cmd": ["/hello"], "Volumes": {"/data": {}}}), &["withvolume"]);
    let archive_file = daemon.dir.path().join("withvolume.tar");
    std::fs::write(&archive_file, image).unwrap();
    daemon.ok(&["image", "import", archive_file.to_str().unwrap()]);
    daemon.ok(&["create", "--name", "anon", "withvolume"]);
    let container = inspect(&daemon, "anon");
    let mounts = container["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 1, "{container}");
    assert_eq!(mounts[0]["type"], "volume");
    assert_eq!(mounts[0]["destination"], "/data");
    assert_eq!(mounts[0]["source"], "anon-volume-0");
    assert!(daemon.ok(&["volume", "ls"]).contains("anon-volume-0"));
    daemon.ok(&["rm", "-v", "anon"]);
    assert!(!daemon.ok(&["volume", "ls"]).contains("anon-volume-0"));
}

#[test]
fn bind_sources_are_resolved_through_symlinks_and_berths_own_paths_refused() {
    require_root();
    let daemon = Daemon::start();
    daemon.import_busybox();
    let host_dir = tempfile::tempdir().unwrap();
    let real = host_dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = host_dir.path().join("link");
    symlink(&real, &link).unwrap();
    daemon.ok(&["create", "--name", "linked", "-v", &format!("{}:/data", link.display()), "busybox", "true"]);
    assert_eq!(inspect(&daemon, "linked")["mounts"][0]["source"], real.to_str().unwrap());

    // A symlink that leads into berth's root (its log included) is refused, however reached.
    let into_root = host_dir.path().join("into-root");
    symlink(daemon.root.join("log"), &into_root).unwrap();
    let refused = daemon.cli(&["create", "-v", &format!("{}:/data", into_root.display()), "busybox", "true"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr_of(&refused).contains("berth's own root directory"), "{}", stderr_of(&refused));
    let missing = daemon.cli(&["create", "-v", "/no/such/dir:/data", "busybox", "true"]);
    assert!(stderr_of(&missing).contains("does not exist"), "{}", stderr_of(&missing));

    // The recorded path turned into a symlink after create: the start fails, nothing is mounted.
    daemon.ok(&["create", "--name", "swapped", "-v", &format!("{}:/data", real.display()), "busybox", "ls", "/data"]);
    std::fs::rename(&real, host_dir.path().join("moved")).unwrap();
    symlink("/etc", &real).unwrap();
    let failed = daemon.cli(&["start", "-a", "swapped"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(stderr_of(&failed).contains("a symlink appeared"), "{}", stderr_of(&failed));
}

#[test]
fn detached_rm_is_removed_by_berthd_when_it_exits() {
    require_root();
    let daemon = Daemon::start();
    daemon.import_busybox();
    let id = daemon.ok(&["run", "-d", "--rm", "--name", "brief", "-v", "/scratch", "busybox", "true"]);
    assert_eq!(id.trim(), "brief");
    eventually(Duration::from_secs(30), "the --rm container to be removed", || daemon.ps().is_empty().then_some(()));
    let events = daemon.ok(&["events", "--since", "1", "--output", "json"]);
    let deleted = events.lines().find(|line| line.contains("\"ContainerDeleted\"")).expect("ContainerDeleted recorded");
    assert!(deleted.contains("auto-remove"), "{deleted}");
    // Its anonymous volume went with it.
    assert!(!daemon.ok(&["volume", "ls"]).contains("brief-volume-0"));
}

#[test]
fn after_a_crash_an_exited_rm_container_is_removed_and_stray_volume_directories_swept() {
    require_root();
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    // Not `read`: without -i its stdin is /dev/null, and it would end before the kill below.
    daemon.ok(&["run", "-d", "--rm", "--name", "late", "busybox", "sleep", "1000"]);
    daemon.kill9();
    // The container exits while berthd is down; its monitor writes the exit down.
    let exit_file = daemon.root.join("tasks/default/late/exit.json");
    let init_pid = eventually(Duration::from_secs(10), "the container's pid", || {
        let monitor: serde_json::Value =
            serde_json::from_slice(&std::fs::read(daemon.state.join("tasks/default/late/monitor.json")).ok()?).ok()?;
        monitor["init_pid"].as_i64()
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init_pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    eventually(Duration::from_secs(10), "the exit to be written", || exit_file.exists().then_some(()));
    let stray = daemon.root.join("volumes/default/ghost/data");
    std::fs::create_dir_all(&stray).unwrap();
    daemon.start_again();
    eventually(Duration::from_secs(30), "the --rm container to be removed", || daemon.ps().is_empty().then_some(()));
    assert!(!stray.exists(), "a volume directory no record accounts for was kept");
}
