//! sipfront-core: the sans-IO core of sipfront, a SIP signalling edge proxy
//! and B2BUA for trunk termination.
//!
//! Every protocol state machine lives here as plain Rust: a message, a timer
//! or a shell answer goes in with the current time, transmissions and records
//! come out. The crate depends on no async runtime, database, HTTP or DNS
//! client, so the compiler keeps it free of I/O; the `sipfront` crate is the
//! tokio shell around it. Layers, dependencies pointing down this list:
//! `sip`, `transaction`, `auth`, `policy`, `routing`, `registrar`, `b2bua`,
//! `endpoint`; `config` is the parsed and validated configuration value and
//! `transport` the plain types the shell's sockets exchange with the core.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod auth;
pub mod b2bua;
pub mod config;
pub mod endpoint;
pub mod policy;
pub mod registrar;
pub mod routing;
pub mod sip;
pub mod transaction;
pub mod transport;
