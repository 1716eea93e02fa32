//! What the executor removes on its own once the log says so: a volume's directory after its
//! `VolumeRemoved`, a removed container's secret key (`forget_on_remove`), and a `--rm` container (`auto_remove`) after its task exited — that removal
//! recorded like a client's (`TaskDeleteRequested` … `ContainerDeleted`), with the daemon as its
//! origin; and the wait that keeps a freed layer from being collected while a deleted task's
//! rootfs still has it mounted.

use std::sync::Arc;

use berth_commands::{Command, DeleteContainer, DeleteTask};
use berth_log::Seq;
use berth_projections::{Origin, TaskStatus};

use crate::secrets::forget;
use crate::tasks::executor::Executor;
use crate::tasks::mounts;
use crate::tasks::removals_after_delete::RemovalsAfterDelete;

/// How long a freed layer's collection waits for overlays that still use it.
const LAYER_UNMOUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How soon it looks again at first; each look waits twice as long, up to a second.
const LAYER_UNMOUNT_FIRST_POLL: std::time::Duration = std::time::Duration::from_millis(20);

impl Executor {
    /// The removals `Containers/Delete` asks to have recorded with a task's deletion.
    pub fn removals_after_delete(&self) -> Arc<RemovalsAfterDelete> {
        Arc::clone(&self.removals_after_delete)
    }

    /// Delete a removed volume's directory, unless a volume of that name was created again
    /// meanwhile (its directory is then made afresh at first use, or is already in use).
    pub(super) fn remove_volume(self: &Arc<Self>, namespace: &str, name: &str) {
        let executor = Arc::clone(self);
        let namespace = namespace.to_string();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            if executor.store.state().volume(&namespace, &name).is_some() {
                return;
            }
            if let Err(error) = mounts::remove_volume_dir(&executor.layout, &namespace, &name) {
                tracing::warn!(namespace, name, %error, "removing the volume's directory failed");
            }
        });
    }

    /// `[secrets] forget_on_remove`: once a container's removal is durable, record its key
    /// forgotten and delete it (`secrets::forget`).
    pub(super) fn forget_secrets_if_asked(self: &Arc<Self>, namespace: &str, container_id: &str, removed_seq: Seq) {
        if !self.secrets.forget_on_remove {
            return;
        }
        let executor = Arc::clone(self);
        let namespace = namespace.to_string();
        let container_id = container_id.to_string();
        tokio::spawn(async move {
            forget::forget_removed(&executor.store, &executor.keys, &namespace, &container_id, removed_seq.get()).await;
        });
    }

    /// Waits while a mounted overlay still uses a layer the log freed: a task deleted in the
    /// same record as its container's removal has its rootfs unmounted by its worker just
    /// after that record, while the collection the record asks for may start at once. After
    /// [`LAYER_UNMOUNT_WAIT`] the layer is collected anyway, as before.
    pub(super) async fn wait_while_layer_mounted(&self, chain_id: &str) {
        let deadline = tokio::time::Instant::now() + LAYER_UNMOUNT_WAIT;
        let mut poll = LAYER_UNMOUNT_FIRST_POLL;
        loop {
            let snapshotter = Arc::clone(&self.snapshotter);
            let chain = chain_id.to_string();
            let in_use =
                tokio::task::spawn_blocking(move || snapshotter.committed_in_use(&chain)).await.unwrap_or(false);
            if !in_use {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(chain_id, "a freed layer is still mounted; collecting it anyway");
                return;
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(std::time::Duration::from_secs(1));
        }
    }

    /// For a container created with `auto_remove`: delete its task, then the container with its
    /// anonymous volumes. Each step is an ordinary command, so a client that removed it first
    /// just makes the next step a refusal, logged and harmless.
    pub(super) fn auto_remove_if_asked(self: &Arc<Self>, namespace: &str, container_id: &str) {
        let asked =
            self.store.state().container(namespace, container_id).is_some_and(|container| container.record.auto_remove);
        if !asked {
            return;
        }
        let executor = Arc::clone(self);
        let namespace = namespace.to_string();
        let container_id = container_id.to_string();
        tokio::spawn(async move {
            let origin = Origin::Daemon { reason: "auto-remove (--rm) after exit".to_string(), answers: None };
            let delete_task = Command::DeleteTask(DeleteTask { container_id: container_id.clone(), force: false });
            if let Err(error) = executor.store.submit(&namespace, origin.clone(), delete_task).await {
                tracing::warn!(namespace, container_id, %error, "auto-remove: deleting the task was refused");
                return;
            }
            let task_gone = executor
                .store
                .wait_until(|state| match state.container(&namespace, &container_id).map(|c| c.task.as_ref()) {
                    None => Some(false),
                    Some(None) => Some(true),
                    // Still being deleted: wait; anything else means the delete failed.
                    Some(Some(task)) if task.status == TaskStatus::Deleting => None,
                    Some(Some(_)) => Some(false),
                })
                .await;
            if !task_gone {
                tracing::warn!(namespace, container_id, "auto-remove: the task was not deleted; the container stays");
                return;
            }
            let delete_container =
                Command::DeleteContainer(DeleteContainer { id: container_id.clone(), remove_volumes: true });
            if let Err(error) = executor.store.submit(&namespace, origin, delete_container).await {
                tracing::warn!(namespace, container_id, %error, "auto-remove: deleting the container was refused");
            }
        });
    }
}
