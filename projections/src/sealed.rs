//! Sealed values: what must be forgettable (a container's and an exec's environment values) is
//! kept in the log encrypted with a key per container that lives outside the log, so deleting
//! the key forgets the values while every record, and so every hash of the chain, stays as
//! written. docs/secrets.md says who can read what; docs/log-format.md the encoding.
//!
//! Pure: sealing takes its key and a random seed from the caller (berthd reads the key file and
//! the OS's randomness), opening takes the key the caller read. Nothing here touches a file.

use std::collections::BTreeMap;

use berth_log::{Seq, Timestamp};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

/// The key directory's name under a berth root: `<root>/keys/<namespace>/<container>.key`.
pub const KEYS_DIR_NAME: &str = "keys";
/// What a sealed value is shown as once its key is gone.
pub const FORGOTTEN: &str = "<forgotten>";
/// XChaCha20-Poly1305's key size.
pub const KEY_BYTES: usize = 32;
/// XChaCha20-Poly1305's nonce size: long enough to be drawn at random for every value.
pub const NONCE_BYTES: usize = 24;
/// Random bytes a new key is made from: its id (8) and its key (32).
pub const NEW_KEY_RANDOM_BYTES: usize = 8 + KEY_BYTES;
/// Bumped if the associated data or the key file's form ever changes.
const SEALED_VERSION: u32 = 1;

/// One value encrypted with a container's key. Hex strings, so the log's canonical reader needs
/// no byte-string form and a dump of a record stays printable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Sealed {
    /// Which key sealed it (16 hex digits, the key file's `key_id`): a key made again for a
    /// container of the same id after the old one was forgotten has another id.
    pub key_id: String,
    /// 24 random bytes, hex.
    pub nonce: String,
    /// The ciphertext with its 16-byte Poly1305 tag at the end, hex.
    pub ciphertext: String,
}

/// One environment entry with its name in clear (an auditor may see that `DB_PASSWORD` was set)
/// and its value sealed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct SealedEnv {
    pub name: String,
    pub value: Sealed,
}

/// A container's key as read from (or about to be written to) its key file.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    pub namespace: String,
    pub container_id: String,
    pub key_id: String,
    bytes: [u8; KEY_BYTES],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself: a Debug line ends up in a daemon log.
        write!(formatter, "SecretKey({}/{} id {})", self.namespace, self.container_id, self.key_id)
    }
}

/// The key file's form: one JSON object naming the container it belongs to, so a key file
/// moved to another container's name is refused rather than used.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    namespace: String,
    container: String,
    key_id: String,
    key: String,
}

/// What went wrong with a key or a sealed value. The caller adds the key file's path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("is not a berth key file ({reason}): it was changed or damaged; restore it from a backup, or delete it to forget the container's secrets")]
    Malformed { reason: String },
    #[error("belongs to container {found:?}, not {expected:?}: it was moved or replaced; put back the right file, or delete it to forget the secrets")]
    WrongContainer { found: String, expected: String },
    #[error("may be read or written by others (mode {mode:04o}, owner uid {owner}): a key must be 0600 and owned by uid {expected_owner}; fix it with `chown {expected_owner} FILE && chmod 0600 FILE` if you trust its content, else delete it")]
    NotPrivate { mode: u32, owner: u32, expected_owner: u32 },
    #[error("does not open the sealed value of {name} in container {container_id:?}: the key file was changed or replaced; restore it from a backup, or delete it to forget the container's secrets")]
    DoesNotOpen { container_id: String, name: String },
}

impl SecretKey {
    /// A new key for a container from `random` (the OS's randomness, read by the caller).
    pub fn generate(namespace: &str, container_id: &str, random: [u8; NEW_KEY_RANDOM_BYTES]) -> SecretKey {
        let mut bytes = [0u8; KEY_BYTES];
        bytes.copy_from_slice(&random[8..]);
        SecretKey {
            namespace: namespace.to_string(),
            container_id: container_id.to_string(),
            key_id: hex::encode(&random[..8]),
            bytes,
        }
    }

