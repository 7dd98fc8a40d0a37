//! Building messages from typed values (RFC 3261 §8.1.1 requests, §8.2.6
//! responses, §17.1.1.3 ACK for non-2xx, §9.1 CANCEL, §8.1.1.7 branch,
//! §19.3 tags and Call-IDs). Never string surgery on received text: header
//! values are copied from parsed spans, and CR/LF in caller-supplied values
//! is replaced by SP so no header can be injected.

use super::header::HeaderName;
use super::message::Message;
use super::method::Method;
use super::status::StatusCode;
use super::text::{ipv4, put_u64, Arena, Clean, Piece};
use super::transport::Transport;
use super::uri::Host;
use super::via::Via;
use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;
use std::fmt::Write as _;
use std::net::SocketAddr;

/// Writes `value`, replacing CR/LF by SP (header injection guard).
fn put_clean(out: &mut BytesMut, value: &[u8]) {
    if memchr::memchr2(b'\r', b'\n', value).is_none() {
        out.put_slice(value);
        return;
    }
    for &b in value {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
}

/// Writes a received header value with folding collapsed to one SP.
fn put_unfolded(out: &mut BytesMut, value: &[u8]) {
    // Nearly every value is on one line: copy it whole, not byte by byte
    // (the loop below leaves such a value unchanged).
    if memchr::memchr2(b'\r', b'\n', value).is_none() {
        out.put_slice(value);
        return;
    }
    let mut in_break = false;
    for &b in value {
        if b == b'\r' || b == b'\n' || (in_break && (b == b' ' || b == b'\t')) {
            if !in_break {
                out.put_u8(b' ');
            }
            in_break = true;
        } else {
            in_break = false;
            out.put_u8(b);
        }
    }
}

fn put_header(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    put_unfolded(out, value);
    out.put_slice(b"\r\n");
}

fn put_content_length(out: &mut BytesMut, len: usize) {
    out.put_slice(b"Content-Length: ");
    put_u64(out, len as u64);
    out.put_slice(b"\r\n");
}

/// Caller-supplied headers and body of a builder, their text in `arena`.
#[derive(Clone, Debug, Default)]
struct Extra {
    arena: Arena,
    headers: SmallVec<[(Piece, Piece); 8]>,
    body: Option<(Piece, Bytes)>,
}

impl Extra {
    fn header(&mut self, name: &str, value: &str) {
        let n = self.arena.push(name);
        let v = self.arena.push(value);
        self.headers.push((n, v));
    }

    fn body(&mut self, content_type: &str, body: Bytes) {
        self.body = Some((self.arena.push(content_type), body));
    }

    /// Bytes `put` will write, roughly (a capacity hint).
    fn len_hint(&self) -> usize {
        let h: usize = self
            .headers
            .iter()
            .map(|&(n, v)| self.arena.get(n).len() + self.arena.get(v).len() + 4)
            .sum();
        h + self
            .body
            .as_ref()
            .map_or(0, |&(ct, ref b)| self.arena.get(ct).len() + b.len() + 16)
    }

    /// Writes the headers in order, then Content-Type (with a body) and
    /// Content-Length (always), the end of the head and the body.
    fn put(&self, out: &mut BytesMut) {
        for &(n, v) in &self.headers {
            put_clean(out, self.arena.get(n).as_bytes());
            out.put_slice(b": ");
            put_clean(out, self.arena.get(v).as_bytes());
            out.put_slice(b"\r\n");
        }
        match &self.body {
            Some((ct, body)) => {
                out.put_slice(b"Content-Type: ");
                put_clean(out, self.arena.get(*ct).as_bytes());
                out.put_slice(b"\r\n");
                put_content_length(out, body.len());
                out.put_slice(b"\r\n");
                out.put_slice(body);
            }
            None => {
                put_content_length(out, 0);
                out.put_slice(b"\r\n");
            }
        }
    }
}

/// Copies every header named `name` from `msg`, in order.
fn copy_all(out: &mut BytesMut, msg: &Message, name: &HeaderName) {
    for v in msg.headers(name) {
        put_header(out, name.as_str(), v);
    }
}

/// Copies the Via headers of `req`, the top value rewritten with
/// `received`/`rport` for `source` (see [`ResponseBuilder::received`]).
fn put_vias_received(out: &mut BytesMut, req: &Message, source: SocketAddr) {
    let mut vias = req.headers(&HeaderName::Via);
    let Some(first) = vias.next() else { return };
    let mut values = super::lex::CommaSplit::new(first);
    out.put_slice(b"Via: ");
    match values.next().map(Via::parse) {
        Some(Ok(top)) => put_via_received(out, &top, source),
        _ => put_unfolded(out, first),
    }
    for rest in values {
        out.put_slice(b", ");
        put_unfolded(out, super::lex::trim(rest));
    }
    out.put_slice(b"\r\n");
    for v in vias {
        put_header(out, "Via", v);
    }
}

/// Writes one Via value from its parts with `received`/`rport` set.
fn put_via_received(out: &mut BytesMut, via: &Via<'_>, source: SocketAddr) {
    let mut text = Clean(out);
    let _ = write!(
        text,
        "{}/{}/{} {}",
        via.protocol, via.version, via.transport, via.host
    );
    if let Some(port) = via.port {
        let _ = write!(text, ":{port}");
    }
    let rport = via.rport().is_some();
    for (name, value) in via.params.iter() {
        if name.eq_ignore_ascii_case("received") {
            continue;
        }
        if name.eq_ignore_ascii_case("rport") {
            let _ = write!(text, ";rport={}", source.port());
            continue;
        }
        let _ = text.write_str(";");
        let _ = text.write_str(name);
        if let Some(v) = value {
            // Anything but a plain token goes back quoted, as it may have come.
            let plain = v.bytes().all(super::lex::is_token);
            let _ = if plain {
                write!(text, "={v}")
            } else {
                write!(text, "=\"{v}\"")
            };
        }
    }
    let sent_by_is_source = match via.host {
        Host::V4(a) => std::net::IpAddr::V4(a) == source.ip(),
        Host::V6(a) => std::net::IpAddr::V6(a) == source.ip(),
        Host::Name(_) => false,
    };
    if rport || !sent_by_is_source {
        let _ = match source.ip() {
            std::net::IpAddr::V4(a) => write!(text, ";received={}", ipv4(a, &mut [0; 15])),
            ip => write!(text, ";received={ip}"),
        };
    }
}

/// Copies the first `name` header of `msg`, if any.
fn copy_first(out: &mut BytesMut, msg: &Message, name: &HeaderName) {
    if let Some(v) = msg.header(name) {
        put_header(out, name.as_str(), v);
    }
}

/// Writes the top Via value only (first element of the first Via header).
fn copy_top_via(out: &mut BytesMut, msg: &Message) {
    if let Some(v) = msg.header(&HeaderName::Via) {
        let top = super::lex::CommaSplit::new(v).next().unwrap_or(v);
        put_header(out, "Via", top);
    }
}

/// Builds a response to a request (RFC 3261 §8.2.6).
///
/// Copies all Via headers in order, From, To (adding the tag if To has none),
/// Call-ID and CSeq; then the extra headers in the order given; Content-Type
/// and Content-Length last.
#[derive(Clone, Debug)]
pub struct ResponseBuilder {
    req: Message,
    status: StatusCode,
    reason: Option<Piece>,
    to_tag: Option<Piece>,
    source: Option<SocketAddr>,
    extra: Extra,
}

impl ResponseBuilder {
    /// A response with `status` to `req`.
    pub fn new(req: &Message, status: StatusCode) -> Self {
        ResponseBuilder {
            req: req.clone(),
            status,
            reason: None,
            to_tag: None,
            source: None,
            extra: Extra::default(),
        }
    }

    /// The address the request came from: the top Via of the response gets
    /// `received` (RFC 3261 §18.2.1, when it differs from sent-by) and a
    /// value for an empty `rport` (RFC 3581 §4, which also makes `received`
    /// mandatory), so a UA behind NAT learns how we see it.
    pub fn received(mut self, source: SocketAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// Reason phrase (default: the canonical one).
    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(self.extra.arena.push(reason));
        self
    }

    /// To tag to add when the request's To has none.
    pub fn to_tag(mut self, tag: &str) -> Self {
        self.to_tag = Some(self.extra.arena.push(tag));
        self
    }

    /// Appends a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.header(name, value);
        self
    }

    /// Adds a `Server` header.
    pub fn server(self, product: &str) -> Self {
        self.header("Server", product)
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.extra.body(content_type, body);
        self
    }

    /// Writes the response.
    pub fn build(self) -> Bytes {
        let req = &self.req;
        let reason = match self.reason {
            Some(r) => self.extra.arena.get(r),
            None => self.status.canonical_reason(),
        };
        let mut out = BytesMut::with_capacity(req.head_len() + self.extra.len_hint() + 64);
        out.put_slice(b"SIP/2.0 ");
        put_u64(&mut out, u64::from(self.status.0));
        out.put_u8(b' ');
        put_clean(&mut out, reason.as_bytes());
        out.put_slice(b"\r\n");
        match self.source {
            Some(source) => put_vias_received(&mut out, req, source),
            None => copy_all(&mut out, req, &HeaderName::Via),
        }
        copy_first(&mut out, req, &HeaderName::From);
        if let Some(to) = req.header(&HeaderName::To) {
            out.put_slice(b"To: ");
            put_unfolded(&mut out, to);
            let has_tag = req.to().map(|t| t.tag().is_some()).unwrap_or(true);
            if let (false, Some(tag)) = (has_tag, self.to_tag) {
                out.put_slice(b";tag=");
                put_clean(&mut out, self.extra.arena.get(tag).as_bytes());
            }
            out.put_slice(b"\r\n");
        }
        copy_first(&mut out, req, &HeaderName::CallId);
        copy_first(&mut out, req, &HeaderName::CSeq);
        self.extra.put(&mut out);
        out.freeze()
    }
}

