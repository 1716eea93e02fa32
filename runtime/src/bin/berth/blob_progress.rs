//! The progress display `image pull` and `image push` share: a bar per blob on a terminal, one
//! line per blob that reached a state worth a line otherwise, nothing with --quiet. Each verb
//! says what its blob states mean as a [`BlobStep`].

use std::collections::HashMap;
use std::io::IsTerminal;

use berth_projections::names::short_digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{human_size, print_stdout};
use crate::session::CliError;

/// What a blob's new state shows: its word, whether its bar is done, whether it gets a line
/// when there is no terminal.
pub struct BlobStep {
    pub message: &'static str,
    pub finished: bool,
    pub printed: bool,
}

/// One progress message from berthd, as the display reads it.
pub struct BlobUpdate<'a> {
    pub digest: &'a str,
    pub total_bytes: i64,
    pub done_bytes: i64,
    /// `None` for a state this client does not know: the bar moves, nothing else.
    pub step: Option<BlobStep>,
}

pub enum BlobProgress {
    Quiet,
    Lines,
    Bars { multi: MultiProgress, bars: HashMap<String, ProgressBar>, style: ProgressStyle },
}

impl BlobProgress {
    pub fn new(quiet: bool) -> BlobProgress {
        if quiet {
            return BlobProgress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return BlobProgress::Lines;
        }
        let style = ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
        )
        .expect("the progress template is valid")
        .progress_chars("=> ");
        BlobProgress::Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: HashMap::new(),
            style,
        }
    }

    pub fn show(&mut self, update: BlobUpdate<'_>) -> Result<(), CliError> {
        let label = short_digest(update.digest).to_string();
        match self {
            BlobProgress::Quiet => Ok(()),
            BlobProgress::Lines => match update.step {
                Some(step) if step.printed => {
                    print_stdout(&format!("{label}: {} ({})\n", step.message, human_size(update.total_bytes)))
                }
                _ => Ok(()),
            },
            BlobProgress::Bars { multi, bars, style } => {
                let bar = bars.entry(update.digest.to_string()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(update.total_bytes.max(0) as u64));
                    bar.set_style(style.clone());
                    bar.set_prefix(label.clone());
                    bar
                });
                bar.set_position(update.done_bytes.max(0) as u64);
                match update.step {
                    Some(step) if step.finished => bar.finish_with_message(step.message),
                    Some(step) => bar.set_message(step.message),
                    None => {}
                }
                Ok(())
            }
        }
    }

    /// Leaves every bar on the screen with its last state — finished ones with their word, the
    /// rest (an error ended the stream early) stopped where they were — and the cursor on the
    /// line below them, for the summary or the error that follows.
    pub fn finish(self) {
        if let BlobProgress::Bars { multi, bars, .. } = self {
            for bar in bars.values().filter(|bar| !bar.is_finished()) {
                bar.abandon();
            }
            let drawn = !bars.is_empty();
            drop(bars);
            drop(multi);
            if drawn {
                // The last bar's line ends where its text does: the next line starts below it.
                eprintln!();
            }
        }
    }
}
