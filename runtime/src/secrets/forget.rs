//! Forgetting a container's key: `SecretsForgotten` is recorded first (the daemon as origin,
//! the reason naming the removal or the retention), then the key file is deleted; a crash in
//! between leaves a key the log calls forgotten, which the next start-up deletes. What to
//! forget is decided by [`plan`] (observe → pure plan → apply): at start-up, and every hour for
//! the retention period.
//!
//! The start-up sweep also deletes key files no record uses — a key written durably by a create
//! whose record was never appended (berthd killed in between, or the create refused). It runs
//! only before berthd serves: while it serves, a key may be written for a create not yet
//! appended, which is not dangling.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use berth_commands::{Command, ForgetSecrets};
use berth_log::Timestamp;
use berth_projections::{Origin, SecretKeys, State};

use crate::daemon::store::Store;
use crate::secrets::keys::KeyStore;
use crate::secrets::SecretsPolicy;

/// How often a running berthd looks for keys whose retention ended.
pub const RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// One key file as the sweep found it: its key id, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileSeen {
    pub namespace: String,
    pub container_id: String,
    pub key_id: Result<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Record `SecretsForgotten`, then delete the key file.
    Forget { namespace: String, container_id: String, key_id: String, reason: String, key_missing: bool },
    /// Delete a key file no unforgotten record uses (nothing to record: the log never named it,
    /// or already says it is forgotten).
    DeleteFile { namespace: String, container_id: String, why: String },
}

/// What to forget and delete. `files`: the key files found (`None` while serving: only the
/// retention is checked then).
pub fn plan(
    secret_keys: &SecretKeys,
    files: Option<&[KeyFileSeen]>,
    policy: SecretsPolicy,
    now: Timestamp,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let present: Option<BTreeSet<(&str, &str)>> =
        files.map(|files| files.iter().map(|file| (file.namespace.as_str(), file.container_id.as_str())).collect());
    for (namespace, containers) in secret_keys {
        for (container_id, key_use) in containers {
            if key_use.forgotten_seq.is_some() {
                continue;
            }
            let forget = |reason: String, key_missing: bool| Step::Forget {
                namespace: namespace.clone(),
                container_id: container_id.clone(),
                key_id: key_use.key_id.clone(),
                reason,
                key_missing,
            };
            let missing =
                present.as_ref().is_some_and(|present| !present.contains(&(namespace.as_str(), container_id.as_str())));
            if missing {
                steps.push(forget(
                    "key file missing at start-up (deleted by berth-replay forget or by hand)".into(),
                    true,
                ));
                continue;
            }
            let Some(released_at) = key_use.released_at else { continue };
            if policy.forget_on_remove {
                steps.push(forget("container removed (forget_on_remove)".into(), false));
            } else if let Some(retention) = policy.retention {
                let retention_ns = u64::try_from(retention.as_nanos()).unwrap_or(u64::MAX);
                if now.as_ns().saturating_sub(released_at.as_ns()) >= retention_ns {
                    let reason = format!("retention of {}s after removal ended", retention.as_secs());
                    steps.push(forget(reason, false));
                }
            }
        }
    }
    for file in files.unwrap_or_default() {
        let key_use = secret_keys.get(&file.namespace).and_then(|containers| containers.get(&file.container_id));
        // A file the log still needs is kept even when it cannot be read or holds another key
        // than the log names: the operator may fix or restore it, and using it says what is
        // wrong. Only a key no unforgotten record names is deleted.
        let used = key_use.is_some_and(|key_use| key_use.forgotten_seq.is_none());
        if !used {
            let why = match key_use {
                Some(key_use) if key_use.forgotten_seq.is_some() => "the log records it forgotten",
                _ => "no record uses it (a create that never reached the log)",
            };
            steps.push(Step::DeleteFile {
                namespace: file.namespace.clone(),
                container_id: file.container_id.clone(),
                why: why.to_string(),
            });
        }
    }
    steps
}

/// Every key file with its id, for [`plan`].
pub fn observe(keys: &KeyStore) -> Vec<KeyFileSeen> {
    keys.list()
        .into_iter()
        .map(|(namespace, container_id)| {
            let key_id = match keys.load(&namespace, &container_id) {
                Ok(Some(key)) => Ok(key.key_id),
                Ok(None) => Err("gone".to_string()),
                Err(error) => Err(error.to_string()),
            };
            KeyFileSeen { namespace, container_id, key_id }
        })
        .collect()
}

/// Carries out the plan: each forgetting recorded before its file is deleted.
pub async fn apply(store: &Store, keys: &KeyStore, steps: Vec<Step>) {
    for step in steps {
        match step {
            Step::Forget { namespace, container_id, key_id, reason, key_missing } => {
                let command = ForgetSecrets { container_id: container_id.clone(), key_id, reason, key_missing };
                forget(store, keys, &namespace, command).await;
            }
            Step::DeleteFile { namespace, container_id, why } => match keys.remove(&namespace, &container_id) {
                Ok(()) => tracing::info!(namespace, container_id, why, "deleted a key file"),
                Err(error) => tracing::warn!(namespace, container_id, %error, "deleting a key file failed"),
            },
        }
    }
}

