//! `berth stats` as a stream: on a terminal the table is redrawn in place once a second (the
//! screen cleared once, then the cursor sent home and each line overwritten), into a pipe each
//! sample is appended as its own table, and a reader that goes away ends the stream.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_tests::Daemon;
use nix::pty::{openpty, Winsize};

/// Only a guard against a hang: each sample comes about a second after the last.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

const CLEAR_SCREEN: &str = "\x1b[2J";
const CURSOR_HOME: &str = "\x1b[H";
const CLEAR_TO_SCREEN_END: &str = "\x1b[J";

/// Ends the stream, which runs until it is stopped. (SIGKILL: SIGINT may be ignored when the
/// tests run as a background job, and what Ctrl-C does is not what this file tests.)
fn stop(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn start_watched(daemon: &Daemon) {
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "watched", "busybox", "sleep", "1000"]);
}

#[test]
fn stats_into_a_pipe_appends_one_table_per_sample_and_stops_when_the_reader_goes() {
    let daemon = Daemon::start();
    start_watched(&daemon);
    let mut child = daemon.berth().args(["stats"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut text = String::new();
    // Three whole samples, the tables apart by one blank line: read until a fourth begins.
    loop {
        let line = lines.next().expect("berth stats ended early").unwrap();
        if line.starts_with("ID ") && text.matches("ID ").count() == 3 {
            break;
        }
        text.push_str(&line);
        text.push('\n');
    }
    assert!(!text.contains('\x1b'), "terminal control codes went into a pipe:\n{text:?}");
    let tables: Vec<&str> = text.trim_end().split("\n\n").collect();
    assert_eq!(tables.len(), 3, "{text}");
    for table in &tables {
        assert!(table.starts_with("ID "), "{table}");
        assert!(table.lines().any(|line| line.starts_with("watched ")), "{table}");
    }

    // `berth stats | head -3`: once the reader is gone the next write ends the stream.
    drop(lines);
    let deadline = Instant::now() + STREAM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "berth stats kept running with nobody reading it");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    daemon.ok(&["rm", "-f", "watched"]);
}

#[test]
fn stats_on_a_terminal_redraws_its_table_in_place() {
    let daemon = Daemon::start();
    start_watched(&daemon);
    let window = Winsize { ws_row: 24, ws_col: 120, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = openpty(Some(&window), None).unwrap();
    let child = daemon.berth().args(["stats"]).stdout(Stdio::from(pty.slave)).spawn().unwrap();
    let mut master = std::fs::File::from(pty.master);
    let (sender, received) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n_read) = master.read(&mut buffer) {
            if n_read == 0 || sender.send(buffer[..n_read].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = String::new();
    let deadline = Instant::now() + STREAM_TIMEOUT;
    let mut stopped_watched = false;
    // Three frames with the container, then it goes and the next frame must not show it.
    loop {
        let frames: Vec<&str> =
            screen.split(CURSOR_HOME).skip(1).filter(|frame| frame.ends_with(CLEAR_TO_SCREEN_END)).collect();
        if frames.len() >= 3 && !stopped_watched {
            daemon.ok(&["rm", "-f", "watched"]);
            stopped_watched = true;
            screen.push_str("<removed>");
        }
        if stopped_watched {
            let after = screen.split("<removed>").nth(1).unwrap_or_default();
            let frames_after: Vec<&str> =
                after.split(CURSOR_HOME).skip(1).filter(|frame| frame.ends_with(CLEAR_TO_SCREEN_END)).collect();
            if let Some(frame) = frames_after.iter().find(|frame| !frame.contains("watched")) {
                // The table's rows gone: only the header is drawn, and the rest of the screen cleared.
                assert!(frame.starts_with("ID "), "{frame:?}");
                break;
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(!remaining.is_zero(), "no redrawn frame without the removed container:\n{screen:?}");
        if let Ok(bytes) = received.recv_timeout(remaining) {
            screen.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    stop(child);

    // The screen is cleared once, at the first frame; every frame starts from the top left and
    // overwrites its lines (each cleared to its end), so nothing scrolls.
    assert_eq!(screen.matches(CLEAR_SCREEN).count(), 1, "{screen:?}");
    assert!(screen.starts_with(&format!("{CLEAR_SCREEN}{CURSOR_HOME}")), "{screen:?}");
    let first_frame = screen.split(CURSOR_HOME).nth(1).unwrap();
    let lines: Vec<&str> = first_frame.trim_end_matches(CLEAR_TO_SCREEN_END).split("\r\n").collect();
    assert!(lines[0].starts_with("ID ") && lines[0].ends_with("\x1b[K"), "{first_frame:?}");
    assert!(lines.iter().any(|line| line.starts_with("watched ")), "{first_frame:?}");
}
