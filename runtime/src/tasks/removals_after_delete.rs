//! The hint by which `Containers/Delete` with `delete_task` asks the executor to record the
//! container's removal in the same record as its task's deletion (`api::task_delete`,
//! `RecordOutcome::then_remove`).
//!
//! The request leaves it before its delete intent is submitted, keyed by the container
//! ([`RemovalsAfterDelete::ask`]); the executor, dispatching a `TaskDeleteRequested` that a
//! `Containers/Delete` recorded, moves it onto that intent's seq ([`RemovalsAfterDelete::claim`]),
//! and takes it when the delete succeeds. A delete intent berthd records on its own (a restart
//! policy's, an auto-removal's) never claims it. Only a hint, in memory: when none was claimed
//! (berthd restarted, say), the request removes the container with a record of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_log::Seq;

/// The request that asks: the origin method its delete intents are recorded with, by which the
/// executor tells them from the deletes berthd records on its own.
pub const ASKING_METHOD: &str = "Containers/Delete";

#[derive(Debug, Default)]
pub struct RemovalsAfterDelete {
    /// (namespace, container id) → remove the anonymous volumes too.
    asked: Mutex<HashMap<(String, String), bool>>,
    /// Claimed by a delete intent: its seq → remove the anonymous volumes too.
    claimed: Mutex<HashMap<Seq, bool>>,
}

/// An ask, withdrawn when dropped (the request answered, failed, or its client went away).
#[must_use]
pub struct RemovalAsked {
    removals: Arc<RemovalsAfterDelete>,
    key: (String, String),
}

impl Drop for RemovalAsked {
    fn drop(&mut self) {
        lock(&self.removals.asked).remove(&self.key);
    }
}

impl RemovalsAfterDelete {
    /// The container's next delete intent recorded by a `Containers/Delete` removes the
    /// container too (with its anonymous volumes when `remove_volumes`).
    pub fn ask(self: &Arc<Self>, namespace: &str, container_id: &str, remove_volumes: bool) -> RemovalAsked {
        let key = (namespace.to_string(), container_id.to_string());
        lock(&self.asked).insert(key.clone(), remove_volumes);
        RemovalAsked { removals: Arc::clone(self), key }
    }

    /// Dispatch of a delete intent a `Containers/Delete` recorded: the ask, if any, is now that
    /// intent's.
    pub(crate) fn claim(&self, namespace: &str, container_id: &str, intent: Seq) {
        let asked = lock(&self.asked).remove(&(namespace.to_string(), container_id.to_string()));
        if let Some(remove_volumes) = asked {
            lock(&self.claimed).insert(intent, remove_volumes);
        }
    }

    pub(crate) fn take(&self, intent: Seq) -> Option<bool> {
        lock(&self.claimed).remove(&intent)
    }

    /// Withdraws what the intent claimed and the executor did not take (its delete failed).
    pub fn forget(&self, intent: Seq) {
        lock(&self.claimed).remove(&intent);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ask_goes_to_the_intent_that_claims_it_and_is_withdrawn_with_its_request() {
        let removals = Arc::new(RemovalsAfterDelete::default());
        let asked = removals.ask("default", "web", true);
        removals.claim("default", "other", Seq(7));
        assert_eq!(removals.take(Seq(7)), None, "another container's intent claims nothing");
        removals.claim("default", "web", Seq(8));
        drop(asked);
        assert_eq!(removals.take(Seq(8)), Some(true), "claimed before the request ended");
        assert_eq!(removals.take(Seq(8)), None, "taken once");

        let asked = removals.ask("default", "web", false);
        drop(asked);
        removals.claim("default", "web", Seq(9));
        assert_eq!(removals.take(Seq(9)), None, "withdrawn before any intent claimed it");
    }
}
