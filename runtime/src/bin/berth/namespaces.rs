//! `berth namespace ls`, `create` and `rm`: the namespaces that keep one user's containers and
//! images out of another's sight.

use std::process::ExitCode;

use berth_runtime::api;

use crate::args::{labels_from_pairs, NamespaceCreateArgs, NamespaceRmArgs, OutputFormat};
use crate::output::{for_each_target, format_table, print_json_document, print_stdout, sorted_labels};
use crate::session::{CliError, Session};

pub async fn list_namespaces(session: &Session, output: OutputFormat) -> Result<ExitCode, CliError> {
    let mut namespaces = session
        .namespaces()
        .list(session.request(api::ListNamespacesRequest {}))
        .await
        .map_err(session.rpc_error())?
        .into_inner()
        .namespaces;
    namespaces.sort_by(|left, right| left.name.cmp(&right.name));
    match output {
        OutputFormat::Json => {
            let json_namespaces: Vec<serde_json::Value> = namespaces
                .iter()
                .map(|namespace| {
                    serde_json::json!({
                        "name": namespace.name,
                        "labels": sorted_labels(&namespace.labels),
                        "created_seq": namespace.created_seq,
                    })
                })
                .collect();
            print_json_document(&serde_json::Value::Array(json_namespaces))?;
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = namespaces
                .iter()
                .map(|namespace| {
                    let labels_text = sorted_labels(&namespace.labels)
                        .iter()
                        .map(|(key, value)| format!("{key}={value}"))
                        .collect::<Vec<_>>()
                        .join(",");
                    vec![namespace.name.clone(), labels_text]
                })
                .collect();
            print_stdout(&format_table(&["NAME", "LABELS"], &rows))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn create_namespace(session: &Session, create_args: NamespaceCreateArgs) -> Result<ExitCode, CliError> {
    session
        .namespaces()
        .create(session.request(api::CreateNamespaceRequest {
            name: create_args.namespace_name.clone(),
            labels: labels_from_pairs(&create_args.labels),
        }))
        .await
        .map_err(session.rpc_error())?;
    print_stdout(&format!("{}\n", create_args.namespace_name))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn remove_namespaces(session: &Session, namespace_rm_args: NamespaceRmArgs) -> Result<ExitCode, CliError> {
    for_each_target(&namespace_rm_args.namespace_names, async |namespace_name| {
        session
            .namespaces()
            .remove(session.request(api::RemoveNamespaceRequest { name: namespace_name.to_string() }))
            .await
            .map(drop)
            .map_err(session.rpc_error())
    })
    .await
}
