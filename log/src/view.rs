//! The view the writer shares with every reader: the list of segments and the durable
//! watermark, with a way to wait for it to move.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::segment::Segment;
use crate::Seq;

/// (seq, chain hash) a segment list continues from.
pub(crate) type Base = (Seq, [u8; 32]);

/// What readers share with the writer: the segment list and the durable watermark.
pub(crate) struct SharedView {
    pub dir: PathBuf,
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    /// (seq, chain hash) the oldest segment continues from: (0, genesis), or the point where
    /// retention cut the history (see manifest.rs).
    base: RwLock<(Seq, [u8; 32])>,
    /// Highest seq that is on stable storage (and fully written). Readers never go past it.
    durable_seq: AtomicU64,
    durable_changed: Mutex<()>,
    durable_condvar: Condvar,
}

impl SharedView {
    /// `base`: (seq, chain hash) the oldest of `segments` continues from.
    pub fn new(dir: PathBuf, segments: Vec<Arc<Segment>>, durable_seq: Seq, base: (Seq, [u8; 32])) -> SharedView {
        SharedView {
            dir,
            segments: RwLock::new(Arc::new(segments)),
            base: RwLock::new(base),
            durable_seq: AtomicU64::new(durable_seq.0),
            durable_changed: Mutex::new(()),
            durable_condvar: Condvar::new(),
        }
    }

    pub fn durable_seq(&self) -> u64 {
        self.durable_seq.load(Ordering::Acquire)
    }

    /// Makes records up to `seq` visible. Called only after they are written (and synced).
    pub fn publish(&self, seq: u64) {
        self.durable_seq.store(seq, Ordering::Release);
        let _guard = self.durable_changed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.durable_condvar.notify_all();
    }

    /// Blocks until `durable_seq() >= seq` or the timeout passes; returns `durable_seq()`.
    pub fn wait_for(&self, seq: u64, timeout: Option<Duration>) -> u64 {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut guard = self.durable_changed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            let durable = self.durable_seq();
            if durable >= seq {
                return durable;
            }
            match deadline {
                None => guard = self.durable_condvar.wait(guard).unwrap_or_else(|poisoned| poisoned.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return durable;
                    }
                    guard = self
                        .durable_condvar
                        .wait_timeout(guard, deadline - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0;
                }
            }
        }
    }

    pub fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        self.segments.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn base(&self) -> (Seq, [u8; 32]) {
        *self.base.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The segment list and the base it starts from, as one consistent pair (retention changes
    /// both under the segment list's lock).
    pub fn segments_and_base(&self) -> (Arc<Vec<Arc<Segment>>>, Base) {
        let segments = self.segments.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        (segments.clone(), self.base())
    }

    /// Replaces the segment list (archiving swaps live segments for archived ones; retention
    /// drops the oldest and moves the base to the cut, in the same step). Readers that hold the
    /// old list keep their segments until done.
    pub fn replace_segments(
        &self,
        update: impl FnOnce(&[Arc<Segment>]) -> Vec<Arc<Segment>>,
        new_base: Option<(Seq, [u8; 32])>,
    ) {
        let mut segments = self.segments.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let updated = update(&segments);
        if let Some(new_base) = new_base {
            *self.base.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = new_base;
        }
        *segments = Arc::new(updated);
    }

    /// Adds a newly activated segment. Readers only enter it once the watermark reaches its
    /// first seq.
    pub fn push_segment(&self, segment: Arc<Segment>) {
        let mut segments = self.segments.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut updated = Vec::with_capacity(segments.len() + 1);
        updated.extend(segments.iter().cloned());
        updated.push(segment);
        *segments = Arc::new(updated);
    }
}
