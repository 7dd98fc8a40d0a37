//! Parse errors and the SIP answer each one maps to (RFC 3261 §8.2, §16.3,
//! §21.4: 400, 413, 416, 505).

use super::header::HeaderName;
use super::status::StatusCode;

/// Why a message (or a header value) could not be parsed.
///
/// Every variant maps to the status a server answers with ([`ParseError::status`])
/// and a short reason for the reason phrase or a Warning header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The message is larger than the configured cap (checked before any work).
    #[error("message of {size} bytes exceeds limit of {max}")]
    TooLarge {
        /// Size of the offered buffer.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// More header fields than we are willing to index.
    #[error("too many header fields")]
    TooManyHeaders,
    /// Empty buffer (or only CRLF).
    #[error("empty message")]
    Empty,
    /// A NUL or other forbidden control byte in the start line or headers.
    #[error("forbidden control byte in message head")]
    InvalidByte,
    /// The start line is neither a Request-Line nor a Status-Line.
    #[error("malformed start line")]
    BadStartLine,
    /// SIP-Version other than SIP/2.0.
    #[error("unsupported SIP version")]
    BadVersion,
    /// Status code not three digits in 100..=699.
    #[error("malformed status code")]
    BadStatusCode,
    /// The Request-URI does not parse.
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// The Request-URI scheme is not sip, sips or tel.
    #[error("unsupported URI scheme")]
    UnsupportedUriScheme,
    /// The header section does not end with an empty line.
    #[error("header section not terminated")]
    UnterminatedHeaders,
    /// A header line without a colon or with an invalid name.
    #[error("malformed header line")]
    BadHeader,
    /// A header required to route or answer the message is missing.
    #[error("missing mandatory header {0}")]
    MissingHeader(HeaderName),
    /// A single-valued header appears more than once.
    #[error("duplicate header {0}")]
    DuplicateHeader(HeaderName),
    /// Content-Length is not a non-negative decimal number.
    #[error("malformed Content-Length")]
    BadContentLength,
    /// Content-Length is larger than the bytes that follow the header section.
    #[error("body shorter than Content-Length")]
    BodyTruncated,
    /// A URI inside a header does not parse.
    #[error("malformed URI")]
    BadUri,
    /// A Via value does not parse.
    #[error("malformed Via")]
    BadVia,
    /// CSeq is not `number method` with a 32-bit number.
    #[error("malformed CSeq")]
    BadCSeq,
    /// The CSeq method differs from the request method.
    #[error("CSeq method does not match request method")]
    CSeqMethodMismatch,
    /// Max-Forwards is not a decimal number.
    #[error("malformed Max-Forwards")]
    BadMaxForwards,
    /// Call-ID is empty or contains whitespace.
    #[error("malformed Call-ID")]
    BadCallId,
    /// From, To, Contact, Route or Record-Route value does not parse
    /// (includes unterminated quotes and angle brackets).
    #[error("malformed name-addr in {0}")]
    BadNameAddr(HeaderName),
    /// An Authorization/Proxy-Authorization or challenge does not parse.
    #[error("malformed credentials or challenge")]
    BadAuth,
    /// A header value is not valid where a numeric or token value is required.
    #[error("malformed header value")]
    BadValue,
}

