//! The executor's side of networking: before a task is created its network is attached (CNI
//! modes) or the host's is shared, the OCI spec names the namespace, and `/etc/hosts` and
//! `resolv.conf` are written; once its deletion is recorded the network is released in the
//! background; at start-up leftovers are settled by `network::teardown`'s plan. The `network`
//! domain does the CNI work.

use std::path::Path;
use std::sync::Arc;

use berth_commands::{Command, RecordDaemonEvent};
use berth_projections::{
    ContainerRecord, Event, NetworkAttachment, Origin, NETWORK_BRIDGE, NETWORK_HOST, NETWORK_NONE,
};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::network::attach::{IdGuard, PendingRelease, PreparedAttach};
use crate::network::cni::Urgency;
use crate::network::hosts::{self, HostEntry};
use crate::network::spare::TaskNetwork;
use crate::network::teardown::{self, NetworkStep, TaskNetworkView};
use crate::tasks::etc_files;
use crate::tasks::executor::Executor;
use crate::tasks::network_gate::NetworkGate;

impl Executor {
    /// Points the spec at the network the task's record asks for: nothing for `none` (runc's
    /// new namespace with loopback), the host's namespace for `host`, otherwise the default
    /// network's spare when it fits (attached already), or a namespace of its own, made now,
    /// whose CNI attachment is returned half done, for [`Executor::attach_beside_create`] to
    /// finish while runc creates the container.
    pub(super) async fn prepare_network(
        &self,
        namespace: &str,
        record: &ContainerRecord,
        runtime_spec: &mut Spec,
    ) -> Result<Option<TaskNetwork>, String> {
        let mode = record.network.mode_name();
        if mode == NETWORK_NONE {
            return Ok(None);
        }
        let prepared = if mode == NETWORK_HOST {
            None
        } else {
            let network = {
                let state = self.store.state();
                berth_commands::network::check_ports_free(&state, &record.id, &record.network)
                    .map_err(|error| error.to_string())?;
                self.network.options.resolve(&state, mode)
            }
            .ok_or_else(|| {
                format!("network {mode:?} no longer exists: `berth network create {mode}` makes it again")
            })?;
            let cni_container_id = self.network.cni_container_id(namespace, &record.id);
            let spare = self.network.take_spare(&network, &cni_container_id, &record.network.ports).await;
            if network.name == NETWORK_BRIDGE {
                // The next task on the default network finds one made (unless spares are off).
                self.network.refill_spare();
            }
            match spare {
                Some(attachment) => Some(TaskNetwork::Attached(attachment)),
                None => Some(TaskNetwork::Prepared(
                    self.network.prepare_attach(&network, &cni_container_id, &record.network.ports).await?,
                )),
            }
        };
        set_network_namespace(runtime_spec, prepared.as_ref().map(TaskNetwork::netns))
            .map_err(|error| format!("cannot set the network namespace in the spec: {error}"))?;
        Ok(prepared)
    }

