//! `Networking`: what berthd does to give a task a network and take it away. Attach makes the
//! namespace file, writes the ADD cache (which network, its conflist, the ports) durably
//! *before* CNI ADD so that a crash at any later point leaves enough to undo it, runs loopback
//! and the network's plugins at once, and keeps ADD's result in the cache for DEL's `prevResult`.
//! Detach runs CNI DEL from the cache, then removes the namespace file and the cache. Attach
//! and detach of one CNI container id never overlap (a lock per id): a task's release may
//! still run in the background when the same container's next task attaches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_projections::{NetworkAttachment, NetworkRecord, PortMapping};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::OwnedMutexGuard;

use crate::daemon::layout::Layout;
use crate::network::cni::{self, CniCall, Urgency};
use crate::network::config::{self, NetworkOptions};
use crate::network::netns;
use crate::network::rules;
use crate::network::teardown::ObservedNetworking;
use crate::sys::fs::{create_private_dir_all, list_file_names, write_file_atomically, write_file_durably};

/// The container's interface, as docker and containerd name it.
pub const CONTAINER_INTERFACE: &str = "eth0";

/// What ADD was called with, and (once it finished) what it returned. The file is named by the
/// attachment's key (the task's CNI id, or a spare's); `cni_container_id` is the id the plugins
/// were called with, which stays when the file is renamed (a spare handed over to a task,
/// `spare.rs`). Caches written before it was kept lack it: their key is their id.
#[derive(Debug, Serialize, Deserialize)]
struct AddCache {
    network: String,
    conflist: Value,
    runtime_config: Value,
    interface: String,
    ports: Vec<PortMapping>,
    netns: PathBuf,
    result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cni_container_id: Option<String>,
}

impl AddCache {
    /// The id the plugins were called with: the cache's own, or its file's key.
    fn cni_id<'a>(&'a self, key: &'a str) -> &'a str {
        self.cni_container_id.as_deref().unwrap_or(key)
    }
}

pub struct Networking {
    pub options: NetworkOptions,
    /// `<root>/networks`: conflists, `ipam/` (host-local's data), `attachments/` (ADD caches).
    networks_dir: PathBuf,
    /// `<state>/netns`: the namespace files.
    netns_dir: PathBuf,
    /// Tells this berthd's CNI container ids from another's on the same host (iptables rules
    /// and IPAM reservations carry them).
    token: String,
    /// One lock per CNI container id in use: held through each attach and detach.
    busy: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// True once start-up has settled what a crash left ([`Networking::mark_recovered`]):
    /// attaches wait for it, so that recovery never tears down a task attached meanwhile
    /// (a requeued delete's restart, say).
    pub(super) recovered: tokio::sync::watch::Sender<bool>,
    /// The default network's spare attachment, made ahead of need (`spare.rs`): its key once
    /// ready; held locked while one is being made (a task that finds it locked attaches on its
    /// own rather than wait).
    pub(super) spare: tokio::sync::Mutex<Option<String>>,
    /// Set by a stopping berthd: no spare is made from then on.
    pub(super) spare_closed: std::sync::atomic::AtomicBool,
    /// A spare is being made or about to be: no second refill is started meanwhile.
    pub(super) spare_refilling: std::sync::atomic::AtomicBool,
}

/// The right to attach or detach one CNI container id, until dropped.
pub struct IdGuard {
    _held: OwnedMutexGuard<()>,
}

/// A deleted task's network held for its release: the id's guard, taken before the deletion
/// is recorded, the network the task had on record (`None`: nothing attached on record), and
/// whether it published host ports.
pub struct PendingRelease {
    pub cni_container_id: String,
    pub network: Option<String>,
    pub publishes_ports: bool,
    pub guard: IdGuard,
}

/// An attach half done ([`Networking::prepare_attach`]): the id held, the namespace made.
pub struct PreparedAttach {
    guard: IdGuard,
    cni_container_id: String,
    cache: AddCache,
}

impl PreparedAttach {
    /// The network namespace file the task's spec names.
    pub fn netns(&self) -> &Path {
        &self.cache.netns
    }

