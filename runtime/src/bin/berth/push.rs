//! `berth image push [LOCAL] REF`: asks berthd to push, with the registry's credentials (from
//! --user or the caller's credentials file), and shows the progress berthd streams back — a bar
//! per blob on a terminal, one line per finished blob otherwise, only the digest with --quiet.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use berth_projections::names::short_digest;
use berth_runtime::api;
use berth_runtime::api::push_image_progress::BlobState;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_stream::StreamExt;

use crate::args::ImagePushArgs;
use crate::output::{human_size, print_stdout};
use crate::pull::registry_credentials;
use crate::session::{CliError, Session};

enum Display {
    Quiet,
    Lines,
    Bars { multi: MultiProgress, bars: HashMap<String, ProgressBar>, style: ProgressStyle },
}

impl Display {
    fn new(quiet: bool) -> Display {
        if quiet {
            return Display::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Display::Lines;
        }
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
    }

    fn show(&mut self, progress: &api::PushImageProgress) -> Result<(), CliError> {
        let state = BlobState::try_from(progress.state).unwrap_or(BlobState::Unspecified);
        let label = short_digest(&progress.digest).to_string();
        match self {
            Display::Quiet => Ok(()),
            Display::Lines => {
                let what = match state {
                    BlobState::Uploaded => "uploaded",
                    BlobState::AlreadyThere => "already there",
                    BlobState::Mounted => "mounted",
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
                    BlobState::Uploading => bar.set_message("uploading"),
                    BlobState::Uploaded => bar.finish_with_message("uploaded"),
                    BlobState::AlreadyThere => bar.finish_with_message("already there"),
                    BlobState::Mounted => bar.finish_with_message("mounted"),
                    BlobState::Unspecified => {}
                }
                Ok(())
            }
        }
    }

    fn finish(&mut self) {
        if let Display::Bars { multi, bars, .. } = self {
            for bar in bars.values().filter(|bar| !bar.is_finished()) {
                bar.abandon();
            }
            let _ = multi.clear();
        }
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
    let mut display = Display::new(push_args.quiet);
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
            None => display.show(&message)?,
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
