//! Tests of the image import's checks on small OCI layouts built in memory: each validation with
//! its error message, Docker schema 2 media types, multi-platform indexes, and where oci-spec's
//! types are stricter than the structs they replaced. No fixtures, no root.

use std::collections::HashMap;
use std::io;

use berth_runtime::images::archive::{
    import_oci_archive, oci_architecture, ImageConfigSummary, ImportError, ImportedImage, MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_MANIFEST,
};
use berth_runtime::images::content::ContentStore;

// Spelt out rather than taken from oci-spec, so the tests check oci-spec's mapping too.
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A small image layout built in memory. Descriptors name their blob with a placeholder
/// digest ("@layer", "@config", "@manifest", "@nested") that [`SyntheticLayout::archive`]
/// replaces by the real digest and, unless the test set one, the real size.
struct SyntheticLayout {
    oci_layout: serde_json::Value,
    layer: Vec<u8>,
    config: serde_json::Value,
    manifest: serde_json::Value,
    nested_index: Option<serde_json::Value>,
    index: serde_json::Value,
}

fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn fill_descriptors(value: &mut serde_json::Value, known: &HashMap<String, (String, usize)>) {
    match value {
        serde_json::Value::Object(object) => {
            let placeholder = object.get("digest").and_then(|digest| digest.as_str()).map(str::to_string);
            if let Some((digest, size)) = placeholder.and_then(|name| known.get(&name)) {
                object.insert("digest".to_string(), serde_json::json!(digest));
                object.entry("size").or_insert(serde_json::json!(size));
            }
            object.values_mut().for_each(|child| fill_descriptors(child, known));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|child| fill_descriptors(child, known)),
        _ => {}
    }
}

impl SyntheticLayout {
    fn new() -> SyntheticLayout {
        let layer = b"not really a tar; the import never opens layers".to_vec();
        SyntheticLayout {
            oci_layout: serde_json::json!({ "imageLayoutVersion": "1.0.0" }),
            config: serde_json::json!({
                "architecture": oci_architecture(),
                "os": "linux",
                "config": {
                    "Entrypoint": ["/entry"],
                    "Cmd": ["serve", "--port", "80"],
                    "Env": ["PATH=/usr/bin", "MODE=test"],
                    "WorkingDir": "/srv",
                    "User": "web:web",
                    "ExposedPorts": { "80/tcp": {} },
                    "Labels": { "a": "b" },
                },
                "rootfs": { "type": "layers", "diff_ids": [sha256_of(&layer)] },
                "history": [{ "created_by": "a test" }],
            }),
            layer,
            manifest: serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": { "mediaType": OCI_CONFIG, "digest": "@config" },
                "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "@layer" }],
            }),
            nested_index: None,
            index: serde_json::json!({
                "schemaVersion": 2,
                "manifests": [{
                    "mediaType": OCI_MANIFEST,
                    "digest": "@manifest",
                    "annotations": { "org.opencontainers.image.ref.name": "v1" },
                }],
            }),
        }
    }

    /// A multi-platform layout as skopeo copies it with --all: index.json names an image
    /// index, which names the manifest for this machine and one for another architecture.
    fn multi_platform() -> SyntheticLayout {
        let mut layout = SyntheticLayout::new();
        layout.nested_index = Some(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                { "mediaType": OCI_MANIFEST, "digest": "@manifest", "platform": { "architecture": "not-this-one", "os": "linux" } },
                { "mediaType": OCI_MANIFEST, "digest": "@manifest", "platform": { "architecture": oci_architecture(), "os": "linux" } },
            ],
        }));
        layout.index["manifests"][0]["mediaType"] = serde_json::json!(OCI_INDEX);
        layout.index["manifests"][0]["digest"] = serde_json::json!("@nested");
        layout
    }

    fn archive(&self) -> Vec<u8> {
        let mut known: HashMap<String, (String, usize)> = HashMap::new();
        let mut blobs: Vec<Vec<u8>> = vec![self.layer.clone()];
        known.insert("@layer".to_string(), (sha256_of(&self.layer), self.layer.len()));
        let mut documents = vec![("@config", Some(self.config.clone())), ("@manifest", Some(self.manifest.clone()))];
        documents.push(("@nested", self.nested_index.clone()));
        for (placeholder, document) in documents {
            let Some(mut document) = document else { continue };
            fill_descriptors(&mut document, &known);
            let bytes = serde_json::to_vec(&document).unwrap();
            known.insert(placeholder.to_string(), (sha256_of(&bytes), bytes.len()));
            blobs.push(bytes);
        }
        let mut index = self.index.clone();
        fill_descriptors(&mut index, &known);

        let mut builder = tar::Builder::new(Vec::new());
        let mut append = |path: String, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, path, bytes).unwrap();
        };
        append("oci-layout".to_string(), &serde_json::to_vec(&self.oci_layout).unwrap());
        append("index.json".to_string(), &serde_json::to_vec(&index).unwrap());
        for blob in &blobs {
            append(format!("blobs/sha256/{}", &sha256_of(blob)["sha256:".len()..]), blob);
        }
        builder.into_inner().unwrap()
    }

    fn import(&self) -> Result<Vec<ImportedImage>, ImportError> {
        let store_dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(store_dir.path()).unwrap();
        import_oci_archive(&store, io::Cursor::new(self.archive()), Some("example/app"))
    }
}

