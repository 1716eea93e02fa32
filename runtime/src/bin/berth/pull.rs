//! `berth image pull`: asks berthd to pull, with the registry's credentials (from --user or the
//! caller's credentials file), and shows the progress berthd streams back — a bar per blob on a
//! terminal, one line per finished blob otherwise, nothing but the image name with --quiet.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use berth_projections::names::short_digest;
use berth_runtime::api;
use berth_runtime::api::pull_image_progress::BlobState;
use berth_runtime::images::registry::reference::Reference;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_stream::StreamExt;

use crate::args::ImagePullArgs;
use crate::credentials;
use crate::login::read_secret_from_terminal;
use crate::output::{human_size, print_stdout};
use crate::session::{CliError, Session};

/// How progress is shown.
enum Display {
    Quiet,
    Lines,
    Bars { multi: MultiProgress, bars: HashMap<String, ProgressBar>, style: ProgressStyle },
}

impl Display {
    fn show(&mut self, progress: &api::PullImageProgress) -> Result<(), CliError> {
        let state = BlobState::try_from(progress.state).unwrap_or(BlobState::Unspecified);
        let label = short_digest(&progress.digest).to_string();
        match self {
            Display::Quiet => Ok(()),
            Display::Lines => {
                let what = match state {
                    BlobState::Downloaded => "downloaded",
                    BlobState::AlreadyPresent => "already present",
                    BlobState::Unpacked => "unpacked",
                    _ => return Ok(()),
                };
                print_stdout(&format!("{label}: {what} ({})\n", human_size(progress.total_bytes)))
            }
            Display::Bars { multi, bars, style } => {
                let bar = bars.entry(progress.digest.clone()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(progress.total_bytes.max(0) as u64));
                    bar.set_style(style.clone());
                    bar.set_prefix(label.clone());
                    bar
                });
                bar.set_position(progress.done_bytes.max(0) as u64);
                match state {
                    BlobState::Waiting => bar.set_message("waiting"),
                    BlobState::Downloading => bar.set_message("downloading"),
                    BlobState::Downloaded => bar.set_message("downloaded"),
                    BlobState::AlreadyPresent => bar.finish_with_message("already present"),
                    BlobState::Unpacked => bar.finish_with_message("unpacked"),
                    BlobState::Unspecified => {}
                }
                Ok(())
            }
        }
    }

    fn finish(&mut self) {
        if let Display::Bars { multi, bars, .. } = self {
            for bar in bars.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            let _ = multi.clear();
        }
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
    let mut display = if pull_args.quiet {
        Display::Quiet
    } else if std::io::stderr().is_terminal() {
        let style = ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
        )
        .expect("the progress template is valid")
        .progress_chars("=> ");
        Display::Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: HashMap::new(),
            style,
        }
    } else {
        Display::Lines
    };
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
            None => display.show(&message)?,
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
