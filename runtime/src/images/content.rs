//! Content-addressed blob store: every image blob (manifest, config, layer) lives once on disk
//! under its sha256 digest, written through an ingest file so a crash never leaves a half blob
//! under a real name.
//!
//! Layout under the directory handed to [`ContentStore::open`] (`<root>/content`):
//! ```text
//! <root>/content/blobs/sha256/<64 hex>   finished, verified blobs (read-only by convention)
//! <root>/content/ingest/<unique>         blobs being written; garbage after a crash
//! ```
//! **Invariant:** a file under `blobs/sha256/` always hashes to its name. It only gets there by
//! a rename after the bytes were hashed, compared and fsynced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::images::digest::{digest_hex, digest_of_bytes, digest_of_hasher, InvalidDigest, DIGEST_ALGORITHM_PREFIX};
use crate::sys::fs::{create_private_dir_all, sync_dir, RemoveOnDrop, PRIVATE_FILE_MODE};

/// Blobs larger than this are refused by [`ContentStore::read_all`]: it exists for manifests and
/// configs, and a multi-gigabyte layer read into memory by mistake would take the daemon down.
pub const MAX_READ_ALL_BYTES: u64 = 64 * 1024 * 1024;

const COPY_BUFFER_BYTES: usize = 256 * 1024;

/// What can go wrong in the content store. Each variant names what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("invalid digest {digest:?}: a digest must be \"sha256:\" followed by 64 lower-case hex digits")]
    InvalidDigest { digest: String },
    #[error("content does not match its digest: expected {expected}, the bytes hash to {actual}; the source is corrupt or truncated, fetch or export it again")]
    DigestMismatch { expected: String, actual: String },
    #[error("blob {digest} is not in the content store; import the image that holds it again")]
    NotFound { digest: String },
    #[error("blob {digest} holds {size_bytes} bytes, more than the {limit_bytes} that may be read into memory; stream it from its path instead")]
    TooLargeToReadAll { digest: String, size_bytes: u64, limit_bytes: u64 },
    #[error("cannot read the content being ingested: {source}; the source is truncated or unreadable, fetch or export it again")]
    SourceRead {
        #[source]
        source: io::Error,
    },
    #[error("cannot {action} {path}: {source}; check that the berth root is writable and the disk is not full")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl From<InvalidDigest> for ContentError {
    fn from(invalid: InvalidDigest) -> ContentError {
        ContentError::InvalidDigest { digest: invalid.digest }
    }
}

impl ContentError {
    fn io<'path>(action: &'static str, path: &'path Path) -> impl FnOnce(io::Error) -> ContentError + 'path {
        move |source| ContentError::Io { action, path: path.to_path_buf(), source }
    }
}

/// A blob as the store knows it: its digest and how many bytes it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: String,
    pub size: i64,
}

/// The blob store rooted at `<root>/content`. Cheap to share by reference between threads: every
/// operation works on the file system only.
#[derive(Debug)]
pub struct ContentStore {
    blobs_dir: PathBuf,
    ingest_dir: PathBuf,
}

