//! The command line: every verb's flags and arguments as clap structs, and the value parsers
//! they share. Handlers live in one file per verb group and take these structs as they are.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_projections::names::signal_number;
use berth_runtime::api;
use berth_runtime::client;
use clap::{Args, Parser, Subcommand};

pub use crate::output::{OutputArgs, OutputFormat};
use crate::policy_args::{PolicyArgs, UpdateArgs};
use crate::session::CliError;
use crate::storage_args::{environment_entry, read_env_file, StorageArgs};

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "Run and manage containers through berthd",
    after_help = "berth talks to berthd over a UNIX socket; start the daemon with `berthd`."
)]
pub struct Cli {
    /// berthd's UNIX socket
    #[arg(
        long,
        global = true,
        env = "BERTH_ADDRESS",
        default_value = client::DEFAULT_ADDRESS,
        value_name = "SOCKET",
        help_heading = "Global options"
    )]
    pub address: PathBuf,

    /// Namespace to act in; nothing in one namespace is visible from another
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "BERTH_NAMESPACE",
        default_value = client::DEFAULT_NAMESPACE,
        help_heading = "Global options"
    )]
    pub namespace: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container from an image, start it and print its output until it exits
    Run(RunArgs),
    /// Create a container without starting it (start it with `berth start`)
    Create(CreateArgs),
    /// Start a created container
    Start(StartArgs),
    /// List containers and the state of their tasks
    Ps(PsArgs),
    /// Print a container's output
    Logs(LogsArgs),
    /// Attach to a running container's output and (with -i / -t) its input; Ctrl-P Ctrl-Q
    /// detaches and leaves it running
    Attach(AttachArgs),
    /// Run a command inside a running container and exit with its exit code
    Exec(ExecArgs),
    /// Send a signal to a container's process
    Kill(KillArgs),
    /// Freeze every process of running containers (the cgroup freezer)
    Pause(crate::task_ops::FreezeArgs),
    /// Thaw paused containers
    Resume(crate::task_ops::FreezeArgs),
    /// Stop containers: the image's stop signal (SIGTERM without one), SIGKILL after -t SECS
    Stop(crate::task_ops::StopArgs),
    /// List the processes of a running container
    Top(crate::stats::TopArgs),
    /// Show running containers' CPU, memory, pids and block IO from their cgroups
    Stats(crate::stats::StatsArgs),
    /// Wait until a container exits and print its exit code
    Wait(WaitArgs),
    /// Remove containers and their tasks
    Rm(RmArgs),
    /// Change the limits of containers, running or not (later tasks keep them)
    Update(UpdateArgs),
    /// Pull, import, list, remove and prune images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Check credentials for a registry and save them in your credentials file
    Login(LoginArgs),
    /// Remove a registry's credentials from your credentials file
    Logout(LogoutArgs),
    /// Print the events recorded in berthd's log
    Events(EventsArgs),
    /// Print the versions of berth and berthd
    Version(OutputArgs),
    /// Create, list and remove namespaces
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// What berth keeps on disk
    #[command(subcommand)]
    System(SystemCommand),
    /// Create, list, inspect and remove volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Create, list, inspect and remove networks
    #[command(subcommand)]
    Network(crate::network_args::NetworkCommand),
    /// Print containers as JSON: their settings, mounts and task
    Inspect(InspectArgs),
    /// Print a completion script for bash, zsh or fish
    Completion(crate::completion::CompletionArgs),
    /// Write man pages for berth and every verb into a directory (scripts/install.sh does)
    #[command(hide = true)]
    Man(crate::completion::ManArgs),
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show the disk berth uses: content, layer snapshots, containers' writable layers, the log
    Df(OutputArgs),
}

/// What a new container runs and how: shared by `run` and `create`.
#[derive(Args, Debug)]
pub struct ContainerArgs {
    /// Container id (default: 12 random hex characters)
    #[arg(long, value_name = "ID")]
    pub name: Option<String>,

