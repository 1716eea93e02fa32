//! Turning records, events and states into text lines and JSON objects. Pure functions of
//! their inputs, so every output format is unit-testable and deterministic.

use std::io::Write;

use berth_projections::event_json::EventPlace;
use berth_projections::names::{short_digest, signal_name};
use berth_projections::{ContainerState, Envelope, Event, ExitCause, Origin, PendingIntent, State, TaskState};
use serde_json::{json, Value};

use crate::error::ReplayError;
use crate::fold::RecordStamp;
use crate::secrets::KeyDir;
use crate::time::format_event_time;

/// How namespace "" (host-wide records such as `DaemonStarted`) is shown in text.
pub const HOST_WIDE_NAMESPACE: &str = "-";

pub fn namespace_label(namespace: &str) -> &str {
    if namespace.is_empty() {
        HOST_WIDE_NAMESPACE
    } else {
        namespace
    }
}

/// `1 layer`, `2 layers`.
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    if n == 1 {
        format!("1 {singular}")
    } else {
        format!("{n} {plural}")
    }
}

/// `SEQ.INDEX  TIME  NAMESPACE  KIND  ORIGIN  FIELDS-JSON`
pub fn event_line(stamp: RecordStamp, index: usize, envelope: &Envelope, event: &Event) -> String {
    format!(
        "{}.{index}  {}  {}  {}  {}  {}",
        stamp.seq,
        stamp.timestamp,
        namespace_label(&envelope.namespace),
        event.kind(),
        envelope.origin.describe(),
        event.fields_json()
    )
}

/// One event as a JSON object, in the shape `berth events --json` prints too
/// (`berth_projections::event_json`).
pub fn event_json(stamp: RecordStamp, index: usize, envelope: &Envelope, event: &Event) -> Value {
    let place = EventPlace {
        seq: stamp.seq,
        index,
        timestamp: stamp.timestamp,
        namespace: &envelope.namespace,
        origin: Some(&envelope.origin),
    };
    berth_projections::event_json::event_json(place, event.kind(), event.fields_json())
}

fn describe_signal(signal: i32) -> String {
    match signal_name(signal) {
        Some(name) => format!("signal {signal} ({name})"),
        None => format!("signal {signal}"),
    }
}

