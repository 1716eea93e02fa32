//! Networking with the real CNI plugins (Debian's containernetworking-plugins) and real runc:
//! containers on one bridge reach each other by address and by name, a published port answers
//! on 127.0.0.1, `--network host` shares the host's interfaces, a deleted task's network is
//! released after its record (a name reused at once waits for it, a stop lets it finish),
//! nothing is left behind after many create/delete cycles and a kill -9 of berthd among them
//! (nor after a DEL cut off once the interface was gone), and bad input is refused with an
//! error that says what to do. Every bridge and subnet is this test daemon's own, and no
//! packet leaves the machine (all traffic is between containers and the host's loopback).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::{eventually, network_rules, remove_network_leftovers, Daemon};

/// Removes a user network's bridge and iptables rules when a test ends, passed or failed (the
/// daemon's own cleanup knows only its default bridge). Declared after the daemon, so it runs
/// once the daemon is killed.
struct UserNetworkLeftovers {
    bridge: String,
    subnet: String,
}

impl Drop for UserNetworkLeftovers {
    fn drop(&mut self) {
        if !self.bridge.is_empty() {
            remove_network_leftovers(&self.bridge, &self.subnet);
        }
    }
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `10.A.B.` of the daemon's default bridge subnet `10.A.B.0/24`.
fn address_prefix(subnet: &str) -> String {
    subnet.rsplit_once('.').map(|(head, _)| format!("{head}.")).expect("subnet")
}

/// A user network's /24 of this daemon's own: its default subnet moved down by 50 in the second
/// octet (the daemon's is in 10.200–249, so this is 10.150–199 and never overlaps it).
fn user_subnet(daemon: &Daemon) -> String {
    let subnet = daemon.bridge_subnet();
    let octets: Vec<&str> = subnet.split('.').collect();
    format!("10.{}.{}.0/24", octets[1].parse::<u32>().unwrap() - 50, octets[2])
}

fn address_of(daemon: &Daemon, container_id: &str) -> String {
    let inspected: serde_json::Value = serde_json::from_str(&daemon.ok(&["inspect", container_id])).unwrap();
    let address = inspected[0]["network"]["attachment"]["addresses"][0].as_str().expect("an address").to_string();
    address.split('/').next().unwrap().to_string()
}

/// What is left of networking: namespace files, ADD caches, IPAM reservations, iptables rules,
/// interfaces on the bridge, netns mounts; empty when nothing is.
fn network_leftovers(daemon: &Daemon, bridge: &str, subnet: &str) -> Vec<String> {
    let prefix = address_prefix(subnet);
    let listed = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    let mut left = Vec::new();
    left.extend(listed(&daemon.state.join("netns")).into_iter().map(|name| format!("netns file {name}")));
    left.extend(listed(&daemon.root.join("networks/attachments")).into_iter().map(|name| format!("ADD cache {name}")));
    let ipam = daemon.root.join("networks/ipam").join(format!("berth-{bridge}"));
    left.extend(
        listed(&ipam)
            .into_iter()
            .filter(|name| name.starts_with(&prefix))
            .map(|name| format!("IPAM reservation {name}")),
    );
    left.extend(network_rules(bridge, &prefix).into_iter().map(|(table, rule)| format!("iptables {table}: {rule}")));
    let ports = listed(&Path::new("/sys/class/net").join(bridge).join("brif"));
    left.extend(ports.into_iter().map(|port| format!("interface {port} on bridge {bridge}")));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let netns_dir = daemon.state.join("netns").to_string_lossy().into_owned();
    left.extend(mounts.lines().filter(|line| line.contains(&netns_dir)).map(|line| format!("netns mount {line}")));
    left
}

/// The default network's spare attachment a running berthd keeps (its ADD cache's key, its
/// address and its host-side veth), when there is one and its ADD has finished.
struct Spare {
    key: String,
    address: String,
    veth: String,
}

fn spares_of(daemon: &Daemon) -> Vec<Spare> {
    let caches = std::fs::read_dir(daemon.root.join("networks/attachments")).map(|entries| entries.flatten());
    caches
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let key = entry.file_name().to_string_lossy().strip_suffix(".json")?.to_string();
            if !key.contains("_spare-") {
                return None;
            }
            let cache: serde_json::Value = serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
            let result = &cache["result"];
            let address = result["ips"][0]["address"].as_str()?.split('/').next()?.to_string();
            // The host's side of the pair: not in the namespace, and not the bridge.
            let veth = result["interfaces"].as_array()?.iter().find_map(|interface| {
                let name = interface["name"].as_str()?;
                (interface.get("sandbox").is_none() && name.starts_with("veth")).then(|| name.to_string())
            })?;
            Some(Spare { key, address, veth })
        })
        .collect()
}

