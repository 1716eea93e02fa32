//! The API socket and who may open it. berthd makes it afresh at each start, mode 0660, owned
//! by root and by the socket group (`[grpc] gid`, `berthd --group`) when one is set.
//!
//! A member of that group is as good as root on this host: through the API it can run a
//! privileged container or bind-mount `/` (as Docker's `docker` group can). It is for
//! operators' accounts, never for a service that only needs to read.
//!
//! The group must also pass through the socket's directory. When that directory is berth's own
//! (the state directory, or one berthd creates now) it becomes 0710 root:<gid> — search only,
//! so members reach the socket by name and can list or read nothing below it, where every
//! directory stays 0700. A directory the operator made (`/run`, say) is left as it is, and
//! berthd warns when the group cannot search it. The decision is [`plan_directory`], pure.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;

use crate::sys::fs::create_private_dir_all;

/// The socket's mode, with or without a group.
pub const SOCKET_MODE: u32 = 0o660;
/// The mode of a directory of berth's own that leads a socket group to the socket.
pub const GROUP_SEARCH_DIR_MODE: u32 = 0o710;

/// What to do with the socket's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryPlan {
    /// Nothing: no group, or the group can already search it.
    Leave,
    /// berth's own directory: chown root:`gid`, chmod 0710.
    GroupSearch { gid: u32 },
    /// The operator's directory, which the group cannot search: say so, change nothing.
    WarnUnreachable { gid: u32 },
}

/// The socket directory as found: whether berth owns it, its mode bits and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservedDirectory {
    pub berths_own: bool,
    pub mode: u32,
    pub gid: u32,
}

pub fn plan_directory(directory: ObservedDirectory, socket_gid: Option<u32>) -> DirectoryPlan {
    let Some(gid) = socket_gid else { return DirectoryPlan::Leave };
    if directory.berths_own {
        return DirectoryPlan::GroupSearch { gid };
    }
    let others_search = directory.mode & 0o001 != 0;
    let group_search = directory.gid == gid && directory.mode & 0o010 != 0;
    if others_search || group_search {
        DirectoryPlan::Leave
    } else {
        DirectoryPlan::WarnUnreachable { gid }
    }
}

/// Binds the socket at `address`. A stale file from a crashed berthd is replaced (the caller
/// holds the root's lock, so no live berthd owns it). `state_dir` is berth's own directory.
pub fn bind(address: &Path, state_dir: &Path, socket_gid: Option<u32>) -> Result<UnixListener, String> {
    if let Some(parent) = address.parent() {
        let existed = parent.exists();
        // Private when berthd makes it; a directory that already exists (/run) is not ours to change.
        create_private_dir_all(parent).map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        let metadata =
            std::fs::metadata(parent).map_err(|error| format!("cannot look at {}: {error}", parent.display()))?;
        let observed = ObservedDirectory {
            berths_own: !existed || parent == state_dir,
            mode: metadata.mode() & 0o7777,
            gid: metadata.gid(),
        };
        apply_directory_plan(parent, plan_directory(observed, socket_gid))?;
    }
    match std::fs::remove_file(address) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("cannot remove the stale socket {}: {error}", address.display())),
    }
    let listener =
        UnixListener::bind(address).map_err(|error| format!("cannot listen on {}: {error}", address.display()))?;
    // Owner and group before the mode: the file is 0600 under berthd's umask until then.
    let group = nix::unistd::Gid::from_raw(socket_gid.unwrap_or(0));
    nix::unistd::chown(address, Some(nix::unistd::Uid::from_raw(0)), Some(group))
        .map_err(|error| format!("cannot chown {}: {error}", address.display()))?;
    std::fs::set_permissions(address, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|error| format!("cannot set the mode of {}: {error}", address.display()))?;
    Ok(listener)
}

fn apply_directory_plan(dir: &Path, plan: DirectoryPlan) -> Result<(), String> {
    match plan {
        DirectoryPlan::Leave => Ok(()),
        DirectoryPlan::GroupSearch { gid } => {
            nix::unistd::chown(dir, Some(nix::unistd::Uid::from_raw(0)), Some(nix::unistd::Gid::from_raw(gid)))
                .map_err(|error| format!("cannot give {} to group {gid}: {error}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(GROUP_SEARCH_DIR_MODE))
                .map_err(|error| format!("cannot set the mode of {}: {error}", dir.display()))
        }
        DirectoryPlan::WarnUnreachable { gid } => {
            tracing::warn!(dir = %dir.display(), gid, "members of the socket group cannot search the socket's directory, so they cannot connect; chgrp it to the group and chmod g+x, or serve the socket elsewhere (--address)");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(berths_own: bool, mode: u32, gid: u32) -> ObservedDirectory {
        ObservedDirectory { berths_own, mode, gid }
    }

    #[test]
    fn the_group_is_let_through_berths_own_directory_and_only_warned_about_elsewhere() {
        let cases = [
            (dir(true, 0o700, 0), None, DirectoryPlan::Leave),
            (dir(false, 0o700, 0), None, DirectoryPlan::Leave),
            (dir(true, 0o700, 0), Some(1500), DirectoryPlan::GroupSearch { gid: 1500 }),
            (dir(true, 0o710, 1500), Some(1500), DirectoryPlan::GroupSearch { gid: 1500 }),
            (dir(false, 0o755, 0), Some(1500), DirectoryPlan::Leave),
            (dir(false, 0o750, 1500), Some(1500), DirectoryPlan::Leave),
            (dir(false, 0o750, 1600), Some(1500), DirectoryPlan::WarnUnreachable { gid: 1500 }),
            (dir(false, 0o700, 1500), Some(1500), DirectoryPlan::WarnUnreachable { gid: 1500 }),
        ];
        for (observed, gid, expected) in cases {
            assert_eq!(plan_directory(observed, gid), expected, "{observed:?} with {gid:?}");
        }
    }
}
