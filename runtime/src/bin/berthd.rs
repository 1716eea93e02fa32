//! berthd: the berth daemon. Flags win over the optional TOML config file.

use std::path::PathBuf;

use anyhow::Context;
use berth_log::Durability;
use berth_runtime::api::DEFAULT_ADDRESS;
use berth_runtime::daemon::config::{
    check_cgroup_parent, check_gid, resolve_group, ConfigFile, DEFAULT_CGROUP_PARENT, DEFAULT_ROOT, DEFAULT_STATE,
};
use berth_runtime::daemon::layout::Layout;
use berth_runtime::daemon::logging::LogFormat;
use berth_runtime::daemon::{self, DaemonOptions};
use berth_runtime::network::config::NetworkOptions;
use berth_runtime::sys::notify::Notifier;
use clap::{CommandFactory, Parser};

#[derive(Parser)]
#[command(
    name = "berthd",
    version,
    about = "berth container runtime daemon: every lifecycle action is an event in a durable log"
)]
struct Flags {
    /// Persistent state: the log, content, snapshots, task logs [default: /var/lib/berth]
    #[arg(long)]
    root: Option<PathBuf>,
    /// Volatile state: bundles, runc state, exec directories [default: /run/berth]
    #[arg(long)]
    state: Option<PathBuf>,
    /// The UNIX socket to serve the gRPC API on [default: /run/berth/berthd.sock]
    #[arg(long)]
    address: Option<PathBuf>,
    /// The event log's directory [default: <root>/log]; put it on a file system of its own so
    /// containers filling theirs cannot leave the log without room
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// TOML config file (keys: root, state, address, runc, monitor, cgroup_parent, [log] dir, segment_size, durability, archive_dir, archive_interval_secs, retain_max_age_secs, retain_max_bytes, [registry] config_path, [output] max_file_bytes, max_files, [grpc] gid, [metrics] address, allow_non_loopback, [logging] format, [secrets] forget_on_remove, retention_days; [checkpoint] enabled, every_records, every_seconds; [network] cni_bin_dir, bridge_name, bridge_subnet, spare; contrib/berthd.toml documents each)
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// The runc binary [default: runc from PATH]
    #[arg(long)]
    runc: Option<PathBuf>,
    /// The cgroup containers get theirs under, as <parent>/<namespace>/<id>; two berthds on
    /// one host need different ones [default: /berth]
    #[arg(long)]
    cgroup_parent: Option<String>,
    /// Where the CNI plugins are [default: /usr/lib/cni]
    #[arg(long)]
    cni_bin_dir: Option<PathBuf>,
    /// The default bridge network's Linux bridge; two berthds on one host need different ones
    /// [default: berth0]
    #[arg(long)]
    bridge_name: Option<String>,
    /// The default bridge network's IPv4 subnet [default: 10.213.0.0/16]
    #[arg(long)]
    bridge_subnet: Option<String>,
    /// Instead of serving: repair a damaged log by keeping every record up to the last one whose
    /// checksum and hash chain verify (the damaged log is moved aside to <root>/log.damaged-<time>,
    /// not deleted), reset the log's anchor, and exit. Stop berthd first
    #[arg(long)]
    salvage: bool,
    /// The group whose members may use the socket besides root (a name or a number; the socket
    /// becomes root:GROUP 0660). Its members are as good as root: they can run privileged
    /// containers [default: [grpc] gid, else none]
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Instead of serving: move the finished log segments that the newest checkpoint covers
    /// (or --archive-through) to the archive directory, apply the retention policy, and exit.
    /// Stop berthd first; a running berthd archives by itself
    #[arg(long)]
    archive_now: bool,
    /// With --archive-now: archive finished segments whose last seq is at most SEQ, whatever the
    /// checkpoints say (berthd reads archived segments back at start-up)
    #[arg(long, value_name = "SEQ", requires = "archive_now")]
    archive_through: Option<u64>,
    /// Log filter, e.g. info, debug, berth_runtime=debug; RUST_LOG is added to it. h2, hyper,
    /// tonic and tower stay at info unless the filter names them
    #[arg(long, env = "BERTHD_LOG", default_value = "info")]
    log_level: String,
    /// How berthd's log lines are written on stderr: text (coloured only on a terminal) or json
    /// (one object per line) [default: text]
    #[arg(long)]
    log_format: Option<LogFormat>,
    /// Serve Prometheus metrics over HTTP at /metrics on HOST:PORT; ":PORT" means 127.0.0.1.
    /// Off unless given
    #[arg(long)]
    metrics_address: Option<String>,
    /// Allow a --metrics-address other hosts can reach (the endpoint has no authentication and
    /// names every container): only where a firewall keeps others out
    #[arg(long)]
    metrics_allow_non_loopback: bool,
    /// Instead of serving: print a completion script for this shell (scripts/install.sh uses it)
    #[arg(long, value_name = "SHELL", hide = true)]
    completion: Option<clap_complete::Shell>,
    /// Instead of serving: write the man page berthd.8 into DIR (scripts/install.sh uses it)
    #[arg(long, value_name = "DIR", hide = true)]
    man: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    // Before any thread exists (the umask is the process's): whatever berthd, its monitors and
    // runc create without an explicit mode is private from its first moment.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(berth_runtime::sys::fs::DAEMON_UMASK));
    // Also before any thread: the variable leaves the environment, so no child inherits it.
    let notifier = Notifier::take_from_environment();
    let flags = Flags::parse();
    if let Some(shell) = flags.completion {
        clap_complete::generate(shell, &mut Flags::command(), "berthd", &mut std::io::stdout());
        return Ok(());
    }
    if let Some(dir) = &flags.man {
        let mut page = Vec::new();
        clap_mangen::Man::new(Flags::command()).section("8").render(&mut page)?;
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(dir.join("berthd.8"), page))
            .with_context(|| format!("cannot write berthd.8 into {}", dir.display()))?;
        return Ok(());
    }
    keep_inherited_descriptors_from_children();
    let file = match &flags.config {
        Some(path) => ConfigFile::load(path).map_err(anyhow::Error::msg)?,
        None => ConfigFile::default(),
    };
    let log_format = match (flags.log_format, file.logging.as_ref().and_then(|logging| logging.format.as_deref())) {
        (Some(format), _) => format,
        (None, Some(format)) => format.parse().map_err(|error| anyhow::anyhow!("config: [logging] format: {error}"))?,
        (None, None) => LogFormat::Text,
    };
    berth_runtime::daemon::logging::init(log_format, &flags.log_level).map_err(anyhow::Error::msg)?;
    let notifier = notifier.unwrap_or_else(|error| {
        tracing::warn!("{error}");
        None
    });
    let metrics_config = file.metrics.as_ref();
    let metrics_address = flags
        .metrics_address
        .as_deref()
        .or(metrics_config.and_then(|metrics| metrics.address.as_deref()))
        .map(|address| {
            let allow =
                flags.metrics_allow_non_loopback || metrics_config.is_some_and(|metrics| metrics.allow_non_loopback);
            berth_runtime::metrics::address::parse_metrics_address(address, allow)
        })
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let log_config = file.log.unwrap_or_default();
    let durability = match log_config.durability.as_deref() {
        None | Some("sync") => Durability::Sync,
        Some("nosync") => Durability::NoSync,
        Some(other) => anyhow::bail!("config: log.durability is {other:?}: use \"sync\" or \"nosync\""),
    };
    let checkpoint_policy =
        file.checkpoint.as_ref().map(|checkpoint| checkpoint.policy()).transpose().map_err(anyhow::Error::msg)?;
    let output_limits = file.output.as_ref().map(|output| output.limits()).transpose().map_err(anyhow::Error::msg)?;
    let secrets = file.secrets.as_ref().map(|secrets| secrets.policy()).transpose().map_err(anyhow::Error::msg)?;
    let monitor = flags
        .config
        .as_ref()
        .and(file.monitor.clone())
        .unwrap_or_else(berth_runtime::tasks::monitor::default_monitor_binary);
    let cgroup_parent =
        flags.cgroup_parent.or(file.cgroup_parent.clone()).unwrap_or_else(|| DEFAULT_CGROUP_PARENT.to_string());
    check_cgroup_parent(&cgroup_parent).map_err(anyhow::Error::msg)?;
    let socket_gid = match &flags.group {
        Some(group) => Some(resolve_group(group).map_err(anyhow::Error::msg)?),
        None => file.grpc.as_ref().and_then(|grpc| grpc.gid).map(check_gid).transpose().map_err(anyhow::Error::msg)?,
    };
    let layout = Layout {
        root: flags.root.or(file.root).unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
        state: flags.state.or(file.state).unwrap_or_else(|| PathBuf::from(DEFAULT_STATE)),
        cgroup_parent,
        log: flags.log_dir.or(log_config.dir.clone()),
    };
    let archive = log_config.archive_settings(layout.default_log_archive_dir()).map_err(anyhow::Error::msg)?;
    let network_config = file.network.unwrap_or_default();
    let network_defaults = NetworkOptions::default();
    let network = NetworkOptions {
        cni_bin_dir: flags.cni_bin_dir.or(network_config.cni_bin_dir).unwrap_or(network_defaults.cni_bin_dir),
        bridge_name: flags.bridge_name.or(network_config.bridge_name).unwrap_or(network_defaults.bridge_name),
        bridge_subnet: flags.bridge_subnet.or(network_config.bridge_subnet).unwrap_or(network_defaults.bridge_subnet),
        spare: network_config.spare.unwrap_or(network_defaults.spare),
    };
    let options = DaemonOptions {
        layout,
        address: flags.address.or(file.address).unwrap_or_else(|| PathBuf::from(DEFAULT_ADDRESS)),
        runc: flags.runc.or(file.runc).unwrap_or_else(|| PathBuf::from("runc")),
        monitor,
        segment_size: log_config.segment_size,
        durability,
        registry_hosts_dir: file
            .registry
            .and_then(|registry| registry.config_path)
            .unwrap_or_else(|| PathBuf::from(berth_runtime::images::registry::hosts::DEFAULT_HOSTS_CONFIG_DIR)),
        output_limits: output_limits.unwrap_or_default(),
        socket_gid,
        notifier: notifier.map(std::sync::Arc::new),
        metrics_address,
        archive,
        secrets: secrets.unwrap_or_default(),
        checkpoints: checkpoint_policy.unwrap_or_default(),
        network,
    };
    if flags.archive_now {
        let through = flags.archive_through.map(berth_log::Seq);
        let summary = daemon::archive_now(&options.layout, options.segment_size, &options.archive, through)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        println!("{summary}");
        return Ok(());
    }
    if flags.salvage {
        let summary =
            daemon::salvage(&options.layout, options.segment_size).map_err(|error| anyhow::anyhow!("{error}"))?;
        println!("{summary}");
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        let shutdown = async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("shutting down; containers keep running under their monitors");
        };
        daemon::run(options, shutdown).await.map_err(|error| anyhow::anyhow!("{error}"))
    });
    // Dropping the runtime would wait for every blocking task (a submission queued behind a
    // busy command thread, say); a stopping berthd gives them a moment, not for ever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Descriptors berthd inherited beyond stdio (a launcher's pipe, say) are marked close-on-exec,
/// so that monitors, which live as long as their containers, do not keep them open for ever.
fn keep_inherited_descriptors_from_children() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return };
    let inherited: Vec<i32> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in inherited {
        // The directory listing's own descriptor is closed by now; that one fails harmlessly.
        let _ = berth_runtime::sys::process::set_close_on_exec(fd);
    }
}
