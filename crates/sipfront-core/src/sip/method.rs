//! SIP request methods (RFC 3261 §7.1, §27.4 and the extension RFCs).
//!
//! Unknown methods are legal SIP (RFC 3261 §8.2.1: answer 405/501) so they are
//! kept as [`Method::Other`], never rejected by the parser.

use bytes::Bytes;
use std::fmt;

/// A request method. Methods are case-sensitive (RFC 3261 §7.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// OPTIONS (RFC 3261).
    Options,
    /// REGISTER (RFC 3261).
    Register,
    /// PRACK (RFC 3262).
    Prack,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// PUBLISH (RFC 3903).
    Publish,
    /// INFO (RFC 6086).
    Info,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// UPDATE (RFC 3311).
    Update,
    /// Any other token, kept verbatim.
    Other(Bytes),
}

impl Method {
    /// The method token as text. `Other` methods that are not UTF-8 (the parser
    /// only admits token characters, so only hand-built ones) show as `""`.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Other(b) => std::str::from_utf8(b).unwrap_or(""),
        }
    }

    /// Maps a known token to its variant without allocating.
    fn known(b: &[u8]) -> Option<Method> {
        Some(match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"UPDATE" => Method::Update,
            _ => return None,
        })
    }

    /// Method from its token (case-sensitive); unknown ones are copied into `Other`.
    pub fn from_bytes(b: &[u8]) -> Method {
        Method::known(b).unwrap_or_else(|| Method::Other(Bytes::copy_from_slice(b)))
    }

    /// Method from a range of a shared buffer: zero-copy for unknown methods.
    pub(crate) fn from_shared(buf: &Bytes, start: usize, end: usize) -> Method {
        let Some(b) = buf.get(start..end) else {
            return Method::Other(Bytes::new());
        };
        Method::known(b).unwrap_or_else(|| Method::Other(buf.slice(start..end)))
    }

    /// Compares with a raw token without allocating.
    pub fn eq_bytes(&self, b: &[u8]) -> bool {
        match self {
            Method::Other(o) => o.as_ref() == b,
            m => m.as_str().as_bytes() == b,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_other() {
        assert_eq!(Method::from_bytes(b"INVITE"), Method::Invite);
        assert_eq!(Method::from_bytes(b"invite").as_str(), "invite");
        assert!(matches!(Method::from_bytes(b"NEWMETHOD"), Method::Other(_)));
        assert!(Method::Bye.eq_bytes(b"BYE"));
    }
}
