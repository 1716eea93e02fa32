//! Everything berth prints goes through here: stdout that tolerates a closed pipe, aligned
//! tables, pretty JSON documents, and the small formats the tables share (times, ages, sizes,
//! commands). Formatting is pure so each format is unit-tested.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use berth_log::Timestamp;

use clap::{Args, ValueEnum};

use crate::session::CliError;

/// `--output table|json`, shared by every listing verb (here, below `args`, so verb files
/// that declare their own flags can use it without an import loop).
#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Output format
    #[arg(long, visible_alias = "format", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns for people
    Table,
    /// JSON for programs
    Json,
}

/// Writes to stdout. A closed pipe (`berth ps | head -1`) is not an error: the reader has
/// what it wanted.
pub fn print_stdout(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(error) => Err(CliError::WriteOutput(error)),
    }
}

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// False once a write found stdout's reader gone; streaming commands stop then.
pub fn stdout_still_open() -> bool {
    !STDOUT_CLOSED.load(Ordering::Relaxed)
}

pub fn print_json_document(value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print_stdout(&format!("{text}\n"))
}

/// Left-aligned columns separated by three spaces; widths count characters, not bytes.
pub fn format_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in rows {
        for (column_idx, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(column_idx) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut table = String::new();
    let header_cells: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    for row in std::iter::once(&header_cells).chain(rows.iter()) {
        let mut line = String::new();
        for (column_idx, cell) in row.iter().enumerate() {
            let is_last = column_idx + 1 == row.len();
            line.push_str(cell);
            if !is_last {
                let width = widths.get(column_idx).copied().unwrap_or(0);
                let padding = width.saturating_sub(cell.chars().count()) + 3;
                line.push_str(&" ".repeat(padding));
            }
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// Acts on each target in turn: prints the name of each one that succeeded and the error of
/// each one that failed, then sums up with [`finish_batch`].
pub async fn for_each_target(
    targets: &[String],
    mut act: impl AsyncFnMut(&str) -> Result<(), CliError>,
) -> Result<ExitCode, CliError> {
    let mut n_failed = 0;
    for target in targets {
        match act(target).await {
            Ok(()) => print_stdout(&format!("{target}\n"))?,
            Err(error) => {
                eprintln!("berth: {error}");
                n_failed += 1;
            }
        }
    }
    finish_batch(n_failed, targets.len())
}

/// `inspect` of several targets: one JSON array of those found, an error line for each that
/// was not, failing as `for_each_target` does.
pub async fn inspect_each(
    targets: &[String],
    mut fetch: impl AsyncFnMut(&str) -> Result<serde_json::Value, CliError>,
) -> Result<ExitCode, CliError> {
    let mut documents = Vec::new();
    let mut n_failed = 0;
    for target in targets {
        match fetch(target).await {
            Ok(document) => documents.push(document),
            Err(error) => {
                eprintln!("berth: {error}");
                n_failed += 1;
            }
        }
    }
    print_json_document(&serde_json::Value::Array(documents))?;
    finish_batch(n_failed, targets.len())
}

/// A command that acts on several targets fails if any of them failed; when there was only
/// one, its own error was the whole story, so repeating a summary would be noise.
pub fn finish_batch(n_failed: usize, n_total: usize) -> Result<ExitCode, CliError> {
    match n_failed {
        0 => Ok(ExitCode::SUCCESS),
        _ if n_total == 1 => Ok(ExitCode::from(1)),
        _ => Err(CliError::SomeFailed { n_failed, n_total }),
    }
}

pub fn sorted_labels(labels: &HashMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().map(|(key, value)| (key.clone(), value.clone())).collect()
}

/// `3s ago`, `5m ago`, `2h ago`, `4d ago`; `-` when the time is unknown (0).
pub fn format_ago(then_ns: i64, now_ns: i64) -> String {
    if then_ns == 0 {
        return "-".to_string();
    }
    let seconds = now_ns.saturating_sub(then_ns).max(0) / 1_000_000_000;
    match seconds {
        0..=59 => format!("{seconds}s ago"),
        60..=3599 => format!("{}m ago", seconds / 60),
        3600..=86_399 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}

/// Now, in the signed nanoseconds the API uses for times.
pub fn now_unix_ns() -> i64 {
    i64::try_from(Timestamp::now().as_ns()).unwrap_or(i64::MAX)
}

/// UTC time as RFC 3339 with milliseconds, e.g. `2024-02-29T13:05:09.123Z`. berthd never sends
/// a time before 1970; if one comes anyway it is shown as what it is rather than as a date.
pub fn format_rfc3339(unix_ns: i64) -> String {
    match Timestamp::from_signed_ns(unix_ns) {
        Some(timestamp) => timestamp.to_string(),
        None => format!("{unix_ns} ns (before 1970, not a real time)"),
    }
}

/// Decimal units like registries and `df -H`: `999 B`, `1.5 kB`, `23.4 MB`.
pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit_idx = 0;
    while value >= 999.95 && unit_idx + 1 < UNITS.len() {
        value /= 1000.0;
        unit_idx += 1;
    }
    format!("{value:.1} {}", UNITS[unit_idx])
}

/// The command as one would type it: arguments with spaces or quotes are quoted.
pub fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|arg| {
            let is_plain =
                !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if is_plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Cuts `text` to at most `max_chars` characters, marking the cut with `…`.
pub fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_NS: i64 = 1_000_000_000;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(951_782_400 * SECOND_NS), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_rfc3339(1_709_211_909 * SECOND_NS + 123_456_789), "2024-02-29T13:05:09.123Z");
        assert_eq!(format_rfc3339(1_735_689_599 * SECOND_NS + 999_999_999), "2024-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(4_102_444_800 * SECOND_NS), "2100-01-01T00:00:00.000Z");
        // Before the shared Timestamp this printed 1969-12-31T23:59:59.999Z; no berthd sends it.
        assert_eq!(format_rfc3339(-1), "-1 ns (before 1970, not a real time)");
    }

    #[test]
    fn ago_uses_the_largest_whole_unit() {
        let now_ns = 10_000_000 * SECOND_NS;
        assert_eq!(format_ago(0, now_ns), "-");
        assert_eq!(format_ago(now_ns + 5 * SECOND_NS, now_ns), "0s ago");
        assert_eq!(format_ago(now_ns - 59 * SECOND_NS, now_ns), "59s ago");
        assert_eq!(format_ago(now_ns - 60 * SECOND_NS, now_ns), "1m ago");
        assert_eq!(format_ago(now_ns - 3600 * SECOND_NS, now_ns), "1h ago");
        assert_eq!(format_ago(now_ns - 3 * 86_400 * SECOND_NS, now_ns), "3d ago");
    }

    #[test]
    fn sizes_use_decimal_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1500), "1.5 kB");
        assert_eq!(human_size(23_400_000), "23.4 MB");
        assert_eq!(human_size(999_999_999), "1.0 GB");
    }

    #[test]
    fn commands_are_quoted_and_cut_for_the_command_column() {
        let args: Vec<String> = ["sh", "-c", "echo 'hi' && sleep 1"].map(String::from).to_vec();
        assert_eq!(shell_join(&args), r"sh -c 'echo '\''hi'\'' && sleep 1'");
        assert_eq!(shell_join(&[String::new()]), "''");
        assert_eq!(truncate_chars("abcdef", 6), "abcdef");
        assert_eq!(truncate_chars("abcdefg", 6), "abcde…");
    }

    #[test]
    fn tables_align_columns_by_characters() {
        let rows = vec![
            vec!["web".to_string(), "nginx…".to_string(), "x".to_string()],
            vec!["database".to_string(), "pg".to_string(), String::new()],
        ];
        assert_eq!(
            format_table(&["ID", "IMAGE", "STATUS"], &rows),
            "ID         IMAGE    STATUS\nweb        nginx…   x\ndatabase   pg\n"
        );
    }

    #[test]
    fn batches_fail_with_a_summary_only_when_several_targets_were_given() {
        assert_eq!(format!("{:?}", finish_batch(0, 3).unwrap()), format!("{:?}", ExitCode::SUCCESS));
        assert_eq!(format!("{:?}", finish_batch(1, 1).unwrap()), format!("{:?}", ExitCode::from(1)));
        assert_eq!(finish_batch(2, 3).unwrap_err().to_string(), "2 of 3 failed (see above)");
    }
}