    /// The network's name.
    pub fn network(&self) -> &str {
        &self.cache.network
    }
}

impl Networking {
    /// Makes the directories (0700) and writes the default network's conflist.
    pub fn open(options: NetworkOptions, layout: &Layout) -> std::io::Result<Networking> {
        let networking = Networking {
            token: short_hash(&layout.state.to_string_lossy()),
            networks_dir: layout.networks_dir(),
            netns_dir: layout.netns_dir(),
            options,
            busy: Mutex::new(HashMap::new()),
            recovered: tokio::sync::watch::Sender::new(false),
            spare: tokio::sync::Mutex::new(None),
            spare_closed: std::sync::atomic::AtomicBool::new(false),
            spare_refilling: std::sync::atomic::AtomicBool::new(false),
        };
        for dir in [&networking.networks_dir, &networking.ipam_dir(), &networking.cache_dir(), &networking.netns_dir] {
            create_private_dir_all(dir)?;
        }
        networking.write_conflist(&networking.options.default_network())?;
        Ok(networking)
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.networks_dir.join("ipam")
    }

    pub(super) fn cache_dir(&self) -> PathBuf {
        self.networks_dir.join("attachments")
    }

    /// The ADD cache's file name for `cni_container_id`, in [`Networking::cache_dir`].
    fn cache_name(cni_container_id: &str) -> String {
        format!("{cni_container_id}.json")
    }

    pub(super) fn cache_path(&self, cni_container_id: &str) -> PathBuf {
        self.cache_dir().join(Self::cache_name(cni_container_id))
    }

    /// The `CNI_CONTAINERID` of a container's task: unique on the host, in CNI's alphabet.
    pub fn cni_container_id(&self, namespace: &str, container_id: &str) -> String {
        format!("{}-{namespace}-{container_id}", self.id_prefix())
    }

    /// `berth-<token>`: what every CNI id this berthd gives begins with (then `-` for a task's,
    /// `_spare-` for a spare's).
    pub(super) fn id_prefix(&self) -> String {
        format!("berth-{}", self.token)
    }

    pub fn netns_path(&self, cni_container_id: &str) -> PathBuf {
        self.netns_dir.join(cni_container_id)
    }

    /// Waits until nothing else attaches or detaches `cni_container_id`, and holds it.
    pub async fn lock_id(&self, cni_container_id: &str) -> IdGuard {
        let lock = {
            let mut busy = self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Locks only the map holds are held by nobody: forget them (clones are made only
            // under this mutex, so none can be taken meanwhile).
            busy.retain(|_, lock| Arc::strong_count(lock) > 1);
            Arc::clone(busy.entry(cni_container_id.to_string()).or_default())
        };
        IdGuard { _held: lock.lock_owned().await }
    }

    /// Waits for every attach and detach under way, also those that start meanwhile (a
    /// stopping berthd lets background releases finish, so no CNI DEL is cut off half-way).
    pub async fn settle(&self) {
        loop {
            let held: Vec<Arc<tokio::sync::Mutex<()>>> = {
                let busy = self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                busy.values().filter(|lock| lock.try_lock().is_err()).cloned().collect()
            };
            if held.is_empty() {
                return;
            }
            for lock in held {
                drop(lock.lock().await);
            }
        }
    }

    /// Start-up's network recovery is done: attaches may go on.
    pub fn mark_recovered(&self) {
        self.recovered.send_replace(true);
    }

    /// Keeps `<root>/networks/<name>.conflist` as berth runs it (for operators and cnitool).
    pub fn write_conflist(&self, network: &NetworkRecord) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(&config::conflist(network, &self.ipam_dir()))?;
        write_file_atomically(&self.networks_dir, &format!("{}.conflist", network.name), &text)
    }

    /// Start-up: the conflist of every recorded network written, those of removed ones gone.
    pub fn sync_conflists(&self, state: &berth_projections::State) {
        for network in state.networks.values() {
            if let Err(error) = self.write_conflist(&network.record) {
                tracing::warn!(network = network.record.name, %error, "cannot write the network's conflist");
            }
        }
        for file_name in list_file_names(&self.networks_dir) {
            let Some(name) = file_name.strip_suffix(".conflist") else { continue };
            if name != berth_projections::NETWORK_BRIDGE && !state.networks.contains_key(name) {
                self.remove_conflist(name);
            }
        }
    }

