//! What `berth image pull` and `berth image push` show while they work, read back from a real
//! pseudo-terminal through a terminal emulator (the vt100 crate) as a person would see it: a bar
//! per layer redrawn in place, each left on the screen with its last word when the command
//! ends, the summary on a line of its own below them. Into a pipe: plain lines per layer and no
//! control codes; with --quiet only the name or digest.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};

use berth_tests::registry::Registry;
use berth_tests::Daemon;
use nix::pty::{openpty, Winsize};

const ROWS: u16 = 40;
const COLUMNS: u16 = 200;

/// What a terminal shows after `command` ran on it to the end, and the raw bytes it was sent.
struct Terminal {
    status: ExitStatus,
    raw: Vec<u8>,
    screen: String,
}

fn run_on_a_terminal(mut command: Command) -> Terminal {
    let window = Winsize { ws_row: ROWS, ws_col: COLUMNS, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = openpty(Some(&window), None).unwrap();
    let stdout = pty.slave.try_clone().unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(pty.slave))
        .spawn()
        .expect("spawn berth");
    // The command is the terminal's only writer now: its end closes the terminal, and the
    // master then reads EIO.
    drop(command);
    let mut master = std::fs::File::from(pty.master);
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match master.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => raw.extend_from_slice(&buffer[..read]),
        }
    }
    let status = child.wait().unwrap();
    let mut parser = vt100::Parser::new(ROWS, COLUMNS, 0);
    parser.process(&raw);
    Terminal { status, raw, screen: parser.screen().contents() }
}

/// The 12-hex-digit label the display gives each blob.
fn label(digest: &str) -> String {
    digest.trim_start_matches("sha256:")[..12].to_string()
}

/// The layer digests of `target` as the registry serves it (the display shows layers; the
/// small config blob is counted in the summary only).
fn layers(registry: &Registry, target: &str) -> Vec<String> {
    registry.skopeo_raw(target)["layers"]
        .as_array()
        .expect("a manifest with layers")
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The screen's line for `digest`'s bar.
fn bar_line<'a>(screen: &'a str, digest: &str) -> &'a str {
    let label = label(digest);
    screen
        .lines()
        .find(|line| line.trim_start().starts_with(&label))
        .unwrap_or_else(|| panic!("no bar for {label} on the screen:\n{screen}"))
}

/// A registry serving test image `image` as `local/<image>:1`, a berthd, and that reference.
fn registry_and_daemon(image: &str) -> (Registry, Daemon, String) {
    let registry = Registry::start();
    registry.push(image, &format!("local/{image}:1"));
    let reference = format!("{}/local/{image}:1", registry.host());
    (registry, Daemon::start(), reference)
}

#[test]
fn pull_and_push_draw_a_bar_per_layer_on_a_terminal_and_leave_each_with_its_last_word() {
    let (registry, daemon, reference) = registry_and_daemon("debian");

    let mut pull = daemon.berth();
    pull.args(["image", "pull", &reference]);
    let pulled = run_on_a_terminal(pull);
    assert!(pulled.status.success(), "{}", pulled.screen);
    let raw = String::from_utf8_lossy(&pulled.raw);
    assert!(raw.contains("\x1b["), "the bars are drawn with cursor control: {raw:?}");
    for digest in layers(&registry, "local/debian:1") {
        let line = bar_line(&pulled.screen, &digest);
        assert!(line.contains('[') && line.contains(']') && line.contains('/'), "{line}");
        assert!(line.trim_end().ends_with("unpacked"), "{line}");
        assert!(!line.contains("downloading") && !line.contains("waiting"), "{line}");
    }
    let lines: Vec<&str> = pulled.screen.lines().collect();
    let last_bar = lines.iter().rposition(|line| line.contains('[')).unwrap();
    let summary = lines.iter().rposition(|line| line.starts_with("pulled ")).unwrap_or_else(|| {
        panic!("no summary on the screen:\n{}", pulled.screen);
    });
    assert!(summary > last_bar, "the summary comes below the bars:\n{}", pulled.screen);

    // Pushed under another name: every blob is mounted or uploaded, on its own bar.
    let target = format!("{}/copies/debian:2", registry.host());
    let mut push = daemon.berth();
    push.args(["image", "push", &reference, &target]);
    let pushed = run_on_a_terminal(push);
    assert!(pushed.status.success(), "{}", pushed.screen);
    for digest in layers(&registry, "copies/debian:2") {
        let line = bar_line(&pushed.screen, &digest);
        assert!(["uploaded", "mounted", "already there"].iter().any(|word| line.trim_end().ends_with(word)), "{line}");
    }
    assert!(pushed.screen.lines().any(|line| line.starts_with("pushed ")), "{}", pushed.screen);
}

#[test]
fn into_a_pipe_each_layer_gets_plain_lines_and_quiet_gives_only_the_digest() {
    let (registry, daemon, reference) = registry_and_daemon("busybox");

    let output = daemon.berth().args(["image", "pull", &reference]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!stdout.contains('\x1b') && !stderr.contains('\x1b'), "control codes into a pipe: {stdout:?} {stderr:?}");
    // A line when a layer is downloaded and one when it is unpacked, nothing in between.
    for digest in layers(&registry, "local/busybox:1") {
        let prefix = format!("{}: ", label(&digest));
        let words: Vec<&str> = stdout
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .map(|rest| rest.split(" (").next().unwrap())
            .collect();
        assert_eq!(words, ["downloaded", "unpacked"], "{stdout}");
    }
    assert!(stdout.lines().last().unwrap().starts_with("pulled "), "{stdout}");

    let target = format!("{}/copies/busybox:2", registry.host());
    let pushed = daemon.berth().args(["image", "push", "--quiet", &reference, &target]).output().unwrap();
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    assert_eq!(String::from_utf8_lossy(&pushed.stdout).trim(), registry.skopeo_digest("copies/busybox:2"));
    assert!(pushed.stderr.is_empty(), "{}", String::from_utf8_lossy(&pushed.stderr));
}
