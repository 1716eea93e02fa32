//! How unpacking scales with nesting depth: a layer of N directories nested in one another
//! (`d/d/d/…`, one small file in each), unpacked into a scratch directory on /var/tmp. Prints
//! the time and the peak resident memory. `cargo bench -p berth-runtime --bench unpack_depth
//! -- [N ...]` (default 1000 2000 5000); run as root (the unpacker sets owners).

use std::time::Instant;

use berth_runtime::images::unpack::unpack_layer;

fn nested_layer(depth: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut path = String::new();
    for level in 0..depth {
        path.push_str("d/");
        let entries = [
            (tar::EntryType::Directory, path.clone(), &[][..]),
            (tar::EntryType::Regular, format!("{path}f"), &b"x"[..]),
        ];
        for (entry_type, name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(entry_type);
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_600_000_000 + level as u64);
            builder.append_data(&mut header, name, data).unwrap();
        }
    }
    builder.into_inner().unwrap()
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    let depths: Vec<usize> = std::env::args().skip(1).filter_map(|arg| arg.parse().ok()).collect();
    let depths = if depths.is_empty() { vec![1000, 2000, 5000] } else { depths };
    for depth in depths {
        let scratch = tempfile::Builder::new().prefix("berth-unpack-depth-").tempdir_in("/var/tmp").unwrap();
        let layer = scratch.path().join("layer.tar");
        std::fs::write(&layer, nested_layer(depth)).unwrap();
        let dest = scratch.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        // Reset the peak so each depth reports its own.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let started = Instant::now();
        unpack_layer(&layer, "application/vnd.oci.image.layer.v1.tar", &dest).unwrap();
        let elapsed = started.elapsed();
        println!(
            "depth {depth}: layer {} KiB, unpacked in {:.2} s, peak RSS {} MiB",
            std::fs::metadata(&layer).unwrap().len() / 1024,
            elapsed.as_secs_f64(),
            peak_rss_kib() / 1024
        );
        std::fs::remove_dir_all(&dest).unwrap();
    }
}