fn put_request_line(out: &mut BytesMut, method: &str, uri: &[u8]) {
    put_clean(out, method.as_bytes());
    out.put_u8(b' ');
    put_clean(out, uri);
    out.put_slice(b" SIP/2.0\r\n");
}

/// ACK for a non-2xx final response to an INVITE we sent (RFC 3261 §17.1.1.3):
/// same Request-URI, Call-ID, From and CSeq number (method ACK), the top Via
/// only, the INVITE's Route headers, and To from the response.
pub fn ack_for_non_2xx(invite: &Message, response: &Message) -> Bytes {
    derived_request(invite, "ACK", Some(response))
}

/// CANCEL for an INVITE we sent (RFC 3261 §9.1): same Request-URI, Call-ID,
/// From, To and CSeq number (method CANCEL), top Via only, Route headers.
pub fn cancel_for(invite: &Message) -> Bytes {
    derived_request(invite, "CANCEL", None)
}

fn derived_request(invite: &Message, method: &str, response: Option<&Message>) -> Bytes {
    let mut out = BytesMut::with_capacity(invite.head_len() + 64);
    let uri = invite.request_uri_str().unwrap_or("");
    put_request_line(&mut out, method, uri.as_bytes());
    copy_top_via(&mut out, invite);
    copy_all(&mut out, invite, &HeaderName::Route);
    let mf = invite.max_forwards().ok().flatten().unwrap_or(70);
    out.put_slice(b"Max-Forwards: ");
    put_u64(&mut out, u64::from(mf));
    out.put_slice(b"\r\n");
    copy_first(&mut out, invite, &HeaderName::From);
    copy_first(&mut out, response.unwrap_or(invite), &HeaderName::To);
    copy_first(&mut out, invite, &HeaderName::CallId);
    let seq = invite.cseq().map(|c| c.seq).unwrap_or(0);
    out.put_slice(b"CSeq: ");
    put_u64(&mut out, u64::from(seq));
    out.put_u8(b' ');
    out.put_slice(method.as_bytes());
    out.put_slice(b"\r\n");
    put_content_length(&mut out, 0);
    out.put_slice(b"\r\n");
    out.freeze()
}

