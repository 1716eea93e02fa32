//! CreateNetwork and RemoveNetwork (user-defined bridge networks, host-wide), and the checks a
//! container's network request passes at create: the mode names a network that exists, each
//! `-p` is a real port mapping, `--dns` and `--add-host` are addresses.

use std::net::{IpAddr, Ipv4Addr};

use berth_projections::{
    ContainerNetwork, Event, NetworkRecord, PortMapping, State, NETWORK_BRIDGE, NETWORK_HOST, NETWORK_NONE,
};

use crate::validate::shown;
use crate::{validate, CommandError};

/// Published ports, `--dns` and `--add-host` entries per container: each is an iptables rule or
/// a line of a file berth writes.
pub const MAX_NETWORK_ENTRIES: usize = 256;
/// Where `berth network create` without `--subnet` takes a /24 from: 10.90.0.0/16's 256 /24s.
pub const AUTO_SUBNET_BASE: [u8; 2] = [10, 90];

pub struct CreateNetwork {
    pub name: String,
    /// CIDR, or "" to take the first free /24 of 10.90.0.0/16.
    pub subnet: String,
    /// Subnets berthd already uses outside the record (its default bridge's).
    pub reserved_subnets: Vec<String>,
}

impl CreateNetwork {
    pub fn decide(&self, state: &State) -> Result<Vec<Event>, CommandError> {
        validate::network_name(&self.name)?;
        if [NETWORK_NONE, NETWORK_HOST, NETWORK_BRIDGE].contains(&self.name.as_str()) {
            return Err(CommandError::InvalidArgument(format!(
                "network name {:?} is berth's own: choose another name",
                self.name
            )));
        }
        if state.networks.contains_key(&self.name) {
            return Err(CommandError::AlreadyExists(format!(
                "network {:?} already exists: use it, or remove it first with `berth network rm {}`",
                self.name, self.name
            )));
        }
        let taken: Vec<Subnet> = state
            .networks
            .values()
            .map(|network| network.record.subnet.as_str())
            .chain(self.reserved_subnets.iter().map(String::as_str))
            .filter_map(|subnet| Subnet::parse(subnet).ok())
            .collect();
        let subnet = if self.subnet.is_empty() {
            (0..=255u8)
                .map(|third| Subnet {
                    address: Ipv4Addr::new(AUTO_SUBNET_BASE[0], AUTO_SUBNET_BASE[1], third, 0),
                    prefix: 24,
                })
                .find(|candidate| !taken.iter().any(|other| other.overlaps(candidate)))
                .ok_or_else(|| {
                    CommandError::FailedPrecondition(
                        "every /24 of 10.90.0.0/16 is taken by a network: give one with --subnet".to_string(),
                    )
                })?
        } else {
            let subnet = Subnet::parse(&self.subnet)?;
            if let Some(other) = taken.iter().find(|other| other.overlaps(&subnet)) {
                return Err(CommandError::AlreadyExists(format!(
                    "subnet {subnet} overlaps {other}, which a network already uses: choose another --subnet"
                )));
            }
            subnet
        };
        let bridge = bridge_name(&self.name);
        if state.networks.values().any(|network| network.record.bridge == bridge) {
            return Err(CommandError::AlreadyExists(format!(
                "bridge {bridge} of network {:?} is already another network's: choose another name",
                self.name
            )));
        }
        let network = NetworkRecord {
            name: self.name.clone(),
            bridge,
            subnet: subnet.to_string(),
            gateway: subnet.first_host().to_string(),
        };
        Ok(vec![Event::NetworkCreated { network }])
    }
}

pub struct RemoveNetwork {
    pub name: String,
}

impl RemoveNetwork {
    pub fn decide(&self, state: &State) -> Result<Vec<Event>, CommandError> {
        if !state.networks.contains_key(&self.name) {
            return Err(network_not_found(&self.name));
        }
        let users = state.network_users(&self.name);
        if !users.is_empty() {
            let names: Vec<String> = users.iter().map(|(namespace, id)| format!("{namespace}/{id}")).collect();
            return Err(CommandError::FailedPrecondition(format!(
                "network {:?} is in use by container(s) {}: remove them first (`berth rm -f ID`)",
                self.name,
                names.join(", ")
            )));
        }
        Ok(vec![Event::NetworkRemoved { name: self.name.clone() }])
    }
}

