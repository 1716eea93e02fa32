//! `Images`: import an archive (the work is `images::import`), list, get and remove images.

use std::sync::Arc;

use berth_commands::{Command, ImportImage, RemoveImage};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::api;
use crate::api::convert::image_message;
use crate::api::paging::page;
use crate::api::services::{status_from_command_error, Services};
use crate::images::import::import_spooled_archive;

pub struct ImagesService(pub Arc<Services>);

#[tonic::async_trait]
impl api::images_server::Images for ImagesService {
    async fn import(
        &self,
        request: Request<Streaming<api::ImportChunk>>,
    ) -> Result<Response<api::ImportResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Images/Import")?;
        let mut stream = request.into_inner();
        // Spool the archive to disk first: the import reads it as a plain file.
        let spool = self.0.content.spool_path("import");
        let mut spool_file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(crate::sys::fs::PRIVATE_FILE_MODE)
            .open(spool.path())
            .await
            .map_err(|error| Status::internal(format!("cannot spool the archive: {error}")))?;
        let mut name = None;
        let mut first = true;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if first {
                name = Some(chunk.name.clone()).filter(|name| !name.is_empty());
                first = false;
            }
            spool_file
                .write_all(&chunk.data)
                .await
                .map_err(|error| Status::internal(format!("cannot spool the archive: {error}")))?;
        }
        spool_file.flush().await.map_err(|error| Status::internal(format!("cannot spool the archive: {error}")))?;
        drop(spool_file);

        // From the first blob written until the record saying it exists is durable.
        let _import_guard = self.0.gc_lock.read().await;
        let services = Arc::clone(&self.0);
        let imported = tokio::task::spawn_blocking(move || {
            import_spooled_archive(&services.content, &services.snapshotter, spool.path(), name.as_deref())
        })
        .await
        .map_err(|error| Status::internal(error.to_string()))?
        .map_err(|failure| match failure.is_bad_input() {
            true => Status::invalid_argument(failure.to_string()),
            false => Status::internal(failure.to_string()),
        })?;
        let names: Vec<String> = imported.images.iter().map(|image| image.name.clone()).collect();
        let command = Command::ImportImage(ImportImage { images: imported.images, blobs: imported.blobs });
        let seq = self.0.submit(&namespace, origin, command).await?;
        let state = self.0.store.state();
        let images = names.iter().filter_map(|name| state.image(&namespace, name)).map(image_message).collect();
        Ok(Response::new(api::ImportResponse { images, seq: seq.get() }))
    }

    async fn list(
        &self,
        request: Request<api::ListImagesRequest>,
    ) -> Result<Response<api::ListImagesResponse>, Status> {
        let (namespace, _) = self.0.caller(&request, "Images/List")?;
        let request = request.into_inner();
        let state = self.0.store.state();
        let (images, next_page_token) = state
            .namespace(&namespace)
            .map(|ns| page(&ns.images, request.page_size, &request.page_token, |image| Some(image_message(image))))
            .unwrap_or_default();
        Ok(Response::new(api::ListImagesResponse { images, next_page_token }))
    }

    async fn get(&self, request: Request<api::GetImageRequest>) -> Result<Response<api::Image>, Status> {
        let (namespace, _) = self.0.caller(&request, "Images/Get")?;
        let name = request.into_inner().name;
        let state = self.0.store.state();
        berth_commands::resolve_image(&state, &namespace, &name)
            .map(|image| Response::new(image_message(image)))
            .ok_or_else(|| status_from_command_error(berth_commands::image_not_found(&state, &namespace, &name)))
    }

    type PullStream = crate::api::image_pull::PullStream;

    async fn pull(&self, request: Request<api::PullImageRequest>) -> Result<Response<Self::PullStream>, Status> {
        crate::api::image_pull::pull(&self.0, request).await
    }

    type PushStream = crate::api::image_push::PushStream;

    async fn push(&self, request: Request<api::PushImageRequest>) -> Result<Response<Self::PushStream>, Status> {
        crate::api::image_push::push(&self.0, request).await
    }

    async fn check_registry_login(
        &self,
        request: Request<api::CheckRegistryLoginRequest>,
    ) -> Result<Response<api::CheckRegistryLoginResponse>, Status> {
        crate::api::image_pull::check_registry_login(&self.0, request).await
    }

    async fn remove(
        &self,
        request: Request<api::RemoveImageRequest>,
    ) -> Result<Response<api::RemoveImageResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Images/Remove")?;
        let command = Command::RemoveImage(RemoveImage { name: request.into_inner().name });
        let seq = self.0.submit(&namespace, origin, command).await?;
        Ok(Response::new(api::RemoveImageResponse { seq: seq.get() }))
    }
}
