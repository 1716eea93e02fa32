//! berthd's Prometheus endpoint, scraped by curl and read with a Prometheus text-format parser:
//! containers' cgroup series appear while they run (with plausible values) and vanish after
//! `rm`; commands are counted by outcome; event subscribers are counted. Hostile cases: a second
//! berthd on the same address, a non-loopback address, garbage and oversized requests, many
//! scrapers at once; and the default is loopback only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_tests::{berthd_in, bin, eventually, tail, Daemon};
use prometheus_parse::{Sample, Scrape, Value};

/// A port nothing listens on now (the kernel's pick, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

fn start_with_metrics(port: u16) -> Daemon {
    Daemon::start_with_config(|_| format!("[metrics]\naddress = \":{port}\"\n"))
}

/// The body of `GET /metrics`, fetched with curl; panics on anything but 200.
fn curl_metrics(port: u16) -> String {
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-w",
            "\n%{http_code} %{content_type}",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .expect("run curl");
    assert!(output.status.success(), "curl failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("utf-8 metrics");
    let (body, status_line) = text.rsplit_once('\n').expect("curl's status line");
    assert!(status_line.starts_with("200 application/openmetrics-text"), "{status_line}\n{body}");
    body.to_string()
}

/// Parses the exposition with prometheus-parse, and checks what that lenient parser skips:
/// every line is a HELP, TYPE, UNIT or EOF comment or a sample it understood, every sample's
/// family was typed before it, and the text ends with `# EOF`.
fn parse_strictly(body: &str) -> Scrape {
    let mut typed: Vec<String> = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split_whitespace().next().expect("a name").to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        match prometheus_parse::LineInfo::parse(line) {
            prometheus_parse::LineInfo::Sample { metric_name, .. } => assert!(
                typed.iter().any(|family| metric_name == family || metric_name.starts_with(&format!("{family}_"))),
                "sample {metric_name} comes before its family's TYPE line"
            ),
            other => panic!("line {line:?} is not valid exposition text: {other:?}"),
        }
    }
    assert_eq!(body.lines().last(), Some("# EOF"), "the exposition ends with # EOF");
    Scrape::parse(body.lines().map(|line| Ok(line.to_string()))).expect("parse the exposition")
}

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => *value,
        other => panic!("{} is not a plain value: {other:?}", sample.metric),
    }
}

/// The samples named `metric` whose labels include every pair of `labels`.
fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| labels.iter().all(|(key, wanted)| sample.labels.get(key) == Some(*wanted)))
        .collect()
}

fn one(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = find(scrape, metric, labels);
    assert_eq!(found.len(), 1, "expected one {metric} {labels:?}, found {found:?}");
    value(found[0])
}

