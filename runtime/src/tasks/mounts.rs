//! A container's storage on the host: bind sources checked and resolved at create, volume
//! directories made and seeded from the image at first use, and the spec's mounts built from the
//! container's `MountRecord`s at task create.
//!
//! Bind sources: berth **resolves** every symlink at create and records the resolved path (so
//! `inspect` shows what is really mounted), refuses a path that is or lies inside berth's root,
//! state directory or log, and at each task create checks that the recorded path still
//! resolves to itself — a symlink swapped in later makes the start fail instead of mounting
//! something else.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{chown, lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_projections::{ContainerRecord, MountRecord, MOUNT_KIND_BIND, MOUNT_KIND_TMPFS, MOUNT_KIND_VOLUME};
use oci_spec::runtime::{Mount, MountBuilder};

use crate::daemon::layout::Layout;
use crate::images::content::ContentStore;
use crate::sys::fs::{create_private_dir_all, CONTAINER_ROOT_DIR_MODE};
use crate::tasks::spec::open_in_root;

/// What can go wrong with a container's mounts.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("bind source {given:?} is not absolute: give the full host path, such as /srv/data")]
    RelativeSource { given: String },
    #[error("bind source {given:?} does not exist ({source}): create it first")]
    MissingSource {
        given: String,
        #[source]
        source: io::Error,
    },
    #[error("bind source {given:?} resolves to {resolved}, which is berth's own {what}: mount another directory")]
    BerthOwnPath { given: String, resolved: PathBuf, what: &'static str },
    #[error("bind source {given:?} resolves to a path that is not UTF-8: use another path")]
    NotUtf8 { given: String },
    #[error(
        "bind source {recorded:?} now resolves to {now} (a symlink appeared since the container was created): recreate the container"
    )]
    SourceChanged { recorded: String, now: String },
    #[error("cannot {action} volume {name:?} at {path}: {source}; check the file system under berth's root")]
    Volume {
        action: &'static str,
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the runtime spec's mount for {destination:?} is invalid ({reason}); this is a bug in berth")]
    InvalidMount { destination: String, reason: String },
}

/// The host path a bind source names, every symlink resolved; refused when missing or when it
/// is (or is inside) berth's root, state directory or log directory.
pub fn resolve_bind_source(given: &str, layout: &Layout) -> Result<String, MountError> {
    if !given.starts_with('/') {
        return Err(MountError::RelativeSource { given: given.to_string() });
    }
    let resolved =
        fs::canonicalize(given).map_err(|source| MountError::MissingSource { given: given.into(), source })?;
    let own_paths = [(&layout.root, "root directory"), (&layout.state, "state directory")];
    let log_dir = layout.log_dir();
    for (own_path, what) in own_paths.into_iter().chain([(&log_dir, "event log")]) {
        let own_resolved = fs::canonicalize(own_path).unwrap_or_else(|_| own_path.clone());
        if resolved.starts_with(&own_resolved) {
            return Err(MountError::BerthOwnPath { given: given.to_string(), resolved, what });
        }
    }
    resolved.into_os_string().into_string().map_err(|_| MountError::NotUtf8 { given: given.to_string() })
}

/// The `Volumes` of an image's config (`VOLUME` in a Dockerfile), sorted; none when the config
/// cannot be read (the image is still usable, only without its anonymous volumes).
pub fn image_volume_paths(content: &ContentStore, config_digest: &str) -> Vec<String> {
    let config = match content.read_all(config_digest) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(config_digest, %error, "cannot read the image config for its VOLUMEs");
            return Vec::new();
        }
    };
    match serde_json::from_slice::<oci_spec::image::ImageConfiguration>(&config) {
        Ok(parsed) => {
            let mut paths: Vec<String> =
                parsed.config().as_ref().and_then(|config| config.volumes().clone()).unwrap_or_default();
            paths.sort();
            paths
        }
        Err(error) => {
            tracing::warn!(config_digest, %error, "cannot parse the image config for its VOLUMEs");
            Vec::new()
        }
    }
}

/// The spec mounts for a container's `MountRecord`s, in order: volumes made (and seeded from
/// the image at `rootfs`) when first used, bind sources checked to still resolve to themselves.
pub fn container_mounts(
    layout: &Layout,
    namespace: &str,
    record: &ContainerRecord,
    rootfs: &Path,
) -> Result<Vec<Mount>, MountError> {
    let mut mounts = Vec::with_capacity(record.mounts.len());
    for mount in &record.mounts {
        let built = match mount.kind.as_str() {
            MOUNT_KIND_BIND => {
                let now = fs::canonicalize(&mount.source)
                    .map_err(|source| MountError::MissingSource { given: mount.source.clone(), source })?;
                if now != Path::new(&mount.source) {
                    return Err(MountError::SourceChanged {
                        recorded: mount.source.clone(),
                        now: now.display().to_string(),
                    });
                }
                bind_mount(mount, Path::new(&mount.source))?
            }
            MOUNT_KIND_VOLUME => {
                let data_dir = prepare_volume(layout, namespace, &mount.source, rootfs, &mount.destination)?;
                bind_mount(mount, &data_dir)?
            }
            MOUNT_KIND_TMPFS => {
                let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                options.extend(mount.options.iter().cloned());
                if mount.read_only {
                    options.push("ro".to_string());
                }
                build_mount(&mount.destination, "tmpfs", Path::new("tmpfs"), options)?
            }
            // Commands refuse any other kind at create.
            other => {
                return Err(MountError::InvalidMount {
                    destination: mount.destination.clone(),
                    reason: format!("unknown kind {other:?}"),
                })
            }
        };
        mounts.push(built);
    }
    Ok(mounts)
}

