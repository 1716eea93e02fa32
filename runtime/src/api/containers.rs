//! `Containers`: create, get, list, update and delete container records.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_commands::policy::parse_device;
use berth_commands::{
    resolve_image, Command, CreateContainer, DeleteContainer, LimitsRequest, PolicyRequest, SecurityRequest,
    UpdateContainer,
};
use berth_projections::{MountRecord, Sealer, MOUNT_KIND_BIND};
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::convert::{container_message, task_message};
use crate::api::paging::page;
use crate::api::services::{container_not_found, status_from_command_error, Services};
use crate::api::task_delete::delete_task_and_container;
use crate::secrets::keys::KeyStore;
use crate::tasks::mounts::{image_volume_paths, resolve_bind_source};
use crate::tasks::policies;
use crate::tasks::removals_after_delete::ASKING_METHOD;
use crate::tasks::runc::Runc;
use crate::tasks::seccomp;

pub struct ContainersService(pub Arc<Services>);

/// The container's key (made and written durably now if it has none), for sealing its
/// environment values before the create is decided and appended. A key made here for a create
/// that is then refused, or that berthd dies before appending, is deleted by the next start-up.
fn create_sealer(services: &Services, namespace: &str, id: &str) -> Result<Sealer, Status> {
    berth_commands::validate::container_id(id).map_err(status_from_command_error)?;
    let key =
        services.keys.get_or_make(namespace, id).map_err(|error| Status::failed_precondition(error.to_string()))?;
    crate::sys::failpoint("secret-key-written");
    Ok(KeyStore::sealer(key))
}

#[tonic::async_trait]
impl api::containers_server::Containers for ContainersService {
    async fn create(
        &self,
        request: Request<api::CreateContainerRequest>,
    ) -> Result<Response<api::CreateContainerResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Containers/Create")?;
        let message = request.into_inner();
        if message.start_task {
            // runc will move the task into its cgroup in a few ms: start the kernel's wait now.
            crate::tasks::cgroup_warmup::kick();
        }
        let id = message.id.clone();
        let policy_request = policy_request(message.policies.unwrap_or_default());
        check_on_host(&policy_request.security)?;
        // Observe the host here (commands may not): bind sources resolved, the image's VOLUMEs.
        let mut mounts = Vec::with_capacity(message.mounts.len());
        for mount in &message.mounts {
            let source = if mount.r#type == MOUNT_KIND_BIND {
                resolve_bind_source(&mount.source, &self.0.layout)
                    .map_err(|error| Status::invalid_argument(error.to_string()))?
            } else {
                mount.source.clone()
            };
            mounts.push(MountRecord {
                kind: mount.r#type.clone(),
                source,
                destination: mount.destination.clone(),
                read_only: mount.read_only,
                options: mount.options.clone(),
            });
        }
        let image_volumes = {
            let state = self.0.store.state();
            resolve_image(&state, &namespace, &message.image).map(|image| image.record.config.digest.clone())
        }
        .map(|config_digest| image_volume_paths(&self.0.content, &config_digest))
        .unwrap_or_default();
        let command = Command::CreateContainer(CreateContainer {
            id: message.id,
            image: message.image,
            args: message.args,
            entrypoint: message.entrypoint,
            env: message.env,
            working_dir: message.working_dir,
            user: message.user,
            hostname: message.hostname,
            labels: message.labels.into_iter().collect::<BTreeMap<_, _>>(),
            open_stdin: message.open_stdin,
            tty: message.tty,
            policies: Box::new(policy_request),
            host: policies::observe_host(),
            mounts,
            image_volumes,
            read_only_rootfs: message.read_only_rootfs,
            auto_remove: message.auto_remove,
            sealer: Some(create_sealer(&self.0, &namespace, &id)?),
            network: message
                .network
                .map(|network| berth_commands::NetworkRequest {
                    mode: network.mode,
                    ports: network.ports,
                    dns: network.dns,
                    extra_hosts: network.extra_hosts,
                })
                .unwrap_or_default(),
            start_task: message.start_task,
        });
        let seq = self.0.submit(&namespace, origin, command).await?;
        // Once the record is appended the container exists: a wait that fails is said in the
        // answer, not as an error the client would take for a refused create.
        let (task, outcome_seq, task_error) = if message.start_task {
            match self.0.wait_for_outcome(&namespace, &id, seq).await {
                Ok((task, outcome_seq)) => (Some(task_message(&id, &task)), outcome_seq.get(), String::new()),
                Err(status) => (None, 0, status.message().to_string()),
            }
        } else {
            (None, 0, String::new())
        };
        let container = self.0.store.state().container(&namespace, &id).map(container_message);
        Ok(Response::new(api::CreateContainerResponse { container, seq: seq.get(), task, outcome_seq, task_error }))
    }

    async fn get(&self, request: Request<api::GetContainerRequest>) -> Result<Response<api::Container>, Status> {
        let (namespace, _) = self.0.caller(&request, "Containers/Get")?;
        let message = request.into_inner();
        let id = message.id;
        let container = self.0.store.state().container(&namespace, &id).cloned();
        let container = container.ok_or_else(|| container_not_found(&namespace, &id))?;
        if !message.open_sealed_env {
            return Ok(Response::new(container_message(&container)));
        }
        // Only here, for `berth inspect` on root's socket, are sealed values opened.
        let env = self
            .0
            .keys
            .container_environment(&namespace, &container.record)
            .map_err(|error| Status::failed_precondition(error.to_string()))?;
        Ok(Response::new(api::Container { env, ..container_message(&container) }))
    }

    async fn list(
        &self,
        request: Request<api::ListContainersRequest>,
    ) -> Result<Response<api::ListContainersResponse>, Status> {
        let (namespace, _) = self.0.caller(&request, "Containers/List")?;
        let request = request.into_inner();
        let state = self.0.store.state();
        let (containers, next_page_token) = state
            .namespace(&namespace)
            .map(|ns| {
                page(&ns.containers, request.page_size, &request.page_token, |container| {
                    Some(container_message(container))
                })
            })
            .unwrap_or_default();
        Ok(Response::new(api::ListContainersResponse { containers, next_page_token }))
    }

    async fn update(
        &self,
        request: Request<api::UpdateContainerRequest>,
    ) -> Result<Response<api::UpdateContainerResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Containers/Update")?;
        let message = request.into_inner();
        let update = UpdateContainer {
            id: message.id.clone(),
            limits: limits_request(message.limits.unwrap_or_default()),
            host: policies::observe_host(),
        };
        if !update.limits.ulimits.is_empty() {
            return Err(Status::invalid_argument(
                "--ulimit cannot change for a running container (rlimits belong to its processes): recreate it",
            ));
        }
        let (limits, live) = {
            let state = self.0.store.state();
            let limits = update.plan(&state, &namespace).map_err(status_from_command_error)?;
            let live = state
                .container(&namespace, &update.id)
                .and_then(|container| container.task.as_ref())
                .is_some_and(|task| task.is_live());
            (limits, live)
        };
        if live {
            // Applied before it is recorded: the log never says a limit holds that runc refused.
            let runc = Runc::new(self.0.runc_binary.clone(), self.0.layout.runc_root(&namespace));
            runc.update(&update.id, &limits).await.map_err(|error| {
                Status::failed_precondition(format!("runc refused the new limits, nothing was recorded: {error}"))
            })?;
        }
        let seq = self.0.submit(&namespace, origin, Command::UpdateContainer(update)).await?;
        let limits_json = serde_json::to_string(&limits).unwrap_or_default();
        Ok(Response::new(api::UpdateContainerResponse { seq: seq.get(), limits_json }))
    }

    async fn delete(
        &self,
        request: Request<api::DeleteContainerRequest>,
    ) -> Result<Response<api::DeleteContainerResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, ASKING_METHOD)?;
        let message = request.into_inner();
        if message.delete_task {
            let (id, remove_volumes, force) = (&message.id, message.remove_volumes, message.force);
            return delete_task_and_container(&self.0, &namespace, origin, id, remove_volumes, force)
                .await
                .map(Response::new);
        }
        let command =
            Command::DeleteContainer(DeleteContainer { id: message.id, remove_volumes: message.remove_volumes });
        let seq = self.0.submit(&namespace, origin, command).await?;
        Ok(Response::new(api::DeleteContainerResponse { seq: seq.get() }))
    }
}