    /// Set an environment variable (repeatable); overrides the image's value. A bare KEY takes
    /// the value it has here (and is left out when it has none)
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]", value_parser = parse_env_flag)]
    pub env: Vec<String>,

    /// Working directory inside the container (default: the image's)
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// User to run as, e.g. 1000 or 1000:1000 (default: the image's)
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,

    /// Program to run instead of the image's entrypoint
    #[arg(long, value_name = "PROGRAM")]
    pub entrypoint: Option<String>,

    /// Hostname inside the container
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Attach a label to the container (repeatable)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<String>,

    /// Keep the container's stdin open: `run` passes ours to it (EOF included); without -i its
    /// stdin is /dev/null
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Give the container a pseudo-terminal; `run` puts ours in raw mode while attached and
    /// passes on its size (needs berth to run in a terminal)
    #[arg(short = 't', long)]
    pub tty: bool,

    #[command(flatten)]
    pub policies: PolicyArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub network: crate::network_args::NetworkArgs,

    /// Image to run, then the command and its arguments (default: the image's command).
    /// Everything after IMAGE is passed to the container, flags included.
    // No `allow_hyphen_values`: with it an unknown flag before the image (`--memory 1g`) became
    // the image's name. `trailing_var_arg` alone still passes `ls -l --rm` after the image.
    #[arg(value_names = ["IMAGE", "COMMAND"], required = true, num_args = 1.., trailing_var_arg = true)]
    pub image_and_command: Vec<String>,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth run [OPTIONS] IMAGE [COMMAND [ARG]...]")]
pub struct RunArgs {
    /// Remove the container, its task and its anonymous volumes once it has exited (or on
    /// Ctrl-C); with -d, berthd removes it when it exits
    #[arg(long, conflicts_with = "restart")]
    pub rm: bool,

    /// Start the container, print its id and return at once
    #[arg(short = 'd', long)]
    pub detach: bool,

    #[command(flatten)]
    pub container: ContainerArgs,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth create [OPTIONS] IMAGE [COMMAND [ARG]...]")]
pub struct CreateArgs {
    #[command(flatten)]
    pub container: ContainerArgs,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Print the container's output until it exits, and exit with its exit code
    #[arg(short = 'a', long)]
    pub attach: bool,

    /// Container to start
    #[arg(value_name = "ID")]
    pub container_id: String,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers, not only running ones
    #[arg(short = 'a', long)]
    pub all: bool,

    /// Print only the ids, one a line
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Only containers matching: status=STATUS, name=TEXT (part of the id), label=KEY[=VALUE],
    /// ancestor=IMAGE (repeatable; all must match)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub filters: Vec<String>,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Keep printing new output until the container exits
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Print only the last N lines (stdout and stderr together), or `all`
    #[arg(long, value_name = "N", value_parser = parse_tail)]
    pub tail: Option<u64>,

    /// Print only output from this time on: RFC 3339 (2026-01-02T15:04:05Z) or a time ago
    /// (30s, 5m, 2h)
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<i64>,

    /// Begin each line with the time the monitor read it
    #[arg(short = 't', long)]
    pub timestamps: bool,

    /// Container whose output to print
    #[arg(value_name = "ID")]
    pub container_id: String,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth exec [OPTIONS] ID COMMAND [ARG]...")]
pub struct ExecArgs {
    /// Pass our stdin to the command (EOF included)
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Give the command a pseudo-terminal (needs berth to run in a terminal)
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Set an environment variable (repeatable); overrides the container's value
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<String>,

    /// Working directory inside the container (default: the container's)
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// User to run as, e.g. 1000 or nobody (default: the container's)
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,

    /// Container to run the command in, then the command and its arguments
    #[arg(value_names = ["ID", "COMMAND"], required = true, num_args = 2.., trailing_var_arg = true)]
    pub id_and_command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not pass our input on, even when the container keeps its stdin open
    #[arg(long)]
    pub no_stdin: bool,