fn network_not_found(name: &str) -> CommandError {
    CommandError::NotFound(format!(
        "network {} not found: use none, host, bridge or one `berth network ls` lists (`berth network create NAME` makes one)",
        shown(name)
    ))
}

/// A container's network request as a client spelled it.
#[derive(Debug, Clone, Default)]
pub struct NetworkRequest {
    /// "" means none (what a gRPC client that says nothing gets; the CLI sends `bridge`).
    pub mode: String,
    /// `[HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp]` each.
    pub ports: Vec<String>,
    pub dns: Vec<String>,
    /// `NAME:IP` each.
    pub extra_hosts: Vec<String>,
}

impl NetworkRequest {
    /// Checks the request against the recorded networks and resolves it into the record's form.
    pub fn resolve(&self, state: &State) -> Result<ContainerNetwork, CommandError> {
        let mode = if self.mode.is_empty() { NETWORK_NONE.to_string() } else { self.mode.clone() };
        if ![NETWORK_NONE, NETWORK_HOST, NETWORK_BRIDGE].contains(&mode.as_str()) && !state.networks.contains_key(&mode)
        {
            return Err(network_not_found(&mode));
        }
        for (what, entries) in [("-p", &self.ports), ("--dns", &self.dns), ("--add-host", &self.extra_hosts)] {
            if entries.len() > MAX_NETWORK_ENTRIES {
                return Err(CommandError::InvalidArgument(format!(
                    "{} {what} entries given; at most {MAX_NETWORK_ENTRIES} are taken",
                    entries.len()
                )));
            }
        }
        let ports = self.ports.iter().map(|spec| parse_port_mapping(spec)).collect::<Result<Vec<_>, _>>()?;
        let network = ContainerNetwork {
            mode,
            ports,
            dns: self.dns.iter().map(|address| parse_dns(address)).collect::<Result<_, _>>()?,
            extra_hosts: self.extra_hosts.iter().map(|entry| parse_extra_host(entry)).collect::<Result<_, _>>()?,
        };
        if !network.ports.is_empty() && !network.uses_cni() {
            return Err(CommandError::InvalidArgument(format!(
                "-p needs a bridge network, and --network {} has none: drop -p or use --network bridge",
                network.mode
            )));
        }
        for (index, port) in network.ports.iter().enumerate() {
            if network.ports[..index].iter().any(|earlier| same_host_port(earlier, port)) {
                return Err(CommandError::InvalidArgument(format!(
                    "host port {}/{} is published twice: publish each host port once",
                    port.host_port, port.protocol
                )));
            }
        }
        Ok(network)
    }
}

/// Refuses host ports a live task of another container already publishes (as docker says "port
/// is already allocated"); iptables would otherwise send the traffic to whichever rule is first.
pub fn check_ports_free(state: &State, container_id: &str, network: &ContainerNetwork) -> Result<(), CommandError> {
    for (namespace, container) in state.containers() {
        let Some(attachment) = container.task.as_ref().and_then(|task| task.network.as_ref()) else { continue };
        if container.record.id == container_id {
            continue;
        }
        for port in &network.ports {
            if attachment.ports.iter().any(|used| same_host_port(used, port)) {
                return Err(CommandError::AlreadyExists(format!(
                    "host port {} is already published by container {namespace}/{}: choose another host port",
                    port.describe(),
                    container.record.id
                )));
            }
        }
    }
    Ok(())
}

fn same_host_port(one: &PortMapping, other: &PortMapping) -> bool {
    one.host_port == other.host_port
        && one.protocol == other.protocol
        && (one.host_ip == other.host_ip || one.host_ip.is_empty() || other.host_ip.is_empty())
}

