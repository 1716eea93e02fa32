//! `berth volume create`, `ls`, `inspect` and `rm`: named volumes, the storage that outlives
//! the containers mounting it.

use std::process::ExitCode;

use berth_runtime::api;

use crate::args::{labels_from_pairs, OutputFormat, VolumeCommand};
use crate::output::{
    for_each_target, format_rfc3339, format_table, inspect_each, print_json_document, print_stdout, sorted_labels,
};
use crate::session::{CliError, Session};

pub async fn run_volume_command(session: &Session, command: VolumeCommand) -> Result<ExitCode, CliError> {
    match command {
        VolumeCommand::Create(create_args) => {
            session
                .volumes()
                .create(session.request(api::CreateVolumeRequest {
                    name: create_args.volume_name.clone(),
                    labels: labels_from_pairs(&create_args.labels),
                }))
                .await
                .map_err(session.rpc_error())?;
            print_stdout(&format!("{}\n", create_args.volume_name))?;
            Ok(ExitCode::SUCCESS)
        }
        VolumeCommand::Ls(output_args) => list_volumes(session, output_args.output).await,
        VolumeCommand::Inspect(names_args) => {
            inspect_each(&names_args.volume_names, async |name| {
                let volume = session
                    .volumes()
                    .get(session.request(api::GetVolumeRequest { name: name.to_string() }))
                    .await
                    .map_err(session.rpc_error())?;
                Ok(volume_json(&volume.into_inner()))
            })
            .await
        }
        VolumeCommand::Rm(names_args) => {
            for_each_target(&names_args.volume_names, async |name| {
                session
                    .volumes()
                    .remove(session.request(api::RemoveVolumeRequest { name: name.to_string() }))
                    .await
                    .map_err(session.rpc_error())?;
                Ok(())
            })
            .await
        }
    }
}

async fn list_volumes(session: &Session, output: OutputFormat) -> Result<ExitCode, CliError> {
    let volumes = session
        .volumes()
        .list(session.request(api::ListVolumesRequest {}))
        .await
        .map_err(session.rpc_error())?
        .into_inner()
        .volumes;
    match output {
        OutputFormat::Json => {
            print_json_document(&serde_json::Value::Array(volumes.iter().map(volume_json).collect()))?
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = volumes
                .iter()
                .map(|volume| vec![volume.name.clone(), volume.anonymous_for.clone(), volume.used_by.join(",")])
                .collect();
            print_stdout(&format_table(&["NAME", "ANONYMOUS FOR", "USED BY"], &rows))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn volume_json(volume: &api::Volume) -> serde_json::Value {
    serde_json::json!({
        "name": volume.name,
        "labels": sorted_labels(&volume.labels),
        "anonymous_for": (!volume.anonymous_for.is_empty()).then_some(&volume.anonymous_for),
        "mountpoint": volume.mountpoint,
        "created_at": format_rfc3339(volume.created_at_ns),
        "created_seq": volume.created_seq,
        "used_by": volume.used_by,
    })
}