    /// Container to attach to
    #[arg(value_name = "ID")]
    pub container_id: String,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send, by name (TERM, SIGKILL, int...) or number
    #[arg(short = 's', long, value_name = "SIGNAL", default_value = "TERM", value_parser = parse_signal)]
    pub signal: u32,

    /// Signal every process in the container, not only its main one
    #[arg(short = 'a', long)]
    pub all: bool,

    /// Container to signal
    #[arg(value_name = "ID")]
    pub container_id: String,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    /// Container to wait for
    #[arg(value_name = "ID")]
    pub container_id: String,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill running tasks first instead of refusing to remove them
    #[arg(short = 'f', long)]
    pub force: bool,

    /// Remove the container's anonymous volumes too
    #[arg(short = 'v', long)]
    pub volumes: bool,

    /// Containers to remove
    #[arg(value_name = "ID", required = true)]
    pub container_ids: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Pull an image from a registry (berthd fetches, verifies and unpacks it)
    Pull(ImagePullArgs),
    /// Push a local image to a registry (berthd uploads what the registry lacks)
    Push(ImagePushArgs),
    /// Import an image archive: an OCI image-layout tar (as skopeo, umoci or ctr write it) or a
    /// docker-archive (as docker save or skopeo write it), told apart by its content
    Import(ImageImportArgs),
    /// Write images as one OCI image-layout tar (for skopeo, ctr images import, berth image import)
    Export(ImageExportArgs),
    /// Give an image another name
    Tag(ImageTagArgs),
    /// Show an image's manifest, config, layers and history as JSON
    Inspect(ImageInspectArgs),
    /// List images
    Ls(OutputArgs),
    /// Remove images
    Rm(ImageRmArgs),
    /// Remove the content and layer snapshots no image and no container references
    Prune(ImagePruneArgs),
}

#[derive(Args, Debug)]
pub struct ImagePruneArgs {
    /// Also remove the images no container uses
    #[arg(short = 'a', long = "all")]
    pub all_unused: bool,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth image export NAME... FILE")]
pub struct ImageExportArgs {
    /// Images to export, then the file to write (`-` writes standard output)
    #[arg(value_name = "NAME... FILE", required = true, num_args = 2..)]
    pub names_and_file: Vec<String>,
}

impl ImageExportArgs {
    /// The image names and the output path (the last argument).
    pub fn split(&self) -> (&[String], &str) {
        let (file, names) = self.names_and_file.split_last().expect("clap requires two arguments");
        (names, file)
    }
}

#[derive(Args, Debug)]
pub struct ImageTagArgs {
    /// Image to name again
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The new name, REPOSITORY[:TAG]
    #[arg(value_name = "TARGET")]
    pub target: String,
}

#[derive(Args, Debug)]
pub struct ImageInspectArgs {
    /// Image to show
    #[arg(value_name = "NAME")]
    pub name: String,
}

#[derive(Args, Debug)]
pub struct ImageImportArgs {
    /// Archive to import; `-` reads standard input
    #[arg(value_name = "FILE")]
    pub archive_path: PathBuf,

