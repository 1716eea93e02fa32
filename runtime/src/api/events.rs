//! `Events/Subscribe`: the log itself, from any seq, optionally followed as it grows, filtered
//! here by namespace, kind and container so a narrow follower is not sent the whole log.

use std::pin::Pin;
use std::sync::Arc;

use berth_log::Seq;
use berth_projections::event_json::EventSelector;
use berth_projections::Envelope;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::convert::event_messages;
use crate::api::services::Services;
use crate::daemon::store::Store;

pub struct EventsService(pub Arc<Services>);

type EventStream = Pin<Box<dyn Stream<Item = Result<api::Event, Status>> + Send>>;

#[tonic::async_trait]
impl api::events_server::Events for EventsService {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<api::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let (namespace, _) = self.0.caller(&request, "Events/Subscribe")?;
        let message = request.into_inner();
        let filter = match message.namespace.as_str() {
            "" => Some(namespace),
            "*" => None,
            other => Some(other.to_string()),
        };
        let selector =
            EventSelector::new(&message.kinds, Some(message.container.clone())).map_err(Status::invalid_argument)?;
        let store = Arc::clone(&self.0.store);
        let since = if message.since == 0 { store.applied_seq().next() } else { Seq(message.since) };
        let (sender, receiver) = mpsc::channel(256);
        tokio::spawn(stream_events(store, since, message.follow, (filter, selector), sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Reads the log from `since`, then (with `follow`) waits for each newly applied record.
async fn stream_events(
    store: Arc<Store>,
    since: Seq,
    follow: bool,
    (namespace, selector): (Option<String>, EventSelector),
    sender: mpsc::Sender<Result<api::Event, Status>>,
) {
    let mut reader = match store.log().reader(since) {
        Ok(reader) => reader,
        Err(error) => {
            let _ = sender.send(Err(Status::internal(format!("cannot read the log: {error}")))).await;
            return;
        }
    };
    // Counted (with how far it has read) for the metrics endpoint while the stream lives.
    let subscriber = store.counters().subscribers.register(since.get().saturating_sub(1));
    let mut applied = store.watch_applied();
    let stopping = store.stopping();
    tokio::pin!(stopping);
    loop {
        // Drain what is durable now, in small synchronous steps (the map reads do not block).
        let mut batch = Vec::new();
        while batch.len() < 256 {
            match reader.next_owned() {
                Some(Ok(record)) => batch.push(record),
                Some(Err(error)) => {
                    let _ = sender.send(Err(Status::internal(format!("cannot read the log: {error}")))).await;
                    return;
                }
                None => break,
            }
        }
        let drained = batch.len() < 256;
        for record in batch {
            let envelope = match Envelope::decode(&record.payload) {
                Ok(envelope) => envelope,
                Err(error) => {
                    let _ = sender.send(Err(Status::internal(format!("record {}: {error}", record.seq)))).await;
                    return;
                }
            };
            if namespace.as_ref().is_some_and(|wanted| *wanted != envelope.namespace) {
                continue;
            }
            for message in event_messages(record.seq, record.timestamp, &envelope, &selector) {
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        }
        subscriber.read_through(reader.position().get().saturating_sub(1));
        if drained {
            if !follow {
                return;
            }
            tokio::select! {
                // A client gone while nothing is recorded would otherwise keep this task (and
                // its place among the subscribers) until the next record.
                () = sender.closed() => return,
                changed = applied.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = &mut stopping => {
                    // Ending the stream lets the server finish its graceful shutdown; the
                    // status tells a follower where to resume.
                    let next = reader.position();
                    let _ = sender.send(Err(stopping_status(next))).await;
                    return;
                }
            }
        }
    }
}

/// What a follower gets when berthd stops under it: UNAVAILABLE, so clients know to retry, and
/// the seq to resume from.
fn stopping_status(next: Seq) -> Status {
    Status::unavailable(format!("berthd is stopping: reconnect when it is back and resume with --since {next}"))
}
