//! `-t` on our side: the local terminal in raw mode while attached (keys go to the container
//! as they are typed, Ctrl-C included), restored on every way out, and its size passed on at
//! the start and on each SIGWINCH.

use std::os::fd::AsFd;

use berth_runtime::api;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::signal::unix::{signal, SignalKind};

use crate::session::{CliError, Session};

/// Refuses `-t` before anything is created when our stdin is not a terminal.
pub fn require_local_terminal() -> Result<(), CliError> {
    if nix::unistd::isatty(std::io::stdin().as_fd()).unwrap_or(false) {
        Ok(())
    } else {
        Err(CliError::NotATerminal)
    }
}

/// The terminal's settings before raw mode; put back when dropped (a return, an error, a
/// panic's unwinding, or the signal arms of `run` that end it).
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enter() -> Result<RawMode, CliError> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).map_err(|errno| CliError::Terminal(errno.into()))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).map_err(|errno| CliError::Terminal(errno.into()))?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // TCSADRAIN: what the container printed last is shown before the echo comes back.
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Our terminal's size as (rows, columns), if stdin is a terminal that knows it.
fn local_window_size() -> Option<(u32, u32)> {
    let mut window_size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which outlives the call.
    let result = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut window_size) };
    (result == 0 && window_size.ws_row > 0).then_some((u32::from(window_size.ws_row), u32::from(window_size.ws_col)))
}

/// Sends our window size now and after every SIGWINCH, until aborted.
pub fn spawn_window_size_forwarder(
    session: &Session,
    container_id: &str,
    exec_id: &str,
) -> Result<tokio::task::JoinHandle<()>, CliError> {
    let mut window_changes = signal(SignalKind::window_change()).map_err(CliError::InstallSignalHandler)?;
    let mut tasks = session.tasks();
    let make_request = {
        let (container_id, exec_id) = (container_id.to_string(), exec_id.to_string());
        let session_request = session.request_maker();
        move |(rows, cols)| {
            session_request(api::ResizeTerminalRequest {
                container_id: container_id.clone(),
                rows,
                cols,
                exec_id: exec_id.clone(),
            })
        }
    };
    Ok(tokio::spawn(async move {
        loop {
            if let Some(size) = local_window_size() {
                // A lost resize only leaves the old size; the next SIGWINCH tries again.
                let _ = tasks.resize_terminal(make_request(size)).await;
            }
            if window_changes.recv().await.is_none() {
                return;
            }
        }
    }))
}
