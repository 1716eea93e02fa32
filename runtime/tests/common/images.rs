//! Helpers for the image tests: locating the fixture archives built by
//! scripts/build-test-images.sh, and taking archives apart and putting them back together to make
//! the broken inputs the import must reject precisely.

use std::path::{Path, PathBuf};

/// The fixture directory: $BERTH_TESTIMAGES, else /var/tmp/berth-testimages.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("BERTH_TESTIMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/berth-testimages"))
}

/// The path of a fixture archive. A missing fixture fails the test: a test that cannot run must
/// not look like a test that passed.
pub fn fixture(file_name: &str) -> PathBuf {
    let path = fixtures_dir().join(file_name);
    assert!(
        path.is_file(),
        "test fixture {} is missing; run scripts/build-test-images.sh (as root) to build it, or point BERTH_TESTIMAGES at a directory that has it",
        path.display()
    );
    path
}

/// These tests mount, mknod and chown: they need root, and fail (not skip) without it.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the image tests mount overlays and create device nodes; run them as root"
    );
}

/// A scratch directory on the disk (not tmpfs), removed when dropped.
pub fn scratch_dir(test_name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("berth-images-{test_name}-"))
        .tempdir_in("/var/tmp")
        .expect("create a scratch directory under /var/tmp")
}

/// The regular-file entries of a tar archive, in order, with `./` prefixes removed.
pub fn archive_files(archive_path: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(archive_path).expect("open fixture archive");
    let mut archive = tar::Archive::new(file);
    let mut files = Vec::new();
    for entry in archive.entries().expect("read fixture archive") {
        let mut entry = entry.expect("read fixture entry");
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).trim_start_matches("./").to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read fixture entry content");
        files.push((path, bytes));
    }
    files
}

/// A tar archive holding `files` as regular files.
pub fn build_archive(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, bytes.as_slice()).expect("append to in-memory tar");
    }
    builder.into_inner().expect("finish in-memory tar")
}

/// The content of the file entry `path` of an archive taken apart with [`archive_files`].
pub fn file_content<'a>(files: &'a [(String, Vec<u8>)], path: &str) -> &'a [u8] {
    &files.iter().find(|(name, _)| name == path).unwrap_or_else(|| panic!("fixture has no {path}")).1
}

/// `sha256:<hex>` of some bytes, computed independently of the code under test.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
