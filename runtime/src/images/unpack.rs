//! Applies one image layer (a tar, maybe gzip or zstd compressed) to an empty directory in the
//! form overlayfs reads: OCI whiteout entries become overlay whiteouts, so the directory can be
//! stacked as a lowerdir above the layers below it.
//!
//! **Invariant:** nothing is ever created, changed or removed outside `dest`. Every entry is
//! reached by walking its parent directories one component at a time with
//! `openat(O_NOFOLLOW | O_DIRECTORY)` from a descriptor of `dest`, so neither `..` nor a symlink
//! planted by an earlier entry of the same layer can lead out of it.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use sha2::{Digest as _, Sha256};

use crate::images::digest::digest_of_hasher;
use crate::images::dir_cursor::{DirCursor, DirNode, DEST_NODE};

/// The OCI whiteout prefix: `.wh.NAME` in a layer deletes NAME of the layers below.
const WHITEOUT_PREFIX: &str = ".wh.";
/// PAX keys of GNU tar's sparse formats 0.0, 0.1 and 1.0.
const PAX_SPARSE_PREFIX: &str = "GNU.sparse.";
/// The OCI opaque marker: its presence hides everything the layers below had in that directory.
const OPAQUE_WHITEOUT_NAME: &str = ".wh..wh..opq";
/// Metadata names of the aufs era (`.wh..wh.plnk`, `.wh..wh.aufs`) that carry no file.
const AUFS_META_PREFIX: &str = ".wh..wh.";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// Extended attributes overlayfs interprets; never taken from a layer.
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// What can go wrong applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?} would land outside the destination (absolute path, `..`, or a path through a symlink); the layer is corrupt or malicious, do not use this image")]
    UnsafePath { entry: String },
    #[error("layer entry {entry:?} is a hard link to {target:?}, which is not earlier in the same layer; the layer is corrupt, rebuild or re-export the image")]
    MissingLinkTarget { entry: String, target: String },
    #[error("layer entry {entry:?} is a whiteout of {target:?}, which names no file of a lower layer; the layer is corrupt or malicious, do not use this image")]
    InvalidWhiteout { entry: String, target: String },
    #[error("layer entry {entry:?} is {what}, which berth does not unpack; rebuild the layer without it (e.g. tar without --sparse)")]
    Unsupported { entry: String, what: &'static str },
    #[error("layer is not a readable tar stream ({reason}); the blob is corrupt or not a layer, re-import the image")]
    CorruptArchive { reason: String },
    #[error("cannot {action} for layer entry {entry:?}: {source}; check free space and that berthd runs as root")]
    Entry {
        action: &'static str,
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Compression of a layer, from its media type or (for generic types) its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

impl LayerCompression {
    /// What the media type says, or `None` (the Option) when it does not say.
    pub fn from_media_type(media_type: &str) -> Option<LayerCompression> {
        if media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip") {
            Some(LayerCompression::Gzip)
        } else if media_type.ends_with("+zstd") || media_type.ends_with(".tar.zstd") {
            Some(LayerCompression::Zstd)
        } else if media_type.ends_with(".tar") {
            Some(LayerCompression::None)
        } else {
            None
        }
    }

    pub fn sniff(first_bytes: &[u8]) -> LayerCompression {
        if first_bytes.starts_with(GZIP_MAGIC) {
            LayerCompression::Gzip
        } else if first_bytes.starts_with(ZSTD_MAGIC) {
            LayerCompression::Zstd
        } else {
            LayerCompression::None
        }
    }
}

/// Unpacks the layer blob at `blob` into `dest` (which should be empty) and returns the digest of
/// the uncompressed tar stream, the layer's diff id, for the caller to compare with the config.
pub fn unpack_layer(blob: &Path, media_type: &str, dest: &Path) -> Result<String, UnpackError> {
    let blob_file = File::open(blob).map_err(|source| UnpackError::Io {
        action: "open layer blob",
        path: blob.to_path_buf(),
        source,
    })?;
    unpack_layer_reader(blob_file, Some(media_type), dest).map_err(|error| match error {
        UnpackError::Io { action: "read layer blob", source, .. } => {
            UnpackError::Io { action: "read layer blob", path: blob.to_path_buf(), source }
        }
        other => other,
    })
}

/// Unpacks a layer read from `reader` (compressed as `media_type` says, or as its first bytes
/// say when the media type does not or is not known) into `dest`; returns the diff id.
pub fn unpack_layer_reader(reader: impl Read, media_type: Option<&str>, dest: &Path) -> Result<String, UnpackError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let compression = match media_type.and_then(LayerCompression::from_media_type) {
        Some(compression) => compression,
        None => {
            let first_bytes = buffered.fill_buf().map_err(|source| UnpackError::Io {
                action: "read layer blob",
                path: PathBuf::new(),
                source,
            })?;
            LayerCompression::sniff(first_bytes)
        }
    };
    let decompressed: Box<dyn Read> = match compression {
        LayerCompression::None => Box::new(buffered),
        LayerCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        LayerCompression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|error| UnpackError::CorruptArchive { reason: format!("zstd: {error}") })?,
        ),
    };
    unpack_tar_stream(decompressed, dest)
}

