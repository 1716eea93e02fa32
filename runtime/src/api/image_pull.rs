//! `Images/Pull` and `Images/CheckRegistryLogin`: the adapter between the gRPC stream and
//! `images::registry::pull`. It holds the garbage collector off for the whole pull, records each
//! verified blob as the pull asks, forwards progress, and records the image with where it came
//! from at the end. A client that goes away ends the pull (what was recorded stays for the next).

use std::pin::Pin;
use std::sync::Arc;

use berth_commands::{Command, PullImage, PullProvenance, RecordPulledBlobs};
use berth_projections::Origin;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::convert::image_message;
use crate::api::services::Services;
use crate::images::platform::PlatformSpec;
use crate::images::registry::auth::Credentials;
use crate::images::registry::client::RegistryClient;
use crate::images::registry::hosts::registry_endpoints;
use crate::images::registry::pull::{pull_image, BlobState, PullEnvironment, PullEvent, PullSpec};
use crate::images::registry::reference::{normalise_registry_host, Reference};
use crate::images::registry::{RegistryError, RegistryErrorKind};

pub type PullStream = Pin<Box<dyn Stream<Item = Result<api::PullImageProgress, Status>> + Send>>;

pub(crate) fn status_from_registry_error(error: &RegistryError) -> Status {
    let message = error.to_string();
    match error.kind() {
        RegistryErrorKind::BadRequest => Status::invalid_argument(message),
        RegistryErrorKind::NotFound => Status::not_found(message),
        RegistryErrorKind::Unauthenticated => Status::unauthenticated(message),
        RegistryErrorKind::PermissionDenied => Status::permission_denied(message),
        // Not UNAVAILABLE: clients read that as berthd itself being unreachable.
        RegistryErrorKind::Unreachable => Status::failed_precondition(message),
        RegistryErrorKind::BadRegistry => Status::failed_precondition(message),
        RegistryErrorKind::Host => Status::internal(message),
    }
}

pub(crate) fn credentials_of(message: Option<api::RegistryCredentials>) -> Option<Credentials> {
    message
        .filter(|credentials| !credentials.username.is_empty() || !credentials.password.is_empty())
        .map(|credentials| Credentials { username: credentials.username, password: credentials.password })
}

pub async fn pull(
    services: &Arc<Services>,
    request: Request<api::PullImageRequest>,
) -> Result<Response<PullStream>, Status> {
    let (namespace, origin) = services.caller(&request, "Images/Pull")?;
    let request = request.into_inner();
    let reference =
        Reference::parse(&request.reference).map_err(|error| Status::invalid_argument(error.to_string()))?;
    let platform = match request.platform.as_str() {
        "" => PlatformSpec::host(),
        given => PlatformSpec::parse(given).map_err(|error| Status::invalid_argument(error.to_string()))?,
    };
    let spec = PullSpec {
        reference,
        platform,
        plain_http: request.plain_http,
        credentials: credentials_of(request.credentials),
    };
    let services = Arc::clone(services);
    Ok(Response::new(stream_progress(
        |client| async move { run_pull(&services, &namespace, origin, spec, &client).await },
    )))
}