/// What an event means for the container it is about, in words (for `history`).
pub fn describe_event(event: &Event) -> String {
    match event {
        Event::ContainerCreated { container } => {
            let digest = if container.image_digest.is_empty() {
                String::new()
            } else {
                format!(" ({})", short_digest(&container.image_digest))
            };
            let stdin = match (container.open_stdin, container.tty) {
                (true, true) => ", stdin open, with a terminal",
                (true, false) => ", stdin open",
                (false, true) => ", with a terminal",
                (false, false) => "",
            };
            format!(
                "created the container from image {}{digest} to run {}{stdin}",
                container.image,
                json!(container.args)
            )
        }
        Event::ContainerDeleted { .. } => "deleted the container".to_string(),
        Event::ContainerUpdated { limits, .. } => format!("updated the container's limits to {}", json!(limits)),
        Event::TaskRestartScheduled { attempt, cause, delay_ms, .. } => {
            format!("restart policy: restarting after {cause} (attempt {attempt}, after {delay_ms} ms of backoff)")
        }
        Event::TaskCreateRequested { .. } => "asked to create the task".to_string(),
        Event::TaskCreated { pid, monitor_pid, .. } => format!("task created: pid {pid}, monitor pid {monitor_pid}"),
        Event::TaskCreateFailed { error, .. } => format!("task create failed: {error}"),
        Event::TaskStartRequested { .. } => "asked to start the task".to_string(),
        Event::TaskStarted { pid, .. } => format!("task started: pid {pid}"),
        Event::TaskStartFailed { error, .. } => format!("task start failed: {error}"),
        Event::TaskKillRequested { signal, all, .. } => {
            let to_whom = if *all { "all processes of the task" } else { "the task" };
            format!("asked to send {} to {to_whom}", describe_signal(*signal))
        }
        Event::TaskPaused { .. } => "task paused (its processes frozen)".to_string(),
        Event::TaskResumed { .. } => "task resumed (its processes thawed)".to_string(),
        Event::TaskKillDelivered { signal, .. } => format!("{} delivered", describe_signal(*signal)),
        Event::TaskKillFailed { signal, error, .. } => format!("{} not delivered: {error}", describe_signal(*signal)),
        Event::TaskExited { exit_code, signal, exited_at_ns, cause, .. } => {
            let killed_by = match cause {
                ExitCause::OomKilled => format!(", killed by {} from the OOM killer", describe_signal(*signal)),
                _ if *signal != 0 => format!(", killed by {}", describe_signal(*signal)),
                _ => String::new(),
            };
            let at = format_event_time(*exited_at_ns);
            match cause {
                ExitCause::MonitorLost => format!(
                    "task's monitor lost: the container was killed, its real exit is unknown (recorded as code {exit_code}) at {at}"
                ),
                _ => format!("task exited with code {exit_code}{killed_by} at {at}"),
            }
        }
        Event::ExecRequested { exec_id, process, .. } => {
            let mut how = Vec::new();
            if !process.user.is_empty() {
                how.push(format!("as user {}", process.user));
            }
            if !process.working_dir.is_empty() {
                how.push(format!("in {}", process.working_dir));
            }
            if !process.env.is_empty() {
                how.push(format!("with env {}", json!(process.env)));
            }
            if process.tty {
                how.push("with a terminal".to_string());
            }
            let how = if how.is_empty() { String::new() } else { format!(" ({})", how.join(", ")) };
            format!("asked to exec {} as exec {exec_id}{how}", json!(process.args))
        }
        Event::ExecStarted { exec_id, pid, .. } => format!("exec {exec_id} started: pid {pid}"),
        Event::ExecStartFailed { exec_id, error, .. } => format!("exec {exec_id} failed to start: {error}"),
        Event::ExecExited { exec_id, exit_code, signal, exited_at_ns, .. } => {
            let killed_by =
                if *signal != 0 { format!(", killed by {}", describe_signal(*signal)) } else { String::new() };
            format!("exec {exec_id} exited with code {exit_code}{killed_by} at {}", format_event_time(*exited_at_ns))
        }
        Event::TaskDeleteRequested { force, .. } => {
            if *force {
                "asked to delete the task (force)".to_string()
            } else {
                "asked to delete the task".to_string()
            }
        }
        Event::TaskDeleted { exit_code: Some(exit_code), .. } => format!("task deleted (exit code {exit_code})"),
        Event::TaskDeleted { exit_code: None, .. } => "task deleted (it never ran, so it has no exit code)".to_string(),
        Event::TaskDeleteFailed { error, .. } => format!("task delete failed: {error}"),
        Event::OrphanRemoved { what, id } => format!("recovery removed an orphaned {what} {id}"),
        Event::SnapshotRemoved { chain_id } => {
            format!("layer snapshot {} removed: nothing uses it any more", short_digest(chain_id))
        }
        Event::ContentRemoved { digest } => format!("blob {} removed: nothing uses it any more", short_digest(digest)),
        Event::VolumeCreated { volume } => match &volume.anonymous_for {
            Some(container_id) => format!("anonymous volume {} created for container {container_id}", volume.name),
            None => format!("volume {} created", volume.name),
        },
        Event::VolumeRemoved { name } => format!("volume {name} removed"),
        Event::SecretsForgotten { key_id, reason, .. } => {
            format!("secrets forgotten: key {key_id} deleted, its environment values now read <forgotten> ({reason})")
        }
        Event::CheckpointWritten { covers, digest } => {
            format!(
                "projection checkpoint of the state after record {covers} written (sha256 {})",
                short_digest(digest)
            )
        }
        Event::NetworkCreated { network } => {
            format!("network {} created: bridge {}, subnet {}", network.name, network.bridge, network.subnet)
        }
        Event::NetworkRemoved { name } => format!("network {name} removed"),
        Event::NetworkAttached { attachment, .. } => {
            let ports: Vec<String> = attachment.ports.iter().map(|port| port.describe()).collect();
            let published = if ports.is_empty() { String::new() } else { format!(", publishing {}", ports.join(", ")) };
            format!(
                "attached to network {} as {} (gateway {}){published}",
                attachment.network,
                attachment.addresses.join(", "),
                attachment.gateway
            )
        }
        Event::NetworkDetached { network, .. } => format!("detached from network {network}: its address is released"),
        Event::NetworkReleased { network, .. } => {
            format!("network {network} released after the task's deletion: its address is free")
        }
        other => format!("{} {}", other.kind(), other.fields_json()),
    }
}

