//! RecordDaemonEvent: a fact about the daemon itself that answers no intent and concerns no
//! live task — it started (and how far it replayed), it removed something no projection
//! accounted for, it wrote a projection checkpoint, or it released a deleted task's network.
//! Only those events are accepted, one per record.

use berth_projections::{Event, State};

use crate::CommandError;

pub struct RecordDaemonEvent {
    pub event: Event,
}

impl RecordDaemonEvent {
    pub fn decide(&self, _state: &State) -> Result<Vec<Event>, CommandError> {
        match &self.event {
            Event::DaemonStarted { .. }
            | Event::OrphanRemoved { .. }
            | Event::CheckpointWritten { .. }
            | Event::NetworkReleased { .. } => Ok(vec![self.event.clone()]),
            other => Err(CommandError::InvalidArgument(format!(
                "{} is not a daemon event; task outcomes are recorded with RecordOutcome",
                other.kind()
            ))),
        }
    }
}
