//! rtpengine's ng control protocol on the wire: one UDP datagram is a
//! cookie, a space and a bencoded dictionary; the reply carries the same
//! cookie (rtpengine's `docs/ng_control_protocol.md`).
//!
//! Bencode is written and read by `serde_bencode`. Replies come from the
//! network, so a reply is first checked here without recursion: well
//! formed, at most [`MAX_DEPTH`] levels of nesting, no longer than a
//! datagram. Only then does the recursive decoder see it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::b2bua::media::MediaCommand;

/// Deepest nesting of lists and dictionaries accepted in a reply (an
/// rtpengine `query` reply nests about 5 levels).
pub const MAX_DEPTH: usize = 32;

/// Longest cookie accepted in a reply.
const MAX_COOKIE: usize = 64;

/// Why a datagram is not a usable ng reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NgError {
    /// No `cookie SP` prefix.
    #[error("no cookie")]
    NoCookie,
    /// Not well-formed bencode (or trailing bytes after it).
    #[error("malformed bencode at byte {0}")]
    Malformed(usize),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Well-formed, but not the dictionary a reply is.
    #[error("not an ng reply: {0}")]
    Shape(String),
    /// A request could not be written (cannot happen with our types).
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// One ng request. Keys as rtpengine spells them; absent ones are not sent.
#[derive(Debug, Default, Serialize)]
pub struct Request<'a> {
    /// `offer`, `answer`, `delete`, `query`, `list`, `ping`.
    pub command: &'a str,
    /// The call.
    #[serde(rename = "call-id", skip_serializing_if = "Option::is_none")]
    pub call_id: Option<&'a str>,
    /// The offering side's tag.
    #[serde(rename = "from-tag", skip_serializing_if = "Option::is_none")]
    pub from_tag: Option<&'a str>,
    /// The answering side's tag.
    #[serde(rename = "to-tag", skip_serializing_if = "Option::is_none")]
    pub to_tag: Option<&'a str>,
    /// The SDP to rewrite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp: Option<&'a serde_bytes::Bytes>,
    /// Flags (`SIP-source-address`, `symmetric`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<&'a str>,
    /// What else is replaced in the SDP (`origin`, `session-connection`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<&'a str>,
    /// `["IP4", "192.0.2.1"]`: the SIP source of the message.
    #[serde(rename = "received-from", skip_serializing_if = "Option::is_none")]
    pub received_from: Option<[String; 2]>,
    /// `remove`: ICE attributes are not passed on.
    #[serde(rename = "ICE", skip_serializing_if = "Option::is_none")]
    pub ice: Option<&'a str>,
    /// `list`: how many call-ids at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl<'a> Request<'a> {
    /// An offer, answer or delete for `call_id`, with the flags a careful
    /// SBC sets (Kamailio's `rtpengine_manage()` for a NATed phone):
    /// `replace-origin`, `replace-session-connection`, ICE removed; for a
    /// side that may sit behind NAT (`nat_source`), `SIP-source-address`
    /// with `received-from` (its media address is its SIP source, not the
    /// private one in its SDP); otherwise the SDP address is trusted
    /// (`trust-address`). rtpengine learns and latches the address media
    /// really comes from (symmetric RTP) by default: `asymmetric` is never
    /// sent (rtpengine 10 rejects the old `symmetric` flag as unknown).
    pub fn media(
        command: MediaCommand,
        call_id: &'a str,
        from_tag: &'a str,
        to_tag: Option<&'a str>,
        sdp: &'a [u8],
        nat_source: Option<IpAddr>,
    ) -> Request<'a> {
        let mut r = Request {
            command: command.as_str(),
            call_id: Some(call_id),
            from_tag: Some(from_tag),
            to_tag,
            ..Request::default()
        };
        if command == MediaCommand::Delete {
            return r;
        }
        r.sdp = Some(serde_bytes::Bytes::new(sdp));
        r.replace = vec!["origin", "session-connection"];
        r.ice = Some("remove");
        match nat_source {
            Some(ip) => {
                r.flags = vec!["SIP-source-address"];
                let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
                r.received_from = Some([family.to_owned(), ip.to_string()]);
            }
            None => r.flags = vec!["trust-address"],
        }
        r
    }

    /// A command without arguments (`ping`, `list`).
    pub fn bare(command: &'a str) -> Request<'a> {
        Request {
            command,
            ..Request::default()
        }
    }

    /// The datagram: `cookie SP bencode`.
    ///
    /// # Errors
    /// [`NgError::Encode`] (not expected with these types).
    pub fn encode(&self, cookie: &str) -> Result<Vec<u8>, NgError> {
        let body = serde_bencode::to_bytes(self).map_err(|e| NgError::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(cookie.len() + 1 + body.len());
        out.extend_from_slice(cookie.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&body);
        Ok(out)
    }
}

/// The parts of an ng reply sipfront reads; everything else is skipped.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Reply {
    /// `ok`, `pong`, `error` (or `load limit`).
    pub result: String,
    /// Why, when `result` is `error`.
    #[serde(rename = "error-reason", default)]
    pub error_reason: Option<String>,
    /// The rewritten SDP of an offer or answer.
    #[serde(default, with = "serde_bytes")]
    pub sdp: Option<Vec<u8>>,
    /// `list`: the call-ids held.
    #[serde(default)]
    pub calls: Option<Vec<String>>,
}

