//! One scrape's worth of series, gathered when Prometheus asks (on a blocking thread, never the
//! command thread): the log writer's counters and histograms, the command and subscriber
//! counters, the tasks by state from the projections, and each live container's cgroup
//! counters (`tasks::cgroup_stats`, the files `berth stats` reads). The state's read lock is held
//! only to list the tasks; the cgroup files are read after it is released.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use berth_log::HistogramSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::daemon::layout::Layout;
use crate::daemon::store::Store;
use crate::metrics::counters::CommandOutcome;
use crate::tasks::cgroup_stats::{cgroup_counters, CgroupCounters};

/// Everything berthd exports, read afresh on each scrape.
pub struct DaemonCollector {
    store: Arc<Store>,
    layout: Layout,
}

impl DaemonCollector {
    pub fn new(store: Arc<Store>, layout: Layout) -> DaemonCollector {
        DaemonCollector { store, layout }
    }
}

impl fmt::Debug for DaemonCollector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("DaemonCollector").finish_non_exhaustive()
    }
}

/// A live task as the projections say, with what its cgroup is named.
struct LiveTask {
    namespace: String,
    container: String,
    cgroups_path: String,
}

type Labels = Vec<(&'static str, String)>;

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A family of series of one type, one per label set.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    series: &[(Labels, f64)],
) -> fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut family_encoder = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in series {
        let series_encoder = family_encoder.encode_family(labels)?;
        match metric_type {
            MetricType::Counter => ConstCounter::new(*value).encode(series_encoder)?,
            _ => ConstGauge::new(*value).encode(series_encoder)?,
        }
    }
    Ok(())
}

/// A log histogram, its bounds and sum divided by `scale` (1e9 turns ns into seconds).
fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    snapshot: &HistogramSnapshot,
    scale: f64,
) -> fmt::Result {
    let mut buckets: Vec<(f64, u64)> =
        snapshot.bounds.iter().zip(&snapshot.counts).map(|(bound, count)| (*bound as f64 / scale, *count)).collect();
    buckets.push((f64::MAX, snapshot.counts.last().copied().unwrap_or(0)));
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(snapshot.sum as f64 / scale, snapshot.count(), &buckets, None)
}

impl DaemonCollector {
    fn encode_log(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let log = self.store.log();
        let stats = log.stats();
        let histograms = log.histograms();
        histogram(
            encoder,
            "berth_log_append_seconds",
            "Time from a log append call to its records being durable (the command thread waits this per batch).",
            &histograms.append_ns,
            1e9,
        )?;
        histogram(
            encoder,
            "berth_log_commit_seconds",
            "One group commit's write and fdatasync.",
            &histograms.commit_ns,
            1e9,
        )?;
        histogram(encoder, "berth_log_batch_records", "Records per group commit.", &histograms.batch_records, 1.0)?;
        counter(
            encoder,
            "berth_log_fsyncs",
            "fdatasync calls on log segments since berthd started.",
            stats.n_syncs as f64,
        )?;
        counter(encoder, "berth_log_group_commits", "Group commits since berthd started.", stats.n_batches as f64)?;
        counter(encoder, "berth_log_records", "Records appended since berthd started.", stats.n_records as f64)?;
        counter(
            encoder,
            "berth_log_written_bytes",
            "Record and segment-header bytes written since berthd started.",
            stats.n_bytes_written as f64,
        )?;
        gauge(encoder, "berth_log_segments", "Segment files in the log.", stats.n_segments as f64)?;
        gauge(
            encoder,
            "berth_log_size_bytes",
            "Disk space the log's segment files take (each is preallocated whole).",
            (stats.n_segments * stats.segment_size) as f64,
        )?;
        gauge(encoder, "berth_log_last_seq", "Seq of the last durable record.", log.last_seq().get() as f64)
    }

