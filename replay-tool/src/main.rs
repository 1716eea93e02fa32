//! berth-replay: the read-only forensic tool for berth logs. Parses the command line and hands
//! over to `berth_replay::cmd`; anyhow lives only here.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use berth_log::Timestamp;
use berth_projections::event_json::EventSelector;
use berth_replay::cmd::checkpoints::{resolve_checkpoints_dir, run_verify_checkpoints};
use berth_replay::cmd::diff::run_diff;
use berth_replay::cmd::events::{run_events, EventFilter, EventFormat, FollowOptions};
use berth_replay::cmd::forget::run_forget;
use berth_replay::cmd::history::run_history;
use berth_replay::cmd::state::run_state;
use berth_replay::cmd::stats::run_stats;
use berth_replay::cmd::verify::{parse_point, run_head, run_verify, VerifyOptions, VerifyOutcome};
use berth_replay::secrets::KeyDir;
use berth_replay::{resolve_log_dir, FoldPoint, ReplayError};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

const READ_ONLY_NOTE: &str =
    "berth-replay never opens anything for writing: it reads the log without taking its lock, \
works while berthd is running, and never repairs, truncates or moves a file (a torn tail is reported, not fixed). \
Only `forget` deletes a file: one key file, with berthd stopped.";

#[derive(Parser)]
#[command(
    name = "berth-replay",
    version,
    about = "Read-only forensic tool for berth logs: verify the hash chain, list events, tell a container's history, show the state at any past moment",
    after_help = READ_ONLY_NOTE
)]
struct Cli {
    #[command(flatten)]
    location: LogLocation,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct LogLocation {
    /// berthd's root directory; the log is DIR/log [default: /var/lib/berth]
    #[arg(long, value_name = "DIR", global = true, conflicts_with = "log")]
    root: Option<PathBuf>,
    /// The log directory itself (instead of --root)
    #[arg(long, value_name = "DIR", global = true)]
    log: Option<PathBuf>,
    /// The containers' key directory, to open sealed environment values (shown as <forgotten>
    /// where a key is gone) [default: ROOT/keys with --root or no location; none with --log:
    /// values show as <sealed>]
    #[arg(long, value_name = "DIR", global = true)]
    keys: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Check every record's CRC and the whole SHA-256 hash chain; exit 1 if the log was damaged or altered
    #[command(after_help = READ_ONLY_NOTE)]
    Verify {
        /// Also fail (exit 1) on a torn tail, for a log whose berthd is known to have stopped cleanly
        #[arg(long)]
        strict: bool,
        /// Also prove the log still contains this point, printed earlier by `berth-replay head`
        /// (exit 1 if it ends before SEQ or holds another hash there)
        #[arg(long, value_name = "SEQ:HASH", value_parser = parse_point)]
        expect: Option<berth_log::Anchor>,
        /// Also prove each projection checkpoint in DIR (berthd's root or its checkpoints
        /// directory) equals a full replay up to its seq, and say which ones berthd would use
        #[arg(long, value_name = "DIR")]
        checkpoints: Option<PathBuf>,
    },
    /// Verify the whole log, then print its last durable point as SEQ:HASH, to publish or keep
    /// elsewhere and check later with `verify --expect SEQ:HASH`
    #[command(after_help = READ_ONLY_NOTE)]
    Head,
    /// Print events, one per line: SEQ.INDEX  TIME  NAMESPACE  KIND  ORIGIN  FIELDS-JSON
    #[command(after_help = READ_ONLY_NOTE)]
    Events {
        /// First seq to print
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Last seq to print
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
        /// Only events of records in this namespace ("" for host-wide records)
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
        /// Only events about this container
        #[arg(long, value_name = "ID")]
        container: Option<String>,
        /// Only events of this kind, e.g. TaskExited (case-insensitive; repeat for several)
        #[arg(long, value_name = "KIND", value_parser = parse_event_kind)]
        kind: Vec<String>,
        /// One JSON object per line: {seq, index, timestamp_ns, time, namespace, origin, kind, fields},
        /// as `berth events --output json` prints
        #[arg(long)]
        json: bool,
        /// Keep printing new records as berthd appends them (until interrupted, or until --to)
        #[arg(long)]
        follow: bool,
    },
    /// A container's whole story: who asked for what, what berthd did, how the task exited
    #[command(after_help = READ_ONLY_NOTE)]
    History {
        /// The container id
        #[arg(long, value_name = "ID")]
        container: String,
        /// The container's namespace
        #[arg(long, value_name = "NS", default_value = "default")]
        namespace: String,
    },
    /// The host as it was at a seq or a moment: namespaces, images, containers and their tasks
    #[command(after_help = READ_ONLY_NOTE)]
    State {
        /// Fold records 1..=SEQ, or up to the last record stamped at or before an RFC 3339 UTC
        /// time such as 2026-11-29T09:30:00Z [default: every record]
        #[arg(long, value_name = "SEQ|TIME", value_parser = FoldPoint::parse, conflicts_with = "at_time")]
        at: Option<FoldPoint>,
        /// Fold up to the last record stamped at or before TIME: RFC 3339 UTC such as
        /// 2026-11-29T09:30:00Z (fraction optional), or integer nanoseconds since 1970
        #[arg(long, value_name = "TIME", value_parser = parse_time_argument)]
        at_time: Option<u64>,
        /// Print the full state as pretty-printed, deterministic JSON (serde_json of
        /// berth_projections::State); the same as --output json
        #[arg(long)]
        json: bool,
        /// text for people, json for programs (the full state, as --json)
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// What changed between two moments: namespaces, images, containers, task changes and
    /// volumes, each with the record, time and caller that made it
    #[command(after_help = READ_ONLY_NOTE)]
    Diff {
        /// The first moment: a seq (the state after it) or an RFC 3339 UTC time
        #[arg(long, value_name = "SEQ|TIME", value_parser = FoldPoint::parse)]
        from: FoldPoint,
        /// The second moment [default: the end of the log]
        #[arg(long, value_name = "SEQ|TIME", value_parser = FoldPoint::parse, default_value = "end-of-log", hide_default_value = true)]
        to: FoldPoint,
        /// text for people, json for programs
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Size and contents of the log, and how fast it replays on this machine
    #[command(after_help = READ_ONLY_NOTE)]
    Stats,
    /// Forget a removed container's sealed environment values by deleting its key file, with
    /// berthd stopped; the log is untouched and still verifies
    Forget {
        /// The container id
        #[arg(long, value_name = "ID")]
        container: String,
        /// The container's namespace
        #[arg(long, value_name = "NS", default_value = "default")]
        namespace: String,
    },
    /// Print a completion script for bash, zsh or fish
    Completion {
        /// The shell to complete for, e.g. `berth-replay completion bash`
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Write man pages for berth-replay and each subcommand into a directory (scripts/install.sh does)
    #[command(hide = true)]
    Man {
        /// The directory to write berth-replay.1 and berth-replay-<subcommand>.1 into
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

fn parse_event_kind(text: &str) -> Result<String, String> {
    berth_projections::event_json::parse_event_kind(text).map(str::to_string)
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OutputFormat {
    Text,
    Json,
}

fn parse_time_argument(text: &str) -> Result<u64, String> {
    Timestamp::parse(text).map(Timestamp::as_ns).map_err(|error| error.to_string())
}

/// berthd keeps its anchor beside its log directory (`<root>/log.anchor`); a directory not named
/// `log` (a copy, or a log moved aside by `berthd --salvage`) has none.
fn verify_options(dir: &std::path::Path, strict: bool, expect: Option<berth_log::Anchor>) -> VerifyOptions {
    let anchor = (dir.file_name() == Some(std::ffi::OsStr::new(berth_log::LOG_DIR_NAME)))
        .then(|| dir.parent().map(|root| root.join(berth_log::ANCHOR_FILE_NAME)))
        .flatten();
    VerifyOptions { strict, expect, anchor }
}

/// `--keys`, else the root's `keys` (the default root's when no location is given); with `--log`
/// alone the tool cannot know where the keys are.
fn resolve_keys_dir(location: &LogLocation) -> Option<PathBuf> {
    match (&location.keys, &location.root, &location.log) {
        (Some(keys), _, _) => Some(keys.clone()),
        (None, Some(root), _) => Some(root.join(berth_projections::sealed::KEYS_DIR_NAME)),
        (None, None, None) => {
            Some(PathBuf::from(berth_replay::DEFAULT_ROOT).join(berth_projections::sealed::KEYS_DIR_NAME))
        }
        (None, None, Some(_)) => None,
    }
}

/// Runs the command; `Ok(false)` means "done, but exit 1" (verify found damage).
fn run(cli: Cli, out: &mut dyn Write) -> Result<bool, ReplayError> {
    let dir = resolve_log_dir(cli.location.root.as_deref(), cli.location.log.as_deref());
    let keys = KeyDir::new(resolve_keys_dir(&cli.location));
    match cli.command {
        Command::Verify { strict, expect, checkpoints } => {
            match run_verify(&dir, &verify_options(&dir, strict, expect), out)? {
                VerifyOutcome::Intact => {}
                VerifyOutcome::Damaged { summary, .. } => {
                    out.flush()?;
                    eprintln!("berth-replay: {summary}");
                    return Ok(false);
                }
            }
            match checkpoints {
                Some(path) => Ok(run_verify_checkpoints(&dir, &resolve_checkpoints_dir(&path), out)?),
                None => Ok(true),
            }
        }
        Command::Head => {
            run_head(&dir, out)?;
            Ok(true)
        }
        Command::Events { from, to, namespace, container, kind, json, follow } => {
            // The kinds were checked as they were parsed.
            let selector = EventSelector::new(&kind, container).unwrap_or_default();
            let filter = EventFilter { from_seq: from, to_seq: to, namespace, selector };
            let format = if json { EventFormat::JsonLines } else { EventFormat::Text };
            run_events(&dir, &filter, format, follow.then(FollowOptions::default), out)?;
            Ok(true)
        }
        Command::History { container, namespace } => {
            run_history(&dir, &namespace, &container, &keys, out)?;
            Ok(true)
        }
        Command::State { at, at_time, json, output } => {
            let point = match (at, at_time) {
                (Some(point), _) => point,
                (None, Some(timestamp_ns)) => FoldPoint::Time(timestamp_ns),
                (None, None) => FoldPoint::End,
            };
            run_state(&dir, point, json || output == OutputFormat::Json, &keys, out)?;
            Ok(true)
        }
        Command::Diff { from, to, output } => {
            run_diff(&dir, from, to, output == OutputFormat::Json, out)?;
            Ok(true)
        }
        Command::Stats => {
            run_stats(&dir, out)?;
            Ok(true)
        }
        Command::Forget { container, namespace } => {
            run_forget(&dir, &keys, &namespace, &container, out)?;
            Ok(true)
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "berth-replay", out);
            Ok(true)
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(&dir).and_then(|()| clap_mangen::generate_to(Cli::command(), &dir))?;
            Ok(true)
        }
    }
}

fn run_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = run(cli, &mut out).and_then(|succeeded| {
        out.flush()?;
        Ok(succeeded)
    });
    match result {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::FAILURE),
        // `berth-replay events | head`: the reader has all it wanted.
        Err(error) if error.is_broken_pipe() => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error.into()),
    }
}

fn main() -> ExitCode {
    match run_main() {
        Ok(code) => code,
        Err(error) => {
            // Our errors carry their causes in their own message: print it once.
            eprintln!("berth-replay: {error}");
            ExitCode::FAILURE
        }
    }
}
