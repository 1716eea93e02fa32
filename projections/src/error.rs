//! Errors of the projections crate: only decoding (of a record or a checkpoint) can fail;
//! folding never does.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record payload is not a berth envelope ({reason}); the log may be damaged: run `berth-replay verify`")]
    Malformed { reason: String },
    #[error("record was written with event schema {found}, this build reads up to {supported}: upgrade berth to read this log")]
    NewerSchema { found: u16, supported: u16 },
}

/// Why a checkpoint file cannot be used. Start-up falls back to an older checkpoint or a full
/// replay on any of them; none means the log is damaged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("it is {len} bytes, shorter than any checkpoint (a write was cut off)")]
    TooShort { len: usize },
    #[error("it does not start with the checkpoint magic (not a berth checkpoint)")]
    BadMagic,
    #[error("its checkpoint format version is {found}, this build writes and reads {supported}")]
    FormatVersion { found: u32, supported: u32 },
    #[error("its length field says {state_len} bytes of state but the file holds {available}")]
    BadLength { state_len: u64, available: usize },
    #[error("its checksum does not match its contents (damaged or edited)")]
    Checksum,
    #[error("it was written with event schema {found}, this build records schema {running}")]
    Schema { found: u16, running: u16 },
    #[error("it was written with state layout {found}, this build folds layout {running}")]
    StateLayout { found: u16, running: u16 },
    #[error("its state cannot be decoded ({reason})")]
    Malformed { reason: String },
    #[error("its header covers seq {header} but its state was folded to seq {state}")]
    SeqMismatch { header: u64, state: u64 },
}
