//! berth run as a service: the readiness protocol a `Type=notify` unit waits for, the socket
//! group, `berth events` filtered by berthd and printing what `berth-replay events` prints, and
//! scripts/install.sh with its unit, configuration, completions and man pages.
//!
//! This machine's PID 1 need not be systemd: the test listens on a unix datagram socket of its
//! own, as systemd does, and hands it to berthd in `NOTIFY_SOCKET`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use berth_runtime::api;
use berth_runtime::client::BerthClient;
use berth_tests::{bin, bin_dir, Daemon};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!("status {}, stdout {:?}, stderr {:?}", output.status, text(&output.stdout), text(&output.stderr))
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|error| panic!("stat {}: {error}", path.display())).mode() & 0o7777
}

/// The test daemons live in a 0700 `tempfile` directory; a socket group's members must pass it,
/// as they pass `/run`.
fn open_like_run(daemon: &Daemon) {
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn berthd_reports_ready_once_its_socket_answers_and_stopping_on_sigterm() {
    let mut daemon = Daemon::unstarted(&[]);
    let notify_path = daemon.dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&notify_path).unwrap();
    manager.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    daemon.set_env(&[("NOTIFY_SOCKET", notify_path.to_str().unwrap())]);
    daemon.spawn_process();

    let mut buffer = vec![0u8; 4096];
    let mut received = Vec::new();
    let ready = loop {
        let n_bytes = manager.recv(&mut buffer).unwrap_or_else(|error| {
            panic!("no READY=1 from berthd ({error}); got {received:?}:\n{}", daemon.daemon_log())
        });
        let message = text(&buffer[..n_bytes]);
        received.push(message.clone());
        if message.lines().any(|line| line == "READY=1") {
            // At the moment berthd says it is ready, a client is answered.
            let version = daemon.cli(&["version"]);
            assert!(version.status.success(), "READY=1 before the socket answers: {}", describe(&version));
            break message;
        }
    };
    assert!(received[0].starts_with("STATUS=replaying the log"), "{received:?}");
    assert!(ready.lines().any(|line| line == format!("MAINPID={}", daemon.pid())), "{ready}");
    assert!(ready.contains(&format!("STATUS=serving on {}", daemon.socket.display())), "{ready}");

    // No child inherits the variable: runc would hand the manager's socket to the container.
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "svc", "busybox", "sleep", "600"]);
    let monitor_environments: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|entry| {
            let command_line = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let command_line = text(&command_line);
            command_line.contains("berth-monitor") && command_line.contains(daemon.dir.path().to_str().unwrap())
        })
        .map(|entry| text(&std::fs::read(entry.path().join("environ")).unwrap_or_default()))
        .collect();
    assert!(!monitor_environments.is_empty(), "the container's monitor was not found");
    for environment in &monitor_environments {
        assert!(!environment.contains("NOTIFY_SOCKET="), "a monitor inherited NOTIFY_SOCKET: {environment:?}");
    }

    daemon.send_sigterm();
    let n_bytes = manager.recv(&mut buffer).expect("STOPPING=1 after SIGTERM");
    let stopping = text(&buffer[..n_bytes]);
    assert!(stopping.lines().any(|line| line == "STOPPING=1"), "{stopping}");
    assert!(daemon.wait_for_exit(Duration::from_secs(30)).success());

    // The container outlived berthd (a unit restart with KillMode=process does the same).
    // A NOTIFY_SOCKET berthd cannot use is logged, and berthd serves all the same.
    daemon.set_env(&[("NOTIFY_SOCKET", "not/absolute")]);
    daemon.start_again();
    assert!(daemon.daemon_log().contains("readiness is not reported"), "{}", daemon.daemon_log());
    let ps = daemon.ps();
    assert_eq!(ps[0]["task"]["status"], "running", "{ps:?}");
    daemon.ok(&["rm", "-f", "svc"]);
}

/// A group and a member of it, made for one test run and removed after it.
struct TestAccounts {
    group: String,
    member: String,
}

