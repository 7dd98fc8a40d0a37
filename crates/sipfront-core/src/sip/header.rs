//! Header field names (RFC 3261 §7.3, §20; compact forms §7.3.3 and the IANA
//! SIP parameters registry).
//!
//! Names are case-insensitive; compact forms (`v`, `i`, `m` ...) map to the
//! same variant as the long form. Unknown names are kept as [`HeaderName::Other`].

use bytes::Bytes;
use std::fmt;
use std::hash::{Hash, Hasher};

macro_rules! header_names {
    ($( $var:ident = $id:literal, $canon:literal, [$($alias:literal),*]; )*) => {
        /// A header field name. Equality and hashing are case-insensitive.
        #[derive(Clone, Debug)]
        #[non_exhaustive]
        pub enum HeaderName {
            $(
                #[doc = concat!("`", $canon, "`")]
                $var,
            )*
            /// Any other header name, kept verbatim (raw bytes of the name).
            Other(Bytes),
        }

        impl HeaderName {
            /// Canonical spelling (the long form), or the raw name for `Other`.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$var => $canon, )*
                    HeaderName::Other(b) => std::str::from_utf8(b).unwrap_or(""),
                }
            }

            /// Index of a known header (compact storage inside `Message`).
            pub(crate) fn known_id(&self) -> Option<u8> {
                match self {
                    $( HeaderName::$var => Some($id), )*
                    HeaderName::Other(b) => lookup(b),
                }
            }

            /// The known header with this index.
            pub(crate) fn from_id(id: u8) -> Option<HeaderName> {
                match id {
                    $( $id => Some(HeaderName::$var), )*
                    _ => None,
                }
            }
        }

        /// Every spelling (long and compact, lower case) with its id.
        const ALIASES: &[(&[u8], u8)] = &[ $( $( ($alias, $id), )* )* ];
    };
}

header_names! {
    Via = 0, "Via", [b"via", b"v"];
    From = 1, "From", [b"from", b"f"];
    To = 2, "To", [b"to", b"t"];
    CallId = 3, "Call-ID", [b"call-id", b"i"];
    CSeq = 4, "CSeq", [b"cseq"];
    Contact = 5, "Contact", [b"contact", b"m"];
    MaxForwards = 6, "Max-Forwards", [b"max-forwards"];
    ContentLength = 7, "Content-Length", [b"content-length", b"l"];
    ContentType = 8, "Content-Type", [b"content-type", b"c"];
    Route = 9, "Route", [b"route"];
    RecordRoute = 10, "Record-Route", [b"record-route"];
    Authorization = 11, "Authorization", [b"authorization"];
    ProxyAuthorization = 12, "Proxy-Authorization", [b"proxy-authorization"];
    WwwAuthenticate = 13, "WWW-Authenticate", [b"www-authenticate"];
    ProxyAuthenticate = 14, "Proxy-Authenticate", [b"proxy-authenticate"];
    Require = 15, "Require", [b"require"];
    ProxyRequire = 16, "Proxy-Require", [b"proxy-require"];
    Supported = 17, "Supported", [b"supported", b"k"];
    Allow = 18, "Allow", [b"allow"];
    Accept = 19, "Accept", [b"accept"];
    Expires = 20, "Expires", [b"expires"];
    MinExpires = 21, "Min-Expires", [b"min-expires"];
    UserAgent = 22, "User-Agent", [b"user-agent"];
    Server = 23, "Server", [b"server"];
    Event = 24, "Event", [b"event", b"o"];
    Unsupported = 25, "Unsupported", [b"unsupported"];
    RetryAfter = 26, "Retry-After", [b"retry-after"];
    Warning = 27, "Warning", [b"warning"];
    ContentEncoding = 28, "Content-Encoding", [b"content-encoding", b"e"];
    Subject = 29, "Subject", [b"subject", b"s"];
    AllowEvents = 30, "Allow-Events", [b"allow-events", b"u"];
    ReferTo = 31, "Refer-To", [b"refer-to", b"r"];
    ReferredBy = 32, "Referred-By", [b"referred-by", b"b"];
    SessionExpires = 33, "Session-Expires", [b"session-expires", b"x"];
    Identity = 34, "Identity", [b"identity", b"y"];
    AcceptContact = 35, "Accept-Contact", [b"accept-contact", b"a"];
    RejectContact = 36, "Reject-Contact", [b"reject-contact", b"j"];
    RequestDisposition = 37, "Request-Disposition", [b"request-disposition", b"d"];
    Timestamp = 38, "Timestamp", [b"timestamp"];
    Date = 39, "Date", [b"date"];
    ContentDisposition = 40, "Content-Disposition", [b"content-disposition"];
    AuthenticationInfo = 41, "Authentication-Info", [b"authentication-info"];
    PAssertedIdentity = 42, "P-Asserted-Identity", [b"p-asserted-identity"];
    PPreferredIdentity = 43, "P-Preferred-Identity", [b"p-preferred-identity"];
    Privacy = 44, "Privacy", [b"privacy"];
    Path = 45, "Path", [b"path"];
    RSeq = 46, "RSeq", [b"rseq"];
    RAck = 47, "RAck", [b"rack"];
    MinSe = 48, "Min-SE", [b"min-se"];
    SubscriptionState = 49, "Subscription-State", [b"subscription-state"];
    Reason = 50, "Reason", [b"reason"];
    AcceptEncoding = 51, "Accept-Encoding", [b"accept-encoding"];
    AcceptLanguage = 52, "Accept-Language", [b"accept-language"];
    MimeVersion = 53, "MIME-Version", [b"mime-version"];
    Organization = 54, "Organization", [b"organization"];
    Priority = 55, "Priority", [b"priority"];
    CallInfo = 56, "Call-Info", [b"call-info"];
    AlertInfo = 57, "Alert-Info", [b"alert-info"];
    ErrorInfo = 58, "Error-Info", [b"error-info"];
    InReplyTo = 59, "In-Reply-To", [b"in-reply-to"];
    ReplyTo = 60, "Reply-To", [b"reply-to"];
    ContentLanguage = 61, "Content-Language", [b"content-language"];
    ServiceRoute = 62, "Service-Route", [b"service-route"];
    Diversion = 63, "Diversion", [b"diversion"];
}

