//! Security options against real runc: the default seccomp profile blocks user-namespace
//! creation (EPERM) and keeps ordinary programs working; `seccomp=unconfined` and a profile of
//! one's own; capabilities read back from /proc/self/status; `--privileged` sees the host's
//! devices; `--device`, `--group-add` and no-new-privileges.

use std::process::Output;

use berth_tests::{test_images, Daemon};

fn run(daemon: &Daemon, args: &[&str]) -> Output {
    let mut full = vec!["run", "--rm"];
    full.extend_from_slice(args);
    daemon.cli(&full)
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The value of one `Name:\tvalue` line of the container's /proc/self/status.
fn status_field(daemon: &Daemon, flags: &[&str], field: &str) -> String {
    let mut args = flags.to_vec();
    args.extend(["busybox", "cat", "/proc/self/status"]);
    let output = run(daemon, &args);
    assert!(output.status.success(), "{flags:?}: {}", stderr_of(&output));
    let text = stdout_of(&output);
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {text}"))
        .trim()
        .to_string()
}

#[test]
fn the_default_profile_blocks_user_namespaces_and_unconfined_does_not() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let blocked = run(&daemon, &["busybox", "unshare", "-U", "true"]);
    assert!(!blocked.status.success(), "unshare -U worked under the default profile");
    assert!(stderr_of(&blocked).contains("Operation not permitted"), "{}", stderr_of(&blocked));
    // Other namespaces are the capabilities' business: without CAP_SYS_ADMIN they fail alike.
    let unconfined = run(&daemon, &["--security-opt", "seccomp=unconfined", "busybox", "unshare", "-U", "true"]);
    assert!(unconfined.status.success(), "unshare -U unconfined: {}", stderr_of(&unconfined));
    // The filter is there: runc installed it (Seccomp: 2 is filter mode).
    assert_eq!(status_field(&daemon, &[], "Seccomp"), "2");
    assert_eq!(status_field(&daemon, &["--security-opt", "seccomp=unconfined"], "Seccomp"), "0");
}

#[test]
fn ordinary_programs_run_under_the_default_profile() {
    let daemon = Daemon::start();
    let archive = test_images().join("debian-oci.tar");
    daemon.ok(&["image", "import", archive.to_str().unwrap(), "--name", "debian"]);
    daemon.import_busybox();
    let apt = run(&daemon, &["debian:bookworm", "apt-get", "--help"]);
    assert!(apt.status.success(), "apt-get --help: {}", stderr_of(&apt));
    assert!(stdout_of(&apt).contains("apt"), "{}", stdout_of(&apt));
    let shell =
        run(&daemon, &["debian:bookworm", "sh", "-c", "echo $((6 * 7)) && ls / >/dev/null && cat /etc/os-release"]);
    assert!(shell.status.success(), "sh: {}", stderr_of(&shell));
    assert!(stdout_of(&shell).starts_with("42\n"), "{}", stdout_of(&shell));
    // Debian's unshare (util-linux) is refused the same way.
    let unshare = run(&daemon, &["debian:bookworm", "unshare", "-U", "true"]);
    assert!(!unshare.status.success());
    assert!(stderr_of(&unshare).contains("Operation not permitted"), "{}", stderr_of(&unshare));
    // The Debian image has no procps; busybox's ps reads the same /proc.
    let ps = run(&daemon, &["busybox", "ps"]);
    assert!(ps.status.success(), "ps: {}", stderr_of(&ps));
    assert!(stdout_of(&ps).contains("PID"), "{}", stdout_of(&ps));
}

#[test]
fn a_profile_of_ones_own_is_applied() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let profile = daemon.dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .unwrap();
    let option = format!("seccomp={}", profile.display());
    let refused = run(&daemon, &["--security-opt", &option, "busybox", "mkdir", "/made"]);
    assert!(!refused.status.success());
    assert!(stderr_of(&refused).contains("Operation not permitted"), "{}", stderr_of(&refused));
    // The default profile is replaced, not added to: unshare -U is allowed by this one.
    let unshare = run(&daemon, &["--security-opt", &option, "busybox", "unshare", "-U", "true"]);
    assert!(unshare.status.success(), "{}", stderr_of(&unshare));
    std::fs::write(&profile, r#"{"defaultAction": 7}"#).unwrap();
    let bad = daemon.cli(&["create", "--name", "bad", "--security-opt", &option, "busybox", "true"]);
    assert!(!bad.status.success());
    assert!(stderr_of(&bad).contains("not an OCI linux.seccomp object"), "{}", stderr_of(&bad));
}

