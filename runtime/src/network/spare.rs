//! The default network's spare attachment: a network namespace with loopback and an interface
//! on the default bridge, attached ahead of need under a CNI id of its own, so that the next
//! task on the default network without published ports starts with its network already there
//! instead of waiting for the plugins' ADD (most of what networking adds to a start).
//!
//! A spare is made in the background as soon as a task on the default network took the last one
//! or attached without one (so the first is made only once the default network is used), its
//! plugins at nice 10: below the host's work, above the releases at nice 19. A
//! task that wants it while it is still being made does not wait: it attaches as without one,
//! and the spare goes to a later task. Handing it over renames its ADD cache to the task's key (one
//! `rename`, then the directory synced): before it, the spare is a spare, after it, it is the
//! task's — the cache keeps the spare's CNI id and namespace file, which the task's record
//! names and its release uses. A spare is never recorded (no task had it); start-up tears
//! down one a crash left, and a stopping berthd releases it.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use berth_projections::{NetworkAttachment, NetworkRecord, PortMapping, NETWORK_BRIDGE};

use crate::network::attach::{IdGuard, Networking, PreparedAttach};
use crate::network::cni::Urgency;
use crate::sys::fs::sync_dir;

impl Networking {
    /// True for the key of one of this berthd's spares: `berth-<token>_spare-…`. A task's key
    /// is `berth-<token>-<namespace>-<id>`, never with `_` after the token.
    pub fn is_spare_key(&self, key: &str) -> bool {
        key.strip_prefix(self.id_prefix().as_str()).is_some_and(|rest| rest.starts_with("_spare-"))
    }

    fn new_spare_key(&self) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        format!("{}_spare-{nanos:x}", self.id_prefix())
    }

    /// The spare, for the task whose attachment key is `key`, when one fits: the default
    /// network, no ports, and no failed release of the key still to finish (the attach without
    /// a spare finishes that first). `None`: attach as without a spare.
    pub async fn take_spare(
        &self,
        network: &NetworkRecord,
        key: &str,
        ports: &[PortMapping],
    ) -> Option<NetworkAttachment> {
        if !self.options.spare || network.name != NETWORK_BRIDGE || !ports.is_empty() {
            return None;
        }
        let _ = self.recovered.subscribe().wait_for(|recovered| *recovered).await;
        let guard = self.lock_id(key).await;
        if self.cache_path(key).exists() || self.netns_path(key).exists() {
            return None;
        }
        // One being made is not waited for: on a host busy enough to keep it from being ready,
        // the spare's background ADD would come after that work, so an ADD of the task's own is
        // sooner (and the spare goes to a later task).
        let spare_key = self.spare.try_lock().ok()?.take()?;
        let handed_over = std::fs::rename(self.cache_path(&spare_key), self.cache_path(key))
            .and_then(|()| sync_dir(&self.cache_dir()));
        if let Err(error) = handed_over {
            tracing::warn!(spare_key, %error, "cannot hand the spare network over; releasing it");
            let _ = std::fs::rename(self.cache_path(key), self.cache_path(&spare_key));
            self.discard(&spare_key, &self.lock_id(&spare_key).await).await;
            return None;
        }
        let attachment = self.cached_attachment(key);
        if attachment.is_none() {
            tracing::warn!(key, spare_key, "the spare's cache has no ADD result; releasing it");
            self.discard(key, &guard).await;
        }
        attachment
    }

    /// Releases an attachment no task will have (a spare that could not be handed over, or
    /// one at stop), now; a failure leaves it to the next start's teardown.
    async fn discard(&self, key: &str, guard: &IdGuard) {
        if let Err(error) = self.detach_locked(key, guard, Urgency::Now).await {
            tracing::warn!(key, %error, "releasing the spare network failed; the next start tries again");
        }
    }

    /// Makes a spare in the background unless one is there or being made (or spares are off).
    pub fn refill_spare(self: &Arc<Self>) {
        if !self.options.spare
            || self.spare_closed.load(Ordering::SeqCst)
            || self.spare_refilling.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let networking = Arc::clone(self);
        tokio::spawn(async move {
            let mut slot = networking.spare.lock().await;
            if slot.is_none() && !networking.spare_closed.load(Ordering::SeqCst) {
                match networking.make_spare().await {
                    Ok(key) => *slot = Some(key),
                    Err(error) => tracing::warn!(%error, "cannot make a spare network attachment"),
                }
            }
            // Cleared while the slot is held: a task that takes this spare once the slot is free
            // starts the next refill.
            networking.spare_refilling.store(false, Ordering::SeqCst);
        });
    }

    /// An attach to the default network under a new spare key, its plugins at background
    /// priority; everything undone on failure.
    async fn make_spare(&self) -> Result<String, String> {
        let key = self.new_spare_key();
        let prepared = self.prepare_attach(&self.options.default_network(), &key, &[]).await?;
        self.add_prepared(prepared, Urgency::Spare).await?;
        Ok(key)
    }

    /// At stop: the spare (if any, once it is made) released, so nothing of it outlives berthd.
    pub async fn release_spare(&self) {
        // Closed before waiting for the slot: a refill queued behind a spare being made finds
        // it closed and makes none (the one being made is finished, then released here).
        self.spare_closed.store(true, Ordering::SeqCst);
        let mut slot = self.spare.lock().await;
        let Some(key) = slot.take() else { return };
        drop(slot);
        self.discard(&key, &self.lock_id(&key).await).await;
    }
}

/// A task's network on a CNI network, before runc: attached already (the spare), or half done.
pub enum TaskNetwork {
    Attached(NetworkAttachment),
    Prepared(PreparedAttach),
}

impl TaskNetwork {
    pub fn netns(&self) -> &Path {
        match self {
            TaskNetwork::Attached(attachment) => Path::new(&attachment.netns),
            TaskNetwork::Prepared(prepared) => prepared.netns(),
        }
    }

    pub fn network(&self) -> &str {
        match self {
            TaskNetwork::Attached(attachment) => &attachment.network,
            TaskNetwork::Prepared(prepared) => prepared.network(),
        }
    }

    /// The address, once attached.
    pub fn address(&self) -> Option<&str> {
        match self {
            TaskNetwork::Attached(attachment) => attachment.ip(),
            TaskNetwork::Prepared(_) => None,
        }
    }
}