    /// Name for the image, when the archive holds one image (overrides its ref.name annotation)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Platform to take from multi-platform images, os/arch[/variant] (default: this machine's)
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct ImagePushArgs {
    /// [LOCAL] REFERENCE: the local image (default: REFERENCE itself) and where to push it,
    /// HOST[:PORT]/REPOSITORY[:TAG], e.g. 127.0.0.1:5000/team/app:1
    #[arg(value_name = "[LOCAL] REFERENCE", num_args = 1..=2, required = true)]
    pub names: Vec<String>,

    /// Talk plain HTTP to the registry (without TLS)
    #[arg(long)]
    pub plain_http: bool,

    /// Registry credentials (default: those `berth login` saved for the host); without
    /// :PASSWORD it is asked for on the terminal
    #[arg(long, value_name = "USER[:PASSWORD]")]
    pub user: Option<String>,

    /// Print only the pushed manifest's digest, no progress
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ImagePullArgs {
    /// [HOST[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST], e.g. busybox or 127.0.0.1:5000/app:1
    #[arg(value_name = "REFERENCE")]
    pub reference: String,

    /// Platform to choose from a multi-platform image (default: this host's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,

    /// Talk plain HTTP to the registry (without TLS)
    #[arg(long)]
    pub plain_http: bool,

    /// Registry credentials (default: those `berth login` saved for the host); without
    /// :PASSWORD it is asked for on the terminal
    #[arg(long, value_name = "USER[:PASSWORD]")]
    pub user: Option<String>,

    /// Print only the image's name, no progress
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry host, e.g. docker.io or 127.0.0.1:5000
    #[arg(value_name = "HOST")]
    pub host: String,

    /// User name (default: asked for on the terminal)
    #[arg(short = 'u', long, value_name = "USER")]
    pub username: Option<String>,

    /// Read the password from standard input (one line) instead of the terminal
    #[arg(long)]
    pub password_stdin: bool,

    /// Talk plain HTTP to the registry (without TLS)
    #[arg(long)]
    pub plain_http: bool,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry host, e.g. docker.io or 127.0.0.1:5000
    #[arg(value_name = "HOST")]
    pub host: String,
}

#[derive(Args, Debug)]
pub struct ImageRmArgs {
    /// Images to remove
    #[arg(value_name = "NAME", required = true)]
    pub image_names: Vec<String>,
}

fn parse_event_kind(text: &str) -> Result<String, String> {
    berth_projections::event_json::parse_event_kind(text).map(str::to_string)
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// First sequence number to print (default: the whole log, or only new events with --follow)
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,

    /// Keep printing events as they are recorded; if berthd stops or restarts, reconnect and
    /// resume after the last event printed
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// With --follow: end (with an error) when berthd goes away instead of reconnecting
    #[arg(long, requires = "follow")]
    pub no_reconnect: bool,

    /// Events of every namespace, not only --namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// Only events of this kind, e.g. TaskExited (case-insensitive; repeat for several)
    #[arg(long = "kind", value_name = "KIND", value_parser = parse_event_kind)]
    pub kinds: Vec<String>,

    /// Only events about this container
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Subcommand, Debug)]
pub enum NamespaceCommand {
    /// List namespaces
    Ls(OutputArgs),
    /// Create a namespace
    Create(NamespaceCreateArgs),
    /// Remove namespaces
    Rm(NamespaceRmArgs),
}

#[derive(Args, Debug)]
pub struct NamespaceCreateArgs {
    /// Attach a label to the namespace (repeatable)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<String>,

    /// Name of the new namespace
    #[arg(value_name = "NAME")]
    pub namespace_name: String,
}

#[derive(Args, Debug)]
pub struct NamespaceRmArgs {
    /// Namespaces to remove
    #[arg(value_name = "NAME", required = true)]
    pub namespace_names: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a named volume
    Create(VolumeCreateArgs),
    /// List volumes
    Ls(OutputArgs),
    /// Print volumes as JSON: labels, mount point, the containers using them
    Inspect(VolumeNamesArgs),
    /// Remove volumes (refused while a container uses one)
    Rm(VolumeNamesArgs),
}

#[derive(Args, Debug)]
pub struct VolumeCreateArgs {
    /// Attach a label to the volume (repeatable)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<String>,

