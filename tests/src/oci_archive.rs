//! OCI image-layout archives built in memory, for tests that need an image berth's fixtures do
//! not hold: a huge config, several names for one image, names no tool would write.

use sha2::Digest as _;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A layer holding one small file: enough to import and list, not to run.
pub fn small_layer() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(5);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    builder.append_data(&mut header, "hello", &b"hello"[..]).unwrap();
    builder.into_inner().unwrap()
}

/// An archive of one image (`layer`, a config whose `config` section is `process_config`) listed
/// in index.json once per entry of `names`, each with `io.containerd.image.name` set to it.
pub fn archive(layer: &[u8], process_config: serde_json::Value, names: &[&str]) -> Vec<u8> {
    let config = serde_json::json!({
        "architecture": berth_runtime::images::archive::oci_architecture(),
        "os": "linux",
        "config": process_config,
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(layer))] },
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha256_hex(&config_bytes)),
            "size": config_bytes.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{}", sha256_hex(layer)),
            "size": layer.len(),
        }],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifests: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", sha256_hex(&manifest_bytes)),
                "size": manifest_bytes.len(),
                "annotations": { "io.containerd.image.name": name },
            })
        })
        .collect();
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": manifests });

    let mut builder = tar::Builder::new(Vec::new());
    let mut append = |path: String, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, bytes).unwrap();
    };
    append("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    append("index.json".into(), &serde_json::to_vec(&index).unwrap());
    for blob in [layer, &config_bytes[..], &manifest_bytes[..]] {
        append(format!("blobs/sha256/{}", sha256_hex(blob)), blob);
    }
    builder.into_inner().unwrap()
}

/// `n_entries` environment entries of `entry_bytes` bytes each (`Kn=xxxx…`).
pub fn big_env(n_entries: usize, entry_bytes: usize) -> Vec<String> {
    (0..n_entries).map(|idx| format!("K{idx:04}={}", "x".repeat(entry_bytes - 6))).collect()
}
