//! `berth`, the command-line client of berthd: run, list, signal and remove containers, manage
//! images and namespaces, and read the event log — each subcommand is a few gRPC calls.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_runtime::api;
use berth_runtime::api::containers_client::ContainersClient;
use berth_runtime::api::events_client::EventsClient;
use berth_runtime::api::images_client::ImagesClient;
use berth_runtime::api::namespaces_client::NamespacesClient;
use berth_runtime::api::tasks_client::TasksClient;
use berth_runtime::api::version_client::VersionClient;
use berth_runtime::client::{self, BerthClient, ClientError};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tonic::transport::Channel;

/// Size of the pieces an image archive is streamed in.
const IMPORT_CHUNK_BYTES: usize = 1024 * 1024;

/// Once the task has exited, how long to wait for more output before giving up on a log
/// stream that does not end by itself. berthd ends the stream once the task has exited and its
/// output is drained, so this is only a guard against a stream that never ends; it is long
/// because a busy daemon may take seconds to send the last output, which must not be dropped.
const LOG_DRAIN_IDLE_LIMIT: Duration = Duration::from_secs(30);

/// Widest COMMAND shown by `berth ps` before it is cut short.
const COMMAND_COLUMN_CHARS: usize = 30;

/// Exit status after Ctrl-C, as a shell reports it (128 + SIGINT).
const INTERRUPTED_EXIT_STATUS: u8 = 130;

// ------------------------------------------------------------------------------------ flags

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "Run and manage containers through berthd",
    after_help = "berth talks to berthd over a UNIX socket; start the daemon with `berthd`."
)]
struct Cli {
    /// berthd's UNIX socket
    #[arg(
        long,
        global = true,
        env = "BERTH_ADDRESS",
        default_value = client::DEFAULT_ADDRESS,
        value_name = "SOCKET",
        help_heading = "Global options"
    )]
    address: PathBuf,

    /// Namespace to act in; nothing in one namespace is visible from another
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "BERTH_NAMESPACE",
        default_value = client::DEFAULT_NAMESPACE,
        help_heading = "Global options"
    )]
    namespace: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    /// Send a signal to a container's process
    Kill(KillArgs),
    /// Wait until a container exits and print its exit code
    Wait(WaitArgs),
    /// Remove containers and their tasks
    Rm(RmArgs),
    /// Import, list and remove images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print the events recorded in berthd's log
    Events(EventsArgs),
    /// Print the versions of berth and berthd
    Version(OutputArgs),
    /// Create, list and remove namespaces
    #[command(subcommand)]
    Namespace(NamespaceCommand),
}

#[derive(Args, Debug)]
struct OutputArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OutputFormat {
    /// Aligned columns for people
    Table,
    /// JSON for programs
    Json,
}

/// What a new container runs and how: shared by `run` and `create`.
#[derive(Args, Debug)]
struct ContainerArgs {
    /// Container id (default: 12 random hex characters)
    #[arg(long, value_name = "ID")]
    name: Option<String>,

    /// Set an environment variable (repeatable); overrides the image's value
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    env: Vec<String>,

    /// Working directory inside the container (default: the image's)
    #[arg(short = 'w', long, value_name = "DIR")]
    workdir: Option<String>,

    /// User to run as, e.g. 1000 or 1000:1000 (default: the image's)
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,

    /// Program to run instead of the image's entrypoint
    #[arg(long, value_name = "PROGRAM")]
    entrypoint: Option<String>,

    /// Hostname inside the container
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,

    /// Attach a label to the container (repeatable)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    labels: Vec<String>,

    /// Image to run, then the command and its arguments (default: the image's command).
    /// Everything after IMAGE is passed to the container, flags included.
    #[arg(
        value_names = ["IMAGE", "COMMAND"],
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    image_and_command: Vec<String>,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth run [OPTIONS] IMAGE [COMMAND [ARG]...]")]
struct RunArgs {
    /// Remove the container and its task once it has exited (or on Ctrl-C)
    #[arg(long)]
    rm: bool,

    /// Start the container, print its id and return at once
    #[arg(short = 'd', long, conflicts_with = "rm")]
    detach: bool,

    #[command(flatten)]
    container: ContainerArgs,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth create [OPTIONS] IMAGE [COMMAND [ARG]...]")]
struct CreateArgs {
    #[command(flatten)]
    container: ContainerArgs,
}

#[derive(Args, Debug)]
struct StartArgs {
    /// Print the container's output until it exits, and exit with its exit code
    #[arg(short = 'a', long)]
    attach: bool,

    /// Container to start
    #[arg(value_name = "ID")]
    container_id: String,
}

#[derive(Args, Debug)]
struct PsArgs {
    /// Show all containers, not only running ones
    #[arg(short = 'a', long)]
    all: bool,

    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
struct LogsArgs {
    /// Keep printing new output until the container exits
    #[arg(short = 'f', long)]
    follow: bool,

    /// Container whose output to print
    #[arg(value_name = "ID")]
    container_id: String,
}

#[derive(Args, Debug)]
struct KillArgs {
    /// Signal to send, by name (TERM, SIGKILL, int...) or number
    #[arg(short = 's', long, value_name = "SIGNAL", default_value = "TERM", value_parser = parse_signal)]
    signal: u32,

    /// Signal every process in the container, not only its main one
    #[arg(short = 'a', long)]
    all: bool,

    /// Container to signal
    #[arg(value_name = "ID")]
    container_id: String,
}

#[derive(Args, Debug)]
struct WaitArgs {
    /// Container to wait for
    #[arg(value_name = "ID")]
    container_id: String,
}

#[derive(Args, Debug)]
struct RmArgs {
    /// Kill running tasks first instead of refusing to remove them
    #[arg(short = 'f', long)]
    force: bool,

    /// Containers to remove
    #[arg(value_name = "ID", required = true)]
    container_ids: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Import an OCI image-layout tar archive (as skopeo or umoci write it)
    Import(ImageImportArgs),
    /// List images
    Ls(OutputArgs),
    /// Remove images
    Rm(ImageRmArgs),
}

#[derive(Args, Debug)]
struct ImageImportArgs {
    /// Archive to import; `-` reads standard input
    #[arg(value_name = "FILE")]
    archive_path: PathBuf,

    /// Name for the image, when the archive holds one image (overrides its ref.name annotation)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
struct ImageRmArgs {
    /// Images to remove
    #[arg(value_name = "NAME", required = true)]
    image_names: Vec<String>,
}

#[derive(Args, Debug)]
struct EventsArgs {
    /// First sequence number to print (default: the whole log, or only new events with --follow)
    #[arg(long, value_name = "SEQ")]
    since: Option<u64>,

    /// Keep printing events as they are recorded
    #[arg(short = 'f', long)]
    follow: bool,

    /// Events of every namespace, not only --namespace
    #[arg(short = 'A', long)]
    all_namespaces: bool,

    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Subcommand, Debug)]
enum NamespaceCommand {
    /// List namespaces
    Ls(OutputArgs),
    /// Create a namespace
    Create(NamespaceCreateArgs),
    /// Remove namespaces
    Rm(NamespaceRmArgs),
}

#[derive(Args, Debug)]
struct NamespaceCreateArgs {
    /// Attach a label to the namespace (repeatable)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    labels: Vec<String>,

    /// Name of the new namespace
    #[arg(value_name = "NAME")]
    namespace_name: String,
}

#[derive(Args, Debug)]
struct NamespaceRmArgs {
    /// Namespaces to remove
    #[arg(value_name = "NAME", required = true)]
    namespace_names: Vec<String>,
}

// ------------------------------------------------------------------------------------ errors

#[derive(Debug, thiserror::Error)]
enum CliError {
    /// Reaching berthd failed, or berthd answered with an error.
    #[error(transparent)]
    Client(#[from] ClientError),

    #[error("cannot read {}: {source}; check the path and that you may read it", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "cannot write to standard output or error: {0}; check where the output goes (disk full?)"
    )]
    WriteOutput(std::io::Error),

    #[error("cannot watch for Ctrl-C: {0}; run without a terminal, e.g. with --detach")]
    InstallSignalHandler(std::io::Error),

