//! `berth pause` and `berth resume`: freeze and thaw the processes of running containers.

use std::process::ExitCode;

use berth_runtime::api;
use clap::Args;

use crate::output::print_stdout;
use crate::session::{CliError, Session};

#[derive(Args, Debug)]
pub struct FreezeArgs {
    /// Containers whose processes to freeze or thaw
    #[arg(value_name = "ID", required = true)]
    pub container_ids: Vec<String>,
}

/// Pauses (or with `resume`, resumes) each container in turn, printing each id done; the first
/// refusal ends the command, as `berth kill` does.
pub async fn pause_or_resume(session: &Session, freeze_args: FreezeArgs, resume: bool) -> Result<ExitCode, CliError> {
    for container_id in freeze_args.container_ids {
        let request = session.request(api::PauseTaskRequest { container_id: container_id.clone() });
        let answer = if resume { session.tasks().resume(request).await } else { session.tasks().pause(request).await };
        answer.map_err(session.rpc_error())?;
        print_stdout(&format!("{container_id}\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}