    /// Name of the new volume
    #[arg(value_name = "NAME")]
    pub volume_name: String,
}

#[derive(Args, Debug)]
pub struct VolumeNamesArgs {
    /// Volumes
    #[arg(value_name = "NAME", required = true)]
    pub volume_names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Containers to print
    #[arg(value_name = "ID", required = true)]
    pub container_ids: Vec<String>,
}

impl ContainerArgs {
    /// The request; reads the env files, so it fails when one cannot be read.
    pub fn create_request(&self, container_id: String) -> Result<api::CreateContainerRequest, CliError> {
        let (image, command) = self
            .image_and_command
            .split_first()
            .map(|(image, command)| (image.clone(), command.to_vec()))
            .unwrap_or_default();
        // As docker: the files first, then -e, so a flag overrides a file.
        let mut env = Vec::new();
        for env_file in &self.storage.env_files {
            env.extend(read_env_file(env_file)?);
        }
        env.extend(self.env.iter().filter_map(|entry| environment_entry(entry)));
        Ok(api::CreateContainerRequest {
            id: container_id,
            image,
            args: command,
            entrypoint: self.entrypoint.iter().cloned().collect(),
            env,
            working_dir: self.workdir.clone().unwrap_or_default(),
            user: self.user.clone().unwrap_or_default(),
            hostname: self.hostname.clone().unwrap_or_default(),
            labels: labels_from_pairs(&self.labels),
            open_stdin: self.interactive,
            tty: self.tty,
            policies: Some(self.policies.message()),
            mounts: self.storage.all_mounts(),
            read_only_rootfs: self.storage.read_only,
            auto_remove: false,
            start_task: false,
            network: Some(self.network.message()),
        })
    }
}

/// `KEY=VALUE`, or a bare `KEY` whose value comes from the caller's environment.
pub fn parse_env_flag(text: &str) -> Result<String, String> {
    if !text.contains('=') && !text.is_empty() {
        return Ok(text.to_string());
    }
    parse_key_value(text)
}

/// Accepts `KEY=VALUE` with a non-empty key; the value may be empty or contain `=`.
pub fn parse_key_value(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((key, _value)) if !key.is_empty() => Ok(text.to_string()),
        _ => Err("expected KEY=VALUE with a non-empty KEY, e.g. PATH=/usr/bin".to_string()),
    }
}

pub fn labels_from_pairs(pairs: &[String]) -> HashMap<String, String> {
    pairs
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// `--tail`: a number of lines, or `all` (the same as leaving it out).
pub fn parse_tail(text: &str) -> Result<u64, String> {
    if text == "all" {
        return Ok(u64::MAX);
    }
    text.parse::<u64>().map_err(|_| format!("--tail takes a number of lines or `all`, not {text:?}"))
}

/// `--since`: an RFC 3339 time, or a duration ago (`30s`, `5m`, `2h`, `1d`), as unix ns.
pub fn parse_since(text: &str) -> Result<i64, String> {
    let units = [("s", 1u64), ("m", 60), ("h", 3600), ("d", 86_400)];
    for (suffix, seconds_per_unit) in units {
        if let Some(number) = text.strip_suffix(suffix).and_then(|number| number.parse::<u64>().ok()) {
            let ago_ns = number.saturating_mul(seconds_per_unit).saturating_mul(1_000_000_000);
            let now_ns = berth_log::Timestamp::now().as_ns();
            return i64::try_from(now_ns.saturating_sub(ago_ns)).map_err(|_| "the time is out of range".to_string());
        }
    }
    let timestamp = berth_log::Timestamp::parse(text)
        .map_err(|error| format!("{error}; or give a time ago such as 30s, 5m or 2h"))?;
    i64::try_from(timestamp.as_ns()).map_err(|_| "the time is out of range".to_string())
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number (`15`).
pub fn parse_signal(text: &str) -> Result<u32, String> {
    let unknown =
        || format!("unknown signal {text:?}: use a name like TERM, KILL, INT or HUP, or a number from 1 to 64");
    let trimmed = text.trim();
    if let Ok(number) = trimmed.parse::<u32>() {
        return if (1..=64).contains(&number) { Ok(number) } else { Err(unknown()) };
    }
    signal_number(trimmed).and_then(|number| u32::try_from(number).ok()).ok_or_else(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM"), Ok(15));
        assert_eq!(parse_signal("SIGKILL"), Ok(9));
        assert_eq!(parse_signal("kill"), Ok(9));
        assert_eq!(parse_signal("sigint"), Ok(2));
        assert_eq!(parse_signal("HUP"), Ok(1));
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("34"), Ok(34));
        let error = parse_signal("FOO").unwrap_err();
        assert!(error.starts_with("unknown signal \"FOO\": use a name like TERM"), "{error}");
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
        assert!(parse_signal("").is_err());
    }

    #[test]
    fn tail_and_since_parse() {
        assert_eq!(parse_tail("10"), Ok(10));
        assert_eq!(parse_tail("all"), Ok(u64::MAX));
        assert!(parse_tail("-1").is_err());
        assert_eq!(parse_since("2026-01-02T03:04:05Z"), Ok(1_767_323_045_000_000_000));
        let an_hour_ago = parse_since("1h").unwrap();
        let now = berth_log::Timestamp::now().as_ns() as i64;
        assert!((now - an_hour_ago - 3_600_000_000_000).abs() < 60_000_000_000);
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn key_values_need_a_key_and_an_equals_sign() {
        assert_eq!(parse_key_value("A=1"), Ok("A=1".to_string()));
        assert_eq!(parse_key_value("A="), Ok("A=".to_string()));
        assert_eq!(parse_key_value("A=b=c"), Ok("A=b=c".to_string()));
        assert!(parse_key_value("A").is_err());
        assert!(parse_key_value("=1").is_err());
        let labels = labels_from_pairs(&["k=v".to_string(), "x=a=b".to_string()]);
        assert_eq!(labels.get("x").map(String::as_str), Some("a=b"));
    }

    #[test]
    fn run_splits_image_from_command_and_keeps_flags_after_the_image() {
        let cli =
            Cli::try_parse_from(["berth", "run", "--rm", "-e", "A=1", "--name", "web", "alpine", "ls", "-l", "--rm"])
                .unwrap();
        let Command::Run(run_args) = cli.command else {
            panic!("expected run, got {:?}", cli.command);
        };
        assert!(run_args.rm);
        let request = run_args.container.create_request("web".to_string()).unwrap();
        assert_eq!(request.image, "alpine");
        assert_eq!(request.args, ["ls", "-l", "--rm"]);
        assert_eq!(request.env, ["A=1"]);
        assert!(request.entrypoint.is_empty());
    }

    #[test]
    fn run_takes_rm_with_detach_and_needs_an_image() {
        assert!(Cli::try_parse_from(["berth", "run", "--rm", "-d", "alpine"]).is_ok());
        assert!(Cli::try_parse_from(["berth", "run", "--rm"]).is_err());
    }

    #[test]
    fn an_unknown_flag_is_an_error_naming_it_not_an_image() {
        for verb in ["run", "create"] {
            // (`--memory`, the example, is a real flag now.)
            let error = Cli::try_parse_from(["berth", verb, "--no-such-flag", "1g", "busybox"]).unwrap_err();
            assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument, "{verb}: {error}");
            assert!(error.to_string().contains("--no-such-flag"), "{verb}: {error}");
        }
        let error = Cli::try_parse_from(["berth", "ps", "--bogus"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
        assert!(error.to_string().contains("--bogus"), "{error}");
        // `--` still lets an image name start with a dash, if anyone has one.
        let cli = Cli::try_parse_from(["berth", "run", "--", "-odd", "ls"]).unwrap();
        let Command::Run(run_args) = cli.command else { panic!("expected run") };
        assert_eq!(run_args.container.image_and_command, ["-odd", "ls"]);
    }

    #[test]
    fn cli_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn every_signal_nix_knows_parses_to_the_same_number() {
        // `--signal` used nix's names before the shared table; none of them may stop working.
        for signal in nix::sys::signal::Signal::iterator() {
            assert_eq!(parse_signal(signal.as_str()), Ok(signal as u32), "{signal}");
        }
    }
}
