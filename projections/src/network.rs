//! What the log says about networking: a container's network request (`ContainerNetwork`, part
//! of its create record), the user-defined networks (`NetworkRecord`), and what CNI gave a task
//! (`NetworkAttachment`), so `berth-replay` can tell which address a container had at any moment.

use serde::{Deserialize, Serialize};

/// No network of its own: a network namespace with loopback only. Also what an empty mode
/// means, which is how records written before networking decode.
pub const NETWORK_NONE: &str = "none";
/// The host's network namespace, shared.
pub const NETWORK_HOST: &str = "host";
/// berth's default bridge network, which berthd writes itself (never recorded).
pub const NETWORK_BRIDGE: &str = "bridge";

/// A container's network, as created: the mode or network name, published ports, resolvers and
/// extra `/etc/hosts` entries. Records written before networking decode as the default: mode
/// "" (= none), nothing published.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ContainerNetwork {
    /// `none`, `host`, `bridge` or a user-defined network's name; "" means none.
    pub mode: String,
    pub ports: Vec<PortMapping>,
    /// `--dns`: nameservers that replace the host's in the container's `resolv.conf`.
    pub dns: Vec<String>,
    /// `--add-host NAME:IP` entries, as checked (`NAME:IP`).
    pub extra_hosts: Vec<String>,
}

impl ContainerNetwork {
    /// The mode with "" read as none.
    pub fn mode_name(&self) -> &str {
        if self.mode.is_empty() {
            NETWORK_NONE
        } else {
            &self.mode
        }
    }

    /// True when the container gets an interface from CNI (a bridge network, default or
    /// user-defined).
    pub fn uses_cni(&self) -> bool {
        !matches!(self.mode_name(), NETWORK_NONE | NETWORK_HOST)
    }
}

/// One `-p [HOSTIP:]HOSTPORT:CTRPORT[/PROTO]`, checked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct PortMapping {
    /// "" for every host address.
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl PortMapping {
    /// `127.0.0.1:8080->80/tcp`, as `berth ps` and berth-replay show it.
    pub fn describe(&self) -> String {
        let host_ip = if self.host_ip.is_empty() { "0.0.0.0" } else { &self.host_ip };
        format!("{host_ip}:{}->{}/{}", self.host_port, self.container_port, self.protocol)
    }
}

/// A user-defined bridge network (`berth network create`). Host-wide: a bridge and its subnet
/// belong to the host, not to a namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct NetworkRecord {
    pub name: String,
    /// The Linux bridge's name (at most 15 bytes).
    pub bridge: String,
    /// IPv4 subnet in CIDR form, e.g. `10.89.3.0/24`.
    pub subnet: String,
    pub gateway: String,
}

/// What CNI gave a task's network namespace, recorded with `TaskCreated` (and gone with
/// `NetworkDetached` or the task's deletion).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct NetworkAttachment {
    /// The network's name (`bridge` or a user-defined one).
    pub network: String,
    /// The bind-mounted network namespace file berthd made.
    pub netns: String,
    /// The container's interface (`eth0`).
    pub interface: String,
    /// Addresses in CIDR form, as CNI's result gave them.
    pub addresses: Vec<String>,
    pub gateway: String,
    pub mac: String,
    pub ports: Vec<PortMapping>,
    /// The `CNI_CONTAINERID` the plugins were called with; DEL must use the same.
    pub cni_container_id: String,
}

impl NetworkAttachment {
    /// The first address without its prefix length, e.g. `10.89.0.2`.
    pub fn ip(&self) -> Option<&str> {
        self.addresses.first().map(|address| address.split('/').next().unwrap_or(address))
    }
}