#[test]
fn running_containers_have_series_with_plausible_values_that_vanish_after_rm() {
    let port = free_port();
    let daemon = start_with_metrics(port);
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "1000"]);
    // Three processes under a 64 MiB limit.
    let limited: Vec<&str> = "run -d --name limited --memory 64m busybox sh -c".split(' ').collect();
    daemon.ok(&[&limited[..], &["sleep 1000 & sleep 1000 & wait"]].concat());
    let refused = daemon.cli(&["create", "--name", "plain", "busybox", "true"]);
    assert!(!refused.status.success(), "a second container named plain was created");

    let scrape = parse_strictly(&curl_metrics(port));
    assert_eq!(one(&scrape, "berth_tasks", &[("namespace", "default"), ("state", "running")]), 2.0);
    for id in ["plain", "limited"] {
        let labels = [("namespace", "default"), ("container", id)];
        let memory = one(&scrape, "berth_container_memory_usage_bytes", &labels);
        assert!(memory > 0.0 && memory < 64.0 * 1024.0 * 1024.0, "{id} uses {memory} bytes");
        let cpu = one(&scrape, "berth_container_cpu_seconds_total", &labels);
        assert!((0.0..60.0).contains(&cpu), "{id} used {cpu} s of CPU");
        one(&scrape, "berth_container_block_read_bytes_total", &labels);
        one(&scrape, "berth_container_block_write_bytes_total", &labels);
    }
    assert_eq!(one(&scrape, "berth_container_pids", &[("container", "plain")]), 1.0);
    assert_eq!(one(&scrape, "berth_container_pids", &[("container", "limited")]), 3.0);
    assert_eq!(one(&scrape, "berth_container_memory_limit_bytes", &[("container", "limited")]), 67108864.0);
    assert!(find(&scrape, "berth_container_memory_limit_bytes", &[("container", "plain")]).is_empty());

    // Commands by type and outcome, a refusal with its kind.
    let accepted = [("command", "CreateContainer"), ("outcome", "accepted")];
    assert_eq!(one(&scrape, "berth_commands_total", &accepted), 2.0);
    let exists = [("command", "CreateContainer"), ("outcome", "refused"), ("reason", "already_exists")];
    let commands: Vec<_> =
        find(&scrape, "berth_commands_total", &[]).into_iter().map(|sample| (&sample.labels, value(sample))).collect();
    assert_eq!(find(&scrape, "berth_commands_total", &exists).len(), 1, "{commands:?}");
    assert_eq!(one(&scrape, "berth_commands_total", &exists), 1.0);
    // The log: every accepted command was appended (one record each) and synced; the
    // histograms count them.
    let records = one(&scrape, "berth_log_records_total", &[]);
    let accepted_commands: f64 =
        find(&scrape, "berth_commands_total", &[("outcome", "accepted")]).into_iter().map(value).sum();
    // The import, each run's create (with its task's intents) and outcome, at the least.
    assert!(accepted_commands >= 5.0, "{commands:?}");
    assert!(records >= accepted_commands, "{records} records for {accepted_commands} accepted commands");
    assert!(one(&scrape, "berth_log_fsyncs_total", &[]) >= 1.0);
    assert!(one(&scrape, "berth_log_last_seq", &[]) >= records);
    assert!(one(&scrape, "berth_log_segments", &[]) >= 1.0);
    let append = find(&scrape, "berth_log_append_seconds", &[]);
    match &append.first().expect("the append latency histogram").value {
        Value::Histogram(buckets) => {
            let total = buckets.iter().map(|bucket| bucket.count).fold(0.0, f64::max);
            assert!(total >= 1.0, "{buckets:?}");
        }
        other => panic!("berth_log_append_seconds is not a histogram: {other:?}"),
    }
    assert!(one(&scrape, "berth_startup_replay_seconds", &[]) >= 0.0);
    assert_eq!(one(&scrape, "berth_event_subscribers", &[]), 0.0);

    // An event follower is counted while it is subscribed, and no longer once it is gone.
    let mut follower = daemon.berth().args(["events", "--follow"]).stdout(Stdio::null()).spawn().expect("events");
    eventually(Duration::from_secs(30), "the follower is counted", || {
        let scrape = parse_strictly(&curl_metrics(port));
        (one(&scrape, "berth_event_subscribers", &[]) == 1.0).then_some(())
    });
    follower.kill().expect("kill the follower");
    follower.wait().expect("reap the follower");
    eventually(Duration::from_secs(30), "the follower is no longer counted", || {
        let scrape = parse_strictly(&curl_metrics(port));
        (one(&scrape, "berth_event_subscribers", &[]) == 0.0).then_some(())
    });

    daemon.ok(&["rm", "-f", "plain"]);
    let scrape = parse_strictly(&curl_metrics(port));
    let gone: Vec<&Sample> =
        scrape.samples.iter().filter(|sample| sample.labels.get("container") == Some("plain")).collect();
    assert!(gone.is_empty(), "series of a removed container remain: {gone:?}");
    assert_eq!(one(&scrape, "berth_container_pids", &[("container", "limited")]), 3.0);
    assert_eq!(one(&scrape, "berth_tasks", &[("namespace", "default"), ("state", "running")]), 1.0);
}

/// The local addresses (hex, as /proc/net/tcp{,6} write them) of the sockets listening on `port`.
fn listeners_on(port: u16) -> Vec<String> {
    let port_hex = format!(":{port:04X}");
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // State 0A is LISTEN.
            if fields.len() > 3 && fields[1].ends_with(&port_hex) && fields[3] == "0A" {
                found.push(fields[1].to_string());
            }
        }
    }
    found
}

