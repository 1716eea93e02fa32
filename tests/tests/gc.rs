//! Garbage collection against the real daemon: what a removal or a prune records as gone is
//! gone on disk (content and layer snapshots), also for an image removed while a container
//! used it; a crash between the record and the deletion, or half-way through deleting a layer,
//! is finished by the next start; `system df` agrees with `du`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::{test_images, Daemon};

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

fn blob_path(daemon: &Daemon, digest: &str) -> PathBuf {
    daemon.root.join("content/blobs/sha256").join(hex(digest))
}

fn committed_path(daemon: &Daemon, chain_id: &str) -> PathBuf {
    daemon.root.join("snapshots/committed").join(hex(chain_id))
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// (blob digests, chain ids) of an image, from the projections berth-replay folds.
fn image_references(daemon: &Daemon, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let state = daemon.state_dump();
    // Imported names get a tag (busybox:latest).
    let images = state["namespaces"]["default"]["images"].as_object().expect("images");
    let (_, image) = images
        .iter()
        .find(|(key, _)| key.as_str() == name || key.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no image {name} in {state}"));
    let record = &image["record"];
    let mut digests = BTreeSet::new();
    let mut chain_ids = BTreeSet::new();
    digests.insert(record["manifest"]["digest"].as_str().unwrap().to_string());
    digests.insert(record["config"]["digest"].as_str().unwrap().to_string());
    for layer in record["layers"].as_array().unwrap() {
        digests.insert(layer["blob"]["digest"].as_str().unwrap().to_string());
        chain_ids.insert(layer["chain_id"].as_str().unwrap().to_string());
    }
    (digests, chain_ids)
}

/// Every event of `kind` in the log as (seq, the field named `field`).
fn recorded(daemon: &Daemon, kind: &str, field: &str) -> Vec<(u64, String)> {
    let output = daemon.replay(&["events", "--kind", kind, "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            (event["seq"].as_u64().unwrap(), event["fields"][field].as_str().unwrap().to_string())
        })
        .collect()
}

fn import(daemon: &Daemon, archive: &str, name: &str) {
    let archive = test_images().join(archive);
    daemon.ok(&["image", "import", archive.to_str().unwrap(), "--name", name]);
}

#[test]
fn an_image_removed_under_a_container_loses_its_layers_when_the_container_goes() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let (digests, chain_ids) = image_references(&daemon, "busybox");
    daemon.ok(&["create", "--name", "user", "busybox", "true"]);
    daemon.ok(&["image", "rm", "busybox"]);
    // The blobs go with the image; the layers stay while the container stacks on them.
    berth_tests::eventually(Duration::from_secs(10), "the image's blobs to be deleted", || {
        digests.iter().all(|digest| !blob_path(&daemon, digest).exists()).then_some(())
    });
    for chain_id in &chain_ids {
        assert!(committed_path(&daemon, chain_id).exists(), "layer {chain_id} went while a container used it");
    }
    daemon.ok(&["start", "--attach", "user"]);
    daemon.ok(&["rm", "user"]);
    berth_tests::eventually(Duration::from_secs(10), "the container's layers to be deleted", || {
        names_in(&daemon.root.join("snapshots/committed")).is_empty().then_some(())
    });
    // Recorded in the log, in the same record as the container's removal.
    let deleted_at: Vec<u64> = recorded(&daemon, "ContainerDeleted", "id").into_iter().map(|(seq, _)| seq).collect();
    let removed = recorded(&daemon, "SnapshotRemoved", "chain_id");
    assert_eq!(removed.iter().map(|(_, chain_id)| chain_id.clone()).collect::<BTreeSet<_>>(), chain_ids);
    assert!(removed.iter().all(|(seq, _)| deleted_at == [*seq]), "{removed:?} not in record {deleted_at:?}");
    let story = daemon.replay(&["history", "--container", "user"]);
    let story = String::from_utf8_lossy(&story.stdout);
    for chain_id in &chain_ids {
        let short = &hex(chain_id)[..12];
        assert!(story.contains(&format!("layer snapshot {short} removed")), "{story}");
    }
    let state = daemon.state_dump();
    assert_eq!(state["snapshots"], serde_json::json!({}), "{state}");
    assert_eq!(state["content"], serde_json::json!({}), "{state}");
}

#[test]
fn prune_removes_exactly_what_nothing_references() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    import(&daemon, "layers-oci.tar", "layered:v1");
    let (busybox_digests, busybox_chains) = image_references(&daemon, "busybox");
    let (layered_digests, layered_chains) = image_references(&daemon, "layered");
    daemon.ok(&["create", "--name", "user", "busybox", "true"]);

    // Nothing is dangling: a plain prune removes nothing and records nothing.
    let seq_before = daemon.replay(&["head"]).stdout;
    let pruned: serde_json::Value =
        serde_json::from_str(&daemon.ok(&["image", "prune", "--output", "json"])).expect("prune json");
    assert_eq!(pruned["seq"], 0, "{pruned}");
    assert_eq!(daemon.replay(&["head"]).stdout, seq_before);

    // -a: the image no container uses goes, and what only it referenced.
    let pruned: serde_json::Value =
        serde_json::from_str(&daemon.ok(&["image", "prune", "-a", "--output", "json"])).expect("prune json");
    let as_set = |value: &serde_json::Value| -> BTreeSet<String> {
        value.as_array().unwrap().iter().map(|item| item.as_str().unwrap().to_string()).collect()
    };
    let images_removed = as_set(&pruned["images_removed"]);
    assert!(images_removed.len() == 1 && images_removed.iter().all(|name| name.starts_with("layered")), "{pruned}");
    let expected_blobs: BTreeSet<String> = layered_digests.difference(&busybox_digests).cloned().collect();
    let expected_chains: BTreeSet<String> = layered_chains.difference(&busybox_chains).cloned().collect();
    assert!(!expected_chains.is_empty());
    assert_eq!(as_set(&pruned["blobs_removed"]), expected_blobs);
    assert_eq!(as_set(&pruned["snapshots_removed"]), expected_chains);
    assert!(pruned["blob_bytes_removed"].as_i64().unwrap() > 0, "{pruned}");

    // On disk: exactly busybox's blobs and layers remain.
    let busybox_hex: BTreeSet<String> = busybox_digests.iter().map(|digest| hex(digest).to_string()).collect();
    berth_tests::eventually(Duration::from_secs(10), "the pruned files to be deleted", || {
        let on_disk_chains = names_in(&daemon.root.join("snapshots/committed"));
        let busybox_chain_hex: BTreeSet<String> = busybox_chains.iter().map(|id| hex(id).to_string()).collect();
        (names_in(&daemon.root.join("content/blobs/sha256")) == busybox_hex && on_disk_chains == busybox_chain_hex)
            .then_some(())
    });
    // The container still runs on what is left, and the image it uses is kept.
    daemon.ok(&["start", "--attach", "user"]);
    assert!(daemon.ok(&["image", "ls"]).contains("busybox"));
    // The table form says what went.
    daemon.ok(&["rm", "user"]);
    let told = daemon.ok(&["image", "prune", "-a"]);
    assert!(told.contains("removed image busybox") && told.contains("layer snapshots removed"), "{told}");
    berth_tests::eventually(Duration::from_secs(10), "every blob and layer to be deleted", || {
        let blobs_left = names_in(&daemon.root.join("content/blobs/sha256"));
        (blobs_left.is_empty() && names_in(&daemon.root.join("snapshots/committed")).is_empty()).then_some(())
    });
}

