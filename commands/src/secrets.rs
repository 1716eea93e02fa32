//! Forgettable secrets: `ForgetSecrets` (→ `SecretsForgotten`, recorded just before berthd
//! deletes a container's key file) and the check a sealing command makes of the key it was given
//! (docs/secrets.md).

use berth_projections::{Event, Sealer, State};

use crate::CommandError;

/// Record that a container's key is being deleted. Refused while the container exists, since
/// berthd needs the key to start its task again.
pub struct ForgetSecrets {
    pub container_id: String,
    pub key_id: String,
    pub reason: String,
    /// The key file is already gone (deleted by `berth-replay forget` or by hand while berthd
    /// was down): the record only says so, even for a container that still exists.
    pub key_missing: bool,
}

impl ForgetSecrets {
    pub fn decide(&self, state: &State, namespace: &str) -> Result<Vec<Event>, CommandError> {
        let id = &self.container_id;
        let Some(key_use) = state.secret_key(namespace, id).filter(|key_use| key_use.key_id == self.key_id) else {
            return Err(CommandError::NotFound(format!(
                "no record of container {id:?} in namespace {namespace:?} sealed anything with key {:?}: nothing to forget",
                self.key_id
            )));
        };
        if key_use.forgotten_seq.is_some() {
            return Err(CommandError::AlreadyExists(format!(
                "the secrets of container {id:?} were already forgotten: nothing to do"
            )));
        }
        if state.container(namespace, id).is_some() && !self.key_missing {
            return Err(CommandError::FailedPrecondition(format!(
                "container {id:?} still exists and needs its key to start: remove it first with `berth rm {id}`"
            )));
        }
        Ok(vec![Event::SecretsForgotten {
            container_id: id.clone(),
            key_id: self.key_id.clone(),
            reason: self.reason.clone(),
        }])
    }
}

/// Refuses a key recorded as forgotten for this container: berthd read it just before another
/// request forgot it, and its file is gone or going.
pub(crate) fn check_sealer(
    state: &State,
    namespace: &str,
    container_id: &str,
    sealer: Option<&Sealer>,
) -> Result<(), CommandError> {
    let Some(sealer) = sealer else { return Ok(()) };
    let forgotten = state
        .secret_key(namespace, container_id)
        .is_some_and(|key_use| key_use.key_id == sealer.key.key_id && key_use.forgotten_seq.is_some());
    if forgotten {
        return Err(CommandError::FailedPrecondition(format!(
            "the key of container {container_id:?} was forgotten while this request was on its way: send it again"
        )));
    }
    Ok(())
}
