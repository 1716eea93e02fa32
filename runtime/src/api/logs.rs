//! `Tasks/Logs`: what a task (or one of its execs) wrote to its stdout and stderr — with `-t`,
//! its terminal, kept as stdout — read back from the monitor's rotated record files
//! (`tasks::output_log`), merged by time, cut by `since` and `tail` (or, for attach, only what
//! comes from now on), and with `follow` kept coming until the process has exited and both
//! streams are drained. A follower is woken by inotify on the task directory
//! (`tasks::output_watch`) as soon as the monitor writes, and polls only where inotify cannot
//! be had.

use std::sync::Arc;
use std::time::Duration;

use berth_log::Timestamp;
use berth_projections::{State, TaskStatus};
use tokio::sync::mpsc;
use tonic::Status;

use crate::api;
use crate::api::convert::api_time;
use crate::daemon::store::Store;
use crate::tasks::output_log::{read_records, OutputRecord, ReadPosition};
use crate::tasks::output_watch::OutputWatch;
use crate::tasks::task_dir::TaskDir;

/// Lines of one stream sent together when no timestamps were asked for.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// How often a follower without an inotify watch looks for new output.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How often a watched follower reads anyway: only a guard, every write wakes it sooner.
const WATCHED_BACKSTOP_INTERVAL: Duration = Duration::from_secs(1);

/// What a client asked of the output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogsQuery {
    pub follow: bool,
    /// Only what is written from now on (attach): both streams start at their current end.
    pub from_end: bool,
    pub tail: Option<u64>,
    pub since: Option<Timestamp>,
    pub timestamps: bool,
}

/// Whose output a `Logs` call reads: a task's, or one of its execs'.
pub(crate) struct LogSource {
    pub namespace: String,
    pub container_id: String,
    /// Empty: the task's.
    pub exec_id: String,
}

impl LogSource {
    /// Whether the process has ended (or never ran, or is gone), so no more output will come.
    fn finished(&self, state: &State) -> bool {
        let task = state.container(&self.namespace, &self.container_id).and_then(|container| container.task.as_ref());
        let Some(task) = task else { return true };
        if self.exec_id.is_empty() {
            return task.exit.is_some() || matches!(task.status, TaskStatus::Failed);
        }
        task.execs
            .get(&self.exec_id)
            .is_none_or(|exec| exec.exit.is_some() || matches!(exec.status, berth_projections::ExecStatus::Failed))
    }
}

/// Where each stream ends now: the current file's inode and length (rotated files are older).
fn end_positions(task_dir: &TaskDir) -> [ReadPosition; 2] {
    [task_dir.stdout_path(), task_dir.stderr_path()].map(|path| match std::fs::metadata(path) {
        Ok(metadata) => ReadPosition { inode: std::os::unix::fs::MetadataExt::ino(&metadata), offset: metadata.len() },
        Err(_) => ReadPosition::default(),
    })
}

type Line = (api::log_chunk::Stream, OutputRecord);

/// Reads both streams past their positions, in time order (stdout first on a tie).
async fn read_new_lines(task_dir: &TaskDir, positions: &mut [ReadPosition; 2]) -> Vec<Line> {
    let paths = [task_dir.stdout_path(), task_dir.stderr_path()];
    let start = *positions;
    let read = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        let mut ends = start;
        for (index, path) in paths.iter().enumerate() {
            let stream = if index == 0 { api::log_chunk::Stream::Stdout } else { api::log_chunk::Stream::Stderr };
            if let Ok((records, end)) = read_records(path, start[index]) {
                lines.extend(records.into_iter().map(|record| (stream, record)));
                ends[index] = end;
            }
        }
        (lines, ends)
    })
    .await;
    let Ok((mut lines, ends)) = read else { return Vec::new() };
    *positions = ends;
    lines.sort_by_key(|(_, record)| record.at);
    lines
}

/// The chunks for `lines`: one per line with timestamps, else runs of one stream batched.
fn chunks(lines: Vec<Line>, timestamps: bool) -> Vec<api::LogChunk> {
    let mut chunks: Vec<api::LogChunk> = Vec::new();
    for (stream, record) in lines {
        let raw = record.raw();
        if let Some(last) = chunks.last_mut() {
            if !timestamps && last.stream == stream as i32 && last.data.len() + raw.len() <= MAX_BATCH_BYTES {
                last.data.extend_from_slice(&raw);
                continue;
            }
        }
        chunks.push(api::LogChunk { stream: stream as i32, data: raw, timestamp_ns: api_time(record.at) });
    }
    chunks
}

pub(crate) async fn stream_logs(
    store: Arc<Store>,
    source: LogSource,
    task_dir: TaskDir,
    query: LogsQuery,
    sender: mpsc::Sender<Result<api::LogChunk, Status>>,
) {
    let mut positions = if query.from_end { end_positions(&task_dir) } else { [ReadPosition::default(); 2] };
    let mut applied = store.watch_applied();
    let stopping = store.stopping();
    tokio::pin!(stopping);
    let mut first_read = true;
    // Made before the first read, so nothing written after that read goes unnoticed.
    let mut watch = if query.follow { OutputWatch::new(task_dir.kept_dir()).ok() } else { None };
    loop {
        // Decide "finished" before reading, so output written just before the exit is read.
        let finished = source.finished(&store.state());
        let mut lines = read_new_lines(&task_dir, &mut positions).await;
        if first_read {
            first_read = false;
            if let Some(since) = query.since {
                lines.retain(|(_, record)| record.at >= since);
            }
            if let Some(tail) = query.tail {
                let n_lines = lines.iter().filter(|(_, record)| !record.partial).count() as u64;
                let mut n_skipped_lines = n_lines.saturating_sub(tail);
                // Skip whole lines: a line's partial records go with it.
                let keep_from = lines
                    .iter()
                    .position(|(_, record)| {
                        if n_skipped_lines == 0 {
                            return true;
                        }
                        if !record.partial {
                            n_skipped_lines -= 1;
                        }
                        false
                    })
                    .unwrap_or(lines.len());
                lines.drain(..keep_from);
            }
        }
        let read_any = !lines.is_empty();
        for chunk in chunks(lines, query.timestamps) {
            if sender.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
        if !query.follow || (finished && !read_any) {
            return;
        }
        if !read_any {
            // The directory may not exist yet when the follower came first: watch it once it
            // does, and read once more, since output may have come before the watch.
            if watch.is_none() {
                watch = OutputWatch::new(task_dir.kept_dir()).ok();
                if watch.is_some() {
                    continue;
                }
            }
            let output_changed = async {
                match &watch {
                    Some(watch) => {
                        if watch.changed().await.is_err() {
                            tokio::time::sleep(POLL_INTERVAL).await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            let poll = if watch.is_some() { WATCHED_BACKSTOP_INTERVAL } else { POLL_INTERVAL };
            // New output wakes the follower; the exit is noticed as soon as it is recorded.
            tokio::select! {
                () = output_changed => {}
                _ = tokio::time::sleep(poll) => {}
                _ = applied.changed() => {}
                () = &mut stopping => {
                    // End the stream so berthd can stop; the container keeps running.
                    let stopping = Status::unavailable("berthd is stopping: the container keeps running, run `berth logs` again when berthd is back");
                    let _ = sender.send(Err(stopping)).await;
                    return;
                }
            }
        }
    }
}
