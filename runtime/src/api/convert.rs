//! Projections and log records in their API form (the generated proto messages).

use berth_log::{Seq, Timestamp};
use berth_projections::{
    ContainerState, Envelope, ExitInfo, ImageState, MountRecord, NetworkAttachment, Origin, PortMapping, TaskState,
    TaskStatus,
};

use crate::api;

pub(crate) fn task_status(status: TaskStatus) -> api::TaskStatus {
    match status {
        TaskStatus::Creating => api::TaskStatus::Creating,
        TaskStatus::Created => api::TaskStatus::Created,
        TaskStatus::Starting => api::TaskStatus::Starting,
        TaskStatus::Running => api::TaskStatus::Running,
        TaskStatus::Stopped => api::TaskStatus::Stopped,
        TaskStatus::Deleting => api::TaskStatus::Deleting,
        TaskStatus::Failed => api::TaskStatus::Failed,
    }
}

pub(crate) fn task_message(container_id: &str, task: &TaskState) -> api::Task {
    let exit = task.exit.unwrap_or(ExitInfo {
        exit_code: 0,
        signal: 0,
        exited_at_ns: Timestamp::UNIX_EPOCH,
        cause: Default::default(),
    });
    api::Task {
        container_id: container_id.to_string(),
        status: if task.paused && task.status == TaskStatus::Running {
            api::TaskStatus::Paused as i32
        } else {
            task_status(task.status) as i32
        },
        pid: task.pid,
        exit_code: exit.exit_code,
        exit_signal: exit.signal,
        exited_at_ns: api_time(exit.exited_at_ns),
        exit_cause: if task.exit.is_some() { exit.cause.name().to_string() } else { String::new() },
        error: task.error.clone().unwrap_or_default(),
        updated_seq: task.updated_seq.get(),
        network: task.network.as_ref().map(attachment_message),
    }
}

pub(crate) fn port_message(port: &PortMapping) -> api::PortMapping {
    api::PortMapping {
        host_ip: port.host_ip.clone(),
        host_port: port.host_port.into(),
        container_port: port.container_port.into(),
        protocol: port.protocol.clone(),
    }
}

pub(crate) fn attachment_message(attachment: &NetworkAttachment) -> api::NetworkAttachment {
    api::NetworkAttachment {
        network: attachment.network.clone(),
        netns: attachment.netns.clone(),
        interface: attachment.interface.clone(),
        addresses: attachment.addresses.clone(),
        gateway: attachment.gateway.clone(),
        mac: attachment.mac.clone(),
        ports: attachment.ports.iter().map(port_message).collect(),
    }
}

pub(crate) fn container_message(container: &ContainerState) -> api::Container {
    let record = &container.record;
    api::Container {
        id: record.id.clone(),
        image: record.image.clone(),
        image_digest: record.image_digest.clone(),
        args: record.args.clone(),
        // Sealed values stay sealed in lists and create answers; `Containers/Get` opens them.
        env: record
            .env
            .iter()
            .cloned()
            .chain(record.sealed_env.iter().map(|entry| format!("{}=<sealed>", entry.name)))
            .collect(),
        working_dir: record.working_dir.clone(),
        user: record.user.clone(),
        hostname: record.hostname.clone(),
        labels: record.labels.clone().into_iter().collect(),
        snapshot_key: record.snapshot_key.clone(),
        created_seq: container.created_seq.get(),
        created_at_ns: api_time(container.created_at_ns),
        task: container.task.as_ref().map(|task| task_message(&record.id, task)),
        open_stdin: record.open_stdin,
        tty: record.tty,
        policies_json: serde_json::to_string(&record.policies).unwrap_or_default(),
        mounts: record.mounts.iter().map(mount_message).collect(),
        read_only_rootfs: record.read_only_rootfs,
        auto_remove: record.auto_remove,
        network: Some(api::ContainerNetwork {
            mode: record.network.mode_name().to_string(),
            ports: record.network.ports.iter().map(port_message).collect(),
            dns: record.network.dns.clone(),
            extra_hosts: record.network.extra_hosts.clone(),
        }),
    }
}

pub(crate) fn mount_message(mount: &MountRecord) -> api::Mount {
    api::Mount {
        r#type: mount.kind.clone(),
        source: mount.source.clone(),
        destination: mount.destination.clone(),
        read_only: mount.read_only,
        options: mount.options.clone(),
    }
}

pub(crate) fn image_message(image: &ImageState) -> api::Image {
    let record = &image.record;
    api::Image {
        name: record.name.clone(),
        digest: record.manifest.digest.clone(),
        media_type: record.manifest.media_type.clone(),
        size: record.manifest.size
            + record.config.size
            + record.layers.iter().map(|layer| layer.blob.size).sum::<i64>(),
        config_digest: record.config.digest.clone(),
        layers: record
            .layers
            .iter()
            .map(|layer| api::Layer {
                digest: layer.blob.digest.clone(),
                diff_id: layer.diff_id.clone(),
                media_type: layer.blob.media_type.clone(),
                size: layer.blob.size,
                chain_id: layer.chain_id.clone(),
            })
            .collect(),
        entrypoint: record.entrypoint.clone(),
        cmd: record.cmd.clone(),
        env: record.env.clone(),
        working_dir: record.working_dir.clone(),
        user: record.user.clone(),
        created_seq: image.created_seq.get(),
        created_at_ns: api_time(image.created_at_ns),
        manifest_size: record.manifest.size,
    }
}

/// The API form of the events of one record that `selector` keeps.
pub fn event_messages(
    seq: Seq,
    timestamp: Timestamp,
    envelope: &Envelope,
    selector: &berth_projections::event_json::EventSelector,
) -> Vec<api::Event> {
    let origin = match &envelope.origin {
        Origin::Client { uid, gid, pid, method, request_id } => api::Origin {
            kind: "client".into(),
            uid: *uid,
            gid: *gid,
            pid: *pid,
            method: method.clone(),
            request_id: request_id.clone(),
            answers_seq: 0,
            reason: String::new(),
        },
        Origin::Daemon { reason, answers } => api::Origin {
            kind: "daemon".into(),
            answers_seq: answers.map_or(0, Seq::get),
            reason: reason.clone(),
            ..api::Origin::default()
        },
    };
    envelope
        .events
        .iter()
        .enumerate()
        .filter(|(_, event)| selector.keeps(event))
        .map(|(index, event)| api::Event {
            seq: seq.get(),
            index: index as u32,
            timestamp_ns: api_time(timestamp),
            namespace: envelope.namespace.clone(),
            origin: Some(origin.clone()),
            kind: event.kind().to_string(),
            json: event.fields_json().to_string(),
        })
        .collect()
}

/// A time in the API's form: signed nanoseconds since the Unix epoch (protobuf has no u64 time).
pub(crate) fn api_time(timestamp: Timestamp) -> i64 {
    i64::try_from(timestamp.as_ns()).unwrap_or(i64::MAX)
}
