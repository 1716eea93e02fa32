//! The one error enum of berth-replay's library part: each variant says what went wrong and
//! what the user can do about it. (Hand-written Display so the tool adds no dependency.)

use std::fmt;
use std::path::PathBuf;

use berth_log::LogError;
use berth_projections::DecodeError;

#[derive(Debug)]
pub enum ReplayError {
    /// The log directory does not exist.
    NoLog { dir: PathBuf },
    /// The directory exists but holds no segment files.
    NotALog { dir: PathBuf },
    /// The log, or a directory above it, is not readable by this user (berthd keeps it root's).
    PermissionDenied { path: PathBuf },
    /// `open_read_only` refused the directory (damage or an i/o error).
    Open { dir: PathBuf, source: LogError },
    /// Reading a record failed part-way (damage found while reading).
    Read { dir: PathBuf, source: LogError },
    /// A record passed its checksum but its payload is not a berth envelope this build reads.
    Decode { seq: u64, source: DecodeError },
    /// `--at SEQ` (or `--from`/`--to`) points past the last record.
    SeqPastEnd { requested: u64, last_seq: u64 },
    /// `--from` is after `--to`.
    EmptyRange { from: u64, to: u64 },
    /// `history` found no event about this container.
    ContainerNotFound { namespace: String, id: String },
    /// A key file that cannot be trusted or does not open what it should.
    KeyRefused { path: PathBuf, reason: String },
    /// `forget` was asked for something it must not do (berthd running, container alive, no key directory).
    ForgetRefused { reason: String },
    /// `forget` could not delete the key file.
    ForgetFailed { path: PathBuf, source: std::io::Error },
    /// Writing the output failed (a closed pipe is handled by the caller).
    Output(std::io::Error),
    /// `verify --checkpoints DIR`: DIR cannot be listed.
    NoCheckpoints { dir: PathBuf, source: std::io::Error },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::NoLog { dir } => write!(
                formatter,
                "no log at {}: pass --root DIR (berthd's root, the log is DIR/log) or --log DIR (the log directory itself)",
                dir.display()
            ),
            ReplayError::NotALog { dir } => write!(
                formatter,
                "{} holds no log segment files (*.seg), so it is not a berth log directory: pass --root DIR (the log is DIR/log) or --log DIR",
                dir.display()
            ),
            ReplayError::PermissionDenied { path } => write!(
                formatter,
                "permission denied reading {}: berth-replay needs root (run it with sudo), or read permission on the log directory, its segments and the directories above them; berthd keeps the log root's alone because its records hold containers' environments",
                path.display()
            ),
            ReplayError::Open { dir, source: source @ (LogError::Corruption { .. } | LogError::ChainBroken { .. }) } => write!(
                formatter,
                "the log at {} is damaged and cannot be replayed: {}; run `berth-replay verify --log {}` to see how much of it is intact, then restore it from a trusted copy",
                dir.display(),
                describe_log_damage(source),
                dir.display()
            ),
            ReplayError::Open { dir, source } => write!(formatter, "cannot open the log at {}: {source}", dir.display()),
            ReplayError::Read { dir, source } => write!(
                formatter,
                "reading the log at {} failed: {}; run `berth-replay verify --log {}` to see how much of it is intact",
                dir.display(),
                describe_log_damage(source),
                dir.display()
            ),
            ReplayError::Decode { seq, source } => write!(formatter, "record seq {seq}: {source}"),
            ReplayError::SeqPastEnd { requested, last_seq } => write!(
                formatter,
                "seq {requested} is past the end of the log (its last seq is {last_seq}); pass a seq of at most {last_seq}"
            ),
            ReplayError::EmptyRange { from, to } => {
                write!(formatter, "--from {from} is after --to {to}, so nothing can match; swap them")
            }
            ReplayError::ContainerNotFound { namespace, id } => write!(
                formatter,
                "no event in this log is about container {id} in namespace {namespace}; list the containers with `berth-replay state`, or pass --namespace if it lives in another one"
            ),
            ReplayError::KeyRefused { path, reason } => write!(formatter, "key file {} {reason}", path.display()),
            ReplayError::ForgetRefused { reason } => write!(formatter, "{reason}"),
            ReplayError::ForgetFailed { path, source } => {
                write!(formatter, "cannot delete key file {}: {source}; run berth-replay as root", path.display())
            }
            ReplayError::Output(source) => write!(formatter, "cannot write the output: {source}; check where stdout goes"),
            ReplayError::NoCheckpoints { dir, source } => write!(
                formatter,
                "cannot list checkpoints in {}: {source}; pass berthd's root or its checkpoints directory to --checkpoints",
                dir.display()
            ),
        }
    }
}

/// Where and what the damage is, without berth-log's advice to API callers (which names
/// library options, not what a user of this tool can do).
pub fn describe_log_damage(error: &LogError) -> String {
    match error {
        LogError::Corruption { segment, offset, reason } => {
            format!("corruption in {} at offset {offset}: {reason}", segment.display())
        }
        LogError::ChainBroken { seq, segment, offset, reason } => {
            format!("hash chain broken at seq {seq} in {} at offset {offset}: {reason}", segment.display())
        }
        other => other.to_string(),
    }
}

impl std::error::Error for ReplayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplayError::Open { source, .. } | ReplayError::Read { source, .. } => Some(source),
            ReplayError::Decode { source, .. } => Some(source),
            ReplayError::Output(source) | ReplayError::NoCheckpoints { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<std::io::Error> for ReplayError {
    fn from(source: std::io::Error) -> ReplayError {
        ReplayError::Output(source)
    }
}

impl ReplayError {
    /// `Open`, or `PermissionDenied` when opening failed for want of permission.
    pub fn open(dir: &std::path::Path, source: LogError) -> ReplayError {
        match source {
            LogError::Io { path, source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                ReplayError::PermissionDenied { path }
            }
            source => ReplayError::Open { dir: dir.to_path_buf(), source },
        }
    }

    /// True when stdout was closed by the reader (`berth-replay events | head`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ReplayError::Output(source) if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}
