//! Forgettable secrets (docs/secrets.md): a key per container kept outside the log
//! (`keys.rs`: `<root>/keys/<namespace>/<container>.key`, written durably before the record that
//! uses it), and forgetting — deleting a key after recording `SecretsForgotten` — on removal,
//! after a retention period, and the start-up sweep of keys no record uses (`forget.rs`). The
//! sealing itself is `berth_projections::sealed`, pure; the API seals before a command is
//! decided, the executor opens a record's environment only to write the bundle's spec.

pub mod forget;
pub mod keys;

use std::time::Duration;

/// `[secrets]` in berthd's config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretsPolicy {
    /// Forget a container's key as soon as its removal is recorded (default true).
    pub forget_on_remove: bool,
    /// With `forget_on_remove = false`: forget a removed container's key this long after its
    /// removal (checked at start-up and every hour). `None`: keep it until `berth-replay forget`.
    pub retention: Option<Duration>,
}

impl Default for SecretsPolicy {
    fn default() -> SecretsPolicy {
        SecretsPolicy { forget_on_remove: true, retention: None }
    }
}
