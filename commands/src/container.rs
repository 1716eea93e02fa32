//! CreateContainer, UpdateContainer and DeleteContainer (which records the layer snapshots it frees).

use std::collections::BTreeMap;

use berth_projections::{ContainerRecord, Event, MountRecord, ResourceLimits, RestartMode, Sealer, State};

use crate::namespace::ensure_namespace;
use crate::policy::{HostFacts, LimitsRequest, PolicyRequest};
use crate::{validate, CommandError};

pub struct CreateContainer {
    pub id: String,
    pub image: String,
    /// Replaces the image's Cmd (and with `entrypoint`, its Entrypoint).
    pub args: Vec<String>,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    /// `-i`: keep stdin open for a client to write to.
    pub open_stdin: bool,
    /// `-t`: give the process a pseudo-terminal.
    pub tty: bool,
    /// Limits, restart policy and security options as the client spelled them (boxed: they are
    /// most of a `Command`'s size).
    pub policies: Box<PolicyRequest>,
    /// What berthd observed of the host, for the limits that depend on it.
    pub host: HostFacts,
    /// Bind sources already resolved by the runtime (it alone may look at the host).
    pub mounts: Vec<MountRecord>,
    /// The image config's `Volumes` paths: each not covered by `mounts` gets an anonymous volume.
    pub image_volumes: Vec<String>,
    pub read_only_rootfs: bool,
    pub auto_remove: bool,
    /// The container's key and a random seed, read by berthd: every environment value is
    /// recorded sealed. `None`: recorded in clear (`[secrets] seal = false`).
    pub sealer: Option<Sealer>,
    /// `--network`, `-p`, `--dns`, `--add-host` as spelled.
    pub network: crate::network::NetworkRequest,
    /// `berth run`: the task's create and start intents go into the container's own record,
    /// so one request and one fdatasync do what `CreateContainer` then `CreateTask` would.
    pub start_task: bool,
}

impl CreateContainer {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        validate::container_id(&self.id)?;
        for entry in &self.env {
            validate::env_entry(entry)?;
        }
        validate::hostname(&self.hostname)?;
        validate::user(&self.user)?;
        validate::labels(&self.labels)?;
        let policies = self.policies.resolve(&self.host)?;
        if self.auto_remove && policies.restart.mode != RestartMode::No {
            return Err(CommandError::InvalidArgument(
                "--rm and --restart cannot both be given: a container removed at its exit cannot be restarted; drop one"
                    .to_string(),
            ));
        }
        let network = self.network.resolve(state)?;
        let mut events = Vec::new();
        ensure_namespace(state, namespace, &mut events)?;
        if state.container(namespace, &self.id).is_some() {
            return Err(CommandError::AlreadyExists(format!(
                "container {:?} already exists in namespace {namespace:?}: choose another id or remove it with `berth rm {}`",
                self.id, self.id
            )));
        }
        let Some(image) = crate::image::resolve_image(state, namespace, &self.image) else {
            return Err(crate::image::image_not_found(state, namespace, &self.image));
        };
        let image = &image.record;
        let args = merge_process_args(&image.entrypoint, &image.cmd, &self.entrypoint, &self.args);
        if args.is_empty() {
            return Err(CommandError::InvalidArgument(format!(
                "image {:?} has no Entrypoint or Cmd: give the command to run after the image name",
                self.image
            )));
        }
        let working_dir = if !self.working_dir.is_empty() {
            self.working_dir.clone()
        } else if !image.working_dir.is_empty() {
            image.working_dir.clone()
        } else {
            "/".to_string()
        };
        if !working_dir.starts_with('/') {
            return Err(CommandError::InvalidArgument(format!(
                "working directory {working_dir:?} is relative: give an absolute path"
            )));
        }
        let env = merge_env(&image.env, &self.env);
        // The image's own entries too: runc refuses a malformed one at start, in its own words.
        for entry in &env {
            validate::env_entry(entry)?;
        }
        validate::process_strings(&args, &env)?;
        let user = if self.user.is_empty() { image.user.clone() } else { self.user.clone() };
        validate::user(&user)?;
        crate::secrets::check_sealer(state, namespace, &self.id, self.sealer.as_ref())?;
        let (env, sealed_env) = match &self.sealer {
            Some(sealer) => (Vec::new(), sealer.seal_env(&env)),
            None => (env, Vec::new()),
        };
        let (mounts, volume_events) =
            crate::volume::plan_container_volumes(state, namespace, &self.id, &self.mounts, &self.image_volumes)?;
        events.extend(volume_events);
        let record = ContainerRecord {
            id: self.id.clone(),
            image: image.name.clone(),
            image_digest: image.manifest.digest.clone(),
            args,
            env,
            working_dir,
            user,
            hostname: if self.hostname.is_empty() { self.id.chars().take(63).collect() } else { self.hostname.clone() },
            labels: self.labels.clone(),
            lowers: image.chain_ids(),
            snapshot_key: self.id.clone(),
            open_stdin: self.open_stdin,
            tty: self.tty,
            policies: Box::new(policies),
            mounts,
            read_only_rootfs: self.read_only_rootfs,
            auto_remove: self.auto_remove,
            sealed_env,
            network,
        };
        if self.start_task {
            check_lowers(state, &record)?;
        }
        events.push(Event::ContainerCreated { container: record });
        if self.start_task {
            events.extend(create_intents(&self.id, true));
        }
        Ok(events)
    }
}