    /// Several targets failed; each was already reported on its own line.
    #[error("{n_failed} of {n_total} failed (see above)")]
    SomeFailed { n_failed: usize, n_total: usize },
}

// ------------------------------------------------------------------------------------ main

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("berth: cannot start the async runtime: {error}; check the process limits (ulimit -n)");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(exit_code) => exit_code,
        Err(error) => {
            eprintln!("berth: {error}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    let Cli {
        address,
        namespace,
        command,
    } = cli;
    match command {
        Command::Run(run_args) => {
            let session = Session::connect(&address, &namespace).await?;
            run_container(&session, run_args).await
        }
        Command::Create(create_args) => {
            let session = Session::connect(&address, &namespace).await?;
            create_container_only(&session, create_args).await
        }
        Command::Start(start_args) => {
            let session = Session::connect(&address, &namespace).await?;
            start_container(&session, start_args).await
        }
        Command::Ps(ps_args) => {
            let session = Session::connect(&address, &namespace).await?;
            list_containers(&session, ps_args).await
        }
        Command::Logs(logs_args) => {
            let session = Session::connect(&address, &namespace).await?;
            print_logs(&session, logs_args).await
        }
        Command::Kill(kill_args) => {
            let session = Session::connect(&address, &namespace).await?;
            kill_task(&session, kill_args).await
        }
        Command::Wait(wait_args) => {
            let session = Session::connect(&address, &namespace).await?;
            wait_task(&session, wait_args).await
        }
        Command::Rm(rm_args) => {
            let session = Session::connect(&address, &namespace).await?;
            remove_containers(&session, rm_args).await
        }
        Command::Image(ImageCommand::Import(import_args)) => {
            import_image(&address, &namespace, import_args).await
        }
        Command::Image(ImageCommand::Ls(output_args)) => {
            let session = Session::connect(&address, &namespace).await?;
            list_images(&session, output_args.output).await
        }
        Command::Image(ImageCommand::Rm(image_rm_args)) => {
            let session = Session::connect(&address, &namespace).await?;
            remove_images(&session, image_rm_args).await
        }
        Command::Events(events_args) => {
            let session = Session::connect(&address, &namespace).await?;
            print_events(&session, events_args).await
        }
        Command::Version(output_args) => {
            print_version(&address, &namespace, output_args.output).await
        }
        Command::Namespace(NamespaceCommand::Ls(output_args)) => {
            let session = Session::connect(&address, &namespace).await?;
            list_namespaces(&session, output_args.output).await
        }
        Command::Namespace(NamespaceCommand::Create(create_args)) => {
            let session = Session::connect(&address, &namespace).await?;
            create_namespace(&session, create_args).await
        }
        Command::Namespace(NamespaceCommand::Rm(namespace_rm_args)) => {
            let session = Session::connect(&address, &namespace).await?;
            remove_namespaces(&session, namespace_rm_args).await
        }
    }
}

/// A connected client plus the socket path, which error messages name.
struct Session {
    client: BerthClient,
    socket_path: PathBuf,
}

impl Session {
    async fn connect(socket_path: &Path, namespace: &str) -> Result<Session, CliError> {
        let client = BerthClient::connect(socket_path, namespace).await?;
        Ok(Session {
            client,
            socket_path: socket_path.to_path_buf(),
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.client.request(message)
    }

    /// Turns a gRPC status into the error berth prints.
    fn rpc_error(&self) -> impl Fn(tonic::Status) -> CliError + '_ {
        move |status| CliError::Client(ClientError::from_status(status, &self.socket_path))
    }

    fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.client.channel.clone())
    }

    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.client.channel.clone())
    }

    fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.client.channel.clone())
    }

    fn namespaces(&self) -> NamespacesClient<Channel> {
        NamespacesClient::new(self.client.channel.clone())
    }
}

// ------------------------------------------------------------------------------------ run

impl ContainerArgs {
    fn create_request(&self, container_id: String) -> api::CreateContainerRequest {
        let (image, command) = self
            .image_and_command
            .split_first()
            .map(|(image, command)| (image.clone(), command.to_vec()))
            .unwrap_or_default();
        api::CreateContainerRequest {
            id: container_id,
            image,
            args: command,
            entrypoint: self.entrypoint.iter().cloned().collect(),
            env: self.env.clone(),
            working_dir: self.workdir.clone().unwrap_or_default(),
            user: self.user.clone().unwrap_or_default(),
            hostname: self.hostname.clone().unwrap_or_default(),
            labels: labels_from_pairs(&self.labels),
        }
    }
}

