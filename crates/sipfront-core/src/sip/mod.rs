//! SIP messages (RFC 3261 §7, §18, §20, §25): our own zero-copy parser over
//! [`bytes`], typed header views, stream framing, and message builders.
//! No I/O.
//!
//! * [`Message::parse`] indexes one message: start line plus header name and
//!   value ranges into one buffer, names resolved once (compact forms too),
//!   folding and bare LF accepted, the size cap checked before any work.
//! * Typed views ([`Via`], [`NameAddr`], [`Uri`], [`CSeq`],
//!   [`DigestCredentials`]) are parsed lazily from those ranges and borrow
//!   from the buffer.
//! * [`framing::check`] cuts messages out of a TCP stream by Content-Length.
//! * [`build`] writes responses, ACK/CANCEL and requests from typed values.
//! * [`Message::as_bytes`] re-emits a received message byte-exact.
//!
//! ```
//! use sipfront_core::sip::{build, Bytes, Message, Method, StatusCode};
//!
//! let req = Message::parse(Bytes::from_static(
//!     b"OPTIONS sip:gw.example.com SIP/2.0\r\n\
//!       v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK77;rport\r\n\
//!       f: <sip:ping@192.0.2.1>;tag=a1\r\n\
//!       t: <sip:gw.example.com>\r\n\
//!       i: c1@192.0.2.1\r\n\
//!       CSeq: 7 OPTIONS\r\n\
//!       l: 0\r\n\r\n",
//! ))?;
//! assert_eq!(req.method(), Some(&Method::Options));
//! let via = req.top_via()?;
//! assert_eq!(via.branch(), Some("z9hG4bK77"));
//! assert_eq!(via.rport(), Some(None)); // flag present, to be filled in
//! assert_eq!(req.from()?.tag(), Some("a1"));
//!
//! let resp = build::ResponseBuilder::new(&req, StatusCode::OK)
//!     .to_tag("9fxced76sl")
//!     .header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")
//!     .build();
//! let resp = Message::parse(resp)?;
//! assert_eq!(resp.status(), Some(StatusCode::OK));
//! assert!(resp.to()?.tag().is_some());
//! # Ok::<(), sipfront_core::sip::ParseError>(())
//! ```
//!
//! Errors carry the answer: [`ParseError::status`] is 400, 413, 416 or 505.

pub mod auth;
pub mod build;
pub mod cseq;
mod error;
pub mod framing;
pub mod header;
mod lex;
pub mod message;
pub mod method;
pub mod name_addr;
pub mod random;
pub mod status;
mod text;
pub mod transport;
pub mod uri;
pub mod via;

pub use auth::{DigestChallenge, DigestCredentials};
pub use bytes::Bytes;
pub use cseq::CSeq;
pub use error::ParseError;
pub use framing::{Frame, FrameError};
pub use header::HeaderName;
pub use lex::{ParamIter, Params};
pub use message::{Message, MAX_HEADERS};
pub use method::Method;
pub use name_addr::{Contact, NameAddr};
pub use status::StatusCode;
pub use transport::Transport;
pub use uri::{Host, Scheme, Uri};
pub use via::{SentBy, Via};

/// Hard cap on one message, checked before any parsing work (64 KiB).
pub const MAX_MESSAGE_SIZE: usize = 65_536;
