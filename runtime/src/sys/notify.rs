//! The service manager's readiness protocol (what systemd calls sd_notify): one unix datagram of
//! newline-separated `KEY=VALUE` lines sent to the socket `$NOTIFY_SOCKET` names — a path, or
//! an abstract socket written `@name`. berthd says `READY=1` once its socket serves and
//! `STOPPING=1` when it begins to stop (contrib/systemd/berthd.service is `Type=notify`).
//!
//! berthd takes the variable out of its own environment before any thread exists, so no child
//! inherits it: runc, given `NOTIFY_SOCKET`, would pass the service manager's socket into the
//! container, and a monitor could tell the manager things about a service it is not.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable the service manager sets.
pub const NOTIFY_SOCKET_VAR: &str = "NOTIFY_SOCKET";

/// Where to send notifications, if a service manager asked for them.
#[derive(Debug)]
pub struct Notifier {
    address: SocketAddr,
    socket: UnixDatagram,
}

impl Notifier {
    /// Reads and removes `NOTIFY_SOCKET`. Call it before any thread is started (the environment
    /// is the process's). `Ok(None)` when no service manager asked; an address that is neither
    /// an absolute path nor `@name` (a vsock address, say) is an error to log, not to stop on.
    pub fn take_from_environment() -> Result<Option<Notifier>, String> {
        let Some(value) = std::env::var_os(NOTIFY_SOCKET_VAR) else { return Ok(None) };
        std::env::remove_var(NOTIFY_SOCKET_VAR);
        Notifier::for_address(value.as_encoded_bytes()).map(Some)
    }

    /// A notifier for `NOTIFY_SOCKET`'s value.
    pub fn for_address(value: &[u8]) -> Result<Notifier, String> {
        let shown = String::from_utf8_lossy(value);
        let address = match value {
            [b'@', name @ ..] if !name.is_empty() => SocketAddr::from_abstract_name(name),
            [b'/', ..] => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(value)),
            _ => {
                return Err(format!(
                    "{NOTIFY_SOCKET_VAR}={shown:?} is neither an absolute path nor an abstract socket (@name); readiness is not reported"
                ))
            }
        }
        .map_err(|error| format!("{NOTIFY_SOCKET_VAR}={shown:?} is not a usable socket address: {error}"))?;
        let socket = UnixDatagram::unbound().map_err(|error| format!("cannot make a datagram socket: {error}"))?;
        Ok(Notifier { address, socket })
    }

    /// Sends `lines` (e.g. `["READY=1", "MAINPID=42"]`) as one datagram. A failure is logged:
    /// a service manager that went away must not stop berthd.
    pub fn notify(&self, lines: &[String]) {
        let message = lines.join("\n");
        if let Err(error) = self.socket.send_to_addr(message.as_bytes(), &self.address) {
            tracing::warn!(%error, message = %message.replace('\n', " "), "cannot notify the service manager");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_abstract_addresses_receive_the_datagram_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        Notifier::for_address(path.as_os_str().as_encoded_bytes())
            .unwrap()
            .notify(&["READY=1".to_string(), "MAINPID=7".to_string()]);
        let mut buffer = [0u8; 128];
        let n_bytes = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n_bytes], b"READY=1\nMAINPID=7");

        let name = format!("berth-notify-test-{}", std::process::id());
        let abstract_listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        Notifier::for_address(format!("@{name}").as_bytes()).unwrap().notify(&["STOPPING=1".to_string()]);
        let n_bytes = abstract_listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n_bytes], b"STOPPING=1");

        for bad in ["relative/path", "@", "", "vsock:2:1234"] {
            let error = Notifier::for_address(bad.as_bytes()).unwrap_err();
            assert!(error.contains("NOTIFY_SOCKET"), "{bad}: {error}");
        }
    }
}