/// One Via a [`RequestBuilder`] writes (text in its arena).
#[derive(Clone, Copy, Debug)]
struct ViaSpec {
    transport: Transport,
    sent_by: Piece,
    branch: Piece,
    rport: bool,
}

/// A request from typed parts (B2BUA legs, OPTIONS pings).
///
/// Header order written: Via(s), Route(s), Max-Forwards, From, To, Call-ID,
/// CSeq, Contact, extra headers, Content-Type, Content-Length.
#[derive(Clone, Debug)]
pub struct RequestBuilder {
    method: Method,
    uri: Piece,
    vias: SmallVec<[ViaSpec; 2]>,
    max_forwards: u32,
    from: Option<(Piece, Option<Piece>)>,
    to: Option<(Piece, Option<Piece>)>,
    call_id: Option<Piece>,
    cseq: u32,
    contact: Option<Piece>,
    routes: SmallVec<[Piece; 4]>,
    /// Extra headers, body, and the text of every field above.
    extra: Extra,
}

impl RequestBuilder {
    /// A request for `method` to `uri` (Max-Forwards 70, CSeq 1 by default).
    pub fn new(method: Method, uri: &str) -> Self {
        let mut extra = Extra::default();
        RequestBuilder {
            method,
            uri: extra.arena.push(uri),
            vias: SmallVec::new(),
            max_forwards: 70,
            from: None,
            to: None,
            call_id: None,
            cseq: 1,
            contact: None,
            routes: SmallVec::new(),
            extra,
        }
    }

