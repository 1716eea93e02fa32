//! `berth image pull`: asks berthd to pull, with the registry's credentials (from --user or the
//! caller's credentials file), and shows the progress berthd streams back — a bar per blob on a
//! terminal, one line per finished blob otherwise, nothing but the image name with --quiet.

use std::process::ExitCode;

use berth_runtime::api;
use berth_runtime::api::pull_image_progress::BlobState;
use berth_runtime::images::registry::reference::Reference;
use tokio_stream::StreamExt;

use crate::args::ImagePullArgs;
use crate::blob_progress::{BlobProgress, BlobStep, BlobUpdate};
use crate::credentials;
use crate::login::read_secret_from_terminal;
use crate::output::{human_size, print_stdout};
use crate::session::{CliError, Session};

/// What each pull state shows.
fn step_of(state: BlobState) -> Option<BlobStep> {
    let (message, finished, printed) = match state {
        BlobState::Waiting => ("waiting", false, false),
        BlobState::Downloading => ("downloading", false, false),
        BlobState::Downloaded => ("downloaded", false, true),
        BlobState::AlreadyPresent => ("already present", true, true),
        BlobState::Unpacked => ("unpacked", true, true),
        BlobState::Unspecified => return None,
    };
    Some(BlobStep { message, finished, printed })
}

fn update_of(progress: &api::PullImageProgress) -> BlobUpdate<'_> {
    BlobUpdate {
        digest: &progress.digest,
        total_bytes: progress.total_bytes,
        done_bytes: progress.done_bytes,
        step: step_of(BlobState::try_from(progress.state).unwrap_or(BlobState::Unspecified)),
    }
}

/// The credentials to send: --user first, else the saved ones for the reference's host.
fn credentials_for(pull_args: &ImagePullArgs) -> Result<Option<api::RegistryCredentials>, CliError> {
    registry_credentials(pull_args.user.as_deref(), &pull_args.reference)
}

/// The credentials to send for `reference`: `user` (USER[:PASSWORD]) first, else the saved
/// ones for the reference's host. Shared with push.
pub fn registry_credentials(user: Option<&str>, reference: &str) -> Result<Option<api::RegistryCredentials>, CliError> {
    if let Some(user) = user {
        let (username, password) = match user.split_once(':') {
            Some((username, password)) => (username.to_string(), password.to_string()),
            None => (user.to_string(), read_secret_from_terminal("Password: ")?),
        };
        return Ok(Some(api::RegistryCredentials { username, password }));
    }
    // A reference that does not parse is berthd's to refuse, with the same message.
    let Ok(reference) = Reference::parse(reference) else { return Ok(None) };
    Ok(credentials::lookup(&reference.domain)?
        .map(|saved| api::RegistryCredentials { username: saved.username, password: saved.password }))
}

pub async fn pull_image(session: &Session, pull_args: ImagePullArgs) -> Result<ExitCode, CliError> {
    let request = api::PullImageRequest {
        reference: pull_args.reference.clone(),
        platform: pull_args.platform.clone().unwrap_or_default(),
        plain_http: pull_args.plain_http,
        credentials: credentials_for(&pull_args)?,
    };
    let mut display = BlobProgress::new(pull_args.quiet);
    let mut stream = session.images().pull(session.request(request)).await.map_err(session.rpc_error())?.into_inner();
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
            Some(pulled) => result = Some(pulled),
            None => display.show(update_of(&message))?,
        }
    }
    display.finish();
    let Some(pulled) = result else {
        return Err(CliError::Usage("berthd ended the pull without a result; look at berthd's log".into()));
    };
    let image = pulled.image.unwrap_or_default();
    if pull_args.quiet {
        print_stdout(&format!("{}\n", image.name))?;
    } else {
        let platform = if pulled.platform.is_empty() { String::new() } else { format!(" for {}", pulled.platform) };
        print_stdout(&format!(
            "pulled {} ({}){platform} from {}: {} blobs, {} fetched (seq {})\n",
            image.name,
            image.digest,
            pulled.served_by,
            pulled.fetched_blobs,
            human_size(pulled.fetched_bytes),
            pulled.seq
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
