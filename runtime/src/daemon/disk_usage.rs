//! `system df`, the observing side: what berth keeps under its root, measured on disk
//! (`sys::disk_usage`, which never follows a symlink out of a tree nor enters another file
//! system), beside what the projections say nothing references. Every path measured comes from
//! [`Layout`] and names validated by digest, so nothing outside the root is read.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use berth_commands::references::{dangling, references, Excluded};
use berth_projections::{Event, State};

use crate::daemon::layout::Layout;
use crate::images::digest::digest_hex;
use crate::sys::disk_usage::{child_names, measure_tree, DiskUsage};

/// One line of `system df`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiskUsageLine {
    pub kind: &'static str,
    pub path: PathBuf,
    pub count: u64,
    pub disk_bytes: u64,
    pub reclaimable_count: u64,
    pub reclaimable_disk_bytes: u64,
}

/// What the projections say about the disk, taken under the state lock and measured after it
/// is released (a walk of a big writable layer must not hold up the command thread).
#[derive(Debug, Default)]
pub struct ReferencedView {
    dangling_digests: Vec<String>,
    dangling_chain_ids: Vec<String>,
    /// `(namespace, id)` of containers without a live task: `berth rm` would free their layer.
    idle_containers: HashSet<(String, String)>,
}

impl ReferencedView {
    pub fn of(state: &State) -> ReferencedView {
        let mut view = ReferencedView::default();
        for event in dangling(state, &references(state, Excluded::Nothing)) {
            match event {
                Event::ContentRemoved { digest } => view.dangling_digests.push(digest),
                Event::SnapshotRemoved { chain_id } => view.dangling_chain_ids.push(chain_id),
                _ => {}
            }
        }
        view.idle_containers = state
            .containers()
            .filter(|(_, container)| !container.task.as_ref().is_some_and(|task| task.is_live()))
            .map(|(namespace, container)| (namespace.to_string(), container.record.id.clone()))
            .collect();
        view
    }
}

