//! The one pass over an archive's tar, as it arrives: what is a blob goes into the content store
//! while it streams (verified against its name where the name is a digest), the small metadata
//! files are kept in memory, and links are remembered so `docker save`'s shared layers resolve.
//! Nothing is spooled: a docker-archive's `manifest.json`, which may come last, is only needed
//! once every layer it names is already in the store.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use crate::images::archive::ImportError;
use crate::images::content::{BlobInfo, ContentError, ContentStore};
use crate::images::digest::digest_hex;
use crate::sys::io::ExactLengthReader;

pub const BLOBS_SHA256_PREFIX: &str = "blobs/sha256/";
/// One metadata file (`index.json`, `manifest.json`, a docker-archive's image config) is at most
/// this big: the image config limit, which a config must meet anyway.
pub const MAX_METADATA_ENTRY_BYTES: u64 = crate::images::archive::image::MAX_IMAGE_CONFIG_BYTES;
/// All metadata files together; a tar of many JSON files must not fill berthd's memory.
pub const MAX_METADATA_TOTAL_BYTES: u64 = 64 << 20;
/// Links followed from one entry before giving up (a loop of links).
const MAX_LINK_HOPS: usize = 16;

/// A copy of one blob's bytes as they stream in (see [`BlobTee`]).
pub trait BlobCopy: Write {
    /// The blob was stored whole under `digest`; what the copy became belongs to it now.
    fn finish(self: Box<Self>, digest: &str);
}

/// Something that wants each large blob's bytes while they stream into the store — the import
/// unpacks layers from them then, instead of reading each blob back afterwards. It may decline
/// (`None`); a copy whose writes fail is dropped and the blob is stored all the same.
pub trait BlobTee<'copy> {
    fn start(&self, entry_size: u64) -> Option<Box<dyn BlobCopy + 'copy>>;
}

/// Hands what it reads to a [`BlobCopy`] as well, until the copy refuses.
struct TeeReader<'borrow, 'copy, R> {
    inner: R,
    copy: Option<&'borrow mut Box<dyn BlobCopy + 'copy>>,
}

impl<R: Read> Read for TeeReader<'_, '_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let n_read = self.inner.read(buffer)?;
        if let Some(copy) = &mut self.copy {
            if copy.write_all(&buffer[..n_read]).is_err() {
                self.copy = None;
            }
        }
        Ok(n_read)
    }
}

/// What the pass kept: metadata by path, and each other regular file as the blob it became.
#[derive(Debug, Default)]
pub struct ArchiveEntries {
    pub n_entries: usize,
    small_files: HashMap<String, Vec<u8>>,
    blobs_by_path: HashMap<String, BlobInfo>,
    links: HashMap<String, String>,
}

impl ArchiveEntries {
    /// Whether a regular file (or a link to one) with this path was in the archive.
    pub fn has(&self, path: &str) -> bool {
        self.resolve(path).is_ok_and(|target| self.small_files.contains_key(&target))
    }

    /// A metadata file's bytes.
    pub fn small_file(&self, path: &str) -> Result<Option<&[u8]>, ImportError> {
        Ok(self.small_files.get(&self.resolve(path)?).map(Vec::as_slice))
    }

    /// The blob a non-metadata file became.
    pub fn blob(&self, path: &str) -> Result<Option<&BlobInfo>, ImportError> {
        Ok(self.blobs_by_path.get(&self.resolve(path)?))
    }

    /// Follows links (hard or symbolic, as tar records them) to the file they name.
    fn resolve(&self, path: &str) -> Result<String, ImportError> {
        let mut current = normalize_path(path).ok_or_else(|| ImportError::UnsafePath { entry: path.to_string() })?;
        for _ in 0..MAX_LINK_HOPS {
            match self.links.get(&current) {
                Some(target) => current = target.clone(),
                None => return Ok(current),
            }
        }
        Err(ImportError::CorruptArchive { entry: path.to_string(), reason: "a loop of links".to_string() })
    }
}

/// Whether an entry is metadata kept in memory rather than a blob for the store: the layout
/// files, and every `.json` (docker-archive's `manifest.json` and image configs).
fn is_metadata_path(path: &str) -> bool {
    path == "oci-layout" || path == "repositories" || path.ends_with(".json")
}

/// Legacy docker v1 files beside each layer (`<id>/json`, `<id>/VERSION`): nothing reads them.
fn is_ignored_path(path: &str) -> bool {
    let file_name = path.rsplit('/').next().unwrap_or(path);
    file_name == "json" || file_name == "VERSION"
}

/// A path relative to the archive's root: `./a//b` is `a/b`. `None` when a `..` would climb
/// out of the root (a `..` inside, `a/../b`, is resolved).
pub fn normalize_path(raw: &str) -> Option<String> {
    let mut components: Vec<&str> = Vec::new();
    for component in raw.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                components.pop()?;
            }
            other => components.push(other),
        }
    }
    Some(components.join("/"))
}

