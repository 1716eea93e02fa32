//! berth's networks as CNI sees them: the default `bridge` network (from berthd's flags, never
//! recorded) and each user-defined one (a `NetworkCreated` record), each turned into the conflist
//! berthd runs — bridge with host-local IPAM (its data under `<root>/networks/ipam`), portmap,
//! firewall — and keeps as `<root>/networks/<name>.conflist` for operators and for `cnitool`.

use std::path::{Path, PathBuf};

use berth_projections::{NetworkRecord, State, NETWORK_BRIDGE};
use serde_json::{json, Value};

/// The default bridge's Linux name and its private /16 (`--bridge-name`, `--bridge-subnet`).
pub const DEFAULT_BRIDGE_NAME: &str = "berth0";
pub const DEFAULT_BRIDGE_SUBNET: &str = "10.213.0.0/16";
/// Debian's containernetworking-plugins put them here.
pub const DEFAULT_CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The CNI spec version berth speaks (the plugins of Debian 12 speak it too).
pub const CNI_VERSION: &str = "1.0.0";

/// How berthd's networking is set up (berthd's flags and `[network]` config).
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    pub cni_bin_dir: PathBuf,
    pub bridge_name: String,
    pub bridge_subnet: String,
    /// Keep a spare attachment to the default network, made ahead of need (`spare.rs`).
    pub spare: bool,
}

impl Default for NetworkOptions {
    fn default() -> NetworkOptions {
        NetworkOptions {
            cni_bin_dir: PathBuf::from(DEFAULT_CNI_BIN_DIR),
            bridge_name: DEFAULT_BRIDGE_NAME.to_string(),
            bridge_subnet: DEFAULT_BRIDGE_SUBNET.to_string(),
            spare: true,
        }
    }
}

impl NetworkOptions {
    /// Checks the default bridge's name and subnet before berthd serves.
    pub fn check(&self) -> Result<(), String> {
        let name_ok = !self.bridge_name.is_empty()
            && self.bridge_name.len() <= 15
            && self.bridge_name.chars().all(|character| character.is_ascii_alphanumeric() || "-_.".contains(character));
        if !name_ok {
            return Err(format!(
                "--bridge-name {:?} is not an interface name: use 1 to 15 letters, digits, '-', '_' or '.'",
                self.bridge_name
            ));
        }
        berth_commands::network::Subnet::parse(&self.bridge_subnet)
            .map(drop)
            .map_err(|error| format!("--bridge-subnet: {error}"))
    }

    /// The default network as a record (it never is one in the log).
    pub fn default_network(&self) -> NetworkRecord {
        let gateway = berth_commands::network::Subnet::parse(&self.bridge_subnet)
            .map(|subnet| subnet.first_host().to_string())
            .unwrap_or_default();
        NetworkRecord {
            name: NETWORK_BRIDGE.to_string(),
            bridge: self.bridge_name.clone(),
            subnet: self.bridge_subnet.clone(),
            gateway,
        }
    }

    /// The network `name` names now: the default bridge, or a recorded one.
    pub fn resolve(&self, state: &State, name: &str) -> Option<NetworkRecord> {
        if name == NETWORK_BRIDGE {
            return Some(self.default_network());
        }
        state.networks.get(name).map(|network| network.record.clone())
    }
}

/// The CNI network name: the bridge's name, which is unique on the host, so two berthds (or
/// a berthd and another CNI user) with a network of the same berth name never share the
/// iptables chains the plugins name after it.
pub fn cni_network_name(network: &NetworkRecord) -> String {
    format!("berth-{}", network.bridge)
}

/// The conflist berth runs for `network`.
pub fn conflist(network: &NetworkRecord, ipam_dir: &Path) -> Value {
    json!({
        "cniVersion": CNI_VERSION,
        "name": cni_network_name(network),
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": network.subnet, "gateway": network.gateway }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir,
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
            { "type": "firewall" }
        ]
    })
}

/// The loopback network every CNI-networked task also gets (runc leaves `lo` down in a
/// namespace it did not make).
pub fn loopback_conflist() -> Value {
    json!({ "cniVersion": CNI_VERSION, "name": "berth-loopback", "plugins": [{ "type": "loopback" }] })
}

