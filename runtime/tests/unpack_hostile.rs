//! Layers that must be refused or unpacked exactly: whiteouts naming `.` or `..`, GNU and PAX
//! sparse files (made by real GNU tar), and directories nested thousands deep. Run as root.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use berth_runtime::images::unpack::{unpack_layer, UnpackError};

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "the unpacker sets owners and creates device nodes; run as root");
}

fn scratch_dir(test_name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("berth-{test_name}-")).tempdir_in("/var/tmp").unwrap()
}

fn unpack_file(layer: &Path, dest: &Path) -> Result<String, UnpackError> {
    unpack_layer(layer, "application/vnd.oci.image.layer.v1.tar", dest)
}

fn header(entry_type: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(entry_type);
    header.set_size(size);
    header.set_mode(if entry_type.is_dir() { 0o755 } else { 0o644 });
    header.set_mtime(1_600_000_000);
    header
}

#[test]
fn whiteouts_of_dot_and_dot_dot_are_refused_before_anything_is_deleted() {
    require_root();
    for bad_name in ["dir/.wh..", "dir/sub/.wh..."] {
        let scratch = scratch_dir("unpack-dot-whiteout");
        let dest = scratch.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append_data(&mut header(tar::EntryType::Directory, 0), "dir/", &[][..]).unwrap();
        builder.append_data(&mut header(tar::EntryType::Directory, 0), "dir/sub/", &[][..]).unwrap();
        builder.append_data(&mut header(tar::EntryType::Regular, 4), "dir/keep", &b"kept"[..]).unwrap();
        builder.append_data(&mut header(tar::EntryType::Regular, 4), "dir/sub/keep", &b"kept"[..]).unwrap();
        builder.append_data(&mut header(tar::EntryType::Regular, 0), bad_name, &[][..]).unwrap();
        let layer = scratch.path().join("layer.tar");
        fs::write(&layer, builder.into_inner().unwrap()).unwrap();
        let error = unpack_file(&layer, &dest).unwrap_err();
        assert!(matches!(error, UnpackError::InvalidWhiteout { .. }), "{bad_name}: {error}");
        assert!(error.to_string().contains("do not use this image"), "{error}");
        assert_eq!(fs::read(dest.join("dir/keep")).unwrap(), b"kept", "{bad_name}");
        assert_eq!(fs::read(dest.join("dir/sub/keep")).unwrap(), b"kept", "{bad_name}");
    }
}

/// A 3 MiB file that is mostly hole, with data at its start, middle and end.
fn make_sparse_file(path: &Path) -> Vec<u8> {
    let mut content = vec![0u8; 3 << 20];
    content[..5].copy_from_slice(b"start");
    content[(1 << 20) + 7..(1 << 20) + 13].copy_from_slice(b"middle");
    let end = content.len() - 3;
    content[end..].copy_from_slice(b"end");
    let file = fs::File::create(path).unwrap();
    file.set_len(content.len() as u64).unwrap();
    use std::os::unix::fs::FileExt;
    for (offset, piece) in [(0usize, &b"start"[..]), ((1 << 20) + 7, &b"middle"[..]), (end, &b"end"[..])] {
        file.write_all_at(piece, offset as u64).unwrap();
    }
    content
}

fn gnu_tar(scratch: &Path, format_args: &[&str]) -> std::path::PathBuf {
    let layer = scratch.join("layer.tar");
    let status = Command::new("tar")
        .args(format_args)
        .arg("-cf")
        .arg(&layer)
        .arg("-C")
        .arg(scratch.join("src"))
        .arg("sparse.bin")
        .status()
        .expect("GNU tar is installed (it is part of the base system)");
    assert!(status.success());
    layer
}

#[test]
fn gnu_sparse_files_unpack_with_their_holes_as_zeros() {
    require_root();
    let scratch = scratch_dir("unpack-gnu-sparse");
    fs::create_dir(scratch.path().join("src")).unwrap();
    let content = make_sparse_file(&scratch.path().join("src/sparse.bin"));
    let layer = gnu_tar(scratch.path(), &["--sparse", "--format=gnu"]);
    // The archive really holds a GNU sparse entry (type 'S').
    let mut archive = tar::Archive::new(fs::File::open(&layer).unwrap());
    let types: Vec<tar::EntryType> =
        archive.entries().unwrap().map(|entry| entry.unwrap().header().entry_type()).collect();
    assert!(types.iter().any(tar::EntryType::is_gnu_sparse), "{types:?}");

    let dest = scratch.path().join("dest");
    fs::create_dir(&dest).unwrap();
    unpack_file(&layer, &dest).unwrap();
    let unpacked = fs::read(dest.join("sparse.bin")).expect("the sparse file is unpacked, not dropped");
    assert!(unpacked == content, "unpacked {} bytes, differing from the original", unpacked.len());
}

#[test]
fn pax_sparse_files_are_refused_not_unpacked_as_a_directory() {
    require_root();
    for version in ["0.0", "0.1", "1.0"] {
        let scratch = scratch_dir("unpack-pax-sparse");
        fs::create_dir(scratch.path().join("src")).unwrap();
        make_sparse_file(&scratch.path().join("src/sparse.bin"));
        let layer = gnu_tar(scratch.path(), &["--sparse", "--format=pax", &format!("--sparse-version={version}")]);
        let dest = scratch.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let error = unpack_file(&layer, &dest).unwrap_err();
        assert!(matches!(error, UnpackError::Unsupported { .. }), "version {version}: {error}");
        assert!(error.to_string().contains("PAX sparse"), "{error}");
        let leftovers: Vec<_> = fs::read_dir(&dest).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert!(leftovers.is_empty(), "version {version}: {leftovers:?}");
    }
}

/// A layer of `depth` directories nested in one another, each with one file, as `d/d/d/…`.
fn nested_layer(depth: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut path = String::new();
    for level in 0..depth {
        path.push_str("d/");
        let mut dir_header = header(tar::EntryType::Directory, 0);
        dir_header.set_mtime(1_600_000_000 + level as u64);
        builder.append_data(&mut dir_header, &path, &[][..]).unwrap();
        builder.append_data(&mut header(tar::EntryType::Regular, 1), format!("{path}f"), &b"x"[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn thousands_of_nested_directories_unpack_with_every_time_set() {
    require_root();
    let scratch = scratch_dir("unpack-deep");
    let layer = scratch.path().join("layer.tar");
    let depth = 2000;
    fs::write(&layer, nested_layer(depth)).unwrap();
    let dest = scratch.path().join("dest");
    fs::create_dir(&dest).unwrap();
    unpack_file(&layer, &dest).unwrap();
    // Walk down by relative steps (the full path is longer than PATH_MAX).
    let mut level = 0;
    let mut dir = fs::File::open(&dest).unwrap();
    loop {
        let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir));
        let Ok(next) = fs::File::open(Path::new(&proc_path).join("d")) else { break };
        let metadata = next.metadata().unwrap();
        assert_eq!(metadata.mtime(), 1_600_000_000 + level, "directory at level {level}");
        assert_eq!(
            fs::read(Path::new(&format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&next))).join("f"))
                .unwrap(),
            b"x"
        );
        dir = next;
        level += 1;
    }
    assert_eq!(level, depth as i64);
}