/// Unpacks an uncompressed layer tar stream into `dest`; returns the sha256 of the stream.
pub fn unpack_tar_stream(reader: impl Read, dest: &Path) -> Result<String, UnpackError> {
    let mut cursor = DirCursor::new(open_dir_nofollow_path(dest)?);
    let hashing_reader = HashingReader { inner: reader, hasher: Sha256::new() };
    let mut archive = tar::Archive::new(hashing_reader);
    // By node, not by path: a path per directory is quadratic in the nesting depth.
    let mut deferred_dir_times: Vec<(DirNode, TimeSpec)> = Vec::new();

    let entries = archive.entries().map_err(corrupt)?;
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;
        apply_entry(&mut cursor, &mut entry, &mut deferred_dir_times)?;
    }
    // Directory mtimes go last: creating children changes them (setting a child's times does
    // not). In the order they came, so the cursor moves little between them.
    for (node, mtime) in deferred_dir_times {
        let dir_fd = match cursor.enter_node(node) {
            Ok(Some((_, fd))) => fd,
            // A later entry of the same layer removed it or put a file in its place.
            Ok(None) | Err((_, Errno::ENOTDIR)) | Err((_, Errno::ELOOP)) => {
                cursor.reset();
                continue;
            }
            Err((action, errno)) => return Err(entry_error(action, "(a directory of the layer)")(errno)),
        };
        futimens(&dir_fd, &mtime, &mtime).map_err(entry_error("set directory times", "(a directory of the layer)"))?;
    }

    // The diff id covers the whole uncompressed stream, including the end-of-archive blocks
    // the tar reader stops before.
    let mut hashing_reader = archive.into_inner();
    io::copy(&mut hashing_reader, &mut io::sink()).map_err(corrupt)?;
    Ok(digest_of_hasher(hashing_reader.hasher))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let n_read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..n_read]);
        Ok(n_read)
    }
}

fn corrupt(error: io::Error) -> UnpackError {
    UnpackError::CorruptArchive { reason: error.to_string() }
}

fn entry_error<'name>(action: &'static str, entry_name: &'name str) -> impl FnOnce(Errno) -> UnpackError + 'name {
    move |errno| UnpackError::Entry { action, entry: entry_name.to_string(), source: io::Error::from(errno) }
}

/// Splits an entry path into components under the destination. Leading `/` and `.` components
/// are dropped (tar writers put `./` in front, some write absolute names: both mean "under the
/// root"); `..` anywhere is refused outright rather than resolved, as no honest layer needs it.
pub fn normalize_entry_path(raw_path: &[u8]) -> Result<Vec<Vec<u8>>, UnpackError> {
    let mut components = Vec::new();
    for component in raw_path.split(|&byte| byte == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(UnpackError::UnsafePath { entry: String::from_utf8_lossy(raw_path).into_owned() }),
            name => components.push(name.to_vec()),
        }
    }
    Ok(components)
}