    fn push(&mut self, s: &str) -> Piece {
        self.extra.arena.push(s)
    }

    /// Adds a Via (the first one added is the top one).
    pub fn via(mut self, transport: Transport, sent_by: &str, branch: &str, rport: bool) -> Self {
        let via = ViaSpec {
            transport,
            sent_by: self.push(sent_by),
            branch: self.push(branch),
            rport,
        };
        self.vias.push(via);
        self
    }

    /// Max-Forwards.
    pub fn max_forwards(mut self, n: u32) -> Self {
        self.max_forwards = n;
        self
    }

    /// From address (`"Name" <sip:...>` or a bare URI) and tag.
    pub fn from(mut self, addr: &str, tag: Option<&str>) -> Self {
        self.from = Some((self.push(addr), tag.map(|t| self.push(t))));
        self
    }

    /// To address and optional tag.
    pub fn to(mut self, addr: &str, tag: Option<&str>) -> Self {
        self.to = Some((self.push(addr), tag.map(|t| self.push(t))));
        self
    }

    /// Call-ID (required: the core mints one with [`super::random::Random::call_id`]).
    pub fn call_id(mut self, call_id: &str) -> Self {
        self.call_id = Some(self.push(call_id));
        self
    }

    /// CSeq number (the method is the request's).
    pub fn cseq(mut self, seq: u32) -> Self {
        self.cseq = seq;
        self
    }

    /// Contact address.
    pub fn contact(mut self, contact: &str) -> Self {
        self.contact = Some(self.push(contact));
        self
    }

    /// Appends a Route value.
    pub fn route(mut self, route: &str) -> Self {
        let r = self.push(route);
        self.routes.push(r);
        self
    }

