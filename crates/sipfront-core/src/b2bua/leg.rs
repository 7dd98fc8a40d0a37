//! One leg of a call: the dialog state the B2BUA keeps toward one peer
//! (RFC 3261 §12: Call-ID, local and remote tag, local CSeq, remote target
//! and route set) and the in-dialog requests built from it (§12.2.1.1).
//!
//! Every request is written from these typed values with a fresh Via
//! (`;rport`, RFC 3581) and our own Contact, so nothing of the other leg
//! reaches this one (topology hiding, SPEC §5).

use std::net::SocketAddr;

use crate::sip::build::RequestBuilder;
use crate::sip::random::Random;
use crate::sip::{Message, Method, Transport};

/// Which leg: A is the caller's side (we are its UAS), B the upstream's
/// side (we are its UAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller's leg.
    A,
    /// The callee's (upstream's) leg.
    B,
}

impl Side {
    /// The other leg.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Our own addresses, written in Via and Contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// `server.public_address`.
    pub public_address: String,
    /// The port of each transport's (first) listen socket.
    pub ports: Vec<(Transport, u16)>,
}

impl Local {
    /// The port of `transport`'s listen socket; without one (a WebSocket
    /// leg always has one: it came in on it), UDP's, else 5060.
    pub fn port(&self, transport: Transport) -> u16 {
        let of = |t| self.ports.iter().find(|(x, _)| *x == t).map(|(_, p)| *p);
        of(transport).or_else(|| of(Transport::Udp)).unwrap_or(5060)
    }

    /// `host:port` for the Via sent-by on `transport`.
    pub fn sent_by(&self, transport: Transport) -> String {
        format!("{}:{}", self.public_address, self.port(transport))
    }

    /// Our Contact on `transport`: `<sip:sipfront@public:port;transport=x>`
    /// (`transport=ws`/`wss` on a WebSocket leg, RFC 7118 §5.2).
    pub fn contact(&self, transport: Transport) -> String {
        format!(
            "<sip:sipfront@{}:{};transport={}>",
            self.public_address,
            self.port(transport),
            transport.as_lowercase()
        )
    }
}

/// Dialog state of one leg (RFC 3261 §12.1).
#[derive(Clone, Debug)]
pub(crate) struct Leg {
    pub(crate) call_id: String,
    pub(crate) local_tag: String,
    pub(crate) remote_tag: Option<String>,
    /// Our address in From (requests we send) without tag.
    pub(crate) local_addr: String,
    /// The peer's address in To (requests we send) without tag.
    pub(crate) remote_addr: String,
    /// Request-URI of in-dialog requests (the peer's Contact).
    pub(crate) remote_target: String,
    /// Route set, in the order Route headers are written.
    pub(crate) route_set: Vec<String>,
    /// Where requests go: the peer's source address (A) or the upstream (B).
    pub(crate) dest: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) local_cseq: u32,
    /// CSeq number of this leg's INVITE (initial or last re-INVITE we sent).
    pub(crate) invite_cseq: u32,
}

/// Methods whose requests and 2xx carry a Contact (target refresh, §12.2;
/// RFC 3311, RFC 3515, RFC 6665).
pub(crate) fn is_target_refresh(m: &Method) -> bool {
    matches!(
        m,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    )
}

impl Leg {
    /// A request in this dialog. CSeq: the next local number, except ACK
    /// and CANCEL which reuse `cseq` (§13.2.2.4, §9.1).
    pub(crate) fn request(
        &mut self,
        method: Method,
        local: &Local,
        cseq: Option<u32>,
        rng: &mut Random,
    ) -> RequestBuilder {
        let seq = match cseq {
            Some(s) => s,
            None => {
                self.local_cseq = self.local_cseq.wrapping_add(1);
                self.local_cseq
            }
        };
        if method == Method::Invite {
            self.invite_cseq = seq;
        }
        let refresh = is_target_refresh(&method);
        let mut b = RequestBuilder::new(method, &self.remote_target)
            .via(
                self.transport,
                &local.sent_by(self.transport),
                &rng.branch(),
                true,
            )
            .from(&self.local_addr, Some(&self.local_tag))
            .to(&self.remote_addr, self.remote_tag.as_deref())
            .call_id(&self.call_id)
            .cseq(seq);
        for r in &self.route_set {
            b = b.route(r);
        }
        if refresh {
            b = b.contact(&local.contact(self.transport));
        }
        b
    }

    /// Learns remote tag, target and route set from a response to our
    /// INVITE (§12.1.2: route set from Record-Route in reverse).
    pub(crate) fn learn_from_response(&mut self, resp: &Message) {
        if let Ok(to) = resp.to() {
            if let Some(tag) = to.tag() {
                self.remote_tag = Some(tag.to_owned());
            }
        }
        if let Some(Ok(c)) = resp.contacts().next() {
            if let Some(addr) = c.addr() {
                self.remote_target = addr.uri.as_str().to_owned();
            }
        }
        let rr: Vec<String> = resp
            .headers(&crate::sip::HeaderName::RecordRoute)
            .flat_map(split_commas)
            .collect();
        if !rr.is_empty() {
            self.route_set = rr.into_iter().rev().collect();
        }
    }

    /// Learns a new remote target from a target-refresh request (§12.2.2).
    pub(crate) fn learn_target(&mut self, req: &Message) {
        if let Some(Ok(c)) = req.contacts().next() {
            if let Some(addr) = c.addr() {
                self.remote_target = addr.uri.as_str().to_owned();
            }
        }
    }
}

/// Splits a header value at top-level commas (outside `<>` and quotes).
pub(crate) fn split_commas(value: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(value);
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                if let Some(s) = text.get(start..i) {
                    out.push(s.trim().to_owned());
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if let Some(s) = text.get(start..) {
        if !s.trim().is_empty() {
            out.push(s.trim().to_owned());
        }
    }
    out
}
