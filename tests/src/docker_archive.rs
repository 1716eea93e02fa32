//! docker-archive tars built in memory (`manifest.json`, `<hex>.json` config, `<id>/layer.tar`),
//! whole or broken on purpose, for the import tests that real tools cannot make malformed.

use sha2::Digest as _;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The files of a docker-archive holding one image named `repo_tag` with `layer` (uncompressed).
pub fn files(layer: &[u8], repo_tag: &str) -> Vec<(String, Vec<u8>)> {
    let config = serde_json::json!({
        "architecture": berth_runtime::images::archive::oci_architecture(),
        "os": "linux",
        "config": { "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(layer))] },
        "history": [{ "created_by": "a test" }],
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", sha256_hex(&config_bytes));
    let layer_name = format!("{}/layer.tar", sha256_hex(b"layer id"));
    let manifest = serde_json::json!([{ "Config": config_name, "RepoTags": [repo_tag], "Layers": [layer_name] }]);
    vec![
        (config_name, config_bytes),
        (layer_name, layer.to_vec()),
        ("manifest.json".to_string(), serde_json::to_vec(&manifest).unwrap()),
    ]
}

/// A tar of `files`, in order, with the paths exactly as given (`../` included: the tar crate's
/// `append_data` would refuse them, so the name is written into the header directly).
pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        let name_field = &mut header.as_old_mut().name;
        name_field.fill(0);
        name_field[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, &bytes[..]).unwrap();
    }
    builder.into_inner().unwrap()
}
