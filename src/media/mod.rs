//! The media shell (SPEC §8.4): rtpengine's ng control protocol over UDP.
//!
//! The core asks for SDP rewrites as [`MediaRequest`](crate::b2bua::media::MediaRequest)
//! outputs; [`MediaClient`] sends them to rtpengine on its own task and
//! hands each [`MediaResult`](crate::b2bua::media::MediaResult) back to the
//! shard that asked, which resumes the call. The core never waits on it.

pub mod client;
pub mod ng;

pub use client::{MediaClient, MediaStats, ReplyTo};
