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

/// The B2BUA's side of media requests: the queue for the shell, which
/// call each request in flight belongs to, and the core's own deadline
/// for each (a shell that never answers fails the call, never hangs it).
#[derive(Debug, Default)]
pub(crate) struct MediaQueue {
    out: std::collections::VecDeque<MediaRequest>,
    next_id: MediaRequestId,
    pending: std::collections::HashMap<MediaRequestId, InFlight>,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(std::time::Instant, MediaRequestId)>>,
}

/// One request with the shell.
#[derive(Debug)]
struct InFlight {
    call: super::table::CallId,
    deadline: std::time::Instant,
    /// (call-id, A tag) of the relay session, to delete it if the call is
    /// gone when a successful answer comes.
    key: Option<(String, String)>,
    command: MediaCommand,
}

impl MediaQueue {
    fn next_id(&self) -> MediaRequestId {
        self.next_id
    }

    /// Queues `req` of call `call` (its id was `next_id()`).
    fn push(
        &mut self,
        req: MediaRequest,
        call: super::table::CallId,
        key: Option<(String, String)>,
        deadline: std::time::Instant,
    ) {
        self.next_id = self.next_id.wrapping_add(1);
        if req.command != MediaCommand::Delete {
            self.pending.insert(
                req.id,
                InFlight {
                    call,
                    deadline,
                    key,
                    command: req.command,
                },
            );
            self.heap.push(std::cmp::Reverse((deadline, req.id)));
        }
        self.out.push_back(req);
    }

    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.heap.peek().map(|std::cmp::Reverse((at, _))| *at)
    }

    /// Requests in flight past the core's deadline at `now`.
    fn expired(&mut self, now: std::time::Instant) -> Vec<MediaRequestId> {
        let mut out = Vec::new();
        while let Some(std::cmp::Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.pending.get(&id).is_some_and(|p| p.deadline == at) {
                out.push(id);
            }
        }
        out
    }
}

impl super::B2bua {
    /// The next media request for the shell's relay client (drain after
    /// each input, with `poll_action`).
    pub fn poll_media(&mut self) -> Option<MediaRequest> {
        self.media.out.pop_front()
    }

    /// Media requests waiting for their answer.
    pub fn media_in_flight(&self) -> usize {
        self.media.pending.len()
    }

    /// The relay's answer to a request from [`poll_media`](Self::poll_media):
    /// the call it holds goes on (or fails with `503`).
    pub fn handle_media(&mut self, result: MediaResult, now: std::time::Instant) {
        let Some(p) = self.media.pending.remove(&result.id) else {
            return; // answered late, after the core's deadline
        };
        if !self.table.calls.contains_key(&p.call) {
            // The call left the table meanwhile: a session the answer
            // created must not outlive it.
            if let (Some((call_id, tag)), Ok(_), MediaCommand::Offer) =
                (p.key, &result.outcome, p.command)
            {
                let id = self.media.next_id();
                let req = super::call::delete_request(id, &call_id, &tag);
                self.media.push(req, p.call, None, now);
            }
            return;
        }
        self.with_call(p.call, now, |call, fx| call.media_result(result, fx));
        self.media_pump(p.call, now);
    }

    /// Fails the media requests the shell has not answered in time.
    pub(crate) fn media_timeouts(&mut self, now: std::time::Instant) {
        for id in self.media.expired(now) {
            self.handle_media(
                MediaResult {
                    id,
                    outcome: Err(MediaError::Timeout),
                },
                now,
            );
        }
    }

    /// The earliest media deadline.
    pub(crate) fn media_poll_timeout(&self) -> Option<std::time::Instant> {
        self.media.poll_timeout()
    }

    /// Hands `held` to relayed call `id` through its media queue.
    pub(crate) fn media_input(
        &mut self,
        id: super::table::CallId,
        held: super::call::Held,
        now: std::time::Instant,
    ) {
        self.with_call(id, now, |call, _| call.media_hold(held));
        self.media_pump(id, now);
    }

    /// Lets call `id` go on with its queued messages; a message that needs
    /// the relay becomes a request.
    pub(crate) fn media_pump(&mut self, id: super::table::CallId, now: std::time::Instant) {
        let next = self.media.next_id();
        let mut req = None;
        self.with_call(id, now, |call, fx| req = call.media_pump(next, fx));
        if let Some(req) = req {
            let key = self.table.calls.get(&id).and_then(|c| c.media_key());
            let deadline = now + self.cfg.media_timeout;
            self.media.push(req, id, key, deadline);
        }
    }

    /// Queues the `delete` of an ended call's relay session (from
    /// `run_call`, after every input).
    pub(crate) fn media_queue_delete(
        media: &mut MediaQueue,
        call: &mut super::call::Call,
        id: super::table::CallId,
        now: std::time::Instant,
    ) {
        if let Some(req) = call.media_delete(media.next_id()) {
            media.push(req, id, None, now);
        }
    }
}
