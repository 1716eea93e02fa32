//! Small real file systems for tests of what happens when one fills up.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Mounts a tmpfs of `size_kib` at `dir/name` (a `Daemon`'s clean-up unmounts what is under its
/// directory).
pub fn mount_small_tmpfs(dir: &Path, name: &str, size_kib: u64) -> PathBuf {
    let mount_point = dir.join(name);
    std::fs::create_dir(&mount_point).expect("create the mount point");
    nix::mount::mount(
        Some("tmpfs"),
        &mount_point,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(format!("size={size_kib}k,mode=0700").as_str()),
    )
    .expect("mount a small tmpfs");
    mount_point
}

/// Writes a file until the file system says it is full; returns its path.
pub fn fill_up(mount_point: &Path) -> PathBuf {
    let path = mount_point.join("filler");
    let mut file = std::fs::File::create(&path).expect("create the filler");
    let chunk = vec![0xa5u8; 4096];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(error) => panic!("filling the tmpfs: {error}"),
        }
    }
    // What is left over is smaller than a page: not even a segment header fits in a new file.
    let _ = file.sync_all();
    path
}