/// Runs a pull's or push's `work` on a task of its own and streams the progress it sends to the
/// client; the error it ends with, if any, is the stream's last message.
pub(crate) fn stream_progress<T, Work, Running>(work: Work) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>
where
    T: Send + 'static,
    Work: FnOnce(mpsc::Sender<Result<T, Status>>) -> Running,
    Running: std::future::Future<Output = Result<(), Status>> + Send + 'static,
{
    let (progress_sender, progress_receiver) = mpsc::channel(64);
    let running = work(progress_sender.clone());
    tokio::spawn(async move {
        if let Err(status) = running.await {
            let _ = progress_sender.send(Err(status)).await;
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(progress_receiver))
}

async fn run_pull(
    services: &Arc<Services>,
    namespace: &str,
    origin: Origin,
    spec: PullSpec,
    client: &mpsc::Sender<Result<api::PullImageProgress, Status>>,
) -> Result<(), Status> {
    // From the first blob written until the record naming the image is durable.
    let _pull_guard = services.gc_lock.read().await;
    let environment = PullEnvironment {
        content: Arc::clone(&services.content),
        snapshotter: Arc::clone(&services.snapshotter),
        hosts_config_dir: services.registry_hosts_dir.clone(),
    };
    let reference_text = spec.reference.to_string();
    let (event_sender, mut events) = mpsc::channel(64);
    let pull = pull_image(&environment, spec, event_sender);
    tokio::pin!(pull);
    let pulled = loop {
        tokio::select! {
            biased;
            Some(event) = events.recv() => match event {
                PullEvent::Progress(progress) => {
                    if client.send(Ok(progress_message(&progress))).await.is_err() {
                        tracing::info!(reference = %reference_text, "the client went away; the pull stops");
                        return Ok(());
                    }
                }
                PullEvent::Record { blobs, reply } => {
                    // Decided apart first: the state's read lock must not be held across the submit.
                    let nothing_new = (RecordPulledBlobs { blobs: blobs.clone() })
                        .decide(&services.store.state())
                        .is_ok_and(|events| events.is_empty());
                    let outcome = match nothing_new {
                        true => Ok(()),
                        false => services
                            .submit(namespace, origin.clone(), Command::RecordPulledBlobs(RecordPulledBlobs { blobs }))
                            .await
                            .map(|_| ())
                            .map_err(|status| status.message().to_string()),
                    };
                    let _ = reply.send(outcome);
                }
            },
            result = &mut pull => break result,
            _ = client.closed() => {
                tracing::info!(reference = %reference_text, "the client went away; the pull stops");
                return Ok(());
            }
        }
    };
    let pulled = pulled.map_err(|error| status_from_registry_error(&error))?;
    while let Ok(event) = events.try_recv() {
        if let PullEvent::Progress(progress) = event {
            let _ = client.send(Ok(progress_message(&progress))).await;
        }
    }
    let name = pulled.image.name.clone();
    let command = Command::PullImage(PullImage {
        image: pulled.image,
        blobs: pulled.blobs,
        provenance: PullProvenance {
            reference: reference_text,
            served_by: pulled.served_by.clone(),
            manifest_digest: pulled.manifest_digest,
            platform: pulled.platform.clone(),
        },
    });
    let seq = services.submit(namespace, origin, command).await?;
    let image = services.store.state().image(namespace, &name).map(image_message);
    let result = api::PullImageResult {
        image,
        seq: seq.get(),
        served_by: pulled.served_by,
        platform: pulled.platform,
        fetched_bytes: pulled.fetched_bytes as i64,
        fetched_blobs: pulled.fetched_blobs,
    };
    let _ = client.send(Ok(api::PullImageProgress { result: Some(result), ..Default::default() })).await;
    Ok(())
}

fn progress_message(progress: &crate::images::registry::pull::BlobProgress) -> api::PullImageProgress {
    use api::pull_image_progress::BlobState as Wire;
    let state = match progress.state {
        BlobState::Waiting => Wire::Waiting,
        BlobState::Downloading => Wire::Downloading,
        BlobState::Downloaded => Wire::Downloaded,
        BlobState::AlreadyPresent => Wire::AlreadyPresent,
        BlobState::Unpacked => Wire::Unpacked,
    };
    api::PullImageProgress {
        digest: progress.digest.clone(),
        media_type: progress.media_type.clone(),
        total_bytes: progress.total_bytes as i64,
        done_bytes: progress.done_bytes as i64,
        state: state as i32,
        result: None,
    }
}

/// A GET of `/v2/` with the credentials, through the first endpoint that answers.
pub async fn check_registry_login(
    services: &Arc<Services>,
    request: Request<api::CheckRegistryLoginRequest>,
) -> Result<Response<api::CheckRegistryLoginResponse>, Status> {
    services.caller(&request, "Images/CheckRegistryLogin")?;
    let request = request.into_inner();
    let host = normalise_registry_host(&request.host).ok_or_else(|| {
        Status::invalid_argument(format!(
            "{} is not a registry host; give HOST[:PORT], e.g. docker.io or 127.0.0.1:5000",
            berth_commands::validate::shown(&request.host)
        ))
    })?;
    let credentials = credentials_of(request.credentials);
    if credentials.is_none() {
        return Err(Status::invalid_argument("no credentials given: pass a user name and a password"));
    }
    let endpoints = registry_endpoints(&services.registry_hosts_dir, &host, request.plain_http)
        .map_err(|error| status_from_registry_error(&error.into()))?;
    let server = endpoints.into_iter().last().expect("the registry itself is always an endpoint");
    let client = RegistryClient::new(server, &host, "", credentials, Default::default())
        .map_err(|error| status_from_registry_error(&error))?;
    let url = client.url("");
    let response =
        client.send(reqwest::Method::GET, &url, &[]).await.map_err(|error| status_from_registry_error(&error))?;
    if !response.status().is_success() {
        let error = RegistryError::Status {
            endpoint: client.endpoint.base_url.clone(),
            url,
            status: response.status().as_u16(),
        };
        return Err(status_from_registry_error(&error));
    }
    Ok(Response::new(api::CheckRegistryLoginResponse { endpoint: client.endpoint.base_url.clone() }))
}