    /// Runs `spawn` (the monitor's start: runc's create, held at the network gate before the
    /// process may run) and the prepared attach's ADD at once. Once ADD is done and `/etc/hosts`
    /// names the task's address, the gate opens. ADD's failure is the create's error (runc's
    /// hook then fails, so the process never ran); otherwise the monitor's outcome is.
    pub(super) async fn attach_beside_create<T>(
        &self,
        namespace: &str,
        record: &ContainerRecord,
        bundle: &Path,
        prepared: PreparedAttach,
        mut gate: NetworkGate,
        spawn: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<(T, NetworkAttachment), String> {
        // The gate goes with the attach: dropped as soon as it fails (the hook, and with it
        // runc, then fail at once), kept open after `go` until runc has returned (a word
        // written to a FIFO nobody holds open is lost).
        let attach = async move {
            let attachment = self.network.complete_attach(prepared).await?;
            // Only `hosts` changes: the address is in it now.
            let hosts = self.task_hosts(namespace, record, Some(&attachment.network), attachment.ip());
            etc_files::write_etc_file(bundle, "hosts", &hosts)
                .map_err(|error| format!("cannot write /etc/hosts into the bundle {}: {error}", bundle.display()))?;
            gate.open_the_gate()
                .map_err(|error| format!("cannot open the network gate {}: {error}", gate.path().display()))?;
            Ok::<(NetworkAttachment, NetworkGate), String>((attachment, gate))
        };
        let (spawned, attached) = tokio::join!(spawn, attach);
        let (attachment, _gate) = attached?;
        Ok((spawned?, attachment))
    }

    /// Writes the bundle's `hostname`, `hosts` ([`Executor::task_hosts`]) and `resolv.conf`
    /// (`--dns`, or the host's without loopback resolvers), in place.
    pub(super) fn write_task_etc_files(
        &self,
        namespace: &str,
        record: &ContainerRecord,
        bundle: &Path,
        network: Option<&str>,
        address: Option<&str>,
    ) -> std::io::Result<()> {
        let hosts = self.task_hosts(namespace, record, network, address);
        let resolv_conf = etc_files::resolv_conf_with_servers(&record.network.dns);
        etc_files::write_etc_files(bundle, &record.hostname, &hosts, &resolv_conf)
    }

    /// A task's `/etc/hosts`: its own `address` (or Debian's 127.0.1.1 before it has one),
    /// `--add-host`, and the other tasks of its namespace on `network` by id and hostname.
    fn task_hosts(
        &self,
        namespace: &str,
        record: &ContainerRecord,
        network: Option<&str>,
        address: Option<&str>,
    ) -> String {
        let peers = match network {
            Some(network) => self.peer_entries(namespace, &record.id, network),
            None => Vec::new(),
        };
        hosts::hosts_contents(
            &record.hostname,
            address,
            &hosts::extra_host_entries(&record.network.extra_hosts),
            &peers,
        )
    }

    /// The other tasks of `namespace` attached to `network`, by id and hostname.
    fn peer_entries(&self, namespace: &str, except_id: &str, network: &str) -> Vec<HostEntry> {
        let state = self.store.state();
        state
            .network_attachments(network)
            .filter(|(peer_namespace, container, _)| *peer_namespace == namespace && container.record.id != except_id)
            .filter_map(|(_, container, attachment)| {
                Some(hosts::peer_entry(attachment.ip()?, &container.record.id, &container.record.hostname))
            })
            .collect()
    }

    /// After a task joined or left `network`: rewrite the `/etc/hosts` of every other task of
    /// the namespace on it, in place, so their running processes see the change.
    pub(super) fn refresh_peer_hosts(&self, namespace: &str, network: &str) {
        let peers: Vec<(ContainerRecord, NetworkAttachment)> = {
            let state = self.store.state();
            state
                .network_attachments(network)
                .filter(|(peer_namespace, _, _)| *peer_namespace == namespace)
                .map(|(_, container, attachment)| (container.record.clone(), attachment.clone()))
                .collect()
        };
        for (record, attachment) in peers {
            let bundle = self.layout.bundle_dir(namespace, &record.id);
            if !bundle.join("hosts").exists() {
                continue;
            }
            let text = self.task_hosts(namespace, &record, Some(network), attachment.ip());
            if let Err(error) = etc_files::write_etc_file(&bundle, "hosts", &text) {
                tracing::warn!(namespace, container_id = record.id, %error, "cannot update a peer's /etc/hosts");
            }
        }
    }

    /// CNI DEL of the task's network and its namespace file gone, now (undoing a failed
    /// create, which recorded no attachment). A failed DEL is logged and left to the next start
    /// (its cache stays).
    pub(super) async fn release_network(&self, namespace: &str, container_id: &str) {
        let cni_container_id = self.network.cni_container_id(namespace, container_id);
        if let Err(error) = self.network.detach(&cni_container_id).await {
            tracing::warn!(namespace, container_id, %error, "releasing the task's network failed; the next start tries again");
        }
    }

    /// Takes the task's CNI id before its deletion is recorded, so that the same container's
    /// next task cannot attach before its release is done. `attachment`: what the task has on
    /// record, if anything.
    pub(super) async fn hold_network_for_release(
        &self,
        namespace: &str,
        container_id: &str,
        attachment: Option<&NetworkAttachment>,
    ) -> PendingRelease {
        let cni_container_id = self.network.cni_container_id(namespace, container_id);
        let guard = self.network.lock_id(&cni_container_id).await;
        PendingRelease {
            cni_container_id,
            network: attachment.map(|attachment| attachment.network.clone()),
            publishes_ports: attachment.is_some_and(|attachment| !attachment.ports.is_empty()),
            guard,
        }
    }

    /// After `TaskDeleted` is recorded: CNI DEL and the namespace file's removal, off the
    /// delete's path (the plugins' DEL costs more than the rest of a delete) and at the lowest
    /// CPU priority (so that it does not slow the next container's start), then
    /// `NetworkReleased` for a task that had an attachment on record. The id's guard goes last,
    /// once the release is on record.
    pub(super) fn release_network_in_background(
        self: &Arc<Self>,
        namespace: &str,
        container_id: &str,
        release: PendingRelease,
    ) {
        let executor = Arc::clone(self);
        let (namespace, container_id) = (namespace.to_string(), container_id.to_string());
        tokio::spawn(async move {
            let PendingRelease { cni_container_id, network, guard, .. } = release;
            if executor.detach_held(&namespace, &container_id, &cni_container_id, &guard, Urgency::Background).await {
                if let Some(network) = network {
                    let event = Event::NetworkReleased { container_id: container_id.clone(), network };
                    let origin =
                        Origin::Daemon { reason: "the deleted task's network was released".into(), answers: None };
                    let command = Command::RecordDaemonEvent(RecordDaemonEvent { event });
                    if let Err(error) = executor.store.submit(&namespace, origin, command).await {
                        tracing::warn!(namespace, container_id, %error, "the task's network was released but its record was refused");
                    }
                }
            }
            drop(guard);
        });
    }

    /// Before `TaskDeleted` is recorded, for a task that published host ports (the port must
    /// be free when `rm` returns): CNI DEL now, and the `NetworkDetached` to record with the
    /// deletion when the task had an attachment on record and DEL succeeded.
    pub(super) async fn release_network_now(
        &self,
        namespace: &str,
        container_id: &str,
        release: PendingRelease,
    ) -> Option<Event> {
        let PendingRelease { cni_container_id, network, guard, .. } = release;
        let released = self.detach_held(namespace, container_id, &cni_container_id, &guard, Urgency::Now).await;
        drop(guard);
        Some(Event::NetworkDetached { container_id: container_id.to_string(), network: network.filter(|_| released)? })
    }

    /// CNI DEL and the namespace file's removal under the id's guard; false (logged) when it
    /// failed, which leaves the cache for the next start, whose recovery finishes it
    /// (`OrphanRemoved`), as it does one a crash or a stop cut off.
    async fn detach_held(
        &self,
        namespace: &str,
        container_id: &str,
        cni_container_id: &str,
        guard: &IdGuard,
        urgency: Urgency,
    ) -> bool {
        match self.network.detach_locked(cni_container_id, guard, urgency).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(
                    namespace,
                    container_id,
                    %error,
                    "releasing the deleted task's network failed; the next start tries again"
                );
                false
            }
        }
    }

    /// Start-up: settle what a crash left of networking (observe → `teardown::plan` → apply),
    /// then let attaches go on. A teardown takes the id's lock and tears down only what is still
    /// there: a requeued delete's release may have run meanwhile.
    pub(super) async fn reconcile_networks(self: &Arc<Self>) {
        let tasks: Vec<TaskNetworkView> = {
            let state = self.store.state();
            state
                .containers()
                .filter_map(|(namespace, container)| {
                    let task = container.task.as_ref()?;
                    Some(TaskNetworkView {
                        namespace: namespace.to_string(),
                        container_id: container.record.id.clone(),
                        cni_container_id: self.network.cni_container_id(namespace, &container.record.id),
                        live: task.is_live(),
                        recorded_network: task.network.as_ref().map(|attachment| attachment.network.clone()),
                    })
                })
                .collect()
        };
        let observed = self.network.observe();
        let steps = teardown::plan(&tasks, &observed);
        tracing::debug!(?observed, ?steps, "network recovery plan");
        for step in steps {
            match step {
                NetworkStep::TearDown { cni_container_id, orphan } => {
                    match self.network.detach_if_present(&cni_container_id).await {
                        Ok(true) if orphan => {
                            let event = Event::OrphanRemoved {
                                what: "network attachment".into(),
                                id: cni_container_id.clone(),
                            };
                            let origin = Origin::Daemon { reason: "recovery: orphan removed".into(), answers: None };
                            let command = Command::RecordDaemonEvent(RecordDaemonEvent { event });
                            if let Err(error) = self.store.submit("", origin, command).await {
                                tracing::warn!(cni_container_id, %error, "the network leftover was removed but its record was refused");
                            }
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(cni_container_id, %error, "removing a network leftover failed; the next start tries again")
                        }
                    }
                }
                NetworkStep::RecordDetached { namespace, container_id, network } => {
                    let event = Event::NetworkDetached { container_id, network: network.clone() };
                    if self.record(&namespace, None, "recovery: the network is gone", event).await {
                        self.refresh_peer_hosts(&namespace, &network);
                    }
                }
                NetworkStep::RecordAttached { namespace, container_id, cni_container_id } => {
                    let Some(attachment) = self.network.cached_attachment(&cni_container_id) else { continue };
                    let network = attachment.network.clone();
                    let event = Event::NetworkAttached { container_id, attachment };
                    if self.record(&namespace, None, "recovery: the task's network was attached", event).await {
                        self.refresh_peer_hosts(&namespace, &network);
                    }
                }
            }
        }
        // Attaches waited for this (`Networking::mark_recovered`).
        self.network.mark_recovered();
    }
}

/// Points the spec's network namespace at `path`, or removes it (the host's) when `None`.
fn set_network_namespace(runtime_spec: &mut Spec, path: Option<&Path>) -> Result<(), oci_spec::OciSpecError> {
    let Some(linux) = runtime_spec.linux_mut() else { return Ok(()) };
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|namespace| namespace.typ() != LinuxNamespaceType::Network);
    if let Some(path) = path {
        namespaces.push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path.to_path_buf())
                .build()?,
        );
    }
    linux.set_namespaces(Some(namespaces));
    Ok(())
}