/// Who caused a record, for `history`: the caller's identity, or the daemon and what it answers.
pub fn describe_origin(origin: &Origin) -> String {
    match origin {
        Origin::Client { uid, gid, pid, method, request_id } => {
            format!("uid {uid} gid {gid} pid {pid} via {method} (request {request_id})")
        }
        Origin::Daemon { reason, answers: Some(seq) } => format!("berthd ({reason}), answers seq {seq}"),
        Origin::Daemon { reason, answers: None } => format!("berthd ({reason})"),
    }
}

/// Who caused a record, in a few words: `uid 0 pid 42 via METHOD` or `berthd (REASON)`.
pub fn who_short(origin: &Origin) -> String {
    match origin {
        Origin::Client { uid, pid, method, .. } => format!("uid {uid} pid {pid} via {method}"),
        Origin::Daemon { reason, .. } => format!("berthd ({reason})"),
    }
}

fn describe_pending(pending: &[PendingIntent]) -> String {
    let intents: Vec<String> = pending
        .iter()
        .map(|intent| match intent {
            PendingIntent::Create { seq } => format!("create (seq {seq})"),
            PendingIntent::Start { seq } => format!("start (seq {seq})"),
            PendingIntent::Kill { seq, signal, .. } => format!("kill {} (seq {seq})", describe_signal(*signal)),
            PendingIntent::Delete { seq, .. } => format!("delete (seq {seq})"),
            PendingIntent::Exec { seq, exec_id } => format!("exec {exec_id} (seq {seq})"),
        })
        .collect();
    intents.join(", ")
}

/// `running, pid 4242` / `stopped, exit code 3 at TIME` / `no task`, plus unanswered intents.
pub fn describe_task(task: Option<&TaskState>) -> String {
    let Some(task) = task else { return "no task".to_string() };
    let mut text = task.status.name().to_string();
    if task.pid != 0 {
        text.push_str(&format!(", pid {}", task.pid));
    }
    if let Some(exit) = &task.exit {
        text.push_str(&format!(", exit code {}", exit.exit_code));
        if exit.signal != 0 {
            text.push_str(&format!(" ({})", describe_signal(exit.signal)));
        }
        text.push_str(&format!(" at {}", format_event_time(exit.exited_at_ns)));
    }
    if let Some(attachment) = &task.network {
        text.push_str(&format!(", network {} {}", attachment.network, attachment.addresses.join(",")));
    }
    if let Some(error) = &task.error {
        text.push_str(&format!(", error: {error}"));
    }
    if !task.pending.is_empty() {
        text.push_str(&format!(", waiting for: {}", describe_pending(&task.pending)));
    }
    text
}

fn container_line(id: &str, container: &ContainerState) -> String {
    let digest = if container.record.image_digest.is_empty() {
        String::new()
    } else {
        format!(" ({})", short_digest(&container.record.image_digest))
    };
    format!(
        "    {id}  image {}{digest}  created {} (seq {})  task: {}",
        container.record.image,
        format_event_time(container.created_at_ns),
        container.created_seq,
        describe_task(container.task.as_ref())
    )
}