/// `berth update`: new limits for a container, kept by the record for every later task. berthd
/// applies them to a running task (`runc update`) between [`UpdateContainer::plan`] and
/// recording, so the log never says a limit holds that runc refused.
pub struct UpdateContainer {
    pub id: String,
    pub limits: LimitsRequest,
    pub host: HostFacts,
}

impl UpdateContainer {
    /// The container's limits after this update.
    pub fn plan(&self, state: &State, namespace: &str) -> Result<ResourceLimits, CommandError> {
        let Some(container) = state.container(namespace, &self.id) else {
            return Err(not_found(namespace, &self.id));
        };
        if self.limits.is_empty() {
            return Err(CommandError::InvalidArgument(
                "nothing to update: give at least one limit, e.g. --memory 256m or --cpus 1".to_string(),
            ));
        }
        self.limits.resolve(&container.record.policies.limits, &self.host)
    }

    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let limits = self.plan(state, namespace)?;
        Ok(vec![Event::ContainerUpdated { id: self.id.clone(), limits }])
    }
}

#[derive(Debug, Clone)]
pub struct DeleteContainer {
    pub id: String,
    /// Remove the anonymous volumes made for it too (`rm -v`).
    pub remove_volumes: bool,
}

impl DeleteContainer {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let Some(container) = state.container(namespace, &self.id) else {
            return Err(not_found(namespace, &self.id));
        };
        if let Some(task) = &container.task {
            return Err(CommandError::FailedPrecondition(format!(
                "container {:?} still has a task ({}): delete it first with `berth rm -f {}`",
                self.id,
                task.status.name(),
                self.id
            )));
        }
        self.decide_after_task_deleted(state, namespace)
    }

    /// The removal's events when the record they go into deletes the container's task first
    /// (`RecordOutcome::then_remove`): `state` still shows that task.
    pub(crate) fn decide_after_task_deleted(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        if state.container(namespace, &self.id).is_none() {
            return Err(not_found(namespace, &self.id));
        }
        // The layers it stacked on go with it when nothing else uses them (its image may have
        // been removed while it existed), recorded in the same record.
        let mut events = vec![Event::ContainerDeleted { id: self.id.clone() }];
        events.extend(crate::references::freed_by_container_removal(state, namespace, &self.id));
        if self.remove_volumes {
            events.extend(crate::volume::anonymous_volumes_removed_with(state, namespace, &self.id));
        }
        Ok(events)
    }
}

pub(crate) fn not_found(namespace: &str, id: &str) -> CommandError {
    CommandError::NotFound(format!("container {id:?} not found in namespace {namespace:?}: `berth ps -a` lists them"))
}

