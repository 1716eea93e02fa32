//! Tests of the image path end to end: content store, OCI archive import, layer unpacking into
//! overlay form, the overlay snapshotter with real mounts, and the runtime spec — up to running
//! the imported busybox with runc. Run as root; fixtures come from scripts/build-test-images.sh.

#[path = "common/images.rs"]
mod images_common;

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use berth_runtime::images::archive::{import_oci_archive, import_oci_archive_file, ImportError, ImportedImage};
use berth_runtime::images::content::{ContentError, ContentStore};
use berth_runtime::images::digest::chain_ids;
use berth_runtime::images::snapshot::Snapshotter;
use berth_runtime::images::unpack::{unpack_layer, UnpackError};
use berth_runtime::tasks::spec::{
    generate_spec, merge_env, merge_process_args, resolve_user, write_bundle, SpecError, SpecInput, DEFAULT_PATH_ENV,
};

use images_common::{archive_files, build_archive, file_content, fixture, require_root, scratch_dir, sha256_digest};

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

// ---------------------------------------------------------------- content store

#[test]
fn content_ingest_stores_verifies_and_is_idempotent() {
    let scratch = scratch_dir("content");
    let store = ContentStore::open(&scratch.path().join("content")).unwrap();
    let bytes = b"hello blob\n".to_vec();
    let digest = sha256_digest(&bytes);

    let info = store.ingest(Some(&digest), Cursor::new(&bytes)).unwrap();
    assert_eq!(info.digest, digest);
    assert_eq!(info.size, bytes.len() as i64);
    assert!(store.contains(&digest));
    assert_eq!(store.blob_path(&digest), scratch.path().join("content/blobs/sha256").join(&digest["sha256:".len()..]));
    assert_eq!(store.read_all(&digest).unwrap(), bytes);

    // Again, with and without the expected digest: same blob, no error, nothing left in ingest/.
    assert_eq!(store.ingest(Some(&digest), Cursor::new(&bytes)).unwrap(), info);
    assert_eq!(store.ingest(None, Cursor::new(&bytes)).unwrap(), info);
    assert_eq!(store.list().unwrap(), vec![digest.clone()]);
    assert_eq!(fs::read_dir(scratch.path().join("content/ingest")).unwrap().count(), 0);

    store.remove(&digest).unwrap();
    assert!(!store.contains(&digest));
    store.remove(&digest).unwrap();
    assert!(matches!(store.read_all(&digest), Err(ContentError::NotFound { .. })));
}

