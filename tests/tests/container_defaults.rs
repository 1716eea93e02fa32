//! What a container finds whatever its image holds: its own `/etc/hostname`, `/etc/hosts` and
//! `/etc/resolv.conf` (read-only, readable by its non-root users), and a `/run` tmpfs.

use berth_tests::Daemon;

#[test]
fn a_container_reads_its_hostname_hosts_and_resolv_conf_and_has_a_run_tmpfs() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let script = "cat /etc/hostname; echo ---; cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; \
                  grep ' /run ' /proc/mounts; echo ---; \
                  if echo 10.0.0.1 evil >> /etc/hosts; then echo hosts-writable; else echo hosts-read-only; fi";
    let output = daemon.ok(&[
        "run",
        "--rm",
        "--name",
        "reader",
        "--hostname",
        "box7",
        "--user",
        "65534",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    let parts: Vec<&str> = output.split("---\n").collect();
    assert_eq!(parts.len(), 5, "{output}");
    assert_eq!(parts[0], "box7\n");
    assert!(parts[1].contains("127.0.0.1\tlocalhost") && parts[1].contains("\tbox7"), "{output}");
    // The host's resolvers minus loopback ones (they would be the container's own loopback).
    for line in parts[2].lines().filter(|line| line.starts_with("nameserver")) {
        let address = line.split_whitespace().nth(1).unwrap_or_default();
        assert!(!address.starts_with("127.") && address != "::1", "loopback resolver kept: {output}");
    }
    let host_resolvers: Vec<String> = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with("nameserver") && !line.contains(" 127.") && !line.ends_with(" ::1"))
        .map(str::to_string)
        .collect();
    if std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .any(|line| line == "nameserver 127.0.0.53")
    {
        // systemd-resolved: the upstream list is used instead; not checked line by line here.
    } else {
        for resolver in &host_resolvers {
            assert!(parts[2].contains(resolver.as_str()), "{resolver} missing: {output}");
        }
    }
    assert!(parts[3].starts_with("tmpfs /run tmpfs") && parts[3].contains("nosuid"), "{output}");
    assert_eq!(parts[4].trim(), "hosts-read-only", "{output}");
}
