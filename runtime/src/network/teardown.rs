//! Where start-up decides what to do with network leftovers, pure and table-tested: what the
//! host holds (namespace files in `<state>/netns`, ADD caches in `<root>/networks/attachments`)
//! against what the log says each task has. A kill -9 between CNI ADD and its record, or between
//! CNI DEL and its record, or a reboot (which empties the state directory but not the IPAM
//! reservations and caches under the root) all end up here.

use std::collections::{BTreeMap, BTreeSet};

/// What start-up found on the host, by CNI container id.
#[derive(Debug, Default, Clone)]
pub struct ObservedNetworking {
    pub netns_files: BTreeSet<String>,
    /// ADD caches; `true` when the cache holds ADD's result (ADD finished).
    pub caches: BTreeMap<String, bool>,
    /// Which of the above are spare attachments not handed to any task (`spare.rs`): never on
    /// record, so a crash's spare is torn down without an `OrphanRemoved`.
    pub spares: BTreeSet<String>,
}

/// What the log says about one task that may own network leftovers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskNetworkView {
    pub namespace: String,
    pub container_id: String,
    pub cni_container_id: String,
    /// The task is created, starting or running: its namespace may be in use.
    pub live: bool,
    /// The network named by `NetworkAttached`, when one is recorded.
    pub recorded_network: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkStep {
    /// CNI DEL with the cached configuration (when there is a cache), then remove the namespace
    /// file and the cache. `orphan`: no task accounts for it (recorded as `OrphanRemoved`).
    TearDown { cni_container_id: String, orphan: bool },
    /// The task's attachment is gone from the host: record `NetworkDetached`.
    RecordDetached { namespace: String, container_id: String, network: String },
    /// A live task whose ADD finished but was not recorded (berthd died in between and recovery
    /// adopted the task): record `NetworkAttached` from the cache.
    RecordAttached { namespace: String, container_id: String, cni_container_id: String },
}

