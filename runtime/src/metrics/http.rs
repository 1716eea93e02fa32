//! The metrics endpoint: HTTP/1.1 on a TCP listener, `GET /metrics` answered with the registry
//! encoded in the OpenMetrics text format. Each scrape is encoded on a blocking thread (it reads
//! cgroup files), at most two at once; connections beyond `MAX_CONNECTIONS` are closed unread,
//! and one that sends no complete request head within `HEADER_TIMEOUT` is dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What Prometheus is told the body is.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Open connections served at once; more are closed as they come.
const MAX_CONNECTIONS: usize = 64;
/// Scrapes encoded at once.
const MAX_SCRAPES: usize = 2;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the metrics listener; the error says what to do about a port already taken.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(address).await.map_err(|error| {
        let hint = if error.kind() == std::io::ErrorKind::AddrInUse {
            "another berthd or another program listens there: stop it, or give this berthd another --metrics-address ([metrics] address)"
        } else {
            "give another --metrics-address ([metrics] address), or leave it unset to serve no metrics"
        };
        format!("cannot serve metrics on {address}: {error}; {hint}")
    })
}

/// Serves `registry` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let scrapes = Arc::new(Semaphore::new(MAX_SCRAPES));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, say: wait a little rather than spin.
                tracing::warn!(%error, "accepting a metrics connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::debug!(%peer, "too many metrics connections open; closing this one");
            continue;
        };
        let registry = Arc::clone(&registry);
        let scrapes = Arc::clone(&scrapes);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| answer(request, Arc::clone(&registry), Arc::clone(&scrapes)));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "metrics connection ended with an error");
            }
            drop(permit);
        });
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    response
}

async fn answer(
    request: Request<Incoming>,
    registry: Arc<Registry>,
    scrapes: Arc<Semaphore>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/metrics" {
        return Ok(plain(StatusCode::NOT_FOUND, "not found: berthd serves its metrics at /metrics"));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: scrape /metrics with GET");
        response.headers_mut().insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    let Ok(_permit) = scrapes.acquire_owned().await else {
        return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "berthd is stopping"));
    };
    let encoded = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).map(|()| text)
    })
    .await;
    match encoded {
        Ok(Ok(text)) => {
            let body = if request.method() == Method::HEAD { Bytes::new() } else { Bytes::from(text) };
            let mut response = Response::new(Full::new(body));
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(CONTENT_TYPE));
            Ok(response)
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "encoding the metrics failed");
            Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics failed: see berthd's log"))
        }
        Err(error) => {
            tracing::error!(%error, "collecting the metrics failed");
            Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, "collecting the metrics failed: see berthd's log"))
        }
    }
}