fn limits_request(limits: api::ResourceLimits) -> LimitsRequest {
    LimitsRequest {
        memory: limits.memory,
        memory_swap: limits.memory_swap,
        cpus: limits.cpus,
        cpu_shares: limits.cpu_shares,
        cpuset_cpus: limits.cpuset_cpus,
        pids_limit: limits.pids_limit,
        blkio_weight: limits.blkio_weight,
        ulimits: limits.ulimits,
    }
}

fn policy_request(policies: api::ContainerPolicies) -> PolicyRequest {
    let security = policies.security.unwrap_or_default();
    PolicyRequest {
        limits: limits_request(policies.limits.unwrap_or_default()),
        restart: policies.restart,
        security: SecurityRequest {
            privileged: security.privileged,
            seccomp_unconfined: security.seccomp_unconfined,
            seccomp_profile: security.seccomp_profile,
            no_new_privileges: security.no_new_privileges,
            cap_add: security.cap_add,
            cap_drop: security.cap_drop,
            devices: security.devices,
            group_add: security.group_add,
            userns_remap: security.userns_remap,
        },
    }
}

/// What the pure checks cannot see: that a custom seccomp profile is an OCI profile and that
/// each `--device` is a device node on this host. Syntax errors are left to the command, which
/// words them.
fn check_on_host(security: &SecurityRequest) -> Result<(), Status> {
    if !security.seccomp_profile.is_empty()
        && security.seccomp_profile.len() <= berth_commands::policy::MAX_SECCOMP_PROFILE_BYTES
    {
        seccomp::parse_custom_profile(&security.seccomp_profile)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
    }
    for text in &security.devices {
        if let Ok(mapping) = parse_device(text) {
            policies::device_node(
                std::path::Path::new(&mapping.host_path),
                std::path::Path::new(&mapping.container_path),
            )
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        }
    }
    Ok(())
}