/// Slot of a name in [`LOOKUP`]: its length and its first and last bytes
/// (bit 5 set, which folds the case of letters).
#[inline(always)]
const fn slot(len: usize, first: u8, last: u8) -> usize {
    (len.wrapping_mul(37) ^ (first as usize | 0x20).wrapping_mul(11) ^ (last as usize | 0x20))
        & (LOOKUP_SLOTS - 1)
}

const LOOKUP_SLOTS: usize = 256;
const EMPTY: u8 = u8::MAX;
/// Longest spelling we compare (the longest known one has 20 bytes).
const MAX_NAME: usize = 24;

/// One known spelling as little-endian words, for a comparison of eight
/// bytes at a time: `(name & mask) | fold == word` matches letters in
/// either case and every other byte exactly, and ignores what follows the
/// name.
struct Spelling {
    words: [u64; 3],
    fold: [u64; 3],
    mask: [u64; 3],
    len: usize,
    id: u8,
}

const fn spelling(name: &[u8], id: u8) -> Spelling {
    let mut words = [0u64; 3];
    let mut fold = [0u64; 3];
    let mut mask = [0u64; 3];
    let mut i = 0;
    while i < name.len() {
        let shift = 8 * (i % 8);
        words[i / 8] |= (name[i] as u64) << shift;
        mask[i / 8] |= 0xff << shift;
        if name[i].is_ascii_lowercase() {
            fold[i / 8] |= 0x20 << shift;
        }
        i += 1;
    }
    Spelling {
        words,
        fold,
        mask,
        len: name.len(),
        id,
    }
}

static SPELLINGS: [Spelling; ALIASES.len()] = {
    let mut t = [const { spelling(b"", 0) }; ALIASES.len()];
    let mut k = 0;
    while k < ALIASES.len() {
        assert!(!ALIASES[k].0.is_empty() && ALIASES[k].0.len() <= MAX_NAME);
        t[k] = spelling(ALIASES[k].0, ALIASES[k].1);
        k += 1;
    }
    t
};

/// Open-addressing table (linear probing) from [`slot`] to an index into
/// [`SPELLINGS`], built at compile time; a third full, so probes are short
/// and always end at an empty slot.
static LOOKUP: [u8; LOOKUP_SLOTS] = {
    let mut t = [EMPTY; LOOKUP_SLOTS];
    let mut k = 0;
    while k < ALIASES.len() {
        let name = ALIASES[k].0;
        let mut h = slot(name.len(), name[0], name[name.len() - 1]);
        while t[h] != EMPTY {
            h = (h + 1) & (LOOKUP_SLOTS - 1);
        }
        t[h] = k as u8;
        k += 1;
    }
    t
};

/// Case-insensitive lookup of a name (long or compact) to a known id.
pub(crate) fn lookup(name: &[u8]) -> Option<u8> {
    lookup_in(name, 0, name.len())
}

