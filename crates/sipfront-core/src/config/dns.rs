//! `[dns]` and the DNS-related `[[upstream]]` keys (RFC 3263 resolution of
//! upstream host names; fail-over codes per upstream).

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[dns]`: how upstream host names are resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// `"ip:port"` servers asked in order; empty: the system resolver
    /// (`/etc/resolv.conf`).
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
}

/// One entry of `failover_codes`: a status (`503`) or a class (`"5xx"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum FailoverCode {
    /// One status code, e.g. `408`.
    Code(u16),
    /// A whole class, `"4xx"`, `"5xx"` or `"6xx"` (a number as a string is
    /// one code).
    Class(String),
}

impl FailoverCode {
    /// The inclusive status range this entry covers, or why it is invalid.
    /// Only final failures (400–699) can move a call to the next hop.
    ///
    /// # Errors
    /// A message naming the bad entry.
    pub fn range(&self) -> Result<(u16, u16), String> {
        let (lo, hi) = match self {
            FailoverCode::Code(c) => (*c, *c),
            FailoverCode::Class(s) => {
                let t = s.trim();
                if let Ok(c) = t.parse::<u16>() {
                    (c, c)
                } else {
                    match t.to_ascii_lowercase().as_str() {
                        "4xx" => (400, 499),
                        "5xx" => (500, 599),
                        "6xx" => (600, 699),
                        _ => return Err(format!("`{s}` is neither a status code nor 4xx/5xx/6xx")),
                    }
                }
            }
        };
        if !(400..=699).contains(&lo) || !(400..=699).contains(&hi) {
            return Err(format!(
                "`{self}`: only failure responses (400-699) can fail over"
            ));
        }
        Ok((lo, hi))
    }
}

impl fmt::Display for FailoverCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailoverCode::Code(c) => write!(f, "{c}"),
            FailoverCode::Class(s) => f.write_str(s),
        }
    }
}

/// The default: `408` and any `5xx` (with timeouts and transport errors,
/// which always fail over), as Kamailio dispatcher setups usually do.
pub fn default_failover_codes() -> Vec<FailoverCode> {
    vec![
        FailoverCode::Code(408),
        FailoverCode::Class("5xx".to_owned()),
    ]
}
