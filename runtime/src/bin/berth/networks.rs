//! `berth network create`, `ls`, `inspect` and `rm`: user-defined bridge networks, host-wide.

use std::process::ExitCode;

use berth_runtime::api;

use crate::args::OutputFormat;
use crate::network_args::NetworkCommand;
use crate::output::{for_each_target, format_rfc3339, format_table, inspect_each, print_json_document, print_stdout};
use crate::session::{CliError, Session};

pub async fn run_network_command(session: &Session, command: NetworkCommand) -> Result<ExitCode, CliError> {
    match command {
        NetworkCommand::Create(create_args) => {
            let network = session
                .networks()
                .create(session.request(api::CreateNetworkRequest {
                    name: create_args.network_name.clone(),
                    subnet: create_args.subnet.clone().unwrap_or_default(),
                }))
                .await
                .map_err(session.rpc_error())?
                .into_inner();
            print_stdout(&format!("{} {}\n", network.name, network.subnet))?;
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Ls(output_args) => list_networks(session, output_args.output).await,
        NetworkCommand::Inspect(names_args) => {
            inspect_each(&names_args.network_names, async |name| {
                let network = session
                    .networks()
                    .get(session.request(api::GetNetworkRequest { name: name.to_string() }))
                    .await
                    .map_err(session.rpc_error())?;
                Ok(network_json(&network.into_inner()))
            })
            .await
        }
        NetworkCommand::Rm(names_args) => {
            for_each_target(&names_args.network_names, async |name| {
                session
                    .networks()
                    .remove(session.request(api::RemoveNetworkRequest { name: name.to_string() }))
                    .await
                    .map_err(session.rpc_error())?;
                Ok(())
            })
            .await
        }
    }
}

async fn list_networks(session: &Session, output: OutputFormat) -> Result<ExitCode, CliError> {
    let networks = session
        .networks()
        .list(session.request(api::ListNetworksRequest {}))
        .await
        .map_err(session.rpc_error())?
        .into_inner()
        .networks;
    match output {
        OutputFormat::Json => {
            print_json_document(&serde_json::Value::Array(networks.iter().map(network_json).collect()))?
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = networks
                .iter()
                .map(|network| {
                    vec![network.name.clone(), network.bridge.clone(), network.subnet.clone(), network.gateway.clone()]
                })
                .collect();
            print_stdout(&format_table(&["NAME", "BRIDGE", "SUBNET", "GATEWAY"], &rows))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A task's network as `berth inspect` and `network inspect` show it.
pub fn attachment_json(attachment: &api::NetworkAttachment) -> serde_json::Value {
    serde_json::json!({
        "network": attachment.network,
        "addresses": attachment.addresses,
        "gateway": attachment.gateway,
        "mac": attachment.mac,
        "interface": attachment.interface,
        "netns": attachment.netns,
        "ports": attachment.ports.iter().map(port_text).collect::<Vec<_>>(),
    })
}

/// `127.0.0.1:8080->80/tcp`.
pub fn port_text(port: &api::PortMapping) -> String {
    let host_ip = if port.host_ip.is_empty() { "0.0.0.0" } else { &port.host_ip };
    format!("{host_ip}:{}->{}/{}", port.host_port, port.container_port, port.protocol)
}

fn network_json(network: &api::Network) -> serde_json::Value {
    serde_json::json!({
        "name": network.name,
        "bridge": network.bridge,
        "subnet": network.subnet,
        "gateway": network.gateway,
        "builtin": network.builtin,
        "created_at": (!network.builtin).then(|| format_rfc3339(network.created_at_ns)),
        "created_seq": (!network.builtin).then_some(network.created_seq),
        "containers": network.endpoints.iter().map(|endpoint| serde_json::json!({
            "namespace": endpoint.namespace,
            "id": endpoint.container_id,
            "attachment": endpoint.attachment.as_ref().map(attachment_json),
        })).collect::<Vec<_>>(),
    })
}
