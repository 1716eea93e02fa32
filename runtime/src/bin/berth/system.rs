//! `berth system df`: what berth keeps on disk, as berthd measured it, in a table (comfy-table)
//! or JSON.

use std::process::ExitCode;

use berth_runtime::api;
use comfy_table::{presets, CellAlignment, Table};

use crate::args::OutputFormat;
use crate::output::{human_size, print_json_document, print_stdout};
use crate::session::{CliError, Session};

pub async fn print_disk_usage(session: &Session, output: OutputFormat) -> Result<ExitCode, CliError> {
    let usage = session
        .system()
        .disk_usage(session.request(api::DiskUsageRequest {}))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    match output {
        OutputFormat::Json => print_json_document(&disk_usage_json(&usage))?,
        OutputFormat::Table => print_stdout(&disk_usage_table(&usage))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn disk_usage_json(usage: &api::DiskUsageResponse) -> serde_json::Value {
    serde_json::Value::Array(
        usage
            .entries
            .iter()
            .map(|entry| {
                serde_json::json!({
                    "kind": entry.kind,
                    "count": entry.count,
                    "disk_bytes": entry.disk_bytes,
                    "reclaimable_count": entry.reclaimable_count,
                    "reclaimable_disk_bytes": entry.reclaimable_disk_bytes,
                    "path": entry.path,
                })
            })
            .collect(),
    )
}

fn disk_usage_table(usage: &api::DiskUsageResponse) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING).set_header(["KIND", "COUNT", "SIZE", "RECLAIMABLE", "PATH"]);
    for entry in &usage.entries {
        table.add_row([
            entry.kind.clone(),
            entry.count.to_string(),
            human_size(i64::try_from(entry.disk_bytes).unwrap_or(i64::MAX)),
            format!(
                "{} ({})",
                human_size(i64::try_from(entry.reclaimable_disk_bytes).unwrap_or(i64::MAX)),
                entry.reclaimable_count
            ),
            entry.path.clone(),
        ]);
    }
    for column_idx in [1, 2, 3] {
        if let Some(column) = table.column_mut(column_idx) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    // Lines without the padding comfy-table puts after the last column.
    let mut text: String = table.lines().map(|line| format!("{}\n", line.trim_end())).collect();
    if text.is_empty() {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_line_per_kind_with_human_sizes() {
        let usage = api::DiskUsageResponse {
            entries: vec![
                api::DiskUsageEntry {
                    kind: "content".into(),
                    count: 3,
                    disk_bytes: 1_500_000,
                    reclaimable_count: 1,
                    reclaimable_disk_bytes: 4096,
                    path: "/r/content".into(),
                },
                api::DiskUsageEntry { kind: "log".into(), count: 2, disk_bytes: 128 << 20, ..Default::default() },
            ],
        };
        let text = disk_usage_table(&usage);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].trim_start().starts_with("KIND"), "{text}");
        assert!(
            lines[1].contains("content") && lines[1].contains("1.5 MB") && lines[1].contains("4.1 kB (1)"),
            "{text}"
        );
        assert!(lines[2].contains("log") && lines[2].contains("134.2 MB"), "{text}");
        assert_eq!(disk_usage_json(&usage)[1]["disk_bytes"], 128 << 20);
    }
}
