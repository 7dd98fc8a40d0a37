//! The transport a SIP message travels over (RFC 3261 §18, Via transport token §20.42).
//!
//! Lives in `sip/` because the transaction layer (reliability decides timers),
//! the transport shell and Via headers all use it.

use std::fmt;

/// The transport a message came over or goes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// UDP datagrams (unreliable: transactions retransmit).
    Udp,
    /// TCP byte stream, framed by Content-Length (reliable).
    Tcp,
}

impl Transport {
    /// Whether the transport is reliable (RFC 3261 §17: no retransmission timers A/E/G).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    /// The Via transport token: `"UDP"` or `"TCP"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// Maps a Via transport token (case-insensitive) to a transport we speak.
    ///
    /// # Returns
    /// `None` for transports we do not implement (TLS, SCTP, WS ...).
    pub fn from_token(token: &str) -> Option<Transport> {
        if token.eq_ignore_ascii_case("UDP") {
            Some(Transport::Udp)
        } else if token.eq_ignore_ascii_case("TCP") {
            Some(Transport::Tcp)
        } else {
            None
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for t in [Transport::Udp, Transport::Tcp] {
            assert_eq!(Transport::from_token(t.as_str()), Some(t));
        }
        assert_eq!(Transport::from_token("udp"), Some(Transport::Udp));
        assert_eq!(Transport::from_token("TLS"), None);
        assert!(Transport::Tcp.is_reliable());
        assert!(!Transport::Udp.is_reliable());
    }
}