impl Reply {
    /// Whether the command succeeded (`ok`, or `pong` to a ping).
    pub fn ok(&self) -> bool {
        matches!(self.result.as_str(), "ok" | "pong")
    }

    /// Why the command failed, for logs and `503` reasons.
    pub fn why(&self) -> String {
        match &self.error_reason {
            Some(r) => format!("{}: {r}", self.result),
            None => self.result.clone(),
        }
    }
}

/// Splits a reply datagram into its cookie and decoded dictionary.
///
/// # Errors
/// [`NgError`] for anything but a well-formed reply.
pub fn decode(datagram: &[u8]) -> Result<(&str, Reply), NgError> {
    let sp = memchr::memchr(b' ', datagram).ok_or(NgError::NoCookie)?;
    let (cookie, rest) = datagram.split_at(sp);
    if cookie.is_empty() || cookie.len() > MAX_COOKIE {
        return Err(NgError::NoCookie);
    }
    let cookie = std::str::from_utf8(cookie).map_err(|_| NgError::NoCookie)?;
    let body = rest.get(1..).unwrap_or_default();
    check(body)?;
    if body.first() != Some(&b'd') {
        return Err(NgError::Shape("not a dictionary".into()));
    }
    let reply: Reply =
        serde_bencode::from_bytes(body).map_err(|e| NgError::Shape(e.to_string()))?;
    Ok((cookie, reply))
}

