//! `Namespaces`: create, list and remove namespaces.

use std::sync::Arc;

use berth_commands::{Command, CreateNamespace, RemoveNamespace};
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::services::Services;

pub struct NamespacesService(pub Arc<Services>);

#[tonic::async_trait]
impl api::namespaces_server::Namespaces for NamespacesService {
    async fn create(
        &self,
        request: Request<api::CreateNamespaceRequest>,
    ) -> Result<Response<api::CreateNamespaceResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Namespaces/Create")?;
        let message = request.into_inner();
        let command = Command::CreateNamespace(CreateNamespace {
            name: message.name,
            labels: message.labels.into_iter().collect(),
        });
        let seq = self.0.submit(&namespace, origin, command).await?;
        Ok(Response::new(api::CreateNamespaceResponse { seq: seq.get() }))
    }

    async fn list(
        &self,
        _request: Request<api::ListNamespacesRequest>,
    ) -> Result<Response<api::ListNamespacesResponse>, Status> {
        let state = self.0.store.state();
        let namespaces = state
            .namespaces
            .iter()
            .map(|(name, namespace)| api::Namespace {
                name: name.clone(),
                labels: namespace.labels.clone().into_iter().collect(),
                created_seq: namespace.created_seq.get(),
            })
            .collect();
        Ok(Response::new(api::ListNamespacesResponse { namespaces }))
    }

    async fn remove(
        &self,
        request: Request<api::RemoveNamespaceRequest>,
    ) -> Result<Response<api::RemoveNamespaceResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Namespaces/Remove")?;
        let command = Command::RemoveNamespace(RemoveNamespace { name: request.into_inner().name });
        let seq = self.0.submit(&namespace, origin, command).await?;
        Ok(Response::new(api::RemoveNamespaceResponse { seq: seq.get() }))
    }
}
