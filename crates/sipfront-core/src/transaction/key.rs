//! Transaction matching keys: RFC 3261 §17.1.3 (responses to client
//! transactions), §17.2.3 (requests to server transactions, including the RFC
//! 2543 fallback when the branch lacks the `z9hG4bK` cookie) and §9.2 (CANCEL).
//!
//! The key is a struct of typed parts, not a formatted string, so matching is
//! one `HashMap` lookup and nothing is re-parsed.

use std::fmt;

use smallvec::SmallVec;

use crate::sip::{Message, Method, ParseError, Via};

/// Text of a key part (a branch, a sent-by host), inline up to 32 bytes:
/// keys are made, cloned and hashed for every message, and typical
/// branches and hosts fit, so matching allocates nothing.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyText(SmallVec<[u8; 32]>);

impl KeyText {
    fn new(s: &str) -> KeyText {
        KeyText(SmallVec::from_slice(s.as_bytes()))
    }

    /// The text (always UTF-8: only ever built from `str`).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Write for KeyText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side of the exchange a transaction is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// We sent the request (§17.1).
    Client,
    /// We received the request (§17.2).
    Server,
}

/// The sent-by of a Via (`host[:port]`), normalised for comparison: host names
/// lower-cased, IP literals in canonical form. The port is kept as written
/// (absent and 5060 differ, as a literal comparison of sent-by requires).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host (name lower-cased, IPv6 in brackets).
    pub host: KeyText,
    /// Port, when present.
    pub port: Option<u16>,
}

impl HostPort {
    fn of(via: &Via<'_>) -> HostPort {
        use std::fmt::Write as _;
        let mut host = KeyText::default();
        let _ = write!(host, "{}", via.host);
        host.0.make_ascii_lowercase();
        HostPort {
            host,
            port: via.port,
        }
    }
}

/// RFC 2543 fallback identity (§17.2.3): used when the top Via branch lacks
/// the RFC 3261 magic cookie.
///
/// The top Via's sent-by and branch are in the [`TransactionKey`] itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rfc2543Id {
    /// Request-URI, as written.
    pub request_uri: String,
    /// Call-ID.
    pub call_id: Box<[u8]>,
    /// From tag.
    pub from_tag: Option<String>,
    /// To tag of the request (None for an initial INVITE). An ACK is looked up
    /// with its own To tag, then with none, and then must carry the To tag of
    /// the response we sent.
    pub to_tag: Option<String>,
    /// CSeq number.
    pub cseq: u32,
}

/// Identifies one transaction (RFC 3261 §17.1.3 / §17.2.3).
///
/// For RFC 3261 peers: branch + sent-by + method, where ACK matches INVITE
/// (an ACK for a non-2xx belongs to the INVITE's transaction) and CANCEL is its
/// own method (a CANCEL is a separate transaction, §9.2). For RFC 2543 peers
/// `rfc2543` carries the fallback identity as well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionKey {
    /// Client or server side.
    pub role: Role,
    /// Top Via branch (empty when absent).
    pub branch: KeyText,
    /// Top Via sent-by.
    pub sent_by: HostPort,
    /// Method the transaction was created for (never ACK).
    pub method: Method,
    /// RFC 2543 fallback identity, when the branch lacks the magic cookie.
    pub rfc2543: Option<Box<Rfc2543Id>>,
}

/// Hashes the branch and sent-by host (and an RFC 2543 key's Call-ID and
/// CSeq), a few writes in all: they tell transactions apart, and equal
/// keys have them equal, so this agrees with `Eq`. The derived `Hash` fed
/// SipHash every field and length separately, ~720 instructions a key and
/// 11 % of a REGISTER's (a key is hashed ~27 times per registration).
/// Peers cannot pile keys into one bucket without varying what is hashed.
impl std::hash::Hash for TransactionKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.branch.0);
        state.write(&self.sent_by.host.0);
        if let Some(id) = &self.rfc2543 {
            state.write(&id.call_id);
            state.write_u32(id.cseq);
        }
    }
}

