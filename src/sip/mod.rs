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
pub mod status;
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