/// [`network_leftovers`] of a running berthd, less its one spare attachment (a second spare is
/// a leftover).
fn network_leftovers_besides_the_spare(daemon: &Daemon, bridge: &str, subnet: &str) -> Vec<String> {
    let left = network_leftovers(daemon, bridge, subnet);
    let Some(spare) = spares_of(daemon).into_iter().next().filter(|_| bridge == daemon.bridge_name()) else {
        return left;
    };
    let spares = |item: &String| {
        item.contains(&spare.key)
            || item == &format!("IPAM reservation {}", spare.address)
            || (item.starts_with("iptables") && item.contains(&format!("{}/32", spare.address)))
            || item == &format!("interface {} on bridge {bridge}", spare.veth)
    };
    left.into_iter().filter(|item| !spares(item)).collect()
}

/// SIGTERM, then fails naming anything of networking the stopped berthd left (its spare
/// included: a stop releases it).
fn stop_and_assert_no_network_leftovers(daemon: &mut Daemon) {
    daemon.stop();
    let left = network_leftovers(daemon, &daemon.bridge_name(), &daemon.bridge_subnet());
    assert!(left.is_empty(), "left behind by a stopped berthd:\n{}", left.join("\n"));
}

/// Fails naming what is left (besides the spare attachment) once the releases under way
/// (berthd runs CNI DEL after a delete is recorded) have had time to finish.
fn assert_no_network_leftovers(daemon: &Daemon, bridge: &str, subnet: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = network_leftovers_besides_the_spare(daemon, bridge, subnet);
        if left.is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "networking left behind:\n{}", left.join("\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn containers_on_one_network_reach_each_other_by_address_and_by_name() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let network = format!("n{}", daemon.bridge_name());
    let subnet = user_subnet(&daemon);
    daemon.ok(&["network", "create", "--subnet", &subnet, &network]);
    let created: serde_json::Value = serde_json::from_str(&daemon.ok(&["network", "inspect", &network])).unwrap();
    let _leftovers =
        UserNetworkLeftovers { bridge: created[0]["bridge"].as_str().unwrap().to_string(), subnet: subnet.clone() };
    let listed = daemon.ok(&["network", "ls"]);
    assert!(listed.contains(&network) && listed.contains(&subnet) && listed.contains("bridge"), "{listed}");

    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        &network,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let web_address = address_of(&daemon, "web");
    assert!(web_address.starts_with(&address_prefix(&subnet)), "{web_address} not in {subnet}");
    // By address and by name, from a container created after it.
    let client = daemon.ok(&[
        "run",
        "--rm",
        "--network",
        &network,
        "busybox",
        "sh",
        "-c",
        // Loopback is up beside eth0 (both are set up at once). Not `wget -T`: Debian's static
        // busybox crashes on it.
        &format!(
            "ping -c 1 -W 5 127.0.0.1 >/dev/null && ping -c 1 -W 5 {web_address} >/dev/null && timeout 10 wget -q -O - http://web/hostname"
        ),
    ]);
    assert_eq!(client.trim(), "web");
    // The earlier container learns the later one's name too (its /etc/hosts is rewritten).
    daemon.ok(&["run", "-d", "--name", "peer", "--network", &network, "busybox", "sleep", "300"]);
    let peer_address = address_of(&daemon, "peer");
    let pinged = daemon.ok(&["exec", "web", "ping", "-c", "1", "-W", "5", "peer"]);
    assert!(pinged.contains(&peer_address), "{pinged}");

    // The log tells which address each had.
    let history = daemon.replay(&["history", "--container", "web"]);
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(history.contains(&format!("attached to network {network} as {web_address}/24")), "{history}");
    let inspected: serde_json::Value =
        serde_json::from_str(&daemon.ok(&["network", "inspect", &network])).expect("network inspect json");
    let ids: Vec<&str> =
        inspected[0]["containers"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["peer", "web"]);

    // In use: refused, naming the containers and what to do.
    let refused = daemon.cli(&["network", "rm", &network]);
    assert!(!refused.status.success());
    let message = stderr_of(&refused);
    assert!(message.contains("in use") && message.contains("default/web") && message.contains("berth rm"), "{message}");

    daemon.ok(&["rm", "-f", "web", "peer"]);
    let released = format!("network {network} released");
    let history = eventually(Duration::from_secs(30), "the release of web's network on record", || {
        let history = daemon.history("web");
        history.contains(&released).then_some(history)
    });
    let deleted_at = history.find("task deleted").expect("the deletion in the history");
    assert!(history.find(&released).unwrap() > deleted_at, "released after the deletion:\n{history}");
    let bridge = inspected[0]["bridge"].as_str().unwrap().to_string();
    assert_no_network_leftovers(&daemon, &bridge, &subnet);
    daemon.ok(&["network", "rm", &network]);
    assert!(!Path::new("/sys/class/net").join(&bridge).exists(), "bridge {bridge} kept after network rm");
    assert!(!daemon.ok(&["network", "ls"]).contains(&network));
}

/// berthd runs CNI DEL after a delete is recorded: a name reused at once waits for the release
/// of its previous task's network, every release is on record after its deletion, and a
/// SIGTERM right after a delete lets the release finish before berthd exits.
#[test]
fn a_deleted_tasks_network_is_released_after_its_record_and_the_name_is_reused_at_once() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    for round in 0..5 {
        let output = daemon.ok(&["run", "--rm", "--name", "again", "busybox", "sh", "-c", "ip -4 -o addr show eth0"]);
        assert!(output.contains(&address_prefix(&daemon.bridge_subnet())), "round {round}: {output}");
    }
    let history = eventually(Duration::from_secs(30), "five releases on record", || {
        let history = daemon.history("again");
        (history.matches("released after the task's deletion").count() == 5).then_some(history)
    });
    // Each release follows its own deletion and comes before the next task's network.
    let kinds: Vec<&str> = history
        .lines()
        .filter_map(|line| {
            if line.contains("task deleted") {
                Some("deleted")
            } else if line.contains("released after the task's deletion") {
                Some("released")
            } else if line.contains("attached to network") || line.contains("NetworkAttached") {
                Some("attached")
            } else {
                None
            }
        })
        .collect();
    let deleted_then_released = kinds.windows(2).filter(|pair| pair == &["deleted", "released"]).count();
    assert_eq!(deleted_then_released, 5, "{kinds:?}\n{history}");
    assert_no_network_leftovers(&daemon, &daemon.bridge_name(), &daemon.bridge_subnet());

    // SIGTERM as soon as a `run --rm` returned: berthd exits only after the release.
    daemon.ok(&["run", "--rm", "--name", "last", "busybox", "true"]);
    stop_and_assert_no_network_leftovers(&mut daemon);
    let history = daemon.history("last");
    assert!(history.contains("released after the task's deletion"), "{history}");
}

