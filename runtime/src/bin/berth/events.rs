//! `berth events`: the log as berthd streams it (filtered by berthd), one event per line or one
//! JSON object per line in the shape `berth-replay events --json` prints, with who caused each
//! record.

use std::process::ExitCode;

use berth_log::{Seq, Timestamp};
use berth_projections::event_json::EventPlace;
use berth_projections::Origin;
use berth_runtime::api;
use berth_runtime::client::ClientError;

use crate::args::{EventsArgs, OutputFormat};
use crate::output::{format_rfc3339, print_stdout, stdout_still_open};
use crate::session::{CliError, Session};

pub async fn print_events(session: &Session, events_args: EventsArgs) -> Result<ExitCode, CliError> {
    // `since: 0` means "from now on" to berthd; without --follow that would print nothing,
    // so a bare `berth events` prints the whole log instead.
    let mut since = events_args.since.unwrap_or(if events_args.follow { 0 } else { 1 });
    let mut last_printed: Option<(u64, u32)> = None;
    loop {
        let error = match print_event_stream(session, &events_args, since, &mut last_printed).await {
            Ok(exit_code) => return Ok(exit_code),
            Err(error) => error,
        };
        if !events_args.follow || events_args.no_reconnect || !daemon_went_away(&error) {
            return Err(error);
        }
        // berthd stopped (or restarted) under a follower: wait until it is back and resume
        // right after the last event printed, so nothing is printed twice or skipped.
        eprintln!("berth: {error}; reconnecting (--no-reconnect ends instead)");
        if let Some((seq, _)) = last_printed {
            since = seq;
        }
        loop {
            tokio::time::sleep(RECONNECT_INTERVAL).await;
            match session.version().version(session.request(api::VersionRequest {})).await.map_err(session.rpc_error())
            {
                Ok(_) => break,
                Err(error) if daemon_went_away(&error) => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

/// How often a follower tries to reach berthd again while it is away.
const RECONNECT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Subscribes from `since` and prints until the stream ends, skipping events at or before
/// `last_printed` (a resumed subscription starts at that event's record again) and updating it.
async fn print_event_stream(
    session: &Session,
    events_args: &EventsArgs,
    since: u64,
    last_printed: &mut Option<(u64, u32)>,
) -> Result<ExitCode, CliError> {
    let namespace_filter = if events_args.all_namespaces { "*" } else { "" };
    let mut event_stream = session
        .events()
        .subscribe(session.request(api::SubscribeRequest {
            since,
            follow: events_args.follow,
            namespace: namespace_filter.to_string(),
            kinds: events_args.kinds.clone(),
            container: events_args.container.clone().unwrap_or_default(),
        }))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    while let Some(event) = event_stream.message().await.map_err(session.rpc_error())? {
        if last_printed.is_some_and(|printed| (event.seq, event.index) <= printed) {
            continue;
        }
        let line = match events_args.output.output {
            OutputFormat::Table => format_event_line(&event),
            OutputFormat::Json => event_json(&event).to_string(),
        };
        print_stdout(&format!("{line}\n"))?;
        *last_printed = Some((event.seq, event.index));
        if !stdout_still_open() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the error means berthd is not there (stopped, restarting, connection cut) rather
/// than that it refused the request.
fn daemon_went_away(error: &CliError) -> bool {
    match error {
        CliError::Client(ClientError::DaemonNotRunning { .. } | ClientError::Unavailable { .. }) => true,
        CliError::Client(ClientError::Connect { .. }) => true,
        CliError::Client(ClientError::Rpc(status)) => {
            matches!(status.code(), tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable)
        }
        _ => false,
    }
}

fn format_event_line(event: &api::Event) -> String {
    format!(
        "{}  {}  {}  {}  {}  {}",
        event.seq,
        format_rfc3339(event.timestamp_ns),
        event.namespace,
        event.kind,
        format_origin(event.origin.as_ref()),
        single_line_json(&event.json),
    )
}

/// The JSON shape both tools print (`berth_projections::event_json`), from the API's form.
fn event_json(event: &api::Event) -> serde_json::Value {
    let origin = event.origin.as_ref().map(|origin| {
        if origin.kind == "daemon" {
            Origin::Daemon {
                reason: origin.reason.clone(),
                answers: (origin.answers_seq != 0).then_some(Seq(origin.answers_seq)),
            }
        } else {
            Origin::Client {
                uid: origin.uid,
                gid: origin.gid,
                pid: origin.pid,
                method: origin.method.clone(),
                request_id: origin.request_id.clone(),
            }
        }
    });
    let fields = serde_json::from_str::<serde_json::Value>(&event.json)
        .unwrap_or_else(|_| serde_json::Value::String(event.json.clone()));
    let place = EventPlace {
        seq: Seq(event.seq),
        index: event.index as usize,
        // berthd sends no time before 1970: its stamps come from the log.
        timestamp: Timestamp::from_signed_ns(event.timestamp_ns).unwrap_or(Timestamp::UNIX_EPOCH),
        namespace: &event.namespace,
        origin: origin.as_ref(),
    };
    berth_projections::event_json::event_json(place, &event.kind, fields)
}

/// `uid=0 pid=123 Tasks/Start req=cli-123-4` for a client, `daemon answers=57` for berthd.
fn format_origin(origin: Option<&api::Origin>) -> String {
    let Some(origin) = origin else {
        return "-".to_string();
    };
    let mut parts = Vec::new();
    if origin.kind == "daemon" {
        parts.push("daemon".to_string());
        if origin.answers_seq != 0 {
            parts.push(format!("answers={}", origin.answers_seq));
        }
    } else {
        parts.push(format!("uid={}", origin.uid));
        parts.push(format!("pid={}", origin.pid));
        if !origin.method.is_empty() {
            parts.push(short_method(&origin.method).to_string());
        }
        if !origin.request_id.is_empty() {
            parts.push(format!("req={}", origin.request_id));
        }
    }
    if !origin.reason.is_empty() {
        parts.push(format!("reason={:?}", origin.reason));
    }
    parts.join(" ")
}

/// `/berth.v1.Tasks/Start` → `Tasks/Start`.
fn short_method(method: &str) -> &str {
    let method = method.strip_prefix('/').unwrap_or(method);
    method.strip_prefix("berth.v1.").unwrap_or(method)
}

/// Keeps one event per line even if berthd pretty-printed its JSON.
fn single_line_json(json_text: &str) -> String {
    if !json_text.contains('\n') {
        return json_text.to_string();
    }
    match serde_json::from_str::<serde_json::Value>(json_text) {
        Ok(value) => value.to_string(),
        Err(_) => json_text.replace('\n', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_read_like_the_examples() {
        let client_origin = api::Origin {
            kind: "client".to_string(),
            uid: 0,
            pid: 123,
            method: "/berth.v1.Tasks/Start".to_string(),
            request_id: "cli-123-4".to_string(),
            ..Default::default()
        };
        assert_eq!(format_origin(Some(&client_origin)), "uid=0 pid=123 Tasks/Start req=cli-123-4");
        let daemon_origin = api::Origin { kind: "daemon".to_string(), answers_seq: 57, ..Default::default() };
        assert_eq!(format_origin(Some(&daemon_origin)), "daemon answers=57");
        assert_eq!(format_origin(None), "-");
    }

    #[test]
    fn event_lines_keep_one_event_per_line() {
        let event = api::Event {
            seq: 42,
            index: 0,
            timestamp_ns: 0,
            namespace: "default".to_string(),
            origin: None,
            kind: "TaskStarted".to_string(),
            json: "{\n  \"pid\": 7\n}".to_string(),
        };
        assert_eq!(format_event_line(&event), "42  1970-01-01T00:00:00.000Z  default  TaskStarted  -  {\"pid\":7}");
        assert_eq!(event_json(&event)["fields"]["pid"], 7);
    }
}