impl TestAccounts {
    fn create() -> TestAccounts {
        let tag = format!("{}{}", std::process::id(), std::time::UNIX_EPOCH.elapsed().unwrap().subsec_micros() % 1000);
        let accounts = TestAccounts { group: format!("bsg{tag}"), member: format!("bsu{tag}") };
        run_ok(Command::new("groupadd").arg(&accounts.group));
        run_ok(
            Command::new("useradd")
                .args(["--no-create-home", "--shell", "/usr/sbin/nologin", "--groups"])
                .args([&accounts.group, &accounts.member]),
        );
        accounts
    }

    fn gid(&self) -> u32 {
        nix::unistd::Group::from_name(&self.group).unwrap().expect("the test group").gid.as_raw()
    }

    fn member_uid(&self) -> u32 {
        nix::unistd::User::from_name(&self.member).unwrap().expect("the test user").uid.as_raw()
    }
}

impl Drop for TestAccounts {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.member).output();
        let _ = Command::new("groupdel").arg(&self.group).output();
    }
}

fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(output.status.success(), "{command:?}: {}", describe(&output));
    text(&output.stdout)
}

/// `program args` as `user` with that user's groups (`None`: uid/gid 65534, no groups).
fn as_user(user: Option<&str>, program: &Path, args: &[&str]) -> Output {
    let mut command = Command::new("setpriv");
    match user {
        Some(user) => command.args(["--reuid", user, "--regid", user, "--init-groups", "--"]),
        None => command.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--"]),
    };
    command.arg(program).args(args).env("HOME", "/nonexistent").output().expect("run setpriv (util-linux)")
}

