//! `berth login` and `berth logout`: credentials checked by berthd against the registry's /v2/
//! (through its hosts.toml), then saved in the caller's own credentials file (`credentials`).

use std::io::BufRead;
use std::process::ExitCode;

use berth_runtime::api;
use berth_runtime::images::registry::reference::normalise_registry_host;

use crate::args::{LoginArgs, LogoutArgs};
use crate::credentials::{self, SavedCredentials};
use crate::output::print_stdout;
use crate::session::{CliError, Session};

pub fn registry_host(given: &str) -> Result<String, CliError> {
    normalise_registry_host(given).ok_or_else(|| {
        CliError::Usage(format!("{given:?} is not a registry host; give HOST[:PORT], e.g. docker.io or 127.0.0.1:5000"))
    })
}

/// One line from standard input, without its line end.
fn read_stdin_line() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|source| CliError::ReadFile { path: "standard input".into(), source })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Reads a secret from the terminal with echo off (berth has no other prompt to share it with).
pub fn read_secret_from_terminal(prompt: &str) -> Result<String, CliError> {
    read_from_terminal(prompt, false)
}

fn read_from_terminal(prompt: &str, echo: bool) -> Result<String, CliError> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::Write;
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").map_err(|_| {
        CliError::Usage(
            "no terminal to ask on: give --username and --password-stdin to login, or --user USER:PASSWORD to pull"
                .into(),
        )
    })?;
    let saved = tcgetattr(&tty).map_err(|error| CliError::Usage(format!("cannot use the terminal: {error}")))?;
    let mut silent = saved.clone();
    if !echo {
        silent.local_flags.remove(LocalFlags::ECHO);
    }
    tcsetattr(&tty, SetArg::TCSANOW, &silent)
        .map_err(|error| CliError::Usage(format!("cannot use the terminal: {error}")))?;
    let _ = write!(&tty, "{prompt}");
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, SetArg::TCSANOW, &saved);
    if !echo {
        let _ = writeln!(&tty);
    }
    read.map_err(|source| CliError::ReadFile { path: "/dev/tty".into(), source })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub async fn login(session: &Session, login_args: LoginArgs) -> Result<ExitCode, CliError> {
    let host = registry_host(&login_args.host)?;
    let username = match login_args.username {
        Some(username) => username,
        None => read_from_terminal("Username: ", true)?,
    };
    let password =
        if login_args.password_stdin { read_stdin_line()? } else { read_secret_from_terminal("Password: ")? };
    if username.is_empty() || password.is_empty() {
        return Err(CliError::Usage("a user name and a password are both needed".into()));
    }
    let request = api::CheckRegistryLoginRequest {
        host: host.clone(),
        plain_http: login_args.plain_http,
        credentials: Some(api::RegistryCredentials { username: username.clone(), password: password.clone() }),
    };
    let answer = session.images().check_registry_login(session.request(request)).await.map_err(session.rpc_error())?;
    let path = credentials::store(&host, &SavedCredentials { username, password })?;
    print_stdout(&format!(
        "login succeeded at {}; credentials for {host} saved in {}\n",
        answer.into_inner().endpoint,
        path.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

pub fn logout(logout_args: LogoutArgs) -> Result<ExitCode, CliError> {
    let host = registry_host(&logout_args.host)?;
    if credentials::remove(&host)? {
        print_stdout(&format!("removed the credentials for {host}\n"))?;
    } else {
        print_stdout(&format!("no credentials were saved for {host}\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}
