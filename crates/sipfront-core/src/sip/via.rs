//! Via header values (RFC 3261 §20.42, §18.2.1 `received`, RFC 3581 `rport`,
//! RFC 5118 IPv6 sent-by).

use super::lex::{self, Params};
use super::transport::Transport;
use super::uri::{parse_hostport, Host};
use super::ParseError;

/// RFC 3261 §8.1.1.7 branch magic cookie.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/UDP host:port;params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Via<'a> {
    /// Protocol name, `SIP`.
    pub protocol: &'a str,
    /// Protocol version, `2.0`.
    pub version: &'a str,
    /// Transport token as written (`UDP`, `TCP`, `TLS`, `WS` ...).
    pub transport: &'a str,
    /// sent-by host.
    pub host: Host<'a>,
    /// sent-by port.
    pub port: Option<u16>,
    /// via-params (`branch`, `received`, `rport`, `maddr`, `ttl`, extensions).
    pub params: Params<'a>,
}

/// The sent-by part of a Via (host and port), half of a transaction key
/// (RFC 3261 §17.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SentBy<'a> {
    /// Host.
    pub host: Host<'a>,
    /// Port if written.
    pub port: Option<u16>,
}

impl std::fmt::Display for SentBy<'_> {
    /// `host[:port]`, IPv6 in brackets: the form used in a Via and in
    /// transaction keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

impl std::fmt::Display for Via<'_> {
    /// Re-serialises in canonical spacing: `SIP/2.0/UDP host:port;params`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{} {}",
            self.protocol,
            self.version,
            self.transport,
            self.sent_by()
        )?;
        for (name, value) in self.params.iter() {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        Ok(())
    }
}

impl<'a> Via<'a> {
    /// Parses one Via value (one element of a comma list).
    ///
    /// # Errors
    /// [`ParseError::BadVia`] on any syntax error.
    pub fn parse(value: &'a [u8]) -> Result<Via<'a>, ParseError> {
        let s = std::str::from_utf8(lex::trim(value)).map_err(|_| ParseError::BadVia)?;
        Self::parse_str(s).map(|(v, _)| v).ok_or(ParseError::BadVia)
    }

    /// [`Via::parse`] that also returns [`Via::branch`] (found in the same
    /// pass over the parameters).
    pub(crate) fn parse_with_branch(
        value: &'a [u8],
    ) -> Result<(Via<'a>, Option<&'a str>), ParseError> {
        let s = std::str::from_utf8(lex::trim(value)).map_err(|_| ParseError::BadVia)?;
        Self::parse_str(s).ok_or(ParseError::BadVia)
    }

    fn parse_str(s: &'a str) -> Option<(Via<'a>, Option<&'a str>)> {
        let (protocol, rest) = lex::take_token(s);
        let rest = lex::skip_lws(rest).strip_prefix('/')?;
        let (version, rest) = lex::take_token(lex::skip_lws(rest));
        let rest = lex::skip_lws(rest).strip_prefix('/')?;
        let (transport, rest) = lex::take_token(lex::skip_lws(rest));
        if protocol.is_empty() || version.is_empty() || transport.is_empty() {
            return None;
        }
        // at least one LWS between sent-protocol and sent-by
        if !rest.bytes().next().is_some_and(lex::is_lws) {
            return None;
        }
        let rest = lex::skip_lws(rest);
        let (sent_by, params) = lex::split_byte(rest, b';').unwrap_or((rest, ""));
        let (host, port) = parse_hostport(lex::trim_str(sent_by))?;
        let (params, branch) = Params::parse_get(params, "branch")?;
        let via = Via {
            protocol,
            version,
            transport,
            host,
            port,
            params,
        };
        Some((via, branch.flatten()))
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// The `received` parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// RFC 3581 `rport`: `None` when absent, `Some(None)` for the bare flag
    /// (a request asking for it), `Some(Some(port))` once filled in.
    /// A non-numeric value reads as the flag.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse::<u16>().ok()))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params
            .get("ttl")
            .flatten()
            .and_then(|t| t.parse().ok())
    }

    /// Whether the branch starts with the RFC 3261 magic cookie `z9hG4bK`
    /// (otherwise RFC 2543 matching rules apply).
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// Host and port of the sent-by.
    pub fn sent_by(&self) -> SentBy<'a> {
        SentBy {
            host: self.host,
            port: self.port,
        }
    }

    /// The transport as our enum, when it is one we speak.
    pub fn transport_kind(&self) -> Option<Transport> {
        Transport::from_token(self.transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn plain() {
        let v =
            Via::parse(b"SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.transport_kind(), Some(Transport::Udp));
        assert_eq!(v.host, Host::Name("pc33.example.com"));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
        assert!(v.is_rfc3261_branch());
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), None);
    }

    #[test]
    fn spaces_ipv6_received_rport() {
        let v = Via::parse(
            b"SIP / 2.0 / TCP  [2001:db8::9] : 5070 ; received=192.0.2.1 ; rport=4321;branch=1",
        )
        .unwrap();
        assert_eq!(v.host, Host::V6("2001:db8::9".parse::<Ipv6Addr>().unwrap()));
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.received(), Some("192.0.2.1"));
        assert_eq!(v.rport(), Some(Some(4321)));
        assert!(!v.is_rfc3261_branch());
    }

    #[test]
    fn display() {
        let v = Via::parse(b"SIP / 2.0 / UDP [::1] : 5070 ;branch=z9hG4bK1 ; rport").unwrap();
        assert_eq!(v.sent_by().to_string(), "[::1]:5070");
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [::1]:5070;branch=z9hG4bK1;rport"
        );
    }

    #[test]
    fn folded_and_bad() {
        let v = Via::parse(b"SIP/2.0/UDP\r\n host.example;branch=z9hG4bKx").unwrap();
        assert_eq!(v.host, Host::Name("host.example"));
        assert!(Via::parse(b"SIP/2.0/UDP").is_err());
        assert!(Via::parse(b"SIP/2.0 host").is_err());
        assert!(Via::parse(b"SIP/2.0/UDP host;branch=\"x").is_err());
        assert!(Via::parse(b"SIP/2.0/UDP [::1").is_err());
        assert!(Via::parse(b"SIP/2.0/UDP host:70000").is_err());
    }
}