/// `[HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp]`.
pub fn parse_port_mapping(spec: &str) -> Result<PortMapping, CommandError> {
    let invalid = |why: &str| {
        CommandError::InvalidArgument(format!(
            "invalid -p {}: {why}; write [HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp], e.g. 127.0.0.1:8080:80",
            shown(spec)
        ))
    };
    let (ports, protocol) = match spec.rsplit_once('/') {
        Some((ports, protocol)) => (ports, protocol.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if protocol != "tcp" && protocol != "udp" {
        return Err(invalid("the protocol must be tcp or udp"));
    }
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_ip, host_port, container_port) = match parts.as_slice() {
        [host_port, container_port] => (String::new(), *host_port, *container_port),
        [host_ip, host_port, container_port] => {
            let address: Ipv4Addr = host_ip.parse().map_err(|_| invalid("the host address is not an IPv4 address"))?;
            (address.to_string(), *host_port, *container_port)
        }
        _ => return Err(invalid("both a host port and a container port are needed")),
    };
    let port = |text: &str, which: &str| -> Result<u16, CommandError> {
        match text.parse::<u32>() {
            Ok(number @ 1..=65535) => Ok(number as u16),
            Ok(_) => Err(invalid(&format!("the {which} port {text} is outside 1-65535"))),
            Err(_) => Err(invalid(&format!("the {which} port {text:?} is not a number"))),
        }
    };
    Ok(PortMapping {
        host_ip,
        host_port: port(host_port, "host")?,
        container_port: port(container_port, "container")?,
        protocol,
    })
}

fn parse_dns(address: &str) -> Result<String, CommandError> {
    address.parse::<IpAddr>().map(|address| address.to_string()).map_err(|_| {
        CommandError::InvalidArgument(format!("invalid --dns {}: give a nameserver's IP address", shown(address)))
    })
}

/// `NAME:IP`; the IP may be IPv6 (everything after the first colon).
fn parse_extra_host(entry: &str) -> Result<String, CommandError> {
    let invalid = || {
        CommandError::InvalidArgument(format!("invalid --add-host {}: write NAME:IP, e.g. db:10.0.0.5", shown(entry)))
    };
    let (name, address) = entry.split_once(':').ok_or_else(invalid)?;
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|character| character.is_ascii_alphanumeric() || "-._".contains(character));
    let address: IpAddr = address.parse().map_err(|_| invalid())?;
    if !name_ok {
        return Err(invalid());
    }
    Ok(format!("{name}:{address}"))
}

/// An IPv4 subnet in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// `10.90.3.0/24`: an IPv4 network address (no host bits set) with a prefix of 8 to 28.
    pub fn parse(text: &str) -> Result<Subnet, CommandError> {
        let invalid = |why: &str| {
            CommandError::InvalidArgument(format!(
                "invalid subnet {}: {why}; write an IPv4 network in CIDR form, e.g. 10.90.7.0/24",
                shown(text)
            ))
        };
        let (address, prefix) = text.split_once('/').ok_or_else(|| invalid("the /PREFIX is missing"))?;
        let address: Ipv4Addr = address.parse().map_err(|_| invalid("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid("the prefix is not a number"))?;
        if !(8..=28).contains(&prefix) {
            return Err(invalid("the prefix must be 8 to 28"));
        }
        let subnet = Subnet { address, prefix };
        if u32::from(address) & !subnet.mask() != 0 {
            return Err(invalid("host bits are set"));
        }
        Ok(subnet)
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let mask = self.mask() & other.mask();
        u32::from(self.address) & mask == u32::from(other.address) & mask
    }

    /// The gateway's address: the first host.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) + 1)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", self.address, self.prefix)
    }
}