/// [`lookup`] of the name at `b[start..end]`: one hash of the length and
/// end bytes, then per probe one comparison of three words read straight
/// from `b` (in a message the colon and value follow the name, so the bytes
/// are there; near the end of `b` the name is copied into a padded buffer).
#[inline]
pub(crate) fn lookup_in(b: &[u8], start: usize, end: usize) -> Option<u8> {
    let len = end.checked_sub(start)?;
    if len == 0 || len > MAX_NAME {
        return None;
    }
    let Some(src) = b
        .get(start..start + MAX_NAME)
        .and_then(|s| <&[u8; MAX_NAME]>::try_from(s).ok())
    else {
        let mut pad = [0u8; MAX_NAME];
        pad.get_mut(..len)?.copy_from_slice(b.get(start..end)?);
        return lookup_words(&pad, len);
    };
    lookup_words(src, len)
}

#[inline(always)]
fn lookup_words(src: &[u8; MAX_NAME], len: usize) -> Option<u8> {
    let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7, c0, c1, c2, c3, c4, c5, c6, c7] =
        *src;
    let w = [
        u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
        u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
        u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7]),
    ];
    let last = *src.get(len - 1)?;
    let mut h = slot(len, a0, last);
    loop {
        let sp = SPELLINGS.get(usize::from(*LOOKUP.get(h)?))?;
        if sp.len == len
            && (w[0] & sp.mask[0]) | sp.fold[0] == sp.words[0]
            && (w[1] & sp.mask[1]) | sp.fold[1] == sp.words[1]
            && (w[2] & sp.mask[2]) | sp.fold[2] == sp.words[2]
        {
            return Some(sp.id);
        }
        h = (h + 1) & (LOOKUP_SLOTS - 1);
    }
}

/// Id used inside `Message` for names that are not known.
pub(crate) const OTHER_ID: u8 = u8::MAX;

impl HeaderName {
    /// Resolves a raw name (case-insensitive, compact forms accepted).
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        lookup(name)
            .and_then(HeaderName::from_id)
            .unwrap_or_else(|| HeaderName::Other(Bytes::copy_from_slice(name)))
    }

    /// Whether this name is one of the known variants.
    pub fn is_known(&self) -> bool {
        self.known_id().is_some()
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self.known_id(), other.known_id()) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.as_bytes().eq_ignore_ascii_case(other.as_bytes()),
            _ => false,
        }
    }
}
impl Eq for HeaderName {}

impl Hash for HeaderName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self.known_id() {
            Some(id) => id.hash(state),
            None => {
                for b in self.as_bytes() {
                    state.write_u8(b.to_ascii_lowercase());
                }
            }
        }
    }
}

impl HeaderName {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            HeaderName::Other(b) => b,
            k => k.as_str().as_bytes(),
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case() {
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"V"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"cAlL-iD"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"i"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_bytes(b"x"), HeaderName::SessionExpires);
        let other = HeaderName::from_bytes(b"X-Custom");
        assert_eq!(other, HeaderName::Other(Bytes::from_static(b"x-custom")));
        assert_eq!(other.as_str(), "X-Custom");
        // a hand-made Other with a known name equals the variant
        assert_eq!(
            HeaderName::Other(Bytes::from_static(b"via")),
            HeaderName::Via
        );
        // very long names do not panic
        let long = vec![b'a'; 300];
        assert!(!HeaderName::from_bytes(&long).is_known());
        assert_eq!(lookup(b""), None);
    }

    /// The hashed lookup agrees with a plain case-insensitive search of every
    /// spelling, for every spelling in upper, lower and mixed case and for
    /// near misses (one byte changed, cut, or extended; `_` for `-`).
    #[test]
    fn lookup_matches_linear_search() {
        let linear = |n: &[u8]| {
            ALIASES
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case(n))
                .map(|&(_, id)| id)
        };
        for &(alias, id) in ALIASES {
            assert_eq!(lookup(alias), Some(id));
            assert_eq!(lookup(&alias.to_ascii_uppercase()), Some(id));
            let mixed: Vec<u8> = alias
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        *c
                    }
                })
                .collect();
            assert_eq!(lookup(&mixed), Some(id));
            for i in 0..alias.len() {
                for c in [b'_', b'-', b'x', b'@', 0x7f, 0xc3, b'A' ^ 0x20] {
                    let mut v = alias.to_vec();
                    v[i] = c;
                    assert_eq!(lookup(&v), linear(&v), "{v:?}");
                }
                assert_eq!(lookup(&alias[..i]), linear(&alias[..i]));
            }
            let mut longer = alias.to_vec();
            longer.push(b's');
            assert_eq!(lookup(&longer), linear(&longer));
        }
    }
}