    /// The key file's bytes.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let file = KeyFile {
            version: SEALED_VERSION,
            namespace: self.namespace.clone(),
            container: self.container_id.clone(),
            key_id: self.key_id.clone(),
            key: hex::encode(self.bytes),
        };
        let mut text = serde_json::to_vec(&file).expect("key file encodes");
        text.push(b'\n');
        text
    }

    /// Reads a key file's bytes, refusing one that is not exactly what `to_file_bytes` writes
    /// for this container.
    pub fn from_file_bytes(namespace: &str, container_id: &str, text: &[u8]) -> Result<SecretKey, SecretError> {
        let malformed = |reason: String| SecretError::Malformed { reason };
        let file: KeyFile = serde_json::from_slice(text).map_err(|error| malformed(error.to_string()))?;
        if file.version != SEALED_VERSION {
            return Err(malformed(format!("version {} where {SEALED_VERSION} was expected", file.version)));
        }
        if file.namespace != namespace || file.container != container_id {
            return Err(SecretError::WrongContainer {
                found: format!("{}/{}", file.namespace, file.container),
                expected: format!("{namespace}/{container_id}"),
            });
        }
        let valid_id = file.key_id.len() == 16 && file.key_id.bytes().all(|byte| byte.is_ascii_hexdigit());
        if !valid_id {
            return Err(malformed(format!("key_id {:?} is not 16 hex digits", file.key_id)));
        }
        let mut bytes = [0u8; KEY_BYTES];
        hex::decode_to_slice(&file.key, &mut bytes)
            .map_err(|_| malformed(format!("key is not {} hex digits", KEY_BYTES * 2)))?;
        Ok(SecretKey { namespace: file.namespace, container_id: file.container, key_id: file.key_id, bytes })
    }

    /// Refuses a key file anyone but its owner (berthd's uid) may read or write, as ssh refuses
    /// a private key others can read: such a key may already be copied, or swapped.
    pub fn check_file_mode(mode: u32, owner: u32, expected_owner: u32) -> Result<(), SecretError> {
        if mode & 0o077 != 0 || owner != expected_owner {
            return Err(SecretError::NotPrivate { mode: mode & 0o7777, owner, expected_owner });
        }
        Ok(())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.bytes).into())
    }
}

/// The associated data of one value: which container (namespace and id) and which entry it
/// is, so a sealed value copied into another container's record, or under another name, does
/// not open.
fn associated_data(namespace: &str, container_id: &str, name: &str) -> Vec<u8> {
    format!("berth-sealed-v{SEALED_VERSION}\0{namespace}\0{container_id}\0{name}").into_bytes()
}

/// Seals values with one container's key. Given the key and a random seed from outside (commands
/// stay pure); every value gets its own nonce, drawn from a CSPRNG (ChaCha) seeded with `seed`.
pub struct Sealer {
    pub key: SecretKey,
    pub seed: [u8; 32],
}

impl Sealer {
    /// `KEY=VALUE` entries (already validated) as names in clear and values sealed.
    pub fn seal_env(&self, entries: &[String]) -> Vec<SealedEnv> {
        let mut nonces = StdRng::from_seed(self.seed);
        let cipher = self.key.cipher();
        entries
            .iter()
            .map(|entry| {
                let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
                let mut nonce = [0u8; NONCE_BYTES];
                nonces.fill_bytes(&mut nonce);
                let aad = associated_data(&self.key.namespace, &self.key.container_id, name);
                let ciphertext = cipher
                    .encrypt(XNonce::from_slice(&nonce), Payload { msg: value.as_bytes(), aad: &aad })
                    .expect("encrypting in memory cannot fail");
                SealedEnv {
                    name: name.to_string(),
                    value: Sealed {
                        key_id: self.key.key_id.clone(),
                        nonce: hex::encode(nonce),
                        ciphertext: hex::encode(ciphertext),
                    },
                }
            })
            .collect()
    }
}

/// `KEY=VALUE` entries back from their sealed form. With no key, or a key made after the one
/// that sealed them (another `key_id`), each value is [`FORGOTTEN`]; a key of the right id that
/// does not open a value was tampered with, and is an error.
pub fn open_env(
    key: Option<&SecretKey>,
    namespace: &str,
    container_id: &str,
    sealed_env: &[SealedEnv],
) -> Result<Vec<String>, SecretError> {
    sealed_env
        .iter()
        .map(|entry| {
            let Some(key) = key.filter(|key| key.key_id == entry.value.key_id) else {
                return Ok(format!("{}={FORGOTTEN}", entry.name));
            };
            let does_not_open =
                || SecretError::DoesNotOpen { container_id: container_id.to_string(), name: entry.name.clone() };
            let nonce = hex::decode(&entry.value.nonce).map_err(|_| does_not_open())?;
            let ciphertext = hex::decode(&entry.value.ciphertext).map_err(|_| does_not_open())?;
            if nonce.len() != NONCE_BYTES {
                return Err(does_not_open());
            }
            let aad = associated_data(namespace, container_id, &entry.name);
            let clear = key
                .cipher()
                .decrypt(XNonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: &aad })
                .map_err(|_| does_not_open())?;
            let value = String::from_utf8(clear).map_err(|_| does_not_open())?;
            Ok(format!("{}={value}", entry.name))
        })
        .collect()
}

/// Where a container's key stands in the log: which key its values were sealed with, whether
/// the container is gone (and since when, for the retention period) and whether forgetting
/// was recorded. Kept after the container is deleted, so a sweep knows which key files the log
/// still needs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct SecretKeyUse {
    pub key_id: String,
    /// The `ContainerCreated` whose values it sealed first.
    pub sealed_seq: Seq,
    /// When the container was deleted; `None` while it exists.
    pub released_at: Option<Timestamp>,
    /// The `SecretsForgotten` record, once forgetting was recorded.
    pub forgotten_seq: Option<Seq>,
}

