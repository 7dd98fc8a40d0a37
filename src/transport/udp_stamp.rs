//! Kernel receive timestamps for UDP (Linux `SO_TIMESTAMPNS`, socket(7)).
//!
//! Overload control measures how long a message queued before the core
//! read it. Under load the first queue is the socket's receive buffer (4 MiB
//! by default, thousands of requests) and only then the channel to the core,
//! so the stamp must be taken when the datagram reached the socket, not when
//! a receive task got round to it. The kernel writes that time (wall clock)
//! into a control message of each `recvmsg`; [`arrival`] turns it into an
//! `Instant` on the shell's clock.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, MsgFlags, SockaddrStorage};

/// A kernel stamp further in the past than this is not trusted (the wall
/// clock stepped): the message counts as read now. Above every overload
/// bound `[server]` accepts (60 s).
const MAX_TRUSTED_AGE: Duration = Duration::from_secs(120);

/// Asks the kernel to stamp every datagram received on `socket`. Best
/// effort: without it, [`arrival`] falls back to the time of reading.
pub(super) fn enable(socket: &impl AsFd) {
    #[cfg(target_os = "linux")]
    if let Err(e) = socket::setsockopt(socket, socket::sockopt::ReceiveTimestampns, &true) {
        tracing::debug!("SO_TIMESTAMPNS not set: {e}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

/// Room for the control messages [`recv`] expects.
pub(super) fn control_buffer() -> Vec<u8> {
    nix::cmsg_space!(nix::sys::time::TimeSpec)
}

/// One datagram read by [`recv`].
#[derive(Debug)]
pub(super) struct Received {
    /// Bytes written into the buffer.
    pub(super) len: usize,
    /// The sender.
    pub(super) peer: SocketAddr,
    /// When the kernel received it, as time since the Unix epoch.
    pub(super) kernel: Option<Duration>,
}

/// Reads one datagram into `into` with its kernel timestamp. Non-blocking
/// on a non-blocking socket (`WouldBlock` when nothing is queued).
///
/// # Errors
/// The socket error; a datagram from an address that is not IP is
/// `InvalidData`.
pub(super) fn recv(fd: RawFd, into: &mut [u8], control: &mut [u8]) -> io::Result<Received> {
    let mut iov = [io::IoSliceMut::new(into)];
    let msg = socket::recvmsg::<SockaddrStorage>(fd, &mut iov, Some(control), MsgFlags::empty())?;
    let peer = msg.address.as_ref().and_then(|a| {
        a.as_sockaddr_in()
            .map(|v4| SocketAddr::V4(SocketAddrV4::from(*v4)))
            .or_else(|| {
                a.as_sockaddr_in6()
                    .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
            })
    });
    let Some(peer) = peer else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram from a non-IP address",
        ));
    };
    let mut kernel = None;
    #[cfg(target_os = "linux")]
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let socket::ControlMessageOwned::ScmTimestampns(ts) = c {
                let secs = u64::try_from(ts.tv_sec()).ok();
                let nanos = u32::try_from(ts.tv_nsec()).ok();
                kernel = secs.zip(nanos).map(|(s, n)| Duration::new(s, n));
            }
        }
    }
    Ok(Received {
        len: msg.bytes,
        peer,
        kernel,
    })
}

/// The `Instant` (on the clock `now` is read from) at which a datagram
/// arrived, from its kernel stamp and the wall clock read at `now`
/// (`wall`, time since the Unix epoch). `now` without a stamp, or with one
/// in the future or more than [`MAX_TRUSTED_AGE`] old (the wall clock
/// stepped between the two readings).
pub(super) fn arrival(now: Instant, wall: Duration, kernel: Option<Duration>) -> Instant {
    kernel
        .and_then(|k| wall.checked_sub(k))
        .filter(|age| *age <= MAX_TRUSTED_AGE)
        .and_then(|age| now.checked_sub(age))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_is_the_kernel_stamp_on_the_monotonic_clock() {
        let now = Instant::now();
        let wall = Duration::from_secs(1_700_000_000);
        let at = arrival(now, wall, Some(wall - Duration::from_millis(250)));
        assert_eq!(now - at, Duration::from_millis(250));
        assert_eq!(arrival(now, wall, None), now, "no stamp: read now");
        let future = Some(wall + Duration::from_secs(1));
        assert_eq!(arrival(now, wall, future), now, "clock stepped back");
        let ancient = Some(wall - Duration::from_secs(3600));
        assert_eq!(arrival(now, wall, ancient), now, "clock stepped forward");
    }

    #[test]
    fn a_datagram_carries_its_kernel_stamp() {
        use std::os::fd::AsRawFd;
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&rx);
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"OPTIONS", rx.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 64];
        let mut control = control_buffer();
        let got = recv(rx.as_raw_fd(), &mut buf, &mut control).unwrap();
        assert_eq!(&buf[..got.len], b"OPTIONS");
        assert_eq!(got.peer, tx.local_addr().unwrap());
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let stamp = got.kernel.expect("SO_TIMESTAMPNS stamp (Linux)");
        assert!(wall >= stamp && wall - stamp < Duration::from_secs(5));
    }
}
