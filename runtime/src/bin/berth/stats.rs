//! `berth top` and `berth stats`: what a running container's processes are and what they use,
//! read by berthd from the container's cgroup and /proc.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use berth_runtime::api;
use clap::Args;

use crate::output::{
    format_table, human_size, print_json_document, print_stdout, stdout_still_open, OutputArgs, OutputFormat,
};
use crate::session::{CliError, Session};

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Container whose processes to list
    #[arg(value_name = "ID")]
    pub container_id: String,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Print one sample and exit instead of one a second until interrupted
    #[arg(long)]
    pub no_stream: bool,

    /// Containers to show (all running ones of the namespace when none is named)
    #[arg(value_name = "ID")]
    pub container_ids: Vec<String>,

    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn top(session: &Session, top_args: TopArgs) -> Result<ExitCode, CliError> {
    let request = session.request(api::TopRequest { container_id: top_args.container_id });
    let processes = session.tasks().top(request).await.map_err(session.rpc_error())?.into_inner().processes;
    if top_args.output.output == OutputFormat::Json {
        let rows: Vec<serde_json::Value> = processes
            .iter()
            .map(|process| {
                serde_json::json!({"pid": process.pid, "uid": process.uid, "user": process.user,
                    "cpu_seconds": process.cpu_seconds, "command": process.command})
            })
            .collect();
        print_json_document(&serde_json::Value::Array(rows))?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = processes
        .iter()
        .map(|process| {
            vec![
                process.pid.to_string(),
                process.user.clone(),
                clock_time(process.cpu_seconds),
                process.command.clone(),
            ]
        })
        .collect();
    print_stdout(&format_table(&["PID", "USER", "TIME", "COMMAND"], &rows))?;
    Ok(ExitCode::SUCCESS)
}

/// CPU seconds as `ps` shows TIME: `HH:MM:SS`.
fn clock_time(cpu_seconds: f64) -> String {
    let whole = cpu_seconds as u64;
    format!("{:02}:{:02}:{:02}", whole / 3600, whole / 60 % 60, whole % 60)
}

/// Two samples make a CPU %: `--no-stream` waits half a second between them, the stream a
/// second between each table. A stream to a terminal redraws its table in place; anywhere else
/// each sample is appended (tables a blank line apart, JSON one array a line), so a log or a
/// pipe keeps every sample.
pub async fn stats(session: &Session, stats_args: StatsArgs) -> Result<ExitCode, CliError> {
    let sample = async || {
        let request = session.request(api::StatsRequest { container_ids: stats_args.container_ids.clone() });
        session.tasks().stats(request).await.map(|answer| answer.into_inner().stats).map_err(session.rpc_error())
    };
    let format = stats_args.output.output;
    let mut display = if stats_args.no_stream {
        StatsDisplay::Once
    } else if format == OutputFormat::Table && std::io::stdout().is_terminal() {
        StatsDisplay::Redrawn { drawn_before: false }
    } else {
        StatsDisplay::Appended { n_shown: 0 }
    };
    let mut before = sample().await?;
    loop {
        let pause = if stats_args.no_stream { Duration::from_millis(500) } else { Duration::from_secs(1) };
        tokio::time::sleep(pause).await;
        let now = sample().await?;
        print_stdout(&display.frame(&render(&before, &now, format), format))?;
        if stats_args.no_stream || !stdout_still_open() {
            return Ok(ExitCode::SUCCESS);
        }
        before = now;
    }
}

/// How each sample of `berth stats` reaches the screen.
enum StatsDisplay {
    /// `--no-stream`: the one sample as it is.
    Once,
    /// A terminal: the table drawn over the last one, as `docker stats` does.
    Redrawn { drawn_before: bool },
    /// A pipe or file, or JSON: each sample after the last.
    Appended { n_shown: u64 },
}

/// Moves the cursor to the top left corner.
const CURSOR_HOME: &str = "\x1b[H";
/// Clears the whole screen (the first frame: whatever the shell showed goes).
const CLEAR_SCREEN: &str = "\x1b[2J";
/// Clears from the cursor to the end of its line (a shorter cell than last time).
const CLEAR_TO_LINE_END: &str = "\x1b[K";
/// Clears from the cursor to the end of the screen (rows of containers that went away).
const CLEAR_TO_SCREEN_END: &str = "\x1b[J";

impl StatsDisplay {
    /// What to write for one sample rendered as `text`.
    fn frame(&mut self, text: &str, format: OutputFormat) -> String {
        match self {
            StatsDisplay::Once => text.to_string(),
            StatsDisplay::Appended { n_shown } => {
                *n_shown += 1;
                if *n_shown == 1 || format == OutputFormat::Json {
                    text.to_string()
                } else {
                    format!("\n{text}")
                }
            }
            StatsDisplay::Redrawn { drawn_before } => {
                // Overwrite line by line rather than clear and draw, so the table does not flicker.
                let mut frame = String::new();
                if !*drawn_before {
                    frame.push_str(CLEAR_SCREEN);
                }
                frame.push_str(CURSOR_HOME);
                *drawn_before = true;
                for line in text.lines() {
                    frame.push_str(line);
                    frame.push_str(CLEAR_TO_LINE_END);
                    frame.push('\n');
                }
                frame.push_str(CLEAR_TO_SCREEN_END);
                frame
            }
        }
    }
}

fn cpu_percent(before: Option<&api::ContainerStats>, now: &api::ContainerStats) -> f64 {
    let Some(before) = before else { return 0.0 };
    let elapsed_ns = now.read_at_ns.saturating_sub(before.read_at_ns);
    if elapsed_ns <= 0 {
        return 0.0;
    }
    now.cpu_usage_ns.saturating_sub(before.cpu_usage_ns) as f64 * 100.0 / elapsed_ns as f64
}

fn render(before: &[api::ContainerStats], now: &[api::ContainerStats], format: OutputFormat) -> String {
    let with_cpu = now.iter().map(|stats| {
        let earlier = before.iter().find(|old| old.container_id == stats.container_id);
        (stats, cpu_percent(earlier, stats))
    });
    if format == OutputFormat::Json {
        let rows: Vec<serde_json::Value> = with_cpu
            .map(|(stats, cpu)| {
                serde_json::json!({"id": stats.container_id, "cpu_percent": cpu,
                    "memory_usage_bytes": stats.memory_usage_bytes, "memory_limit_bytes": stats.memory_limit_bytes,
                    "pids": stats.pids, "block_read_bytes": stats.block_read_bytes,
                    "block_write_bytes": stats.block_write_bytes})
            })
            .collect();
        return format!("{}\n", serde_json::Value::Array(rows));
    }
    let rows: Vec<Vec<String>> = with_cpu
        .map(|(stats, cpu)| {
            let limit = if stats.memory_limit_bytes == 0 {
                "no limit".to_string()
            } else {
                human_size(stats.memory_limit_bytes as i64)
            };
            vec![
                stats.container_id.clone(),
                format!("{cpu:.2}%"),
                format!("{} / {limit}", human_size(stats.memory_usage_bytes as i64)),
                stats.pids.to_string(),
                format!(
                    "{} / {}",
                    human_size(stats.block_read_bytes as i64),
                    human_size(stats.block_write_bytes as i64)
                ),
            ]
        })
        .collect();
    format_table(&["ID", "CPU %", "MEM USAGE / LIMIT", "PIDS", "BLOCK I/O (READ / WRITE)"], &rows)
}
