//! `berth version`: berth's own version, then berthd's with its log position and event schema.

use std::process::ExitCode;

use berth_runtime::api;

use crate::args::OutputFormat;
use crate::output::{print_json_document, print_stdout};
use crate::session::{CliError, Session};

const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The table's first line. `main` prints it before connecting: it is useful even when berthd
/// cannot be reached.
pub fn print_client_version(output: OutputFormat) -> Result<(), CliError> {
    if output == OutputFormat::Table {
        print_stdout(&format!("berth:         {CLIENT_VERSION}\n"))?;
    }
    Ok(())
}

/// The rest: berthd's side, or for JSON the whole document.
pub async fn print_server_version(session: &Session, output: OutputFormat) -> Result<ExitCode, CliError> {
    let server = session
        .version()
        .version(session.request(api::VersionRequest {}))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    match output {
        OutputFormat::Table => print_stdout(&format!(
            "berthd:        {} (revision {})\nlog seq:       {}\nevent schema:  {}\n",
            server.version,
            if server.revision.is_empty() { "unknown" } else { &server.revision },
            server.log_seq,
            server.event_schema
        ))?,
        OutputFormat::Json => print_json_document(&serde_json::json!({
            "client": { "version": CLIENT_VERSION },
            "server": {
                "version": server.version,
                "revision": server.revision,
                "log_seq": server.log_seq,
                "event_schema": server.event_schema,
            },
        }))?,
    }
    Ok(ExitCode::SUCCESS)
}
