//! Message framing on stream transports (RFC 3261 §18.3; keep-alives RFC 5626
//! §3.5.1). Check-then-parse, as mini-redis does: `check` finds the length of
//! one whole message cheaply; the caller splits it off and hands it to
//! [`crate::sip::Message::parse`]. "Need more bytes" is kept apart from
//! "close the connection".

use super::header::{lookup, HeaderName};
use super::lex;

/// What the front of a stream buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `n` bytes of CR/LF keep-alive (double CRLF ping or CRLF pong) to skip.
    KeepAlive(usize),
    /// One complete message of `len` bytes (head plus Content-Length body).
    Message(usize),
}

/// Why no frame could be cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More bytes are needed.
    #[error("incomplete message")]
    Incomplete,
    /// The message would exceed the size cap: close the connection.
    #[error("message exceeds size limit")]
    TooLarge,
    /// The stream cannot be framed (missing/bad Content-Length): close it.
    #[error("unframeable stream: {0}")]
    Invalid(&'static str),
}

/// Folds one (possibly continued) piece of a Content-Length value into `digits`.
fn cl_part(part: &[u8], digits: &mut Option<usize>) -> Result<(), FrameError> {
    let t = lex::trim(part);
    if t.is_empty() {
        return Ok(());
    }
    if digits.is_some() || t.len() > 10 || !t.iter().all(u8::is_ascii_digit) {
        return Err(FrameError::Invalid("bad Content-Length"));
    }
    *digits = t.iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    });
    if digits.is_none() {
        return Err(FrameError::Invalid("bad Content-Length"));
    }
    Ok(())
}

/// Content-Length value from one header section (`None` if absent).
fn content_length(head: &[u8]) -> Result<Option<usize>, FrameError> {
    let mut found: Option<usize> = None;
    let mut lines = head.split(|&b| b == b'\n').skip(1).peekable();
    while let Some(line) = lines.next() {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            continue; // continuation line
        }
        let name = lex::trim(line.get(..colon).unwrap_or_default());
        if lookup(name) != HeaderName::ContentLength.known_id() {
            continue;
        }
        // value plus any folded continuation lines (no allocation)
        let mut digits: Option<usize> = None;
        cl_part(line.get(colon + 1..).unwrap_or_default(), &mut digits)?;
        while let Some(next) = lines.peek() {
            if next.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                cl_part(next, &mut digits)?;
                lines.next();
            } else {
                break;
            }
        }
        let v = digits.ok_or(FrameError::Invalid("bad Content-Length"))?;
        if found.is_some_and(|f| f != v) {
            return Err(FrameError::Invalid("conflicting Content-Length"));
        }
        found = Some(v);
    }
    Ok(found)
}

/// Looks at the front of a stream buffer.
///
/// # Returns
/// `Ok(Frame::KeepAlive(n))` for `n` leading CR/LF bytes, `Ok(Frame::Message(len))`
/// when `buf` starts with a complete message of `len` bytes.
///
/// # Errors
/// `Incomplete` when more bytes are needed; `TooLarge` when the head or the
/// whole message would exceed `max`; `Invalid` when Content-Length (mandatory
/// on streams) is missing or malformed.
pub fn check(buf: &[u8], max: usize) -> Result<Frame, FrameError> {
    let ka = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    if ka > 0 {
        return Ok(Frame::KeepAlive(ka));
    }
    if buf.is_empty() {
        return Err(FrameError::Incomplete);
    }
    // Find the empty line ending the head: "\n\n" or "\n\r\n".
    let window = buf.get(..buf.len().min(max)).unwrap_or(buf);
    let mut head_end = None;
    for lf in memchr::memchr_iter(b'\n', window) {
        match (window.get(lf + 1), window.get(lf + 2)) {
            (Some(b'\n'), _) => {
                head_end = Some(lf + 2);
                break;
            }
            (Some(b'\r'), Some(b'\n')) => {
                head_end = Some(lf + 3);
                break;
            }
            _ => {}
        }
    }
    let Some(head_end) = head_end else {
        return if buf.len() >= max {
            Err(FrameError::TooLarge)
        } else {
            Err(FrameError::Incomplete)
        };
    };
    let head = buf.get(..head_end).unwrap_or(buf);
    let cl = content_length(head)?.ok_or(FrameError::Invalid("missing Content-Length"))?;
    let total = head_end.checked_add(cl).ok_or(FrameError::TooLarge)?;
    if total > max {
        return Err(FrameError::TooLarge);
    }
    if buf.len() < total {
        return Err(FrameError::Incomplete);
    }
    Ok(Frame::Message(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello";

    #[test]
    fn exact_partial_pipelined() {
        assert_eq!(check(MSG, 65536), Ok(Frame::Message(MSG.len())));
        for cut in 1..MSG.len() {
            assert_eq!(
                check(&MSG[..cut], 65536),
                Err(FrameError::Incomplete),
                "cut {cut}"
            );
        }
        let two = [MSG, MSG].concat();
        assert_eq!(check(&two, 65536), Ok(Frame::Message(MSG.len())));
    }

    #[test]
    fn keepalive_and_errors() {
        assert_eq!(check(b"\r\n\r\nOPT", 100), Ok(Frame::KeepAlive(4)));
        assert_eq!(check(b"", 100), Err(FrameError::Incomplete));
        assert_eq!(check(MSG, 20), Err(FrameError::TooLarge));
        assert_eq!(check(MSG, 70), Err(FrameError::TooLarge));
        assert!(matches!(
            check(b"OPTIONS sip:a SIP/2.0\r\n\r\n", 100),
            Err(FrameError::Invalid(_))
        ));
        assert!(matches!(
            check(b"A sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n", 100),
            Err(FrameError::Invalid(_))
        ));
        assert!(matches!(
            check(b"A sip:a SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nxy", 100),
            Err(FrameError::Invalid(_))
        ));
        let folded = b"A sip:a SIP/2.0\nContent-Length:\n 2\n\nxy";
        assert_eq!(check(folded, 100), Ok(Frame::Message(folded.len())));
    }
}
