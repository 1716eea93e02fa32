//! The run/create flags of every feature reaching the request berthd gets (a file of its own:
//! `policy_args` may not import `args`, which imports it), and every verb and flag explained.

use clap::Parser;

use crate::args::{Cli, Command};

#[test]
fn policy_flags_reach_the_create_request() {
    let cli = Cli::try_parse_from([
        "berth",
        "run",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "-1",
        "--ulimit",
        "nofile=10:20",
        "--restart",
        "on-failure:2",
        "--cap-add",
        "net_admin",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "seccomp=unconfined",
        "--device",
        "/dev/fuse",
        "--group-add",
        "audio",
        "--privileged",
        "busybox",
        "true",
    ])
    .unwrap();
    let Command::Run(run_args) = cli.command else { panic!("expected run") };
    let policies = run_args.container.create_request("c".to_string()).unwrap().policies.unwrap();
    let limits = policies.limits.unwrap();
    assert_eq!((limits.memory.as_str(), limits.cpus.as_str(), limits.pids_limit.as_str()), ("64m", "0.5", "-1"));
    assert_eq!(limits.ulimits, ["nofile=10:20"]);
    assert_eq!(policies.restart, "on-failure:2");
    let security = policies.security.unwrap();
    assert!(security.privileged && security.seccomp_unconfined);
    assert_eq!((security.cap_add, security.cap_drop), (vec!["net_admin".to_string()], vec!["ALL".to_string()]));
    assert_eq!((security.devices, security.group_add), (vec!["/dev/fuse".to_string()], vec!["audio".to_string()]));
    let cli = Cli::try_parse_from(["berth", "update", "--memory", "32m", "--cpus", "1", "a", "b"]).unwrap();
    let Command::Update(update_args) = cli.command else { panic!("expected update") };
    assert_eq!(update_args.container_ids, ["a", "b"]);
    assert_eq!(update_args.limits.message(&[]).memory, "32m");
}

#[test]
fn terminal_policy_and_storage_flags_reach_one_request_together() {
    let cli = Cli::try_parse_from([
        "berth",
        "run",
        "-i",
        "-t",
        "--memory",
        "64m",
        "-v",
        "/srv/data:/data:ro",
        "--tmpfs",
        "/scratch",
        "--read-only",
        "busybox",
        "sh",
    ])
    .unwrap();
    let Command::Run(run_args) = cli.command else { panic!("expected run") };
    let request = run_args.container.create_request("c".to_string()).unwrap();
    assert!(request.open_stdin && request.tty && request.read_only_rootfs);
    assert_eq!(request.policies.unwrap().limits.unwrap().memory, "64m");
    let destinations: Vec<&str> = request.mounts.iter().map(|mount| mount.destination.as_str()).collect();
    assert_eq!(destinations, ["/data", "/scratch"]);
}

#[test]
fn every_verb_and_flag_has_help_that_says_what_it_does() {
    let mut command = <Cli as clap::CommandFactory>::command();
    command.build();
    let mut checked = 0;
    // From `berth` itself, whose global flags (--address, --namespace) are checked too.
    let mut pending: Vec<(String, clap::Command)> = vec![(String::new(), command.clone())];
    while let Some((path, mut sub)) = pending.pop() {
        if sub.get_name() == "help" {
            continue;
        }
        let path = path.trim_start().to_string();
        pending.extend(sub.get_subcommands().map(|inner| (format!("{path} {}", inner.get_name()), inner.clone())));
        assert!(sub.get_about().is_some(), "`berth {path}` has no description");
        // Every flag and argument too: --help, the man pages and completions show these.
        for argument in sub.get_arguments().filter(|argument| !matches!(argument.get_id().as_str(), "help" | "version"))
        {
            assert!(argument.get_help().is_some(), "`berth {path}`: {} has no help text", argument.get_id());
        }
        let help = sub.render_help().to_string();
        assert!(help.contains("Usage:"), "`berth {path} --help`: {help}");
        checked += 1;
    }
    assert!(checked > 10);
    let mut args = vec!["berth"];
    args.extend(["run", "--help"]);
    let error = Cli::try_parse_from(args).unwrap_err();
    assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp);
}
