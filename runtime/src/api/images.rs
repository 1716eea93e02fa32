//! `Images`: import an archive (the work is `images::import`), export images
//! (`images::archive::export`), list, get, inspect, tag, remove and prune images.

use std::sync::Arc;

use berth_commands::{Command, ImportImage, PruneImages, RemoveImage, TagImage};
use berth_projections::{Event, ImageRecord};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::api;
use crate::api::convert::image_message;
use crate::api::paging::page;
use crate::api::services::{status_from_command_error, Services};
use crate::images::archive::export::{write_oci_archive, ExportImage};
use crate::images::archive::{BlobRef, ImportOptions};
use crate::images::import::import_archive_stream;
use crate::images::platform::PlatformSpec;
use crate::sys::io::ChannelReader;

/// Size of the pieces an export is streamed in.
const EXPORT_CHUNK_BYTES: usize = 1024 * 1024;

pub struct ImagesService(pub Arc<Services>);

#[tonic::async_trait]
impl api::images_server::Images for ImagesService {
    async fn import(
        &self,
        request: Request<Streaming<api::ImportChunk>>,
    ) -> Result<Response<api::ImportResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Images/Import")?;
        let mut stream = request.into_inner();
        // The first message carries the options; its data is the archive's first piece.
        let first = stream.next().await.transpose()?.unwrap_or_default();
        let options = ImportOptions {
            name: Some(first.name.clone()).filter(|name| !name.is_empty()),
            platform: match first.platform.as_str() {
                "" => None,
                text => Some(PlatformSpec::parse(text).map_err(|error| Status::invalid_argument(error.to_string()))?),
            },
        };
        let source_label = match first.source_label.as_str() {
            "" => "the uploaded archive".to_string(),
            label => berth_commands::validate::shown(label),
        };

        // From the first blob written until the record saying it exists is durable.
        let _import_guard = self.0.gc_lock.read().await;
        // The archive is read as it arrives: pieces go through a short channel to the blocking
        // reader, so at most a few pieces are in memory and nothing is spooled.
        let (piece_sender, piece_receiver) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
        let services = Arc::clone(&self.0);
        let importer = tokio::task::spawn_blocking(move || {
            let archive = ChannelReader::new(piece_receiver);
            import_archive_stream(&services.content, &services.snapshotter, archive, &source_label, &options)
        });
        let mut upload_error = None;
        let mut next_piece = Some(first.data);
        while let Some(piece) = next_piece.take() {
            if piece_sender.send(Ok(piece)).await.is_err() {
                break; // the importer stopped early (an error); its result says why
            }
            match stream.next().await {
                Some(Ok(chunk)) => next_piece = Some(chunk.data),
                Some(Err(status)) => {
                    let reason = format!("the upload broke off: {}", status.message());
                    let _ = piece_sender.send(Err(std::io::Error::other(reason))).await;
                    upload_error = Some(status);
                }
                None => {}
            }
        }
        drop(piece_sender);
        let imported = importer.await.map_err(|error| Status::internal(error.to_string()))?;
        if let Some(status) = upload_error {
            return Err(status);
        }
        let imported = imported.map_err(|failure| match failure.is_bad_input() {
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

    type ExportStream = tokio_stream::wrappers::ReceiverStream<Result<api::ExportChunk, Status>>;

    async fn export(&self, request: Request<api::ExportImagesRequest>) -> Result<Response<Self::ExportStream>, Status> {
        let (namespace, _) = self.0.caller(&request, "Images/Export")?;
        let names = request.into_inner().names;
        if names.is_empty() {
            return Err(Status::invalid_argument("name at least one image to export"));
        }
        let export_images = {
            let state = self.0.store.state();
            let mut export_images = Vec::with_capacity(names.len());
            for name in &names {
                let image = berth_commands::resolve_image(&state, &namespace, name).ok_or_else(|| {
                    status_from_command_error(berth_commands::image_not_found(&state, &namespace, name))
                })?;
                export_images.push(export_image(&image.record));
            }
            export_images
        };
        // Held while blobs are read, so a collection cannot delete them under the export.
        let gc_guard = Arc::clone(&self.0.gc_lock).read_owned().await;
        let (chunk_sender, chunk_receiver) = tokio::sync::mpsc::channel(4);
        let services = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let _gc_guard = gc_guard;
            let writer = ChunkWriter { sender: chunk_sender.clone(), buffer: Vec::with_capacity(EXPORT_CHUNK_BYTES) };
            if let Err(error) = write_oci_archive(&services.content, &export_images, writer) {
                let _ = chunk_sender.blocking_send(Err(Status::internal(error.to_string())));
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(chunk_receiver)))
    }

    async fn tag(&self, request: Request<api::TagImageRequest>) -> Result<Response<api::TagImageResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Images/Tag")?;
        let request = request.into_inner();
        let command = Command::TagImage(TagImage { source: request.source, target: request.target.clone() });
        let seq = self.0.submit(&namespace, origin, command).await?;
        let state = self.0.store.state();
        let image = berth_commands::resolve_image(&state, &namespace, &request.target).map(image_message);
        Ok(Response::new(api::TagImageResponse { image, seq: seq.get() }))
    }