/// The default search path, for an image that sets none.
pub const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process arguments, with docker/containerd semantics: an overridden entrypoint discards the
/// image's cmd too (it was written for the image's entrypoint); overridden args replace the cmd
/// and follow the (image or overridden) entrypoint.
pub fn merge_process_args(
    image_entrypoint: &[String],
    image_cmd: &[String],
    entrypoint_override: &[String],
    args_override: &[String],
) -> Vec<String> {
    let (entrypoint, cmd) = if !entrypoint_override.is_empty() {
        (entrypoint_override, args_override)
    } else if !args_override.is_empty() {
        (image_entrypoint, args_override)
    } else {
        (image_entrypoint, image_cmd)
    };
    entrypoint.iter().chain(cmd.iter()).cloned().collect()
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(key, _)| key)
}

/// The environment: the image's, with each override (`KEY=VALUE`, checked by
/// `validate::env_entry` before) replacing the entry of the same key in place or appended when
/// new. PATH is added when absent, since a process without PATH cannot find anything the image
/// installed.
pub fn merge_env(image_env: &[String], overrides: &[String]) -> Vec<String> {
    let mut merged: Vec<String> = image_env.to_vec();
    for override_entry in overrides {
        let key = env_key(override_entry);
        match merged.iter_mut().find(|existing| env_key(existing) == key) {
            Some(existing) => *existing = override_entry.clone(),
            None => merged.push(override_entry.clone()),
        }
    }
    if !merged.iter().any(|entry| env_key(entry) == "PATH") {
        merged.push(DEFAULT_PATH_ENV.to_string());
    }
    merged
}

/// A task needs every layer snapshot its container's image was recorded with.
pub(crate) fn check_lowers(state: &State, record: &ContainerRecord) -> Result<(), CommandError> {
    for lower in &record.lowers {
        if !state.snapshots.contains_key(lower) {
            return Err(CommandError::FailedPrecondition(format!(
                "layer snapshot {lower} of container {:?} is gone: re-import image {:?}",
                record.id, record.image
            )));
        }
    }
    Ok(())
}

/// The intents of a task's create, and of its start with `start`: both in one record, so the
/// executor creates and starts in one runc call.
pub(crate) fn create_intents(container_id: &str, start: bool) -> Vec<Event> {
    let mut events = vec![Event::TaskCreateRequested { container_id: container_id.to_string() }];
    if start {
        events.push(Event::TaskStartRequested { container_id: container_id.to_string() });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_follow_docker_rules() {
        let entry = strings(&["/entry"]);
        let cmd = strings(&["a", "b"]);
        assert_eq!(merge_process_args(&entry, &cmd, &[], &[]), strings(&["/entry", "a", "b"]));
        assert_eq!(merge_process_args(&entry, &cmd, &[], &strings(&["x"])), strings(&["/entry", "x"]));
        assert_eq!(merge_process_args(&entry, &cmd, &strings(&["/e2"]), &[]), strings(&["/e2"]));
        assert_eq!(merge_process_args(&[], &cmd, &[], &[]), strings(&["a", "b"]));
        assert_eq!(merge_process_args(&[], &[], &[], &[]), Vec::<String>::new());
    }

    #[test]
    fn env_overrides_by_key() {
        let image = strings(&["PATH=/bin", "A=1", "B=2"]);
        assert_eq!(merge_env(&image, &strings(&["A=9", "C=3"])), strings(&["PATH=/bin", "A=9", "B=2", "C=3"]));
        assert_eq!(merge_env(&strings(&["A=1"]), &[]), vec!["A=1".to_string(), DEFAULT_PATH_ENV.to_string()]);
        // A bare key is not an override: create refuses it before the environment is merged.
        assert!(crate::validate::env_entry("A").is_err());
        assert_eq!(merge_env(&strings(&["A=1", "B=2"]), &strings(&["B="])), strings(&["A=1", "B=", DEFAULT_PATH_ENV]));
    }
}
