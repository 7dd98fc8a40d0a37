//! sipfront: a SIP signalling edge proxy and B2BUA for trunk termination.
//!
//! This crate is the thin tokio shell (`transport`, `control`, `store`, `cdr`
//! writer, `events` dispatch, `dns`, `main.rs`) around the sans-IO core, the
//! `sipfront-core` crate (`sip`, `transaction`, `auth`, `policy`, `routing`,
//! `registrar`, `b2bua`, `endpoint`, `config`). The core's modules are
//! re-exported here so `sipfront::sip::…` paths work as before.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod capture;
pub mod cdr;
pub mod cluster;
pub mod control;
pub mod dns;
pub mod events;
pub mod media;
pub mod notify;
pub mod store;
pub mod transport;

pub use sipfront_core::{
    auth, b2bua, config, endpoint, policy, registrar, routing, sip, transaction,
};
