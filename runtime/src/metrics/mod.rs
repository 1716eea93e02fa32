//! berthd's Prometheus endpoint (`--metrics-address`, off unless set): [`address`] reads and
//! checks where it listens (loopback unless the operator allows more), [`counters`] holds what
//! the daemon counts as it runs (command outcomes, event subscribers, start-up replay time),
//! [`collect`] turns those, the log writer's counters and histograms, the tasks and each live
//! container's cgroup counters into series on each scrape, and [`http`] serves them.

pub mod address;
pub mod collect;
pub mod counters;
pub mod http;

use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::daemon::layout::Layout;
use crate::daemon::store::Store;

/// The registry berthd serves: one collector that reads everything afresh per scrape.
pub fn registry(store: Arc<Store>, layout: Layout) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collect::DaemonCollector::new(store, layout)));
    registry
}
