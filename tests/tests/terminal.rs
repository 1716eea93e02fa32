//! `berth run -it` driven through a real pseudo-terminal that this test opens, as a person at a
//! terminal would: keys typed (Ctrl-C included) reach the container and are echoed by its own
//! terminal, the window size is passed on at the start and when it changes, the local terminal
//! is back in its own mode afterwards, and what the container printed is in `berth logs`.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use berth_tests::Daemon;
use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, LocalFlags};

/// Only a guard against a hang: every wait ends as soon as the text shows up.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything berth wrote to the terminal so far, filled by a reader thread.
struct Screen {
    master: std::fs::File,
    seen: Arc<(Mutex<Vec<u8>>, Condvar)>,
}

impl Screen {
    fn type_keys(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.0.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` is on the screen after byte `from`; returns where it ends.
    fn wait_for(&self, needle: &str, from: usize) -> usize {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        let (lock, changed) = &*self.seen;
        let mut seen = lock.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&seen[from.min(seen.len())..]).into_owned();
            if let Some(at) = text.find(needle) {
                return from + at + needle.len();
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "{needle:?} never showed up; the screen holds:\n{}",
                String::from_utf8_lossy(&seen)
            );
            seen = changed.wait_timeout(seen, deadline - now).unwrap().0;
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        let window_size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        assert_eq!(unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &window_size) }, 0);
    }
}

/// Starts `berth ARGS` with a new pseudo-terminal of `rows`×`cols` as its controlling terminal
/// and stdio, as a shell in a terminal window would.
fn spawn_in_terminal(daemon: &Daemon, args: &[&str], rows: u16, cols: u16) -> (Screen, Child, OwnedFd) {
    let window = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = openpty(Some(&window), None).unwrap();
    let mut command = daemon.berth();
    command
        .args(args)
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    let master = std::fs::File::from(pty.master);
    let seen = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let mut reader = master.try_clone().unwrap();
    let filled = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n_read) = reader.read(&mut buffer) {
            if n_read == 0 {
                break;
            }
            let Ok(mut seen) = filled.0.lock() else { break };
            seen.extend_from_slice(&buffer[..n_read]);
            drop(seen);
            filled.1.notify_all();
        }
    });
    (Screen { master, seen }, child, pty.slave)
}

#[test]
fn run_it_is_a_terminal_that_takes_keys_resizes_and_keeps_its_output() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let (mut screen, mut child, slave) =
        spawn_in_terminal(&daemon, &["run", "-it", "--name", "shell", "busybox", "sh"], 30, 100);

    screen.type_keys("tty; stty size\r");
    let mut at = screen.wait_for("/dev/pts/", 0);
    at = screen.wait_for("30 100", at);

    // Keys are echoed by the container's terminal and its shell sees them as typed.
    screen.type_keys("echo he''llo-from-keys\r");
    at = screen.wait_for("hello-from-keys", at);

    // Ctrl-C is a key like any other: it interrupts the container's foreground program, not
    // berth. The prompt and the echo of typed keys cannot tell whether the sleep runs yet (the
    // shell redraws its prompt and the line), so the container's process list says when it has
    // started and when the interrupt ended it. A ^C that arrives while the shell is still
    // reading the line is only a character to it, so it is sent until the sleep is gone.
    screen.type_keys("sleep 300\r");
    let sleep_is_running = || daemon.ok(&["top", "shell"]).contains("sleep 300");
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    while !sleep_is_running() {
        assert!(Instant::now() < deadline, "the sleep never started:\n{}", screen.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    while sleep_is_running() {
        assert!(Instant::now() < deadline, "Ctrl-C never interrupted the sleep:\n{}", screen.text());
        screen.type_keys("\x03");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Only the shell's answer holds "after-42"; the echo of the typed line holds the sum.
    screen.type_keys("echo after-$((40+2))\r");
    at = screen.wait_for("after-42", at);

    // A new window size reaches the container (SIGWINCH → berth → monitor → TIOCSWINSZ). The
    // keys and the resize travel separately, so ask until the answer is the new size.
    screen.resize(40, 120);
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    while !screen.text()[at..].contains("40 120") {
        assert!(Instant::now() < deadline, "the new size never arrived:\n{}", screen.text());
        screen.type_keys("stty size\r");
        std::thread::sleep(Duration::from_millis(200));
    }

    screen.type_keys("exit 3\r");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{}", screen.text());

    // The local terminal is back in the mode it had: echo and line editing on.
    let local_flags = tcgetattr(slave.as_fd()).unwrap().local_flags;
    assert!(local_flags.contains(LocalFlags::ECHO | LocalFlags::ICANON), "{local_flags:?}");

    let logs = daemon.ok(&["logs", "shell"]);
    assert!(logs.contains("30 100") && logs.contains("hello-from-keys"), "{logs}");
    daemon.ok(&["rm", "shell"]);
}

#[test]
fn t_without_a_local_terminal_is_refused_before_anything_is_created() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let refused = daemon.cli(&["run", "-it", "--rm", "busybox", "true"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("the input is not a terminal, and -t needs one"), "{stderr}");
    assert!(daemon.ps().is_empty());
    let all = daemon.ok(&["ps", "-a", "--output", "json"]);
    assert_eq!(all.trim(), "[]");
}

#[test]
fn exec_it_is_a_terminal_too_with_its_own_size_and_exit_code() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "600"]);
    let (mut screen, mut child, slave) = spawn_in_terminal(&daemon, &["exec", "-it", "box", "sh"], 25, 90);

    screen.type_keys("tty; stty size; echo $TERM\r");
    let mut at = screen.wait_for("/dev/pts/", 0);
    at = screen.wait_for("25 90", at);
    at = screen.wait_for("xterm", at);
    screen.resize(50, 160);
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    while !screen.text()[at..].contains("50 160") {
        assert!(Instant::now() < deadline, "the new size never arrived:\n{}", screen.text());
        screen.type_keys("stty size\r");
        std::thread::sleep(Duration::from_millis(200));
    }
    screen.type_keys("exit 4\r");
    assert_eq!(child.wait().unwrap().code(), Some(4), "{}", screen.text());
    let local_flags = tcgetattr(slave.as_fd()).unwrap().local_flags;
    assert!(local_flags.contains(LocalFlags::ECHO | LocalFlags::ICANON), "{local_flags:?}");
    daemon.ok(&["rm", "-f", "box"]);
}

#[test]
fn attach_reaches_a_detached_terminal_and_ctrl_p_ctrl_q_leaves_it_running() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "-it", "--name", "shell", "busybox", "sh"]);

    let (mut screen, mut child, _slave) = spawn_in_terminal(&daemon, &["attach", "shell"], 24, 80);
    // Typed until the shell answers: keys sent before attach's stdin stream is set up are ours
    // to repeat, not the container's to lose.
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    while !screen.text().contains("attached-one") {
        assert!(Instant::now() < deadline, "the attached shell never answered:\n{}", screen.text());
        screen.type_keys("echo attached-o''ne\r");
        std::thread::sleep(Duration::from_millis(300));
    }
    screen.type_keys("\x10\x11");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", screen.text());
    screen.wait_for("detached from shell", 0);
    let running = daemon.ps();
    assert_eq!(running.len(), 1, "{running:?}");

    // Attach again: the same shell, stdin still open; its exit ends the attach with its code.
    let (mut screen, mut child, _slave) = spawn_in_terminal(&daemon, &["attach", "shell"], 24, 80);
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the shell never took exit:\n{}", screen.text());
        screen.type_keys("exit 6\r");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(child.wait().unwrap().code(), Some(6), "{}", screen.text());
    daemon.ok(&["rm", "shell"]);
}
