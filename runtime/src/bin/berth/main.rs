//! `berth`, the command-line client of berthd: run, list, signal and remove containers, manage
//! images and namespaces, and read the event log — each subcommand is a few gRPC calls.
//!
//! This file parses the command line, connects once and hands the session to the verb's
//! handler; each verb group has its own file, and everything printed goes through `output`.

mod args;
mod attach;
mod blob_progress;
mod completion;
mod containers;
mod credentials;
mod events;
mod exec;
#[cfg(test)]
mod flag_tests;
mod images;
mod login;
mod namespaces;
mod network_args;
mod networks;
mod output;
mod policy_args;
mod pull;
mod push;
#[cfg(test)]
mod recording_daemon;
mod run;
mod session;
mod stats;
mod stdin;
mod storage_args;
mod system;
mod task_ops;
mod terminal;
mod version;
mod volumes;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command, ImageCommand, NamespaceCommand, SystemCommand};
use crate::session::{CliError, Session};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
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

/// A command with the part that needs no daemon already done.
enum Ready {
    /// The archive is open: a typo in its path is the likelier mistake, so it is reported
    /// before (and instead of) any trouble reaching berthd.
    ImageImport(images::ImportJob),
    /// Boxed: `run`'s flags make a `Command` large.
    Other(Box<Command>),
}

async fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    let Cli { address, namespace, command } = cli;
    let ready = match command {
        Command::Image(ImageCommand::Import(import_args)) => {
            Ready::ImageImport(images::ImportJob::open(import_args).await?)
        }
        // Need no daemon: they only edit the caller's own credentials file, or print.
        Command::Logout(logout_args) => return login::logout(logout_args),
        Command::Completion(completion_args) => return completion::print_completion(&completion_args, Cli::command()),
        Command::Man(man_args) => return completion::write_man_pages(&man_args, Cli::command()),
        Command::Version(output_args) => {
            // berth's own version is useful even when berthd cannot be reached.
            version::print_client_version(output_args.output)?;
            Ready::Other(Box::new(Command::Version(output_args)))
        }
        other => Ready::Other(Box::new(other)),
    };
    let session = Session::connect(&address, &namespace).await?;
    match ready {
        Ready::ImageImport(import_job) => images::import_image(&session, import_job).await,
        Ready::Other(command) => run_connected(&session, *command).await,
    }
}

async fn run_connected(session: &Session, command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Run(run_args) => run::run_container(session, run_args).await,
        Command::Create(create_args) => containers::create_container_only(session, create_args).await,
        Command::Start(start_args) => containers::start_container(session, start_args).await,
        Command::Ps(ps_args) => containers::list_containers(session, ps_args).await,
        Command::Logs(logs_args) => run::print_logs(session, logs_args).await,
        Command::Attach(attach_args) => attach::attach_to_container(session, attach_args).await,
        Command::Exec(exec_args) => exec::exec_in_container(session, exec_args).await,
        Command::Kill(kill_args) => containers::kill_task(session, kill_args).await,
        Command::Pause(freeze_args) => task_ops::pause_or_resume(session, freeze_args, false).await,
        Command::Resume(freeze_args) => task_ops::pause_or_resume(session, freeze_args, true).await,
        Command::Stop(stop_args) => task_ops::stop_containers(session, stop_args).await,
        Command::Top(top_args) => stats::top(session, top_args).await,
        Command::Stats(stats_args) => stats::stats(session, stats_args).await,
        Command::Wait(wait_args) => containers::wait_task(session, wait_args).await,
        Command::Rm(rm_args) => containers::remove_containers(session, rm_args).await,
        Command::Update(update_args) => policy_args::update_containers(session, update_args).await,
        Command::Image(ImageCommand::Import(import_args)) => {
            // `dispatch` opens the archive before connecting; this arm only keeps the match
            // whole, and does the same two steps in the same order.
            images::import_image(session, images::ImportJob::open(import_args).await?).await
        }
        Command::Image(ImageCommand::Pull(pull_args)) => pull::pull_image(session, pull_args).await,
        Command::Image(ImageCommand::Push(push_args)) => push::push_image(session, push_args).await,
        Command::Login(login_args) => login::login(session, login_args).await,
        Command::Logout(logout_args) => login::logout(logout_args),
        Command::Completion(completion_args) => completion::print_completion(&completion_args, Cli::command()),
        Command::Man(man_args) => completion::write_man_pages(&man_args, Cli::command()),
        Command::Image(ImageCommand::Export(export_args)) => images::export_images(session, export_args).await,
        Command::Image(ImageCommand::Tag(tag_args)) => images::tag_image(session, tag_args).await,
        Command::Image(ImageCommand::Inspect(inspect_args)) => images::inspect_image(session, inspect_args).await,
        Command::Image(ImageCommand::Ls(output_args)) => images::list_images(session, output_args.output).await,
        Command::Image(ImageCommand::Rm(image_rm_args)) => images::remove_images(session, image_rm_args).await,
        Command::Image(ImageCommand::Prune(prune_args)) => images::prune_images(session, prune_args).await,
        Command::System(SystemCommand::Df(output_args)) => system::print_disk_usage(session, output_args.output).await,
        Command::Events(events_args) => events::print_events(session, events_args).await,
        Command::Version(output_args) => version::print_server_version(session, output_args.output).await,
        Command::Namespace(NamespaceCommand::Ls(output_args)) => {
            namespaces::list_namespaces(session, output_args.output).await
        }
        Command::Namespace(NamespaceCommand::Create(create_args)) => {
            namespaces::create_namespace(session, create_args).await
        }
        Command::Namespace(NamespaceCommand::Rm(namespace_rm_args)) => {
            namespaces::remove_namespaces(session, namespace_rm_args).await
        }
        Command::Volume(volume_command) => volumes::run_volume_command(session, volume_command).await,
        Command::Network(network_command) => networks::run_network_command(session, network_command).await,
        Command::Inspect(inspect_args) => containers::inspect_containers(session, inspect_args).await,
    }
}
