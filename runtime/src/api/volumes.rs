//! `Volumes`: create, get, list and remove named volumes. A removal is refused while a
//! container mounts the volume; its directory is deleted by the executor once the removal is
//! durable.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_commands::{Command, CreateVolume, RemoveVolume};
use berth_projections::{State, VolumeState};
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::convert::api_time;
use crate::api::services::Services;

pub struct VolumesService(pub Arc<Services>);

impl VolumesService {
    fn volume_message(&self, state: &State, namespace: &str, volume: &VolumeState) -> api::Volume {
        let record = &volume.record;
        api::Volume {
            name: record.name.clone(),
            labels: record.labels.clone().into_iter().collect(),
            anonymous_for: record.anonymous_for.clone().unwrap_or_default(),
            mountpoint: self.0.layout.volume_dir(namespace, &record.name).join("data").display().to_string(),
            created_seq: volume.created_seq.get(),
            created_at_ns: api_time(volume.created_at_ns),
            used_by: state.volume_users(namespace, &record.name),
        }
    }
}

fn volume_not_found(namespace: &str, name: &str) -> Status {
    Status::not_found(format!(
        "volume {} not found in namespace {namespace:?}: `berth volume ls` lists them",
        berth_commands::validate::shown(name)
    ))
}

#[tonic::async_trait]
impl api::volumes_server::Volumes for VolumesService {
    async fn create(
        &self,
        request: Request<api::CreateVolumeRequest>,
    ) -> Result<Response<api::CreateVolumeResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Volumes/Create")?;
        let message = request.into_inner();
        let name = message.name.clone();
        let labels = message.labels.into_iter().collect::<BTreeMap<_, _>>();
        let seq = self.0.submit(&namespace, origin, Command::CreateVolume(CreateVolume { name, labels })).await?;
        let state = self.0.store.state();
        let volume =
            state.volume(&namespace, &message.name).map(|volume| self.volume_message(&state, &namespace, volume));
        Ok(Response::new(api::CreateVolumeResponse { volume, seq: seq.get() }))
    }

    async fn get(&self, request: Request<api::GetVolumeRequest>) -> Result<Response<api::Volume>, Status> {
        let (namespace, _) = self.0.caller(&request, "Volumes/Get")?;
        let name = request.into_inner().name;
        let state = self.0.store.state();
        state
            .volume(&namespace, &name)
            .map(|volume| Response::new(self.volume_message(&state, &namespace, volume)))
            .ok_or_else(|| volume_not_found(&namespace, &name))
    }

    async fn list(
        &self,
        request: Request<api::ListVolumesRequest>,
    ) -> Result<Response<api::ListVolumesResponse>, Status> {
        let (namespace, _) = self.0.caller(&request, "Volumes/List")?;
        let state = self.0.store.state();
        let volumes = state
            .namespace(&namespace)
            .map(|ns| ns.volumes.values().map(|volume| self.volume_message(&state, &namespace, volume)).collect())
            .unwrap_or_default();
        Ok(Response::new(api::ListVolumesResponse { volumes }))
    }

    async fn remove(
        &self,
        request: Request<api::RemoveVolumeRequest>,
    ) -> Result<Response<api::RemoveVolumeResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Volumes/Remove")?;
        let name = request.into_inner().name;
        let seq = self.0.submit(&namespace, origin, Command::RemoveVolume(RemoveVolume { name })).await?;
        Ok(Response::new(api::RemoveVolumeResponse { seq: seq.get() }))
    }
}
