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

        /// Case-insensitive lookup of a name (long or compact) to a known id.
        pub(crate) fn lookup(name: &[u8]) -> Option<u8> {
            let mut lower = [0u8; 24];
            let dst = lower.get_mut(..name.len())?;
            for (d, s) in dst.iter_mut().zip(name) {
                *d = s.to_ascii_lowercase();
            }
            match &*dst {
                $( $( $alias )|* => Some($id), )*
                _ => None,
            }
        }
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
    }
}
