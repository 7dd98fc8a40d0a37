//! sipfront: a SIP signalling edge proxy and B2BUA for trunk termination.
//!
//! The crate is a sans-IO core (`sip`, `transaction`, `auth`, `policy`,
//! `routing`, `b2bua`, `endpoint`) wrapped by a thin tokio shell
//! (`transport`, `main.rs`). See ARCHITECTURE.md in the shared
//! folder for the layering; dependencies point down this list.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod auth;
pub mod b2bua;
pub mod cdr;
pub mod config;
pub mod control;
pub mod dns;
pub mod endpoint;
pub mod events;
pub mod media;
pub mod policy;
pub mod registrar;
pub mod routing;
pub mod sip;
pub mod store;
pub mod transaction;
pub mod transport;
