//! `Version`: what berthd is and how far its log goes.

use std::sync::Arc;

use berth_projections::EVENT_SCHEMA;
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::services::Services;

pub struct VersionService(pub Arc<Services>);

#[tonic::async_trait]
impl api::version_server::Version for VersionService {
    async fn version(&self, _request: Request<api::VersionRequest>) -> Result<Response<api::VersionResponse>, Status> {
        Ok(Response::new(api::VersionResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: option_env!("BERTH_REVISION").unwrap_or("dev").to_string(),
            log_seq: self.0.store.applied_seq().get(),
            event_schema: EVENT_SCHEMA as u32,
        }))
    }
}