/// A network's Linux bridge: `br-` and 10 hex digits of an FNV-1a hash of its name (an
/// interface name holds at most 15 bytes, a network name up to 64).
pub fn bridge_name(network_name: &str) -> String {
    let hash = network_name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    format!("br-{:010x}", hash & 0xff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(result: Result<PortMapping, CommandError>) -> String {
        match result {
            Ok(port) => port.describe(),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn port_mappings_parse_or_say_what_to_write() {
        assert_eq!(kind(parse_port_mapping("8080:80")), "0.0.0.0:8080->80/tcp");
        assert_eq!(kind(parse_port_mapping("127.0.0.1:5353:53/UDP")), "127.0.0.1:5353->53/udp");
        for (spec, why) in [
            ("70000:80", "outside 1-65535"),
            ("0:80", "outside 1-65535"),
            ("80", "both a host port and a container port"),
            ("a:80", "not a number"),
            ("8080:80/sctp", "tcp or udp"),
            ("::1:80:80", "both a host port"),
            ("300.1.1.1:80:80", "not an IPv4 address"),
        ] {
            let message = kind(parse_port_mapping(spec));
            assert!(message.contains(why) && message.contains("HOSTPORT:CTRPORT"), "{spec}: {message}");
        }
    }

    #[test]
    fn subnets_are_checked_and_overlaps_found() {
        let subnet = Subnet::parse("10.90.7.0/24").unwrap();
        assert_eq!(subnet.first_host(), Ipv4Addr::new(10, 90, 7, 1));
        assert!(subnet.overlaps(&Subnet::parse("10.90.0.0/16").unwrap()));
        assert!(!subnet.overlaps(&Subnet::parse("10.90.8.0/24").unwrap()));
        for bad in ["10.90.7.1/24", "10.90.7.0", "10.90.7.0/31", "fd00::/64", "x/24"] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks_are_created_removed_only_when_unused_and_take_free_subnets() {
        let mut state = State::new();
        let create = |name: &str, subnet: &str| CreateNetwork {
            name: name.into(),
            subnet: subnet.into(),
            reserved_subnets: vec!["10.90.0.0/24".into()],
        };
        let events = create("front", "").decide(&state).unwrap();
        let Event::NetworkCreated { network } = &events[0] else { panic!("{events:?}") };
        assert_eq!((network.subnet.as_str(), network.gateway.as_str()), ("10.90.1.0/24", "10.90.1.1"));
        assert!(network.bridge.len() <= 15, "{}", network.bridge);
        state.apply(berth_log::Seq(1), berth_log::Timestamp::from_ns(1), &envelope(events));
        assert!(matches!(create("front", "").decide(&state), Err(CommandError::AlreadyExists(_))));
        assert!(matches!(create("back", "10.90.1.128/25").decide(&state), Err(CommandError::AlreadyExists(_))));
        assert!(matches!(create("host", "").decide(&state), Err(CommandError::InvalidArgument(_))));
        assert!(matches!(create("a b", "").decide(&state), Err(CommandError::InvalidArgument(_))));
        let request = NetworkRequest { mode: "front".into(), ports: vec!["8080:80".into()], ..Default::default() };
        let resolved = request.resolve(&state).unwrap();
        assert_eq!(resolved.mode, "front");
        let mut container = crate::test_state::container("web", &berth_projections::ImageRecord::default());
        container.network = resolved;
        state.apply(
            berth_log::Seq(2),
            berth_log::Timestamp::from_ns(2),
            &envelope(vec![Event::NamespaceCreated { name: "default".into(), labels: Default::default() }]),
        );
        state.apply(
            berth_log::Seq(3),
            berth_log::Timestamp::from_ns(3),
            &envelope(vec![Event::ContainerCreated { container }]),
        );
        let refused = RemoveNetwork { name: "front".into() }.decide(&state).unwrap_err();
        assert!(refused.to_string().contains("default/web"), "{refused}");
        assert!(matches!(RemoveNetwork { name: "gone".into() }.decide(&state), Err(CommandError::NotFound(_))));
    }

    #[test]
    fn requests_name_real_networks_and_ports_need_a_bridge() {
        let state = State::new();
        let request = |mode: &str, ports: &[&str]| NetworkRequest {
            mode: mode.into(),
            ports: ports.iter().map(|port| port.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(request("", &[]).resolve(&state).unwrap().mode, "none");
        assert!(matches!(request("nosuch", &[]).resolve(&state), Err(CommandError::NotFound(_))));
        assert!(matches!(request("host", &["80:80"]).resolve(&state), Err(CommandError::InvalidArgument(_))));
        assert!(matches!(
            request("bridge", &["80:80", "80:81"]).resolve(&state),
            Err(CommandError::InvalidArgument(_))
        ));
        assert!(request("bridge", &["80:80", "80:80/udp"]).resolve(&state).is_ok());
        let hosts =
            NetworkRequest { extra_hosts: vec!["db:10.0.0.5".into(), "v6:fd00::1".into()], ..Default::default() };
        assert_eq!(hosts.resolve(&state).unwrap().extra_hosts, ["db:10.0.0.5", "v6:fd00::1"]);
        for bad in ["db", "db:nope", ":10.0.0.1", "a b:10.0.0.1"] {
            let request = NetworkRequest { extra_hosts: vec![bad.into()], ..Default::default() };
            assert!(request.resolve(&state).is_err(), "{bad}");
        }
        let dns = NetworkRequest { dns: vec!["example".into()], ..Default::default() };
        assert!(dns.resolve(&state).unwrap_err().to_string().contains("--dns"));
    }

    fn envelope(events: Vec<Event>) -> berth_projections::Envelope {
        berth_projections::Envelope::new(
            "default",
            berth_projections::Origin::Daemon { reason: "test".into(), answers: None },
            events,
        )
    }
}