#[test]
fn a_port_alone_is_served_on_loopback_only_a_second_berthd_there_is_refused_and_a_restart_binds_it_again() {
    let port = free_port();
    let daemon = start_with_metrics(port);
    assert_eq!(listeners_on(port), vec![format!("0100007F:{port:04X}")], "only 127.0.0.1 listens");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());

    // A second berthd (its own root) on the same address stops before it records anything,
    // saying why and what to do.
    let other = tempfile::Builder::new().prefix("berth-it-").tempdir_in("/var/tmp").expect("temp dir");
    let cgroup_parent = format!("/{}", other.path().file_name().unwrap().to_string_lossy());
    let berthd = |extra: &[&str]| berthd_in(other.path(), &[&["--cgroup-parent", &cgroup_parent], extra].concat());
    let second = berthd(&["--metrics-address", &format!("127.0.0.1:{port}")]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second berthd on the port started: {stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics on 127.0.0.1:{port}"))
            && stderr.contains("another berthd or another program listens there"),
        "{stderr}"
    );
    let head =
        Command::new(bin("berth-replay")).arg("--root").arg(other.path().join("root")).arg("head").output().unwrap();
    let head = String::from_utf8_lossy(&head.stdout);
    assert!(head.starts_with("0:"), "the refused berthd recorded something: head is {head}");
    // The first one still serves.
    parse_strictly(&curl_metrics(port));

    // Any address other hosts could reach is refused unless the operator allows it.
    let open = berthd(&["--metrics-address", &format!("0.0.0.0:{}", free_port())]);
    let stderr = String::from_utf8_lossy(&open.stderr);
    assert!(!open.status.success());
    assert!(
        stderr.contains("is not a loopback address") && stderr.contains("--metrics-allow-non-loopback"),
        "{stderr}"
    );
    // After a crash the next berthd binds the same port again at once (no TIME_WAIT refusal),
    // and reports how long its replay took.
    let mut daemon = daemon;
    let _kept_alive = TcpStream::connect(("127.0.0.1", port)).expect("a client connected across the crash");
    daemon.restart();
    let scrape = parse_strictly(&curl_metrics(port));
    assert!(one(&scrape, "berth_startup_replay_seconds", &[]) > 0.0);
    assert!(one(&scrape, "berth_log_last_seq", &[]) >= 2.0, "both starts are recorded");
    let typo = berthd(&["--metrics-address", "localhost:metrics"]);
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("no valid port"),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
    drop(daemon);
}

#[test]
fn without_the_flag_berthd_listens_on_no_tcp_port() {
    let daemon = Daemon::start();
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
        .expect("berthd's descriptors")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| target.to_string_lossy().strip_prefix("socket:[")?.strip_suffix(']').map(String::from))
        .collect();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(
                !(fields.len() > 9 && fields[3] == "0A" && inodes.contains(&fields[9].to_string())),
                "berthd listens on TCP without --metrics-address: {line}"
            );
        }
    }
}

/// Sends `request` raw and returns what came back before the server closed (or 10 s passed).
fn raw_exchange(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn garbage_oversized_and_many_concurrent_requests_leave_the_endpoint_serving() {
    let port = free_port();
    let daemon = start_with_metrics(port);

    let garbage = raw_exchange(port, b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n");
    assert!(garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let huge_header = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
    let oversized = raw_exchange(port, huge_header.as_bytes());
    assert!(
        oversized.is_empty() || oversized.starts_with("HTTP/1.1 431"),
        "{}",
        &oversized[..oversized.len().min(200)]
    );
    let post =
        raw_exchange(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405") && post.contains("allow: GET, HEAD"), "{post}");
    let elsewhere = raw_exchange(port, b"GET /debug HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(elsewhere.starts_with("HTTP/1.1 404") && elsewhere.contains("/metrics"), "{elsewhere}");

    // Many scrapers at once: each gets the whole exposition.
    let scrapers: Vec<_> = (0..24)
        .map(|_| {
            std::thread::spawn(move || {
                raw_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            })
        })
        .collect();
    for scraper in scrapers {
        let answer = scraper.join().expect("scraper");
        assert!(answer.starts_with("HTTP/1.1 200") && answer.trim_end().ends_with("# EOF"), "{answer}");
    }
    // And berthd is still whole: it serves metrics and the API.
    parse_strictly(&curl_metrics(port));
    daemon.ok(&["version"]);
    assert!(!daemon.daemon_log().contains("panicked"), "{}", tail(&daemon.daemon_log(), 20));
}