    fn encode_daemon(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let counters = self.store.counters();
        let commands: Vec<(Labels, f64)> = counters
            .commands()
            .into_iter()
            .map(|(command, outcome, count)| {
                let (outcome, reason) = match outcome {
                    CommandOutcome::Accepted => ("accepted", ""),
                    CommandOutcome::Refused(reason) => ("refused", reason),
                };
                let mut labels: Labels = vec![("command", command.to_string()), ("outcome", outcome.to_string())];
                if !reason.is_empty() {
                    labels.push(("reason", reason.to_string()));
                }
                (labels, count as f64)
            })
            .collect();
        family(
            encoder,
            "berth_commands",
            "Commands decided, by type and outcome (refused ones with the reason).",
            MetricType::Counter,
            &commands,
        )?;
        gauge(
            encoder,
            "berth_startup_replay_seconds",
            "How long start-up took to replay and verify the log.",
            counters.replay_seconds(),
        )?;
        let positions = counters.subscribers.positions();
        let last_seq = self.store.applied_seq().get();
        let max_lag = positions.iter().map(|position| last_seq.saturating_sub(*position)).max().unwrap_or(0);
        gauge(encoder, "berth_event_subscribers", "Open Events/Subscribe streams.", positions.len() as f64)?;
        gauge(
            encoder,
            "berth_event_subscriber_max_lag_records",
            "Records the furthest-behind event subscriber has yet to read.",
            max_lag as f64,
        )
    }

    /// Tasks by namespace and state (a paused task counted as `paused`), and the live ones.
    fn tasks(&self) -> (BTreeMap<(String, &'static str), u64>, Vec<LiveTask>) {
        let state = self.store.state();
        let mut by_state = BTreeMap::new();
        let mut live = Vec::new();
        for (namespace, namespace_state) in &state.namespaces {
            for (id, container) in &namespace_state.containers {
                let Some(task) = &container.task else { continue };
                let name = if task.paused { "paused" } else { task.status.name() };
                *by_state.entry((namespace.clone(), name)).or_default() += 1;
                if task.is_live() && task.exit.is_none() {
                    live.push(LiveTask {
                        namespace: namespace.clone(),
                        container: id.clone(),
                        cgroups_path: self.layout.cgroups_path(namespace, id),
                    });
                }
            }
        }
        (by_state, live)
    }

    fn encode_tasks(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let (by_state, live) = self.tasks();
        let tasks: Vec<(Labels, f64)> = by_state
            .into_iter()
            .map(|((namespace, state), count)| {
                (vec![("namespace", namespace), ("state", state.to_string())], count as f64)
            })
            .collect();
        family(encoder, "berth_tasks", "Tasks by namespace and state.", MetricType::Gauge, &tasks)?;
        let usage: Vec<(Labels, CgroupCounters)> = live
            .into_iter()
            .map(|task| {
                let counters = cgroup_counters(&task.cgroups_path);
                (vec![("namespace", task.namespace), ("container", task.container)], counters)
            })
            .collect();
        let series = |value: &dyn Fn(&CgroupCounters) -> Option<f64>| -> Vec<(Labels, f64)> {
            usage.iter().filter_map(|(labels, counters)| Some((labels.clone(), value(counters)?))).collect()
        };
        family(
            encoder,
            "berth_container_cpu_seconds",
            "CPU time the container's cgroup used.",
            MetricType::Counter,
            &series(&|counters| Some(counters.cpu_usage_ns as f64 / 1e9)),
        )?;
        family(
            encoder,
            "berth_container_memory_usage_bytes",
            "Memory the container's cgroup uses now.",
            MetricType::Gauge,
            &series(&|counters| Some(counters.memory_usage_bytes as f64)),
        )?;
        family(
            encoder,
            "berth_container_memory_limit_bytes",
            "The container's memory limit (only for containers that have one).",
            MetricType::Gauge,
            &series(&|counters| (counters.memory_limit_bytes > 0).then_some(counters.memory_limit_bytes as f64)),
        )?;
        family(
            encoder,
            "berth_container_pids",
            "Processes and threads in the container's cgroup.",
            MetricType::Gauge,
            &series(&|counters| Some(counters.pids as f64)),
        )?;
        family(
            encoder,
            "berth_container_block_read_bytes",
            "Bytes the container's cgroup read from block devices.",
            MetricType::Counter,
            &series(&|counters| Some(counters.block_read_bytes as f64)),
        )?;
        family(
            encoder,
            "berth_container_block_write_bytes",
            "Bytes the container's cgroup wrote to block devices.",
            MetricType::Counter,
            &series(&|counters| Some(counters.block_write_bytes as f64)),
        )
    }
}

impl Collector for DaemonCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.encode_log(&mut encoder)?;
        self.encode_daemon(&mut encoder)?;
        self.encode_tasks(&mut encoder)
    }
}
