//! The iptables rules a cut-off CNI DEL leaves behind. The bridge plugin finds the addresses
//! whose masquerade rules it removes on the container's interface: a DEL that a crash cut off
//! after the interface went (or one run again after that) removes nothing, and the rules would
//! stay for ever. The plugins mark every rule they add for a container with the comment
//! `name: "<network>" id: "<CNI container id>"` (portmap marks only the rule that enters its
//! per-container chain), so after DEL berthd removes any rule still carrying its id, and the
//! `CNI-` chains only such rules jump to, in one `iptables-restore --noflush --wait` (atomic
//! per table).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::network::cni::Urgency;

/// The `iptables-restore --noflush` input that removes every rule of `save` (the output of
/// `iptables-save`) marked with `cni_container_id`, and flushes and deletes the `CNI-` chains
/// that only such rules jump to; empty when nothing is left.
pub fn sweep_script(save: &str, cni_container_id: &str) -> String {
    let mark = format!("id: \\\"{cni_container_id}\\\"");
    let mut script = String::new();
    for (table, rules) in rules_by_table(save) {
        let marked: Vec<&(String, String)> = rules.iter().filter(|(_, line)| line.contains(&mark)).collect();
        if marked.is_empty() {
            continue;
        }
        // A chain of this id's own: a `CNI-` chain its marked rules jump to and nothing else
        // does (portmap's `CNI-DN-…` holds unmarked rules; shared chains such as
        // `CNI-HOSTPORT-DNAT` are jumped to by unmarked rules too).
        let own_chains: BTreeSet<&str> = marked
            .iter()
            .filter_map(|(_, line)| jump_target(line))
            .filter(|target| target.starts_with("CNI-"))
            .filter(|target| rules.iter().all(|(_, line)| jump_target(line) != Some(*target) || line.contains(&mark)))
            .collect();
        script.push_str(&format!("*{table}\n"));
        for (chain, line) in &marked {
            if !own_chains.contains(chain.as_str()) {
                script.push_str(&format!("-D {}\n", &line["-A ".len()..]));
            }
        }
        for chain in &own_chains {
            script.push_str(&format!("-F {chain}\n-X {chain}\n"));
        }
        script.push_str("COMMIT\n");
    }
    script
}

/// Each table's `-A` lines, with the chain each appends to.
fn rules_by_table(save: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut table = String::new();
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.to_string();
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split_whitespace().next().unwrap_or_default().to_string();
            tables.entry(table.clone()).or_default().push((chain, line.to_string()));
        }
    }
    tables
}

fn jump_target(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    words.by_ref().find(|word| *word == "-j")?;
    words.next()
}

/// Removes what [`sweep_script`] finds for `cni_container_id` on this host; how many rules and
/// chains went. iptables missing counts as nothing to remove.
pub async fn sweep(cni_container_id: &str, urgency: Urgency) -> Result<usize, String> {
    let mut save = urgency.command("iptables-save");
    save.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let output = {
        let _spawning = crate::sys::process::spawn_lock();
        save.output()
    };
    let output = match output.await {
        Ok(output) if output.status.success() => output,
        // `nice` did not find it.
        Ok(output) if output.status.code() == Some(crate::sys::process::NICE_COMMAND_NOT_FOUND) => return Ok(0),
        Ok(output) => return Err(format!("iptables-save: {}", String::from_utf8_lossy(&output.stderr).trim())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(format!("cannot run iptables-save: {error}")),
    };
    let script = sweep_script(&String::from_utf8_lossy(&output.stdout), cni_container_id);
    if script.is_empty() {
        return Ok(0);
    }
    let n_removed = script.lines().filter(|line| line.starts_with("-D ") || line.starts_with("-X ")).count();
    let mut restore = urgency.command("iptables-restore");
    restore.arg("--noflush").stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = {
        let _spawning = crate::sys::process::spawn_lock();
        restore.spawn()
    }
    .map_err(|error| format!("cannot run iptables-restore: {error}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await.map_err(|error| format!("iptables-restore: {error}"))?;
    }
    let output = child.wait_with_output().await.map_err(|error| format!("iptables-restore: {error}"))?;
    if !output.status.success() {
        return Err(format!("iptables-restore: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(n_removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `iptables-save` shows for two containers of network `net` after bridge (ipMasq),
    /// portmap (one published port for `web`) and firewall ADD, as the 1.1 plugins write them.
    const SAVE: &str = r#"*filter
:INPUT ACCEPT [0:0]
:CNI-FORWARD - [0:0]
-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD
-A CNI-FORWARD -d 10.9.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-aaa - [0:0]
:CNI-bbb - [0:0]
:CNI-DN-ccc - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-HOSTPORT-SETMARK - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -s 10.9.0.2/32 -m comment --comment "name: \"net\" id: \"berth-1-default-web\"" -j CNI-aaa
-A POSTROUTING -s 10.9.0.3/32 -m comment --comment "name: \"net\" id: \"berth-1-default-web2\"" -j CNI-bbb
-A CNI-aaa -d 10.9.0.0/24 -m comment --comment "name: \"net\" id: \"berth-1-default-web\"" -j ACCEPT
-A CNI-aaa ! -d 224.0.0.0/4 -m comment --comment "name: \"net\" id: \"berth-1-default-web\"" -j MASQUERADE
-A CNI-bbb -d 10.9.0.0/24 -m comment --comment "name: \"net\" id: \"berth-1-default-web2\"" -j ACCEPT
-A CNI-DN-ccc -s 10.9.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-ccc -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.9.0.2:80
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"net\" id: \"berth-1-default-web\"" -m multiport --dports 8080 -j CNI-DN-ccc
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
COMMIT
"#;

    #[test]
    fn only_the_ids_rules_go_and_its_own_chains_are_flushed_and_deleted() {
        let script = sweep_script(SAVE, "berth-1-default-web");
        assert_eq!(
            script,
            concat!(
                "*nat\n",
                "-D POSTROUTING -s 10.9.0.2/32 -m comment --comment \"name: \\\"net\\\" id: \\\"berth-1-default-web\\\"\" -j CNI-aaa\n",
                "-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"net\\\" id: \\\"berth-1-default-web\\\"\" -m multiport --dports 8080 -j CNI-DN-ccc\n",
                "-F CNI-DN-ccc\n-X CNI-DN-ccc\n-F CNI-aaa\n-X CNI-aaa\n",
                "COMMIT\n"
            )
        );
    }

    #[test]
    fn an_id_that_is_a_prefix_of_another_does_not_match_it_and_nothing_left_is_an_empty_script() {
        assert!(!sweep_script(SAVE, "berth-1-default-web2").contains("CNI-aaa"));
        assert_eq!(sweep_script(SAVE, "berth-1-default-gone"), "");
        assert_eq!(sweep_script("", "berth-1-default-web"), "");
    }
}
