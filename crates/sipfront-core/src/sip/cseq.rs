//! CSeq (RFC 3261 §20.16): sequence number and method.

use super::lex;
use super::method::Method;
use super::ParseError;
use bytes::Bytes;

/// `CSeq: 4711 INVITE`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CSeq {
    /// Sequence number (32-bit; RFC 3261 says it must be below 2**31).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

/// Parses a CSeq value found at `start..end` of `buf` (zero-copy method).
pub(crate) fn parse_in(buf: &Bytes, start: usize, end: usize) -> Result<CSeq, ParseError> {
    let value = buf.get(start..end).ok_or(ParseError::BadCSeq)?;
    let (num_s, num_e, m_s, m_e) = split(value).ok_or(ParseError::BadCSeq)?;
    let digits = value.get(num_s..num_e).ok_or(ParseError::BadCSeq)?;
    let seq = parse_u32(digits).ok_or(ParseError::BadCSeq)?;
    Ok(CSeq {
        seq,
        method: Method::from_shared(buf, start + m_s, start + m_e),
    })
}

/// Offsets of the number and method tokens inside a CSeq value.
fn split(v: &[u8]) -> Option<(usize, usize, usize, usize)> {
    let num_s = v.iter().position(|&b| !lex::is_lws(b))?;
    let num_len = v.get(num_s..)?.iter().position(|&b| !b.is_ascii_digit())?;
    let num_e = num_s + num_len;
    let ws = v.get(num_e..)?.iter().position(|&b| !lex::is_lws(b))?;
    if ws == 0 {
        return None;
    }
    let m_s = num_e + ws;
    let m_len = v
        .get(m_s..)?
        .iter()
        .position(|&b| !lex::is_token(b))
        .unwrap_or(v.len() - m_s);
    let m_e = m_s + m_len;
    if m_len == 0 || !v.get(m_e..)?.iter().all(|&b| lex::is_lws(b)) {
        return None;
    }
    Some((num_s, num_e, m_s, m_e))
}

/// Decimal digits to u32, rejecting empty input, signs and overflow.
pub(crate) fn parse_u32(d: &[u8]) -> Option<u32> {
    if d.is_empty() || d.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in d {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &'static str) -> Result<CSeq, ParseError> {
        let b = Bytes::from_static(s.as_bytes());
        parse_in(&b, 0, b.len())
    }

    #[test]
    fn cseq() {
        assert_eq!(p("4711 INVITE").unwrap().seq, 4711);
        assert_eq!(p(" 1\r\n  REGISTER ").unwrap().method, Method::Register);
        assert!(matches!(p("2 FOO").unwrap().method, Method::Other(_)));
        assert!(p("INVITE").is_err());
        assert!(p("1INVITE").is_err());
        assert!(p("-1 INVITE").is_err());
        assert!(p("99999999999 INVITE").is_err());
        assert!(p("1 INVITE x").is_err());
        assert!(p("").is_err());
        assert_eq!(p("4294967295 ACK").unwrap().seq, u32::MAX);
    }
}