fn du_bytes(path: &str) -> u64 {
    let output = std::process::Command::new("du").args(["-s", "-B1", path]).output().expect("run du");
    assert!(output.status.success(), "du {path}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn df_matches_du_and_follows_no_symlink_a_container_planted() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    // A container whose writable layer holds a symlink to the host's / and some data.
    daemon.ok(&[
        "run",
        "--name",
        "planter",
        "busybox",
        "sh",
        "-c",
        "ln -s / /escape && ln -s /usr /escape2 && dd if=/dev/zero of=/data bs=1k count=300 2>/dev/null",
    ]);
    let df: serde_json::Value =
        serde_json::from_str(&daemon.ok(&["system", "df", "--format", "json"])).expect("df json");
    let entries = df.as_array().unwrap();
    let kinds: Vec<&str> = entries.iter().map(|entry| entry["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["content", "snapshots", "writable layers", "log"]);
    for entry in entries {
        let path = entry["path"].as_str().unwrap();
        assert!(Path::new(path).starts_with(&daemon.root), "{path} is outside the root");
        assert_eq!(entry["disk_bytes"].as_u64().unwrap(), du_bytes(path), "{entry}");
    }
    let (digests, chain_ids) = image_references(&daemon, "busybox");
    assert_eq!(entries[0]["count"].as_u64().unwrap(), digests.len() as u64);
    assert_eq!(entries[1]["count"].as_u64().unwrap(), chain_ids.len() as u64);
    let writable = &entries[2];
    assert_eq!(writable["count"], 1);
    // The stopped container's layer is what `berth rm` would free: its 300 KiB, not the host's /.
    let writable_bytes = writable["disk_bytes"].as_u64().unwrap();
    assert!((300 << 10..16 << 20).contains(&writable_bytes), "{writable}");
    assert_eq!(writable["reclaimable_count"], 1, "{writable}");
    // Nothing dangling while the image exists.
    assert_eq!(entries[0]["reclaimable_count"], 0);
    let table = daemon.ok(&["system", "df"]);
    assert!(table.lines().count() == 5 && table.contains("writable layers"), "{table}");
}

#[test]
fn a_crash_between_the_record_and_the_deletion_is_finished_by_the_next_start() {
    let mut daemon = Daemon::start_with_env(&[("BERTHD_FAILPOINT", "collection-recorded")]);
    daemon.import_busybox();
    let (digests, chain_ids) = image_references(&daemon, "busybox");
    let _ = daemon.cli(&["image", "rm", "busybox"]);
    daemon.wait_for_exit(Duration::from_secs(30));
    // Recorded gone, still on disk: the window the next start closes.
    let state = daemon.state_dump();
    assert_eq!(state["content"], serde_json::json!({}), "{state}");
    // Each deletion waits for the collection lock; the first to get it stopped berthd.
    assert!(digests.iter().all(|digest| blob_path(&daemon, digest).exists()));
    assert!(chain_ids.iter().all(|chain_id| committed_path(&daemon, chain_id).exists()));
    daemon.set_env(&[]);
    daemon.start_again();
    assert!(names_in(&daemon.root.join("content/blobs/sha256")).is_empty());
    assert!(names_in(&daemon.root.join("snapshots/committed")).is_empty());
    assert!(names_in(&daemon.root.join("snapshots/tmp")).is_empty());
    assert!(names_in(&daemon.root.join("content/ingest")).is_empty());
    // And the image can come back whole.
    daemon.import_busybox();
    assert_eq!(daemon.ok(&["run", "--rm", "busybox", "echo", "ok"]), "ok\n");
}

#[test]
fn a_crash_half_way_through_deleting_a_layer_is_finished_by_the_next_start() {
    let mut daemon = Daemon::start_with_env(&[("BERTHD_FAILPOINT", "snapshot-removal-partway")]);
    import(&daemon, "layers-oci.tar", "layered:v1");
    let (_, chain_ids) = image_references(&daemon, "layered");
    let _ = daemon.cli(&["image", "rm", "layered:v1"]);
    daemon.wait_for_exit(Duration::from_secs(30));
    // Each layer being deleted was moved out of the committed directory first (into tmp, one
    // at a time under the collection lock): nothing a projection could name is half there.
    let half_deleted = names_in(&daemon.root.join("snapshots/tmp"));
    assert!(!half_deleted.is_empty(), "no layer was being deleted");
    assert!(half_deleted.iter().all(|name| name.starts_with("remove-")), "{half_deleted:?}");
    let committed_left = names_in(&daemon.root.join("snapshots/committed"));
    assert_eq!(committed_left.len() + half_deleted.len(), chain_ids.len(), "{committed_left:?} {half_deleted:?}");
    assert_eq!(daemon.state_dump()["snapshots"], serde_json::json!({}));
    daemon.set_env(&[]);
    daemon.start_again();
    assert!(names_in(&daemon.root.join("snapshots/tmp")).is_empty());
    assert!(names_in(&daemon.root.join("snapshots/committed")).is_empty());
    assert!(names_in(&daemon.root.join("content/blobs/sha256")).is_empty());
    assert!(names_in(&daemon.root.join("content/ingest")).is_empty());
    let verify = daemon.replay(&["verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}

#[test]
fn prune_while_importing_leaves_the_import_whole() {
    // An import holds the collection lock shared from its first blob until its image is
    // recorded, and prune decides under it exclusively: whatever the interleaving, the
    // imported image runs afterwards.
    let daemon = Daemon::start();
    let archive = test_images().join("busybox-oci.tar");
    for round in 0..3 {
        let name = format!("bb{round}:v1");
        let importer = {
            let socket = daemon.socket.clone();
            let archive = archive.clone();
            let name = name.clone();
            std::thread::spawn(move || {
                std::process::Command::new(berth_tests::bin("berth"))
                    .arg("--address")
                    .arg(&socket)
                    .args(["image", "import", archive.to_str().unwrap(), "--name", &name])
                    .output()
                    .unwrap()
            })
        };
        while !importer.is_finished() {
            daemon.ok(&["image", "prune"]);
        }
        let imported = importer.join().unwrap();
        assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
        assert_eq!(daemon.ok(&["run", "--rm", &name, "echo", "ok"]), "ok\n", "round {round}");
        daemon.ok(&["image", "rm", &name]);
    }
}