#[test]
fn a_synthetic_layout_imports_with_its_config_summary() {
    let layout = SyntheticLayout::new();
    let images = layout.import().unwrap();
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image.name, "example/app:v1");
    assert_eq!(image.manifest.media_type, OCI_MANIFEST);
    assert_eq!(image.config.media_type, OCI_CONFIG);
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.layers[0].blob.digest, sha256_of(&layout.layer));
    assert_eq!(image.layers[0].blob.size, layout.layer.len() as i64);
    assert_eq!(image.layers[0].diff_id, sha256_of(&layout.layer));
    let expected_summary = ImageConfigSummary {
        entrypoint: vec!["/entry".to_string()],
        cmd: vec!["serve".to_string(), "--port".to_string(), "80".to_string()],
        env: vec!["PATH=/usr/bin".to_string(), "MODE=test".to_string()],
        working_dir: "/srv".to_string(),
        user: "web:web".to_string(),
    };
    assert_eq!(image.config_summary, expected_summary);
    assert_eq!(image.blobs.len(), 3, "manifest, config, layer");
}

#[test]
fn docker_schema_2_media_types_are_accepted_and_a_config_may_leave_out_its_process() {
    let mut layout = SyntheticLayout::new();
    layout.manifest["mediaType"] = serde_json::json!(MEDIA_TYPE_DOCKER_MANIFEST);
    layout.manifest["config"]["mediaType"] = serde_json::json!(MEDIA_TYPE_DOCKER_CONFIG);
    layout.manifest["layers"][0]["mediaType"] = serde_json::json!("application/vnd.docker.image.rootfs.diff.tar.gzip");
    layout.index["manifests"][0]["mediaType"] = serde_json::json!(MEDIA_TYPE_DOCKER_MANIFEST);
    layout.config.as_object_mut().unwrap().remove("config");
    let image = layout.import().unwrap().remove(0);
    assert_eq!(image.manifest.media_type, MEDIA_TYPE_DOCKER_MANIFEST);
    assert_eq!(image.config.media_type, MEDIA_TYPE_DOCKER_CONFIG);
    assert_eq!(image.config_summary, ImageConfigSummary::default());
}

#[test]
fn the_manifest_media_type_falls_back_to_the_descriptor_then_to_oci() {
    let mut layout = SyntheticLayout::new();
    layout.manifest.as_object_mut().unwrap().remove("mediaType");
    layout.index["manifests"][0]["mediaType"] = serde_json::json!(MEDIA_TYPE_DOCKER_MANIFEST);
    assert_eq!(layout.import().unwrap()[0].manifest.media_type, MEDIA_TYPE_DOCKER_MANIFEST);
    layout.index["manifests"][0]["mediaType"] = serde_json::json!("");
    assert_eq!(layout.import().unwrap()[0].manifest.media_type, OCI_MANIFEST);
}

#[test]
fn a_multi_platform_index_yields_the_image_for_this_machine() {
    let layout = SyntheticLayout::multi_platform();
    let image = layout.import().unwrap().remove(0);
    assert_eq!(image.name, "example/app:v1");
    assert_eq!(image.blobs.len(), 4, "the platform index is kept too");
    assert_eq!(image.blobs[3].media_type, OCI_INDEX);

    let mut foreign = SyntheticLayout::multi_platform();
    foreign.nested_index.as_mut().unwrap()["manifests"].as_array_mut().unwrap().remove(1);
    match foreign.import() {
        Err(error @ ImportError::NoMatchingPlatform { .. }) => {
            assert!(error.to_string().contains("(it has: linux/not-this-one)"), "{error}");
        }
        other => panic!("expected NoMatchingPlatform, got {other:?}"),
    }
}

