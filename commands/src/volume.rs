//! CreateVolume and RemoveVolume, and what a container's mounts add to its create record:
//! volumes named by a mount that do not exist yet, and an anonymous volume for each `VOLUME`
//! of the image that no mount covers.

use std::collections::BTreeMap;

use berth_projections::{
    Event, MountRecord, State, VolumeRecord, MOUNT_KIND_BIND, MOUNT_KIND_TMPFS, MOUNT_KIND_VOLUME,
};

use crate::namespace::ensure_namespace;
use crate::validate::shown;
use crate::{validate, CommandError};

/// At most this many mounts per container: each is a line of config.json and a mount call.
pub const MAX_MOUNTS: usize = 128;
/// A mount path, like any path the kernel takes (PATH_MAX).
pub const MAX_MOUNT_PATH_BYTES: usize = 4096;

pub struct CreateVolume {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl CreateVolume {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        validate::volume_name(&self.name)?;
        validate::labels(&self.labels)?;
        let mut events = Vec::new();
        ensure_namespace(state, namespace, &mut events)?;
        if state.volume(namespace, &self.name).is_some() {
            return Err(CommandError::AlreadyExists(format!(
                "volume {:?} already exists in namespace {namespace:?}: use it, or remove it first with `berth volume rm {}`",
                self.name, self.name
            )));
        }
        let volume = VolumeRecord { name: self.name.clone(), labels: self.labels.clone(), anonymous_for: None };
        events.push(Event::VolumeCreated { volume });
        Ok(events)
    }
}

pub struct RemoveVolume {
    pub name: String,
}

impl RemoveVolume {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        if state.volume(namespace, &self.name).is_none() {
            return Err(CommandError::NotFound(format!(
                "volume {} not found in namespace {namespace:?}: `berth volume ls` lists them",
                shown(&self.name)
            )));
        }
        let users = state.volume_users(namespace, &self.name);
        if !users.is_empty() {
            return Err(CommandError::FailedPrecondition(format!(
                "volume {:?} is used by container(s) {}: remove them first (`berth rm {}`)",
                self.name,
                users.join(", "),
                users.join(" ")
            )));
        }
        Ok(vec![Event::VolumeRemoved { name: self.name.clone() }])
    }
}

/// The events a container's mounts need besides `ContainerCreated`, and the mounts completed
/// with one anonymous volume per image `VOLUME` path no mount covers (named
/// `<container>-volume-<n>`, the first free n).
pub(crate) fn plan_container_volumes(
    state: &State,
    namespace: &str,
    container_id: &str,
    requested: &[MountRecord],
    image_volumes: &[String],
) -> Result<(Vec<MountRecord>, Vec<Event>), CommandError> {
    let mut mounts = requested.to_vec();
    for mount in &mounts {
        check_mount(mount)?;
    }
    for image_volume in image_volumes {
        let destination = clean_destination(image_volume);
        if !destination.starts_with('/')
            || mounts.iter().any(|mount| clean_destination(&mount.destination) == destination)
        {
            continue;
        }
        mounts.push(MountRecord {
            kind: MOUNT_KIND_VOLUME.to_string(),
            source: String::new(),
            destination,
            read_only: false,
            options: Vec::new(),
        });
    }
    if mounts.len() > MAX_MOUNTS {
        return Err(CommandError::InvalidArgument(format!(
            "{} mounts asked for (the image's VOLUMEs included): at most {MAX_MOUNTS} are allowed",
            mounts.len()
        )));
    }
    for (index, mount) in mounts.iter().enumerate() {
        let destination = clean_destination(&mount.destination);
        if mounts[..index].iter().any(|earlier| clean_destination(&earlier.destination) == destination) {
            return Err(CommandError::InvalidArgument(format!(
                "two mounts have the destination {}: give each container path one mount",
                shown(&destination)
            )));
        }
    }
    let mut events = Vec::new();
    let mut n_anonymous = 0usize;
    for mount in mounts.iter_mut().filter(|mount| mount.kind == MOUNT_KIND_VOLUME) {
        if mount.source.is_empty() {
            let name = loop {
                let candidate = format!("{container_id}-volume-{n_anonymous}");
                n_anonymous += 1;
                if state.volume(namespace, &candidate).is_none() {
                    break candidate;
                }
            };
            mount.source = name.clone();
            let volume = VolumeRecord { name, labels: BTreeMap::new(), anonymous_for: Some(container_id.to_string()) };
            events.push(Event::VolumeCreated { volume });
        } else if state.volume(namespace, &mount.source).is_none()
            && !events
                .iter()
                .any(|event| matches!(event, Event::VolumeCreated { volume } if volume.name == mount.source))
        {
            // As docker does: naming a volume that does not exist creates it.
            let volume = VolumeRecord { name: mount.source.clone(), labels: BTreeMap::new(), anonymous_for: None };
            events.push(Event::VolumeCreated { volume });
        }
    }
    Ok((mounts, events))
}

