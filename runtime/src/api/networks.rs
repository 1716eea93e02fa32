//! `Networks`: create, get, list and remove user-defined bridge networks. The record comes
//! first; the conflist berth keeps under `<root>/networks` is written after it (and rewritten at
//! every start), and a removed network's conflist and Linux bridge go after its removal is
//! durable. "bridge", berthd's default network, is listed but is not a record.

use std::sync::Arc;

use berth_commands::{Command, CreateNetwork, RemoveNetwork};
use berth_projections::{NetworkRecord, State, NETWORK_BRIDGE};
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::convert::{api_time, attachment_message};
use crate::api::services::Services;
use crate::network::Networking;

pub struct NetworksService(pub Arc<Services>);

impl NetworksService {
    fn networking(&self) -> Result<&Arc<Networking>, Status> {
        self.0.networking.as_ref().ok_or_else(|| Status::unavailable("this berthd has no networking set up"))
    }
}

fn network_message(record: &NetworkRecord, builtin: bool) -> api::Network {
    api::Network {
        name: record.name.clone(),
        bridge: record.bridge.clone(),
        subnet: record.subnet.clone(),
        gateway: record.gateway.clone(),
        builtin,
        ..api::Network::default()
    }
}

/// The network `name` with the tasks attached to it now.
fn inspected(state: &State, networking: &Networking, name: &str) -> Option<api::Network> {
    let mut message = if name == NETWORK_BRIDGE {
        network_message(&networking.options.default_network(), true)
    } else {
        let network = state.networks.get(name)?;
        api::Network {
            created_seq: network.created_seq.get(),
            created_at_ns: api_time(network.created_at_ns),
            ..network_message(&network.record, false)
        }
    };
    message.endpoints = state
        .network_attachments(name)
        .map(|(namespace, container, attachment)| api::NetworkEndpoint {
            namespace: namespace.to_string(),
            container_id: container.record.id.clone(),
            attachment: Some(attachment_message(attachment)),
        })
        .collect();
    Some(message)
}

fn network_not_found(name: &str) -> Status {
    Status::not_found(format!(
        "network {} not found: `berth network ls` lists them",
        berth_commands::validate::shown(name)
    ))
}

#[tonic::async_trait]
impl api::networks_server::Networks for NetworksService {
    async fn create(&self, request: Request<api::CreateNetworkRequest>) -> Result<Response<api::Network>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Networks/Create")?;
        let networking = self.networking()?;
        let message = request.into_inner();
        let command = CreateNetwork {
            name: message.name.clone(),
            subnet: message.subnet,
            reserved_subnets: vec![networking.options.bridge_subnet.clone()],
        };
        self.0.submit(&namespace, origin, Command::CreateNetwork(command)).await?;
        let state = self.0.store.state();
        let network = state.networks.get(&message.name).ok_or_else(|| network_not_found(&message.name))?;
        if let Err(error) = networking.write_conflist(&network.record) {
            tracing::warn!(network = message.name, %error, "cannot write the network's conflist; the next start does");
        }
        inspected(&state, networking, &message.name).map(Response::new).ok_or_else(|| network_not_found(&message.name))
    }

    async fn get(&self, request: Request<api::GetNetworkRequest>) -> Result<Response<api::Network>, Status> {
        self.0.caller(&request, "Networks/Get")?;
        let name = request.into_inner().name;
        let state = self.0.store.state();
        inspected(&state, self.networking()?, &name).map(Response::new).ok_or_else(|| network_not_found(&name))
    }

    async fn list(
        &self,
        request: Request<api::ListNetworksRequest>,
    ) -> Result<Response<api::ListNetworksResponse>, Status> {
        self.0.caller(&request, "Networks/List")?;
        let networking = self.networking()?;
        let state = self.0.store.state();
        let networks = std::iter::once(network_message(&networking.options.default_network(), true))
            .chain(state.networks.values().map(|network| api::Network {
                created_seq: network.created_seq.get(),
                created_at_ns: api_time(network.created_at_ns),
                ..network_message(&network.record, false)
            }))
            .collect();
        Ok(Response::new(api::ListNetworksResponse { networks }))
    }

    async fn remove(
        &self,
        request: Request<api::RemoveNetworkRequest>,
    ) -> Result<Response<api::RemoveNetworkResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Networks/Remove")?;
        let networking = self.networking()?;
        let name = request.into_inner().name;
        if name == NETWORK_BRIDGE {
            return Err(Status::failed_precondition(
                "\"bridge\" is berthd's default network and cannot be removed: give containers --network none to not use it",
            ));
        }
        let bridge = self.0.store.state().networks.get(&name).map(|network| network.record.bridge.clone());
        let seq =
            self.0.submit(&namespace, origin, Command::RemoveNetwork(RemoveNetwork { name: name.clone() })).await?;
        networking.remove_conflist(&name);
        if let Some(bridge) = bridge {
            networking.delete_bridge(&bridge).await;
        }
        Ok(Response::new(api::RemoveNetworkResponse { seq: seq.get() }))
    }
}
