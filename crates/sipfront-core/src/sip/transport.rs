//! The transport a SIP message travels over (RFC 3261 §18, Via transport token §20.42).
//!
//! Lives in `sip/` because the transaction layer (reliability decides timers),
//! the transport shell and Via headers all use it.

use std::fmt;

/// The transport a message came over or goes over. Serialized as its
/// [`Transport::as_lowercase`] text (a CDR's leg transports).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP datagrams (unreliable: transactions retransmit).
    Udp,
    /// TCP byte stream, framed by Content-Length (reliable).
    Tcp,
    /// TLS over TCP, framed like TCP (RFC 3261 §26.2; Via `SIP/2.0/TLS`,
    /// `sips:` and `transport=tls` URIs, RFC 5630).
    Tls,
    /// SIP over WebSocket (RFC 7118): one message per WebSocket message
    /// over a connection the client opened (reliable).
    Ws,
    /// SIP over secure WebSocket (RFC 7118, WebSocket over TLS).
    Wss,
}

impl Transport {
    /// Whether the transport is reliable (RFC 3261 §17: no retransmission timers A/E/G).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Whether messages to a peer on this transport can only travel over a
    /// connection the peer opened (RFC 7118 §5: a WebSocket client's Via and
    /// Contact hosts are not routable, so sipfront never dials it).
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// The Via transport token: `"UDP"`, `"TCP"`, `"WS"` or `"WSS"` (RFC 7118 §5.2).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The `transport=` URI parameter value (RFC 3261 §19.1.1, RFC 7118
    /// §5.2): `"udp"`, `"tcp"`, `"tls"`, `"ws"` or `"wss"`.
    pub fn as_lowercase(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// The port a URI without one means (RFC 3261 §19.1.2): 5061 for TLS.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }

    /// Maps a Via transport token (case-insensitive) to a transport we speak.
    ///
    /// # Returns
    /// `None` for transports we do not implement (SCTP ...).
    pub fn from_token(token: &str) -> Option<Transport> {
        [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ]
        .into_iter()
        .find(|t| token.eq_ignore_ascii_case(t.as_str()))
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
        for t in [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ] {
            assert_eq!(Transport::from_token(t.as_str()), Some(t));
        }
        assert_eq!(Transport::from_token("udp"), Some(Transport::Udp));
        assert_eq!(Transport::from_token("wss"), Some(Transport::Wss));
        assert_eq!(Transport::from_token("tls"), Some(Transport::Tls));
        assert!(Transport::Tls.is_reliable() && !Transport::Tls.is_websocket());
        assert_eq!(Transport::Tls.default_port(), 5061);
        assert_eq!(Transport::from_token("SCTP"), None);
        assert!(Transport::Tcp.is_reliable());
        assert!(Transport::Ws.is_reliable() && Transport::Wss.is_reliable());
        assert!(!Transport::Udp.is_reliable());
        assert!(Transport::Ws.is_websocket() && !Transport::Tcp.is_websocket());
        for t in [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ] {
            assert_eq!(t.as_lowercase(), t.as_str().to_ascii_lowercase());
        }
    }
}