/// Reads the tar once: blobs into the store (and to `tee`, if given), metadata into memory,
/// links remembered.
pub fn read_archive(
    store: &ContentStore,
    archive: impl Read,
    tee: Option<&dyn BlobTee<'_>>,
) -> Result<ArchiveEntries, ImportError> {
    let mut tar_archive = tar::Archive::new(archive);
    let mut entries_read = ArchiveEntries::default();
    let mut metadata_bytes = 0u64;
    let mut last_entry_name = String::from("(start of archive)");
    let entries = tar_archive.entries().map_err(|error| not_a_tar(&error))?;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            // An unreadable first header means this was never a tar; later, it was cut or damaged.
            Err(error) if entries_read.n_entries == 0 => return Err(not_a_tar(&error)),
            Err(error) => {
                return Err(ImportError::CorruptArchive {
                    entry: format!("after {last_entry_name}"),
                    reason: error.to_string(),
                })
            }
        };
        entries_read.n_entries += 1;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        // Any `..` at all is refused, even one that stays inside: no tool writes one.
        if raw_name.split('/').any(|component| component == "..") || raw_name.starts_with('/') {
            return Err(ImportError::UnsafePath { entry: raw_name });
        }
        let entry_name = normalize_path(&raw_name).unwrap_or_default();
        last_entry_name = entry_name.clone();
        let entry_type = entry.header().entry_type();
        if entry_type.is_symlink() || entry_type.is_hard_link() {
            let link_bytes = entry.link_name_bytes().unwrap_or_default();
            let link_text = String::from_utf8_lossy(&link_bytes).into_owned();
            // A symlink is relative to its own directory, a hard link to the archive's root.
            let base = match entry_type.is_symlink() {
                true => entry_name.rsplit_once('/').map(|(dir, _)| dir).unwrap_or(""),
                false => "",
            };
            if link_text.starts_with('/') {
                return Err(ImportError::UnsafePath { entry: format!("{raw_name} -> {link_text}") });
            }
            let target = normalize_path(&format!("{base}/{link_text}"))
                .ok_or_else(|| ImportError::UnsafePath { entry: format!("{raw_name} -> {link_text}") })?;
            entries_read.links.insert(entry_name, target);
            continue;
        }
        if !entry_type.is_file() || is_ignored_path(&entry_name) {
            continue;
        }
        let entry_size = entry.size();
        if is_metadata_path(&entry_name) {
            if entry_size > MAX_METADATA_ENTRY_BYTES {
                return Err(ImportError::MetadataTooLarge {
                    entry: entry_name,
                    size: entry_size,
                    max: MAX_METADATA_ENTRY_BYTES,
                });
            }
            metadata_bytes += entry_size;
            if metadata_bytes > MAX_METADATA_TOTAL_BYTES {
                return Err(ImportError::MetadataTooLarge {
                    entry: format!("{entry_name} (with the metadata before it)"),
                    size: metadata_bytes,
                    max: MAX_METADATA_TOTAL_BYTES,
                });
            }
            let mut bytes = Vec::with_capacity(entry_size as usize);
            ExactLengthReader { inner: &mut entry, remaining_bytes: entry_size }.read_to_end(&mut bytes).map_err(
                |error| ImportError::CorruptArchive { entry: entry_name.clone(), reason: error.to_string() },
            )?;
            entries_read.small_files.insert(entry_name, bytes);
            continue;
        }
        // A blob named by its digest is verified against it; any other file (a docker-archive
        // layer) is stored under what it hashes to, and the manifest will name it by path.
        let expected = entry_name
            .strip_prefix(BLOBS_SHA256_PREFIX)
            .map(|hex_part| format!("sha256:{hex_part}"))
            .filter(|digest| digest_hex(digest).is_ok());
        let mut copy = tee.and_then(|tee| tee.start(entry_size));
        let reader = TeeReader {
            inner: ExactLengthReader { inner: &mut entry, remaining_bytes: entry_size },
            copy: copy.as_mut(),
        };
        let info = match store.ingest(expected.as_deref(), reader) {
            Ok(info) => info,
            Err(ContentError::DigestMismatch { expected, actual }) => {
                return Err(ImportError::DigestMismatch { entry: entry_name, expected, actual })
            }
            Err(ContentError::SourceRead { source }) => {
                return Err(ImportError::CorruptArchive { entry: entry_name, reason: source.to_string() })
            }
            Err(other) => return Err(other.into()),
        };
        if let Some(copy) = copy {
            copy.finish(&info.digest);
        }
        entries_read.blobs_by_path.insert(entry_name, info);
    }
    Ok(entries_read)
}

fn not_a_tar(error: &io::Error) -> ImportError {
    ImportError::NotAnImageArchive { reason: format!("; it is not a readable tar: {error}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_and_may_not_climb_out() {
        assert_eq!(normalize_path("./blobs//sha256/x").as_deref(), Some("blobs/sha256/x"));
        assert_eq!(normalize_path("a/../b/layer.tar").as_deref(), Some("b/layer.tar"));
        assert_eq!(normalize_path("../etc/passwd"), None);
        assert_eq!(normalize_path("a/../../b"), None);
    }
}