fn open_dir_nofollow_path(dir: &Path) -> Result<OwnedFd, UnpackError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    nix::fcntl::open(dir, flags, Mode::empty()).map_err(|errno| UnpackError::Io {
        action: "open destination directory",
        path: dir.to_path_buf(),
        source: errno.into(),
    })
}

/// Opens the directory `components` below `root_fd`, never following a symlink. Missing
/// directories are created (mode 0755, root-owned, as tar does for implicit parents) when
/// `create_missing`; otherwise a missing one gives `Ok(None)`.
fn walk_to_dir(
    root_fd: &OwnedFd,
    components: &[Vec<u8>],
    create_missing: bool,
    entry_name: &str,
) -> Result<Option<OwnedFd>, UnpackError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut current_fd = root_fd.try_clone().map_err(|source| UnpackError::Entry {
        action: "reopen destination",
        entry: entry_name.to_string(),
        source,
    })?;
    for component in components {
        let name = OsStr::from_bytes(component);
        let next_fd = match openat(&current_fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create_missing => {
                mkdirat(&current_fd, name, Mode::from_bits_truncate(0o755))
                    .map_err(entry_error("create parent directory", entry_name))?;
                let created_fd = openat(&current_fd, name, flags, Mode::empty())
                    .map_err(entry_error("open parent directory", entry_name))?;
                // berthd's umask (0077) would leave it 0700, closed to the container's users.
                fchmod(&created_fd, Mode::from_bits_truncate(0o755)).map_err(entry_error("chmod", entry_name))?;
                created_fd
            }
            Err(Errno::ENOENT) => return Ok(None),
            // ELOOP: the component is a symlink; ENOTDIR: it is a file. Either way the entry
            // would not be where its name says, so refuse it.
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                return Err(UnpackError::UnsafePath { entry: entry_name.to_string() })
            }
            Err(errno) => return Err(entry_error("open parent directory", entry_name)(errno)),
        };
        current_fd = next_fd;
    }
    Ok(Some(current_fd))
}