/// The anonymous volumes of a container that go with it (`rm -v`, `--rm`): those made for it
/// and used by no other container.
pub(crate) fn anonymous_volumes_removed_with(state: &State, namespace: &str, container_id: &str) -> Vec<Event> {
    let Some(namespace_state) = state.namespace(namespace) else { return Vec::new() };
    namespace_state
        .volumes
        .values()
        .filter(|volume| volume.record.anonymous_for.as_deref() == Some(container_id))
        .filter(|volume| state.volume_users(namespace, &volume.record.name).iter().all(|user| user == container_id))
        .map(|volume| Event::VolumeRemoved { name: volume.record.name.clone() })
        .collect()
}

/// `/a/b/` and `/a//b` are the same mount point as `/a/b`.
fn clean_destination(path: &str) -> String {
    let components: Vec<&str> =
        path.split('/').filter(|component| !component.is_empty() && *component != ".").collect();
    if path.starts_with('/') {
        format!("/{}", components.join("/"))
    } else {
        components.join("/")
    }
}

fn check_mount(mount: &MountRecord) -> Result<(), CommandError> {
    let destination = &mount.destination;
    if !destination.starts_with('/')
        || destination.len() > MAX_MOUNT_PATH_BYTES
        || destination.contains('\0')
        || destination.split('/').any(|component| component == "..")
        || clean_destination(destination) == "/"
    {
        return Err(CommandError::InvalidArgument(format!(
            "mount destination {} is not usable: give an absolute path inside the container, not `/`, without `..`",
            shown(destination)
        )));
    }
    match mount.kind.as_str() {
        MOUNT_KIND_BIND => {
            if !mount.source.starts_with('/')
                || mount.source.len() > MAX_MOUNT_PATH_BYTES
                || mount.source.contains('\0')
            {
                return Err(CommandError::InvalidArgument(format!(
                    "bind source {} is not an absolute host path: give one such as /srv/data",
                    shown(&mount.source)
                )));
            }
        }
        MOUNT_KIND_VOLUME => {
            if !mount.source.is_empty() {
                validate::volume_name(&mount.source)?;
            }
        }
        MOUNT_KIND_TMPFS => {
            if !mount.source.is_empty() {
                return Err(CommandError::InvalidArgument(format!(
                    "a tmpfs mount takes no source (got {}): drop `src=`",
                    shown(&mount.source)
                )));
            }
        }
        other => {
            return Err(CommandError::InvalidArgument(format!(
                "unknown mount type {}: use bind, volume or tmpfs",
                shown(other)
            )))
        }
    }
    for option in &mount.options {
        let allowed = !option.is_empty()
            && option.len() <= 256
            && option.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | '_' | '-' | '.' | '%'));
        if mount.kind != MOUNT_KIND_TMPFS || !allowed {
            return Err(CommandError::InvalidArgument(format!(
                "mount option {} is not allowed here: only tmpfs takes options, such as size=64m or mode=1777",
                shown(option)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_compare_cleaned() {
        assert_eq!(clean_destination("/a//b/"), "/a/b");
        assert_eq!(clean_destination("/a/./b"), "/a/b");
        assert_eq!(clean_destination("/"), "/");
    }
}