/// namespace → container id → its key's standing.
pub type SecretKeys = BTreeMap<String, BTreeMap<String, SecretKeyUse>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::generate("default", "web", [7u8; NEW_KEY_RANDOM_BYTES])
    }

    fn sealed(entries: &[&str]) -> Vec<SealedEnv> {
        let entries: Vec<String> = entries.iter().map(|entry| entry.to_string()).collect();
        Sealer { key: key(), seed: [1u8; 32] }.seal_env(&entries)
    }

    #[test]
    fn sealed_values_open_with_their_key_and_hide_the_clear_value() {
        let env = sealed(&["SECRET=hunter2", "EMPTY=", "EQ=a=b"]);
        assert_eq!(env[0].name, "SECRET");
        let as_json = serde_json::to_string(&env).unwrap();
        assert!(!as_json.contains("hunter2"), "{as_json}");
        assert!(!as_json.contains(&hex::encode("hunter2")), "{as_json}");
        let opened = open_env(Some(&key()), "default", "web", &env).unwrap();
        assert_eq!(opened, ["SECRET=hunter2", "EMPTY=", "EQ=a=b"]);
    }

    #[test]
    fn every_value_gets_its_own_nonce() {
        let env = sealed(&["A=same", "B=same"]);
        assert_ne!(env[0].value.nonce, env[1].value.nonce);
        assert_ne!(env[0].value.ciphertext, env[1].value.ciphertext);
        let other_seed = Sealer { key: key(), seed: [2u8; 32] }.seal_env(&["A=same".to_string()]);
        assert_ne!(env[0].value.nonce, other_seed[0].value.nonce);
    }

    #[test]
    fn without_the_key_values_are_forgotten() {
        let env = sealed(&["SECRET=hunter2"]);
        assert_eq!(open_env(None, "default", "web", &env).unwrap(), ["SECRET=<forgotten>"]);
        let newer = SecretKey::generate("default", "web", [9u8; NEW_KEY_RANDOM_BYTES]);
        assert_eq!(open_env(Some(&newer), "default", "web", &env).unwrap(), ["SECRET=<forgotten>"]);
    }

    #[test]
    fn a_value_moved_to_another_container_or_name_or_changed_does_not_open() {
        let env = sealed(&["SECRET=hunter2"]);
        let other_container = open_env(Some(&key()), "default", "db", &env);
        assert!(matches!(other_container, Err(SecretError::DoesNotOpen { .. })));
        let mut renamed = env.clone();
        renamed[0].name = "PUBLIC".to_string();
        assert!(open_env(Some(&key()), "default", "web", &renamed).is_err());
        let mut flipped = env.clone();
        let mut bytes = hex::decode(&flipped[0].value.ciphertext).unwrap();
        bytes[0] ^= 1;
        flipped[0].value.ciphertext = hex::encode(bytes);
        assert!(open_env(Some(&key()), "default", "web", &flipped).is_err());
        let mut short_nonce = env;
        short_nonce[0].value.nonce = "00".to_string();
        assert!(open_env(Some(&key()), "default", "web", &short_nonce).is_err());
    }

    #[test]
    fn a_tampered_key_is_refused_when_it_opens() {
        let env = sealed(&["SECRET=hunter2"]);
        let mut text: serde_json::Value = serde_json::from_slice(&key().to_file_bytes()).unwrap();
        text["key"] = serde_json::json!(hex::encode([8u8; KEY_BYTES]));
        let tampered = SecretKey::from_file_bytes("default", "web", text.to_string().as_bytes()).unwrap();
        let error = open_env(Some(&tampered), "default", "web", &env).unwrap_err();
        assert!(error.to_string().contains("restore it from a backup"), "{error}");
    }

    #[test]
    fn key_files_round_trip_and_refuse_what_is_not_theirs() {
        let bytes = key().to_file_bytes();
        assert_eq!(SecretKey::from_file_bytes("default", "web", &bytes).unwrap(), key());
        assert!(matches!(SecretKey::from_file_bytes("default", "db", &bytes), Err(SecretError::WrongContainer { .. })));
        for broken in [&b""[..], b"{}", b"garbage", &bytes[..bytes.len() / 2]] {
            assert!(matches!(SecretKey::from_file_bytes("default", "web", broken), Err(SecretError::Malformed { .. })));
        }
        let mut short: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        short["key"] = serde_json::json!("abcd");
        assert!(SecretKey::from_file_bytes("default", "web", short.to_string().as_bytes()).is_err());
        assert!(!format!("{:?}", key()).contains(&hex::encode([7u8; KEY_BYTES])));
    }

    #[test]
    fn key_files_must_be_private() {
        assert!(SecretKey::check_file_mode(0o100600, 0, 0).is_ok());
        assert!(SecretKey::check_file_mode(0o100400, 0, 0).is_ok());
        for (mode, owner) in [(0o100644, 0), (0o100660, 0), (0o100602, 0), (0o100600, 1000)] {
            let error = SecretKey::check_file_mode(mode, owner, 0).unwrap_err();
            assert!(error.to_string().contains("chmod 0600"), "{error}");
        }
    }
}
