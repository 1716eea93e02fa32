//! `berth image push [LOCAL] REF`: asks berthd to push, with the registry's credentials (from
//! --user or the caller's credentials file), and shows the progress berthd streams back — a bar
//! per blob on a terminal, one line per finished blob otherwise, only the digest with --quiet.

use std::process::ExitCode;

use berth_runtime::api;
use berth_runtime::api::push_image_progress::BlobState;
use tokio_stream::StreamExt;

use crate::args::ImagePushArgs;
use crate::blob_progress::{BlobProgress, BlobStep, BlobUpdate};
use crate::output::{human_size, print_stdout};
use crate::pull::registry_credentials;
use crate::session::{CliError, Session};

/// What each push state shows.
fn step_of(state: BlobState) -> Option<BlobStep> {
    let (message, finished, printed) = match state {
        BlobState::Uploading => ("uploading", false, false),
        BlobState::Uploaded => ("uploaded", true, true),
        BlobState::AlreadyThere => ("already there", true, true),
        BlobState::Mounted => ("mounted", true, true),
        BlobState::Unspecified => return None,
    };
    Some(BlobStep { message, finished, printed })
}

fn update_of(progress: &api::PushImageProgress) -> BlobUpdate<'_> {
    BlobUpdate {
        digest: &progress.digest,
        total_bytes: progress.total_bytes,
        done_bytes: progress.done_bytes,
        step: step_of(BlobState::try_from(progress.state).unwrap_or(BlobState::Unspecified)),
    }
}

pub async fn push_image(session: &Session, push_args: ImagePushArgs) -> Result<ExitCode, CliError> {
    let (local, reference) = match push_args.names.as_slice() {
        [reference] => (String::new(), reference.clone()),
        [local, reference] => (local.clone(), reference.clone()),
        _ => return Err(CliError::Usage("give [LOCAL] REFERENCE".into())),
    };
    let request = api::PushImageRequest {
        credentials: registry_credentials(push_args.user.as_deref(), &reference)?,
        local,
        reference,
        plain_http: push_args.plain_http,
    };
    let mut display = BlobProgress::new(push_args.quiet);
    let mut stream = session.images().push(session.request(request)).await.map_err(session.rpc_error())?.into_inner();
    let mut result = None;
    while let Some(message) = stream.next().await {
        let message = match message {
            Ok(message) => message,
            Err(status) => {
                display.finish();
                return Err(session.rpc_error()(status));
            }
        };
        match message.result {
            Some(pushed) => result = Some(pushed),
            None => display.show(update_of(&message))?,
        }
    }
    display.finish();
    let Some(pushed) = result else {
        return Err(CliError::Usage("berthd ended the push without a result; look at berthd's log".into()));
    };
    if push_args.quiet {
        print_stdout(&format!("{}\n", pushed.manifest_digest))?;
    } else {
        print_stdout(&format!(
            "pushed {} ({}) to {}: {} blobs uploaded ({}), {} already there, {} mounted (seq {})\n",
            pushed.reference,
            pushed.manifest_digest,
            pushed.pushed_to,
            pushed.uploaded_blobs,
            human_size(pushed.uploaded_bytes),
            pushed.existing_blobs,
            pushed.mounted_blobs,
            pushed.seq
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