fn bind_mount(mount: &MountRecord, source: &Path) -> Result<Mount, MountError> {
    // rprivate: nothing the container mounts under it propagates back to the host.
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if mount.read_only {
        options.push("ro".to_string());
    }
    build_mount(&mount.destination, "bind", source, options)
}

fn build_mount(destination: &str, mount_type: &str, source: &Path, options: Vec<String>) -> Result<Mount, MountError> {
    MountBuilder::default()
        .destination(destination)
        .typ(mount_type)
        .source(source)
        .options(options)
        .build()
        .map_err(|error| MountError::InvalidMount { destination: destination.to_string(), reason: error.to_string() })
}

/// The volume's data directory, made on first use: its parents 0700 like everything under the
/// root, the directory itself with the owner and mode of the image's directory at the mount
/// point (root, 0755 when the image has none), and the image's content copied in — as docker
/// seeds a new volume. The copy is made beside it and renamed into place, so a crash midway
/// leaves no half-seeded volume.
pub fn prepare_volume(
    layout: &Layout,
    namespace: &str,
    name: &str,
    rootfs: &Path,
    destination: &str,
) -> Result<PathBuf, MountError> {
    let volume_dir = layout.volume_dir(namespace, name);
    let data_dir = volume_dir.join("data");
    if data_dir.is_dir() {
        return Ok(data_dir);
    }
    let volume_error = |action: &'static str, path: &Path| {
        let name = name.to_string();
        let path = path.to_path_buf();
        move |source: io::Error| MountError::Volume { action, name, path, source }
    };
    create_private_dir_all(&volume_dir).map_err(volume_error("create", &volume_dir))?;
    let seeding_dir = volume_dir.join("data.seeding");
    if seeding_dir.exists() {
        fs::remove_dir_all(&seeding_dir).map_err(volume_error("clear", &seeding_dir))?;
    }
    fs::create_dir(&seeding_dir).map_err(volume_error("create", &seeding_dir))?;
    let image_dir = open_in_root(rootfs, destination.trim_start_matches('/')).ok().flatten();
    match image_dir.filter(|file| file.metadata().is_ok_and(|metadata| metadata.is_dir())) {
        Some(image_dir) => {
            // The opened directory, reached through /proc without walking the rootfs again.
            let image_path = PathBuf::from(format!("/proc/self/fd/{}", image_dir.as_raw_fd()));
            copy_tree(&image_path, &seeding_dir).map_err(volume_error("seed", &seeding_dir))?;
            copy_owner_and_mode(&image_path, &seeding_dir).map_err(volume_error("seed", &seeding_dir))?;
        }
        None => {
            fs::set_permissions(&seeding_dir, fs::Permissions::from_mode(CONTAINER_ROOT_DIR_MODE))
                .map_err(volume_error("set the mode of", &seeding_dir))?;
        }
    }
    fs::rename(&seeding_dir, &data_dir).map_err(volume_error("rename", &data_dir))?;
    crate::sys::fs::sync_dir(&volume_dir).map_err(volume_error("sync", &volume_dir))?;
    Ok(data_dir)
}

/// Copies a directory's entries: directories, regular files and symlinks with their owners and
/// modes (hard links become copies; devices, sockets and FIFOs are left out). Symlinks are
/// copied as links, never followed.
fn copy_tree(source: &Path, target: &Path) -> io::Result<()> {
    for entry in fs::read_dir(source)? {
        let entry = entry?;
        let source_path = entry.path();
        let target_path = target.join(entry.file_name());
        let metadata = fs::symlink_metadata(&source_path)?;
        let file_type = metadata.file_type();
        if file_type.is_dir() {
            fs::create_dir(&target_path)?;
            copy_tree(&source_path, &target_path)?;
            copy_owner_and_mode(&source_path, &target_path)?;
        } else if file_type.is_file() {
            fs::copy(&source_path, &target_path)?;
            copy_owner_and_mode(&source_path, &target_path)?;
        } else if file_type.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source_path)?, &target_path)?;
            lchown(&target_path, Some(metadata.uid()), Some(metadata.gid()))?;
        }
    }
    Ok(())
}

fn copy_owner_and_mode(source: &Path, target: &Path) -> io::Result<()> {
    let metadata = fs::metadata(source)?;
    // Owner first: chown clears setuid and setgid bits, which the mode then puts back.
    chown(target, Some(metadata.uid()), Some(metadata.gid()))?;
    fs::set_permissions(target, fs::Permissions::from_mode(metadata.mode() & 0o7777))
}

/// Removes a volume's directory once its removal is recorded.
pub fn remove_volume_dir(layout: &Layout, namespace: &str, name: &str) -> io::Result<()> {
    match fs::remove_dir_all(layout.volume_dir(namespace, name)) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
