//! berthd: the berth daemon. Flags win over the optional TOML config file.

use std::path::PathBuf;

use anyhow::Context;
use berth_log::Durability;
use berth_runtime::api::DEFAULT_ADDRESS;
use berth_runtime::daemon::config::{
    check_cgroup_parent, ConfigFile, DEFAULT_CGROUP_PARENT, DEFAULT_ROOT, DEFAULT_STATE,
};
use berth_runtime::daemon::layout::Layout;
use berth_runtime::daemon::{self, DaemonOptions};
use berth_runtime::network::config::NetworkOptions;
use clap::Parser;

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
    /// Volatile state: bundles, runc state [default: /run/berth]
    #[arg(long)]
    state: Option<PathBuf>,
    /// The UNIX socket to serve the gRPC API on [default: /run/berth/berthd.sock]
    #[arg(long)]
    address: Option<PathBuf>,
    /// The event log's directory [default: <root>/log]; put it on a file system of its own so
    /// containers filling theirs cannot leave the log without room
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// TOML config file (keys: root, state, address, runc, monitor, cgroup_parent, [log] dir, segment_size, durability, [output] max_file_bytes, max_files, [network] cni_bin_dir, bridge_name, bridge_subnet)
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
    /// Log filter, e.g. info, debug, berth_runtime=debug
    #[arg(long, env = "BERTHD_LOG", default_value = "info")]
    log_level: String,
}

fn main() -> anyhow::Result<()> {
    // Before any thread exists (the umask is the process's): whatever berthd, its monitors and
    // runc create without an explicit mode is private from its first moment.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(berth_runtime::sys::fs::DAEMON_UMASK));
    let flags = Flags::parse();
    keep_inherited_descriptors_from_children();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&flags.log_level))
        .with_writer(std::io::stderr)
        .init();
    let file = match &flags.config {
        Some(path) => ConfigFile::load(path).map_err(anyhow::Error::msg)?,
        None => ConfigFile::default(),
    };
    let log_config = file.log.unwrap_or_default();
    let durability = match log_config.durability.as_deref() {
        None | Some("sync") => Durability::Sync,
        Some("nosync") => Durability::NoSync,
        Some(other) => anyhow::bail!("config: log.durability is {other:?}: use \"sync\" or \"nosync\""),
    };
    let output_limits = file.output.as_ref().map(|output| output.limits()).transpose().map_err(anyhow::Error::msg)?;
    let monitor = flags
        .config
        .as_ref()
        .and(file.monitor.clone())
        .unwrap_or_else(berth_runtime::tasks::monitor::default_monitor_binary);
    let cgroup_parent =
        flags.cgroup_parent.or(file.cgroup_parent.clone()).unwrap_or_else(|| DEFAULT_CGROUP_PARENT.to_string());
    check_cgroup_parent(&cgroup_parent).map_err(anyhow::Error::msg)?;
    let network_config = file.network.unwrap_or_default();
    let network_defaults = NetworkOptions::default();
    let network = NetworkOptions {
        cni_bin_dir: flags.cni_bin_dir.or(network_config.cni_bin_dir).unwrap_or(network_defaults.cni_bin_dir),
        bridge_name: flags.bridge_name.or(network_config.bridge_name).unwrap_or(network_defaults.bridge_name),
        bridge_subnet: flags.bridge_subnet.or(network_config.bridge_subnet).unwrap_or(network_defaults.bridge_subnet),
    };
    let options = DaemonOptions {
        layout: Layout {
            root: flags.root.or(file.root).unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
            state: flags.state.or(file.state).unwrap_or_else(|| PathBuf::from(DEFAULT_STATE)),
            cgroup_parent,
            log: flags.log_dir.or(log_config.dir.clone()),
        },
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
        network,
    };
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
