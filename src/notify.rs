//! systemd's service notifications (sd_notify(3)) without libsystemd: one
//! datagram with `READY=1`, `STOPPING=1`… to the socket `$NOTIFY_SOCKET`
//! names (a path, or `@name` in the abstract namespace). Without the
//! variable (not under systemd's `Type=notify`) nothing is sent.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (newline-separated `KEY=value` assignments) to the
/// service manager; whether it was sent. A failure is logged, never fatal:
/// the service runs the same, systemd just does not hear of it.
pub fn notify(state: &str) -> bool {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    match send(&socket, state) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                "NOTIFY_SOCKET={}: cannot tell systemd `{}`: {e}",
                socket.to_string_lossy(),
                state.lines().next().unwrap_or_default()
            );
            false
        }
    }
}

/// One datagram with `state` to `socket` (`/path` or `@abstract`).
///
/// # Errors
/// A name that is neither, or the send failed.
pub fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let bytes = socket.as_bytes();
    let addr = match bytes.split_first() {
        Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
        Some((b'/', _)) => SocketAddr::from_pathname(socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor @abstract",
            ))
        }
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_abstract_sockets_get_the_datagram() {
        let dir = std::env::temp_dir().join(format!("sipfront-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("notify");
        let rx = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("{e}"));
        send(path.as_os_str(), "READY=1").unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("sipfront-notify-test-{}", std::process::id());
        let addr =
            SocketAddr::from_abstract_name(name.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let rx = UnixDatagram::bind_addr(&addr).unwrap_or_else(|e| panic!("{e}"));
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap_or_else(|e| panic!("{e}"));
        let n = rx.recv(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf[..n], b"STOPPING=1");

        assert!(send(OsStr::new("relative/path"), "READY=1").is_err());
        assert!(send(OsStr::new(""), "READY=1").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