/// A CNI plugin directory in `dir`: Debian's plugins, except `firewall`, a shell script that
/// runs `script` (with `$CNI_COMMAND` and the rest of the plugin's environment) and then the
/// real plugin. Returns the directory and the daemon config naming it.
fn plugins_with_firewall_wrapper(dir: &Path, script: &str) -> (PathBuf, String) {
    let plugins = dir.join("cni-plugins");
    std::fs::create_dir(&plugins).unwrap();
    for entry in std::fs::read_dir("/usr/lib/cni").unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "firewall" {
            std::os::unix::fs::symlink(entry.path(), plugins.join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(plugins.join("firewall"), format!("#!/bin/sh\n{script}\nexec /usr/lib/cni/firewall\n")).unwrap();
    std::fs::set_permissions(plugins.join("firewall"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // These tests are about a task's own ADD and DEL: no spare attachment takes their place.
    let config = format!("[network]\ncni_bin_dir = {:?}\nspare = false\n", plugins.display().to_string());
    (plugins, config)
}

/// A release whose DEL failed keeps its ADD cache; the same container's next task finishes that
/// release before its own ADD instead of writing over what the DEL needs. The plugins are
/// Debian's, except that `firewall` fails its next DEL once while a marker file exists.
#[test]
fn a_failed_release_is_finished_before_the_same_containers_next_attach() {
    let mut marker = PathBuf::new();
    let daemon = Daemon::start_with_config(|dir| {
        marker = dir.join("fail-next-firewall-del");
        let script = format!(
            "if [ \"$CNI_COMMAND\" = DEL ] && rm {marker} 2>/dev/null; then\n  echo '{{\"code\": 999, \"msg\": \"failing as the test asked\"}}'\n  exit 1\nfi",
            marker = marker.display()
        );
        plugins_with_firewall_wrapper(dir, &script).1
    });
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "again", "busybox", "sleep", "300"]);
    std::fs::write(&marker, b"").unwrap();
    daemon.ok(&["rm", "-f", "again"]);
    eventually(Duration::from_secs(30), "the failed release in berthd's log", || {
        daemon.daemon_log().contains("releasing the deleted task's network failed").then_some(())
    });
    assert!(!marker.exists(), "the firewall DEL ran");
    let caches = daemon.root.join("networks/attachments");
    assert_eq!(std::fs::read_dir(&caches).unwrap().count(), 1, "the failed release keeps its cache");

    let output = daemon.ok(&["run", "--rm", "--name", "again", "busybox", "sh", "-c", "ip -4 -o addr show eth0"]);
    assert!(output.contains(&address_prefix(&daemon.bridge_subnet())), "{output}");
    assert_no_network_leftovers(&daemon, &daemon.bridge_name(), &daemon.bridge_subnet());
}

/// The release after a deletion is background work: its plugins run at nice 19 (so that a
/// busy host's next start is not slowed by them), while an ADD and a release something waits
/// for (a port's, before `rm` returns) run at the daemon's own priority. The firewall plugin
/// notes its niceness for each call.
#[test]
fn a_release_after_the_deletion_runs_at_the_lowest_cpu_priority() {
    let mut calls = PathBuf::new();
    let daemon = Daemon::start_with_config(|dir| {
        calls = dir.join("firewall-calls");
        plugins_with_firewall_wrapper(dir, &format!("echo \"$CNI_COMMAND $(nice)\" >>{}", calls.display())).1
    });
    daemon.import_busybox();
    daemon.ok(&["run", "--rm", "--name", "quiet", "busybox", "true"]);
    let port = berth_tests::registry::free_port();
    daemon.ok(&["run", "-d", "--name", "published", "-p", &format!("127.0.0.1:{port}:80"), "busybox", "sleep", "300"]);
    daemon.ok(&["rm", "-f", "published"]);
    assert_no_network_leftovers(&daemon, &daemon.bridge_name(), &daemon.bridge_subnet());
    let mut noted: Vec<String> = std::fs::read_to_string(&calls).unwrap().lines().map(str::to_string).collect();
    noted.sort();
    assert_eq!(noted, ["ADD 0", "ADD 0", "DEL 0", "DEL 19"], "firewall calls and their niceness");
}

/// ADD runs beside runc's create, and the process waits at the network gate: with the
/// firewall plugin's ADD made slow, runc is already creating the container (its directory in
/// runc's root is there) while ADD is under way, and the process still starts with its address on eth0 and
/// in /etc/hosts.
#[test]
fn the_process_waits_at_the_network_gate_for_an_add_that_runs_beside_runc() {
    let mut seen = PathBuf::new();
    let mut daemon = Daemon::start_with_config(|dir| {
        seen = dir.join("runc-during-add");
        let runc_root = dir.join("state/runc/default");
        let script = format!(
            "if [ \"$CNI_COMMAND\" = ADD ]; then sleep 2; ls {root} >>{seen}; fi",
            root = runc_root.display(),
            seen = seen.display()
        );
        plugins_with_firewall_wrapper(dir, &script).1
    });
    assert!(daemon.state.ends_with("state"), "the test names runc's root from the state dir {:?}", daemon.state);
    daemon.import_busybox();
    let output = daemon.ok(&[
        "run",
        "--rm",
        "--name",
        "gated",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; cat /etc/hosts",
    ]);
    let prefix = address_prefix(&daemon.bridge_subnet());
    assert!(output.contains(&format!("inet {prefix}")), "eth0 has its address from the first instruction:\n{output}");
    assert!(
        output.lines().any(|line| line.starts_with(&prefix) && line.ends_with("gated")),
        "/etc/hosts names the address:\n{output}"
    );
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), "gated", "runc was creating the container during ADD");
    assert_no_network_leftovers(&daemon, &daemon.bridge_name(), &daemon.bridge_subnet());

    // berthd killed while ADD is under way: the hook sees the gate's writer gone and fails, so
    // runc gives up at once instead of at the hook's time limit, and the process never ran.
    std::fs::remove_file(&seen).unwrap();
    let started = std::time::Instant::now();
    let mut run = daemon.berth();
    run.args(["run", "-d", "--name", "cut", "busybox", "sleep", "300"]);
    let client = run.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // runc's directory for the container exists from the start of its create; `runc list`
    // shows it only once the create is over.
    let creating = daemon.state.join("runc/default/cut");
    eventually(Duration::from_secs(20), "runc to be at the gate", || creating.exists().then_some(()));
    assert!(daemon.runc_list().is_empty(), "still creating: {:?}", daemon.runc_list());
    daemon.kill9();
    eventually(Duration::from_secs(20), "runc's create to fail at the closed gate", || {
        (!creating.exists()).then_some(())
    });
    assert!(started.elapsed() < Duration::from_secs(60), "runc gave up long before the hook's time limit");
    let _ = client.wait_with_output();
    daemon.restart();
    daemon.wait_until_serving();
    let tasks: Vec<_> = daemon.ps().into_iter().filter(|container| container["id"] == "cut").collect();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_ne!(tasks[0]["task"]["status"], "running", "{tasks:?}");
    daemon.ok(&["rm", "-f", "cut"]);
    assert_no_network_leftovers(&daemon, &daemon.bridge_name(), &daemon.bridge_subnet());
}

