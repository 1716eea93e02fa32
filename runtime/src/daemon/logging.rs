//! berthd's own log on stderr: `--log-format text|json` ([logging] format), colour only on a
//! terminal (a log file gets no escape codes), and a filter that keeps the HTTP/2 and gRPC
//! libraries at info even at `debug` — their per-frame lines would bury berthd's own — unless
//! the filter (`--log-level`, or RUST_LOG added to it) names them.

use std::io::IsTerminal;

/// How each line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; coloured on a terminal only.
    Text,
    /// One JSON object per line, with `timestamp`, `level`, `target`, `message` and the fields.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?} is not known: use \"text\" or \"json\"")),
        }
    }
}

/// Libraries that log every frame, stream or connection at debug and trace.
const CHATTY_TARGETS: &[&str] = &["h2", "hyper", "hyper_util", "tonic", "tower", "rustls", "reqwest"];

/// The filter directives: `level`, then `rust_log` (so it can ask for more), then `<target>=info`
/// for each chatty library neither of them names.
pub fn filter_directives(level: &str, rust_log: Option<&str>) -> String {
    let mut directives: Vec<String> = level
        .split(',')
        .chain(rust_log.unwrap_or("").split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    let named: Vec<String> = directives
        .iter()
        .filter_map(|directive| {
            directive.split_once('=').map(|(target, _)| target.split('[').next().unwrap_or(target).to_string())
        })
        .collect();
    for target in CHATTY_TARGETS {
        let target_named = named.iter().any(|name| name == target || name.starts_with(&format!("{target}::")));
        if !target_named {
            directives.push(format!("{target}=info"));
        }
    }
    directives.join(",")
}

/// Installs the global subscriber writing to stderr.
pub fn init(format: LogFormat, level: &str) -> Result<(), String> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = filter_directives(level, rust_log.as_deref());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).map_err(|error| {
        format!("log filter {directives:?} is not valid ({error}): give e.g. --log-level info,berth_runtime=debug")
    })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    installed.map_err(|error| format!("cannot install the logger: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatty_libraries_stay_at_info_unless_the_filter_names_them() {
        let directives = filter_directives("debug", None);
        assert!(directives.starts_with("debug,h2=info,hyper=info,"), "{directives}");
        let directives = filter_directives("info,berth_runtime=debug", Some("h2=trace,tonic::transport=debug"));
        assert!(
            directives.starts_with("info,berth_runtime=debug,h2=trace,tonic::transport=debug,hyper=info"),
            "{directives}"
        );
        assert!(!directives.contains("h2=info") && !directives.contains("tonic=info"), "{directives}");
        assert!(tracing_subscriber::EnvFilter::try_new(&directives).is_ok());
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("yaml".parse::<LogFormat>().unwrap_err().contains("\"text\" or \"json\""));
    }
}
