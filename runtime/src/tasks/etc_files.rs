//! The files a container finds in its `/etc` whatever its image holds — `hostname`, `hosts` and
//! `resolv.conf` — written into its bundle and bind-mounted read-only over the image's, as
//! containerd and docker give them. Read-only because the bundle lives in the state directory
//! (tmpfs by default): a container appending to a writable `/etc/hosts` would fill the host's.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder};
use oci_spec::OciSpecError;

/// The files, by their name in the bundle and in the container's `/etc`.
pub const ETC_FILE_NAMES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];
/// What the host resolves with; on systemd-resolved hosts it names only the local stub.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of the real upstream servers, used when the host's file names only
/// loopback resolvers (which mean nothing in the container's own network namespace).
pub const SYSTEMD_RESOLVED_UPSTREAM_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
/// Readable by the container's non-root users through the bind mount; they hold nothing secret
/// (the bundle directory around them stays 0700).
const ETC_FILE_MODE: u32 = 0o644;

/// True for a `nameserver` line naming a loopback address (127.0.0.0/8 or ::1), which would
/// point at the container's own loopback, not the host's resolver.
fn is_loopback_nameserver(line: &str) -> bool {
    let mut words = line.split_whitespace();
    if words.next() != Some("nameserver") {
        return false;
    }
    match words.next().and_then(|address| address.split('%').next()?.parse::<std::net::IpAddr>().ok()) {
        Some(address) => address.is_loopback(),
        None => false,
    }
}

fn has_usable_nameserver(resolv_conf: &str) -> bool {
    resolv_conf.lines().any(|line| line.trim_start().starts_with("nameserver") && !is_loopback_nameserver(line))
}

/// The container's `resolv.conf`: the host's, without loopback nameservers. When none is left
/// the file names none (the container then has no DNS, which with loopback-only networking is
/// the truth); no public resolver is ever made up.
pub fn resolv_conf_contents(host_resolv_conf: &str) -> String {
    let mut contents: String =
        host_resolv_conf.lines().filter(|line| !is_loopback_nameserver(line)).map(|line| format!("{line}\n")).collect();
    if contents.is_empty() {
        contents.push_str("# berth: the host's resolv.conf named no resolver a container can use\n");
    }
    contents
}

/// The host's resolver configuration as a container should see it (missing files read as empty).
pub fn host_resolv_conf() -> String {
    let host = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
    if !has_usable_nameserver(&host) {
        if let Ok(upstream) = std::fs::read_to_string(SYSTEMD_RESOLVED_UPSTREAM_RESOLV_CONF) {
            return resolv_conf_contents(&upstream);
        }
    }
    resolv_conf_contents(&host)
}

/// The container's `resolv.conf` with `--dns` servers: those replace the host's nameservers;
/// the host's `search` and `options` lines stay.
pub fn resolv_conf_with_servers(dns: &[String]) -> String {
    if dns.is_empty() {
        return host_resolv_conf();
    }
    let mut contents: String = dns.iter().map(|server| format!("nameserver {server}\n")).collect();
    let host = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
    contents.extend(
        host.lines().filter(|line| !line.trim_start().starts_with("nameserver")).map(|line| format!("{line}\n")),
    );
    contents
}

/// Writes the three files into `bundle_dir`, replacing older ones (`hosts` from
/// `network::hosts`).
pub fn write_etc_files(bundle_dir: &Path, hostname: &str, hosts: &str, resolv_conf: &str) -> std::io::Result<()> {
    write_etc_file(bundle_dir, "hostname", &format!("{hostname}\n"))?;
    write_etc_file(bundle_dir, "hosts", hosts)?;
    write_etc_file(bundle_dir, "resolv.conf", resolv_conf)
}

/// Rewrites one file in place: the same inode, so a running container's bind mount of it sees
/// the new text (a rename would leave the mount on the old file). A process in the container may
/// be reading it meanwhile, so a file that already says `text` is left alone, and a changed one
/// is overwritten from its start and only then cut to its new length: a reader sees old text,
/// new text or a mix of the two lines, never an empty file.
pub fn write_etc_file(bundle_dir: &Path, file_name: &str, text: &str) -> std::io::Result<()> {
    let path = bundle_dir.join(file_name);
    if std::fs::read(&path).is_ok_and(|current| current == text.as_bytes()) {
        return Ok(());
    }
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(ETC_FILE_MODE).open(&path)?;
    file.write_all(text.as_bytes())?;
    file.set_len(text.len() as u64)?;
    // berthd's umask made it 0600 at creation; the container's users must read it.
    file.set_permissions(std::fs::Permissions::from_mode(ETC_FILE_MODE))
}

/// The read-only bind mounts of the files in `bundle_dir` over the container's `/etc/...`.
pub fn etc_mounts(bundle_dir: &Path) -> Result<Vec<Mount>, OciSpecError> {
    ETC_FILE_NAMES
        .iter()
        .map(|file_name| {
            MountBuilder::default()
                .destination(PathBuf::from("/etc").join(file_name))
                .typ("bind")
                .source(bundle_dir.join(file_name))
                .options(
                    ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"]
                        .iter()
                        .map(|option| option.to_string())
                        .collect::<Vec<String>>(),
                )
                .build()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_are_dropped_and_the_rest_is_kept() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.1.2.3\nnameserver ::1\nnameserver fe80::1%eth0\noptions edns0\nsearch example.internal\n";
        assert_eq!(
            resolv_conf_contents(host),
            "# generated\nnameserver 10.1.2.3\nnameserver fe80::1%eth0\noptions edns0\nsearch example.internal\n"
        );
        assert!(!has_usable_nameserver("nameserver 127.0.0.53\noptions trust-ad\n"));
        assert!(has_usable_nameserver("nameserver 192.0.2.1\n"));
    }

    #[test]
    fn nothing_usable_gives_a_file_without_a_resolver_never_a_made_up_one() {
        let contents = resolv_conf_contents("nameserver 127.0.0.1\n");
        assert!(!contents.contains("nameserver"), "{contents}");
        assert!(resolv_conf_contents("").starts_with('#'));
    }

    #[test]
    fn files_are_written_readable_and_mounted_read_only() {
        let bundle = tempfile::tempdir().unwrap();
        write_etc_files(bundle.path(), "web", "127.0.0.1\tlocalhost\n", &host_resolv_conf()).unwrap();
        for file_name in ETC_FILE_NAMES {
            let mode = std::fs::metadata(bundle.path().join(file_name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{file_name}");
        }
        assert_eq!(std::fs::read_to_string(bundle.path().join("hostname")).unwrap(), "web\n");
        let mounts = etc_mounts(bundle.path()).unwrap();
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[1].destination(), Path::new("/etc/hosts"));
        assert_eq!(mounts[1].source().as_deref(), Some(bundle.path().join("hosts").as_path()));
        assert!(mounts[1].options().as_ref().unwrap().contains(&"ro".to_string()));
    }

    #[test]
    fn a_rewrite_keeps_the_inode_cuts_a_shorter_text_and_leaves_the_same_text_untouched() {
        use std::os::unix::fs::MetadataExt;
        let bundle = tempfile::tempdir().unwrap();
        let path = bundle.path().join("hosts");
        write_etc_file(bundle.path(), "hosts", "10.0.0.2\tweb\n10.0.0.3\tdb\n").unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        write_etc_file(bundle.path(), "hosts", "10.0.0.2\tweb\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "10.0.0.2\tweb\n");
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_etc_file(bundle.path(), "hosts", "10.0.0.2\tweb\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), before, "the same text is not written again");
    }
}