#[test]
fn capabilities_are_read_back_from_the_process_status() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    // The 14 default capabilities (Docker's set), bit by bit.
    assert_eq!(status_field(&daemon, &[], "CapEff"), "00000000a80425fb");
    assert_eq!(status_field(&daemon, &["--cap-drop", "ALL"], "CapEff"), "0000000000000000");
    // NET_ADMIN is bit 12; CAP_ and case do not matter; dropping CHOWN clears bit 0.
    assert_eq!(
        status_field(&daemon, &["--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN"], "CapEff"),
        "00000000a80435fa"
    );
    assert_eq!(status_field(&daemon, &["--cap-drop", "ALL", "--cap-add", "KILL"], "CapBnd"), "0000000000000020");
    // no-new-privileges stays berth's default, and can be turned off.
    assert_eq!(status_field(&daemon, &[], "NoNewPrivs"), "1");
    assert_eq!(status_field(&daemon, &["--security-opt", "no-new-privileges=false"], "NoNewPrivs"), "0");
}

#[test]
fn privileged_sees_host_devices_and_has_every_capability() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    // A device of the host's that a default container does not get.
    let host_device = ["/dev/kmsg", "/dev/loop0", "/dev/loop-control", "/dev/mem", "/dev/vda"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .expect("the host has none of the usual devices");
    let default = run(&daemon, &["busybox", "ls", host_device]);
    assert!(!default.status.success(), "{host_device} is visible without --privileged");
    let privileged = run(&daemon, &["--privileged", "busybox", "ls", host_device]);
    assert!(privileged.status.success(), "--privileged: {}", stderr_of(&privileged));
    // Every capability berthd itself may hold (its bounding set, which is this test's too).
    let cap_eff = status_field(&daemon, &["--privileged"], "CapEff");
    let own_status = std::fs::read_to_string("/proc/self/status").unwrap();
    let own_bounding = own_status.lines().find_map(|line| line.strip_prefix("CapBnd:")).unwrap().trim();
    assert_eq!(cap_eff, own_bounding);
    assert_eq!(status_field(&daemon, &["--privileged"], "Seccomp"), "0");
    // No masked paths: /proc/keys is the real file, not /dev/null bound over it.
    let file_type = |flags: &[&str]| {
        let mut args = flags.to_vec();
        args.extend(["busybox", "stat", "-c", "%F", "/proc/keys"]);
        let output = run(&daemon, &args);
        assert!(output.status.success(), "{}", stderr_of(&output));
        stdout_of(&output).trim().to_string()
    };
    assert_eq!(file_type(&[]), "character special file");
    assert!(file_type(&["--privileged"]).starts_with("regular"), "/proc/keys is still masked");
}

#[test]
fn devices_and_extra_groups_are_given_to_the_container() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let device = run(
        &daemon,
        &[
            "--device",
            "/dev/null:/dev/second-null:rw",
            "busybox",
            "sh",
            "-c",
            "test -c /dev/second-null && echo written > /dev/second-null && echo ok",
        ],
    );
    assert!(device.status.success(), "{}", stderr_of(&device));
    assert_eq!(stdout_of(&device).trim(), "ok");
    // busybox's /etc/group has only root: a name resolves through it all the same.
    let groups = run(&daemon, &["--group-add", "1234", "--group-add", "root", "busybox", "id", "-G"]);
    assert!(groups.status.success(), "{}", stderr_of(&groups));
    let gids: Vec<String> = stdout_of(&groups).split_whitespace().map(str::to_string).collect();
    assert!(gids.contains(&"1234".to_string()), "{gids:?}");
    assert!(gids.contains(&"0".to_string()), "{gids:?}");
    let unknown = daemon.cli(&["run", "--rm", "--group-add", "nosuchgroup", "busybox", "true"]);
    assert!(!unknown.status.success());
    assert!(stderr_of(&unknown).contains("nosuchgroup"), "{}", stderr_of(&unknown));
}