/// Every check the import makes, each with the words of its message that tell the user what
/// is wrong: one broken field at a time on an otherwise good layout.
#[test]
fn each_validation_keeps_its_error_and_message() {
    type Breakage = fn(&mut SyntheticLayout);
    let cases: Vec<(&str, Breakage, &str)> = vec![
        (
            "layout version",
            |layout| layout.oci_layout["imageLayoutVersion"] = serde_json::json!("2.0.0"),
            "only 1.x is supported",
        ),
        (
            "index schema",
            |layout| layout.index["schemaVersion"] = serde_json::json!(1),
            "index.json is invalid (schemaVersion is 1, expected 2)",
        ),
        (
            "empty index",
            |layout| layout.index["manifests"] = serde_json::json!([]),
            "index.json is invalid (it lists no images)",
        ),
        ("index not an object", |layout| layout.index = serde_json::json!([1, 2]), "index.json is invalid"),
        (
            "foreign platform",
            |layout| {
                layout.index["manifests"][0]["platform"] =
                    serde_json::json!({ "architecture": "not-this-one", "os": "linux" })
            },
            "has no image for linux/",
        ),
        (
            "manifest schema",
            |layout| layout.manifest["schemaVersion"] = serde_json::json!(1),
            "is invalid (schemaVersion is 1, expected 2)",
        ),
        (
            "manifest media type",
            |layout| {
                layout.manifest["mediaType"] = serde_json::json!("application/vnd.docker.distribution.manifest.v1+json")
            },
            "has media type \"application/vnd.docker.distribution.manifest.v1+json\", which berth cannot run",
        ),
        (
            "config media type",
            |layout| layout.manifest["config"]["mediaType"] = serde_json::json!("application/octet-stream"),
            "has media type \"application/octet-stream\"",
        ),
        (
            "layer media type",
            |layout| {
                layout.manifest["layers"][0]["mediaType"] =
                    serde_json::json!("application/vnd.oci.image.layer.v1.tar+bzip2")
            },
            "has media type \"application/vnd.oci.image.layer.v1.tar+bzip2\"",
        ),
        (
            "layer size",
            |layout| layout.manifest["layers"][0]["size"] = serde_json::json!(3),
            "bytes but its descriptor says 3",
        ),
        (
            "config os",
            |layout| layout.config["os"] = serde_json::json!("windows"),
            "it is an image for \"windows\", berth runs linux images only",
        ),
        (
            "rootfs type",
            |layout| layout.config["rootfs"]["type"] = serde_json::json!("tarballs"),
            "rootfs.type is \"tarballs\", expected \"layers\"",
        ),
        (
            "diff id count",
            |layout| {
                layout.config["rootfs"]["diff_ids"].as_array_mut().unwrap().push(serde_json::json!(sha256_of(b"x")))
            },
            "it lists 2 diff_ids but the manifest has 1 layers",
        ),
        (
            "diff id form",
            |layout| layout.config["rootfs"]["diff_ids"][0] = serde_json::json!("md5:0123"),
            "diff_id \"md5:0123\" is not a sha256 digest",
        ),
        (
            "config without rootfs",
            |layout| drop(layout.config.as_object_mut().unwrap().remove("rootfs")),
            "image config sha256:",
        ),
    ];
    for (case, breakage, expected_words) in cases {
        let mut layout = SyntheticLayout::new();
        breakage(&mut layout);
        let message = match layout.import() {
            Ok(images) => panic!("{case}: imported {images:?}"),
            Err(error) => error.to_string(),
        };
        assert!(message.contains(expected_words), "{case}: {message}");
    }
}

/// Where oci-spec's types refuse what the hand-written structs they replaced let through
/// (all of it outside the image spec, none of it written by umoci or skopeo): the error is
/// still the one for the document at fault, with serde's reason.
#[test]
fn what_oci_spec_refuses_that_the_old_structs_accepted() {
    type Breakage = fn(&mut SyntheticLayout);
    let cases: Vec<(&str, Breakage, &str)> = vec![
        (
            "descriptor without mediaType (was taken for an OCI manifest)",
            |layout| drop(layout.index["manifests"][0].as_object_mut().unwrap().remove("mediaType")),
            "index.json is invalid (missing field `mediaType`",
        ),
        (
            "malformed digest (was the content store's invalid-digest error)",
            |layout| layout.index["manifests"][0]["digest"] = serde_json::json!("sha256"),
            "index.json is invalid (missing ':' in digest",
        ),
        (
            "index without manifests (was \"it lists no images\")",
            |layout| drop(layout.index.as_object_mut().unwrap().remove("manifests")),
            "index.json is invalid (missing field `manifests`",
        ),
        (
            "negative size (was a size mismatch)",
            |layout| layout.manifest["layers"][0]["size"] = serde_json::json!(-1),
            "is invalid (invalid value: integer `-1`, expected u64",
        ),
        (
            "manifest without layers (was an image of no layers)",
            |layout| drop(layout.manifest.as_object_mut().unwrap().remove("layers")),
            "is invalid (missing field `layers`",
        ),
        (
            "config without architecture (was never read)",
            |layout| drop(layout.config.as_object_mut().unwrap().remove("architecture")),
            "is invalid (missing field `architecture`",
        ),
        (
            "config without os (was taken for linux)",
            |layout| drop(layout.config.as_object_mut().unwrap().remove("os")),
            "is invalid (missing field `os`",
        ),
        (
            "a label that is not a string (labels were never read)",
            |layout| layout.config["config"]["Labels"]["a"] = serde_json::json!(1),
            "is invalid (invalid type: integer `1`, expected a string",
        ),
    ];
    for (case, breakage, expected_words) in cases {
        let mut layout = SyntheticLayout::new();
        breakage(&mut layout);
        let message = match layout.import() {
            Ok(images) => panic!("{case}: imported {images:?}"),
            Err(error) => error.to_string(),
        };
        assert!(message.contains(expected_words), "{case}: {message}");
    }
}