/// Measures content, layer snapshots, writable layers and the log.
pub fn measure(layout: &Layout, view: &ReferencedView) -> std::io::Result<Vec<DiskUsageLine>> {
    let mut seen = HashSet::new();
    let content_dir = layout.content_dir();
    let blobs_dir = content_dir.join("blobs").join("sha256");
    let mut content = DiskUsageLine { kind: "content", path: content_dir.clone(), ..Default::default() };
    content.disk_bytes = measure_tree(&content_dir, &mut seen)?.disk_bytes;
    content.count = child_names(&blobs_dir)?.len() as u64;
    for digest in &view.dangling_digests {
        let Ok(hex_part) = digest_hex(digest) else { continue };
        add_reclaimable(&mut content, &blobs_dir.join(hex_part))?;
    }

    let committed_dir = layout.snapshots_dir().join("committed");
    let mut snapshots = DiskUsageLine { kind: "snapshots", path: committed_dir.clone(), ..Default::default() };
    snapshots.disk_bytes = measure_tree(&committed_dir, &mut seen)?.disk_bytes;
    snapshots.count = child_names(&committed_dir)?.len() as u64;
    for chain_id in &view.dangling_chain_ids {
        let Ok(hex_part) = digest_hex(chain_id) else { continue };
        add_reclaimable(&mut snapshots, &committed_dir.join(hex_part))?;
    }

    let active_dir = layout.snapshots_dir().join("active");
    let mut writable = DiskUsageLine { kind: "writable layers", path: active_dir.clone(), ..Default::default() };
    writable.disk_bytes = measure_tree(&active_dir, &mut seen)?.disk_bytes;
    for namespace in child_names(&active_dir)? {
        for key in child_names(&active_dir.join(&namespace))? {
            writable.count += 1;
            let owner = (namespace.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
            if view.idle_containers.contains(&owner) {
                add_reclaimable_counted(&mut writable, &active_dir.join(&namespace).join(&key))?;
            }
        }
    }

    let log_dir = layout.log_dir();
    let mut log = DiskUsageLine { kind: "log", path: log_dir.clone(), ..Default::default() };
    log.disk_bytes = measure_tree(&log_dir, &mut seen)?.disk_bytes;
    log.count = child_names(&log_dir)?.len() as u64;
    Ok(vec![content, snapshots, writable, log])
}

fn add_reclaimable(line: &mut DiskUsageLine, path: &Path) -> std::io::Result<()> {
    let usage = measure_on_its_own(path)?;
    if usage.n_entries > 0 {
        line.reclaimable_count += 1;
        line.reclaimable_disk_bytes += usage.disk_bytes;
    }
    Ok(())
}

fn add_reclaimable_counted(line: &mut DiskUsageLine, path: &Path) -> std::io::Result<()> {
    line.reclaimable_count += 1;
    line.reclaimable_disk_bytes += measure_on_its_own(path)?.disk_bytes;
    Ok(())
}

/// A blob is a file, a snapshot a directory: both measured without following a link.
fn measure_on_its_own(path: &Path) -> std::io::Result<DiskUsage> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_file() => {
            use std::os::unix::fs::MetadataExt;
            Ok(DiskUsage { disk_bytes: metadata.blocks() * 512, n_entries: 1 })
        }
        Ok(metadata) if metadata.is_dir() => measure_tree(path, &mut HashSet::new()),
        Ok(_) => Ok(DiskUsage::default()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(DiskUsage::default()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use berth_log::{Seq, Timestamp};
    use berth_projections::{Envelope, Origin};

    use super::*;

    fn digest(fill: char) -> String {
        format!("sha256:{}", fill.to_string().repeat(64))
    }

    #[test]
    fn dangling_blobs_and_layers_are_reclaimable_and_every_line_is_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            root: dir.path().join("root"),
            state: dir.path().join("state"),
            cgroup_parent: "/berth".into(),
            log: None,
        };
        let blobs_dir = layout.content_dir().join("blobs/sha256");
        std::fs::create_dir_all(&blobs_dir).unwrap();
        std::fs::write(blobs_dir.join(digest_hex(&digest('a')).unwrap()), vec![1_u8; 10_000]).unwrap();
        std::fs::write(blobs_dir.join(digest_hex(&digest('b')).unwrap()), vec![1_u8; 20_000]).unwrap();
        let layer_dir = layout.snapshots_dir().join("committed").join(digest_hex(&digest('c')).unwrap()).join("fs");
        std::fs::create_dir_all(&layer_dir).unwrap();
        std::fs::write(layer_dir.join("file"), vec![1_u8; 30_000]).unwrap();

        // Blob a and layer c are recorded and named by nothing; blob b is an image's config.
        let image = berth_projections::ImageRecord {
            name: "i:1".into(),
            config: berth_projections::Descriptor { digest: digest('b'), ..Default::default() },
            ..Default::default()
        };
        let events = vec![
            Event::NamespaceCreated { name: "ns".into(), labels: Default::default() },
            Event::ContentAdded { digest: digest('a'), size: 10_000, media_type: "m".into() },
            Event::ContentAdded { digest: digest('b'), size: 20_000, media_type: "m".into() },
            Event::SnapshotCommitted { chain_id: digest('c'), parent: None, diff_id: digest('c') },
            Event::ImageCreated { image },
        ];
        let mut state = State::new();
        let origin = Origin::Daemon { reason: "test".into(), answers: None };
        state.apply(Seq(1), Timestamp::UNIX_EPOCH, &Envelope::new("ns", origin, events));

        let lines = measure(&layout, &ReferencedView::of(&state)).unwrap();
        let kinds: Vec<&str> = lines.iter().map(|line| line.kind).collect();
        assert_eq!(kinds, ["content", "snapshots", "writable layers", "log"]);
        assert!(lines.iter().all(|line| line.path.starts_with(&layout.root)));
        let (content, snapshots) = (&lines[0], &lines[1]);
        assert_eq!((content.count, content.reclaimable_count), (2, 1));
        assert!((10_000..20_000).contains(&content.reclaimable_disk_bytes), "{content:?}");
        assert_eq!((snapshots.count, snapshots.reclaimable_count), (1, 1));
        assert!(snapshots.reclaimable_disk_bytes >= 30_000, "{snapshots:?}");
        assert_eq!(
            snapshots.reclaimable_disk_bytes,
            snapshots.disk_bytes - {
                let committed = std::fs::metadata(layout.snapshots_dir().join("committed")).unwrap();
                std::os::unix::fs::MetadataExt::blocks(&committed) * 512
            }
        );
    }
}