/// Makes ingest file names unique inside this process; the pid makes them unique across processes.
static NEXT_INGEST_IDX: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    /// Opens (creating if needed) the store in `content_dir` (`Layout::content_dir`).
    pub fn open(content_dir: &Path) -> Result<ContentStore, ContentError> {
        let blobs_dir = content_dir.join("blobs").join("sha256");
        let ingest_dir = content_dir.join("ingest");
        create_private_dir_all(&blobs_dir).map_err(ContentError::io("create", &blobs_dir))?;
        create_private_dir_all(&ingest_dir).map_err(ContentError::io("create", &ingest_dir))?;
        Ok(ContentStore { blobs_dir, ingest_dir })
    }

    /// Where the blob with this digest lives (or would live).
    ///
    /// # Panics
    /// Never; an invalid digest gives a path under `ingest/` that can never hold a blob — use
    /// [`ContentStore::checked_blob_path`] to get the error instead.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        match self.checked_blob_path(digest) {
            Ok(path) => path,
            // The contract returns a plain PathBuf; a path that cannot exist makes every later
            // open fail with NotFound rather than reading some other file.
            Err(_) => self.ingest_dir.join("invalid-digest-never-a-blob"),
        }
    }

    /// Like [`ContentStore::blob_path`], but refuses an invalid digest with `InvalidDigest`.
    pub fn checked_blob_path(&self, digest: &str) -> Result<PathBuf, ContentError> {
        Ok(self.blobs_dir.join(digest_hex(digest)?))
    }

    /// True if a finished blob with this digest is present. False for an invalid digest.
    pub fn contains(&self, digest: &str) -> bool {
        match self.checked_blob_path(digest) {
            Ok(path) => path.is_file(),
            Err(_) => false,
        }
    }

    /// Size and digest of a present blob.
    pub fn info(&self, digest: &str) -> Result<BlobInfo, ContentError> {
        let path = self.checked_blob_path(digest)?;
        match fs::metadata(&path) {
            Ok(metadata) => Ok(BlobInfo { digest: digest.to_string(), size: metadata.len() as i64 }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound { digest: digest.to_string() })
            }
            Err(error) => Err(ContentError::io("stat", &path)(error)),
        }
    }

    /// Streams `reader` into the store, hashing as it goes.
    ///
    /// With `expected`, the content must hash to it (`DigestMismatch` otherwise, and nothing is
    /// stored). The whole stream is always read and hashed, even when the blob is already present,
    /// so a corrupt source is reported instead of being hidden by an earlier good copy.
    pub fn ingest(&self, expected: Option<&str>, mut reader: impl Read) -> Result<BlobInfo, ContentError> {
        if let Some(expected_digest) = expected {
            digest_hex(expected_digest)?;
            if self.contains(expected_digest) {
                let (actual, size) = hash_stream(&mut reader, &mut io::sink(), &self.ingest_dir)?;
                if actual != expected_digest {
                    return Err(ContentError::DigestMismatch { expected: expected_digest.to_string(), actual });
                }
                return Ok(BlobInfo { digest: actual, size: size as i64 });
            }
        }

        let ingest_path =
            self.ingest_dir.join(format!("{}-{}", std::process::id(), NEXT_INGEST_IDX.fetch_add(1, Ordering::Relaxed)));
        let mut ingest_file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&ingest_path)
            .map_err(ContentError::io("create", &ingest_path))?;
        // Removes the ingest file on every early return; disarmed once it was renamed.
        let ingest_guard = RemoveOnDrop::new(ingest_path.clone());

        let (actual, size) = hash_stream(&mut reader, &mut ingest_file, &ingest_path)?;
        if let Some(expected_digest) = expected {
            if actual != expected_digest {
                return Err(ContentError::DigestMismatch { expected: expected_digest.to_string(), actual });
            }
        }
        // The data must be on disk before the rename makes it visible under its digest,
        // otherwise a power cut could leave a named blob with missing bytes.
        ingest_file.sync_all().map_err(ContentError::io("fsync", &ingest_path))?;
        drop(ingest_file);

        let final_path = self.checked_blob_path(&actual)?;
        fs::rename(&ingest_path, &final_path).map_err(ContentError::io("rename into place", &final_path))?;
        ingest_guard.keep();
        sync_dir(&self.blobs_dir).map_err(ContentError::io("fsync", &self.blobs_dir))?;
        Ok(BlobInfo { digest: actual, size: size as i64 })
    }

    /// Starts a blob that arrives in pieces (a registry download): write them with
    /// [`IngestWriter::write`], then [`IngestWriter::commit`] checks the digest and size and
    /// renames it into place. Dropped before that, the ingest file is removed.
    pub fn begin_ingest(&self, purpose: &str) -> Result<IngestWriter, ContentError> {
        let guard = self.spool_path(purpose);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .open(guard.path())
            .map_err(ContentError::io("create", guard.path()))?;
        // Network reads come in pieces of a few KiB: gather them into fewer, larger writes.
        let file = io::BufWriter::with_capacity(COPY_BUFFER_BYTES, file);
        Ok(IngestWriter { file, hasher: Sha256::new(), n_bytes: 0, guard })
    }

    /// Reads a whole (small) blob and checks it still hashes to its digest, so a blob damaged on
    /// disk is reported rather than parsed.
    pub fn read_all(&self, digest: &str) -> Result<Vec<u8>, ContentError> {
        let path = self.checked_blob_path(digest)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(ContentError::NotFound { digest: digest.to_string() })
            }
            Err(error) => return Err(ContentError::io("open", &path)(error)),
        };
        let size_bytes = file.metadata().map_err(ContentError::io("stat", &path))?.len();
        if size_bytes > MAX_READ_ALL_BYTES {
            return Err(ContentError::TooLargeToReadAll {
                digest: digest.to_string(),
                size_bytes,
                limit_bytes: MAX_READ_ALL_BYTES,
            });
        }
        let mut bytes = Vec::with_capacity(size_bytes as usize);
        file.take(MAX_READ_ALL_BYTES + 1).read_to_end(&mut bytes).map_err(ContentError::io("read", &path))?;
        let actual = digest_of_bytes(&bytes);
        if actual != digest {
            return Err(ContentError::DigestMismatch { expected: digest.to_string(), actual });
        }
        Ok(bytes)
    }

    /// Removes a blob. Removing an absent blob is not an error: garbage collection may race with
    /// itself after a restart, and the end state is the same.
    pub fn remove(&self, digest: &str) -> Result<(), ContentError> {
        let path = self.checked_blob_path(digest)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.blobs_dir).map_err(ContentError::io("fsync", &self.blobs_dir)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(ContentError::io("remove", &path)(error)),
        }
    }

    /// Digests of every finished blob, sorted. Stray files with other names are ignored.
    pub fn list(&self) -> Result<Vec<String>, ContentError> {
        let mut digests = Vec::new();
        let read_dir = fs::read_dir(&self.blobs_dir).map_err(ContentError::io("list", &self.blobs_dir))?;
        for dir_entry in read_dir {
            let dir_entry = dir_entry.map_err(ContentError::io("list", &self.blobs_dir))?;
            let Some(file_name) = dir_entry.file_name().to_str().map(str::to_string) else { continue };
            let digest = format!("{DIGEST_ALGORITHM_PREFIX}{file_name}");
            if digest_hex(&digest).is_ok() {
                digests.push(digest);
            }
        }
        digests.sort();
        Ok(digests)
    }

    /// A fresh, unique path in the ingest directory for a file that is not a blob yet (an upload
    /// being spooled); it is removed when the guard drops. What a crash leaves there is removed
    /// by [`ContentStore::clean_ingest`] at the next start.
    pub fn spool_path(&self, purpose: &str) -> RemoveOnDrop {
        let idx = NEXT_INGEST_IDX.fetch_add(1, Ordering::Relaxed);
        RemoveOnDrop::new(self.ingest_dir.join(format!("{purpose}-{}-{idx}", std::process::id())))
    }

    /// Deletes leftovers of interrupted ingests. Call it at daemon start, before any ingest runs:
    /// a concurrent ingest's file would be deleted from under it.
    pub fn clean_ingest(&self) -> Result<(), ContentError> {
        let read_dir = fs::read_dir(&self.ingest_dir).map_err(ContentError::io("list", &self.ingest_dir))?;
        for dir_entry in read_dir {
            let dir_entry = dir_entry.map_err(ContentError::io("list", &self.ingest_dir))?;
            let path = dir_entry.path();
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(ContentError::io("remove", &path)(error)),
            }
        }
        Ok(())
    }
}