/// Records the forgetting, then deletes the key file (unless it holds another key by then).
pub async fn forget(store: &Store, keys: &KeyStore, namespace: &str, command: ForgetSecrets) {
    let container_id = command.container_id.clone();
    let key_id = command.key_id.clone();
    let origin = Origin::Daemon { reason: "forget secrets".to_string(), answers: None };
    if let Err(error) = store.submit(namespace, origin, Command::ForgetSecrets(command)).await {
        tracing::warn!(namespace, container_id, %error, "forgetting a container's secrets was refused");
        return;
    }
    crate::sys::failpoint("secrets-forgotten-recorded");
    let other_key = matches!(keys.load(namespace, &container_id), Ok(Some(key)) if key.key_id != key_id);
    if other_key {
        return;
    }
    match keys.remove(namespace, &container_id) {
        Ok(()) => tracing::info!(namespace, container_id, "forgot a container's secrets"),
        Err(error) => {
            tracing::warn!(namespace, container_id, %error, "deleting a key file failed; the next start deletes it")
        }
    }
}

/// The start-up sweep: before berthd serves.
pub async fn sweep_at_start(store: &Store, keys: &KeyStore, policy: SecretsPolicy) {
    let files = observe(keys);
    let steps = plan(&store.state().secret_keys, Some(&files), policy, Timestamp::now());
    apply(store, keys, steps).await;
}

/// Forgets, every hour, the keys whose retention ended.
pub async fn retention_loop(store: Arc<Store>, keys: Arc<KeyStore>, policy: SecretsPolicy) {
    if policy.forget_on_remove || policy.retention.is_none() {
        return;
    }
    let mut interval = tokio::time::interval(RETENTION_CHECK_INTERVAL);
    loop {
        interval.tick().await;
        let steps = plan(&store.state().secret_keys, None, policy, Timestamp::now());
        apply(&store, &keys, steps).await;
    }
}

/// `forget_on_remove`: called by the executor once a `ContainerDeleted` is durable.
pub async fn forget_removed(store: &Store, keys: &KeyStore, namespace: &str, container_id: &str, removed_seq: u64) {
    let key_id = {
        let state: std::sync::RwLockReadGuard<'_, State> = store.state();
        let key_use = state.secret_key(namespace, container_id).filter(|key_use| key_use.forgotten_seq.is_none());
        match key_use {
            Some(key_use) if key_use.released_at.is_some() => key_use.key_id.clone(),
            _ => return,
        }
    };
    let reason = format!("container removed at seq {removed_seq}");
    let command = ForgetSecrets { container_id: container_id.to_string(), key_id, reason, key_missing: false };
    forget(store, keys, namespace, command).await;
}

#[cfg(test)]
mod tests {
    use berth_log::Seq;
    use berth_projections::SecretKeyUse;

    use super::*;

    fn keys(entries: &[(&str, &str, Option<u64>, Option<u64>)]) -> SecretKeys {
        let mut secret_keys = SecretKeys::new();
        for (container_id, key_id, released_at_s, forgotten_seq) in entries {
            secret_keys.entry("default".to_string()).or_default().insert(
                container_id.to_string(),
                SecretKeyUse {
                    key_id: key_id.to_string(),
                    sealed_seq: Seq(1),
                    released_at: released_at_s.map(|s| Timestamp::from_ns(s * 1_000_000_000)),
                    forgotten_seq: forgotten_seq.map(Seq),
                },
            );
        }
        secret_keys
    }

    fn file(container_id: &str, key_id: &str) -> KeyFileSeen {
        KeyFileSeen { namespace: "default".into(), container_id: container_id.into(), key_id: Ok(key_id.into()) }
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|step| match step {
                Step::Forget { container_id, key_missing, .. } => {
                    format!("forget {container_id} missing={key_missing}")
                }
                Step::DeleteFile { container_id, .. } => format!("delete {container_id}"),
            })
            .collect()
    }

    #[test]
    fn start_up_deletes_unused_and_forgotten_keys_and_keeps_live_ones() {
        let state = keys(&[("live", "a", None, None), ("gone", "b", Some(10), Some(9))]);
        let files = [file("live", "a"), file("gone", "b"), file("crashed", "c"), file("live2", "d")];
        let kept = SecretsPolicy { forget_on_remove: false, retention: None };
        let steps = plan(&state, Some(&files), kept, Timestamp::from_ns(0));
        assert_eq!(names(&steps), ["delete gone", "delete crashed", "delete live2"]);
    }

    #[test]
    fn a_removed_containers_key_is_forgotten_by_policy() {
        let state = keys(&[("removed", "a", Some(100), None)]);
        let files = [file("removed", "a")];
        let on_remove = plan(&state, Some(&files), SecretsPolicy::default(), Timestamp::from_ns(0));
        assert_eq!(names(&on_remove), ["forget removed missing=false"]);
        let retained = SecretsPolicy { forget_on_remove: false, retention: Some(Duration::from_secs(50)) };
        let early = plan(&state, None, retained, Timestamp::from_ns(149 * 1_000_000_000));
        assert!(early.is_empty());
        let late = plan(&state, None, retained, Timestamp::from_ns(150 * 1_000_000_000));
        assert_eq!(names(&late), ["forget removed missing=false"]);
    }

    #[test]
    fn a_key_deleted_offline_is_recorded_forgotten_and_a_damaged_one_is_kept() {
        let state = keys(&[("live", "a", None, None)]);
        let missing = plan(&state, Some(&[]), SecretsPolicy::default(), Timestamp::from_ns(0));
        assert_eq!(names(&missing), ["forget live missing=true"]);
        let replaced = plan(&state, Some(&[file("live", "z")]), SecretsPolicy::default(), Timestamp::from_ns(0));
        assert!(replaced.is_empty());
        let unreadable =
            KeyFileSeen { namespace: "default".into(), container_id: "live".into(), key_id: Err("mode 0644".into()) };
        assert!(plan(&state, Some(&[unreadable]), SecretsPolicy::default(), Timestamp::from_ns(0)).is_empty());
    }
}
