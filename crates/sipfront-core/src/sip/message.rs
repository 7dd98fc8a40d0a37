//! One SIP message, parsed zero-copy (RFC 3261 §7: start line, header fields,
//! body; §7.3.1 folding; §7.3.3 compact forms; §7.5 leading CRLF; §18.3
//! Content-Length; §8.1.1 mandatory headers).
//!
//! `Message::parse` does one pass over the head: it locates the start line
//! and every header's name and value as byte ranges into the single `Bytes`
//! buffer it owns, resolves each name once, then validates what a server needs
//! to route or answer (Request-URI, Via, From, To, Call-ID, CSeq,
//! Max-Forwards, Content-Length). Typed accessors re-read their header lazily
//! from the ranges; nothing is copied per header.

use super::auth::{DigestChallenge, DigestCredentials};
use super::cseq::{self, CSeq};
use super::header::{lookup, HeaderName, OTHER_ID};
use super::lex::{self, CommaSplit};
use super::method::Method;
use super::name_addr::{Contact, NameAddr};
use super::status::StatusCode;
use super::uri::{Scheme, Uri};
use super::via::Via;
use super::{ParseError, MAX_MESSAGE_SIZE};
use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::ops::Range;

/// Most header fields we index in one message (bounds the work per message).
pub const MAX_HEADERS: usize = 256;

/// A byte range into the message buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    // Lengths are capped below u32::MAX before any span is made.
    #[allow(clippy::cast_possible_truncation)]
    fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Where one header field sits in the buffer.
#[derive(Clone, Copy, Debug)]
struct HeaderSpan {
    name: Span,
    value: Span,
    /// Known-name id, or `OTHER_ID`.
    id: u8,
    /// The value spans folded lines (contains CR/LF).
    folded: bool,
}

#[derive(Clone, Debug)]
enum Start {
    Request { method: Method, uri: Span },
    Response { status: StatusCode, reason: Span },
}

const NONE: u16 = u16::MAX;

/// Index of the first occurrence of the headers every message needs.
#[derive(Clone, Copy, Debug)]
struct Hot {
    via: u16,
    from: u16,
    to: u16,
    call_id: u16,
    cseq: u16,
    max_forwards: u16,
    content_length: u16,
}

const VIA: u8 = 0;
const FROM: u8 = 1;
const TO: u8 = 2;
const CALL_ID: u8 = 3;
const CSEQ: u8 = 4;
const CONTACT: u8 = 5;
const MAX_FORWARDS: u8 = 6;
const CONTENT_LENGTH: u8 = 7;
const CONTENT_TYPE: u8 = 8;
const ROUTE: u8 = 9;
const RECORD_ROUTE: u8 = 10;
const AUTHORIZATION: u8 = 11;
const PROXY_AUTHORIZATION: u8 = 12;
const WWW_AUTHENTICATE: u8 = 13;
const PROXY_AUTHENTICATE: u8 = 14;
const EXPIRES: u8 = 20;

/// A parsed SIP request or response.
///
/// Owns one [`Bytes`] buffer; cloning is cheap (a reference count and the
/// header index). [`Message::as_bytes`] re-emits the message byte-exact.
#[derive(Clone, Debug)]
pub struct Message {
    buf: Bytes,
    start: Start,
    headers: SmallVec<[HeaderSpan; 32]>,
    hot: Hot,
    body: Span,
    content_length: Option<u32>,
    cache: Cache,
}

/// What `validate` already parsed, kept so the hot accessors
/// ([`Message::top_branch`], [`Message::from_tag`], [`Message::to_tag`],
/// [`Message::cseq`]) do not parse it again. Empty (`valid == false`) for
/// messages from [`Message::parse_for_reply`], whose accessors then parse.
#[derive(Clone, Debug, Default)]
struct Cache {
    valid: bool,
    branch: Option<Span>,
    from_tag: Option<Span>,
    to_tag: Option<Span>,
    cseq: Option<CSeq>,
}