#[test]
fn the_socket_group_lets_its_members_in_and_keeps_everyone_else_out() {
    let accounts = TestAccounts::create();
    let mut daemon = Daemon::unstarted(&[]);
    open_like_run(&daemon);
    // The default layout: the socket in the state directory, which berth owns.
    daemon.socket = daemon.state.join("berthd.sock");
    daemon.extra_args = vec!["--group".to_string(), accounts.group.clone()];
    daemon.start_again();
    // The CLI itself must be reachable by the users: a copy beside the daemon's directories.
    let berth = daemon.dir.path().join("berth");
    std::fs::copy(bin("berth"), &berth).unwrap();
    std::fs::set_permissions(&berth, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = daemon.socket.to_str().unwrap().to_string();
    let as_member = |args: &[&str]| {
        let mut full = vec!["--address", socket.as_str()];
        full.extend_from_slice(args);
        as_user(Some(&accounts.member), &berth, &full)
    };
    let as_nobody = |args: &[&str]| {
        let mut full = vec!["--address", socket.as_str()];
        full.extend_from_slice(args);
        as_user(None, &berth, &full)
    };

    let socket_metadata = std::fs::metadata(&daemon.socket).unwrap();
    assert_eq!(
        (socket_metadata.mode() & 0o777, socket_metadata.uid(), socket_metadata.gid()),
        (0o660, 0, accounts.gid())
    );
    let state_metadata = std::fs::metadata(&daemon.state).unwrap();
    assert_eq!((state_metadata.mode() & 0o7777, state_metadata.gid()), (0o710, accounts.gid()));

    let version = as_member(&["version"]);
    assert!(version.status.success(), "{}", describe(&version));
    // A member may do what root may, and the record names who it was.
    let created = as_member(&["namespace", "create", "by-member"]);
    assert!(created.status.success(), "{}", describe(&created));
    let recorded = daemon.ok(&["events", "-A", "--kind", "NamespaceCreated", "--output", "json"]);
    let event: serde_json::Value = serde_json::from_str(recorded.lines().last().unwrap()).unwrap();
    assert_eq!(event["fields"]["name"], "by-member", "{event}");
    assert_eq!(event["origin"]["uid"], accounts.member_uid(), "{event}");
    // Search only: a member reaches the socket by name and lists nothing of the state.
    let listing = as_user(Some(&accounts.member), Path::new("/bin/ls"), &[daemon.state.to_str().unwrap()]);
    assert!(!listing.status.success(), "a member listed the state directory: {}", describe(&listing));

    let refused = as_nobody(&["version"]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    let message = text(&refused.stderr);
    assert!(message.contains("permission denied") && message.contains("--group"), "{message}");

    // The same from the config file (a number, as containerd's [grpc] gid).
    daemon.stop();
    daemon.extra_args.clear();
    daemon.set_config(&format!("[grpc]\ngid = {}\n", accounts.gid()));
    daemon.start_again();
    assert!(as_member(&["ps"]).status.success());

    // Without a group: root only again, and the state directory is private once more.
    daemon.stop();
    daemon.set_config("");
    daemon.start_again();
    assert_eq!(mode_of(&daemon.state), 0o700);
    assert_eq!(std::fs::metadata(&daemon.socket).unwrap().gid(), 0);
    let refused = as_member(&["version"]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    assert!(text(&refused.stderr).contains("permission denied"), "{}", describe(&refused));

    // A group that does not exist is refused, saying how to make it.
    daemon.stop();
    let unknown = Command::new(bin("berthd"))
        .args(["--group", "no-such-group-berth", "--root", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("groupadd no-such-group-berth"), "{}", describe(&unknown));
    // Nor is a config file another user could have written: it could name any program as runc.
    let open_config = daemon.dir.path().join("open.toml");
    std::fs::write(&open_config, format!("[grpc]\ngid = {}\n", accounts.gid())).unwrap();
    std::fs::set_permissions(&open_config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let untrusted = Command::new(bin("berthd")).arg("--config").arg(&open_config).output().unwrap();
    assert!(!untrusted.status.success());
    assert!(text(&untrusted.stderr).contains("chmod go-w"), "{}", describe(&untrusted));
}

fn json_lines(output: &str) -> Vec<serde_json::Value> {
    output.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))).collect()
}

#[test]
fn events_are_filtered_by_kind_and_container_and_both_tools_print_the_same_json() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "--name", "first", "busybox", "true"]);
    assert_eq!(daemon.cli(&["run", "--name", "second", "busybox", "sh", "-c", "exit 3"]).status.code(), Some(3));

    let exits =
        json_lines(&daemon.ok(&["events", "--kind", "taskexited", "--container", "second", "--output", "json"]));
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!((exits[0]["kind"].as_str(), exits[0]["fields"]["exit_code"].as_i64()), (Some("TaskExited"), Some(3)));
    let about_first = json_lines(&daemon.ok(&["events", "--container", "first", "--output", "json"]));
    assert!(about_first.len() >= 4, "{about_first:?}");
    assert!(
        about_first
            .iter()
            .all(|event| event["fields"]["container_id"] == "first" || event["fields"]["container"]["id"] == "first"),
        "{about_first:?}"
    );
    let two_kinds =
        json_lines(&daemon.ok(&["events", "--kind", "TaskStarted", "--kind", "ContainerCreated", "--output", "json"]));
    let kinds: Vec<&str> = two_kinds.iter().map(|event| event["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ContainerCreated", "TaskStarted", "ContainerCreated", "TaskStarted"]);

    // The same JSON from both tools, whole log and filtered.
    let root = daemon.root.to_str().unwrap();
    for (berth_args, replay_args) in [
        (vec!["events", "-A", "--output", "json"], vec!["--root", root, "events", "--json"]),
        (
            vec!["events", "-A", "--output", "json", "--kind", "TaskExited", "--container", "first"],
            vec!["--root", root, "events", "--json", "--kind", "TaskExited", "--container", "first"],
        ),
    ] {
        let from_berthd = json_lines(&daemon.ok(&berth_args));
        let last_seq = from_berthd.last().expect("events")["seq"].as_u64().unwrap();
        // berthd may have recorded more since (an exit watcher's late outcome): up to the same seq.
        let from_log: Vec<serde_json::Value> =
            json_lines(&run_ok(Command::new(bin("berth-replay")).args(&replay_args)))
                .into_iter()
                .filter(|event| event["seq"].as_u64().unwrap() <= last_seq)
                .collect();
        assert_eq!(from_berthd, from_log, "berth {berth_args:?} and berth-replay {replay_args:?} differ");
    }
    // A daemon's record shows its origin the same way in both.
    let answered =
        json_lines(&daemon.ok(&["events", "--kind", "TaskStarted", "--container", "first", "--output", "json"]));
    assert_eq!(answered[0]["origin"]["kind"], "daemon");
    assert!(answered[0]["origin"]["answers"].as_u64().is_some(), "{}", answered[0]);

    // A kind that does not exist is refused by both tools, and by berthd itself.
    for output in [
        daemon.cli(&["events", "--kind", "TaskExitted"]),
        Command::new(bin("berth-replay")).args(["--root", root, "events", "--kind", "TaskExitted"]).output().unwrap(),
    ] {
        assert!(!output.status.success());
        assert!(
            text(&output.stderr).contains("unknown event kind \"TaskExitted\": use one of"),
            "{}",
            describe(&output)
        );
    }
    let refused = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = BerthClient::connect(&daemon.socket, "default").await.unwrap();
        client
            .events()
            .subscribe(client.request(api::SubscribeRequest {
                since: 1,
                kinds: vec!["TaskExitted".into()],
                ..Default::default()
            }))
            .await
            .map(|_| ())
            .unwrap_err()
    });
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("TaskExitted"), "{refused:?}");

    // A follower sees only what it asked for, as it is recorded (from the next seq on, so it
    // cannot miss the exit however late it subscribes).
    let next_seq =
        json_lines(&daemon.ok(&["events", "-A", "--output", "json"])).last().unwrap()["seq"].as_u64().unwrap() + 1;
    let mut follower = Command::new(bin("berth"))
        .args([
            "--address",
            daemon.socket.to_str().unwrap(),
            "events",
            "--since",
            &next_seq.to_string(),
            "-f",
            "--kind",
            "TaskExited",
            "--container",
            "third",
            "--output",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(daemon.cli(&["run", "--name", "third", "busybox", "sh", "-c", "exit 4"]).status.code(), Some(4));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(follower.stdout.take().unwrap()), &mut line).unwrap();
    let _ = follower.kill();
    let _ = follower.wait();
    let followed: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (followed["fields"]["container_id"].as_str(), followed["fields"]["exit_code"].as_i64()),
        (Some("third"), Some(4))
    );
}

