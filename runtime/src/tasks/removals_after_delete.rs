//! The hint by which `Containers/Delete` with `delete_task` asks the executor to record the
//! container's removal in the same record as its task's deletion (`api::task_delete`,
//! `RecordOutcome::then_remove`).

use std::collections::HashMap;
use std::sync::Mutex;

use berth_log::Seq;

/// Containers a `Containers/Delete` with `delete_task` asked to remove, by the seq of the
/// task's delete intent it recorded: once that delete succeeds, the executor records the
/// container's removal in the same record as its outcome (`RecordOutcome::then_remove`, one
/// fdatasync for both). Only a hint, in memory: when the executor did not take it (the intent
/// was done before the hint was left, or berthd restarted), the API removes the container with
/// a record of its own, as before.
#[derive(Debug, Default)]
pub struct RemovalsAfterDelete {
    asked: Mutex<HashMap<Seq, bool>>,
}

impl RemovalsAfterDelete {
    /// After the delete intent at `intent`, remove the container too (with its anonymous
    /// volumes when `remove_volumes`).
    pub fn ask(&self, intent: Seq, remove_volumes: bool) {
        self.lock().insert(intent, remove_volumes);
    }

    /// Withdraws the hint; called once the intent has its outcome, whether or not it was taken.
    pub fn forget(&self, intent: Seq) {
        self.lock().remove(&intent);
    }

    pub(crate) fn take(&self, intent: Seq) -> Option<bool> {
        self.lock().remove(&intent)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Seq, bool>> {
        self.asked.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
