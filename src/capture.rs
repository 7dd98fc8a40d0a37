//! SIP capture: a HEPv3 copy (Homer's encapsulation, as Kamailio's
//! `siptrace` and sngrep send it) of every SIP message the core receives
//! or sends, to `[capture] hep = "IP:port"` over UDP.
//!
//! Off the hot path beyond one bounded queue: the core task hands each
//! message's bytes (a reference-counted `Bytes`, no copy) with its
//! addresses to [`Capture::copy`], which never waits; one task encodes and
//! sends. When the queue is full copies are dropped and counted
//! (`sipfront_capture_dropped_total`), never the call delayed.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::sip::Transport;
use crate::transport::{Outbound, TransportEvent};

/// Copies queued for the sender before new ones are dropped.
pub const QUEUE: usize = 8192;

/// One captured message.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Its transport (HEP's IP protocol: UDP, else TCP).
    pub transport: Transport,
    /// Wall clock, microseconds since the Unix epoch.
    pub unix_us: u64,
    /// The SIP message as on the wire.
    pub payload: Bytes,
}

/// The handle the core tasks copy messages to.
#[derive(Debug)]
pub struct Capture {
    tx: mpsc::Sender<Captured>,
    sent: Arc<AtomicU64>,
    dropped: AtomicU64,
}