/// Every file below `dir`, relative to it, sorted.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten().filter_map(Result::ok) {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path().strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    files.sort();
    files
}

fn install(destdir: &Path, args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh");
    Command::new("bash")
        .arg(script)
        .args(["--binaries", bin_dir().to_str().unwrap()])
        .args(args)
        .env("DESTDIR", destdir)
        .output()
        .expect("run scripts/install.sh")
}

/// Each man page names what it documents, and every option it lists says what it does (the
/// pages are the clap trees of berth, berthd and berth-replay as a reader gets them).
fn assert_man_pages_explain_everything(man_dir: &Path) {
    let pages: Vec<PathBuf> = files_below(man_dir);
    assert!(pages.len() > 40, "{pages:?}");
    for page in pages {
        let roff = std::fs::read_to_string(man_dir.join(&page)).unwrap();
        let lines: Vec<&str> = roff.lines().collect();
        let name_at = lines.iter().position(|line| *line == ".SH NAME").expect("a NAME section");
        assert!(lines[name_at + 1].contains(" \\- "), "{page:?} has no description: {}", lines[name_at + 1]);
        for (at, _) in lines.iter().enumerate().filter(|(_, line)| **line == ".TP") {
            let help = lines.get(at + 2).copied().unwrap_or(".SH");
            assert!(
                !help.starts_with(".TP") && !help.starts_with(".SH"),
                "{page:?}: {} has no help text",
                lines[at + 1]
            );
        }
    }
}

