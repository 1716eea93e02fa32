//! A task's stdin when its container was created with `-i`: a FIFO in the task directory.
//!
//! berthd makes the FIFO before the monitor starts. The monitor opens it twice: read-only as the
//! container's stdin (runc hands that descriptor to the container's process as it is), and
//! read-write as a *keeper*, a write end that keeps the container from reading EOF while no
//! client is writing — before the first `berth run -i` stream arrives, between attaches, and
//! across a restart of berthd (the FIFO and the monitor outlive it). A client's stream is
//! copied into the FIFO by berthd (`Tasks/WriteStdin`); when the client ends it, berthd asks the
//! monitor to drop the keeper ([`CLOSE_STDIN_SIGNAL`]), and the container reads EOF as soon as
//! the last writer has closed. The data never passes through the monitor, and the FIFO's pipe
//! buffer (64 KiB) is all that is ever buffered: a writer waits for the container to read.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::sys::process::{open_pidfd, signal_pidfd};
use crate::tasks::task_dir::TaskDir;

/// The FIFO's name in the task directory.
pub const STDIN_FIFO: &str = "stdin";

/// Sent by berthd to a task's monitor: drop the keeper write end of the stdin FIFO.
pub const CLOSE_STDIN_SIGNAL: Signal = Signal::SIGUSR1;

#[derive(Debug, thiserror::Error)]
pub enum StdinError {
    #[error("could not make the stdin fifo {}: {source}; check that berthd's root directory is writable", path.display())]
    MakeFifo { path: PathBuf, source: std::io::Error },

    #[error("the task's stdin is closed: a client already ended it, or the task has exited")]
    Closed,

    #[error("could not open the stdin fifo {}: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },

    #[error("could not signal the task's monitor to close stdin: {source}")]
    Signal { source: std::io::Error },
}

/// Makes the task's stdin FIFO (0600), replacing one an earlier task left.
pub fn make_stdin_fifo(task_dir: &TaskDir) -> Result<PathBuf, StdinError> {
    task_dir.make_fifo(STDIN_FIFO).map_err(|source| StdinError::MakeFifo { path: task_dir.file(STDIN_FIFO), source })
}

/// A writer for the task's stdin. Refused with [`StdinError::Closed`] once nothing reads it any
/// more (the container and the monitor's keeper are gone), rather than waiting for a reader.
pub fn open_stdin_writer(task_dir: &TaskDir) -> Result<tokio::net::unix::pipe::Sender, StdinError> {
    let path = task_dir.file(STDIN_FIFO);
    match tokio::net::unix::pipe::OpenOptions::new().open_sender(&path) {
        Ok(sender) => Ok(sender),
        // ENXIO: a FIFO without a reader; ENOENT: the task directory is gone with its task.
        Err(error) if matches!(error.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOENT)) => Err(StdinError::Closed),
        Err(source) => Err(StdinError::Open { path, source }),
    }
}

/// Asks the task's monitor to drop its keeper, so the container reads EOF once the last writer
/// has closed. A monitor that is gone has no keeper left to drop.
pub fn close_stdin(task_dir: &TaskDir) -> Result<(), StdinError> {
    let Some(monitor) = task_dir.monitor_identity() else {
        return Ok(());
    };
    let pidfd = match open_pidfd(monitor.monitor_pid) {
        Ok(pidfd) => pidfd,
        Err(error) if error.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(source) => return Err(StdinError::Signal { source }),
    };
    // Checked once the pidfd pins the process, so a recycled pid is never signalled.
    if !monitor.is_alive() {
        return Ok(());
    }
    signal_pidfd(&pidfd, CLOSE_STDIN_SIGNAL as libc::c_int).map_err(|source| StdinError::Signal { source })
}

/// The keeper's descriptor while the monitor holds it, -1 once dropped.
static STDIN_KEEPER_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn drop_stdin_keeper(_signal: libc::c_int) {
    let keeper_fd = STDIN_KEEPER_FD.swap(-1, Ordering::SeqCst);
    if keeper_fd >= 0 {
        // SAFETY: close is async-signal-safe, and the swap above makes this the only close of
        // a descriptor the monitor gave up ownership of in `open_for_container`.
        unsafe { libc::close(keeper_fd) };
    }
}

/// Installs the monitor's handler for [`CLOSE_STDIN_SIGNAL`], which drops the keeper from the
/// handler itself, so no signal is lost while the monitor sits in waitpid. Every monitor
/// installs it, with or without a stdin FIFO: the signal's default action would end it.
pub fn install_close_stdin_handler() -> std::io::Result<()> {
    let handler = SigAction::new(SigHandler::Handler(drop_stdin_keeper), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler only swaps an atomic and closes a descriptor, both async-signal-safe.
    unsafe { sigaction(CLOSE_STDIN_SIGNAL, &handler) }.map(drop).map_err(std::io::Error::from)
}

/// The monitor's half: opens the keeper (dropped by the handler above) and returns the read end
/// to give the container as its stdin.
pub fn open_for_container(fifo_path: &Path) -> std::io::Result<File> {
    // O_RDWR on a FIFO opens at once on Linux and counts as a writer; it must come first, or
    // the read-only open below would wait for a writer.
    let keeper: OwnedFd = File::options().read(true).write(true).open(fifo_path)?.into();
    let reader = File::open(fifo_path)?;
    STDIN_KEEPER_FD.store(std::os::fd::IntoRawFd::into_raw_fd(keeper), Ordering::SeqCst);
    Ok(reader)
}
