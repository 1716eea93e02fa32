//! Key files: `<root>/keys/<namespace>/<container>.key`, 0600 in 0700 directories, one JSON
//! object (`SecretKey::to_file_bytes`). A key is made from the OS's randomness and written
//! durably (fsync, rename, fsync of the directory) before the record sealed with it is
//! appended; one a crash left unused is deleted by the start-up sweep (`forget.rs`). A key file
//! or directory others may read or write, a symlink, or a file that is not what berth wrote for
//! that container is refused with an error naming the file and what to do.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_projections::{ContainerRecord, ExecProcess, Sealer, SecretError, SecretKey};
use rand::RngCore;

use crate::sys::fs::{create_private_dir_all, remove_file_durably, write_file_durably};

const KEY_SUFFIX: &str = ".key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path} {source}")]
    Refused { path: PathBuf, source: SecretError },
    #[error("key directory {path} may be read or written by others (mode {mode:04o}): make it `chmod 0700 {path}` if you trust the keys in it")]
    OpenDirectory { path: PathBuf, mode: u32 },
    #[error("key file {path} is a symlink or not a regular file: berth writes plain files; remove it")]
    NotAFile { path: PathBuf },
    #[error("cannot {action} key file {path}: {error}")]
    Io { action: &'static str, path: PathBuf, error: std::io::Error },
}

/// The key directory, and the lock under which a key is read or made, so two requests for one
/// container never make two keys. Under the lock: the namespaces whose key directory this
/// process has made durable (berth never removes one), so each container's key costs the
/// fsyncs of its own file and directory only.
pub struct KeyStore {
    dir: PathBuf,
    owner: u32,
    making: Mutex<HashSet<String>>,
}