/// Checks that `b` is exactly one well-formed bencode value nested at most
/// [`MAX_DEPTH`] deep, without recursion (a hostile datagram of `l`s
/// cannot exhaust the stack).
///
/// # Errors
/// [`NgError::Malformed`] with the offending offset, or [`NgError::TooDeep`].
pub fn check(b: &[u8]) -> Result<(), NgError> {
    /// What the open container expects next.
    #[derive(Clone, Copy, PartialEq)]
    enum Open {
        List,
        DictKey,
        DictValue,
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut i = 0usize;
    loop {
        let Some(&c) = b.get(i) else {
            return Err(NgError::Malformed(i));
        };
        let top = stack.last().copied();
        if top == Some(Open::DictKey) && !matches!(c, b'0'..=b'9' | b'e') {
            // Dictionary keys are byte strings.
            return Err(NgError::Malformed(i));
        }
        match c {
            b'l' | b'd' => {
                if stack.len() >= MAX_DEPTH {
                    return Err(NgError::TooDeep);
                }
                stack.push(if c == b'l' { Open::List } else { Open::DictKey });
                i += 1;
                continue;
            }
            b'e' if matches!(top, Some(Open::List | Open::DictKey)) => {
                stack.pop();
                i += 1;
            }
            b'i' => {
                let end = i + 1 + digits_until(b, i + 1, b'e', true)?;
                i = end + 1;
            }
            b'0'..=b'9' => {
                let n = digits_until(b, i, b':', false)?;
                let len: usize = std::str::from_utf8(b.get(i..i + n).unwrap_or_default())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(NgError::Malformed(i))?;
                let start = i + n + 1;
                let end = start.checked_add(len).ok_or(NgError::Malformed(i))?;
                if end > b.len() {
                    return Err(NgError::Malformed(i));
                }
                i = end;
            }
            _ => return Err(NgError::Malformed(i)),
        }
        // One value done: the enclosing dictionary moves between key and value.
        match stack.last_mut() {
            Some(s @ Open::DictKey) => *s = Open::DictValue,
            Some(s @ Open::DictValue) => *s = Open::DictKey,
            Some(Open::List) => {}
            None => {
                return if i == b.len() {
                    Ok(())
                } else {
                    Err(NgError::Malformed(i))
                };
            }
        }
    }
}

/// How many bytes from `from` are an (optionally signed) decimal number
/// ending at `end`; at least one digit.
fn digits_until(b: &[u8], from: usize, end: u8, signed: bool) -> Result<usize, NgError> {
    let mut n = 0;
    while let Some(&c) = b.get(from + n) {
        if c == end {
            let digits = if signed && b.get(from) == Some(&b'-') {
                n - 1
            } else {
                n
            };
            return if digits == 0 || n > 20 {
                Err(NgError::Malformed(from))
            } else {
                Ok(n)
            };
        }
        let sign = signed && n == 0 && c == b'-';
        if !c.is_ascii_digit() && !sign {
            return Err(NgError::Malformed(from + n));
        }
        n += 1;
    }
    Err(NgError::Malformed(from + n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_for_a_natted_side_names_its_source_and_latches() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let r = Request::media(MediaCommand::Offer, "c1", "ta", None, b"v=0\r\n", Some(ip));
        let bytes = r.encode("5_1").unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("5_1 d"), "{text}");
        assert!(text.contains("7:call-id2:c1"), "{text}");
        assert!(text.contains("8:from-tag2:ta"), "{text}");
        assert!(!text.contains("to-tag"), "{text}");
        assert!(text.contains("3:sdp5:v=0\r\n"), "{text}");
        assert!(text.contains("5:flagsl18:SIP-source-addresse"), "{text}");
        assert!(
            text.contains("13:received-froml3:IP49:192.0.2.7e"),
            "{text}"
        );
        assert!(
            text.contains("7:replacel6:origin18:session-connectione"),
            "{text}"
        );
        assert!(text.contains("3:ICE6:remove"), "{text}");
        assert!(text.ends_with('e'));
        // What we write, our own checker accepts.
        check(text.as_bytes().get(4..).unwrap()).unwrap();
    }

    #[test]
    fn a_carrier_side_is_trusted_and_delete_carries_no_sdp() {
        let r = Request::media(MediaCommand::Answer, "c", "a", Some("b"), b"x", None);
        let t = String::from_utf8(r.encode("1").unwrap()).unwrap();
        assert!(t.contains("5:flagsl13:trust-addresse"), "{t}");
        assert!(t.contains("6:to-tag1:b"), "{t}");
        let d = Request::media(MediaCommand::Delete, "c", "a", None, b"x", None);
        let t = String::from_utf8(d.encode("2").unwrap()).unwrap();
        assert_eq!(t, "2 d7:call-id1:c7:command6:delete8:from-tag1:ae");
    }

    #[test]
    fn replies_decode_and_unknown_keys_are_skipped() {
        let (cookie, r) =
            decode(b"ab d6:result2:ok3:sdp3:v=06:totalsd3:rtpd7:packetsi5eeee").unwrap();
        assert_eq!(cookie, "ab");
        assert!(r.ok());
        assert_eq!(r.sdp.as_deref(), Some(&b"v=0"[..]));
        let (_, r) = decode(b"x d6:result5:error12:error-reason15:Unknown call-ide").unwrap();
        assert!(!r.ok());
        assert_eq!(r.why(), "error: Unknown call-id");
        let (_, r) = decode(b"x d6:result4:ponge").unwrap();
        assert!(r.ok());
        let (_, r) = decode(b"x d5:callsl2:c12:c2e6:result2:oke").unwrap();
        assert_eq!(r.calls, Some(vec!["c1".to_owned(), "c2".to_owned()]));
    }

    #[test]
    fn hostile_replies_are_errors_not_panics() {
        let deep = format!("c {}", "l".repeat(100_000));
        assert_eq!(decode(deep.as_bytes()).unwrap_err(), NgError::TooDeep);
        for bad in [
            &b""[..],
            b"nocookie",
            b" d6:result2:oke",
            b"c ",
            b"c d",
            b"c d6:result2:ok",
            b"c d6:result2:okee",
            b"c d6:result99:ok",
            b"c d6:result18446744073709551616:ok",
            b"c i12",
            b"c i-e",
            b"c ie",
            b"c le",
            b"c d6:resulti1ee",
            b"c d6:result2:oke trailing",
            b"c x",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(check(b"i-42e").is_ok());
        assert!(check(b"di1ei2ee").is_err(), "keys are strings");
        assert!(check(b"d1:ae").is_err(), "a key needs its value");
        assert!(check(b"d1:ali1ei2eee").is_ok());
    }

    proptest::proptest! {
        /// What the fuzz target checks, on every `cargo test`: no input
        /// panics, and what `check` accepts the decoder reads whole.
        #[test]
        fn any_datagram_is_handled(data in proptest::collection::vec(
            proptest::sample::select(b"dlie0123456789:-ax".to_vec()), 0..64)) {
            let _ = decode(&data);
            if check(&data).is_ok() {
                proptest::prop_assert!(
                    serde_bencode::from_bytes::<serde_bencode::value::Value>(&data).is_ok()
                );
            }
        }
    }
}
