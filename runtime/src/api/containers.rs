//! `Containers`: create, get, list and delete container records.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_commands::{resolve_image, Command, CreateContainer, DeleteContainer};
use berth_projections::{MountRecord, MOUNT_KIND_BIND};
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::convert::container_message;
use crate::api::paging::page;
use crate::api::services::{container_not_found, Services};
use crate::tasks::mounts::{image_volume_paths, resolve_bind_source};

pub struct ContainersService(pub Arc<Services>);

#[tonic::async_trait]
impl api::containers_server::Containers for ContainersService {
    async fn create(
        &self,
        request: Request<api::CreateContainerRequest>,
    ) -> Result<Response<api::CreateContainerResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Containers/Create")?;
        let message = request.into_inner();
        let id = message.id.clone();
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
            mounts,
            image_volumes,
            read_only_rootfs: message.read_only_rootfs,
            auto_remove: message.auto_remove,
        });
        let seq = self.0.submit(&namespace, origin, command).await?;
        let container = self.0.store.state().container(&namespace, &id).map(container_message);
        Ok(Response::new(api::CreateContainerResponse { container, seq: seq.get() }))
    }

    async fn get(&self, request: Request<api::GetContainerRequest>) -> Result<Response<api::Container>, Status> {
        let (namespace, _) = self.0.caller(&request, "Containers/Get")?;
        let id = request.into_inner().id;
        let state = self.0.store.state();
        state
            .container(&namespace, &id)
            .map(|c| Response::new(container_message(c)))
            .ok_or_else(|| container_not_found(&namespace, &id))
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

    async fn delete(
        &self,
        request: Request<api::DeleteContainerRequest>,
    ) -> Result<Response<api::DeleteContainerResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Containers/Delete")?;
        let message = request.into_inner();
        let command =
            Command::DeleteContainer(DeleteContainer { id: message.id, remove_volumes: message.remove_volumes });
        let seq = self.0.submit(&namespace, origin, command).await?;
        Ok(Response::new(api::DeleteContainerResponse { seq: seq.get() }))
    }
}
