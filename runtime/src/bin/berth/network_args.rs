//! The network flags of `run` and `create` (`--network`, `-p`, `--dns`, `--add-host`) and the
//! `berth network` verbs' arguments. berthd checks the values; the CLI passes them as spelled.

use berth_runtime::api;
use clap::{Args, Subcommand};

use crate::output::OutputArgs;

#[derive(Args, Debug, Default)]
pub struct NetworkArgs {
    /// none (loopback only), host (the host's network), bridge (berthd's default bridge, with
    /// an address of its own) or a network made with `berth network create` [default: bridge]
    #[arg(long = "network", alias = "net", value_name = "NETWORK")]
    pub network: Option<String>,

    /// Publish a container port on the host: [HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp] (repeatable;
    /// bridge networks only)
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CTR[/PROTO]")]
    pub publish: Vec<String>,

    /// A nameserver for the container's resolv.conf, replacing the host's (repeatable)
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,

    /// Add NAME:IP to the container's /etc/hosts (repeatable)
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
}

/// `run` and `create` default to the bridge network, as docker does.
pub const DEFAULT_NETWORK: &str = "bridge";

impl NetworkArgs {
    pub fn message(&self) -> api::NetworkRequest {
        api::NetworkRequest {
            mode: self.network.clone().unwrap_or_else(|| DEFAULT_NETWORK.to_string()),
            ports: self.publish.clone(),
            dns: self.dns.clone(),
            extra_hosts: self.add_hosts.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a bridge network (containers on it reach each other by IP and by name)
    Create(NetworkCreateArgs),
    /// List networks, berthd's default "bridge" first
    Ls(OutputArgs),
    /// Print networks as JSON: bridge, subnet, gateway and the containers attached now
    Inspect(NetworkNamesArgs),
    /// Remove networks (refused while a container names one)
    Rm(NetworkNamesArgs),
}

#[derive(Args, Debug)]
pub struct NetworkCreateArgs {
    /// IPv4 subnet in CIDR form, e.g. 10.90.7.0/24 [default: the first free /24 of 10.90.0.0/16]
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,

    /// Name of the new network
    #[arg(value_name = "NAME")]
    pub network_name: String,
}

#[derive(Args, Debug)]
pub struct NetworkNamesArgs {
    /// Networks
    #[arg(value_name = "NAME", required = true)]
    pub network_names: Vec<String>,
}
