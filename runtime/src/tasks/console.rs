//! A `-t` task's pseudo-terminal. runc makes the pty inside the container and sends its master
//! over the console socket (`--console-socket`, SCM_RIGHTS) to the monitor, which keeps it for
//! the container's whole life: it copies what the container writes to `stdout.log` through the
//! same record writer as piped output (`tasks::output_log`: timestamped records, rotated; a
//! read that ends mid-line is written at once as a partial record, so echo is not held back
//! until a newline), so `berth logs`, `berth run -t` and `attach` read it like any output; copies the `-i` stdin FIFO into it, and
//! applies window sizes berthd writes to the `resize` FIFO. Nothing here needs berthd to stay
//! up: the FIFOs and the master outlive it, as the container does.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::tasks::output_log::{self, RotatingWriter};
use crate::tasks::task_dir::TaskDir;

/// The socket runc sends the pty master to, in the task directory.
pub const CONSOLE_SOCKET: &str = "console.sock";

/// The FIFO berthd writes window sizes to (`ROWS COLS\n`, one write each).
pub const RESIZE_FIFO: &str = "resize";

/// Stack of each copying thread: they hold one buffer on the heap and call read and write.
const COPY_THREAD_STACK_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("could not make the resize fifo {}: {source}; check that berthd's root directory is writable", path.display())]
    MakeFifo { path: PathBuf, source: std::io::Error },

    #[error("the task's terminal is gone: its monitor has exited")]
    Gone,

    #[error("could not pass the window size to the task's monitor through {}: {source}", path.display())]
    Resize { path: PathBuf, source: std::io::Error },
}

/// Makes the resize FIFO (0600), replacing one an earlier task left.
pub fn make_resize_fifo(task_dir: &TaskDir) -> Result<PathBuf, ConsoleError> {
    task_dir
        .make_fifo(RESIZE_FIFO)
        .map_err(|source| ConsoleError::MakeFifo { path: task_dir.file(RESIZE_FIFO), source })
}

/// berthd's half: asks the monitor to set the window size. One short write, so it is atomic
/// (well under PIPE_BUF) and never waits: without a monitor reading, it is refused at once.
pub fn request_resize(task_dir: &TaskDir, rows: u16, cols: u16) -> Result<(), ConsoleError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = task_dir.file(RESIZE_FIFO);
    let opened = File::options().write(true).custom_flags(libc::O_NONBLOCK).open(&path);
    let mut fifo = match opened {
        Ok(fifo) => fifo,
        Err(error) if matches!(error.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOENT)) => {
            return Err(ConsoleError::Gone)
        }
        Err(source) => return Err(ConsoleError::Resize { path, source }),
    };
    fifo.write_all(format!("{rows} {cols}\n").as_bytes()).map_err(|source| ConsoleError::Resize { path, source })
}

/// The monitor's half, before runc runs: the socket runc will connect to.
pub fn listen_for_console(task_dir: &Path) -> std::io::Result<(UnixListener, PathBuf)> {
    let socket_path = task_dir.join(CONSOLE_SOCKET);
    match std::fs::remove_file(&socket_path) {
        Err(error) if error.kind() != ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    Ok((UnixListener::bind(&socket_path)?, socket_path))
}

/// After runc has created the container: takes the master runc sent (it connected and sent it
/// before exiting, so this does not wait) and removes the socket.
pub fn receive_console(listener: UnixListener, socket_path: &Path) -> std::io::Result<OwnedFd> {
    listener.set_nonblocking(true)?;
    let accepted = listener.accept();
    let _ = std::fs::remove_file(socket_path);
    let (connection, _) = accepted.map_err(|error| {
        std::io::Error::new(error.kind(), format!("runc did not send the terminal to the console socket: {error}"))
    })?;
    connection.set_nonblocking(false)?;
    let mut name_buffer = [0u8; 4096];
    let mut io_slices = [std::io::IoSliceMut::new(&mut name_buffer)];
    let mut control_buffer = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let message =
        recvmsg::<()>(connection.as_raw_fd(), &mut io_slices, Some(&mut control_buffer), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(std::io::Error::from)?;
    for control_message in message.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = control_message {
            if let Some(&master_fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor in our table for us alone.
                return Ok(unsafe { OwnedFd::from_raw_fd(master_fd) });
            }
        }
    }
    Err(std::io::Error::other("runc connected to the console socket but sent no terminal"))
}

/// Threads that serve the terminal for the container's life. [`ConsoleCopiers::finish`] waits
/// for the output copy to drain (it ends when the last process holding the terminal is gone).
pub struct ConsoleCopiers {
    output: Option<std::thread::JoinHandle<()>>,
}

impl ConsoleCopiers {
    /// Starts copying: master → `output` (records in `stdout.log`); `input` (the `-i` FIFO's read end) → master; window
    /// sizes from the resize FIFO → master.
    pub fn start(
        master: OwnedFd,
        mut output: RotatingWriter,
        input: Option<File>,
        resize_fifo: &Path,
    ) -> std::io::Result<ConsoleCopiers> {
        let master = File::from(master);
        let master_for_output = master.try_clone()?;
        // Reading a master whose every slave descriptor is closed fails with EIO: that is the
        // terminal's end, not an error, so the copy's result is not looked at.
        let output_thread = spawn_copier("console-out", move || {
            let _ = output_log::copy_stream(master_for_output, &mut output);
        })?;
        if let Some(input) = input {
            let master_for_input = master.try_clone()?;
            spawn_copier("console-in", move || copy_until_end(input, master_for_input))?;
        }
        // O_RDWR: the FIFO never reads EOF between berthd's writes.
        let resize_reader = File::options().read(true).write(true).open(resize_fifo)?;
        spawn_copier("console-size", move || apply_window_sizes(resize_reader, master))?;
        Ok(ConsoleCopiers { output: Some(output_thread) })
    }

    /// Waits until everything the container wrote to its terminal is in `stdout.log`.
    pub fn finish(mut self) {
        if let Some(output_thread) = self.output.take() {
            let _ = output_thread.join();
        }
    }
}

fn spawn_copier(name: &str, work: impl FnOnce() + Send + 'static) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_string()).stack_size(COPY_THREAD_STACK_BYTES).spawn(work)
}

/// Copies until the source ends. Reading a master whose every slave descriptor is closed fails
/// with EIO: that is the terminal's end, not an error.
fn copy_until_end(mut source: File, mut sink: File) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match source.read(&mut buffer) {
            Ok(0) => return,
            Ok(n_read) => {
                if sink.write_all(&buffer[..n_read]).is_err() {
                    return;
                }
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

fn apply_window_sizes(resize_reader: File, master: File) {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::with_capacity(256, resize_reader);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut numbers = line.split_whitespace().map(str::parse::<u16>);
        if let (Some(Ok(rows)), Some(Ok(cols))) = (numbers.next(), numbers.next()) {
            let window_size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
            // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &window_size) };
        }
    }
}