impl ParseError {
    /// The status a server answers a request that failed this way with.
    ///
    /// 413 for oversize, 505 for a wrong version, 416 for an unsupported
    /// Request-URI scheme, 400 for everything else.
    pub fn status(&self) -> StatusCode {
        match self {
            ParseError::TooLarge { .. } => StatusCode::REQUEST_ENTITY_TOO_LARGE,
            ParseError::BadVersion => StatusCode::VERSION_NOT_SUPPORTED,
            ParseError::UnsupportedUriScheme => StatusCode::UNSUPPORTED_URI_SCHEME,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A short human reason, suitable for a reason phrase or Warning text.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::TooLarge { .. } => "Message Too Large",
            ParseError::TooManyHeaders => "Too Many Headers",
            ParseError::Empty => "Empty Message",
            ParseError::InvalidByte => "Invalid Control Character",
            ParseError::BadStartLine => "Malformed Start Line",
            ParseError::BadVersion => "Version Not Supported",
            ParseError::BadStatusCode => "Malformed Status Code",
            ParseError::BadRequestUri => "Malformed Request-URI",
            ParseError::UnsupportedUriScheme => "Unsupported URI Scheme",
            ParseError::UnterminatedHeaders => "Unterminated Header Section",
            ParseError::BadHeader => "Malformed Header",
            ParseError::MissingHeader(h) => match h {
                HeaderName::Via => "Missing Via",
                HeaderName::From => "Missing From",
                HeaderName::To => "Missing To",
                HeaderName::CallId => "Missing Call-ID",
                HeaderName::CSeq => "Missing CSeq",
                HeaderName::ContentLength => "Missing Content-Length",
                _ => "Missing Mandatory Header",
            },
            ParseError::DuplicateHeader(_) => "Duplicate Header",
            ParseError::BadContentLength => "Bad Content-Length",
            ParseError::BodyTruncated => "Body Shorter Than Content-Length",
            ParseError::BadUri => "Malformed URI",
            ParseError::BadVia => "Malformed Via",
            ParseError::BadCSeq => "Malformed CSeq",
            ParseError::CSeqMethodMismatch => "CSeq Method Mismatch",
            ParseError::BadMaxForwards => "Malformed Max-Forwards",
            ParseError::BadCallId => "Malformed Call-ID",
            ParseError::BadNameAddr(h) => match h {
                HeaderName::From => "Malformed From",
                HeaderName::To => "Malformed To",
                HeaderName::Contact => "Malformed Contact",
                _ => "Malformed Address",
            },
            ParseError::BadAuth => "Malformed Credentials",
            ParseError::BadValue => "Malformed Header Value",
        }
    }

    /// A stable short name of the variant (used by the test corpus manifest).
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::TooLarge { .. } => "TooLarge",
            ParseError::TooManyHeaders => "TooManyHeaders",
            ParseError::Empty => "Empty",
            ParseError::InvalidByte => "InvalidByte",
            ParseError::BadStartLine => "BadStartLine",
            ParseError::BadVersion => "BadVersion",
            ParseError::BadStatusCode => "BadStatusCode",
            ParseError::BadRequestUri => "BadRequestUri",
            ParseError::UnsupportedUriScheme => "UnsupportedUriScheme",
            ParseError::UnterminatedHeaders => "UnterminatedHeaders",
            ParseError::BadHeader => "BadHeader",
            ParseError::MissingHeader(_) => "MissingHeader",
            ParseError::DuplicateHeader(_) => "DuplicateHeader",
            ParseError::BadContentLength => "BadContentLength",
            ParseError::BodyTruncated => "BodyTruncated",
            ParseError::BadUri => "BadUri",
            ParseError::BadVia => "BadVia",
            ParseError::BadCSeq => "BadCSeq",
            ParseError::CSeqMethodMismatch => "CSeqMethodMismatch",
            ParseError::BadMaxForwards => "BadMaxForwards",
            ParseError::BadCallId => "BadCallId",
            ParseError::BadNameAddr(_) => "BadNameAddr",
            ParseError::BadAuth => "BadAuth",
            ParseError::BadValue => "BadValue",
        }
    }
}

impl From<&ParseError> for StatusCode {
    fn from(e: &ParseError) -> StatusCode {
        e.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ParseError::BadVersion.status(), StatusCode(505));
        assert_eq!(
            ParseError::TooLarge { size: 1, max: 0 }.status(),
            StatusCode(413)
        );
        assert_eq!(ParseError::UnsupportedUriScheme.status(), StatusCode(416));
        assert_eq!(ParseError::BadCSeq.status(), StatusCode(400));
        assert_eq!(
            ParseError::MissingHeader(HeaderName::Via).reason(),
            "Missing Via"
        );
    }
}