/// A blob being written piece by piece, hashed as it goes; see [`ContentStore::begin_ingest`].
pub struct IngestWriter {
    file: io::BufWriter<File>,
    hasher: Sha256,
    n_bytes: u64,
    guard: RemoveOnDrop,
}

impl IngestWriter {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ContentError> {
        self.hasher.update(bytes);
        self.file.write_all(bytes).map_err(ContentError::io("write", self.guard.path()))?;
        self.n_bytes += bytes.len() as u64;
        Ok(())
    }

    pub fn written_bytes(&self) -> u64 {
        self.n_bytes
    }

    /// Checks the bytes hash to `expected`, then makes them durable under that digest.
    /// Blocking (fsync); call it off the async runtime.
    pub fn commit(self, store: &ContentStore, expected: &str) -> Result<BlobInfo, ContentError> {
        let IngestWriter { file, hasher, n_bytes, guard } = self;
        let final_path = store.checked_blob_path(expected)?;
        let actual = digest_of_hasher(hasher);
        if actual != expected {
            return Err(ContentError::DigestMismatch { expected: expected.to_string(), actual });
        }
        let file = file.into_inner().map_err(|error| ContentError::io("write", guard.path())(error.into_error()))?;
        // As in `ingest`: durable before it is visible under its name.
        file.sync_all().map_err(ContentError::io("fsync", guard.path()))?;
        drop(file);
        fs::rename(guard.path(), &final_path).map_err(ContentError::io("rename into place", &final_path))?;
        guard.keep();
        sync_dir(&store.blobs_dir).map_err(ContentError::io("fsync", &store.blobs_dir))?;
        Ok(BlobInfo { digest: actual, size: n_bytes as i64 })
    }
}

/// Copies `reader` into `writer` while hashing; returns the digest and the byte count.
fn hash_stream(
    reader: &mut impl Read,
    writer: &mut impl Write,
    path_for_errors: &Path,
) -> Result<(String, u64), ContentError> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    let mut n_bytes: u64 = 0;
    loop {
        let n_read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n_read) => n_read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(ContentError::SourceRead { source: error }),
        };
        hasher.update(&buffer[..n_read]);
        writer.write_all(&buffer[..n_read]).map_err(ContentError::io("write", path_for_errors))?;
        n_bytes += n_read as u64;
    }
    Ok((digest_of_hasher(hasher), n_bytes))
}