    async fn inspect(
        &self,
        request: Request<api::InspectImageRequest>,
    ) -> Result<Response<api::InspectImageResponse>, Status> {
        let (namespace, _) = self.0.caller(&request, "Images/Inspect")?;
        let name = request.into_inner().name;
        let image = {
            let state = self.0.store.state();
            berth_commands::resolve_image(&state, &namespace, &name)
                .map(image_message)
                .ok_or_else(|| status_from_command_error(berth_commands::image_not_found(&state, &namespace, &name)))?
        };
        let services = Arc::clone(&self.0);
        let (manifest_digest, config_digest) = (image.digest.clone(), image.config_digest.clone());
        let (manifest, config) = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::images::content::ContentError>((
                services.content.read_all(&manifest_digest)?,
                services.content.read_all(&config_digest)?,
            ))
        })
        .await
        .map_err(|error| Status::internal(error.to_string()))?
        .map_err(|error| Status::internal(error.to_string()))?;
        Ok(Response::new(api::InspectImageResponse { image: Some(image), manifest, config }))
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

    async fn prune(
        &self,
        request: Request<api::PruneImagesRequest>,
    ) -> Result<Response<api::PruneImagesResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Images/Prune")?;
        let command = PruneImages { all_unused: request.into_inner().all_unused };
        // Exclusive while the dangling set is decided and recorded: a pull or import holds the
        // lock shared from its first blob until its image is recorded, and its blobs must not
        // look dangling in between. The deletions wait for this guard too.
        let _exclusive = self.0.gc_lock.write().await;
        let recorded_sizes: std::collections::HashMap<String, i64> = {
            let state = self.0.store.state();
            let preview = command.decide(&state, &namespace).map_err(status_from_command_error)?;
            if preview.is_empty() {
                return Ok(Response::new(api::PruneImagesResponse::default()));
            }
            preview
                .iter()
                .filter_map(|event| match event {
                    Event::ContentRemoved { digest } => {
                        state.content.get(digest).map(|content| (digest.clone(), content.size))
                    }
                    _ => None,
                })
                .collect()
        };
        let record = self.0.submit_for_record(&namespace, origin, Command::PruneImages(command)).await?;
        let mut response = api::PruneImagesResponse { seq: record.seq.get(), ..Default::default() };
        for event in &record.envelope.events {
            match event {
                Event::ImageRemoved { name } => response.images_removed.push(name.clone()),
                Event::ContentRemoved { digest } => {
                    // The size each blob was recorded with, read before the record removed it.
                    response.blob_bytes_removed += recorded_sizes.get(digest).copied().unwrap_or(0);
                    response.blobs_removed.push(digest.clone());
                }
                Event::SnapshotRemoved { chain_id } => response.snapshots_removed.push(chain_id.clone()),
                _ => {}
            }
        }
        Ok(Response::new(response))
    }
}

fn blob_ref(descriptor: &berth_projections::Descriptor) -> BlobRef {
    BlobRef { digest: descriptor.digest.clone(), size: descriptor.size, media_type: descriptor.media_type.clone() }
}

/// What an export writes for one image: its manifest, config and layers.
fn export_image(record: &ImageRecord) -> ExportImage {
    let mut blobs = vec![blob_ref(&record.manifest), blob_ref(&record.config)];
    blobs.extend(record.layers.iter().map(|layer| blob_ref(&layer.blob)));
    ExportImage { name: record.name.clone(), manifest: blob_ref(&record.manifest), blobs }
}

/// A blocking writer that sends what it is given as `ExportChunk`s of `EXPORT_CHUNK_BYTES`; a
/// client that went away shows as a broken pipe, which ends the export.
struct ChunkWriter {
    sender: tokio::sync::mpsc::Sender<Result<api::ExportChunk, Status>>,
    buffer: Vec<u8>,
}

impl ChunkWriter {
    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(EXPORT_CHUNK_BYTES));
        self.sender
            .blocking_send(Ok(api::ExportChunk { data }))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client stopped reading the export"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n_taken = bytes.len().min(EXPORT_CHUNK_BYTES - self.buffer.len());
        self.buffer.extend_from_slice(&bytes[..n_taken]);
        if self.buffer.len() == EXPORT_CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(n_taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffer()
    }
}