#[test]
fn content_rejects_wrong_content_and_invalid_digests() {
    let scratch = scratch_dir("content-bad");
    let store = ContentStore::open(&scratch.path().join("content")).unwrap();
    let claimed = sha256_digest(b"what was promised");
    match store.ingest(Some(&claimed), Cursor::new(b"something else")) {
        Err(ContentError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, sha256_digest(b"something else"));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(!store.contains(&claimed));
    assert!(store.list().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(scratch.path().join("content/ingest")).unwrap().count(),
        0,
        "a failed ingest leaves no temp file"
    );

    for bad_digest in ["", "sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e", "sha256:../../../../etc/passwd"] {
        assert!(
            matches!(store.ingest(Some(bad_digest), Cursor::new(b"x")), Err(ContentError::InvalidDigest { .. })),
            "{bad_digest}"
        );
        assert!(matches!(store.read_all(bad_digest), Err(ContentError::InvalidDigest { .. })), "{bad_digest}");
        assert!(!store.contains(bad_digest));
    }
    let upper_case = format!("sha256:{}", "A".repeat(64));
    assert!(matches!(store.checked_blob_path(&upper_case), Err(ContentError::InvalidDigest { .. })));
}

#[test]
fn content_read_all_detects_a_blob_damaged_on_disk() {
    let scratch = scratch_dir("content-damaged");
    let store = ContentStore::open(&scratch.path().join("content")).unwrap();
    let info = store.ingest(None, Cursor::new(b"pristine")).unwrap();
    fs::write(store.blob_path(&info.digest), b"damaged!").unwrap();
    assert!(matches!(store.read_all(&info.digest), Err(ContentError::DigestMismatch { .. })));
}

// ---------------------------------------------------------------- import

fn import_fixture(store: &ContentStore, file_name: &str, name: Option<&str>) -> ImportedImage {
    let mut images = import_oci_archive_file(store, &fixture(file_name), name).unwrap();
    assert_eq!(images.len(), 1);
    images.remove(0)
}

#[test]
fn import_busybox_names_it_and_records_the_right_digests() {
    let scratch = scratch_dir("import-busybox");
    let store = ContentStore::open(&scratch.path().join("content")).unwrap();
    let image = import_fixture(&store, "busybox-oci.tar", Some("busybox"));
    assert_eq!(image.name, "busybox:latest");

    // Cross-check against the archive itself, read independently.
    let files = archive_files(&fixture("busybox-oci.tar"));
    let index: serde_json::Value = serde_json::from_slice(file_content(&files, "index.json")).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(image.manifest.digest, manifest_digest);
    let manifest_bytes = file_content(&files, &format!("blobs/sha256/{}", &manifest_digest[7..]));
    assert_eq!(image.manifest.size, manifest_bytes.len() as i64);
    let manifest: serde_json::Value = serde_json::from_slice(manifest_bytes).unwrap();
    assert_eq!(image.config.digest, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.layers[0].blob.digest, manifest["layers"][0]["digest"].as_str().unwrap());
    assert_eq!(image.layers[0].blob.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    let config: serde_json::Value =
        serde_json::from_slice(file_content(&files, &format!("blobs/sha256/{}", &image.config.digest[7..]))).unwrap();
    assert_eq!(image.layers[0].diff_id, config["rootfs"]["diff_ids"][0].as_str().unwrap());
    assert_eq!(image.layers[0].chain_id, image.layers[0].diff_id, "a bottom layer's chain id is its diff id");

    assert_eq!(image.config_summary.cmd, strings(&["/bin/sh"]));
    assert!(image.config_summary.env.iter().any(|entry| entry.starts_with("PATH=")), "{:?}", image.config_summary.env);

    let mut expected_blobs =
        vec![image.manifest.digest.clone(), image.config.digest.clone(), image.layers[0].blob.digest.clone()];
    let mut listed: Vec<String> = image.blobs.iter().map(|blob| blob.digest.clone()).collect();
    expected_blobs.sort();
    listed.sort();
    assert_eq!(listed, expected_blobs);
    for digest in &listed {
        assert!(store.contains(digest), "{digest} should be in the store");
    }

    // Importing again is harmless and gives the same answer; a tagged name is used as is.
    let again = import_fixture(&store, "busybox-oci.tar", Some("example.com/tools/busybox:1"));
    assert_eq!(again.name, "example.com/tools/busybox:1");
    assert_eq!(again.manifest, image.manifest);
}

#[test]
fn import_layers_computes_chain_ids() {
    let scratch = scratch_dir("import-layers");
    let store = ContentStore::open(&scratch.path().join("content")).unwrap();
    let image = import_fixture(&store, "layers-oci.tar", Some("layers"));
    assert_eq!(image.name, "layers:layers", "the tag comes from the archive's ref name");
    assert_eq!(image.layers.len(), 3);
    let diff_ids: Vec<String> = image.layers.iter().map(|layer| layer.diff_id.clone()).collect();
    let chain: Vec<String> = image.layers.iter().map(|layer| layer.chain_id.clone()).collect();
    assert_eq!(chain, chain_ids(&diff_ids));
    assert_eq!(chain[1], sha256_digest(format!("{} {}", diff_ids[0], diff_ids[1]).as_bytes()));
    assert_eq!(chain[2], sha256_digest(format!("{} {}", chain[1], diff_ids[2]).as_bytes()));
}

// ---------------------------------------------------------------- overlay snapshots

#[test]
fn layers_image_commits_mounts_and_writes_land_in_upper() {
    require_root();
    let scratch = scratch_dir("overlay");
    let store = ContentStore::open(&scratch.path().join("content")).unwrap();
    let snapshotter = Snapshotter::open(&scratch.path().join("snapshots")).unwrap();
    let image = import_fixture(&store, "layers-oci.tar", Some("layers"));
    for layer in &image.layers {
        snapshotter
            .commit_layer(&layer.chain_id, &store.blob_path(&layer.blob.digest), &layer.blob.media_type, &layer.diff_id)
            .unwrap();
        assert!(snapshotter.has_committed(&layer.chain_id));
        // Idempotent: committing again is a no-op.
        snapshotter
            .commit_layer(&layer.chain_id, &store.blob_path(&layer.blob.digest), &layer.blob.media_type, &layer.diff_id)
            .unwrap();
    }
    let chain: Vec<String> = image.layers.iter().map(|layer| layer.chain_id.clone()).collect();
    let mut listed = snapshotter.list_committed().unwrap();
    listed.sort();
    let mut expected = chain.clone();
    expected.sort();
    assert_eq!(listed, expected);

    // The whiteouts are in overlay form on disk.
    let layer2 = snapshotter.committed_dir(&chain[1]);
    let gone = fs::symlink_metadata(layer2.join("data/gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0, "data/gone should be a 0/0 whiteout device");

    let active = snapshotter.prepare_active("default", "c1", &chain).unwrap();
    assert_eq!(active.lowers, chain.iter().map(|chain_id| snapshotter.committed_dir(chain_id)).collect::<Vec<_>>());
    assert_eq!(snapshotter.prepare_active("default", "c1", &chain).unwrap(), active);
    let target = scratch.path().join("rootfs");
    fs::create_dir(&target).unwrap();
    snapshotter.mount(&active, &target).unwrap();
    // Unmount even when an assertion fails, so the scratch directory can be removed.
    struct UnmountOnDrop<'a>(&'a Path);
    impl Drop for UnmountOnDrop<'_> {
        fn drop(&mut self) {
            let _ = Snapshotter::unmount(self.0);
        }
    }
    let _unmount_guard = UnmountOnDrop(&target);
    snapshotter.mount(&active, &target).unwrap();

    assert_eq!(fs::read_to_string(target.join("data/keep/a")).unwrap(), "two\n");
    assert!(!target.join("data/gone").exists());
    assert!(fs::symlink_metadata(target.join("bin/vi")).is_err(), "bin/vi was deleted by layer 2");
    assert!(target.join("bin/sh").exists(), "other applets stay");
    let opaque: Vec<String> = fs::read_dir(target.join("opaque"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(opaque, vec!["new".to_string()]);
    assert_eq!(fs::read_to_string(target.join("data/c")).unwrap(), "three\n");

    fs::write(target.join("written-by-container"), b"x").unwrap();
    fs::remove_file(target.join("data/c")).unwrap();
    assert_eq!(fs::read(active.upper.join("written-by-container")).unwrap(), b"x");
    let deleted = fs::symlink_metadata(active.upper.join("data/c")).unwrap();
    assert!(deleted.file_type().is_char_device(), "a deletion shows as a whiteout in upper");
    assert!(snapshotter.committed_dir(&chain[2]).join("data/c").exists(), "lower layers are never changed");

    Snapshotter::unmount(&target).unwrap();
    Snapshotter::unmount(&target).unwrap();
    assert!(!target.join("data").exists());
    assert_eq!(snapshotter.list_active().unwrap(), vec![("default".to_string(), "c1".to_string())]);
    snapshotter.remove_active("default", "c1").unwrap();
    snapshotter.remove_active("default", "c1").unwrap();
    assert!(snapshotter.list_active().unwrap().is_empty());
    snapshotter.remove_committed(&chain[2]).unwrap();
    assert!(!snapshotter.has_committed(&chain[2]));
    snapshotter.clean_tmp().unwrap();
}

#[test]
fn commit_layer_refuses_a_layer_with_the_wrong_diff_id() {
    require_root();
    let scratch = scratch_dir("diffid");
    let store = ContentStore::open(&scratch.path().join("content")).unwrap();
    let snapshotter = Snapshotter::open(&scratch.path().join("snapshots")).unwrap();
    let image = import_fixture(&store, "layers-oci.tar", Some("layers"));
    let layer = &image.layers[1];
    let wrong_diff_id = image.layers[2].diff_id.clone();
    let result = snapshotter.commit_layer(
        &layer.chain_id,
        &store.blob_path(&layer.blob.digest),
        &layer.blob.media_type,
        &wrong_diff_id,
    );
    assert!(matches!(result, Err(berth_runtime::images::snapshot::SnapshotError::DiffIdMismatch { .. })), "{result:?}");
    assert!(!snapshotter.has_committed(&layer.chain_id));
    assert_eq!(
        fs::read_dir(scratch.path().join("snapshots/tmp")).unwrap().count(),
        0,
        "the failed unpack is cleaned up"
    );
}

// ---------------------------------------------------------------- malformed archives

fn import_bytes(archive: &[u8], name: Option<&str>) -> Result<Vec<ImportedImage>, ImportError> {
    let scratch = scratch_dir("malformed");
    let store = ContentStore::open(&scratch.path().join("content")).unwrap();
    import_oci_archive(&store, Cursor::new(archive), name)
}

#[test]
fn import_rejects_what_is_not_a_tar() {
    let text = b"this is a text file, not an image archive\n".repeat(50);
    let result = import_bytes(&text, Some("x"));
    assert!(matches!(result, Err(ImportError::NotAnImageArchive { .. })), "{result:?}");
    assert!(import_bytes(&[], Some("x")).is_err());
}

#[test]
fn import_rejects_a_tar_that_is_neither_format_and_says_what_it_looked_for() {
    let neither = build_archive(&[("hello.txt".to_string(), b"hi".to_vec())]);
    let error = import_bytes(&neither, Some("x")).unwrap_err();
    assert!(matches!(error, ImportError::NotAnImageArchive { .. }), "{error:?}");
    assert!(error.to_string().contains("no oci-layout entry"), "{error}");
    assert!(error.to_string().contains("no manifest.json entry"), "{error}");
    // A docker-archive is read now; an empty one is refused for what it is.
    let empty_docker = build_archive(&[("manifest.json".to_string(), b"[]".to_vec())]);
    let error = import_bytes(&empty_docker, Some("x")).unwrap_err();
    assert!(matches!(error, ImportError::InvalidDockerManifest { .. }), "{error:?}");
}

#[test]
fn import_rejects_a_truncated_archive() {
    let whole = fs::read(fixture("busybox-oci.tar")).unwrap();
    let result = import_bytes(&whole[..whole.len() / 2], Some("busybox"));
    assert!(matches!(result, Err(ImportError::CorruptArchive { .. })), "{result:?}");
}

#[test]
fn import_rejects_a_blob_whose_content_does_not_match_its_name() {
    let mut files = archive_files(&fixture("busybox-oci.tar"));
    let index: serde_json::Value = serde_json::from_slice(file_content(&files, "index.json")).unwrap();
    let manifest_entry = format!("blobs/sha256/{}", &index["manifests"][0]["digest"].as_str().unwrap()[7..]);
    for (path, bytes) in files.iter_mut() {
        if *path == manifest_entry {
            bytes.push(b' ');
        }
    }
    match import_bytes(&build_archive(&files), Some("busybox")) {
        Err(ImportError::DigestMismatch { entry, .. }) => assert_eq!(entry, manifest_entry),
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
}

#[test]
fn import_rejects_a_missing_layer_blob() {
    let files = archive_files(&fixture("busybox-oci.tar"));
    let index: serde_json::Value = serde_json::from_slice(file_content(&files, "index.json")).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(file_content(&files, &format!("blobs/sha256/{}", &manifest_digest[7..]))).unwrap();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    let without_layer: Vec<(String, Vec<u8>)> =
        files.into_iter().filter(|(path, _)| !path.ends_with(&layer_digest[7..])).collect();
    match import_bytes(&build_archive(&without_layer), Some("busybox")) {
        Err(ImportError::MissingBlob { digest }) => assert_eq!(digest, layer_digest),
        other => panic!("expected MissingBlob, got {other:?}"),
    }
}

#[test]
fn import_rejects_a_manifest_pointing_to_a_missing_config() {
    let mut files = archive_files(&fixture("busybox-oci.tar"));
    let mut index: serde_json::Value = serde_json::from_slice(file_content(&files, "index.json")).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(file_content(&files, &format!("blobs/sha256/{}", &manifest_digest[7..]))).unwrap();
    let absent_config_digest = sha256_digest(b"a config that is not in the archive");
    manifest["config"]["digest"] = serde_json::json!(absent_config_digest);
    let new_manifest = serde_json::to_vec(&manifest).unwrap();
    let new_manifest_digest = sha256_digest(&new_manifest);
    index["manifests"][0]["digest"] = serde_json::json!(new_manifest_digest);
    index["manifests"][0]["size"] = serde_json::json!(new_manifest.len());
    files.retain(|(path, _)| path != "index.json");
    files.push((format!("blobs/sha256/{}", &new_manifest_digest[7..]), new_manifest));
    files.push(("index.json".to_string(), serde_json::to_vec(&index).unwrap()));
    match import_bytes(&build_archive(&files), Some("busybox")) {
        Err(ImportError::MissingBlob { digest }) => assert_eq!(digest, absent_config_digest),
        other => panic!("expected MissingBlob for the config, got {other:?}"),
    }
}

#[test]
fn import_without_a_name_of_a_tag_only_archive_asks_for_one() {
    let archive = fs::read(fixture("busybox-oci.tar")).unwrap();
    let error = import_bytes(&archive, None).unwrap_err();
    assert!(matches!(error, ImportError::NoName { .. }), "{error:?}");
    assert!(error.to_string().contains("--name"), "{error}");
}

#[test]
fn import_refuses_a_tagged_name_for_several_images() {
    let mut files = archive_files(&fixture("busybox-oci.tar"));
    let mut index: serde_json::Value = serde_json::from_slice(file_content(&files, "index.json")).unwrap();
    let mut second = index["manifests"][0].clone();
    second["annotations"]["org.opencontainers.image.ref.name"] = serde_json::json!("second");
    index["manifests"].as_array_mut().unwrap().push(second);
    files.retain(|(path, _)| path != "index.json");
    files.push(("index.json".to_string(), serde_json::to_vec(&index).unwrap()));
    let archive = build_archive(&files);
    let result = import_bytes(&archive, Some("busybox:1"));
    assert!(matches!(result, Err(ImportError::NameForMultipleImages { n_images: 2 })), "{result:?}");
    let names: Vec<String> =
        import_bytes(&archive, Some("busybox")).unwrap().into_iter().map(|image| image.name).collect();
    assert_eq!(names, strings(&["busybox:latest", "busybox:second"]));
}

// ---------------------------------------------------------------- unpack safety

/// A tar entry header with a raw name, bypassing the tar crate's own refusal of `..`: the point
/// is to feed the unpacker what a hostile layer would hold.
fn raw_header(name: &str, entry_type: tar::EntryType, size: u64, link_name: Option<&str>) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    let raw = header.as_ustar_mut().expect("a ustar header");
    raw.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link_name) = link_name {
        raw.linkname[..link_name.len()].copy_from_slice(link_name.as_bytes());
    }
    header.set_entry_type(entry_type);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    header
}

fn layer_tar(entries: &[(tar::Header, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (header, data) in entries {
        builder.append(header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn unpack_bytes(layer: &[u8], dest: &Path) -> Result<String, UnpackError> {
    let blob = dest.parent().unwrap().join("layer.tar");
    fs::write(&blob, layer).unwrap();
    unpack_layer(&blob, "application/vnd.oci.image.layer.v1.tar", dest)
}

#[test]
fn unpack_refuses_dot_dot_and_writes_nothing_outside() {
    require_root();
    let scratch = scratch_dir("unpack-dotdot");
    let dest = scratch.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let layer = layer_tar(&[(raw_header("../escape", tar::EntryType::Regular, 4, None), b"evil")]);
    let result = unpack_bytes(&layer, &dest);
    assert!(matches!(result, Err(UnpackError::UnsafePath { .. })), "{result:?}");
    assert!(!scratch.path().join("escape").exists());
}

#[test]
fn unpack_refuses_to_write_through_a_planted_symlink() {
    require_root();
    let scratch = scratch_dir("unpack-symlink");
    let dest = scratch.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let outside = scratch.path().join("outside");
    fs::create_dir(&outside).unwrap();
    // `a` points outside (absolute, and relative via ..), then entries try to write through it.
    for (link_target, through) in
        [("/", "a/etc/berth-escape-test"), (outside.to_str().unwrap(), "a/x"), ("../outside", "a/y")]
    {
        let _ = fs::remove_file(dest.join("a"));
        let layer = layer_tar(&[
            (raw_header("a", tar::EntryType::Symlink, 0, Some(link_target)), b""),
            (raw_header(through, tar::EntryType::Regular, 4, None), b"evil"),
        ]);
        let result = unpack_bytes(&layer, &dest);
        assert!(matches!(result, Err(UnpackError::UnsafePath { .. })), "{link_target}: {result:?}");
    }
    assert!(!Path::new("/etc/berth-escape-test").exists());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn unpack_replaces_a_planted_symlink_instead_of_writing_through_it() {
    require_root();
    let scratch = scratch_dir("unpack-replace");
    let dest = scratch.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let victim = scratch.path().join("victim");
    fs::write(&victim, b"intact").unwrap();
    let layer = layer_tar(&[
        (raw_header("f", tar::EntryType::Symlink, 0, Some(victim.to_str().unwrap())), b""),
        (raw_header("f", tar::EntryType::Regular, 3, None), b"new"),
        (raw_header("hard", tar::EntryType::Link, 0, Some("f")), b""),
    ]);
    unpack_bytes(&layer, &dest).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"intact");
    assert_eq!(fs::read(dest.join("f")).unwrap(), b"new");
    assert_eq!(fs::metadata(dest.join("hard")).unwrap().ino(), fs::metadata(dest.join("f")).unwrap().ino());
}

#[test]
fn unpack_converts_whiteouts_and_keeps_metadata_and_returns_the_diff_id() {
    require_root();
    let scratch = scratch_dir("unpack-whiteouts");
    let dest = scratch.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let mut dir_header = raw_header("dir/", tar::EntryType::Directory, 0, None);
    dir_header.set_mode(0o750);
    dir_header.set_cksum();
    let mut owned_header = raw_header("dir/owned", tar::EntryType::Regular, 2, None);
    owned_header.set_uid(1234);
    owned_header.set_gid(5678);
    owned_header.set_mode(0o4755);
    owned_header.set_cksum();
    let mut device_header = raw_header("dev-null", tar::EntryType::Char, 0, None);
    device_header.set_device_major(1).unwrap();
    device_header.set_device_minor(3).unwrap();
    device_header.set_cksum();
    let layer = layer_tar(&[
        (dir_header, b""),
        (raw_header("dir/.wh..wh..opq", tar::EntryType::Regular, 0, None), b""),
        (owned_header, b"hi"),
        (raw_header("dir/.wh.deleted", tar::EntryType::Regular, 0, None), b""),
        (raw_header("link", tar::EntryType::Symlink, 0, Some("dir/owned")), b""),
        (device_header, b""),
    ]);
    let diff_id = unpack_bytes(&layer, &dest).unwrap();
    assert_eq!(diff_id, sha256_digest(&layer));

    let dir = fs::metadata(dest.join("dir")).unwrap();
    assert_eq!(dir.mode() & 0o7777, 0o750);
    assert_eq!(dir.mtime(), 1_700_000_000, "directory times are set after their content");
    let opaque = xattr_value(&dest.join("dir"), "trusted.overlay.opaque");
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
    assert!(!dest.join("dir/.wh..wh..opq").exists());
    let whiteout = fs::symlink_metadata(dest.join("dir/deleted")).unwrap();
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    let owned = fs::metadata(dest.join("dir/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid(), owned.mode() & 0o7777, owned.mtime()), (1234, 5678, 0o4755, 1_700_000_000));
    assert_eq!(fs::read_link(dest.join("link")).unwrap(), Path::new("dir/owned"));
    let device = fs::symlink_metadata(dest.join("dev-null")).unwrap();
    assert!(device.file_type().is_char_device());
    assert_eq!(device.rdev(), nix::sys::stat::makedev(1, 3));
}

fn xattr_value(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c_path = std::ffi::CString::new(path.to_str()?).ok()?;
    let c_name = std::ffi::CString::new(name).ok()?;
    let mut buffer = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and outlive the call; the buffer pointer and
    // length describe a live, writable allocation.
    let n_bytes =
        unsafe { libc::lgetxattr(c_path.as_ptr(), c_name.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len()) };
    if n_bytes < 0 {
        return None;
    }
    buffer.truncate(n_bytes as usize);
    Some(buffer)
}

// ---------------------------------------------------------------- spec

#[test]
fn spec_merge_rules() {
    let entrypoint = strings(&["/docker-entrypoint.sh"]);
    let cmd = strings(&["nginx", "-g", "daemon off;"]);
    assert_eq!(
        merge_process_args(&entrypoint, &cmd, &[], &[]),
        strings(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
    );
    assert_eq!(
        merge_process_args(&entrypoint, &cmd, &[], &strings(&["sh"])),
        strings(&["/docker-entrypoint.sh", "sh"])
    );
    assert_eq!(
        merge_process_args(&entrypoint, &cmd, &strings(&["/bin/sh"]), &[]),
        strings(&["/bin/sh"]),
        "a new entrypoint drops the image cmd"
    );
    assert_eq!(
        merge_process_args(&entrypoint, &cmd, &strings(&["/bin/sh"]), &strings(&["-c", "x"])),
        strings(&["/bin/sh", "-c", "x"])
    );
    assert_eq!(merge_process_args(&[], &strings(&["/bin/sh"]), &[], &[]), strings(&["/bin/sh"]));

    let image_env = strings(&["PATH=/bin", "LANG=C", "KEEP=1"]);
    assert_eq!(
        merge_env(&image_env, &strings(&["LANG=C.UTF-8", "NEW=x"])),
        strings(&["PATH=/bin", "LANG=C.UTF-8", "KEEP=1", "NEW=x"])
    );
    assert_eq!(merge_env(&strings(&["A=1"]), &[]), vec!["A=1".to_string(), DEFAULT_PATH_ENV.to_string()]);
}

#[test]
fn spec_resolves_users_inside_the_rootfs_only() {
    let scratch = scratch_dir("users");
    let rootfs = scratch.path().join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:web:/home/web:/bin/sh\n")
        .unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\nweb:x:1001:\naudio:x:29:web,other\nstaff:x:50:web\n").unwrap();

    let resolve = |user: &str| resolve_user(&rootfs, user);
    assert_eq!((resolve("").unwrap().uid, resolve("").unwrap().gid), (0, 0));
    let web = resolve("web").unwrap();
    assert_eq!((web.uid, web.gid, web.additional_gids.clone()), (1000, 1001, vec![29, 50]));
    assert_eq!(
        (resolve("1000").unwrap().uid, resolve("1000").unwrap().gid),
        (1000, 1001),
        "a known numeric uid gets its primary group"
    );
    assert_eq!((resolve("4242").unwrap().uid, resolve("4242").unwrap().gid), (4242, 0));
    assert_eq!((resolve("4242:7").unwrap().uid, resolve("4242:7").unwrap().gid), (4242, 7));
    assert_eq!(resolve("web:staff").unwrap().gid, 50);
    assert_eq!(resolve("1000:audio").unwrap().gid, 29);
    match resolve("nobody-here") {
        Err(SpecError::UnknownUser { user, looked_up }) => {
            assert_eq!(user, "nobody-here");
            assert_eq!(looked_up, rootfs.join("etc/passwd"));
        }
        other => panic!("expected UnknownUser, got {other:?}"),
    }
    assert!(matches!(resolve("web:nogroup"), Err(SpecError::UnknownGroup { .. })));
    assert!(matches!(resolve("web:"), Err(SpecError::InvalidUser { .. })));

    // An image whose /etc/passwd points at the host's (absolute, or climbing with ..) must be
    // read inside the rootfs: neither link can reach the host's root entry.
    for link_target in ["/etc/passwd.real", "../../../../../../etc/passwd.real"] {
        fs::remove_file(rootfs.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(link_target, rootfs.join("etc/passwd")).unwrap();
        fs::write(rootfs.join("etc/passwd.real"), "inside:x:77:77::/:/bin/sh\n").unwrap();
        assert_eq!(resolve("inside").unwrap().uid, 77, "{link_target}");
        assert!(
            matches!(resolve("root"), Err(SpecError::UnknownUser { .. })),
            "{link_target}: the host's passwd must not be read"
        );
    }
}

#[test]
fn spec_has_the_defaults_a_runc_container_gets() {
    let scratch = scratch_dir("spec");
    let input = SpecInput {
        args: strings(&["/bin/sh"]),
        env: strings(&["PATH=/bin"]),
        working_dir: String::new(),
        user: String::new(),
        hostname: "box".to_string(),
        cgroups_path: "/berth/c1".to_string(),
        terminal: false,
    };
    let spec = generate_spec(&input, scratch.path()).unwrap();
    let bundle = scratch.path().join("bundle");
    write_bundle(&bundle, &spec).unwrap();
    let written: serde_json::Value = serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(written["root"]["path"], "rootfs");
    assert!(!written["root"].get("readonly").and_then(|v| v.as_bool()).unwrap_or(false));
    assert_eq!(written["process"]["cwd"], "/");
    assert_eq!(written["process"]["terminal"], false);
    assert_eq!(written["process"]["noNewPrivileges"], true);
    assert_eq!(written["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
    assert_eq!(written["hostname"], "box");
    assert_eq!(written["linux"]["cgroupsPath"], "/berth/c1");
    let caps: Vec<&str> = written["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for expected in ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_AUDIT_WRITE"] {
        assert!(caps.contains(&expected), "{expected} missing from {caps:?}");
    }
    assert!(!caps.contains(&"CAP_SYS_ADMIN"));
    let namespaces: Vec<&str> =
        written["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
    for expected in ["pid", "ipc", "uts", "mount", "network"] {
        assert!(namespaces.contains(&expected), "{expected} namespace missing");
    }
    let destinations: Vec<&str> =
        written["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap()).collect();
    assert_eq!(
        destinations,
        vec!["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/run"]
    );
    assert!(written["linux"]["maskedPaths"].as_array().unwrap().iter().any(|p| p == "/proc/kcore"));
    assert!(written["linux"]["readonlyPaths"].as_array().unwrap().iter().any(|p| p == "/proc/sys"));
    assert_eq!(written["linux"]["resources"]["devices"][0]["allow"], false);

    assert!(matches!(
        generate_spec(&SpecInput { args: vec![], ..input.clone() }, scratch.path()),
        Err(SpecError::NoCommand)
    ));
    assert!(matches!(
        generate_spec(&SpecInput { working_dir: "relative".to_string(), ..input.clone() }, scratch.path()),
        Err(SpecError::InvalidWorkingDir { .. })
    ));
}

/// The whole path: import busybox, unpack, mount, generate the spec, and let runc run it.
#[test]
fn busybox_runs_under_runc_with_the_generated_spec() {
    require_root();
    let runc_binary = ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .expect("runc is not installed; install it (apt-get install runc) to run this test");
    let scratch = scratch_dir("runc");
    let store = ContentStore::open(&scratch.path().join("content")).unwrap();
    let snapshotter = Snapshotter::open(&scratch.path().join("snapshots")).unwrap();
    let image = import_fixture(&store, "busybox-oci.tar", Some("busybox"));
    for layer in &image.layers {
        snapshotter
            .commit_layer(&layer.chain_id, &store.blob_path(&layer.blob.digest), &layer.blob.media_type, &layer.diff_id)
            .unwrap();
    }
    let chain: Vec<String> = image.layers.iter().map(|layer| layer.chain_id.clone()).collect();
    let container_id = format!("berth-images-test-{}", std::process::id());
    let active = snapshotter.prepare_active("test", &container_id, &chain).unwrap();
    let bundle = scratch.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    snapshotter.mount(&active, &rootfs).unwrap();

    let args = merge_process_args(
        &image.config_summary.entrypoint,
        &image.config_summary.cmd,
        &[],
        &strings(&["sh", "-c", "echo hi; id -u; grep ' /proc ' /proc/mounts; exit 7"]),
    );
    let input = SpecInput {
        args,
        env: merge_env(&image.config_summary.env, &[]),
        working_dir: image.config_summary.working_dir.clone(),
        user: "root".to_string(),
        hostname: "busybox".to_string(),
        cgroups_path: String::new(),
        terminal: false,
    };
    let spec = generate_spec(&input, &rootfs).unwrap();
    write_bundle(&bundle, &spec).unwrap();

    let runc_state = scratch.path().join("runc-state");
    let output = Command::new(runc_binary)
        .arg("--root")
        .arg(&runc_state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&container_id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ =
        Command::new(runc_binary).arg("--root").arg(&runc_state).args(["delete", "--force", &container_id]).output();
    let unmounted = Snapshotter::unmount(&rootfs);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (first_lines, proc_mount_line) = stdout.split_at(stdout.find("proc /proc ").unwrap_or(stdout.len()));
    assert_eq!(
        (first_lines, output.status.code()),
        ("hi\n0\n", Some(7)),
        "runc stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The kernel's view, not the spec's: /proc really is mounted nosuid,nodev,noexec.
    let proc_options: Vec<&str> = proc_mount_line.split_whitespace().nth(3).unwrap_or_default().split(',').collect();
    for expected in ["nosuid", "nodev", "noexec"] {
        assert!(proc_options.contains(&expected), "/proc is mounted without {expected}: {proc_mount_line:?}");
    }
    unmounted.unwrap();
}

/// A real distribution's layer (~6,800 files, hard links, setuid binaries, device-free /dev).
/// Its fixture comes from `build-test-images.sh all` (scripts/test.sh builds it).
#[test]
fn debian_image_unpacks_with_the_right_diff_id_and_runs() {
    require_root();
    let scratch = scratch_dir("debian");
    let store = ContentStore::open(&scratch.path().join("content")).unwrap();
    let snapshotter = Snapshotter::open(&scratch.path().join("snapshots")).unwrap();
    let image = import_fixture(&store, "debian-oci.tar", Some("debian"));
    assert_eq!(image.name, "debian:bookworm");
    for layer in &image.layers {
        snapshotter
            .commit_layer(&layer.chain_id, &store.blob_path(&layer.blob.digest), &layer.blob.media_type, &layer.diff_id)
            .unwrap();
    }
    let bottom = snapshotter.committed_dir(&image.layers[0].chain_id);
    let su = fs::metadata(bottom.join("usr/bin/su")).unwrap();
    assert_eq!(su.mode() & 0o4000, 0o4000, "setuid bits survive unpacking");
    assert_eq!(
        fs::read_link(bottom.join("bin")).unwrap(),
        Path::new("usr/bin"),
        "merged-/usr symlinks are kept as links"
    );
    assert!(fs::read_to_string(bottom.join("etc/passwd")).unwrap().contains("nobody"));
    let nobody = resolve_user(&bottom, "nobody").unwrap();
    assert_eq!(nobody.uid, 65534);
}

#[test]
fn unpack_never_takes_overlay_xattrs_from_a_layer() {
    require_root();
    let scratch = scratch_dir("xattrs");
    let dest = scratch.path().join("fs");
    fs::create_dir_all(&dest).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    // A directory whose PAX header asks overlayfs to redirect it elsewhere, plus a harmless
    // user xattr that must survive.
    builder
        .append_pax_extensions([
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc".as_slice()),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y".as_slice()),
            ("SCHILY.xattr.user.note", b"kept".as_slice()),
        ])
        .unwrap();
    let mut header = raw_header("steered/", tar::EntryType::Directory, 0, None);
    header.set_mode(0o755);
    header.set_cksum();
    builder.append(&header, &[][..]).unwrap();
    let layer = builder.into_inner().unwrap();
    unpack_bytes(&layer, &dest).unwrap();
    let steered = dest.join("steered");
    assert!(steered.is_dir());
    assert_eq!(xattr_value(&steered, "trusted.overlay.redirect"), None);
    assert_eq!(xattr_value(&steered, "trusted.overlay.opaque"), None, "opaque comes only from .wh..wh..opq");
    assert_eq!(xattr_value(&steered, "user.note").as_deref(), Some(&b"kept"[..]));
}