/// An ADD that fails fails the create with the plugin's own message; the process never ran
/// (runc's gate hook failed), and nothing of the attempt is left.
#[test]
fn a_failed_add_fails_the_create_with_the_plugins_message_and_leaves_nothing() {
    let daemon = Daemon::start_with_config(|dir| {
        let script = "if [ \"$CNI_COMMAND\" = ADD ]; then\n  cat >/dev/null\n  echo '{\"code\": 999, \"msg\": \"no network today, as the test asked\"}'\n  exit 1\nfi";
        plugins_with_firewall_wrapper(dir, script).1
    });
    daemon.import_busybox();
    let output = daemon.cli(&["run", "--rm", "--name", "refused", "busybox", "touch", "/ran"]);
    assert!(!output.status.success());
    assert!(stderr_of(&output).contains("no network today, as the test asked"), "{}", stderr_of(&output));
    assert!(daemon.runc_list().is_empty(), "{:?}", daemon.runc_list());
    assert_no_network_leftovers(&daemon, &daemon.bridge_name(), &daemon.bridge_subnet());
    let history = daemon.history("refused");
    assert!(!history.contains("task started"), "{history}");
}

#[test]
fn a_port_published_on_loopback_answers_from_the_host() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let publish = format!("127.0.0.1:{port}:80");
    daemon.ok(&["run", "-d", "--name", "site", "-p", &publish, "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]);
    let answer = eventually(Duration::from_secs(20), "the published port to answer", || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(b"GET /hostname HTTP/1.0\r\n\r\n").ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.contains("200 OK").then_some(answer)
    });
    assert!(answer.trim_end().ends_with("site"), "{answer}");
    let inspected: serde_json::Value = serde_json::from_str(&daemon.ok(&["inspect", "site"])).unwrap();
    assert_eq!(inspected[0]["network"]["attachment"]["ports"][0], format!("127.0.0.1:{port}->80/tcp"));

    // The same host port again is refused while the first container publishes it.
    let taken = daemon.cli(&["run", "--rm", "-p", &publish, "busybox", "true"]);
    assert!(!taken.status.success());
    assert!(stderr_of(&taken).contains("already published by container default/site"), "{}", stderr_of(&taken));

    daemon.ok(&["rm", "-f", "site"]);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the port still answers after rm");
    // Released before the deletion was recorded, in the same record.
    let history = daemon.history("site");
    assert!(history.contains("detached from network") && !history.contains("released after"), "{history}");
    assert_no_network_leftovers(&daemon, &daemon.bridge_name(), &daemon.bridge_subnet());
}

