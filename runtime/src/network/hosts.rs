//! A container's `/etc/hosts`: the loopback names, its own hostname on its own address (on
//! loopback without one), `--add-host` entries, and every other container of its namespace on
//! the same network by id and hostname — which is how containers on one network reach each
//! other by name. berthd rewrites the peers' files in place when a task joins or leaves.

/// One name-to-address line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub address: String,
    pub names: Vec<String>,
}

const LOOPBACK_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// The file's text. `own_address` is the container's address on its network, if it has one.
pub fn hosts_contents(hostname: &str, own_address: Option<&str>, extra: &[HostEntry], peers: &[HostEntry]) -> String {
    let mut contents = String::from(LOOPBACK_HOSTS);
    if !hostname.is_empty() {
        // As Debian maps its own hostname when it has no address of its own.
        contents.push_str(&format!("{}\t{hostname}\n", own_address.unwrap_or("127.0.1.1")));
    }
    for entry in extra.iter().chain(peers) {
        if !entry.names.is_empty() {
            contents.push_str(&format!("{}\t{}\n", entry.address, entry.names.join(" ")));
        }
    }
    contents
}

/// `--add-host NAME:IP` entries as recorded.
pub fn extra_host_entries(extra_hosts: &[String]) -> Vec<HostEntry> {
    extra_hosts
        .iter()
        .filter_map(|entry| entry.split_once(':'))
        .map(|(name, address)| HostEntry { address: address.to_string(), names: vec![name.to_string()] })
        .collect()
}

/// A peer's line: its address, its id and its hostname when that differs.
pub fn peer_entry(address: &str, container_id: &str, hostname: &str) -> HostEntry {
    let mut names = vec![container_id.to_string()];
    if !hostname.is_empty() && hostname != container_id {
        names.push(hostname.to_string());
    }
    HostEntry { address: address.to_string(), names }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_the_container_its_extra_hosts_and_its_peers() {
        let extra = extra_host_entries(&["db:10.0.0.5".into(), "v6:fd00::1".into()]);
        let peers = [peer_entry("10.213.0.3", "web", "web"), peer_entry("10.213.0.4", "api", "api.local")];
        let hosts = hosts_contents("me", Some("10.213.0.2"), &extra, &peers);
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(
            hosts.ends_with("10.213.0.2\tme\n10.0.0.5\tdb\nfd00::1\tv6\n10.213.0.3\tweb\n10.213.0.4\tapi api.local\n")
        );
        assert!(hosts_contents("me", None, &[], &[]).ends_with("127.0.1.1\tme\n"));
    }
}