/// The state for humans: every namespace with its images and containers, then the shared
/// content and snapshot indexes as counts.
pub fn write_state_text(out: &mut dyn Write, state: &State, keys: &KeyDir) -> Result<(), ReplayError> {
    if state.namespaces.is_empty() {
        writeln!(out, "namespaces: none")?;
    }
    for (name, namespace) in &state.namespaces {
        writeln!(out, "namespace {name} (created at seq {})", namespace.created_seq)?;
        if !namespace.labels.is_empty() {
            writeln!(out, "  labels: {}", json!(namespace.labels))?;
        }
        if namespace.images.is_empty() {
            writeln!(out, "  images: none")?;
        } else {
            writeln!(out, "  images:")?;
            for (image_name, image) in &namespace.images {
                writeln!(
                    out,
                    "    {image_name}  {}  {}  created at seq {}",
                    short_digest(&image.record.manifest.digest),
                    count(image.record.layers.len(), "layer", "layers"),
                    image.created_seq
                )?;
            }
        }
        if namespace.containers.is_empty() {
            writeln!(out, "  containers: none")?;
        } else {
            writeln!(out, "  containers:")?;
            for (id, container) in &namespace.containers {
                writeln!(out, "{}", container_line(id, container))?;
                let env = keys.container_env(name, &container.record)?;
                if !env.is_empty() {
                    writeln!(out, "      env: {}", json!(env))?;
                }
            }
        }
    }
    let content_bytes: i64 = state.content.values().map(|content| content.size).sum();
    writeln!(out, "content: {}, {content_bytes} bytes", count(state.content.len(), "blob", "blobs"))?;
    writeln!(out, "snapshots: {} committed", state.snapshots.len())?;
    for network in state.networks.values() {
        let record = &network.record;
        writeln!(
            out,
            "network {}  bridge {}  subnet {}  created at seq {}",
            record.name, record.bridge, record.subnet, network.created_seq
        )?;
    }
    Ok(())
}

/// `State` as other tools compare it: pretty-printed serde_json plus a newline. Deterministic:
/// every map in `State` is a `BTreeMap` and structs serialize in declaration order.
pub fn state_json(state: &State) -> String {
    let mut text = serde_json::to_string_pretty(state).expect("State serializes to JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use berth_projections::ContainerRecord;

    use super::*;

    #[test]
    fn image_digests_are_shown_as_twelve_hex_digits() {
        let container = ContainerRecord {
            id: "web".into(),
            image: "alpine:3".into(),
            image_digest: "sha256:0123456789abcdef0123".into(),
            args: vec!["sh".into()],
            ..Default::default()
        };
        assert_eq!(
            describe_event(&Event::ContainerCreated { container }),
            "created the container from image alpine:3 (0123456789ab) to run [\"sh\"]"
        );
    }

    #[test]
    fn event_lines_carry_seq_index_time_namespace_kind_origin_and_fields() {
        let envelope = Envelope::new(
            "default",
            Origin::Daemon { reason: "task exited".into(), answers: None },
            vec![Event::TaskExited {
                container_id: "web".into(),
                exit_code: 3,
                signal: 0,
                exited_at_ns: berth_log::Timestamp::from_ns(5),
                cause: berth_projections::ExitCause::Exited,
            }],
        );
        let stamp =
            RecordStamp { seq: berth_log::Seq(9), timestamp: berth_log::Timestamp::from_ns(1_795_944_600_123_000_000) };
        let line = event_line(stamp, 0, &envelope, &envelope.events[0]);
        assert_eq!(
            line,
            "9.0  2026-11-29T09:30:00.123Z  default  TaskExited  daemon (task exited)  {\"cause\":\"exited\",\"container_id\":\"web\",\"exit_code\":3,\"exited_at_ns\":5,\"signal\":0}"
        );
        let object = event_json(stamp, 0, &envelope, &envelope.events[0]);
        assert_eq!(object["origin"]["kind"], "daemon");
        assert_eq!(object["fields"]["exit_code"], 3);
        assert_eq!(object["kind"], "TaskExited");
    }

    #[test]
    fn exits_by_signal_name_the_signal() {
        let event = Event::TaskExited {
            container_id: "a".into(),
            exit_code: 137,
            signal: 9,
            exited_at_ns: berth_log::Timestamp::from_ns(0),
            cause: berth_projections::ExitCause::Exited,
        };
        assert_eq!(
            describe_event(&event),
            "task exited with code 137, killed by signal 9 (SIGKILL) at an unknown time"
        );
        let crashed = Event::TaskExited {
            container_id: "a".into(),
            exit_code: 139,
            signal: 11,
            exited_at_ns: berth_log::Timestamp::from_ns(0),
            cause: berth_projections::ExitCause::Exited,
        };
        assert_eq!(
            describe_event(&crashed),
            "task exited with code 139, killed by signal 11 (SIGSEGV) at an unknown time"
        );
        let realtime = Event::TaskKillDelivered { container_id: "a".into(), signal: 40 };
        assert_eq!(describe_event(&realtime), "signal 40 delivered");
    }
}
