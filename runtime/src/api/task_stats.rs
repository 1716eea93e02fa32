//! `Tasks/Top` and `Tasks/Stats`: read-only views of live tasks from their cgroups and /proc
//! (`tasks::cgroup_stats`); nothing is recorded, as nothing changes.

use berth_projections::State;
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::services::{container_not_found, Services};
use crate::tasks::cgroup_stats::{cgroup_counters, container_processes};

/// The cgroup path of `container_id`'s task, refused when it has no live task.
fn live_cgroup(services: &Services, state: &State, namespace: &str, container_id: &str) -> Result<String, Status> {
    let container =
        state.container(namespace, container_id).ok_or_else(|| container_not_found(namespace, container_id))?;
    match &container.task {
        Some(task) if task.is_live() && task.exit.is_none() => {
            Ok(services.layout.cgroups_path(namespace, container_id))
        }
        _ => Err(Status::failed_precondition(format!(
            "container {container_id:?} is not running: start it with `berth start {container_id}`"
        ))),
    }
}

pub(crate) async fn top(
    services: &Services,
    request: Request<api::TopRequest>,
) -> Result<Response<api::TopResponse>, Status> {
    let (namespace, _) = services.caller(&request, "Tasks/Top")?;
    let container_id = request.into_inner().container_id;
    let cgroups_path = live_cgroup(services, &services.store.state(), &namespace, &container_id)?;
    let rows = tokio::task::spawn_blocking(move || container_processes(&cgroups_path))
        .await
        .map_err(|error| Status::internal(format!("reading the processes failed: {error}")))?;
    let processes = rows
        .into_iter()
        .map(|row| api::TopProcess {
            pid: row.pid,
            uid: row.uid,
            user: row.user,
            cpu_seconds: row.cpu_seconds,
            command: row.command,
        })
        .collect();
    Ok(Response::new(api::TopResponse { processes }))
}

pub(crate) async fn stats(
    services: &Services,
    request: Request<api::StatsRequest>,
) -> Result<Response<api::StatsResponse>, Status> {
    let (namespace, _) = services.caller(&request, "Tasks/Stats")?;
    let asked = request.into_inner().container_ids;
    let targets: Vec<(String, String)> = {
        let state = services.store.state();
        if asked.is_empty() {
            let live = state.namespace(&namespace).map(|namespace_state| {
                namespace_state
                    .containers
                    .iter()
                    .filter(|(_, container)| {
                        container.task.as_ref().is_some_and(|task| task.is_live() && task.exit.is_none())
                    })
                    .map(|(id, _)| id.clone())
                    .collect::<Vec<_>>()
            });
            live.unwrap_or_default().into_iter().map(|id| (services.layout.cgroups_path(&namespace, &id), id)).collect()
        } else {
            let mut targets = Vec::with_capacity(asked.len());
            for id in asked {
                targets.push((live_cgroup(services, &state, &namespace, &id)?, id));
            }
            targets
        }
    };
    let stats = tokio::task::spawn_blocking(move || {
        targets
            .into_iter()
            .map(|(cgroups_path, container_id)| {
                let counters = cgroup_counters(&cgroups_path);
                let read_at_ns = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos() as i64);
                api::ContainerStats {
                    container_id,
                    cpu_usage_ns: counters.cpu_usage_ns,
                    memory_usage_bytes: counters.memory_usage_bytes,
                    memory_limit_bytes: counters.memory_limit_bytes,
                    pids: counters.pids,
                    block_read_bytes: counters.block_read_bytes,
                    block_write_bytes: counters.block_write_bytes,
                    read_at_ns,
                }
            })
            .collect()
    })
    .await
    .map_err(|error| Status::internal(format!("reading the cgroups failed: {error}")))?;
    Ok(Response::new(api::StatsResponse { stats }))
}
