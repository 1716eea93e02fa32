//! `berth create`, `start`, `ps`, `kill`, `wait` and `rm`: a container's life after `run`'s
//! one-step start, and the STATUS column that tells where each one stands.

use std::process::ExitCode;

use berth_projections::names::signal_name;
use berth_runtime::api;
use berth_runtime::client;
use tokio::signal::unix::{signal, SignalKind};

use crate::args::{CreateArgs, InspectArgs, KillArgs, OutputFormat, PsArgs, RmArgs, StartArgs, WaitArgs};
use crate::output::{
    for_each_target, format_ago, format_rfc3339, format_table, now_unix_ns, print_json_document, print_stdout,
    shell_join, sorted_labels, truncate_chars,
};
use crate::run::attach;
use crate::session::{CliError, Session};

/// Widest COMMAND shown by `berth ps` before it is cut short.
const COMMAND_COLUMN_CHARS: usize = 30;

pub async fn create_container_only(session: &Session, create_args: CreateArgs) -> Result<ExitCode, CliError> {
    let container_id = create_args.container.name.clone().unwrap_or_else(client::generate_container_id);
    let create_request = create_args.container.create_request(container_id.clone())?;
    crate::run::create_container_retrying(session, create_request).await.map_err(session.rpc_error())?;
    print_stdout(&format!("{container_id}\n"))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn start_container(session: &Session, start_args: StartArgs) -> Result<ExitCode, CliError> {
    let container_id = start_args.container_id;
    // Install before starting so a Ctrl-C right after the start is seen by attach.
    let mut interrupts = if start_args.attach {
        Some(signal(SignalKind::interrupt()).map_err(CliError::InstallSignalHandler)?)
    } else {
        None
    };
    let container = session
        .containers()
        .get(session.request(api::GetContainerRequest { id: container_id.clone(), open_sealed_env: false }))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    let mut tasks = session.tasks();
    let started = async {
        if container.task.is_none() {
            tasks
                .create(session.request(api::CreateTaskRequest { container_id: container_id.clone(), start: false }))
                .await?;
        }
        tasks.start(session.request(api::StartTaskRequest { container_id: container_id.clone() })).await
    };
    if let Err(status) = started.await {
        let task_failed = status.code() == tonic::Code::FailedPrecondition;
        eprintln!("berth: {}", session.rpc_error()(status));
        if task_failed {
            eprintln!(
                "berth: container {container_id} is kept with its failed task: look at it with `berth ps -a`, remove it with `berth rm -f {container_id}`"
            );
        }
        return Ok(ExitCode::from(1));
    }
    match interrupts.as_mut() {
        Some(interrupts) => attach(session, &container_id, interrupts, false).await,
        None => Ok(ExitCode::SUCCESS),
    }
}

// ------------------------------------------------------------------------------------ ps

pub async fn list_containers(session: &Session, ps_args: PsArgs) -> Result<ExitCode, CliError> {
    let mut containers = session.list_all_containers().await.map_err(session.rpc_error())?;
    if !ps_args.all {
        containers.retain(|container| container.task.as_ref().is_some_and(task_is_live));
    }
    for filter in &ps_args.filters {
        let (key, value) = filter.split_once('=').unwrap_or((filter, ""));
        if !matches!(key, "status" | "name" | "label" | "ancestor") {
            return Err(CliError::UnknownFilter { filter: filter.clone() });
        }
        containers.retain(|container| container_matches(container, key, value));
    }
    // Newest first, like the log reads backwards from now.
    containers.sort_by_key(|container| std::cmp::Reverse(container.created_seq));
    let now_ns = now_unix_ns();
    if ps_args.quiet {
        let ids: String = containers.iter().map(|container| format!("{}\n", container.id)).collect();
        print_stdout(&ids)?;
        return Ok(ExitCode::SUCCESS);
    }

    match ps_args.output.output {
        OutputFormat::Json => {
            let json_containers: Vec<serde_json::Value> =
                containers.iter().map(|container| container_json(container, now_ns)).collect();
            print_json_document(&serde_json::Value::Array(json_containers))?;
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = containers
                .iter()
                .map(|container| {
                    vec![
                        container.id.clone(),
                        container.image.clone(),
                        truncate_chars(&shell_join(&container.args), COMMAND_COLUMN_CHARS),
                        format_task_status(container.task.as_ref(), now_ns),
                        format_ago(container.created_at_ns, now_ns),
                    ]
                })
                .collect();
            print_stdout(&format_table(&["ID", "IMAGE", "COMMAND", "STATUS", "CREATED"], &rows))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One `ps --filter KEY=VALUE`: status is the task's status name ("created", "running",
/// "stopped", … and "none" without a task), name a part of the id, label KEY or KEY=VALUE,
/// ancestor the image name (with or without its tag) or digest.
fn container_matches(container: &api::Container, key: &str, value: &str) -> bool {
    match key {
        "status" => {
            let status =
                container.task.as_ref().map_or_else(|| "none".to_string(), |task| task_status_name(task.status()));
            status == value || (value == "exited" && status == "stopped")
        }
        "name" => container.id.contains(value),
        "label" => match value.split_once('=') {
            Some((label_key, label_value)) => container.labels.get(label_key).is_some_and(|found| found == label_value),
            None => container.labels.contains_key(value),
        },
        "ancestor" => {
            container.image == value
                || container.image.rsplit_once(':').is_some_and(|(name, _tag)| name == value && !name.ends_with('/'))
                || container.image_digest == value
        }
        _ => false,
    }
}

// ------------------------------------------------------------------------------------ inspect

pub async fn inspect_containers(session: &Session, inspect_args: InspectArgs) -> Result<ExitCode, CliError> {
    let now_ns = now_unix_ns();
    let mut documents = Vec::new();
    let mut n_failed = 0;
    for container_id in &inspect_args.container_ids {
        let request = session.request(api::GetContainerRequest { id: container_id.clone(), open_sealed_env: true });
        match session.containers().get(request).await {
            Ok(container) => documents.push(inspect_json(&container.into_inner(), now_ns)),
            Err(status) => {
                eprintln!("berth: {}", session.rpc_error()(status));
                n_failed += 1;
            }
        }
    }
    print_json_document(&serde_json::Value::Array(documents))?;
    crate::output::finish_batch(n_failed, inspect_args.container_ids.len())
}

/// `ps --output json`'s fields plus everything the container was created with.
fn inspect_json(container: &api::Container, now_ns: i64) -> serde_json::Value {
    let mut document = container_json(container, now_ns);
    let mounts: Vec<serde_json::Value> = container
        .mounts
        .iter()
        .map(|mount| {
            serde_json::json!({
                "type": mount.r#type,
                "source": mount.source,
                "destination": mount.destination,
                "read_only": mount.read_only,
                "options": mount.options,
            })
        })
        .collect();
    if let serde_json::Value::Object(fields) = &mut document {
        fields.insert("env".into(), serde_json::json!(container.env));
        fields.insert("working_dir".into(), serde_json::json!(container.working_dir));
        fields.insert("user".into(), serde_json::json!(container.user));
        fields.insert("hostname".into(), serde_json::json!(container.hostname));
        fields.insert("snapshot_key".into(), serde_json::json!(container.snapshot_key));
        fields.insert("mounts".into(), serde_json::Value::Array(mounts));
        fields.insert("read_only_rootfs".into(), serde_json::json!(container.read_only_rootfs));
        fields.insert("auto_remove".into(), serde_json::json!(container.auto_remove));
        let network = container.network.clone().unwrap_or_default();
        let attachment = container.task.as_ref().and_then(|task| task.network.as_ref());
        fields.insert(
            "network".into(),
            serde_json::json!({
                "mode": network.mode,
                "ports": network.ports.iter().map(crate::networks::port_text).collect::<Vec<_>>(),
                "dns": network.dns,
                "extra_hosts": network.extra_hosts,
                "attachment": attachment.map(crate::networks::attachment_json),
            }),
        );
    }
    document
}

/// Whether `berth ps` without -a shows the task: it runs, or is about to.
fn task_is_live(task: &api::Task) -> bool {
    matches!(task.status(), api::TaskStatus::Running | api::TaskStatus::Starting | api::TaskStatus::Paused)
}

fn container_json(container: &api::Container, now_ns: i64) -> serde_json::Value {
    let task_json = container.task.as_ref().map(|task| {
        serde_json::json!({
            "status": task_status_name(task.status()),
            "pid": task.pid,
            "exit_code": task.exit_code,
            "exit_signal": task.exit_signal,
            "exit_cause": task.exit_cause,
            "exited_at": (task.exited_at_ns != 0).then(|| format_rfc3339(task.exited_at_ns)),
            "error": task.error,
            "updated_seq": task.updated_seq,
        })
    });
    serde_json::json!({
        "id": container.id,
        "image": container.image,
        "image_digest": container.image_digest,
        "command": container.args,
        "status": format_task_status(container.task.as_ref(), now_ns),
        "created_at": format_rfc3339(container.created_at_ns),
        "created_seq": container.created_seq,
        "labels": sorted_labels(&container.labels),
        "task": task_json,
    })
}

pub async fn kill_task(session: &Session, kill_args: KillArgs) -> Result<ExitCode, CliError> {
    session
        .tasks()
        .kill(session.request(api::KillTaskRequest {
            container_id: kill_args.container_id,
            signal: kill_args.signal,
            all: kill_args.all,
        }))
        .await
        .map_err(session.rpc_error())?;
    Ok(ExitCode::SUCCESS)
}

pub async fn wait_task(session: &Session, wait_args: WaitArgs) -> Result<ExitCode, CliError> {
    let exit = session
        .tasks()
        .wait(session.request(api::WaitTaskRequest { container_id: wait_args.container_id }))
        .await
        .map_err(session.rpc_error())?
        .into_inner();
    let exit_status = client::shell_exit_status(exit.exit_code, exit.exit_signal);
    print_stdout(&format!("{exit_status}\n"))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn remove_containers(session: &Session, rm_args: RmArgs) -> Result<ExitCode, CliError> {
    for_each_target(&rm_args.container_ids, async |container_id| {
        remove_one_container(session, container_id, rm_args.force, rm_args.volumes).await
    })
    .await
}

async fn remove_one_container(
    session: &Session,
    container_id: &str,
    force: bool,
    remove_volumes: bool,
) -> Result<(), CliError> {
    crate::run::delete_container_with_task(session, container_id, force, remove_volumes)
        .await
        .map_err(session.rpc_error())
}

/// `SIGKILL` for 9; `signal 40` for numbers without a name (real-time signals).
fn signal_label(signal_number: i32) -> String {
    match signal_name(signal_number) {
        Some(name) => name.to_string(),
        None => format!("signal {signal_number}"),
    }
}

/// `running`, `stopped`... — the enum's name without its prefix, lower-case.
fn task_status_name(status: api::TaskStatus) -> String {
    status.as_str_name().trim_start_matches("TASK_STATUS_").to_ascii_lowercase()
}

/// The STATUS column of `berth ps`.
fn format_task_status(task: Option<&api::Task>, now_ns: i64) -> String {
    let Some(task) = task else {
        return "created".to_string();
    };
    match task.status() {
        api::TaskStatus::Running => format!("running (pid {})", task.pid),
        api::TaskStatus::Paused => format!("paused (pid {})", task.pid),
        api::TaskStatus::Created => format!("created (pid {})", task.pid),
        api::TaskStatus::Stopped => {
            let ago = format_ago(task.exited_at_ns, now_ns);
            if task.exit_cause == "monitor-lost" {
                format!("monitor lost, killed {ago}")
            } else if task.exit_cause == "oom-killed" {
                format!("oom-killed ({}) {ago}", signal_label(task.exit_signal))
            } else if task.exit_signal > 0 {
                format!("killed ({}) {ago}", signal_label(task.exit_signal))
            } else {
                format!("exited ({}) {ago}", task.exit_code)
            }
        }
        api::TaskStatus::Failed if !task.error.is_empty() => format!("failed: {}", task.error),
        other_status => task_status_name(other_status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::OutputArgs;
    use crate::recording_daemon::{recorded_session, RecordedSession};

    const SECOND_NS: i64 = 1_000_000_000;

    #[test]
    fn signal_labels_fall_back_to_numbers() {
        assert_eq!(signal_label(9), "SIGKILL");
        assert_eq!(signal_label(15), "SIGTERM");
        assert_eq!(signal_label(40), "signal 40");
    }

    #[test]
    fn signal_labels_match_the_names_nix_gives() {
        // The STATUS column used nix's names before the shared table; keep it byte-for-byte.
        for signal in nix::sys::signal::Signal::iterator() {
            assert_eq!(signal_label(signal as i32), signal.as_str(), "{signal}");
        }
    }

    fn task(status: api::TaskStatus) -> api::Task {
        api::Task { container_id: "web".to_string(), status: status as i32, pid: 1234, ..Default::default() }
    }

    #[test]
    fn task_status_reads_like_the_examples() {
        let now_ns = 1_000_000 * SECOND_NS;
        assert_eq!(format_task_status(None, now_ns), "created");
        assert_eq!(format_task_status(Some(&task(api::TaskStatus::Running)), now_ns), "running (pid 1234)");
        let exited = api::Task { exit_code: 7, exited_at_ns: now_ns - 3 * SECOND_NS, ..task(api::TaskStatus::Stopped) };
        assert_eq!(format_task_status(Some(&exited), now_ns), "exited (7) 3s ago");
        let killed =
            api::Task { exit_signal: 9, exited_at_ns: now_ns - 2 * 3600 * SECOND_NS, ..task(api::TaskStatus::Stopped) };
        assert_eq!(format_task_status(Some(&killed), now_ns), "killed (SIGKILL) 2h ago");
        let failed = api::Task { error: "runc create: no such file".to_string(), ..task(api::TaskStatus::Failed) };
        assert_eq!(format_task_status(Some(&failed), now_ns), "failed: runc create: no such file");
        assert_eq!(format_task_status(Some(&task(api::TaskStatus::Starting)), now_ns), "starting");
        assert_eq!(format_task_status(Some(&task(api::TaskStatus::Deleting)), now_ns), "deleting");
    }

    #[test]
    fn ps_without_all_shows_only_running_or_starting_tasks() {
        assert!(task_is_live(&task(api::TaskStatus::Running)));
        assert!(task_is_live(&task(api::TaskStatus::Starting)));
        assert!(!task_is_live(&task(api::TaskStatus::Stopped)));
        assert!(!task_is_live(&task(api::TaskStatus::Created)));
    }

    #[tokio::test]
    async fn rm_asks_for_the_task_and_the_container_in_one_request() {
        let RecordedSession { daemon, server, session, _scratch_dir, .. } = recorded_session("default").await;

        remove_one_container(&session, "exited", true, false).await.unwrap();
        remove_one_container(&session, "bare", false, false).await.unwrap();
        assert_eq!(
            daemon.calls(),
            [
                "[default] Containers/Delete exited with its task, forced",
                "[default] Containers/Delete bare with its task"
            ]
        );
        server.abort();
    }

    #[tokio::test]
    async fn against_a_berthd_without_delete_task_rm_deletes_the_task_first() {
        let RecordedSession { daemon, server, session, _scratch_dir, .. } = recorded_session("default").await;

        remove_one_container(&session, "legacy", true, false).await.unwrap();
        assert_eq!(
            daemon.calls(),
            [
                "[default] Containers/Delete legacy with its task, forced",
                "[default] Tasks/Delete legacy force=true",
                "[default] Containers/Delete legacy with its task, forced",
            ]
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_daemon_that_goes_away_gets_the_start_daemon_hint() {
        let RecordedSession { server, session, socket_path, _scratch_dir, .. } = recorded_session("default").await;
        server.abort();
        let _ = server.await;
        std::fs::remove_file(&socket_path).unwrap();

        let ps_args =
            PsArgs { all: true, quiet: false, filters: Vec::new(), output: OutputArgs { output: OutputFormat::Json } };
        let error = list_containers(&session, ps_args).await.unwrap_err();
        let message = error.to_string();
        assert_eq!(
            message,
            format!(
                "cannot reach berthd at {}: is it running? start it with `berthd` or pass --address / BERTH_ADDRESS",
                socket_path.display()
            )
        );
    }
}