    /// Appends a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.header(name, value);
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.extra.body(content_type, body);
        self
    }

    fn put_addr(out: &mut BytesMut, name: &str, addr: &str, tag: Option<&str>) {
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        let bare = !addr.contains('<');
        if bare && tag.is_some() {
            // addr-spec with params must be wrapped (RFC 3261 §20.10)
            out.put_u8(b'<');
            put_clean(out, addr.as_bytes());
            out.put_u8(b'>');
        } else {
            put_clean(out, addr.as_bytes());
        }
        if let Some(t) = tag {
            out.put_slice(b";tag=");
            put_clean(out, t.as_bytes());
        }
        out.put_slice(b"\r\n");
    }

    /// Writes the request.
    pub fn build(self) -> Bytes {
        let text = &self.extra.arena;
        let get = |p: Piece| text.get(p);
        let routes: usize = self.routes.iter().map(|&r| get(r).len() + 9).sum();
        let uri = get(self.uri);
        let mut out = BytesMut::with_capacity(320 + uri.len() * 2 + routes + self.extra.len_hint());
        put_request_line(&mut out, self.method.as_str(), uri.as_bytes());
        for v in &self.vias {
            out.put_slice(b"Via: SIP/2.0/");
            out.put_slice(v.transport.as_str().as_bytes());
            out.put_u8(b' ');
            put_clean(&mut out, get(v.sent_by).as_bytes());
            out.put_slice(b";branch=");
            put_clean(&mut out, get(v.branch).as_bytes());
            if v.rport {
                out.put_slice(b";rport");
            }
            out.put_slice(b"\r\n");
        }
        for &r in &self.routes {
            out.put_slice(b"Route: ");
            put_clean(&mut out, get(r).as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"Max-Forwards: ");
        put_u64(&mut out, u64::from(self.max_forwards));
        out.put_slice(b"\r\n");
        if let Some((addr, tag)) = self.from {
            Self::put_addr(&mut out, "From", get(addr), tag.map(get));
        }
        if let Some((addr, tag)) = self.to {
            Self::put_addr(&mut out, "To", get(addr), tag.map(get));
        }
        out.put_slice(b"Call-ID: ");
        if let Some(c) = self.call_id {
            put_clean(&mut out, get(c).as_bytes());
        }
        out.put_slice(b"\r\nCSeq: ");
        put_u64(&mut out, u64::from(self.cseq));
        out.put_u8(b' ');
        put_clean(&mut out, self.method.as_str().as_bytes());
        out.put_slice(b"\r\n");
        if let Some(c) = self.contact {
            out.put_slice(b"Contact: ");
            put_clean(&mut out, get(c).as_bytes());
            out.put_slice(b"\r\n");
        }
        self.extra.put(&mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::uri::Host;

    fn invite() -> Message {
        let b = RequestBuilder::new(Method::Invite, "sip:bob@biloxi.com")
            .via(Transport::Udp, "10.0.0.1:5060", "z9hG4bKabc", true)
            .route("<sip:p1.example;lr>")
            .from("\"Alice\" <sip:alice@atlanta.com>", Some("ftag"))
            .to("sip:bob@biloxi.com", None)
            .call_id("cid@10.0.0.1")
            .cseq(7)
            .contact("<sip:alice@10.0.0.1>")
            .header("Subject", "hi\r\nInjected: yes")
            .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
            .build();
        Message::parse(b).unwrap()
    }

    #[test]
    fn request_round_trip() {
        let m = invite();
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.request_uri().unwrap().user, Some("bob"));
        let v = m.top_via().unwrap();
        assert_eq!(v.branch(), Some("z9hG4bKabc"));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.host, Host::V4("10.0.0.1".parse().unwrap()));
        assert_eq!(m.from().unwrap().tag(), Some("ftag"));
        assert_eq!(m.call_id().unwrap(), b"cid@10.0.0.1");
        assert_eq!(m.cseq().unwrap().seq, 7);
        assert_eq!(&m.body()[..], b"v=0\r\n");
        assert_eq!(m.routes().count(), 1);
        assert!(m.header(&HeaderName::from_bytes(b"Injected")).is_none());
    }

    #[test]
    fn response_round_trip() {
        let req = invite();
        let r = ResponseBuilder::new(&req, StatusCode::BUSY_HERE)
            .to_tag("totag")
            .server("sipfront")
            .build();
        let resp = Message::parse(r).unwrap();
        assert_eq!(resp.status(), Some(StatusCode::BUSY_HERE));
        assert_eq!(resp.reason(), Some(&b"Busy Here"[..]));
        assert_eq!(resp.to().unwrap().tag(), Some("totag"));
        assert_eq!(resp.top_via().unwrap().branch(), Some("z9hG4bKabc"));
        assert_eq!(resp.cseq().unwrap(), req.cseq().unwrap());
        assert_eq!(resp.content_length(), Some(0));

        let ack = Message::parse(ack_for_non_2xx(&req, &resp)).unwrap();
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(ack.cseq().unwrap().seq, 7);
        assert_eq!(ack.cseq().unwrap().method, Method::Ack);
        assert_eq!(ack.to().unwrap().tag(), Some("totag"));
        assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKabc"));
        assert_eq!(ack.routes().count(), 1);
        assert_eq!(ack.request_uri_str(), Some("sip:bob@biloxi.com"));

        let cancel = Message::parse(cancel_for(&req)).unwrap();
        assert_eq!(cancel.method(), Some(&Method::Cancel));
        assert_eq!(cancel.to().unwrap().tag(), None);
        assert_eq!(cancel.cseq().unwrap().method, Method::Cancel);
    }

    #[test]
    fn output_is_byte_exact() {
        let req = invite();
        let want = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport\r\n\
Route: <sip:p1.example;lr>\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@atlanta.com>;tag=ftag\r\n\
To: sip:bob@biloxi.com\r\n\
Call-ID: cid@10.0.0.1\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:alice@10.0.0.1>\r\n\
Subject: hi  Injected: yes\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 5\r\n\
\r\n\
v=0\r\n";
        assert_eq!(String::from_utf8_lossy(req.as_bytes()), want);
        let resp = ResponseBuilder::new(&req, StatusCode::BUSY_HERE)
            .to_tag("totag")
            .server("sipfront")
            .received("192.0.2.9:4000".parse().unwrap())
            .build();
        let want = "SIP/2.0 486 Busy Here\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=4000;received=192.0.2.9\r\n\
From: \"Alice\" <sip:alice@atlanta.com>;tag=ftag\r\n\
To: sip:bob@biloxi.com;tag=totag\r\n\
Call-ID: cid@10.0.0.1\r\n\
CSeq: 7 INVITE\r\n\
Server: sipfront\r\n\
Content-Length: 0\r\n\
\r\n";
        assert_eq!(String::from_utf8_lossy(&resp), want);
    }
}
