//! `[transport]`: socket buffer sizes and the bounded queues that absorb a
//! full socket (RFC 3261 §18: UDP datagrams and TCP streams), so a burst
//! waits instead of failing calls.

use serde::Deserialize;

/// Smallest accepted size of any `[transport]` buffer or queue: one
/// largest SIP message (`sip::MAX_MESSAGE_SIZE`).
pub const MIN_TRANSPORT_BYTES: u64 = 65_536;
/// Largest accepted size (1 GiB): a typo in bytes, not a wish.
pub const MAX_TRANSPORT_BYTES: u64 = 1 << 30;

/// `[transport]`: sizes in bytes, each with a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportSettings {
    /// `SO_RCVBUF` asked for each UDP socket (the kernel caps it at
    /// `net.core.rmem_max`; what it granted is logged).
    #[serde(default = "default_buffer")]
    pub udp_recv_buffer: u64,
    /// `SO_SNDBUF` asked for each UDP socket (capped at `net.core.wmem_max`).
    #[serde(default = "default_buffer")]
    pub udp_send_buffer: u64,
    /// Datagrams held per UDP socket while its send buffer is full; past
    /// it they are dropped (counted; retransmissions resend them).
    #[serde(default = "default_buffer")]
    pub udp_send_queue: u64,
    /// Bytes waiting per TCP connection; past it sends on that connection
    /// fail (the peer stopped reading).
    #[serde(default = "default_buffer")]
    pub tcp_write_queue: u64,
    /// Milliseconds a TLS handshake (inbound or outbound) may take before
    /// the connection is closed (a client that connects and stalls).
    #[serde(default = "default_tls_handshake_timeout_ms")]
    pub tls_handshake_timeout_ms: u64,
}

fn default_tls_handshake_timeout_ms() -> u64 {
    5_000
}

fn default_buffer() -> u64 {
    4 << 20
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            udp_recv_buffer: default_buffer(),
            udp_send_buffer: default_buffer(),
            udp_send_queue: default_buffer(),
            tcp_write_queue: default_buffer(),
            tls_handshake_timeout_ms: default_tls_handshake_timeout_ms(),
        }
    }
}

impl TransportSettings {
    /// Each key with its value, for validation.
    pub fn sizes(&self) -> [(&'static str, u64); 4] {
        [
            ("udp_recv_buffer", self.udp_recv_buffer),
            ("udp_send_buffer", self.udp_send_buffer),
            ("udp_send_queue", self.udp_send_queue),
            ("tcp_write_queue", self.tcp_write_queue),
        ]
    }
}
