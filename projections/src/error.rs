//! Errors of the projections crate: only decoding can fail; folding never does.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record payload is not a berth envelope ({reason}); the log may be damaged: run `berth-replay verify`")]
    Malformed { reason: String },
    #[error("record was written with event schema {found}, this build reads up to {supported}: upgrade berth to read this log")]
    NewerSchema { found: u16, supported: u16 },
}