impl KeyStore {
    pub fn new(dir: PathBuf) -> KeyStore {
        KeyStore { dir, owner: nix::unistd::geteuid().as_raw(), making: Mutex::new(HashSet::new()) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn namespace_dir(&self, namespace: &str) -> PathBuf {
        self.dir.join(namespace)
    }

    pub fn key_path(&self, namespace: &str, container_id: &str) -> PathBuf {
        self.namespace_dir(namespace).join(format!("{container_id}{KEY_SUFFIX}"))
    }

    /// The container's key, made and written durably if it has none. An existing key is reused:
    /// a removed container's key kept for its history (`forget_on_remove = false`) seals the
    /// values of a new container of the same id too.
    pub fn get_or_make(&self, namespace: &str, container_id: &str) -> Result<SecretKey, KeyError> {
        let mut durable_namespaces = self.making.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(key) = self.load(namespace, container_id)? {
            return Ok(key);
        }
        let mut random = [0u8; berth_projections::sealed::NEW_KEY_RANDOM_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let key = SecretKey::generate(namespace, container_id, random);
        let namespace_dir = self.namespace_dir(namespace);
        let path = self.key_path(namespace, container_id);
        let io = |action| {
            let path = path.clone();
            move |error| KeyError::Io { action, path, error }
        };
        create_private_dir_all(&namespace_dir).map_err(io("create the directory of"))?;
        // The directories may be new: their entries must be durable before the key's is. Once
        // per namespace and process: made durable once, they stay so.
        if !durable_namespaces.contains(namespace) {
            for dir in [self.dir.parent().unwrap_or(&self.dir), &self.dir] {
                crate::sys::fs::sync_dir(dir).map_err(io("make durable the directory of"))?;
            }
            durable_namespaces.insert(namespace.to_string());
        }
        write_file_durably(&namespace_dir, &format!("{container_id}{KEY_SUFFIX}"), &key.to_file_bytes())
            .map_err(io("write"))?;
        Ok(key)
    }

    /// The container's key, `None` when it has none (never made, or forgotten).
    pub fn load(&self, namespace: &str, container_id: &str) -> Result<Option<SecretKey>, KeyError> {
        let path = self.key_path(namespace, container_id);
        for dir in [&self.dir, &self.namespace_dir(namespace)] {
            match std::fs::metadata(dir) {
                Ok(metadata) if metadata.mode() & 0o077 != 0 => {
                    return Err(KeyError::OpenDirectory { path: dir.clone(), mode: metadata.mode() & 0o7777 })
                }
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(KeyError::Io { action: "read the directory of", path, error }),
            }
        }
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(KeyError::Io { action: "read", path, error }),
        };
        if !metadata.file_type().is_file() {
            return Err(KeyError::NotAFile { path });
        }
        let refused = |source| KeyError::Refused { path: path.clone(), source };
        SecretKey::check_file_mode(metadata.mode(), metadata.uid(), self.owner).map_err(refused)?;
        let text = std::fs::read(&path).map_err(|error| KeyError::Io { action: "read", path: path.clone(), error })?;
        SecretKey::from_file_bytes(namespace, container_id, &text).map(Some).map_err(refused)
    }

    /// A container's environment in clear, for the bundle's spec and `berth inspect`: sealed
    /// values opened with its key, `<forgotten>` once the key is gone. The record itself (and so
    /// the `State`) keeps only the sealed form.
    pub fn container_environment(&self, namespace: &str, record: &ContainerRecord) -> Result<Vec<String>, KeyError> {
        let key = if record.sealed_env.is_empty() { None } else { self.load(namespace, &record.id)? };
        record.environment(namespace, key.as_ref()).map_err(|source| self.refused(namespace, &record.id, source))
    }

    /// An exec's own environment entries in clear, opened with its container's key.
    pub fn exec_environment(
        &self,
        namespace: &str,
        container_id: &str,
        process: &ExecProcess,
    ) -> Result<Vec<String>, KeyError> {
        let key = if process.sealed_env.is_empty() { None } else { self.load(namespace, container_id)? };
        process
            .environment(namespace, container_id, key.as_ref())
            .map_err(|source| self.refused(namespace, container_id, source))
    }

    fn refused(&self, namespace: &str, container_id: &str, source: SecretError) -> KeyError {
        KeyError::Refused { path: self.key_path(namespace, container_id), source }
    }

    /// A sealer for `key`, seeded from the OS's randomness.
    pub fn sealer(key: SecretKey) -> Sealer {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Sealer { key, seed }
    }

    /// Deletes the container's key file, durably; a missing one is already forgotten.
    pub fn remove(&self, namespace: &str, container_id: &str) -> Result<(), KeyError> {
        let _making = self.making.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        remove_file_durably(&self.namespace_dir(namespace), &format!("{container_id}{KEY_SUFFIX}"))
            .map_err(|error| KeyError::Io { action: "delete", path: self.key_path(namespace, container_id), error })
    }

    /// Every (namespace, container id) with a key file, for the start-up sweep.
    pub fn list(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for namespace in crate::sys::fs::list_dir_names(&self.dir) {
            let Ok(entries) = std::fs::read_dir(self.namespace_dir(&namespace)) else { continue };
            for entry in entries.filter_map(Result::ok) {
                let Ok(name) = entry.file_name().into_string() else { continue };
                if let Some(container_id) = name.strip_suffix(KEY_SUFFIX).filter(|id| !id.starts_with('.')) {
                    found.push((namespace.clone(), container_id.to_string()));
                }
            }
        }
        found.sort();
        found
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_key_is_made_once_private_and_read_back() {
        let root = tempfile::tempdir().unwrap();
        let keys = KeyStore::new(root.path().join("keys"));
        let key = keys.get_or_make("default", "web").unwrap();
        assert_eq!(keys.get_or_make("default", "web").unwrap(), key);
        let path = keys.key_path("default", "web");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(std::fs::metadata(root.path().join("keys/default")).unwrap().mode() & 0o7777, 0o700);
        assert_eq!(keys.list(), [("default".to_string(), "web".to_string())]);
        keys.remove("default", "web").unwrap();
        assert!(keys.load("default", "web").unwrap().is_none());
        assert_ne!(keys.get_or_make("default", "web").unwrap().key_id, key.key_id);
    }

    #[test]
    fn open_files_and_directories_and_symlinks_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let keys = KeyStore::new(root.path().join("keys"));
        keys.get_or_make("default", "web").unwrap();
        let path = keys.key_path("default", "web");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = keys.load("default", "web").unwrap_err().to_string();
        assert!(error.contains("chmod 0600") && error.contains("web.key"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dir = root.path().join("keys/default");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let error = keys.load("default", "web").unwrap_err().to_string();
        assert!(error.contains("chmod 0700"), "{error}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::rename(&path, dir.join("real")).unwrap();
        std::os::unix::fs::symlink(dir.join("real"), &path).unwrap();
        assert!(matches!(keys.load("default", "web"), Err(KeyError::NotAFile { .. })));
    }
}