/// Finds the line starting at `pos`: returns (end of content excluding CR/LF,
/// start of next line). Accepts CRLF and bare LF.
#[inline]
fn line_at(b: &[u8], pos: usize) -> Option<(usize, usize)> {
    let rest = b.get(pos..)?;
    let i = memchr::memchr(b'\n', rest)?;
    let lf = pos + i;
    let end = if i > 0 && b.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

#[inline]
fn is_sp_ht(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Trims SP/HT from both ends of `b[s..e]`, returning the new bounds.
#[inline]
fn trim_bounds(b: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && b.get(s).copied().is_some_and(is_sp_ht) {
        s += 1;
    }
    while e > s && b.get(e - 1).copied().is_some_and(is_sp_ht) {
        e -= 1;
    }
    (s, e)
}

/// `InvalidByte` if `b[..end]` holds a NUL (a clearer reason than the
/// syntax error it caused), else `err`.
#[cold]
fn nul_or(b: &[u8], end: usize, err: ParseError) -> ParseError {
    if memchr::memchr(0, b.get(..end).unwrap_or(b)).is_some() {
        ParseError::InvalidByte
    } else {
        err
    }
}

fn eq_ci(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// How strictly a message is indexed: `Strict` for everything we act on,
/// `Reply` to salvage enough of a broken request to answer it (RFC 3261
/// §8.2.6 needs only Via, From, To, Call-ID and CSeq).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Strict,
    Reply,
}

fn parse_start(buf: &Bytes, s: usize, e: usize, mode: Mode) -> Result<Start, ParseError> {
    let line = buf.get(s..e).ok_or(ParseError::BadStartLine)?;
    if memchr::memchr(0, line).is_some() {
        return Err(ParseError::InvalidByte);
    }
    if line.iter().any(|&c| lex::is(c, lex::CTL)) {
        return Err(ParseError::BadStartLine);
    }
    if line.get(..4).is_some_and(|p| eq_ci(p, b"SIP/")) {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr::memchr(b' ', line).ok_or(ParseError::BadStartLine)?;
        let version = line.get(..sp).ok_or(ParseError::BadStartLine)?;
        if !eq_ci(version, b"SIP/2.0") {
            return Err(ParseError::BadVersion);
        }
        let mut i = sp;
        while line.get(i) == Some(&b' ') {
            i += 1;
        }
        let code = line.get(i..i + 3).ok_or(ParseError::BadStatusCode)?;
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadStatusCode);
        }
        let n = code
            .iter()
            .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
        if !(100..700).contains(&n) {
            return Err(ParseError::BadStatusCode);
        }
        let after = i + 3;
        let reason_start = match line.get(after) {
            None => after,
            Some(b' ') => after + 1,
            Some(_) => return Err(ParseError::BadStatusCode),
        };
        return Ok(Start::Response {
            status: StatusCode(n),
            reason: Span::new(s + reason_start, e),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version (runs of SP tolerated)
    let mut parts: [(usize, usize); 3] = [(0, 0); 3];
    let mut n = 0;
    let mut i = 0;
    while i < line.len() {
        if line.get(i) == Some(&b' ') {
            i += 1;
            continue;
        }
        let tok_start = i;
        let rest = line.get(i..).unwrap_or_default();
        i = memchr::memchr(b' ', rest).map_or(line.len(), |k| i + k);
        let slot = parts.get_mut(n).ok_or(ParseError::BadStartLine)?;
        *slot = (tok_start, i);
        n += 1;
    }
    if n != 3 {
        return Err(ParseError::BadStartLine);
    }
    let [m, u, v] = parts;
    let version = line.get(v.0..v.1).ok_or(ParseError::BadStartLine)?;
    if mode == Mode::Strict && !eq_ci(version, b"SIP/2.0") {
        return Err(if version.get(..4).is_some_and(|p| eq_ci(p, b"SIP/")) {
            ParseError::BadVersion
        } else {
            ParseError::BadStartLine
        });
    }
    let method = line.get(m.0..m.1).ok_or(ParseError::BadStartLine)?;
    if !method.iter().all(|&c| lex::is_token(c)) {
        return Err(ParseError::BadStartLine);
    }
    let uri = line.get(u.0..u.1).ok_or(ParseError::BadRequestUri)?;
    let uri = std::str::from_utf8(uri).map_err(|_| ParseError::BadRequestUri)?;
    match Uri::parse(uri) {
        _ if mode == Mode::Reply => {}
        None => return Err(ParseError::BadRequestUri),
        Some(u) if u.scheme == Scheme::Other => return Err(ParseError::UnsupportedUriScheme),
        Some(_) => {}
    }
    Ok(Start::Request {
        method: Method::from_shared(buf, s + m.0, s + m.1),
        uri: Span::new(s + u.0, s + u.1),
    })
}

impl Message {
    /// Parses one complete message (a datagram, or one frame cut by
    /// [`crate::sip::framing::check`]) with the default 64 KiB cap.
    ///
    /// # Errors
    /// A [`ParseError`] whose [`ParseError::status`] is the answer to send.
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        Self::parse_with_limit(buf, MAX_MESSAGE_SIZE)
    }

    /// Like [`Message::parse`] with an explicit size cap, checked first.
    ///
    /// A body longer than Content-Length is cut to Content-Length (datagram
    /// rule, RFC 3261 §18.3); a shorter one is an error.
    ///
    /// # Errors
    /// See [`ParseError`].
    pub fn parse_with_limit(buf: Bytes, max: usize) -> Result<Message, ParseError> {
        let mut msg = Self::index(buf, max, Mode::Strict)?;
        msg.cache = msg.validate()?;
        Ok(msg)
    }

    /// Salvages a request that [`Message::parse`] rejected, so that it can be
    /// answered with the error (`400`, `505`, `416` ...).
    ///
    /// Tolerates a wrong SIP version, a bad Request-URI, duplicate or bad
    /// Content-Length and other header faults, but insists on what a response
    /// must copy (RFC 3261 §8.2.6): a parseable top Via, From, To, Call-ID
    /// and CSeq. The input must already be bounded by the transport.
    ///
    /// # Returns
    /// `None` for responses and for requests that cannot be answered.
    pub fn parse_for_reply(buf: Bytes) -> Option<Message> {
        let msg = Self::index(buf, usize::MAX, Mode::Reply).ok()?;
        if !msg.is_request() {
            return None;
        }
        msg.top_via().ok()?;
        msg.cseq().ok()?;
        msg.call_id().ok()?;
        msg.from().ok()?;
        msg.to().ok()?;
        Some(msg)
    }

    /// Indexes the start line and header fields; `validate` is separate.
    fn index(mut buf: Bytes, max: usize, mode: Mode) -> Result<Message, ParseError> {
        let max = max.min(u32::MAX as usize - 1);
        if buf.len() > max {
            return Err(ParseError::TooLarge {
                size: buf.len(),
                max,
            });
        }
        let b: &[u8] = &buf;
        // RFC 3261 §7.5: ignore CRLF before the start line.
        let mut pos = b
            .iter()
            .position(|&c| c != b'\r' && c != b'\n')
            .ok_or(ParseError::Empty)?;
        let (le, next) = line_at(b, pos).ok_or(ParseError::UnterminatedHeaders)?;
        let start = parse_start(&buf, pos, le, mode)?;
        pos = next;

        let mut headers: SmallVec<[HeaderSpan; 32]> = SmallVec::new();
        let mut hot = Hot {
            via: NONE,
            from: NONE,
            to: NONE,
            call_id: NONE,
            cseq: NONE,
            max_forwards: NONE,
            content_length: NONE,
        };
        let body_start;
        loop {
            let Some(&first) = b.get(pos) else {
                return Err(nul_or(b, b.len(), ParseError::UnterminatedHeaders));
            };
            if first == b'\n' {
                body_start = pos + 1;
                break;
            }
            if first == b'\r' && b.get(pos + 1) == Some(&b'\n') {
                body_start = pos + 2;
                break;
            }
            let Some((le, next)) = line_at(b, pos) else {
                return Err(nul_or(b, b.len(), ParseError::UnterminatedHeaders));
            };
            if is_sp_ht(first) {
                // RFC 3261 §7.3.1 folding: continuation of the previous value.
                let Some(h) = headers.last_mut() else {
                    return Err(nul_or(b, le, ParseError::BadHeader));
                };
                let (cs, ce) = trim_bounds(b, pos, le);
                if cs < ce {
                    if h.value.start == h.value.end {
                        h.value = Span::new(cs, ce);
                    } else {
                        h.value.end = Span::new(cs, ce).end;
                        h.folded = true;
                    }
                }
                pos = next;
                continue;
            }
            // field-name = token, then *(SP / HTAB) ":" (RFC 3261 §7.3.1 HCOLON)
            let mut i = pos;
            while b.get(i).copied().is_some_and(lex::is_token) {
                i += 1;
            }
            let ne = i;
            while i < le && b.get(i).copied().is_some_and(is_sp_ht) {
                i += 1;
            }
            if ne == pos || i >= le || b.get(i) != Some(&b':') {
                return Err(nul_or(b, le, ParseError::BadHeader));
            }
            let ns = pos;
            let name = b.get(ns..ne).unwrap_or_default();
            let (vs, ve) = trim_bounds(b, i + 1, le);
            if headers.len() >= MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            let id = lookup(name).unwrap_or(OTHER_ID);
            #[allow(clippy::cast_possible_truncation)] // < MAX_HEADERS
            let idx = headers.len() as u16;
            let slot = match id {
                VIA => Some((&mut hot.via, false)),
                FROM => Some((&mut hot.from, true)),
                TO => Some((&mut hot.to, true)),
                CALL_ID => Some((&mut hot.call_id, true)),
                CSEQ => Some((&mut hot.cseq, true)),
                MAX_FORWARDS => Some((&mut hot.max_forwards, true)),
                CONTENT_LENGTH => Some((&mut hot.content_length, true)),
                _ => None,
            };
            if let Some((slot, single)) = slot {
                if *slot == NONE {
                    *slot = idx;
                } else if single && mode == Mode::Strict {
                    return Err(ParseError::DuplicateHeader(
                        HeaderName::from_id(id).unwrap_or(HeaderName::Other(Bytes::new())),
                    ));
                }
            }
            headers.push(HeaderSpan {
                name: Span::new(ns, ne),
                value: Span::new(vs, ve),
                id,
                folded: false,
            });
            pos = next;
        }

        if memchr::memchr(0, b.get(..body_start).unwrap_or_default()).is_some() {
            return Err(ParseError::InvalidByte);
        }
        let avail = b.len().saturating_sub(body_start);
        let (body_end, content_length) = match headers.get(hot.content_length as usize) {
            Some(_) if mode == Mode::Reply => (b.len(), None),
            Some(h) => {
                let v = b.get(h.value.range()).ok_or(ParseError::BadContentLength)?;
                let cl = cseq::parse_u32(lex::trim(v)).ok_or(ParseError::BadContentLength)?;
                if cl as usize > avail {
                    return Err(ParseError::BodyTruncated);
                }
                (body_start + cl as usize, Some(cl))
            }
            None => (b.len(), None),
        };
        buf.truncate(body_end);

        let msg = Message {
            buf,
            start,
            headers,
            hot,
            body: Span::new(body_start, body_end),
            content_length,
            cache: Cache::default(),
        };
        Ok(msg)
    }

    /// Checks the headers needed to route or answer (RFC 3261 §8.1.1, §8.2.2)
    /// and returns what it parsed on the way for the hot accessors.
    fn validate(&self) -> Result<Cache, ParseError> {
        for (idx, name) in [
            (self.hot.via, HeaderName::Via),
            (self.hot.from, HeaderName::From),
            (self.hot.to, HeaderName::To),
            (self.hot.call_id, HeaderName::CallId),
            (self.hot.cseq, HeaderName::CSeq),
        ] {
            if idx == NONE {
                return Err(ParseError::MissingHeader(name));
            }
        }
        let branch = self.top_via_with_branch()?.1.and_then(|b| self.span_of(b));
        let cseq = self.cseq()?;
        if let Some(m) = self.method() {
            if *m != cseq.method {
                return Err(ParseError::CSeqMethodMismatch);
            }
        }
        self.call_id()?;
        let from_tag = self.name_addr_tag(self.hot.from, HeaderName::From)?;
        let to_tag = self.name_addr_tag(self.hot.to, HeaderName::To)?;
        self.max_forwards()?;
        Ok(Cache {
            valid: true,
            branch,
            from_tag,
            to_tag,
            cseq: Some(cseq),
        })
    }

    /// `top_via()` plus its branch, one pass over the parameters.
    fn top_via_with_branch(&self) -> Result<(Via<'_>, Option<&str>), ParseError> {
        let v = self
            .hot_value(self.hot.via)
            .ok_or(ParseError::MissingHeader(HeaderName::Via))?;
        let first = CommaSplit::new(v).next().ok_or(ParseError::BadVia)?;
        Via::parse_with_branch(first)
    }

    /// Validates a From/To value (as `from()`/`to()` do) and returns the
    /// span of its tag.
    fn name_addr_tag(&self, idx: u16, name: HeaderName) -> Result<Option<Span>, ParseError> {
        let Some(v) = self.hot_value(idx) else {
            return Err(ParseError::MissingHeader(name));
        };
        let (_, tag) = NameAddr::parse_with_tag(v).ok_or(ParseError::BadNameAddr(name))?;
        Ok(tag.and_then(|t| self.span_of(t)))
    }

    /// The span of `s`, a sub-slice of the buffer.
    fn span_of(&self, s: &str) -> Option<Span> {
        let start = (s.as_ptr() as usize).checked_sub(self.buf.as_ptr() as usize)?;
        let end = start.checked_add(s.len())?;
        (end <= self.buf.len()).then(|| Span::new(start, end))
    }

    /// A cached span as text (always UTF-8: it was a `&str` when cached).
    fn cached_str(&self, s: Option<Span>) -> Option<&str> {
        std::str::from_utf8(self.slice(s?)).ok()
    }

    fn slice(&self, s: Span) -> &[u8] {
        self.buf.get(s.range()).unwrap_or_default()
    }

    fn hot_value(&self, idx: u16) -> Option<&[u8]> {
        self.headers.get(idx as usize).map(|h| self.slice(h.value))
    }

    /// The message exactly as received (without any datagram bytes past
    /// Content-Length).
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// The serializer for received messages: byte-exact re-emission
    /// (reason phrase, header order, folding and binary body preserved).
    pub fn to_bytes(&self) -> Bytes {
        self.buf.clone()
    }

    /// The same message in a buffer of its own. A received message is a
    /// slice of a larger receive buffer; one kept for long (a call's INVITE)
    /// would pin that whole buffer, so long-lived holders detach it. The
    /// header index is reused (spans are offsets into the message), so this
    /// is one copy, not a second parse.
    pub fn detached(&self) -> Message {
        Message {
            buf: Bytes::copy_from_slice(&self.buf),
            ..self.clone()
        }
    }

    /// Appends the message byte-exact to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        out.put_slice(&self.buf);
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    /// Request method.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    /// Request-URI text as received.
    pub fn request_uri_str(&self) -> Option<&str> {
        match self.start {
            Start::Request { uri, .. } => std::str::from_utf8(self.slice(uri)).ok(),
            Start::Response { .. } => None,
        }
    }

    /// Request-URI (validated at parse time: sip, sips or tel).
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        self.request_uri_str().and_then(Uri::parse)
    }

    /// Response status.
    pub fn status(&self) -> Option<StatusCode> {
        match self.start {
            Start::Response { status, .. } => Some(status),
            Start::Request { .. } => None,
        }
    }

    /// Response reason phrase, raw bytes (may be empty, may be UTF-8).
    pub fn reason(&self) -> Option<&[u8]> {
        match self.start {
            Start::Response { reason, .. } => Some(self.slice(reason)),
            Start::Request { .. } => None,
        }
    }

    fn matcher<'a>(name: &'a HeaderName) -> impl Fn(&Message, &HeaderSpan) -> bool + 'a {
        let id = name.known_id();
        move |m: &Message, h: &HeaderSpan| match id {
            Some(id) => h.id == id,
            None => h.id == OTHER_ID && eq_ci(m.slice(h.name), name.as_bytes()),
        }
    }

    /// First value of a header, raw (trimmed; folded values keep their CRLF,
    /// see [`Message::header_unfolded`]).
    pub fn header(&self, name: &HeaderName) -> Option<&[u8]> {
        let m = Self::matcher(name);
        self.headers
            .iter()
            .find(|h| m(self, h))
            .map(|h| self.slice(h.value))
    }

    /// First value of a header with folding (CRLF + WS) replaced by one SP.
    /// Borrows unless the value was folded.
    pub fn header_unfolded(&self, name: &HeaderName) -> Option<Cow<'_, [u8]>> {
        let m = Self::matcher(name);
        let h = self.headers.iter().find(|h| m(self, h))?;
        let v = self.slice(h.value);
        if !h.folded {
            return Some(Cow::Borrowed(v));
        }
        let mut out = Vec::with_capacity(v.len());
        let mut in_break = false;
        for &c in v {
            if c == b'\r' || c == b'\n' || (in_break && is_sp_ht(c)) {
                if !in_break {
                    // drop trailing WS before the break, then one SP
                    while out.last().copied().is_some_and(is_sp_ht) {
                        out.pop();
                    }
                    out.push(b' ');
                }
                in_break = true;
            } else {
                in_break = false;
                out.push(c);
            }
        }
        Some(Cow::Owned(out))
    }

    /// Every value of a header, one per header line, in order (comma lists
    /// inside one line are not split here).
    pub fn headers<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        let m = Self::matcher(name);
        self.headers
            .iter()
            .filter(move |h| m(self, h))
            .map(move |h| self.slice(h.value))
    }

    /// All header fields in wire order, names resolved.
    pub fn all_headers(&self) -> impl Iterator<Item = (HeaderName, &[u8])> + '_ {
        self.headers.iter().map(move |h| {
            let name = HeaderName::from_id(h.id)
                .unwrap_or_else(|| HeaderName::Other(self.buf.slice(h.name.range())));
            (name, self.slice(h.value))
        })
    }

    /// All header fields in wire order as raw (name, value) byte slices.
    pub fn raw_headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.headers
            .iter()
            .map(move |h| (self.slice(h.name), self.slice(h.value)))
    }

    /// Number of header fields (lines, not comma-separated values).
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    fn values_of(&self, id: u8) -> impl Iterator<Item = &[u8]> + '_ {
        self.headers
            .iter()
            .filter(move |h| h.id == id)
            .flat_map(move |h| CommaSplit::new(self.slice(h.value)))
    }

    /// Every Via value, top first, splitting comma lists across all Via headers.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> + '_ {
        self.values_of(VIA).map(Via::parse)
    }

    /// The topmost Via value.
    ///
    /// # Errors
    /// `MissingHeader(Via)` or `BadVia`.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        let v = self
            .hot_value(self.hot.via)
            .ok_or(ParseError::MissingHeader(HeaderName::Via))?;
        let first = CommaSplit::new(v).next().ok_or(ParseError::BadVia)?;
        Via::parse(first)
    }

    /// The top Via's `branch` parameter: the same as
    /// `top_via()?.branch()`, but read from what [`Message::parse`] already
    /// parsed (no re-parse). The transaction layer's hot path.
    pub fn top_branch(&self) -> Option<&str> {
        if self.cache.valid {
            self.cached_str(self.cache.branch)
        } else {
            self.top_via().ok()?.branch()
        }
    }

    /// The From `tag`: the same as `from()?.tag()`, without re-parsing.
    pub fn from_tag(&self) -> Option<&str> {
        if self.cache.valid {
            self.cached_str(self.cache.from_tag)
        } else {
            self.from().ok()?.tag()
        }
    }

    /// The To `tag`: the same as `to()?.tag()`, without re-parsing.
    pub fn to_tag(&self) -> Option<&str> {
        if self.cache.valid {
            self.cached_str(self.cache.to_tag)
        } else {
            self.to().ok()?.tag()
        }
    }

    /// Call-ID value.
    ///
    /// # Errors
    /// `MissingHeader(CallId)`, or `BadCallId` when empty or containing LWS.
    pub fn call_id(&self) -> Result<&[u8], ParseError> {
        let v = self
            .hot_value(self.hot.call_id)
            .ok_or(ParseError::MissingHeader(HeaderName::CallId))?;
        if v.is_empty() || v.iter().any(|&c| lex::is_lws(c)) {
            return Err(ParseError::BadCallId);
        }
        Ok(v)
    }

    /// CSeq number and method.
    ///
    /// # Errors
    /// `MissingHeader(CSeq)` or `BadCSeq`.
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        if let Some(c) = &self.cache.cseq {
            return Ok(c.clone());
        }
        let h = self
            .headers
            .get(self.hot.cseq as usize)
            .ok_or(ParseError::MissingHeader(HeaderName::CSeq))?;
        cseq::parse_in(&self.buf, h.value.start as usize, h.value.end as usize)
    }

    fn name_addr_at(&self, idx: u16, name: HeaderName) -> Result<NameAddr<'_>, ParseError> {
        let Some(v) = self.hot_value(idx) else {
            return Err(ParseError::MissingHeader(name));
        };
        NameAddr::parse(v).ok_or(ParseError::BadNameAddr(name))
    }

    /// From address (with `tag`).
    ///
    /// # Errors
    /// `MissingHeader(From)` or `BadNameAddr(From)`.
    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr_at(self.hot.from, HeaderName::From)
    }

    /// To address (with `tag` once in a dialog).
    ///
    /// # Errors
    /// `MissingHeader(To)` or `BadNameAddr(To)`.
    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr_at(self.hot.to, HeaderName::To)
    }

    /// Every Contact value (comma lists split), including `*`.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'_>, ParseError>> + '_ {
        self.values_of(CONTACT)
            .map(|v| Contact::parse(v).ok_or(ParseError::BadNameAddr(HeaderName::Contact)))
    }

    /// Every Route value in order.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.values_of(ROUTE)
            .map(|v| NameAddr::parse(v).ok_or(ParseError::BadNameAddr(HeaderName::Route)))
    }

    /// Every Record-Route value in order.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.values_of(RECORD_ROUTE)
            .map(|v| NameAddr::parse(v).ok_or(ParseError::BadNameAddr(HeaderName::RecordRoute)))
    }

    /// Max-Forwards, if present.
    ///
    /// # Errors
    /// `BadMaxForwards` when not a decimal number.
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        match self.hot_value(self.hot.max_forwards) {
            None => Ok(None),
            Some(v) => cseq::parse_u32(lex::trim(v))
                .map(Some)
                .ok_or(ParseError::BadMaxForwards),
        }
    }

    /// Content-Length as declared (validated at parse time).
    pub fn content_length(&self) -> Option<usize> {
        self.content_length.map(|c| c as usize)
    }

    /// Content-Type value, raw.
    pub fn content_type(&self) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.id == CONTENT_TYPE)
            .map(|h| self.slice(h.value))
    }

    /// Expires header (RFC 3261 §20.19), if present.
    ///
    /// # Errors
    /// `BadValue` when not a decimal number.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.headers.iter().find(|h| h.id == EXPIRES) {
            None => Ok(None),
            Some(h) => cseq::parse_u32(lex::trim(self.slice(h.value)))
                .map(Some)
                .ok_or(ParseError::BadValue),
        }
    }

    fn first_of(&self, id: u8) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.id == id)
            .map(|h| self.slice(h.value))
    }

    /// First Authorization header as digest credentials.
    pub fn authorization(&self) -> Option<Result<DigestCredentials<'_>, ParseError>> {
        self.first_of(AUTHORIZATION).map(DigestCredentials::parse)
    }

    /// First Proxy-Authorization header as digest credentials.
    pub fn proxy_authorization(&self) -> Option<Result<DigestCredentials<'_>, ParseError>> {
        self.first_of(PROXY_AUTHORIZATION)
            .map(DigestCredentials::parse)
    }

    /// First WWW-Authenticate challenge.
    pub fn www_authenticate(&self) -> Option<Result<DigestChallenge<'_>, ParseError>> {
        self.first_of(WWW_AUTHENTICATE).map(DigestChallenge::parse)
    }

    /// First Proxy-Authenticate challenge.
    pub fn proxy_authenticate(&self) -> Option<Result<DigestChallenge<'_>, ParseError>> {
        self.first_of(PROXY_AUTHENTICATE)
            .map(DigestChallenge::parse)
    }

    /// The body (zero-copy slice of the buffer), exactly Content-Length bytes
    /// when the header is present.
    pub fn body(&self) -> Bytes {
        self.buf.slice(self.body.range())
    }

    /// Length of start line plus headers plus the empty line.
    pub fn head_len(&self) -> usize {
        self.body.start as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::uri::Host;

    const INVITE: &str = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn parse(s: &str) -> Result<Message, ParseError> {
        Message::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn rfc3261_invite() {
        let m = parse(INVITE).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some(&Method::Invite));
        let u = m.request_uri().unwrap();
        assert_eq!(u.user, Some("bob"));
        assert_eq!(u.host, Host::Name("biloxi.com"));
        let v = m.top_via().unwrap();
        assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(m.call_id().unwrap(), b"a84b4c76e66710@pc33.atlanta.com");
        assert_eq!(m.cseq().unwrap().seq, 314159);
        assert_eq!(m.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(m.to().unwrap().tag(), None);
        assert_eq!(m.top_branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(m.from_tag(), Some("1928301774"));
        assert_eq!(m.to_tag(), None);
        let r = Message::parse_for_reply(Bytes::copy_from_slice(INVITE.as_bytes())).unwrap();
        assert_eq!(r.top_branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(r.from_tag(), Some("1928301774"));
        assert_eq!(r.cseq().unwrap(), m.cseq().unwrap());
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(m.content_length(), Some(4));
        assert_eq!(&m.body()[..], b"v=0\n");
        assert_eq!(m.as_bytes(), INVITE.as_bytes());
        assert_eq!(
            m.header(&HeaderName::ContentType),
            Some(&b"application/sdp"[..])
        );
        assert_eq!(m.all_headers().count(), 9);
    }

    #[test]
    fn compact_folding_bare_lf() {
        let s = "\r\nOPTIONS sip:h SIP/2.0\n\
v: SIP/2.0/UDP a;branch=z9hG4bK1,\n SIP/2.0/TCP [::1]:5061;branch=z9hG4bK2\n\
f: <sip:a@h>;tag=x\nt: sip:b@h\ni: abc\nX-Custom: one\n  two\nCSeq: 1\n OPTIONS\nl: 0\n\n";
        let m = parse(s).unwrap();
        let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[1].host, Host::V6("::1".parse().unwrap()));
        assert_eq!(m.cseq().unwrap().method, Method::Options);
        let name = HeaderName::from_bytes(b"x-custom");
        assert_eq!(m.header_unfolded(&name).unwrap().as_ref(), b"one two");
        assert_eq!(m.as_bytes().as_ref(), s.as_bytes());
    }

    #[test]
    fn response_and_errors() {
        let s = "SIP/2.0 180 Ringing Now\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let m = parse(s).unwrap();
        assert_eq!(m.status(), Some(StatusCode::RINGING));
        assert_eq!(m.reason(), Some(&b"Ringing Now"[..]));
        assert_eq!(
            parse("SIP/3.0 200 OK\r\n\r\n").unwrap_err().status(),
            StatusCode(505)
        );
        let bad = INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE");
        assert_eq!(parse(&bad).unwrap_err(), ParseError::CSeqMethodMismatch);
        let bad = INVITE.replace("Content-Length: 4", "Content-Length: 40");
        assert_eq!(parse(&bad).unwrap_err(), ParseError::BodyTruncated);
        let bad = INVITE.replace("Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n", "");
        assert_eq!(
            parse(&bad).unwrap_err(),
            ParseError::MissingHeader(HeaderName::CallId)
        );
        assert!(matches!(
            Message::parse_with_limit(Bytes::from(INVITE), 100),
            Err(ParseError::TooLarge { .. })
        ));
    }

    #[test]
    fn datagram_body_cut_to_content_length() {
        let s = format!("{INVITE}extra");
        let m = parse(&s).unwrap();
        assert_eq!(&m.body()[..], b"v=0\n");
        assert_eq!(m.as_bytes().len(), INVITE.len());
    }
}