/// Metadata of an entry, with pax records taking precedence over the fixed header fields (they
/// carry values too big for them, and sub-second times).
struct EntryMetadata {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn read_entry_metadata<R: Read>(entry: &mut tar::Entry<'_, R>, entry_name: &str) -> Result<EntryMetadata, UnpackError> {
    let header = entry.header();
    let header_error =
        |source: io::Error| UnpackError::Entry { action: "read header", entry: entry_name.to_string(), source };
    let mut metadata = EntryMetadata {
        mode: header.mode().map_err(header_error)? & 0o7777,
        uid: header.uid().map_err(header_error)? as u32,
        gid: header.gid().map_err(header_error)? as u32,
        mtime: TimeSpec::new(header.mtime().map_err(header_error)? as i64, 0),
        xattrs: Vec::new(),
    };
    if let Some(extensions) = entry.pax_extensions().map_err(corrupt)? {
        for extension in extensions {
            let extension = extension.map_err(corrupt)?;
            let key = extension.key_bytes();
            let value = extension.value_bytes();
            if key.starts_with(PAX_SPARSE_PREFIX.as_bytes()) {
                // PAX sparse files (formats 0.0 to 1.0) carry their map in keys or in the data,
                // under a stand-in name (`GNUSparseFile.N/…`); unpacked as plain entries they
                // would land as that directory with the map as content.
                return Err(UnpackError::Unsupported {
                    entry: entry_name.to_string(),
                    what: "a PAX sparse file (GNU.sparse.* headers)",
                });
            }
            if let Some(xattr_name) = key.strip_prefix(PAX_XATTR_PREFIX.as_bytes()) {
                // overlayfs reads trusted.overlay.* on the lower layers (redirects, metacopy,
                // opaque); a layer must not steer it. Opaque directories come only from the
                // `.wh..wh..opq` marker, which unpack translates itself.
                if xattr_name.starts_with(OVERLAY_XATTR_PREFIX.as_bytes()) {
                    continue;
                }
                metadata.xattrs.push((xattr_name.to_vec(), value.to_vec()));
            } else if key == b"uid" {
                if let Some(uid) = parse_decimal(value) {
                    metadata.uid = uid as u32;
                }
            } else if key == b"gid" {
                if let Some(gid) = parse_decimal(value) {
                    metadata.gid = gid as u32;
                }
            } else if key == b"mtime" {
                if let Some(mtime) = parse_pax_time(value) {
                    metadata.mtime = mtime;
                }
            }
        }
    }
    Ok(metadata)
}

fn parse_decimal(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// Pax times are decimal seconds with an optional fraction, e.g. `1700000000.123456789`.
fn parse_pax_time(value: &[u8]) -> Option<TimeSpec> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (seconds_text, fraction_text) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = seconds_text.parse().ok()?;
    let mut nanos_text: String = fraction_text.chars().take(9).collect();
    while nanos_text.len() < 9 {
        nanos_text.push('0');
    }
    let nanos: i64 = nanos_text.parse().ok()?;
    // A negative time with a fraction means seconds - fraction.
    if seconds < 0 && nanos > 0 {
        Some(TimeSpec::new(seconds - 1, 1_000_000_000 - nanos))
    } else {
        Some(TimeSpec::new(seconds, nanos))
    }
}

fn apply_entry<R: Read>(
    cursor: &mut DirCursor,
    entry: &mut tar::Entry<'_, R>,
    deferred_dir_times: &mut Vec<(DirNode, TimeSpec)>,
) -> Result<(), UnpackError> {
    let raw_path = entry.path_bytes().into_owned();
    let entry_name = String::from_utf8_lossy(&raw_path).into_owned();
    let entry_type = entry.header().entry_type();
    // Pax headers and GNU long names are folded into the following entry by the tar reader.
    if entry_type.is_pax_global_extensions()
        || entry_type.is_pax_local_extensions()
        || entry_type.is_gnu_longname()
        || entry_type.is_gnu_longlink()
    {
        return Ok(());
    }
    let components = normalize_entry_path(&raw_path)?;
    let metadata = read_entry_metadata(entry, &entry_name)?;

    let Some((last_component, parent_components)) = components.split_last() else {
        // The layer's root ("./"): only its metadata applies, to dest itself.
        if entry_type.is_dir() {
            let dest_fd = cursor.dest_fd();
            fchown(dest_fd, Some(Uid::from_raw(metadata.uid)), Some(Gid::from_raw(metadata.gid)))
                .map_err(entry_error("chown", &entry_name))?;
            fchmod(dest_fd, Mode::from_bits_truncate(metadata.mode)).map_err(entry_error("chmod", &entry_name))?;
            deferred_dir_times.push((DEST_NODE, metadata.mtime));
            return Ok(());
        }
        return Err(UnpackError::UnsafePath { entry: entry_name });
    };
    let (parent_node, parent_fd) = match cursor.enter(parent_components, true) {
        Ok(Some(entered)) => entered,
        Ok(None) => unreachable!("the cursor creates missing directories when asked to"),
        Err((_, Errno::ELOOP | Errno::ENOTDIR)) => return Err(UnpackError::UnsafePath { entry: entry_name }),
        Err((action, errno)) => return Err(entry_error(action, &entry_name)(errno)),
    };
    let name = OsStr::from_bytes(last_component);
    let name_text = String::from_utf8_lossy(last_component);

    if let Some(whiteout_target) = name_text.strip_prefix(WHITEOUT_PREFIX) {
        if name_text == OPAQUE_WHITEOUT_NAME {
            return set_xattr_on(&parent_fd, None, OVERLAY_OPAQUE_XATTR.as_bytes(), b"y", &entry_name);
        }
        if name_text.starts_with(AUFS_META_PREFIX) || whiteout_target.is_empty() {
            return Ok(());
        }
        // `.wh..` and `.wh...` would "delete" the directory itself or its parent.
        if whiteout_target == "." || whiteout_target == ".." {
            return Err(UnpackError::InvalidWhiteout { entry: entry_name, target: whiteout_target.to_string() });
        }
        let target_name = OsStr::from_bytes(&last_component[WHITEOUT_PREFIX.len()..]);
        if remove_existing(&parent_fd, target_name, &entry_name)? {
            cursor.reset();
        }
        // overlayfs reads a 0/0 character device as "deleted in this layer".
        mknodat(&parent_fd, target_name, SFlag::S_IFCHR, Mode::empty(), 0)
            .map_err(entry_error("create whiteout device", &entry_name))?;
        fchownat(
            &parent_fd,
            target_name,
            Some(Uid::from_raw(0)),
            Some(Gid::from_raw(0)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(entry_error("chown whiteout", &entry_name))?;
        return Ok(());
    }

    let owner = (Some(Uid::from_raw(metadata.uid)), Some(Gid::from_raw(metadata.gid)));
    let mode = Mode::from_bits_truncate(metadata.mode);

    if entry_type.is_dir() {
        match nix::sys::stat::fstatat(&parent_fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR => {}
            Ok(_) => {
                if remove_existing(&parent_fd, name, &entry_name)? {
                    cursor.reset();
                }
                mkdirat(&parent_fd, name, Mode::from_bits_truncate(0o700))
                    .map_err(entry_error("create directory", &entry_name))?;
            }
            Err(Errno::ENOENT) => {
                mkdirat(&parent_fd, name, Mode::from_bits_truncate(0o700))
                    .map_err(entry_error("create directory", &entry_name))?;
            }
            Err(errno) => return Err(entry_error("stat", &entry_name)(errno)),
        }
        let dir_fd =
            walk_to_dir(&parent_fd, std::slice::from_ref(last_component), false, &entry_name)?.ok_or_else(|| {
                UnpackError::Entry {
                    action: "open new directory",
                    entry: entry_name.clone(),
                    source: io::ErrorKind::NotFound.into(),
                }
            })?;
        fchown(&dir_fd, owner.0, owner.1).map_err(entry_error("chown", &entry_name))?;
        // chmod after chown: chown clears set-id bits.
        fchmod(&dir_fd, mode).map_err(entry_error("chmod", &entry_name))?;
        for (xattr_name, xattr_value) in &metadata.xattrs {
            set_xattr_on(&dir_fd, None, xattr_name, xattr_value, &entry_name)?;
        }
        deferred_dir_times.push((cursor.child(parent_node, last_component), metadata.mtime));
        return Ok(());
    }

    if remove_existing(&parent_fd, name, &entry_name)? {
        cursor.reset();
    }

    // The tar reader expands a GNU sparse entry (type 'S') to its full content, holes as zeros.
    if entry_type.is_file() || entry_type.is_contiguous() || entry_type.is_gnu_sparse() {
        let file_fd = openat(
            &parent_fd,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(entry_error("create file", &entry_name))?;
        let mut file = File::from(file_fd);
        let entry_size = entry.size();
        let mut exact_reader = crate::sys::io::ExactLengthReader { inner: &mut *entry, remaining_bytes: entry_size };
        io::copy(&mut exact_reader, &mut file).map_err(|source| match source.kind() {
            io::ErrorKind::UnexpectedEof => {
                UnpackError::CorruptArchive { reason: format!("entry {entry_name:?}: {source}") }
            }
            _ => UnpackError::Entry { action: "write file", entry: entry_name.clone(), source },
        })?;
        fchown(&file, owner.0, owner.1).map_err(entry_error("chown", &entry_name))?;
        fchmod(&file, mode).map_err(entry_error("chmod", &entry_name))?;
        for (xattr_name, xattr_value) in &metadata.xattrs {
            set_xattr_on(&file, None, xattr_name, xattr_value, &entry_name)?;
        }
        futimens(&file, &metadata.mtime, &metadata.mtime).map_err(entry_error("set times", &entry_name))?;
        return Ok(());
    }

    if entry_type.is_symlink() {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| UnpackError::CorruptArchive { reason: format!("symlink {entry_name:?} has no target") })?;
        // The target is stored verbatim and never followed here; an absolute target is resolved
        // by the kernel inside the container's root later, which is what the image means.
        symlinkat(OsStr::from_bytes(&target), &parent_fd, name).map_err(entry_error("create symlink", &entry_name))?;
        fchownat(&parent_fd, name, owner.0, owner.1, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(entry_error("chown symlink", &entry_name))?;
        for (xattr_name, xattr_value) in &metadata.xattrs {
            set_xattr_on(&parent_fd, Some(name), xattr_name, xattr_value, &entry_name)?;
        }
        utimensat(&parent_fd, name, &metadata.mtime, &metadata.mtime, UtimensatFlags::NoFollowSymlink)
            .map_err(entry_error("set symlink times", &entry_name))?;
        return Ok(());
    }

    if entry_type.is_hard_link() {
        let target_raw = entry
            .link_name_bytes()
            .ok_or_else(|| UnpackError::CorruptArchive { reason: format!("hard link {entry_name:?} has no target") })?
            .into_owned();
        let target_text = String::from_utf8_lossy(&target_raw).into_owned();
        let target_components =
            normalize_entry_path(&target_raw).map_err(|_| UnpackError::UnsafePath { entry: entry_name.clone() })?;
        let Some((target_last, target_parents)) = target_components.split_last() else {
            return Err(UnpackError::UnsafePath { entry: entry_name });
        };
        let missing = || UnpackError::MissingLinkTarget { entry: entry_name.clone(), target: target_text.clone() };
        let target_parent_fd =
            walk_to_dir(cursor.dest_fd(), target_parents, false, &entry_name)?.ok_or_else(missing)?;
        // linkat without AT_SYMLINK_FOLLOW links the target itself, even when it is a symlink.
        match linkat(&target_parent_fd, OsStr::from_bytes(target_last), &parent_fd, name, nix::fcntl::AtFlags::empty())
        {
            Ok(()) => {}
            Err(Errno::ENOENT) => return Err(missing()),
            Err(errno) => return Err(entry_error("create hard link", &entry_name)(errno)),
        }
        return Ok(());
    }

    let (kind, device) = if entry_type.is_character_special() || entry_type.is_block_special() {
        let header = entry.header();
        let header_error =
            |source: io::Error| UnpackError::Entry { action: "read device numbers", entry: entry_name.clone(), source };
        let major = header.device_major().map_err(header_error)?.unwrap_or(0);
        let minor = header
            .device_minor()
            .map_err(|source| UnpackError::Entry { action: "read device numbers", entry: entry_name.clone(), source })?
            .unwrap_or(0);
        let kind = if entry_type.is_character_special() { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
        (kind, libc::makedev(major, minor))
    } else if entry_type.is_fifo() {
        (SFlag::S_IFIFO, 0)
    } else {
        // Anything else (vendor extensions, GNU volume headers and multi-volume parts) would be
        // half-applied or silently dropped: refuse the layer instead.
        return Err(UnpackError::Unsupported { entry: entry_name, what: "of a tar entry type berth does not know" });
    };
    mknodat(&parent_fd, name, kind, Mode::from_bits_truncate(0o600), device)
        .map_err(entry_error("create device node", &entry_name))?;
    fchownat(&parent_fd, name, owner.0, owner.1, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(entry_error("chown", &entry_name))?;
    fchmodat(&parent_fd, name, mode, FchmodatFlags::NoFollowSymlink).map_err(entry_error("chmod", &entry_name))?;
    for (xattr_name, xattr_value) in &metadata.xattrs {
        set_xattr_on(&parent_fd, Some(name), xattr_name, xattr_value, &entry_name)?;
    }
    utimensat(&parent_fd, name, &metadata.mtime, &metadata.mtime, UtimensatFlags::NoFollowSymlink)
        .map_err(entry_error("set times", &entry_name))?;
    Ok(())
}

/// Removes whatever `name` is inside `parent_fd` (nothing if absent). Directories are removed
/// with their content: a layer that turns a directory into a file means exactly that.
/// Removes `name` from `parent_fd` if it exists; true when that was a directory (which the
/// unpacker's cursor may be standing in).
fn remove_existing(parent_fd: &OwnedFd, name: &OsStr, entry_name: &str) -> Result<bool, UnpackError> {
    match unlinkat(parent_fd, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(false),
        Err(Errno::EISDIR) | Err(Errno::EPERM) => {
            // remove_dir_all does not follow symlinks inside the tree; the /proc/self/fd prefix
            // pins the parent we already resolved safely.
            let path = PathBuf::from(format!("/proc/self/fd/{}", parent_fd.as_raw_fd())).join(name);
            std::fs::remove_dir_all(&path).map_err(|source| UnpackError::Entry {
                action: "remove existing directory",
                entry: entry_name.to_string(),
                source,
            })?;
            Ok(true)
        }
        Err(errno) => Err(entry_error("remove existing entry", entry_name)(errno)),
    }
}

/// Sets an extended attribute on `fd` itself (`child` = None) or on `child` inside directory
/// `fd` without following it if it is a symlink.
fn set_xattr_on(
    fd: &impl AsRawFd,
    child: Option<&OsStr>,
    xattr_name: &[u8],
    xattr_value: &[u8],
    entry_name: &str,
) -> Result<(), UnpackError> {
    let xattr_error = |source: io::Error| UnpackError::Entry {
        action: "set extended attribute",
        entry: entry_name.to_string(),
        source,
    };
    let c_name = CString::new(xattr_name).map_err(|_| xattr_error(io::ErrorKind::InvalidInput.into()))?;
    let result = match child {
        None => {
            // SAFETY: fd is an open descriptor we own for the duration of the call; c_name is a
            // NUL-terminated string and the value pointer/length describe a live slice.
            unsafe {
                libc::fsetxattr(fd.as_raw_fd(), c_name.as_ptr(), xattr_value.as_ptr().cast(), xattr_value.len(), 0)
            }
        }
        Some(child_name) => {
            let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(child_name);
            let c_path = CString::new(path.as_os_str().as_bytes())
                .map_err(|_| xattr_error(io::ErrorKind::InvalidInput.into()))?;
            // SAFETY: c_path and c_name are NUL-terminated strings that outlive the call; the
            // value pointer/length describe a live slice. lsetxattr does not follow the last
            // component, and the /proc/self/fd prefix resolves to the directory we hold open.
            unsafe {
                libc::lsetxattr(c_path.as_ptr(), c_name.as_ptr(), xattr_value.as_ptr().cast(), xattr_value.len(), 0)
            }
        }
    };
    if result != 0 {
        return Err(xattr_error(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_dot_and_leading_slash_and_refuses_dot_dot() {
        assert_eq!(normalize_entry_path(b"./a/b/").unwrap(), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(normalize_entry_path(b"/etc/passwd").unwrap(), vec![b"etc".to_vec(), b"passwd".to_vec()]);
        assert!(normalize_entry_path(b"./").unwrap().is_empty());
        assert!(matches!(normalize_entry_path(b"a/../../x"), Err(UnpackError::UnsafePath { .. })));
    }

    #[test]
    fn compression_from_media_type_and_magic() {
        assert_eq!(
            LayerCompression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip"),
            Some(LayerCompression::Gzip)
        );
        assert_eq!(
            LayerCompression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(LayerCompression::Gzip)
        );
        assert_eq!(
            LayerCompression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(LayerCompression::Zstd)
        );
        assert_eq!(
            LayerCompression::from_media_type("application/vnd.oci.image.layer.v1.tar"),
            Some(LayerCompression::None)
        );
        assert_eq!(LayerCompression::from_media_type("application/octet-stream"), None);
        assert_eq!(LayerCompression::sniff(&[0x1f, 0x8b, 8]), LayerCompression::Gzip);
        assert_eq!(LayerCompression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]), LayerCompression::Zstd);
        assert_eq!(LayerCompression::sniff(b"bin/"), LayerCompression::None);
    }

    #[test]
    fn pax_time_with_fraction() {
        let time = parse_pax_time(b"1700000000.5").unwrap();
        assert_eq!((time.tv_sec(), time.tv_nsec()), (1_700_000_000, 500_000_000));
    }
}