impl Capture {
    /// Binds a UDP socket toward `hep` and starts the sender task.
    ///
    /// # Errors
    /// The socket cannot be bound.
    pub async fn start(hep: SocketAddr, capture_id: u32) -> std::io::Result<Capture> {
        let bind: SocketAddr = if hep.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = tokio::net::UdpSocket::bind(bind).await?;
        let (tx, mut rx) = mpsc::channel::<Captured>(QUEUE);
        let sent = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&sent);
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(2048);
            let mut warned = false;
            while let Some(m) = rx.recv().await {
                buf.clear();
                encode(&m, capture_id, &mut buf);
                match sock.send_to(&buf, hep).await {
                    Ok(_) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!(%hep, "HEP capture: cannot send: {e} (said once)");
                    }
                    Err(_) => {}
                }
            }
        });
        tracing::info!(%hep, capture_id, "HEP capture: every SIP message is copied to {hep}");
        Ok(Capture {
            tx,
            sent,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues a copy; never waits (a full queue drops it, counted).
    pub fn copy(&self, m: Captured) {
        if self.tx.try_send(m).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Copies sent to the collector.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Copies dropped: the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What a core task holds: the capture and our listening addresses (an
/// outgoing message is shown from the first listener of its transport).
#[derive(Debug, Clone)]
pub struct Tap {
    capture: Arc<Capture>,
    locals: Arc<[(Transport, SocketAddr)]>,
}

impl Tap {
    /// A tap on `capture`; `locals` are the bound SIP listeners.
    pub fn new(capture: Arc<Capture>, locals: Vec<(Transport, SocketAddr)>) -> Tap {
        Tap {
            capture,
            locals: locals.into(),
        }
    }

    /// `sipfront_capture_sent_total` and `_dropped_total`.
    pub fn write_metrics(&self, m: &mut String) {
        use crate::endpoint::metric;
        metric(
            m,
            "sipfront_capture_sent_total",
            "counter",
            "SIP messages copied to the HEP collector ([capture] hep).",
            self.capture.sent(),
        );
        metric(
            m,
            "sipfront_capture_dropped_total",
            "counter",
            "SIP message copies dropped: the capture queue was full.",
            self.capture.dropped(),
        );
    }

    /// A message that arrived (other events are not SIP messages).
    pub fn inbound(&self, ev: &TransportEvent) {
        if let TransportEvent::Inbound(m) = ev {
            self.capture.copy(Captured {
                src: m.peer,
                dst: m.local,
                transport: m.transport,
                unix_us: unix_us(),
                payload: m.bytes.clone(),
            });
        }
    }

    /// A message the core hands to the transports.
    pub fn outbound(&self, out: &Outbound) {
        let src = self
            .locals
            .iter()
            .find(|(t, _)| *t == out.transport)
            .or(self.locals.first())
            .map_or(([0, 0, 0, 0], 0).into(), |(_, a)| *a);
        self.capture.copy(Captured {
            src,
            dst: out.dest,
            transport: out.transport,
            unix_us: unix_us(),
            payload: out.bytes.clone(),
        });
    }
}

/// Microseconds since the Unix epoch, now (the shell's wall clock).
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Appends one chunk: vendor 0 (generic), `kind`, length with its header.
fn chunk(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(6 + value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// The HEPv3 packet of `m` (`HEP3`, total length, then chunks: IP family
/// and protocol, addresses, ports, time, protocol type 1 = SIP, capture
/// agent id, payload). A payload that would not fit a packet's 16-bit
/// length is cut (SIP over UDP never comes near).
pub fn encode(m: &Captured, capture_id: u32, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(&[0, 0]); // total length, set below
    let (src, dst) = (canonical(m.src.ip()), canonical(m.dst.ip()));
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            chunk(out, 0x0001, &[2]);
            chunk(out, 0x0002, &[proto(m.transport)]);
            chunk(out, 0x0003, &s.octets());
            chunk(out, 0x0004, &d.octets());
        }
        (s, d) => {
            chunk(out, 0x0001, &[10]);
            chunk(out, 0x0002, &[proto(m.transport)]);
            chunk(out, 0x0005, &v6(s).octets());
            chunk(out, 0x0006, &v6(d).octets());
        }
    }
    chunk(out, 0x0007, &m.src.port().to_be_bytes());
    chunk(out, 0x0008, &m.dst.port().to_be_bytes());
    let secs = u32::try_from(m.unix_us / 1_000_000).unwrap_or(u32::MAX);
    let micros = u32::try_from(m.unix_us % 1_000_000).unwrap_or(0);
    chunk(out, 0x0009, &secs.to_be_bytes());
    chunk(out, 0x000a, &micros.to_be_bytes());
    chunk(out, 0x000b, &[1]);
    chunk(out, 0x000c, &capture_id.to_be_bytes());
    let room = usize::from(u16::MAX) - (out.len() - start) - 6;
    let payload = m
        .payload
        .get(..m.payload.len().min(room))
        .unwrap_or_default();
    chunk(out, 0x000f, payload);
    let total = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    if let Some(len) = out.get_mut(start + 4..start + 6) {
        len.copy_from_slice(&total.to_be_bytes());
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// HEP's IP protocol: 17 for UDP, 6 for the stream transports.
fn proto(t: Transport) -> u8 {
    if t == Transport::Udp {
        17
    } else {
        6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_hep3_chunks() {
        let m = Captured {
            src: "10.0.0.1:5060".parse().unwrap_or_else(|e| panic!("{e}")),
            dst: "192.0.2.9:5080".parse().unwrap_or_else(|e| panic!("{e}")),
            transport: Transport::Udp,
            unix_us: 1_700_000_000_123_456,
            payload: Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
        };
        let mut out = Vec::new();
        encode(&m, 7, &mut out);
        assert_eq!(&out[..4], b"HEP3");
        assert_eq!(usize::from(u16::from_be_bytes([out[4], out[5]])), out.len());
        // Walk the chunks: each type once, with the values put in.
        let mut at = 6;
        let mut seen = std::collections::BTreeMap::new();
        while at < out.len() {
            let kind = u16::from_be_bytes([out[at + 2], out[at + 3]]);
            let len = usize::from(u16::from_be_bytes([out[at + 4], out[at + 5]]));
            seen.insert(kind, out[at + 6..at + len].to_vec());
            at += len;
        }
        assert_eq!(at, out.len());
        assert_eq!(seen[&0x0001], [2]);
        assert_eq!(seen[&0x0002], [17]);
        assert_eq!(seen[&0x0003], [10, 0, 0, 1]);
        assert_eq!(seen[&0x0004], [192, 0, 2, 9]);
        assert_eq!(seen[&0x0008], 5080u16.to_be_bytes());
        assert_eq!(seen[&0x0009], 1_700_000_000u32.to_be_bytes());
        assert_eq!(seen[&0x000a], 123_456u32.to_be_bytes());
        assert_eq!(seen[&0x000b], [1]);
        assert_eq!(seen[&0x000c], 7u32.to_be_bytes());
        assert_eq!(seen[&0x000f], m.payload.to_vec());
    }
}
