//! `Images/Push`: the adapter between the gRPC stream and `images::registry::push`. It finds
//! the local image and the repositories of the same registry it is known to be in (mount
//! sources, from earlier pulls and pushes), holds the garbage collector off while blobs are read,
//! forwards progress, and records `ImagePushed` only once the registry took the manifest.

use std::pin::Pin;
use std::sync::Arc;

use berth_commands::{image_not_found, resolve_image, Command, PushImage};
use berth_projections::Origin;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::image_pull::{credentials_of, status_from_registry_error, stream_progress};
use crate::api::services::Services;
use crate::images::registry::push::{push_image, PushBlobState, PushEnvironment, PushProgress, PushSpec};
use crate::images::registry::reference::Reference;

pub type PushStream = Pin<Box<dyn Stream<Item = Result<api::PushImageProgress, Status>> + Send>>;

/// The repositories on `target`'s registry, other than its own, that `known_references` name.
pub fn mount_sources(target: &Reference, known_references: &[String]) -> Vec<String> {
    let mut sources: Vec<String> = known_references
        .iter()
        .filter_map(|known| Reference::parse(known).ok())
        .filter(|known| known.domain == target.domain && known.repository != target.repository)
        .map(|known| known.repository)
        .collect();
    sources.dedup();
    sources
}

pub async fn push(
    services: &Arc<Services>,
    request: Request<api::PushImageRequest>,
) -> Result<Response<PushStream>, Status> {
    let (namespace, origin) = services.caller(&request, "Images/Push")?;
    let request = request.into_inner();
    let reference =
        Reference::parse(&request.reference).map_err(|error| Status::invalid_argument(error.to_string()))?;
    let local = if request.local.is_empty() { request.reference.clone() } else { request.local.clone() };
    let (image, known_references) = {
        let state = services.store.state();
        let found = resolve_image(&state, &namespace, &local)
            .or_else(|| resolve_image(&state, &namespace, &reference.image_name()))
            .ok_or_else(|| crate::api::status_from_command_error(image_not_found(&state, &namespace, &local)))?;
        (found.record.clone(), found.known_references.clone())
    };
    let spec = PushSpec {
        mount_sources: mount_sources(&reference, &known_references),
        reference,
        plain_http: request.plain_http,
        credentials: credentials_of(request.credentials),
        image,
    };
    let services = Arc::clone(services);
    Ok(Response::new(stream_progress(
        |client| async move { run_push(&services, &namespace, origin, spec, &client).await },
    )))
}

async fn run_push(
    services: &Arc<Services>,
    namespace: &str,
    origin: Origin,
    spec: PushSpec,
    client: &mpsc::Sender<Result<api::PushImageProgress, Status>>,
) -> Result<(), Status> {
    // The image's blobs are read from the content store: nothing may collect them meanwhile.
    let _push_guard = services.gc_lock.read().await;
    let environment = PushEnvironment {
        content: Arc::clone(&services.content),
        hosts_config_dir: services.registry_hosts_dir.clone(),
    };
    let (name, reference_text) = (spec.image.name.clone(), spec.reference.to_string());
    let (event_sender, mut events) = mpsc::channel(64);
    let push = push_image(&environment, spec, event_sender);
    tokio::pin!(push);
    let pushed = loop {
        tokio::select! {
            biased;
            Some(progress) = events.recv() => {
                if client.send(Ok(progress_message(&progress))).await.is_err() {
                    tracing::info!(reference = %reference_text, "the client went away; the push stops");
                    return Ok(());
                }
            }
            result = &mut push => break result,
            _ = client.closed() => {
                tracing::info!(reference = %reference_text, "the client went away; the push stops");
                return Ok(());
            }
        }
    };
    let pushed = pushed.map_err(|error| status_from_registry_error(&error))?;
    while let Ok(progress) = events.try_recv() {
        let _ = client.send(Ok(progress_message(&progress))).await;
    }
    let command = Command::PushImage(PushImage {
        name,
        reference: reference_text.clone(),
        pushed_to: pushed.pushed_to.clone(),
        manifest_digest: pushed.manifest_digest.clone(),
        uploaded_blobs: pushed.uploaded_blobs,
        uploaded_bytes: pushed.uploaded_bytes,
        existing_blobs: pushed.existing_blobs,
        mounted_blobs: pushed.mounted_blobs,
    });
    let seq = services.submit(namespace, origin, command).await?;
    let result = api::PushImageResult {
        seq: seq.get(),
        reference: reference_text,
        pushed_to: pushed.pushed_to,
        manifest_digest: pushed.manifest_digest,
        uploaded_blobs: pushed.uploaded_blobs,
        uploaded_bytes: pushed.uploaded_bytes as i64,
        existing_blobs: pushed.existing_blobs,
        mounted_blobs: pushed.mounted_blobs,
    };
    let _ = client.send(Ok(api::PushImageProgress { result: Some(result), ..Default::default() })).await;
    Ok(())
}

fn progress_message(progress: &PushProgress) -> api::PushImageProgress {
    use api::push_image_progress::BlobState as Wire;
    let state = match progress.state {
        PushBlobState::AlreadyThere => Wire::AlreadyThere,
        PushBlobState::Uploading => Wire::Uploading,
        PushBlobState::Uploaded => Wire::Uploaded,
        PushBlobState::Mounted => Wire::Mounted,
    };
    api::PushImageProgress {
        digest: progress.digest.clone(),
        media_type: progress.media_type.clone(),
        total_bytes: progress.total_bytes as i64,
        done_bytes: progress.done_bytes as i64,
        state: state as i32,
        result: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_sources_are_other_repositories_of_the_same_registry() {
        let target = Reference::parse("127.0.0.1:5000/team/app:2").unwrap();
        let known = [
            "127.0.0.1:5000/team/app:1".to_string(),
            "127.0.0.1:5000/other/app:1".to_string(),
            "127.0.0.1:5001/elsewhere:1".to_string(),
            "docker.io/library/busybox:latest".to_string(),
        ];
        assert_eq!(mount_sources(&target, &known), ["other/app"]);
    }
}