async fn run_container(session: &Session, run_args: RunArgs) -> Result<ExitCode, CliError> {
    // Watch for Ctrl-C from the start so an interrupt during setup cannot leak a container
    // that --rm promised to remove.
    let mut interrupts = signal(SignalKind::interrupt()).map_err(CliError::InstallSignalHandler)?;
    let container_id = run_args
        .container
        .name
        .clone()
        .unwrap_or_else(client::generate_container_id);
    let create_request = run_args.container.create_request(container_id.clone());

    let mut containers = session.containers();
    let create_container = containers.create(session.request(create_request));
    match interruptible(&mut interrupts, create_container).await {
        Some(result) => {
            result.map_err(session.rpc_error())?;
        }
        None => {
            // The create may or may not have been recorded; it is not safe to delete by id
            // here, since the id might belong to a container that existed before.
            eprintln!(
                "berth: interrupted; container {container_id} may have been created: check with `berth ps -a` and remove it with `berth rm -f {container_id}`"
            );
            return Ok(ExitCode::from(INTERRUPTED_EXIT_STATUS));
        }
    }

    let create_and_start = create_and_start_task(session, &container_id);
    match interruptible(&mut interrupts, create_and_start).await {
        Some(Ok(())) => {}
        Some(Err(status)) => {
            if run_args.rm {
                remove_after_run(session, &container_id).await;
                return Err(session.rpc_error()(status));
            }
            eprintln!("berth: {}", session.rpc_error()(status));
            eprintln!(
                "berth: container {container_id} was kept: look at it with `berth ps -a`, remove it with `berth rm -f {container_id}`"
            );
            return Ok(ExitCode::from(1));
        }
        None => {
            if run_args.rm {
                remove_after_run(session, &container_id).await;
            } else {
                eprintln!(
                    "berth: interrupted; container {container_id} was created and may be running: remove it with `berth rm -f {container_id}`"
                );
            }
            return Ok(ExitCode::from(INTERRUPTED_EXIT_STATUS));
        }
    }

    if run_args.detach {
        print_stdout(&format!("{container_id}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    attach(session, &container_id, &mut interrupts, run_args.rm).await
}

/// One request: berthd records both intents in one record and its monitor creates and starts
/// the container with a single runc call.
async fn create_and_start_task(session: &Session, container_id: &str) -> Result<(), tonic::Status> {
    session
        .tasks()
        .create(session.request(api::CreateTaskRequest {
            container_id: container_id.to_string(),
            start: true,
        }))
        .await?;
    Ok(())
}

/// Runs `future` unless Ctrl-C comes first; `None` means interrupted.
async fn interruptible<F: std::future::Future>(
    interrupts: &mut Signal,
    future: F,
) -> Option<F::Output> {
    tokio::select! {
        output = future => Some(output),
        _ = interrupts.recv() => None,
    }
}

/// Best-effort removal of a container `berth run --rm` created. Failures are reported with
/// what to do, but do not change the exit status, which belongs to the container.
async fn remove_after_run(session: &Session, container_id: &str) {
    let delete_task = session
        .tasks()
        .delete(session.request(api::DeleteTaskRequest {
            container_id: container_id.to_string(),
            force: true,
        }))
        .await;
    if let Err(status) = delete_task {
        if status.code() != tonic::Code::NotFound {
            eprintln!(
                "berth: cannot remove the task of {container_id}: {}; remove it with `berth rm -f {container_id}`",
                session.rpc_error()(status)
            );
            return;
        }
    }
    let delete_container = session
        .containers()
        .delete(session.request(api::DeleteContainerRequest {
            id: container_id.to_string(),
        }))
        .await;
    if let Err(status) = delete_container {
        if status.code() != tonic::Code::NotFound {
            eprintln!(
                "berth: cannot remove container {container_id}: {}; remove it with `berth rm -f {container_id}`",
                session.rpc_error()(status)
            );
        }
    }
}

/// Copies the task's output to ours until it exits, then returns its exit status.
///
/// Ctrl-C: with `remove_after`, the container is killed and removed at once. Otherwise the first
/// Ctrl-C is forwarded to the task as SIGINT and the second detaches, leaving it running.
async fn attach(
    session: &Session,
    container_id: &str,
    interrupts: &mut Signal,
    remove_after: bool,
) -> Result<ExitCode, CliError> {
    let mut log_stream = match session
        .tasks()
        .logs(session.request(api::LogsRequest {
            container_id: container_id.to_string(),
            follow: true,
        }))
        .await
    {
        Ok(response) => Some(response.into_inner()),
        Err(status) => {
            eprintln!(
                "berth: cannot read the output of {container_id}: {}; waiting for it to exit anyway",
                session.rpc_error()(status)
            );
            None
        }
    };

    let mut tasks = session.tasks();
    let wait_for_exit = tasks.wait(session.request(api::WaitTaskRequest {
        container_id: container_id.to_string(),
    }));
    tokio::pin!(wait_for_exit);
    let mut wait_result: Option<Result<api::WaitTaskResponse, tonic::Status>> = None;
    let mut n_interrupts = 0_u32;

    while wait_result.is_none() || log_stream.is_some() {
        let exited = wait_result.is_some();
        tokio::select! {
            result = &mut wait_for_exit, if wait_result.is_none() => {
                wait_result = Some(result.map(tonic::Response::into_inner));
            }
            next = next_log_chunk(&mut log_stream, exited) => {
                match next {
                    LogNext::Chunk(chunk) => {
                        if let Err(error) = write_log_chunk(&chunk) {
                            if error.kind() != std::io::ErrorKind::BrokenPipe {
                                return Err(CliError::WriteOutput(error));
                            }
                            // Whoever read our output went away; keep waiting for the exit.
                            log_stream = None;
                        }
                    }
                    LogNext::End => log_stream = None,
                    LogNext::Failed(status) => {
                        eprintln!(
                            "berth: the output of {container_id} stopped early: {}",
                            session.rpc_error()(status)
                        );
                        log_stream = None;
                    }
                }
            }
            _ = interrupts.recv() => {
                if remove_after {
                    remove_after_run(session, container_id).await;
                    return Ok(ExitCode::from(INTERRUPTED_EXIT_STATUS));
                }
                n_interrupts += 1;
                if n_interrupts > 1 {
                    eprintln!(
                        "berth: detached from {container_id}; it keeps running: stop it with `berth kill {container_id}`"
                    );
                    return Ok(ExitCode::from(INTERRUPTED_EXIT_STATUS));
                }
                let forward = session
                    .tasks()
                    .kill(session.request(api::KillTaskRequest {
                        container_id: container_id.to_string(),
                        signal: libc::SIGINT as u32,
                        all: false,
                    }))
                    .await;
                match forward {
                    Ok(_) => eprintln!(
                        "berth: sent SIGINT to {container_id}; press Ctrl-C again to detach and leave it running"
                    ),
                    Err(status) => eprintln!(
                        "berth: cannot forward SIGINT to {container_id}: {}; press Ctrl-C again to detach",
                        session.rpc_error()(status)
                    ),
                }
            }
        }
    }

    let Some(wait_result) = wait_result else {
        unreachable!("the loop above only ends once Wait has answered");
    };
    let exit_status = match wait_result {
        Ok(response) => client::shell_exit_status(response.exit_code, response.exit_signal),
        Err(status) => {
            if remove_after {
                remove_after_run(session, container_id).await;
            }
            return Err(session.rpc_error()(status));
        }
    };
    if remove_after {
        remove_after_run(session, container_id).await;
    }
    Ok(exit_code_from_status(exit_status))
}

enum LogNext {
    Chunk(api::LogChunk),
    End,
    Failed(tonic::Status),
}

/// The next piece of output. Never resolves without a stream, so `select!` just skips it.
/// After the task has exited, a stream that stays silent for `LOG_DRAIN_IDLE_LIMIT` counts as
/// ended, so a daemon that keeps the stream open cannot hang `berth run`.
async fn next_log_chunk(
    log_stream: &mut Option<tonic::Streaming<api::LogChunk>>,
    task_exited: bool,
) -> LogNext {
    let Some(stream) = log_stream else {
        return std::future::pending().await;
    };
    let message = if task_exited {
        match tokio::time::timeout(LOG_DRAIN_IDLE_LIMIT, stream.message()).await {
            Ok(message) => message,
            Err(_elapsed) => return LogNext::End,
        }
    } else {
        stream.message().await
    };
    match message {
        Ok(Some(chunk)) => LogNext::Chunk(chunk),
        Ok(None) => LogNext::End,
        Err(status) => LogNext::Failed(status),
    }
}

fn write_log_chunk(chunk: &api::LogChunk) -> std::io::Result<()> {
    if chunk.stream() == api::log_chunk::Stream::Stderr {
        let mut stderr = std::io::stderr().lock();
        stderr.write_all(&chunk.data)?;
        stderr.flush()
    } else {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&chunk.data)?;
        stdout.flush()
    }
}

fn exit_code_from_status(exit_status: i32) -> ExitCode {
    // Exit statuses are a byte on Unix; keep what a shell would see.
    ExitCode::from((exit_status & 0xff) as u8)
}

// ------------------------------------------------------------------------------------ create / start

async fn create_container_only(
    session: &Session,
    create_args: CreateArgs,
) -> Result<ExitCode, CliError> {
    let container_id = create_args
        .container
        .name
        .clone()
        .unwrap_or_else(client::generate_container_id);
    let create_request = create_args.container.create_request(container_id.clone());
    session
        .containers()
        .create(session.request(create_request))
        .await
        .map_err(session.rpc_error())?;
    print_stdout(&format!("{container_id}\n"))?;
    Ok(ExitCode::SUCCESS)
}

async fn start_container(session: &Session, start_args: StartArgs) -> Result<ExitCode, CliError> {
    let container_id = start_args.container_id;
    // Install before starting so a Ctrl-C right after the start is seen by attach.
    let mut interrupts = if start_args.attach {
        Some(signal(SignalKind::interrupt()).map_err(CliError::InstallSignalHandler)?)
    } else {
        None
    };
    let container = session
        .containers()
        .get(session.request(api::GetContainerRequest {
            id: container_id.clone(),
        }))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    let mut tasks = session.tasks();
    if container.task.is_none() {
        tasks
            .create(session.request(api::CreateTaskRequest {
                container_id: container_id.clone(),
                start: false,
            }))
            .await
            .map_err(session.rpc_error())?;
    }
    tasks
        .start(session.request(api::StartTaskRequest {
            container_id: container_id.clone(),
        }))
        .await
        .map_err(session.rpc_error())?;
    match interrupts.as_mut() {
        Some(interrupts) => attach(session, &container_id, interrupts, false).await,
        None => Ok(ExitCode::SUCCESS),
    }
}

// ------------------------------------------------------------------------------------ ps

async fn list_containers(session: &Session, ps_args: PsArgs) -> Result<ExitCode, CliError> {
    let mut containers = session
        .containers()
        .list(session.request(api::ListContainersRequest {}))
        .await
        .map_err(session.rpc_error())?
        .into_inner()
        .containers;
    if !ps_args.all {
        containers.retain(|container| container.task.as_ref().is_some_and(task_is_live));
    }
    // Newest first, like the log reads backwards from now.
    containers.sort_by_key(|container| std::cmp::Reverse(container.created_seq));
    let now_ns = now_unix_ns();

    match ps_args.output.output {
        OutputFormat::Json => {
            let json_containers: Vec<serde_json::Value> = containers
                .iter()
                .map(|container| container_json(container, now_ns))
                .collect();
            print_json_document(&serde_json::Value::Array(json_containers))?;
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = containers
                .iter()
                .map(|container| {
                    vec![
                        container.id.clone(),
                        container.image.clone(),
                        truncate_chars(&shell_join(&container.args), COMMAND_COLUMN_CHARS),
                        format_task_status(container.task.as_ref(), now_ns),
                        format_ago(container.created_at_ns, now_ns),
                    ]
                })
                .collect();
            print_stdout(&format_table(
                &["ID", "IMAGE", "COMMAND", "STATUS", "CREATED"],
                &rows,
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `berth ps` without -a shows the task: it runs, or is about to.
fn task_is_live(task: &api::Task) -> bool {
    matches!(
        task.status(),
        api::TaskStatus::Running | api::TaskStatus::Starting
    )
}

fn container_json(container: &api::Container, now_ns: i64) -> serde_json::Value {
    let task_json = container.task.as_ref().map(|task| {
        serde_json::json!({
            "status": task_status_name(task.status()),
            "pid": task.pid,
            "exit_code": task.exit_code,
            "exit_signal": task.exit_signal,
            "exited_at": (task.exited_at_ns != 0).then(|| format_rfc3339(task.exited_at_ns)),
            "error": task.error,
            "updated_seq": task.updated_seq,
        })
    });
    serde_json::json!({
        "id": container.id,
        "image": container.image,
        "image_digest": container.image_digest,
        "command": container.args,
        "status": format_task_status(container.task.as_ref(), now_ns),
        "created_at": format_rfc3339(container.created_at_ns),
        "created_seq": container.created_seq,
        "labels": sorted_labels(&container.labels),
        "task": task_json,
    })
}

// ------------------------------------------------------------------------------------ logs / kill / wait / rm

async fn print_logs(session: &Session, logs_args: LogsArgs) -> Result<ExitCode, CliError> {
    let mut log_stream = session
        .tasks()
        .logs(session.request(api::LogsRequest {
            container_id: logs_args.container_id,
            follow: logs_args.follow,
        }))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    while let Some(chunk) = log_stream.message().await.map_err(session.rpc_error())? {
        if let Err(error) = write_log_chunk(&chunk) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(CliError::WriteOutput(error));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn kill_task(session: &Session, kill_args: KillArgs) -> Result<ExitCode, CliError> {
    session
        .tasks()
        .kill(session.request(api::KillTaskRequest {
            container_id: kill_args.container_id,
            signal: kill_args.signal,
            all: kill_args.all,
        }))
        .await
        .map_err(session.rpc_error())?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_task(session: &Session, wait_args: WaitArgs) -> Result<ExitCode, CliError> {
    let exit = session
        .tasks()
        .wait(session.request(api::WaitTaskRequest {
            container_id: wait_args.container_id,
        }))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    let exit_status = client::shell_exit_status(exit.exit_code, exit.exit_signal);
    print_stdout(&format!("{exit_status}\n"))?;
    Ok(ExitCode::SUCCESS)
}

async fn remove_containers(session: &Session, rm_args: RmArgs) -> Result<ExitCode, CliError> {
    for_each_target(&rm_args.container_ids, async |container_id| {
        remove_one_container(session, container_id, rm_args.force).await
    })
    .await
}

/// Acts on each target in turn: prints the name of each one that succeeded and the error of
/// each one that failed, then sums up with [`finish_batch`].
async fn for_each_target(
    targets: &[String],
    mut act: impl AsyncFnMut(&str) -> Result<(), CliError>,
) -> Result<ExitCode, CliError> {
    let mut n_failed = 0;
    for target in targets {
        match act(target).await {
            Ok(()) => print_stdout(&format!("{target}\n"))?,
            Err(error) => {
                eprintln!("berth: {error}");
                n_failed += 1;
            }
        }
    }
    finish_batch(n_failed, targets.len())
}

async fn remove_one_container(
    session: &Session,
    container_id: &str,
    force: bool,
) -> Result<(), CliError> {
    let container = session
        .containers()
        .get(session.request(api::GetContainerRequest {
            id: container_id.to_string(),
        }))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    if container.task.is_some() {
        session
            .tasks()
            .delete(session.request(api::DeleteTaskRequest {
                container_id: container_id.to_string(),
                force,
            }))
            .await
            .map_err(session.rpc_error())?;
    }
    session
        .containers()
        .delete(session.request(api::DeleteContainerRequest {
            id: container_id.to_string(),
        }))
        .await
        .map_err(session.rpc_error())?;
    Ok(())
}

/// A command that acts on several targets fails if any of them failed; when there was only
/// one, its own error was the whole story, so repeating a summary would be noise.
fn finish_batch(n_failed: usize, n_total: usize) -> Result<ExitCode, CliError> {
    match n_failed {
        0 => Ok(ExitCode::SUCCESS),
        _ if n_total == 1 => Ok(ExitCode::from(1)),
        _ => Err(CliError::SomeFailed { n_failed, n_total }),
    }
}

// ------------------------------------------------------------------------------------ images

async fn import_image(
    socket_path: &Path,
    namespace: &str,
    import_args: ImageImportArgs,
) -> Result<ExitCode, CliError> {
    let archive_path = import_args.archive_path.clone();
    // Open the archive before reaching for the daemon: a typo in the path is the likelier mistake.
    let archive: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if archive_path == Path::new("-") {
        Box::new(tokio::io::stdin())
    } else {
        let file = tokio::fs::File::open(&archive_path)
            .await
            .map_err(|source| CliError::ReadFile {
                path: archive_path.clone(),
                source,
            })?;
        Box::new(file)
    };
    let session = Session::connect(socket_path, namespace).await?;

    let (chunk_sender, chunk_receiver) = tokio::sync::mpsc::channel::<api::ImportChunk>(2);
    let image_name = import_args.name.clone().unwrap_or_default();
    let reader = tokio::spawn(stream_archive(archive, image_name, chunk_sender));
    let import_result = session
        .images()
        .import(session.request(tokio_stream::wrappers::ReceiverStream::new(chunk_receiver)))
        .await;
    // A read error explains a truncated upload better than the daemon's complaint about it.
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(source)) => {
            return Err(CliError::ReadFile {
                path: archive_path,
                source,
            })
        }
        Err(join_error) => {
            return Err(CliError::ReadFile {
                path: archive_path,
                source: std::io::Error::other(join_error.to_string()),
            })
        }
    }
    let imported = import_result.map_err(session.rpc_error())?.into_inner();
    print_images(&imported.images, import_args.output.output)?;
    Ok(ExitCode::SUCCESS)
}

/// Sends the archive in `IMPORT_CHUNK_BYTES` pieces; the first carries the name, and at least
/// one message is always sent so the daemon sees the name even for an empty archive.
async fn stream_archive(
    mut archive: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    image_name: String,
    chunk_sender: tokio::sync::mpsc::Sender<api::ImportChunk>,
) -> std::io::Result<()> {
    let mut name_for_first_chunk = Some(image_name);
    loop {
        let mut buffer = vec![0_u8; IMPORT_CHUNK_BYTES];
        let n_read = fill_buffer(&mut archive, &mut buffer).await?;
        buffer.truncate(n_read);
        let is_first = name_for_first_chunk.is_some();
        if n_read == 0 && !is_first {
            return Ok(());
        }
        let chunk = api::ImportChunk {
            name: name_for_first_chunk.take().unwrap_or_default(),
            data: buffer,
        };
        if chunk_sender.send(chunk).await.is_err() {
            // The call ended (the daemon answered or failed); its result tells the story.
            return Ok(());
        }
        if n_read < IMPORT_CHUNK_BYTES {
            return Ok(());
        }
    }
}

/// Reads until `buffer` is full or the input ends; returns how many bytes were read.
async fn fill_buffer(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    buffer: &mut [u8],
) -> std::io::Result<usize> {
    let mut n_filled = 0;
    while n_filled < buffer.len() {
        let n_read = reader.read(&mut buffer[n_filled..]).await?;
        if n_read == 0 {
            break;
        }
        n_filled += n_read;
    }
    Ok(n_filled)
}

async fn list_images(session: &Session, output: OutputFormat) -> Result<ExitCode, CliError> {
    let mut images = session
        .images()
        .list(session.request(api::ListImagesRequest {}))
        .await
        .map_err(session.rpc_error())?
        .into_inner()
        .images;
    images.sort_by(|left, right| left.name.cmp(&right.name));
    print_images(&images, output)?;
    Ok(ExitCode::SUCCESS)
}

/// The size people care about: the sum of the (compressed) layers, not the manifest's size.
fn image_layers_size(image: &api::Image) -> i64 {
    image.layers.iter().map(|layer| layer.size).sum()
}

fn print_images(images: &[api::Image], output: OutputFormat) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => {
            let json_images: Vec<serde_json::Value> = images
                .iter()
                .map(|image| {
                    serde_json::json!({
                        "name": image.name,
                        "digest": image.digest,
                        "media_type": image.media_type,
                        "size": image_layers_size(image),
                        "manifest_size": image.size,
                        "config_digest": image.config_digest,
                        "layers": image.layers.iter().map(|layer| serde_json::json!({
                            "digest": layer.digest,
                            "diff_id": layer.diff_id,
                            "media_type": layer.media_type,
                            "size": layer.size,
                        })).collect::<Vec<_>>(),
                        "entrypoint": image.entrypoint,
                        "cmd": image.cmd,
                        "created_at": format_rfc3339(image.created_at_ns),
                        "created_seq": image.created_seq,
                    })
                })
                .collect();
            print_json_document(&serde_json::Value::Array(json_images))
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = images
                .iter()
                .map(|image| {
                    vec![
                        image.name.clone(),
                        short_digest(&image.digest).to_string(),
                        human_size(image_layers_size(image)),
                    ]
                })
                .collect();
            print_stdout(&format_table(&["NAME", "DIGEST", "SIZE"], &rows))
        }
    }
}

async fn remove_images(
    session: &Session,
    image_rm_args: ImageRmArgs,
) -> Result<ExitCode, CliError> {
    for_each_target(&image_rm_args.image_names, async |image_name| {
        session
            .images()
            .remove(session.request(api::RemoveImageRequest {
                name: image_name.to_string(),
            }))
            .await
            .map(drop)
            .map_err(session.rpc_error())
    })
    .await
}

// ------------------------------------------------------------------------------------ events

async fn print_events(session: &Session, events_args: EventsArgs) -> Result<ExitCode, CliError> {
    // `since: 0` means "from now on" to berthd; without --follow that would print nothing,
    // so a bare `berth events` prints the whole log instead.
    let since = events_args
        .since
        .unwrap_or(if events_args.follow { 0 } else { 1 });
    let namespace_filter = if events_args.all_namespaces { "*" } else { "" };
    let mut event_stream = EventsClient::new(session.client.channel.clone())
        .subscribe(session.request(api::SubscribeRequest {
            since,
            follow: events_args.follow,
            namespace: namespace_filter.to_string(),
        }))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    while let Some(event) = event_stream.message().await.map_err(session.rpc_error())? {
        let line = match events_args.output.output {
            OutputFormat::Table => format_event_line(&event),
            OutputFormat::Json => event_json(&event).to_string(),
        };
        print_stdout(&format!("{line}\n"))?;
        if !stdout_still_open() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn format_event_line(event: &api::Event) -> String {
    format!(
        "{}  {}  {}  {}  {}  {}",
        event.seq,
        format_rfc3339(event.timestamp_ns),
        event.namespace,
        event.kind,
        format_origin(event.origin.as_ref()),
        single_line_json(&event.json),
    )
}

fn event_json(event: &api::Event) -> serde_json::Value {
    let origin_json = event.origin.as_ref().map(|origin| {
        serde_json::json!({
            "kind": origin.kind,
            "uid": origin.uid,
            "gid": origin.gid,
            "pid": origin.pid,
            "method": origin.method,
            "request_id": origin.request_id,
            "answers_seq": origin.answers_seq,
            "reason": origin.reason,
        })
    });
    let payload = serde_json::from_str::<serde_json::Value>(&event.json)
        .unwrap_or_else(|_| serde_json::Value::String(event.json.clone()));
    serde_json::json!({
        "seq": event.seq,
        "index": event.index,
        "time": format_rfc3339(event.timestamp_ns),
        "timestamp_ns": event.timestamp_ns,
        "namespace": event.namespace,
        "kind": event.kind,
        "origin": origin_json,
        "event": payload,
    })
}

/// `uid=0 pid=123 Tasks/Start req=cli-123-4` for a client, `daemon answers=57` for berthd.
fn format_origin(origin: Option<&api::Origin>) -> String {
    let Some(origin) = origin else {
        return "-".to_string();
    };
    let mut parts = Vec::new();
    if origin.kind == "daemon" {
        parts.push("daemon".to_string());
        if origin.answers_seq != 0 {
            parts.push(format!("answers={}", origin.answers_seq));
        }
    } else {
        parts.push(format!("uid={}", origin.uid));
        parts.push(format!("pid={}", origin.pid));
        if !origin.method.is_empty() {
            parts.push(short_method(&origin.method).to_string());
        }
        if !origin.request_id.is_empty() {
            parts.push(format!("req={}", origin.request_id));
        }
    }
    if !origin.reason.is_empty() {
        parts.push(format!("reason={:?}", origin.reason));
    }
    parts.join(" ")
}

/// `/berth.v1.Tasks/Start` → `Tasks/Start`.
fn short_method(method: &str) -> &str {
    let method = method.strip_prefix('/').unwrap_or(method);
    method.strip_prefix("berth.v1.").unwrap_or(method)
}

/// Keeps one event per line even if berthd pretty-printed its JSON.
fn single_line_json(json_text: &str) -> String {
    if !json_text.contains('\n') {
        return json_text.to_string();
    }
    match serde_json::from_str::<serde_json::Value>(json_text) {
        Ok(value) => value.to_string(),
        Err(_) => json_text.replace('\n', " "),
    }
}

// ------------------------------------------------------------------------------------ version / namespaces

async fn print_version(
    socket_path: &Path,
    namespace: &str,
    output: OutputFormat,
) -> Result<ExitCode, CliError> {
    let client_version = env!("CARGO_PKG_VERSION");
    // Print our own version first: it is useful even when berthd cannot be reached.
    if output == OutputFormat::Table {
        print_stdout(&format!("berth:         {client_version}\n"))?;
    }
    let session = Session::connect(socket_path, namespace).await?;
    let server = VersionClient::new(session.client.channel.clone())
        .version(session.request(api::VersionRequest {}))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    match output {
        OutputFormat::Table => print_stdout(&format!(
            "berthd:        {} (revision {})\nlog seq:       {}\nevent schema:  {}\n",
            server.version,
            if server.revision.is_empty() {
                "unknown"
            } else {
                &server.revision
            },
            server.log_seq,
            server.event_schema
        ))?,
        OutputFormat::Json => print_json_document(&serde_json::json!({
            "client": { "version": client_version },
            "server": {
                "version": server.version,
                "revision": server.revision,
                "log_seq": server.log_seq,
                "event_schema": server.event_schema,
            },
        }))?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn list_namespaces(session: &Session, output: OutputFormat) -> Result<ExitCode, CliError> {
    let mut namespaces = session
        .namespaces()
        .list(session.request(api::ListNamespacesRequest {}))
        .await
        .map_err(session.rpc_error())?
        .into_inner()
        .namespaces;
    namespaces.sort_by(|left, right| left.name.cmp(&right.name));
    match output {
        OutputFormat::Json => {
            let json_namespaces: Vec<serde_json::Value> = namespaces
                .iter()
                .map(|namespace| {
                    serde_json::json!({
                        "name": namespace.name,
                        "labels": sorted_labels(&namespace.labels),
                        "created_seq": namespace.created_seq,
                    })
                })
                .collect();
            print_json_document(&serde_json::Value::Array(json_namespaces))?;
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = namespaces
                .iter()
                .map(|namespace| {
                    let labels_text = sorted_labels(&namespace.labels)
                        .iter()
                        .map(|(key, value)| format!("{key}={value}"))
                        .collect::<Vec<_>>()
                        .join(",");
                    vec![namespace.name.clone(), labels_text]
                })
                .collect();
            print_stdout(&format_table(&["NAME", "LABELS"], &rows))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn create_namespace(
    session: &Session,
    create_args: NamespaceCreateArgs,
) -> Result<ExitCode, CliError> {
    session
        .namespaces()
        .create(session.request(api::CreateNamespaceRequest {
            name: create_args.namespace_name.clone(),
            labels: labels_from_pairs(&create_args.labels),
        }))
        .await
        .map_err(session.rpc_error())?;
    print_stdout(&format!("{}\n", create_args.namespace_name))?;
    Ok(ExitCode::SUCCESS)
}

async fn remove_namespaces(
    session: &Session,
    namespace_rm_args: NamespaceRmArgs,
) -> Result<ExitCode, CliError> {
    for_each_target(&namespace_rm_args.namespace_names, async |namespace_name| {
        session
            .namespaces()
            .remove(session.request(api::RemoveNamespaceRequest {
                name: namespace_name.to_string(),
            }))
            .await
            .map(drop)
            .map_err(session.rpc_error())
    })
    .await
}

// ------------------------------------------------------------------------------------ output

/// Writes to stdout. A closed pipe (`berth ps | head -1`) is not an error: the reader has
/// what it wanted.
fn print_stdout(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        Err(error) => Err(CliError::WriteOutput(error)),
    }
}

static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// False once a write found stdout's reader gone; streaming commands stop then.
fn stdout_still_open() -> bool {
    !STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed)
}

fn print_json_document(value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print_stdout(&format!("{text}\n"))
}

/// Left-aligned columns separated by three spaces; widths count characters, not bytes.
fn format_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (column_idx, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(column_idx) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut table = String::new();
    let header_cells: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    for row in std::iter::once(&header_cells).chain(rows.iter()) {
        let mut line = String::new();
        for (column_idx, cell) in row.iter().enumerate() {
            let is_last = column_idx + 1 == row.len();
            line.push_str(cell);
            if !is_last {
                let width = widths.get(column_idx).copied().unwrap_or(0);
                let padding = width.saturating_sub(cell.chars().count()) + 3;
                line.push_str(&" ".repeat(padding));
            }
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

// ------------------------------------------------------------------------------------ pure helpers

/// Accepts `KEY=VALUE` with a non-empty key; the value may be empty or contain `=`.
fn parse_key_value(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((key, _value)) if !key.is_empty() => Ok(text.to_string()),
        _ => Err("expected KEY=VALUE with a non-empty KEY, e.g. PATH=/usr/bin".to_string()),
    }
}

fn labels_from_pairs(pairs: &[String]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn sorted_labels(labels: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number (`15`).
fn parse_signal(text: &str) -> Result<u32, String> {
    let unknown = || {
        format!("unknown signal {text:?}: use a name like TERM, KILL, INT or HUP, or a number from 1 to 64")
    };
    let trimmed = text.trim();
    if let Ok(number) = trimmed.parse::<u32>() {
        return if (1..=64).contains(&number) {
            Ok(number)
        } else {
            Err(unknown())
        };
    }
    let upper = trimmed.to_ascii_uppercase();
    let full_name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&full_name)
        .map(|signal| signal as u32)
        .map_err(|_| unknown())
}

/// `SIGKILL` for 9; `signal 40` for numbers without a name (real-time signals).
fn signal_name(number: i32) -> String {
    match nix::sys::signal::Signal::try_from(number) {
        Ok(signal) => signal.as_str().to_string(),
        Err(_) => format!("signal {number}"),
    }
}

/// `running`, `stopped`... — the enum's name without its prefix, lower-case.
fn task_status_name(status: api::TaskStatus) -> String {
    status
        .as_str_name()
        .trim_start_matches("TASK_STATUS_")
        .to_ascii_lowercase()
}

/// The STATUS column of `berth ps`.
fn format_task_status(task: Option<&api::Task>, now_ns: i64) -> String {
    let Some(task) = task else {
        return "created".to_string();
    };
    match task.status() {
        api::TaskStatus::Running => format!("running (pid {})", task.pid),
        api::TaskStatus::Created => format!("created (pid {})", task.pid),
        api::TaskStatus::Stopped => {
            let ago = format_ago(task.exited_at_ns, now_ns);
            if task.exit_signal > 0 {
                format!("killed ({}) {ago}", signal_name(task.exit_signal))
            } else {
                format!("exited ({}) {ago}", task.exit_code)
            }
        }
        api::TaskStatus::Failed if !task.error.is_empty() => format!("failed: {}", task.error),
        other_status => task_status_name(other_status),
    }
}

/// `3s ago`, `5m ago`, `2h ago`, `4d ago`; `-` when the time is unknown (0).
fn format_ago(then_ns: i64, now_ns: i64) -> String {
    if then_ns == 0 {
        return "-".to_string();
    }
    let seconds = now_ns.saturating_sub(then_ns).max(0) / 1_000_000_000;
    match seconds {
        0..=59 => format!("{seconds}s ago"),
        60..=3599 => format!("{}m ago", seconds / 60),
        3600..=86_399 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}

fn now_unix_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// UTC time as RFC 3339 with milliseconds, e.g. `2024-02-29T13:05:09.123Z`.
fn format_rfc3339(unix_ns: i64) -> String {
    let total_ms = unix_ns.div_euclid(1_000_000);
    let milliseconds = total_ms.rem_euclid(1000);
    let total_seconds = total_ms.div_euclid(1000);
    let days_since_epoch = total_seconds.div_euclid(86_400);
    let second_of_day = total_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_date_from_days(days_since_epoch);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milliseconds:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Proleptic Gregorian (year, month, day) for a count of days since 1970-01-01.
///
/// Works in 400-year eras (146,097 days each) counted from 0000-03-01, so that the leap day
/// falls at the end of each shifted year and needs no special case.
fn civil_date_from_days(days_since_epoch: i64) -> (i64, u32, u32) {
    let days_since_0000_03_01 = days_since_epoch + 719_468;
    let era = days_since_0000_03_01.div_euclid(146_097);
    let day_of_era = days_since_0000_03_01.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `sha256:0123456789abcdef…` → `0123456789ab`.
fn short_digest(digest: &str) -> &str {
    let hex_part = digest
        .split_once(':')
        .map_or(digest, |(_algorithm, hex)| hex);
    hex_part.get(..12).unwrap_or(hex_part)
}

/// Decimal units like registries and `df -H`: `999 B`, `1.5 kB`, `23.4 MB`.
fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit_idx = 0;
    while value >= 999.95 && unit_idx + 1 < UNITS.len() {
        value /= 1000.0;
        unit_idx += 1;
    }
    format!("{value:.1} {}", UNITS[unit_idx])
}

/// The command as one would type it: arguments with spaces or quotes are quoted.
fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|arg| {
            let is_plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if is_plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Cuts `text` to at most `max_chars` characters, marking the cut with `…`.
fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_NS: i64 = 1_000_000_000;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(951_782_400 * SECOND_NS),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_rfc3339(1_709_211_909 * SECOND_NS + 123_456_789),
            "2024-02-29T13:05:09.123Z"
        );
        assert_eq!(
            format_rfc3339(1_735_689_599 * SECOND_NS + 999_999_999),
            "2024-12-31T23:59:59.999Z"
        );
        assert_eq!(
            format_rfc3339(4_102_444_800 * SECOND_NS),
            "2100-01-01T00:00:00.000Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn rfc3339_days_round_trip_through_every_day_of_four_centuries() {
        // Consecutive days must give consecutive, valid dates, 1900 (not leap) and 2000 (leap)
        // included.
        let mut previous = civil_date_from_days(-25_567); // 1900-01-01
        assert_eq!(previous, (1900, 1, 1));
        for days in -25_566..120_000 {
            let current = civil_date_from_days(days);
            let (year, month, day) = previous;
            let expected_next_day = if day < days_in_month(year, month) {
                (year, month, day + 1)
            } else if month < 12 {
                (year, month + 1, 1)
            } else {
                (year + 1, 1, 1)
            };
            assert_eq!(current, expected_next_day, "after {previous:?}");
            previous = current;
        }
    }

    fn days_in_month(year: i64, month: u32) -> u32 {
        let is_leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        match month {
            2 if is_leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

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
        assert!(
            error.starts_with("unknown signal \"FOO\": use a name like TERM"),
            "{error}"
        );
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
        assert!(parse_signal("").is_err());
    }

    #[test]
    fn signal_names_fall_back_to_numbers() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(40), "signal 40");
    }

    fn task(status: api::TaskStatus) -> api::Task {
        api::Task {
            container_id: "web".to_string(),
            status: status as i32,
            pid: 1234,
            ..Default::default()
        }
    }

    #[test]
    fn task_status_reads_like_the_examples() {
        let now_ns = 1_000_000 * SECOND_NS;
        assert_eq!(format_task_status(None, now_ns), "created");
        assert_eq!(
            format_task_status(Some(&task(api::TaskStatus::Running)), now_ns),
            "running (pid 1234)"
        );
        let exited = api::Task {
            exit_code: 7,
            exited_at_ns: now_ns - 3 * SECOND_NS,
            ..task(api::TaskStatus::Stopped)
        };
        assert_eq!(
            format_task_status(Some(&exited), now_ns),
            "exited (7) 3s ago"
        );
        let killed = api::Task {
            exit_signal: 9,
            exited_at_ns: now_ns - 2 * 3600 * SECOND_NS,
            ..task(api::TaskStatus::Stopped)
        };
        assert_eq!(
            format_task_status(Some(&killed), now_ns),
            "killed (SIGKILL) 2h ago"
        );
        let failed = api::Task {
            error: "runc create: no such file".to_string(),
            ..task(api::TaskStatus::Failed)
        };
        assert_eq!(
            format_task_status(Some(&failed), now_ns),
            "failed: runc create: no such file"
        );
        assert_eq!(
            format_task_status(Some(&task(api::TaskStatus::Starting)), now_ns),
            "starting"
        );
        assert_eq!(
            format_task_status(Some(&task(api::TaskStatus::Deleting)), now_ns),
            "deleting"
        );
    }

    #[test]
    fn ps_without_all_shows_only_running_or_starting_tasks() {
        assert!(task_is_live(&task(api::TaskStatus::Running)));
        assert!(task_is_live(&task(api::TaskStatus::Starting)));
        assert!(!task_is_live(&task(api::TaskStatus::Stopped)));
        assert!(!task_is_live(&task(api::TaskStatus::Created)));
    }

    #[test]
    fn ago_uses_the_largest_whole_unit() {
        let now_ns = 10_000_000 * SECOND_NS;
        assert_eq!(format_ago(0, now_ns), "-");
        assert_eq!(format_ago(now_ns + 5 * SECOND_NS, now_ns), "0s ago");
        assert_eq!(format_ago(now_ns - 59 * SECOND_NS, now_ns), "59s ago");
        assert_eq!(format_ago(now_ns - 60 * SECOND_NS, now_ns), "1m ago");
        assert_eq!(format_ago(now_ns - 3600 * SECOND_NS, now_ns), "1h ago");
        assert_eq!(
            format_ago(now_ns - 3 * 86_400 * SECOND_NS, now_ns),
            "3d ago"
        );
    }

    #[test]
    fn digests_and_sizes_are_shortened_for_tables() {
        assert_eq!(short_digest("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_digest("abc"), "abc");
        assert_eq!(short_digest(""), "");
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1500), "1.5 kB");
        assert_eq!(human_size(23_400_000), "23.4 MB");
        assert_eq!(human_size(999_999_999), "1.0 GB");
    }

    #[test]
    fn commands_are_quoted_and_cut_for_the_command_column() {
        let args: Vec<String> = ["sh", "-c", "echo 'hi' && sleep 1"]
            .map(String::from)
            .to_vec();
        assert_eq!(shell_join(&args), r"sh -c 'echo '\''hi'\'' && sleep 1'");
        assert_eq!(shell_join(&[String::new()]), "''");
        assert_eq!(truncate_chars("abcdef", 6), "abcdef");
        assert_eq!(truncate_chars("abcdefg", 6), "abcde…");
    }

    #[test]
    fn tables_align_columns_by_characters() {
        let rows = vec![
            vec!["web".to_string(), "nginx…".to_string(), "x".to_string()],
            vec!["database".to_string(), "pg".to_string(), String::new()],
        ];
        assert_eq!(
            format_table(&["ID", "IMAGE", "STATUS"], &rows),
            "ID         IMAGE    STATUS\nweb        nginx…   x\ndatabase   pg\n"
        );
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
    fn origins_read_like_the_examples() {
        let client_origin = api::Origin {
            kind: "client".to_string(),
            uid: 0,
            pid: 123,
            method: "/berth.v1.Tasks/Start".to_string(),
            request_id: "cli-123-4".to_string(),
            ..Default::default()
        };
        assert_eq!(
            format_origin(Some(&client_origin)),
            "uid=0 pid=123 Tasks/Start req=cli-123-4"
        );
        let daemon_origin = api::Origin {
            kind: "daemon".to_string(),
            answers_seq: 57,
            ..Default::default()
        };
        assert_eq!(format_origin(Some(&daemon_origin)), "daemon answers=57");
        assert_eq!(format_origin(None), "-");
    }

    #[test]
    fn event_lines_keep_one_event_per_line() {
        let event = api::Event {
            seq: 42,
            index: 0,
            timestamp_ns: 0,
            namespace: "default".to_string(),
            origin: None,
            kind: "TaskStarted".to_string(),
            json: "{\n  \"pid\": 7\n}".to_string(),
        };
        assert_eq!(
            format_event_line(&event),
            "42  1970-01-01T00:00:00.000Z  default  TaskStarted  -  {\"pid\":7}"
        );
        assert_eq!(event_json(&event)["event"]["pid"], 7);
    }

    #[test]
    fn run_splits_image_from_command_and_keeps_flags_after_the_image() {
        let cli = Cli::try_parse_from([
            "berth", "run", "--rm", "-e", "A=1", "--name", "web", "alpine", "ls", "-l", "--rm",
        ])
        .unwrap();
        let Command::Run(run_args) = cli.command else {
            panic!("expected run, got {:?}", cli.command);
        };
        assert!(run_args.rm);
        let request = run_args.container.create_request("web".to_string());
        assert_eq!(request.image, "alpine");
        assert_eq!(request.args, ["ls", "-l", "--rm"]);
        assert_eq!(request.env, ["A=1"]);
        assert!(request.entrypoint.is_empty());
    }

    #[test]
    fn run_rejects_rm_with_detach_and_needs_an_image() {
        assert!(Cli::try_parse_from(["berth", "run", "--rm", "-d", "alpine"]).is_err());
        assert!(Cli::try_parse_from(["berth", "run", "--rm"]).is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    /// A stand-in for berthd's Containers and Tasks services that records every call, so the
    /// order of calls `berth run` and `berth rm` make can be checked without a real daemon.
    #[derive(Clone, Default)]
    struct RecordingDaemon {
        calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl RecordingDaemon {
        fn record<T>(&self, request: &tonic::Request<T>, call: String) {
            let namespace = request
                .metadata()
                .get(client::NAMESPACE_METADATA_KEY)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("<none>")
                .to_string();
            self.calls
                .lock()
                .unwrap()
                .push(format!("[{namespace}] {call}"));
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[tonic::async_trait]
    impl api::containers_server::Containers for RecordingDaemon {
        async fn create(
            &self,
            request: tonic::Request<api::CreateContainerRequest>,
        ) -> Result<tonic::Response<api::CreateContainerResponse>, tonic::Status> {
            let message = request.get_ref();
            let call = format!(
                "Containers/Create {} {} {:?}",
                message.id, message.image, message.args
            );
            self.record(&request, call);
            Ok(tonic::Response::new(api::CreateContainerResponse::default()))
        }
        async fn get(
            &self,
            request: tonic::Request<api::GetContainerRequest>,
        ) -> Result<tonic::Response<api::Container>, tonic::Status> {
            let container_id = request.get_ref().id.clone();
            self.record(&request, format!("Containers/Get {container_id}"));
            // "bare" has no task; everything else has an exited one.
            let task = (container_id != "bare").then(|| api::Task {
                container_id: container_id.clone(),
                status: api::TaskStatus::Stopped as i32,
                ..Default::default()
            });
            Ok(tonic::Response::new(api::Container {
                id: container_id,
                task,
                ..Default::default()
            }))
        }
        async fn list(
            &self,
            request: tonic::Request<api::ListContainersRequest>,
        ) -> Result<tonic::Response<api::ListContainersResponse>, tonic::Status> {
            self.record(&request, "Containers/List".to_string());
            Ok(tonic::Response::new(api::ListContainersResponse::default()))
        }
        async fn delete(
            &self,
            request: tonic::Request<api::DeleteContainerRequest>,
        ) -> Result<tonic::Response<api::DeleteContainerResponse>, tonic::Status> {
            let call = format!("Containers/Delete {}", request.get_ref().id);
            self.record(&request, call);
            Ok(tonic::Response::new(api::DeleteContainerResponse::default()))
        }
    }

    #[tonic::async_trait]
    impl api::tasks_server::Tasks for RecordingDaemon {
        async fn create(
            &self,
            request: tonic::Request<api::CreateTaskRequest>,
        ) -> Result<tonic::Response<api::TaskResponse>, tonic::Status> {
            let message = request.get_ref();
            let container_id = message.container_id.clone();
            let call = if message.start {
                format!("Tasks/Create {container_id} start=true")
            } else {
                format!("Tasks/Create {container_id}")
            };
            self.record(&request, call);
            if message.start && container_id == "fails-to-start" {
                return Err(tonic::Status::failed_precondition(
                    "runc start failed: exec format error; check the image's architecture",
                ));
            }
            Ok(tonic::Response::new(api::TaskResponse::default()))
        }
        async fn start(
            &self,
            request: tonic::Request<api::StartTaskRequest>,
        ) -> Result<tonic::Response<api::TaskResponse>, tonic::Status> {
            let container_id = request.get_ref().container_id.clone();
            self.record(&request, format!("Tasks/Start {container_id}"));
            if container_id == "fails-to-start" {
                return Err(tonic::Status::failed_precondition(
                    "runc start failed: exec format error; check the image's architecture",
                ));
            }
            Ok(tonic::Response::new(api::TaskResponse::default()))
        }
        async fn kill(
            &self,
            request: tonic::Request<api::KillTaskRequest>,
        ) -> Result<tonic::Response<api::KillTaskResponse>, tonic::Status> {
            let message = request.get_ref();
            let call = format!("Tasks/Kill {} {}", message.container_id, message.signal);
            self.record(&request, call);
            Ok(tonic::Response::new(api::KillTaskResponse::default()))
        }
        async fn wait(
            &self,
            request: tonic::Request<api::WaitTaskRequest>,
        ) -> Result<tonic::Response<api::WaitTaskResponse>, tonic::Status> {
            let call = format!("Tasks/Wait {}", request.get_ref().container_id);
            self.record(&request, call);
            Ok(tonic::Response::new(api::WaitTaskResponse {
                exit_signal: 9,
                ..Default::default()
            }))
        }
        async fn delete(
            &self,
            request: tonic::Request<api::DeleteTaskRequest>,
        ) -> Result<tonic::Response<api::DeleteTaskResponse>, tonic::Status> {
            let message = request.get_ref();
            let call = format!(
                "Tasks/Delete {} force={}",
                message.container_id, message.force
            );
            self.record(&request, call);
            Ok(tonic::Response::new(api::DeleteTaskResponse::default()))
        }
        async fn list(
            &self,
            request: tonic::Request<api::ListTasksRequest>,
        ) -> Result<tonic::Response<api::ListTasksResponse>, tonic::Status> {
            self.record(&request, "Tasks/List".to_string());
            Ok(tonic::Response::new(api::ListTasksResponse::default()))
        }
        async fn get(
            &self,
            request: tonic::Request<api::GetTaskRequest>,
        ) -> Result<tonic::Response<api::Task>, tonic::Status> {
            self.record(&request, "Tasks/Get".to_string());
            Err(tonic::Status::not_found("no task"))
        }

        type LogsStream =
            tokio_stream::Iter<std::vec::IntoIter<Result<api::LogChunk, tonic::Status>>>;

        async fn logs(
            &self,
            request: tonic::Request<api::LogsRequest>,
        ) -> Result<tonic::Response<Self::LogsStream>, tonic::Status> {
            let message = request.get_ref();
            let call = format!(
                "Tasks/Logs {} follow={}",
                message.container_id, message.follow
            );
            self.record(&request, call);
            // An empty chunk keeps the test's own output clean while still exercising the copy.
            let chunks = vec![Ok(api::LogChunk {
                stream: api::log_chunk::Stream::Stdout as i32,
                data: Vec::new(),
            })];
            Ok(tonic::Response::new(tokio_stream::iter(chunks)))
        }
    }

    async fn serve_recording_daemon(
        socket_path: &Path,
    ) -> (
        RecordingDaemon,
        tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    ) {
        let daemon = RecordingDaemon::default();
        let listener = tokio::net::UnixListener::bind(socket_path).unwrap();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(api::containers_server::ContainersServer::new(
                    daemon.clone(),
                ))
                .add_service(api::tasks_server::TasksServer::new(daemon.clone()))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        (daemon, server)
    }

    fn parse_run(args: &[&str]) -> RunArgs {
        match Cli::try_parse_from(args).unwrap().command {
            Command::Run(run_args) => run_args,
            other => panic!("expected run, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn run_with_rm_creates_starts_follows_waits_then_removes() {
        let scratch_dir = tempfile::tempdir().unwrap();
        let socket_path = scratch_dir.path().join("berthd.sock");
        let (daemon, server) = serve_recording_daemon(&socket_path).await;
        let session = Session::connect(&socket_path, "ci").await.unwrap();

        let run_args = parse_run(&[
            "berth", "run", "--rm", "--name", "t1", "alpine", "sleep", "9",
        ]);
        let exit_code = run_container(&session, run_args).await.unwrap();
        // Killed by SIGKILL: the shell convention is 128 + 9.
        assert_eq!(
            format!("{exit_code:?}"),
            format!("{:?}", ExitCode::from(137))
        );
        let calls = daemon.calls();
        let (follow_calls, ordered_calls): (Vec<String>, Vec<String>) = calls
            .iter()
            .cloned()
            .partition(|call| call.contains("Tasks/Logs") || call.contains("Tasks/Wait"));
        assert_eq!(
            ordered_calls,
            [
                "[ci] Containers/Create t1 alpine [\"sleep\", \"9\"]",
                "[ci] Tasks/Create t1 start=true",
                "[ci] Tasks/Delete t1 force=true",
                "[ci] Containers/Delete t1",
            ]
        );
        // Logs and Wait run side by side, so their relative order is not fixed.
        let mut follow_calls = follow_calls;
        follow_calls.sort();
        assert_eq!(
            follow_calls,
            ["[ci] Tasks/Logs t1 follow=true", "[ci] Tasks/Wait t1"]
        );
        server.abort();
    }

    #[tokio::test]
    async fn run_with_rm_removes_what_it_created_when_start_fails() {
        let scratch_dir = tempfile::tempdir().unwrap();
        let socket_path = scratch_dir.path().join("berthd.sock");
        let (daemon, server) = serve_recording_daemon(&socket_path).await;
        let session = Session::connect(&socket_path, "default").await.unwrap();

        let run_args = parse_run(&["berth", "run", "--rm", "--name", "fails-to-start", "alpine"]);
        let error = run_container(&session, run_args).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "runc start failed: exec format error; check the image's architecture"
        );
        assert_eq!(
            daemon.calls(),
            [
                "[default] Containers/Create fails-to-start alpine []",
                "[default] Tasks/Create fails-to-start start=true",
                "[default] Tasks/Delete fails-to-start force=true",
                "[default] Containers/Delete fails-to-start",
            ]
        );
        server.abort();
    }

    #[tokio::test]
    async fn detached_run_prints_the_id_and_does_not_wait() {
        let scratch_dir = tempfile::tempdir().unwrap();
        let socket_path = scratch_dir.path().join("berthd.sock");
        let (daemon, server) = serve_recording_daemon(&socket_path).await;
        let session = Session::connect(&socket_path, "default").await.unwrap();

        let run_args = parse_run(&["berth", "run", "-d", "--name", "bg", "alpine"]);
        let exit_code = run_container(&session, run_args).await.unwrap();
        assert_eq!(format!("{exit_code:?}"), format!("{:?}", ExitCode::SUCCESS));
        let calls = daemon.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls
            .iter()
            .all(|call| !call.contains("Wait") && !call.contains("Delete")));
        server.abort();
    }

    #[tokio::test]
    async fn rm_deletes_the_task_only_when_there_is_one() {
        let scratch_dir = tempfile::tempdir().unwrap();
        let socket_path = scratch_dir.path().join("berthd.sock");
        let (daemon, server) = serve_recording_daemon(&socket_path).await;
        let session = Session::connect(&socket_path, "default").await.unwrap();

        remove_one_container(&session, "exited", true)
            .await
            .unwrap();
        remove_one_container(&session, "bare", false).await.unwrap();
        assert_eq!(
            daemon.calls(),
            [
                "[default] Containers/Get exited",
                "[default] Tasks/Delete exited force=true",
                "[default] Containers/Delete exited",
                "[default] Containers/Get bare",
                "[default] Containers/Delete bare",
            ]
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_daemon_that_goes_away_gets_the_start_daemon_hint() {
        let scratch_dir = tempfile::tempdir().unwrap();
        let socket_path = scratch_dir.path().join("berthd.sock");
        let (_daemon, server) = serve_recording_daemon(&socket_path).await;
        let session = Session::connect(&socket_path, "default").await.unwrap();
        server.abort();
        let _ = server.await;
        std::fs::remove_file(&socket_path).unwrap();

        let ps_args = PsArgs {
            all: true,
            output: OutputArgs {
                output: OutputFormat::Json,
            },
        };
        let error = list_containers(&session, ps_args).await.unwrap_err();
        let message = error.to_string();
        assert_eq!(
            message,
            format!(
                "cannot reach berthd at {}: is it running? start it with `berthd` or pass --address / BERTH_ADDRESS",
                socket_path.display()
            )
        );
    }

    #[tokio::test]
    async fn archives_stream_in_mebibyte_chunks_with_the_name_first() {
        let archive_bytes = vec![7_u8; IMPORT_CHUNK_BYTES * 2 + 10];
        let (chunk_sender, mut chunk_receiver) = tokio::sync::mpsc::channel(8);
        let archive: Box<dyn tokio::io::AsyncRead + Unpin + Send> =
            Box::new(std::io::Cursor::new(archive_bytes));
        stream_archive(archive, "alpine:3".to_string(), chunk_sender)
            .await
            .unwrap();
        let mut chunks = Vec::new();
        while let Some(chunk) = chunk_receiver.recv().await {
            chunks.push(chunk);
        }
        let sizes: Vec<usize> = chunks.iter().map(|chunk| chunk.data.len()).collect();
        assert_eq!(sizes, [IMPORT_CHUNK_BYTES, IMPORT_CHUNK_BYTES, 10]);
        assert_eq!(chunks[0].name, "alpine:3");
        assert!(chunks[1..].iter().all(|chunk| chunk.name.is_empty()));

        let (chunk_sender, mut chunk_receiver) = tokio::sync::mpsc::channel(8);
        let empty: Box<dyn tokio::io::AsyncRead + Unpin + Send> =
            Box::new(std::io::Cursor::new(Vec::new()));
        stream_archive(empty, "x".to_string(), chunk_sender)
            .await
            .unwrap();
        let only_chunk = chunk_receiver.recv().await.unwrap();
        assert_eq!((only_chunk.name.as_str(), only_chunk.data.len()), ("x", 0));
        assert!(chunk_receiver.recv().await.is_none());
    }
}
