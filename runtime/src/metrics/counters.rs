//! What berthd counts as it runs, for the metrics endpoint: each command's outcome (counted by
//! the command thread, one map update per command), the event subscribers and how far each has
//! read, and how long start-up replay took. Plain std types: collecting them into series is
//! `collect.rs`'s work, done on a scrape, never on the command thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A command's outcome: `accepted`, or `refused` with why (a `CommandError` kind,
/// `record_too_large` or `no_space`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommandOutcome {
    Accepted,
    Refused(&'static str),
}

#[derive(Default)]
pub struct DaemonCounters {
    commands: Mutex<BTreeMap<(&'static str, CommandOutcome), u64>>,
    pub subscribers: Arc<Subscribers>,
    /// Start-up replay (with verification), in nanoseconds.
    replay_ns: AtomicU64,
}

impl DaemonCounters {
    pub fn count_command(&self, command: &'static str, outcome: CommandOutcome) {
        let mut commands = self.commands.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *commands.entry((command, outcome)).or_default() += 1;
    }

    /// Every (command, outcome) seen so far with its count, in a stable order.
    pub fn commands(&self) -> Vec<(&'static str, CommandOutcome, u64)> {
        let commands = self.commands.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        commands.iter().map(|((command, outcome), count)| (*command, *outcome, *count)).collect()
    }

    pub fn set_replay_duration(&self, duration: std::time::Duration) {
        self.replay_ns.store(duration.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn replay_seconds(&self) -> f64 {
        self.replay_ns.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// The `Events/Subscribe` streams open now, each with the seq of the last record it has read.
#[derive(Default)]
pub struct Subscribers {
    next_id: AtomicU64,
    positions: Mutex<HashMap<u64, Arc<AtomicU64>>>,
}

impl Subscribers {
    /// Counts a stream until the returned guard is dropped; `read_through` is the seq it has
    /// read up to when it starts.
    pub fn register(self: &Arc<Self>, read_through: u64) -> SubscriberGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let position = Arc::new(AtomicU64::new(read_through));
        self.lock().insert(id, Arc::clone(&position));
        SubscriberGuard { subscribers: Arc::clone(self), id, position }
    }

    /// How many streams are open, and the seq each has read through.
    pub fn positions(&self) -> Vec<u64> {
        self.lock().values().map(|position| position.load(Ordering::Relaxed)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<AtomicU64>>> {
        self.positions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One open subscription; it stops being counted when dropped.
pub struct SubscriberGuard {
    subscribers: Arc<Subscribers>,
    id: u64,
    position: Arc<AtomicU64>,
}

impl SubscriberGuard {
    /// The stream has read (and sent or filtered out) every record up to `seq`.
    pub fn read_through(&self, seq: u64) {
        self.position.store(seq, Ordering::Relaxed);
    }
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.subscribers.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_are_counted_while_their_guard_lives() {
        let counters = DaemonCounters::default();
        let first = counters.subscribers.register(3);
        let second = counters.subscribers.register(0);
        second.read_through(7);
        let mut positions = counters.subscribers.positions();
        positions.sort();
        assert_eq!(positions, vec![3, 7]);
        drop(first);
        assert_eq!(counters.subscribers.positions(), vec![7]);
        counters.count_command("CreateTask", CommandOutcome::Accepted);
        counters.count_command("CreateTask", CommandOutcome::Accepted);
        counters.count_command("CreateTask", CommandOutcome::Refused("not_found"));
        assert_eq!(
            counters.commands(),
            vec![("CreateTask", CommandOutcome::Accepted, 2), ("CreateTask", CommandOutcome::Refused("not_found"), 1)]
        );
    }
}