/// Why no key could be derived from a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A request was expected (server side) but a response came, or vice versa.
    #[error("wrong kind of message (request vs response)")]
    WrongKind,
    /// A header needed for matching (Via, CSeq, From, To, Call-ID) is bad.
    #[error("cannot match transaction: {0}")]
    Parse(#[from] ParseError),
}

impl KeyError {
    /// The response a server should answer an unmatchable request with
    /// (400 for a bad header), when one can be sent at all.
    pub fn status(&self) -> crate::sip::StatusCode {
        match self {
            KeyError::Parse(e) => e.status(),
            KeyError::WrongKind => crate::sip::StatusCode::BAD_REQUEST,
        }
    }
}

/// ACK is matched as the INVITE it acknowledges (§17.2.3).
fn fold_ack(method: &Method) -> Method {
    match method {
        Method::Ack => Method::Invite,
        m => m.clone(),
    }
}

impl TransactionKey {
    /// Key of the server transaction `req` belongs to (§17.2.3). For an ACK
    /// this is the key of the INVITE (for RFC 2543, with the ACK's To tag);
    /// see [`TransactionKey::with_method`] for CANCEL → INVITE.
    ///
    /// # Errors
    /// [`KeyError`] when `req` is a response or its Via/CSeq/From/To/Call-ID
    /// cannot be parsed.
    pub fn server(req: &Message) -> Result<TransactionKey, KeyError> {
        let method = req.method().ok_or(KeyError::WrongKind)?;
        let via = req.top_via()?;
        let rfc2543 = if via.is_rfc3261_branch() {
            None
        } else {
            Some(Box::new(Rfc2543Id {
                request_uri: req.request_uri_str().unwrap_or("").to_owned(),
                call_id: req.call_id()?.into(),
                from_tag: req.from()?.tag().map(str::to_owned),
                to_tag: req.to()?.tag().map(str::to_owned),
                cseq: req.cseq()?.seq,
            }))
        };
        Ok(TransactionKey {
            role: Role::Server,
            branch: KeyText::new(via.branch().unwrap_or("")),
            sent_by: HostPort::of(&via),
            method: fold_ack(method),
            rfc2543,
        })
    }

    /// Key of the client transaction `msg` belongs to: for a response, by top
    /// Via branch and sent-by and the CSeq method (§17.1.3); for a request we
    /// are about to send, by its own top Via and method.
    ///
    /// # Errors
    /// [`KeyError::Parse`] when the top Via or CSeq cannot be parsed.
    pub fn client(msg: &Message) -> Result<TransactionKey, KeyError> {
        let via = msg.top_via()?;
        let method = match msg.method() {
            Some(m) => fold_ack(m),
            None => fold_ack(&msg.cseq()?.method),
        };
        Ok(TransactionKey {
            role: Role::Client,
            branch: KeyText::new(via.branch().unwrap_or("")),
            sent_by: HostPort::of(&via),
            method,
            rfc2543: None,
        })
    }

    /// The same key for another method: CANCEL → INVITE finds the transaction
    /// a CANCEL cancels (§9.2: same branch and sent-by; for RFC 2543 the same
    /// Request-URI, tags, Call-ID and CSeq number).
    pub fn with_method(&self, method: Method) -> TransactionKey {
        TransactionKey {
            method,
            ..self.clone()
        }
    }

    /// The same key with another RFC 2543 To tag (ACK lookup).
    pub(crate) fn with_to_tag(&self, to_tag: Option<String>) -> TransactionKey {
        let mut k = self.clone();
        if let Some(id) = k.rfc2543.as_mut() {
            id.to_tag = to_tag;
        }
        k
    }

    /// Whether this key uses the RFC 2543 fallback.
    pub fn is_rfc2543(&self) -> bool {
        self.rfc2543.is_some()
    }
}