#[test]
fn host_network_shares_the_host_interfaces_and_none_has_loopback_only() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    // A bridge container first, so the daemon's own bridge exists on the host.
    daemon.ok(&["run", "--rm", "busybox", "true"]);
    let bridge = daemon.bridge_name();
    assert!(Path::new("/sys/class/net").join(&bridge).exists());
    let host_view = daemon.ok(&["run", "--rm", "--network", "host", "busybox", "cat", "/proc/net/dev"]);
    assert!(host_view.contains(&format!("{bridge}:")), "the host's bridge {bridge} is not seen:\n{host_view}");
    let none_view = daemon.ok(&["run", "--rm", "--network", "none", "busybox", "cat", "/proc/net/dev"]);
    let interfaces: Vec<&str> =
        none_view.lines().skip(2).filter_map(|line| line.split(':').next()).map(str::trim).collect();
    assert_eq!(interfaces, ["lo"], "{none_view}");
    // --dns and --add-host reach the container's files.
    let files = daemon.ok(&[
        "run",
        "--rm",
        "--dns",
        "192.0.2.53",
        "--add-host",
        "db.internal:192.0.2.7",
        "busybox",
        "cat",
        "/etc/resolv.conf",
        "/etc/hosts",
    ]);
    assert!(files.contains("nameserver 192.0.2.53\n") && files.contains("192.0.2.7\tdb.internal\n"), "{files}");
}

