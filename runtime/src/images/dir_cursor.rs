//! Where the unpacker stands in the tree it is unpacking: an open directory and the path to it,
//! so that the next entry — almost always in the same directory or one below — is reached in as
//! many `openat` calls as the paths differ by, not one per component of its path. Directories
//! met are kept as a tree of names (one node each), so a directory can be found again later
//! (to set its times) without storing its whole path: memory and system calls stay linear in the
//! number of directories, however deep they nest.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};

/// A directory of the tree: the destination itself is node 0.
pub type DirNode = usize;
pub const DEST_NODE: DirNode = 0;

struct NodeEntry {
    parent: DirNode,
    name: Vec<u8>,
    /// Components from the destination: 0 for the destination itself.
    depth: usize,
    children: HashMap<Vec<u8>, DirNode>,
}

/// Why a walk stopped: what it was doing and the error. ELOOP and ENOTDIR mean a component is
/// a symlink or a file, i.e. the path does not lead where its name says.
pub type WalkError = (&'static str, Errno);

pub struct DirCursor {
    dest_fd: OwnedFd,
    nodes: Vec<NodeEntry>,
    /// Nodes from the destination (exclusive) down to where the cursor stands.
    path: Vec<DirNode>,
    /// The directory at the end of `path`; `None` while that is the destination.
    current_fd: Option<OwnedFd>,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

impl DirCursor {
    pub fn new(dest_fd: OwnedFd) -> DirCursor {
        let root = NodeEntry { parent: DEST_NODE, name: Vec::new(), depth: 0, children: HashMap::new() };
        DirCursor { dest_fd, nodes: vec![root], path: Vec::new(), current_fd: None }
    }

    pub fn dest_fd(&self) -> &OwnedFd {
        &self.dest_fd
    }

    fn current(&self) -> &OwnedFd {
        self.current_fd.as_ref().unwrap_or(&self.dest_fd)
    }

    /// Forget where the cursor stands: needed after a directory on its path may have been
    /// removed or replaced.
    pub fn reset(&mut self) {
        self.path.clear();
        self.current_fd = None;
    }

    /// The node of `name` below `parent`, added if new.
    pub fn child(&mut self, parent: DirNode, name: &[u8]) -> DirNode {
        if let Some(&node) = self.nodes[parent].children.get(name) {
            return node;
        }
        let node = self.nodes.len();
        let depth = self.nodes[parent].depth + 1;
        self.nodes.push(NodeEntry { parent, name: name.to_vec(), depth, children: HashMap::new() });
        self.nodes[parent].children.insert(name.to_vec(), node);
        node
    }

    /// Moves to the directory `components` below the destination (creating missing ones, mode
    /// 0755, when `create_missing`) and returns its node and a descriptor of it; `Ok(None)` when
    /// one is missing and may not be created. Never follows a symlink.
    pub fn enter(
        &mut self,
        components: &[Vec<u8>],
        create_missing: bool,
    ) -> Result<Option<(DirNode, OwnedFd)>, WalkError> {
        let common = self
            .path
            .iter()
            .zip(components)
            .take_while(|(node, component)| self.nodes[**node].name == **component)
            .count();
        self.pop_to(common)?;
        for component in &components[common..] {
            let parent = self.path.last().copied().unwrap_or(DEST_NODE);
            let node = self.child(parent, component);
            if !self.descend(node, create_missing)? {
                return Ok(None);
            }
        }
        self.handle()
    }

    /// Moves to the directory of `node` (met before through [`DirCursor::enter`] or
    /// [`DirCursor::child`]); `Ok(None)` if it no longer exists.
    pub fn enter_node(&mut self, node: DirNode) -> Result<Option<(DirNode, OwnedFd)>, WalkError> {
        // Climb from `node` until a node on the cursor's path (or the destination).
        let mut below = Vec::new();
        let mut ancestor = node;
        while ancestor != DEST_NODE {
            let depth = self.nodes[ancestor].depth;
            if self.path.get(depth - 1) == Some(&ancestor) {
                break;
            }
            below.push(ancestor);
            ancestor = self.nodes[ancestor].parent;
        }
        self.pop_to(self.nodes[ancestor].depth)?;
        while let Some(next) = below.pop() {
            if !self.descend(next, false)? {
                self.reset();
                return Ok(None);
            }
        }
        self.handle()
    }

    fn handle(&self) -> Result<Option<(DirNode, OwnedFd)>, WalkError> {
        let node = self.path.last().copied().unwrap_or(DEST_NODE);
        let fd = self.current().try_clone().map_err(|error| ("reopen directory", errno_of(error)))?;
        Ok(Some((node, fd)))
    }

    /// Up to `depth` components from the destination, by `..`: the cursor came down by
    /// non-following opens inside a tree only this unpack writes, so `..` is the parent it came
    /// from. Back to the destination itself, its own descriptor is used.
    fn pop_to(&mut self, depth: usize) -> Result<(), WalkError> {
        if depth == 0 {
            self.reset();
            return Ok(());
        }
        while self.path.len() > depth {
            let parent_fd = openat(self.current(), OsStr::new(".."), DIR_FLAGS, Mode::empty())
                .map_err(|errno| ("open parent directory", errno))?;
            self.current_fd = Some(parent_fd);
            self.path.pop();
        }
        Ok(())
    }

    /// One component down into `node`, a child of where the cursor stands. False when it is
    /// missing and may not be created.
    fn descend(&mut self, node: DirNode, create_missing: bool) -> Result<bool, WalkError> {
        let name = OsStr::from_bytes(&self.nodes[node].name);
        let next_fd = match openat(self.current(), name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create_missing => {
                mkdirat(self.current(), name, Mode::from_bits_truncate(0o755))
                    .map_err(|errno| ("create parent directory", errno))?;
                openat(self.current(), name, DIR_FLAGS, Mode::empty())
                    .map_err(|errno| ("open parent directory", errno))?
            }
            Err(Errno::ENOENT) => return Ok(false),
            Err(errno) => return Err(("open parent directory", errno)),
        };
        self.current_fd = Some(next_fd);
        self.path.push(node);
        Ok(true)
    }
}

fn errno_of(error: std::io::Error) -> Errno {
    Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO))
}
