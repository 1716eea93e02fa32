//! What a command can answer instead of events. Each kind maps to one gRPC code at the edge
//! (runtime's `status_from_command_error`); messages are lower-case and say what to do.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
}

impl CommandError {
    /// The kind in snake case (`not_found`, …), for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CommandError::NotFound(_) => "not_found",
            CommandError::AlreadyExists(_) => "already_exists",
            CommandError::FailedPrecondition(_) => "failed_precondition",
            CommandError::InvalidArgument(_) => "invalid_argument",
        }
    }
}
