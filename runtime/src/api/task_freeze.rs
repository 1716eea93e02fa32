//! `Tasks/Pause` and `Tasks/Resume`: `runc pause`/`runc resume` on the host first, then the
//! fact recorded (`TaskPaused`, `TaskResumed`), as `Containers/Update` applies limits before
//! recording them, so the log never says a task is frozen that runc did not freeze.

use berth_commands::{Command, PauseTask, ResumeTask};
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::services::{status_from_command_error, Services};
use crate::tasks::runc::Runc;

/// Which way a request turns the freezer.
#[derive(Clone, Copy)]
pub(crate) enum Freeze {
    Pause,
    Resume,
}

pub(crate) async fn pause_or_resume(
    services: &Services,
    request: Request<api::PauseTaskRequest>,
    freeze: Freeze,
) -> Result<Response<api::PauseTaskResponse>, Status> {
    let method = match freeze {
        Freeze::Pause => "Tasks/Pause",
        Freeze::Resume => "Tasks/Resume",
    };
    let (namespace, origin) = services.caller(&request, method)?;
    let container_id = request.into_inner().container_id;
    let command = match freeze {
        Freeze::Pause => Command::PauseTask(PauseTask { container_id: container_id.clone() }),
        Freeze::Resume => Command::ResumeTask(ResumeTask { container_id: container_id.clone() }),
    };
    // Checked before runc is asked, so a refused request leaves the host alone.
    command.decide(&services.store.state(), &namespace).map_err(status_from_command_error)?;
    let runc = Runc::new(services.runc_binary.clone(), services.layout.runc_root(&namespace));
    let applied = match freeze {
        Freeze::Pause => runc.pause(&container_id).await,
        Freeze::Resume => runc.resume(&container_id).await,
    };
    applied.map_err(|error| Status::failed_precondition(format!("runc refused, nothing was recorded: {error}")))?;
    match services.submit(&namespace, origin, command).await {
        Ok(seq) => Ok(Response::new(api::PauseTaskResponse { seq: seq.get() })),
        Err(status) => {
            // The state changed between the check and the record (an exit, another pause):
            // undo on the host what the log will not say, so the two agree again.
            let undone = match freeze {
                Freeze::Pause => runc.resume(&container_id).await,
                Freeze::Resume => runc.pause(&container_id).await,
            };
            if let Err(error) = undone {
                tracing::warn!(%container_id, %error, "could not undo an unrecorded pause or resume");
            }
            Err(status)
        }
    }
}
