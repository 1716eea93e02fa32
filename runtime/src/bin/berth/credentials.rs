//! The caller's registry credentials file, `$XDG_CONFIG_HOME/berth/auth.json` (else
//! `~/.config/berth/auth.json`), in Docker's `{"auths": {HOST: {"auth": base64(user:password)}}}`
//! shape. `berth login` writes it 0600 in a 0700 directory; a file that others may read is
//! refused rather than used, and berthd never sees it: the CLI sends the one host's credentials
//! with the pull.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use base64::Engine as _;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot find your config directory: neither XDG_CONFIG_HOME nor HOME is set; set one of them")]
    NoConfigDir,
    #[error("{} may be read by other users (mode {mode:o}); make it private with `chmod 600 {}`, or remove it and log in again", path.display(), path.display())]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("cannot {action} {}: {reason}; check its permissions, or remove it and log in again", path.display())]
    Io { action: &'static str, path: PathBuf, reason: String },
    #[error("{} is not a berth credentials file ({reason}); remove it and log in again", path.display())]
    Invalid { path: PathBuf, reason: String },
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AuthEntry {
    auth: String,
}

/// A user name and password. Debug shows neither.
pub struct SavedCredentials {
    pub username: String,
    pub password: String,
}

pub fn credentials_path() -> Result<PathBuf, CredentialsError> {
    let config_dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").filter(|dir| !dir.is_empty()).ok_or(CredentialsError::NoConfigDir)?)
                .join(".config")
        }
    };
    Ok(config_dir.join("berth").join("auth.json"))
}

fn load() -> Result<(PathBuf, AuthFile), CredentialsError> {
    let path = credentials_path()?;
    let io = |action, reason: std::io::Error| CredentialsError::Io {
        action,
        path: path.clone(),
        reason: reason.to_string(),
    };
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((path, AuthFile::default())),
        Err(error) => return Err(io("read", error)),
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::NotPrivate { path, mode });
    }
    let text = std::fs::read(&path).map_err(|error| io("read", error))?;
    let file = serde_json::from_slice(&text)
        .map_err(|error| CredentialsError::Invalid { path: path.clone(), reason: error.to_string() })?;
    Ok((path, file))
}

fn save(path: &PathBuf, file: &AuthFile) -> Result<(), CredentialsError> {
    let io = |action, reason: std::io::Error| CredentialsError::Io {
        action,
        path: path.clone(),
        reason: reason.to_string(),
    };
    let dir = path.parent().expect("the credentials file is in a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| io("create the directory of", error))?;
    let temporary = dir.join(format!(".auth.json.{}", std::process::id()));
    let text = serde_json::to_vec_pretty(file).expect("the credentials encode");
    let written = (|| {
        let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        out.write_all(&text)?;
        out.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(io("write", error));
    }
    Ok(())
}

/// The saved credentials for `host`, if any.
pub fn lookup(host: &str) -> Result<Option<SavedCredentials>, CredentialsError> {
    let (path, file) = load()?;
    let Some(entry) = file.auths.get(host) else { return Ok(None) };
    let invalid = |reason: &str| CredentialsError::Invalid { path: path.clone(), reason: format!("{host}: {reason}") };
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(&entry.auth).map_err(|_| invalid("auth is not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| invalid("auth is not UTF-8"))?;
    let (username, password) = text.split_once(':').ok_or_else(|| invalid("auth is not USER:PASSWORD"))?;
    Ok(Some(SavedCredentials { username: username.to_string(), password: password.to_string() }))
}

pub fn store(host: &str, credentials: &SavedCredentials) -> Result<PathBuf, CredentialsError> {
    let (path, mut file) = load()?;
    let pair = format!("{}:{}", credentials.username, credentials.password);
    file.auths.insert(host.to_string(), AuthEntry { auth: base64::engine::general_purpose::STANDARD.encode(pair) });
    save(&path, &file)?;
    Ok(path)
}

/// Removes `host`'s credentials; false if there were none.
pub fn remove(host: &str) -> Result<bool, CredentialsError> {
    let (path, mut file) = load()?;
    if file.auths.remove(host).is_none() {
        return Ok(false);
    }
    save(&path, &file)?;
    Ok(true)
}