/// The steps that make the host and the log agree about networking.
pub fn plan(tasks: &[TaskNetworkView], observed: &ObservedNetworking) -> Vec<NetworkStep> {
    let mut steps = Vec::new();
    let by_id: BTreeMap<&str, &TaskNetworkView> =
        tasks.iter().map(|task| (task.cni_container_id.as_str(), task)).collect();
    let on_host: BTreeSet<&str> =
        observed.netns_files.iter().chain(observed.caches.keys()).map(String::as_str).collect();
    for cni_container_id in &on_host {
        let has_netns = observed.netns_files.contains(*cni_container_id);
        let add_finished = observed.caches.get(*cni_container_id).copied().unwrap_or(false);
        let tear_down = |orphan| NetworkStep::TearDown { cni_container_id: cni_container_id.to_string(), orphan };
        match by_id.get(cni_container_id) {
            None if observed.spares.contains(*cni_container_id) => steps.push(tear_down(false)),
            None => steps.push(tear_down(true)),
            Some(task) if task.recorded_network.is_some() => {
                if !has_netns {
                    // Rebooted, or the file was removed by hand: release what the cache names.
                    steps.push(tear_down(false));
                }
            }
            Some(task) if task.live && has_netns && add_finished => steps.push(NetworkStep::RecordAttached {
                namespace: task.namespace.clone(),
                container_id: task.container_id.clone(),
                cni_container_id: cni_container_id.to_string(),
            }),
            // A create that failed or was rolled back after ADD began.
            Some(_) => steps.push(tear_down(false)),
        }
    }
    for task in tasks {
        let Some(network) = &task.recorded_network else { continue };
        if !observed.netns_files.contains(&task.cni_container_id) {
            steps.push(NetworkStep::RecordDetached {
                namespace: task.namespace.clone(),
                container_id: task.container_id.clone(),
                network: network.clone(),
            });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, live: bool, recorded: Option<&str>) -> TaskNetworkView {
        TaskNetworkView {
            namespace: "default".into(),
            container_id: id.into(),
            cni_container_id: format!("cni-{id}"),
            live,
            recorded_network: recorded.map(str::to_string),
        }
    }

    fn observed(netns: &[&str], caches: &[(&str, bool)]) -> ObservedNetworking {
        ObservedNetworking {
            netns_files: netns.iter().map(|name| name.to_string()).collect(),
            caches: caches.iter().map(|(name, done)| (name.to_string(), *done)).collect(),
            spares: netns
                .iter()
                .chain(caches.iter().map(|(name, _)| name))
                .filter(|name| name.starts_with("spare-"))
                .map(|name| name.to_string())
                .collect(),
        }
    }

    fn tear_down(id: &str, orphan: bool) -> NetworkStep {
        NetworkStep::TearDown { cni_container_id: id.into(), orphan }
    }

    fn detached(id: &str) -> NetworkStep {
        NetworkStep::RecordDetached { namespace: "default".into(), container_id: id.into(), network: "bridge".into() }
    }

    #[test]
    fn each_leftover_gets_the_step_its_story_calls_for() {
        let cases: Vec<(&str, Vec<TaskNetworkView>, ObservedNetworking, Vec<NetworkStep>)> = vec![
            ("nothing anywhere", vec![], observed(&[], &[]), vec![]),
            (
                "a recorded attachment whose namespace is there is in use",
                vec![task("web", true, Some("bridge"))],
                observed(&["cni-web"], &[("cni-web", true)]),
                vec![],
            ),
            (
                "a stopped task keeps its network until it is deleted",
                vec![task("web", false, Some("bridge"))],
                observed(&["cni-web"], &[("cni-web", true)]),
                vec![],
            ),
            (
                "no task accounts for it (deleted while berthd was down, or a kill -9 after DEL began)",
                vec![],
                observed(&["cni-gone"], &[("cni-gone", true)]),
                vec![tear_down("cni-gone", true)],
            ),
            (
                "a cache alone (a reboot emptied the state directory) still releases its address",
                vec![],
                observed(&[], &[("cni-gone", true)]),
                vec![tear_down("cni-gone", true)],
            ),
            (
                "a spare no task took (berthd killed or stopped with one ready) goes unrecorded",
                vec![task("web", true, Some("bridge"))],
                observed(&["cni-web", "spare-1"], &[("cni-web", true), ("spare-1", true)]),
                vec![tear_down("spare-1", false)],
            ),
            (
                "a spare killed half made: its namespace file alone",
                vec![],
                observed(&["spare-2"], &[]),
                vec![tear_down("spare-2", false)],
            ),
            (
                "killed between ADD and its record; the create was rolled back",
                vec![task("web", false, None)],
                observed(&["cni-web"], &[("cni-web", true)]),
                vec![tear_down("cni-web", false)],
            ),
            (
                "killed between ADD and its record; recovery adopted the running task",
                vec![task("web", true, None)],
                observed(&["cni-web"], &[("cni-web", true)]),
                vec![NetworkStep::RecordAttached {
                    namespace: "default".into(),
                    container_id: "web".into(),
                    cni_container_id: "cni-web".into(),
                }],
            ),
            (
                "killed during ADD: no result to adopt",
                vec![task("web", true, None)],
                observed(&["cni-web"], &[("cni-web", false)]),
                vec![tear_down("cni-web", false)],
            ),
            (
                "recorded, but the namespace is gone (reboot): release and record",
                vec![task("web", false, Some("bridge"))],
                observed(&[], &[("cni-web", true)]),
                vec![tear_down("cni-web", false), detached("web")],
            ),
            (
                "recorded, and nothing at all is left (DEL done, killed before its record)",
                vec![task("web", false, Some("bridge"))],
                observed(&[], &[]),
                vec![detached("web")],
            ),
        ];
        for (story, tasks, host, expected) in cases {
            assert_eq!(plan(&tasks, &host), expected, "{story}");
        }
    }
}
