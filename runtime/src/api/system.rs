//! `System`: what berth keeps on disk (`system df`). The projections are read under the state
//! lock; the walk (`daemon::disk_usage`) runs after it, on a blocking thread.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::api;
use crate::api::services::Services;
use crate::daemon::disk_usage::{measure, ReferencedView};

pub struct SystemService(pub Arc<Services>);

#[tonic::async_trait]
impl api::system_server::System for SystemService {
    async fn disk_usage(
        &self,
        request: Request<api::DiskUsageRequest>,
    ) -> Result<Response<api::DiskUsageResponse>, Status> {
        self.0.caller(&request, "System/DiskUsage")?;
        let view = ReferencedView::of(&self.0.store.state());
        let layout = self.0.layout.clone();
        let lines = tokio::task::spawn_blocking(move || measure(&layout, &view))
            .await
            .map_err(|error| Status::internal(error.to_string()))?
            .map_err(|error| Status::internal(format!("cannot measure berth's root: {error}")))?;
        let entries = lines
            .into_iter()
            .map(|line| api::DiskUsageEntry {
                kind: line.kind.to_string(),
                count: line.count,
                disk_bytes: line.disk_bytes,
                reclaimable_count: line.reclaimable_count,
                reclaimable_disk_bytes: line.reclaimable_disk_bytes,
                path: line.path.display().to_string(),
            })
            .collect();
        Ok(Response::new(api::DiskUsageResponse { entries }))
    }
}
