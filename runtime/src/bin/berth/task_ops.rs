//! `berth pause` and `berth resume`: freeze and thaw the processes of running containers;
//! `berth stop`: the image's stop signal, then SIGKILL after a grace period.

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

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL
    #[arg(short = 't', long = "time", value_name = "SECS", default_value_t = 10)]
    pub grace_seconds: u32,

    /// Containers to stop
    #[arg(value_name = "ID", required = true)]
    pub container_ids: Vec<String>,
}

/// Stops each container in turn and prints its id; a container already stopped is no error.
pub async fn stop_containers(session: &Session, stop_args: StopArgs) -> Result<ExitCode, CliError> {
    for container_id in stop_args.container_ids {
        let request =
            api::StopTaskRequest { container_id: container_id.clone(), grace_seconds: stop_args.grace_seconds };
        session.tasks().stop(session.request(request)).await.map_err(session.rpc_error())?;
        print_stdout(&format!("{container_id}\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}
