//! `berth completion SHELL` and the hidden `berth man DIR`: shell completions and man pages
//! generated from the clap tree this very binary parses, so they never describe another build.
//! scripts/install.sh runs both (and the same for berthd and berth-replay) when it installs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::session::CliError;

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell to complete for, e.g. `berth completion bash > /etc/bash_completion.d/berth`
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// The directory to write berth.1 and one page per verb (berth-run.1, berth-image-pull.1, …) into
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn print_completion(completion_args: &CompletionArgs, mut command: clap::Command) -> Result<ExitCode, CliError> {
    let mut script = Vec::new();
    clap_complete::generate(completion_args.shell, &mut command, "berth", &mut script);
    crate::output::print_stdout(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

pub fn write_man_pages(man_args: &ManArgs, command: clap::Command) -> Result<ExitCode, CliError> {
    std::fs::create_dir_all(&man_args.dir)
        .and_then(|()| clap_mangen::generate_to(command, &man_args.dir))
        .map_err(|source| CliError::WriteFile { path: man_args.dir.clone(), source })?;
    Ok(ExitCode::SUCCESS)
}
