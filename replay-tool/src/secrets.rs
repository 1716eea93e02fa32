//! Sealed environment values for the forensic tool: opened with the key files in `--keys DIR`
//! (default `<root>/keys`), shown as `<forgotten>` where the key is gone, and as `<sealed>` when
//! no key directory is known (`--log` alone). A key file others may read or write, or one that
//! does not open what it should, stops the command with an error saying so. Only reads.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_projections::{open_env, ContainerRecord, Event, ExecProcess, SealedEnv, SecretKey};
use serde_json::json;

use crate::error::ReplayError;

/// Shown for a sealed value when berth-replay was not told where the keys are.
pub const SEALED: &str = "<sealed>";

/// Where the containers' key files are, if known.
pub struct KeyDir {
    dir: Option<PathBuf>,
}

impl KeyDir {
    pub fn new(dir: Option<PathBuf>) -> KeyDir {
        KeyDir { dir }
    }

    pub fn path(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The key file of a container (the layout berthd writes: `<dir>/<namespace>/<id>.key`).
    pub fn key_path(dir: &Path, namespace: &str, container_id: &str) -> PathBuf {
        dir.join(namespace).join(format!("{container_id}.key"))
    }

    fn key(&self, dir: &Path, namespace: &str, container_id: &str) -> Result<Option<SecretKey>, ReplayError> {
        let path = KeyDir::key_path(dir, namespace, container_id);
        let refused = |reason: String| ReplayError::KeyRefused { path: path.clone(), reason };
        let metadata = match std::fs::symlink_metadata(&path) {
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(refused(format!("cannot be read: {error}"))),
            Ok(metadata) => metadata,
        };
        if !metadata.file_type().is_file() {
            return Err(refused("is a symlink or not a regular file: berth writes plain files".to_string()));
        }
        for parent in [path.parent().unwrap_or(dir), dir] {
            let mode = std::fs::metadata(parent).map(|metadata| metadata.mode()).unwrap_or(0);
            if mode & 0o077 != 0 {
                let reason = format!("is in {} which others may read or write (mode {:04o}): `chmod 0700` it if you trust the keys in it", parent.display(), mode & 0o7777);
                return Err(refused(reason));
            }
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let owner = unsafe { libc::geteuid() };
        SecretKey::check_file_mode(metadata.mode(), metadata.uid(), owner)
            .map_err(|error| refused(error.to_string()))?;
        let text = std::fs::read(&path).map_err(|error| refused(format!("cannot be read: {error}")))?;
        SecretKey::from_file_bytes(namespace, container_id, &text).map(Some).map_err(|error| refused(error.to_string()))
    }

    fn open(&self, namespace: &str, container_id: &str, sealed: &[SealedEnv]) -> Result<Vec<String>, ReplayError> {
        if sealed.is_empty() {
            return Ok(Vec::new());
        }
        let Some(dir) = &self.dir else {
            return Ok(sealed.iter().map(|entry| format!("{}={SEALED}", entry.name)).collect());
        };
        let key = self.key(dir, namespace, container_id)?;
        open_env(key.as_ref(), namespace, container_id, sealed).map_err(|error| ReplayError::KeyRefused {
            path: KeyDir::key_path(dir, namespace, container_id),
            reason: error.to_string(),
        })
    }

    /// A container's environment as recorded: clear entries of older records, sealed ones
    /// opened (or `<forgotten>`, `<sealed>`).
    pub fn container_env(&self, namespace: &str, record: &ContainerRecord) -> Result<Vec<String>, ReplayError> {
        let mut env = record.env.clone();
        env.extend(self.open(namespace, &record.id, &record.sealed_env)?);
        Ok(env)
    }

    pub fn exec_env(
        &self,
        namespace: &str,
        container_id: &str,
        process: &ExecProcess,
    ) -> Result<Vec<String>, ReplayError> {
        let mut env = process.env.clone();
        env.extend(self.open(namespace, container_id, &process.sealed_env)?);
        Ok(env)
    }

    /// What `history` adds to an event's line: the environment a container was created with,
    /// an exec's sealed environment (its clear one is already in `describe_event`).
    pub fn env_note(&self, namespace: &str, event: &Event) -> Result<String, ReplayError> {
        let env = match event {
            Event::ContainerCreated { container } => self.container_env(namespace, container)?,
            Event::ExecRequested { container_id, process, .. } => {
                self.open(namespace, container_id, &process.sealed_env)?
            }
            _ => Vec::new(),
        };
        Ok(if env.is_empty() { String::new() } else { format!(" with env {}", json!(env)) })
    }
}