#[test]
fn install_script_stages_installs_again_keeping_the_config_and_uninstalls() {
    let destdir = tempfile::tempdir().unwrap();
    let first = install(destdir.path(), &[]);
    assert!(first.status.success(), "{}", describe(&first));
    let root = destdir.path();
    for binary in ["berthd", "berth", "berth-monitor", "berth-replay"] {
        assert_eq!(mode_of(&root.join("usr/local/bin").join(binary)), 0o755, "{binary}");
    }
    assert_eq!(mode_of(&root.join("etc/berth")), 0o700);
    assert_eq!(mode_of(&root.join("etc/berth/berthd.toml")), 0o600);
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/berthd.service")).unwrap();
    for expected in [
        "Type=notify",
        "KillMode=process",
        "Delegate=yes",
        "ExecStart=/usr/local/bin/berthd --config /etc/berth/berthd.toml",
    ] {
        assert!(unit.lines().any(|line| line == expected), "the unit lacks {expected}:\n{unit}");
    }

    // The unit as systemd reads it, against the binary and man pages just installed.
    let checked_unit = root.join("berthd.service");
    std::fs::write(&checked_unit, unit.replace("/usr/local/bin/berthd", bin("berthd").to_str().unwrap())).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&checked_unit)
        .env("MANPATH", root.join("usr/local/share/man"))
        .output()
        .expect("systemd-analyze (Debian's systemd package; scripts/install-deps.sh installs it)");
    assert!(verify.status.success() && verify.stderr.is_empty(), "{}", describe(&verify));

    // Each shell takes its completion script, and bash completes berth's verbs with it.
    let share = root.join("usr/local/share");
    for binary in ["berth", "berthd", "berth-replay"] {
        for (shell, path) in [
            ("bash", share.join("bash-completion/completions").join(binary)),
            ("zsh", share.join("zsh/site-functions").join(format!("_{binary}"))),
            ("fish", share.join("fish/vendor_completions.d").join(format!("{binary}.fish"))),
        ] {
            let parsed =
                Command::new(shell).arg("-n").arg(&path).output().unwrap_or_else(|error| panic!("{shell}: {error}"));
            assert!(parsed.status.success(), "{shell} -n {}: {}", path.display(), describe(&parsed));
        }
    }
    let completed = run_ok(Command::new("bash").arg("-c").arg(format!(
        "source {}; COMP_WORDS=(berth ev); COMP_CWORD=1; _berth berth ev berth; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        share.join("bash-completion/completions/berth").display()
    )));
    assert_eq!(completed.trim(), "events", "{completed}");
    assert_man_pages_explain_everything(&share.join("man"));
    assert!(share.join("man/man8/berthd.8").is_file() && share.join("man/man1/berth-events.1").is_file());

    // Again: the same files, and the operator's configuration is kept (and kept private).
    let config = root.join("etc/berth/berthd.toml");
    std::fs::write(&config, "root = \"/srv/berth\"\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = files_below(root);
    let second = install(destdir.path(), &[]);
    assert!(second.status.success(), "{}", describe(&second));
    assert_eq!(files_below(root), before);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "root = \"/srv/berth\"\n");
    assert_eq!(mode_of(&config), 0o600);

    // A package's layout: the unit under the prefix, pointing at the prefix's berthd.
    let package = tempfile::tempdir().unwrap();
    let packaged = install(package.path(), &["--prefix", "/usr"]);
    assert!(packaged.status.success(), "{}", describe(&packaged));
    let packaged_unit = std::fs::read_to_string(package.path().join("usr/lib/systemd/system/berthd.service")).unwrap();
    assert!(packaged_unit.contains("ExecStart=/usr/bin/berthd --config"), "{packaged_unit}");
    let relative = install(package.path(), &["--prefix", "usr"]);
    assert_eq!(relative.status.code(), Some(2));
    assert!(text(&relative.stderr).contains("absolute path"), "{}", describe(&relative));

    // Uninstalling removes every file it installed and nothing of the operator's.
    std::fs::remove_file(&checked_unit).unwrap();
    let removed = install(destdir.path(), &["--uninstall"]);
    assert!(removed.status.success(), "{}", describe(&removed));
    assert_eq!(files_below(root), [PathBuf::from("etc/berth/berthd.toml")]);
    let again = install(destdir.path(), &["--uninstall"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("nothing to uninstall"), "{}", describe(&again));
}