#[test]
fn nothing_leaks_after_many_create_delete_cycles_and_a_kill_9_among_them() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    let cycles = |daemon: &Daemon, round: &str, n_per_thread: usize| {
        std::thread::scope(|scope| {
            for thread_idx in 0..4 {
                scope.spawn(move || {
                    for cycle_idx in 0..n_per_thread {
                        let name = format!("{round}-{thread_idx}-{cycle_idx}");
                        let _ = daemon.cli(&["run", "--rm", "--name", &name, "busybox", "true"]);
                    }
                });
            }
        });
    };
    cycles(&daemon, "a", 12);
    // Kill berthd while clients create and delete containers (some mid-ADD or mid-DEL).
    std::thread::scope(|scope| {
        let daemon_ref = &daemon;
        scope.spawn(move || cycles(daemon_ref, "b", 3));
        std::thread::sleep(Duration::from_millis(1500));
    });
    daemon.kill9();
    daemon.restart();
    cycles(&daemon, "c", 12);
    // What the killed clients left: remove it as a user would.
    let left: Vec<String> =
        daemon.ps().iter().filter_map(|container| container["id"].as_str().map(str::to_string)).collect();
    if !left.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(left.iter().map(String::as_str));
        daemon.ok(&args);
    }
    assert_no_network_leftovers(&daemon, &daemon.bridge_name(), &daemon.bridge_subnet());
    // Networking still works after all that.
    let address = daemon.ok(&["run", "--rm", "busybox", "sh", "-c", "ip -4 -o addr show eth0"]);
    assert!(address.contains(&address_prefix(&daemon.bridge_subnet())), "{address}");
    // A stopped berthd leaves nothing, not even its spare attachment.
    stop_and_assert_no_network_leftovers(&mut daemon);
}

/// After a container on the default network, berthd attaches a spare ahead of need; the next
/// container without published ports gets it (its address and namespace file, recorded under the spare's CNI id,
/// released by that id after its deletion), and a new spare follows. One with `-p` attaches on
/// its own. A spare left by a kill -9 is torn down at start-up without a record (it never was
/// one), and a stop releases the spare.
#[test]
fn a_spare_attachment_is_handed_to_the_next_container_and_never_outlives_berthd() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    let prefix = address_prefix(&daemon.bridge_subnet());
    let wait_for_spare = |daemon: &Daemon, not: Option<&str>| {
        eventually(Duration::from_secs(30), "a spare attachment", || {
            let spares = spares_of(daemon);
            assert!(spares.len() <= 1, "more than one spare: {:?}", spares.iter().map(|s| &s.key).collect::<Vec<_>>());
            spares.into_iter().find(|spare| Some(spare.key.as_str()) != not)
        })
    };
    daemon.ok(&["run", "--rm", "--name", "first", "busybox", "true"]);
    let spare = wait_for_spare(&daemon, None);
    assert!(spare.address.starts_with(&prefix), "{}", spare.address);
    let bridge_ports = Path::new("/sys/class/net").join(daemon.bridge_name()).join("brif");
    assert!(bridge_ports.join(&spare.veth).exists(), "the spare's veth is on the bridge");

    daemon.ok(&["run", "-d", "--name", "second", "busybox", "sleep", "300"]);
    let inspected: serde_json::Value = serde_json::from_str(&daemon.ok(&["inspect", "second"])).unwrap();
    let attachment = &inspected[0]["network"]["attachment"];
    assert!(attachment["netns"].as_str().unwrap().ends_with(&format!("/netns/{}", spare.key)), "{attachment}");
    assert_eq!(address_of(&daemon, "second"), spare.address);
    let seen = daemon.ok(&["exec", "second", "sh", "-c", "ip -4 -o addr show eth0; ip route; cat /etc/hosts"]);
    assert!(seen.contains(&format!("inet {}/", spare.address)), "{seen}");
    assert!(seen.contains("default via"), "{seen}");
    assert!(seen.lines().any(|line| line.starts_with(&spare.address) && line.ends_with("second")), "{seen}");
    let history = daemon.history("second");
    assert!(history.contains(&format!("attached to network bridge as {}/", spare.address)), "{history}");
    let next = wait_for_spare(&daemon, Some(&spare.key));
    assert_ne!(next.address, spare.address);

    // Published ports: an attach of its own, the spare stays.
    let port = berth_tests::registry::free_port();
    daemon.ok(&["run", "-d", "--name", "published", "-p", &format!("127.0.0.1:{port}:80"), "busybox", "sleep", "300"]);
    assert_ne!(address_of(&daemon, "published"), next.address);
    assert_eq!(
        spares_of(&daemon).into_iter().map(|spare| spare.key).collect::<Vec<_>>(),
        std::slice::from_ref(&next.key)
    );

    // The handed-over spare is released by its own id after the deletion.
    daemon.ok(&["rm", "-f", "second", "published"]);
    eventually(Duration::from_secs(30), "second's release on record", || {
        daemon.history("second").contains("released after the task's deletion").then_some(())
    });
    assert_no_network_leftovers(&daemon, &daemon.bridge_name(), &daemon.bridge_subnet());

    // kill -9 with a spare ready: start-up tears it down, recording nothing for it.
    daemon.kill9();
    daemon.restart();
    daemon.wait_until_serving();
    let left = network_leftovers(&daemon, &daemon.bridge_name(), &daemon.bridge_subnet());
    assert!(left.is_empty(), "the killed berthd's spare outlived start-up:\n{}", left.join("\n"));
    let orphans = String::from_utf8_lossy(&daemon.replay(&["events", "--kind", "OrphanRemoved"]).stdout).into_owned();
    assert!(!orphans.contains("_spare-"), "{orphans}");

    // A stop releases the spare.
    daemon.ok(&["run", "--rm", "busybox", "true"]);
    wait_for_spare(&daemon, None);
    stop_and_assert_no_network_leftovers(&mut daemon);
}