/// What portmap's `portMappings` capability takes.
pub fn port_mappings_runtime_config(ports: &[berth_projections::PortMapping]) -> Value {
    let mappings: Vec<Value> = ports
        .iter()
        .map(|port| {
            json!({
                "hostPort": port.host_port,
                "containerPort": port.container_port,
                "protocol": port.protocol,
                "hostIP": port.host_ip,
            })
        })
        .collect();
    json!({ "portMappings": mappings })
}

/// A `prevResult` for DEL rebuilt from host-local's reservations of `cni_container_id` on
/// `interface`, for a cache whose ADD was cut off before its result was kept: the firewall
/// plugin removes its (unmarked) rules only for the addresses `prevResult` names. `None` when
/// the list has no host-local IPAM or nothing is reserved.
pub fn reserved_result(conflist: &Value, cni_container_id: &str, interface: &str) -> Option<Value> {
    let name = conflist["name"].as_str()?;
    let ipam = conflist["plugins"]
        .as_array()?
        .iter()
        .map(|plugin| &plugin["ipam"])
        .find(|ipam| ipam["type"] == "host-local")?;
    let prefix_len =
        ipam["ranges"][0][0]["subnet"].as_str().and_then(|subnet| subnet.split_once('/')).map_or("32", |(_, len)| len);
    let dir = Path::new(ipam["dataDir"].as_str()?).join(name);
    // host-local's store: one file per reserved address, holding `<container id>\r\n<interface>`.
    let owner = format!("{cni_container_id}\r\n{interface}");
    let mut ips: Vec<Value> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let address: std::net::IpAddr = entry.file_name().to_str()?.parse().ok()?;
            let held = std::fs::read_to_string(entry.path()).ok()?;
            (held.trim_end() == owner).then(|| json!({ "address": format!("{address}/{prefix_len}") }))
        })
        .collect();
    ips.sort_by(|a, b| a["address"].as_str().cmp(&b["address"].as_str()));
    (!ips.is_empty()).then(|| json!({ "cniVersion": conflist["cniVersion"], "ips": ips }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_network_and_its_conflist() {
        let options = NetworkOptions::default();
        options.check().unwrap();
        let network = options.default_network();
        assert_eq!((network.bridge.as_str(), network.gateway.as_str()), ("berth0", "10.213.0.1"));
        let list = conflist(&network, Path::new("/r/networks/ipam"));
        assert_eq!(list["name"], "berth-berth0");
        let types: Vec<&str> =
            list["plugins"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["bridge", "portmap", "firewall"]);
        assert_eq!(list["plugins"][0]["ipam"]["dataDir"], "/r/networks/ipam");
        let bad = NetworkOptions { bridge_name: "a-name-far-too-long".into(), ..NetworkOptions::default() };
        assert!(bad.check().unwrap_err().contains("--bridge-name"));
        let bad = NetworkOptions { bridge_subnet: "10.0.0.1/16".into(), ..NetworkOptions::default() };
        assert!(bad.check().unwrap_err().contains("host bits"));
    }

    #[test]
    fn ports_become_portmap_runtime_config() {
        let ports = [berth_projections::PortMapping {
            host_ip: "127.0.0.1".into(),
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
        }];
        assert_eq!(
            port_mappings_runtime_config(&ports),
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]})
        );
    }
    #[test]
    fn a_cut_off_adds_result_is_rebuilt_from_the_ipam_reservations() {
        let dir = tempfile::tempdir().unwrap();
        let network = NetworkOptions::default().default_network();
        let list = conflist(&network, dir.path());
        assert_eq!(reserved_result(&list, "c1", "eth0"), None, "no store yet");
        let store = dir.path().join("berth-berth0");
        std::fs::create_dir(&store).unwrap();
        std::fs::write(store.join("10.213.0.7"), "c1\r\neth0").unwrap();
        std::fs::write(store.join("10.213.0.8"), "c2\r\neth0").unwrap();
        std::fs::write(store.join("10.213.0.9"), "c1\r\neth1").unwrap();
        std::fs::write(store.join("last_reserved_ip.0"), "10.213.0.9").unwrap();
        std::fs::write(store.join("lock"), "").unwrap();
        assert_eq!(
            reserved_result(&list, "c1", "eth0"),
            Some(json!({"cniVersion": CNI_VERSION, "ips": [{"address": "10.213.0.7/16"}]}))
        );
        assert_eq!(reserved_result(&list, "c3", "eth0"), None);
    }
}
