//! Media anchoring requests (SPEC §8.4): what a relayed call asks of the
//! media relay, and the answer the shell hands back.
//!
//! The core never talks to rtpengine. A call whose trunk or upstream says
//! `media = "relay"` emits a [`MediaRequest`] (the SDP of an offer or an
//! answer, or the end of the session) and holds the SIP message that
//! carried it until the matching [`MediaResult`] comes back as an input,
//! exactly as a timer would. The shell's ng client (rtpengine's control
//! protocol) picks the rtpengine, retries, fails over and answers.
//!
//! One rtpengine call per sipfront call, as rtpengine expects from a
//! B2BUA: its call-id is the A-leg Call-ID; each side of the call is one
//! rtpengine "monologue", labelled by a tag: the caller's From tag for the
//! A-leg, the far end's To tag (or our B-leg tag before it answered) for
//! the B-leg. The side that offers is `from-tag`, the side that answers
//! `to-tag`, whichever leg that is (a re-INVITE from the callee offers
//! from the B side), as Kamailio's `rtpengine_manage()` sends it.

use std::net::IpAddr;

use bytes::Bytes;

/// Identifies one media request within a core shard: the answer carries
/// it back.
pub type MediaRequestId = u64;

/// What the relay is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaCommand {
    /// An SDP offer (RFC 3264 §5) to rewrite: `offer`.
    Offer,
    /// An SDP answer (RFC 3264 §6) to rewrite: `answer`.
    Answer,
    /// The call is over: `delete`.
    Delete,
}

impl MediaCommand {
    /// The ng command name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaCommand::Offer => "offer",
            MediaCommand::Answer => "answer",
            MediaCommand::Delete => "delete",
        }
    }
}

/// One request for the media relay, from the core to the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRequest {
    /// Echoed in the [`MediaResult`].
    pub id: MediaRequestId,
    /// Offer, answer or delete.
    pub command: MediaCommand,
    /// The relay's call-id: the A-leg Call-ID.
    pub call_id: String,
    /// The offering side's label (for `delete`: the caller's).
    pub from_tag: String,
    /// The answering side's label (absent on a first offer).
    pub to_tag: Option<String>,
    /// The SDP to rewrite (empty for `delete`).
    pub sdp: Bytes,
    /// The SIP source address of a side that may sit behind NAT (a
    /// trunk's phone or PBX): its media address is taken from here, not
    /// from the SDP (rtpengine `SIP-source-address`, `received-from`).
    /// `None`: the SDP's address is trusted (a carrier).
    pub nat_source: Option<IpAddr>,
    /// The first request of the call's session: the shell may try the next
    /// rtpengine when one does not answer. Later requests go to the
    /// rtpengine that holds the session.
    pub new_session: bool,
}

/// The shell's answer to a [`MediaRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaResult {
    /// The request's id.
    pub id: MediaRequestId,
    /// The rewritten SDP (empty for `delete`) and the relay that did it,
    /// or why no relay could.
    pub outcome: Result<MediaAnswer, MediaError>,
}

/// A relay's rewrite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaAnswer {
    /// The SDP to send on instead (empty for `delete`).
    pub sdp: Bytes,
    /// The relay that holds the session (`ip:port` of its ng socket), for
    /// `/v1/calls`.
    pub relay: String,
}

/// Why a media request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// No rtpengine answered within its timeout (every one was tried for a
    /// new session).
    #[error("no rtpengine answered ({0})")]
    Unreachable(String),
    /// An rtpengine answered with an error.
    #[error("rtpengine refused: {0}")]
    Refused(String),
    /// No `[media] rtpengine` is configured.
    #[error("no [media] rtpengine configured")]
    NotConfigured,
    /// The core gave up waiting (the shell never answered).
    #[error("no answer from the media client in time")]
    Timeout,
}
