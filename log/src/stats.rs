//! What the writer counts as it works: plain atomics and fixed-bucket histograms, read by
//! `EventLog::stats` and `EventLog::histograms` for tests, benchmarks and berthd's metrics
//! (the crate stays free of any metrics library; berthd turns these into Prometheus series).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for tests, benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records made durable (published) since open.
    pub n_records: u64,
    /// `fdatasync` calls on segment files (0 with `Durability::NoSync`).
    pub n_syncs: u64,
    /// Group commits (one leader pass each).
    pub n_batches: u64,
    /// Record and segment-header bytes written.
    pub n_bytes_written: u64,
    /// Segments activated since open (rollovers, plus the first segment of an empty log).
    pub n_segments_activated: u64,
    /// Segment files the log holds now (the preallocated spare not counted).
    pub n_segments: u64,
    /// Bytes each segment file takes on disk (they are preallocated whole).
    pub segment_size: u64,
}

#[derive(Default)]
pub(crate) struct StatsCounters {
    pub n_records: AtomicU64,
    pub n_syncs: AtomicU64,
    pub n_batches: AtomicU64,
    pub n_bytes_written: AtomicU64,
    pub n_segments_activated: AtomicU64,
}

/// Upper bounds of the latency buckets, in nanoseconds: 50 µs to 1 s, a fast disk's fdatasync
/// near the bottom and a stalled one near the top.
pub const LATENCY_BOUNDS_NS: &[u64] = &[
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

/// Upper bounds of the batch-size buckets, in records per group commit.
pub const BATCH_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/// A histogram of `u64` observations with fixed bounds; each observation costs two atomic adds.
pub(crate) struct AtomicHistogram {
    bounds: &'static [u64],
    /// One per bound, plus the overflow bucket (+Inf) last.
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [u64]) -> AtomicHistogram {
        AtomicHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        let bucket = self.bounds.iter().position(|bound| value <= *bound).unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self.counts.iter().map(|count| count.load(Ordering::Relaxed)).collect(),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A histogram read at one moment. Buckets are not cumulative: `counts[i]` observations fell
/// in `(bounds[i-1], bounds[i]]`, and the last count is everything above the last bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [u64],
    pub counts: Vec<u64>,
    pub sum: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

pub(crate) struct Histograms {
    pub append_ns: AtomicHistogram,
    pub commit_ns: AtomicHistogram,
    pub batch_records: AtomicHistogram,
}

impl Default for Histograms {
    fn default() -> Histograms {
        Histograms {
            append_ns: AtomicHistogram::new(LATENCY_BOUNDS_NS),
            commit_ns: AtomicHistogram::new(LATENCY_BOUNDS_NS),
            batch_records: AtomicHistogram::new(BATCH_BOUNDS),
        }
    }
}

/// The writer's histograms since open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogHistograms {
    /// From an `append*` call to its records being durable (what the caller waits), in ns.
    pub append_ns: HistogramSnapshot,
    /// One group commit's write and fdatasync, in ns.
    pub commit_ns: HistogramSnapshot,
    /// Records per group commit.
    pub batch_records: HistogramSnapshot,
}

impl Histograms {
    pub fn snapshot(&self) -> LogHistograms {
        LogHistograms {
            append_ns: self.append_ns.snapshot(),
            commit_ns: self.commit_ns.snapshot(),
            batch_records: self.batch_records.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let histogram = AtomicHistogram::new(&[1, 4, 16]);
        for value in [0, 1, 2, 4, 5, 16, 17, 1000] {
            histogram.observe(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts, vec![2, 2, 2, 2]);
        assert_eq!(snapshot.sum, 1045);
        assert_eq!(snapshot.count(), 8);
    }
}