    pub fn remove_conflist(&self, name: &str) {
        let _ = std::fs::remove_file(self.networks_dir.join(format!("{name}.conflist")));
    }

    /// Deletes a removed network's Linux bridge (CNI DEL never does: other containers may use
    /// it); a bridge already gone is fine.
    pub async fn delete_bridge(&self, bridge: &str) {
        if !Path::new("/sys/class/net").join(bridge).exists() {
            return;
        }
        let mut command = tokio::process::Command::new("ip");
        command.args(["link", "delete", bridge, "type", "bridge"]).stdin(std::process::Stdio::null());
        let output = {
            let _spawning = crate::sys::process::spawn_lock();
            command.output()
        };
        match output.await {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                tracing::warn!(bridge, stderr = %String::from_utf8_lossy(&output.stderr).trim(), "cannot delete the network's bridge")
            }
            Err(error) => tracing::warn!(bridge, %error, "cannot run `ip link delete` for the network's bridge"),
        }
    }

    /// The first half of giving a task a network, before runc: takes the id, finishes an
    /// earlier task's failed release of it, and makes the network namespace that the spec will
    /// name. [`Networking::complete_attach`] runs ADD (beside runc's create). A prepared attach
    /// dropped without completing leaves the namespace file, which the task's undo removes.
    pub async fn prepare_attach(
        &self,
        network: &NetworkRecord,
        cni_container_id: &str,
        ports: &[PortMapping],
    ) -> Result<PreparedAttach, String> {
        // Start-up's recovery first: it may still have this id's leftovers to tear down.
        let _ = self.recovered.subscribe().wait_for(|recovered| *recovered).await;
        let guard = self.lock_id(cni_container_id).await;
        // An earlier task's release of this id that failed left its cache: finish it first, or
        // this attach would write over what its DEL needs.
        if self.cache_path(cni_container_id).exists() {
            self.detach_locked(cni_container_id, &guard, Urgency::Now).await.map_err(|error| {
                format!("the network of this container's previous task could not be released: {error}; look at berthd's log")
            })?;
        }
        let netns_path = self.netns_path(cni_container_id);
        netns::create(&netns_path)
            .map_err(|error| format!("cannot create the network namespace {}: {error}", netns_path.display()))?;
        let cache = AddCache {
            network: network.name.clone(),
            conflist: config::conflist(network, &self.ipam_dir()),
            runtime_config: config::port_mappings_runtime_config(ports),
            interface: CONTAINER_INTERFACE.to_string(),
            ports: ports.to_vec(),
            netns: netns_path,
            result: None,
            cni_container_id: Some(cni_container_id.to_string()),
        };
        Ok(PreparedAttach { guard, cni_container_id: cni_container_id.to_string(), cache })
    }

    /// The second half: gives the prepared namespace loopback and an interface on the network,
    /// with the ports published. The cache is made durable before ADD, so that a crash during
    /// it is torn down at start-up. On failure everything done so far is undone.
    pub async fn complete_attach(&self, prepared: PreparedAttach) -> Result<NetworkAttachment, String> {
        self.add_prepared(prepared, Urgency::Now).await
    }

    /// [`Networking::complete_attach`] with the plugins at `urgency`: writes the cache durably
    /// under its key, runs ADD, keeps its result in the cache; on failure undoes all of it.
    pub(super) async fn add_prepared(
        &self,
        prepared: PreparedAttach,
        urgency: Urgency,
    ) -> Result<NetworkAttachment, String> {
        let PreparedAttach { guard, cni_container_id: key, mut cache } = prepared;
        let (key, guard) = (key.as_str(), &guard);
        let cache_name = Self::cache_name(key);
        let cache_text = serde_json::to_vec(&cache).map_err(|error| error.to_string())?;
        if let Err(error) = write_file_durably(&self.cache_dir(), &cache_name, &cache_text) {
            let _ = netns::remove(&cache.netns);
            return Err(format!("cannot write the network cache: {error}"));
        }
        let added = self.add(&cache, cache.cni_id(key), urgency).await;
        let result = match added {
            Ok(result) => result,
            Err(error) => {
                if let Err(teardown_error) = self.detach_locked(key, guard, Urgency::Now).await {
                    tracing::warn!(key, %teardown_error, "undoing a failed CNI ADD failed too; start-up retries");
                }
                return Err(error);
            }
        };
        cache.result = Some(result.clone());
        let cache_text = serde_json::to_vec(&cache).map_err(|error| error.to_string())?;
        if let Err(error) = write_file_atomically(&self.cache_dir(), &cache_name, &cache_text) {
            tracing::warn!(key, %error, "cannot keep CNI ADD's result; DEL will run without it");
        }
        Ok(attachment_from(&cache, &result, key))
    }

    async fn add(&self, cache: &AddCache, cni_container_id: &str, urgency: Urgency) -> Result<Value, String> {
        let no_capabilities = Value::Object(Default::default());
        let loopback = CniCall {
            bin_dir: &self.options.cni_bin_dir,
            container_id: cni_container_id,
            netns: &cache.netns,
            interface: "lo",
            runtime_config: &no_capabilities,
            urgency,
        };
        let call = CniCall { interface: &cache.interface, runtime_config: &cache.runtime_config, ..loopback.clone() };
        // Loopback and the network's list touch different interfaces of the namespace: run at
        // once, as containerd's CNI library runs its networks. Either failing fails the attach,
        // whose undo runs the list's DEL.
        let loopback_list = config::loopback_conflist();
        let (loopback_added, added) =
            tokio::join!(cni::add(&loopback_list, &loopback), cni::add(&cache.conflist, &call));
        loopback_added.map_err(|error| format!("bringing up loopback: {error}"))?;
        added.map_err(|error| error.to_string())
    }

    /// CNI DEL from the cache, then the namespace file and the cache go. Without a cache (the
    /// crash came before it was written) only the namespace file is removed. A failed DEL keeps
    /// the cache, so the next start tries again.
    pub async fn detach(&self, cni_container_id: &str) -> Result<(), String> {
        let guard = self.lock_id(cni_container_id).await;
        self.detach_locked(cni_container_id, &guard, Urgency::Now).await
    }

    /// Recovery's [`Networking::detach`]: under the id's lock, tears down only what is still
    /// there (a release that ran meanwhile may have finished it); true when there was any.
    pub async fn detach_if_present(&self, cni_container_id: &str) -> Result<bool, String> {
        let guard = self.lock_id(cni_container_id).await;
        let present = self.cache_path(cni_container_id).exists() || self.netns_path(cni_container_id).exists();
        if !present {
            return Ok(false);
        }
        self.detach_locked(cni_container_id, &guard, Urgency::Now).await.map(|()| true)
    }

    /// [`Networking::detach`] for a caller that holds the id's guard; `urgency` says whether the
    /// plugins (and the sweep's iptables) run as background work.
    pub async fn detach_locked(&self, key: &str, _held: &IdGuard, urgency: Urgency) -> Result<(), String> {
        let cache_path = self.cache_path(key);
        let mut netns_path = self.netns_path(key);
        let remove_netns = |path: &Path| {
            netns::remove(path)
                .map_err(|error| format!("cannot remove the network namespace {}: {error}", path.display()))
        };
        let mut outcome = Ok(());
        if let Some(cache) = read_cache(&cache_path) {
            // A spare handed over keeps its own id and namespace file.
            let cni_container_id = cache.cni_id(key);
            if netns_path != cache.netns {
                remove_netns(&netns_path)?;
                netns_path.clone_from(&cache.netns);
            }
            let call = CniCall {
                bin_dir: &self.options.cni_bin_dir,
                container_id: cni_container_id,
                netns: &netns_path,
                interface: &cache.interface,
                runtime_config: &cache.runtime_config,
                urgency,
            };
            // An ADD cut off before its result was kept: the addresses it reserved stand in.
            let previous = cache
                .result
                .clone()
                .or_else(|| config::reserved_result(&cache.conflist, cni_container_id, &cache.interface));
            outcome = cni::del(&cache.conflist, &call, previous.as_ref()).await.map_err(|error| error.to_string());
            if outcome.is_ok() {
                // What a DEL cut off earlier (by a crash) could not find to remove. A sweep that
                // fails keeps the cache, so the next start tries again.
                outcome = match rules::sweep(cni_container_id, urgency).await {
                    Ok(0) => Ok(()),
                    Ok(n_removed) => {
                        tracing::info!(
                            cni_container_id,
                            n_removed,
                            "removed iptables rules and chains an earlier DEL left"
                        );
                        Ok(())
                    }
                    Err(error) => Err(format!("removing iptables rules still marked with {cni_container_id}: {error}")),
                };
            }
        }
        remove_netns(&netns_path)?;
        outcome?;
        match std::fs::remove_file(&cache_path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.to_string()),
            _ => Ok(()),
        }
    }

    /// The attachment a finished ADD's cache describes (to record one the crash kept unrecorded).
    pub fn cached_attachment(&self, key: &str) -> Option<NetworkAttachment> {
        let cache = read_cache(&self.cache_path(key))?;
        let result = cache.result.clone()?;
        Some(attachment_from(&cache, &result, key))
    }

    /// First thing at start-up (before a rolled-back create or the teardown runs a DEL): plugins
    /// a killed berthd left running are killed
    /// ([`cni::kill_left_running`]), so that none goes on adding after its DEL. Only looked for
    /// when there is something to tear down: a plugin runs only while its ADD cache exists.
    pub async fn kill_plugins_left_running(&self) {
        if list_file_names(&self.cache_dir()).is_empty() {
            return;
        }
        let killed = cni::kill_left_running(&self.id_prefix()).await;
        if killed > 0 {
            tracing::warn!(
                killed,
                "killed CNI plugin processes a killed berthd left running; their attachments are torn down next"
            );
        }
    }

    /// What is on the host now: namespace files and ADD caches, by key (a namespace file a
    /// cache of another key names — a spare handed over — counts as that key's).
    pub fn observe(&self) -> ObservedNetworking {
        let mut netns_owner: BTreeMap<String, String> = BTreeMap::new();
        let caches: BTreeMap<String, bool> = list_file_names(&self.cache_dir())
            .into_iter()
            .filter_map(|name| {
                let key = name.strip_suffix(".json")?.to_string();
                let cache = read_cache(&self.cache_dir().join(&name));
                if let Some(file_name) = cache.as_ref().and_then(|cache| cache.netns.file_name()) {
                    netns_owner.insert(file_name.to_string_lossy().into_owned(), key.clone());
                }
                Some((key, cache.is_some_and(|cache| cache.result.is_some())))
            })
            .collect();
        let netns_files: BTreeSet<String> = list_file_names(&self.netns_dir)
            .into_iter()
            .map(|name| netns_owner.get(&name).cloned().unwrap_or(name))
            .collect();
        let spares = caches.keys().chain(&netns_files).filter(|key| self.is_spare_key(key)).cloned().collect();
        ObservedNetworking { netns_files, caches, spares }
    }
}

fn attachment_from(cache: &AddCache, result: &Value, key: &str) -> NetworkAttachment {
    let (addresses, gateway, mac) = cni::summarize_result(result, &cache.interface);
    NetworkAttachment {
        network: cache.network.clone(),
        netns: cache.netns.to_string_lossy().into_owned(),
        interface: cache.interface.clone(),
        addresses,
        gateway,
        mac,
        ports: cache.ports.clone(),
        cni_container_id: cache.cni_id(key).to_string(),
    }
}

fn read_cache(path: &Path) -> Option<AddCache> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Eight hex digits of FNV-1a.
fn short_hash(text: &str) -> String {
    let hash = text.bytes().fold(0x811c_9dc5u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    format!("{hash:08x}")
}