#[test]
fn a_network_leftover_no_record_accounts_for_is_removed_at_start_up() {
    let mut daemon = Daemon::start();
    daemon.import_busybox();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let publish = format!("127.0.0.1:{port}:80");
    daemon.ok(&["run", "-d", "--name", "doomed", "-p", &publish, "busybox", "sleep", "300"]);
    daemon.kill9();
    // As if berthd had been killed in the middle of deleting it: the container is gone from
    // runc and from the log, but its namespace file, ADD cache, IPAM reservation and iptables
    // rules are still there.
    let removed = std::process::Command::new("runc")
        .arg("--root")
        .arg(daemon.state.join("runc").join("default"))
        .args(["delete", "-f", "doomed"])
        .status()
        .unwrap();
    assert!(removed.success());
    daemon.inject(
        "default",
        vec![
            berth_projections::Event::TaskDeleted { container_id: "doomed".into(), exit_code: Some(137) },
            berth_projections::Event::ContainerDeleted { id: "doomed".into() },
        ],
    );
    assert!(!network_rules(&daemon.bridge_name(), &address_prefix(&daemon.bridge_subnet())).is_empty());
    // And the first DEL got as far as removing the container's interface: the bridge plugin's
    // next DEL no longer finds the addresses whose masquerade rules it would remove.
    let netns_file = std::fs::read_dir(daemon.state.join("netns"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().ends_with("-default-doomed"))
        .expect("doomed's namespace file");
    let interface_removed = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns_file.display()))
        .args(["ip", "link", "delete", "eth0"])
        .status()
        .unwrap();
    assert!(interface_removed.success());
    // And its ADD's result never reached the cache (the crash came between the two): the
    // firewall plugin's rules, which carry no id, are found from the IPAM reservation.
    let cache_path = daemon
        .root
        .join("networks/attachments")
        .join(format!("{}.json", netns_file.file_name().unwrap().to_string_lossy()));
    let mut cache: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache_path).unwrap()).unwrap();
    let address = cache["result"]["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    cache["result"] = serde_json::Value::Null;
    std::fs::write(&cache_path, serde_json::to_vec(&cache).unwrap()).unwrap();
    let rules = network_rules(&daemon.bridge_name(), &address_prefix(&daemon.bridge_subnet()));
    assert!(rules.iter().any(|(_, rule)| rule.contains(&format!("-s {address}/32 -j ACCEPT"))), "{rules:?}");
    daemon.restart();
    assert_no_network_leftovers(&daemon, &daemon.bridge_name(), &daemon.bridge_subnet());
    let events = String::from_utf8_lossy(&daemon.replay(&["events", "--kind", "OrphanRemoved"]).stdout).into_owned();
    assert!(events.contains(r#""what":"network attachment""#) && events.contains("-default-doomed"), "{events}");
    assert!(daemon.daemon_log().contains("removed iptables rules and chains an earlier DEL left"));
}

/// A kill -9 in the middle of an ADD: the plugin goes on without berthd (nothing kills a child
/// whose parent died) and would add its rules after start-up's DEL of the attachment. The next
/// start kills it first. The firewall plugin here notes its pid and hangs in ADD.
#[test]
fn a_plugin_still_adding_at_a_kill_9_is_killed_before_start_up_tears_its_attachment_down() {
    let mut pid_file = PathBuf::new();
    let mut daemon = Daemon::start_with_config(|dir| {
        pid_file = dir.join("firewall-add-pid");
        let script = format!("if [ \"$CNI_COMMAND\" = ADD ]; then echo $$ >{}; sleep 120; fi", pid_file.display());
        plugins_with_firewall_wrapper(dir, &script).1
    });
    daemon.import_busybox();
    let mut run = daemon
        .berth()
        .args(["run", "-d", "--name", "stuck", "busybox", "sleep", "300"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid: i32 = eventually(Duration::from_secs(30), "the firewall plugin's ADD under way", || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    // A container given the same kind of variable is not a plugin, and is left alone.
    let stuck_cache = std::fs::read_dir(daemon.root.join("networks/attachments"))
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .find(|name| name.ends_with("-default-stuck.json"))
        .expect("stuck's ADD cache");
    let lookalike = format!("CNI_CONTAINERID={}", stuck_cache.replace("-stuck.json", "-bystander"));
    daemon.ok(&["run", "-d", "--name", "bystander", "--network", "none", "-e", &lookalike, "busybox", "sleep", "300"]);
    daemon.kill9();
    let _ = run.wait();
    assert!(berth_tests::is_running(pid), "the plugin outlived berthd");
    daemon.restart();
    daemon.wait_until_serving();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while berth_tests::is_running(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "plugin {pid} still running after the restart:\n{}",
            daemon.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_no_network_leftovers(&daemon, &daemon.bridge_name(), &daemon.bridge_subnet());
    assert!(daemon.daemon_log().contains("killed CNI plugin processes a killed berthd left running"));
    // The create the kill cut off is on record as failed, its container still listed.
    assert!(daemon.ok(&["ps", "-a"]).contains("stuck"));
    assert_eq!(
        daemon.ok(&["exec", "bystander", "sh", "-c", "echo $CNI_CONTAINERID"]).trim(),
        &lookalike["CNI_CONTAINERID=".len()..]
    );
}

#[test]
fn bad_network_input_gets_errors_that_say_what_to_do() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let refused = |args: &[&str], expected: &[&str]| {
        let output = daemon.cli(args);
        assert!(!output.status.success(), "{args:?} was accepted");
        let message = stderr_of(&output);
        for part in expected {
            assert!(message.contains(part), "{args:?}: {message:?} lacks {part:?}");
        }
        assert!(!message.trim_end().ends_with('.'), "{message}");
    };
    refused(&["run", "--rm", "-p", "70000:80", "busybox", "true"], &["outside 1-65535", "HOSTPORT:CTRPORT"]);
    refused(&["run", "--rm", "-p", "80", "busybox", "true"], &["both a host port and a container port"]);
    refused(&["run", "--rm", "-p", "8080:80/sctp", "busybox", "true"], &["tcp or udp"]);
    refused(
        &["run", "--rm", "--network", "nosuch", "busybox", "true"],
        &["network \"nosuch\" not found", "berth network ls"],
    );
    refused(&["run", "--rm", "--network", "host", "-p", "8080:80", "busybox", "true"], &["-p needs a bridge network"]);
    refused(&["run", "--rm", "--dns", "resolver", "busybox", "true"], &["--dns"]);
    refused(&["run", "--rm", "--add-host", "nocolon", "busybox", "true"], &["NAME:IP"]);
    refused(&["network", "create", "--subnet", "10.0.0.1/24", "x1"], &["host bits are set"]);
    refused(&["network", "create", "host"], &["berth's own"]);
    refused(&["network", "create", "bad name"], &["invalid network name"]);
    refused(&["network", "rm", "nosuch"], &["not found"]);
    refused(&["network", "rm", "bridge"], &["default network"]);
    let subnet = user_subnet(&daemon);
    let network = format!("n{}", daemon.bridge_name());
    daemon.ok(&["network", "create", "--subnet", &subnet, &network]);
    refused(&["network", "create", "--subnet", &subnet, &format!("{network}b")], &["overlaps"]);
    daemon.ok(&["create", "--name", "user", "--network", &network, "busybox", "true"]);
    refused(&["network", "rm", &network], &["in use", "default/user"]);
    daemon.ok(&["rm", "user"]);
    daemon.ok(&["network", "rm", &network]);
    // Nothing was recorded by the refusals: no container exists.
    assert!(daemon.ps().is_empty());
}
