//! The session table: the single owner of active calls (ARCHITECTURE.md,
//! "one owner per fact"). Every message finds its call with one `HashMap`
//! lookup: in-dialog requests and ACKs by (Call-ID, our tag) of either leg
//! (RFC 3261 §12: the dialog id as seen by us), responses by the key of the
//! client transaction we sent (§17.1.3), CANCEL by the INVITE server
//! transaction it cancels (§9.2).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use smallvec::SmallVec;

use super::call::Call;
use super::leg::Side;
use crate::sip::Message;
use crate::transaction::TransactionKey;

/// Internal id of one call.
pub(crate) type CallId = u64;

/// A dialog as we see it: its Call-ID and our own tag on that leg, kept
/// as one buffer `call-id NUL tag` (neither can hold a NUL: the parser
/// refuses it in a head, and we mint ours) so that a received message is
/// looked up from borrowed parts, without allocating a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DialogKey(Box<[u8]>);

/// The bytes of a dialog key, on the stack for the usual lengths.
fn dialog_bytes(call_id: &str, local_tag: &str) -> SmallVec<[u8; 96]> {
    let mut b = SmallVec::with_capacity(call_id.len() + 1 + local_tag.len());
    b.extend_from_slice(call_id.as_bytes());
    b.push(0);
    b.extend_from_slice(local_tag.as_bytes());
    b
}

impl DialogKey {
    pub(crate) fn new(call_id: &str, local_tag: &str) -> DialogKey {
        DialogKey(dialog_bytes(call_id, local_tag).as_slice().into())
    }
}

// `Borrow<[u8]>` requires the key to hash exactly as its bytes do.
impl Hash for DialogKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Borrow<[u8]> for DialogKey {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// Why we sent a client transaction: what to do with its responses.
#[derive(Clone, Debug)]
pub(crate) enum Purpose {
    /// The B-leg INVITE of fail-over attempt number `attempt`.
    Invite {
        /// Index into the call's upstream plan.
        attempt: usize,
    },
    /// A CANCEL we sent (its response needs no action).
    Cancel,
    /// A BYE we originated (its response needs no action).
    Bye,
    /// A NOTIFY of a transfer's progress to the referrer (RFC 3515): the
    /// final one's answer ends the referrer's leg.
    Notify,
    /// The re-INVITE that bridges a transferred party to its new call.
    Bridge,
    /// The offerless re-INVITE asking an attended transfer's far party
    /// for a fresh offer (RFC 3725 §4.1).
    Offer,
    /// A session refresh we originated on this leg (RFC 4028 §10).
    Refresh(Side),
    /// A PRACK we originated for an upstream's reliable 18x (RFC 3262 §4).
    Prack,
    /// A request relayed from another leg (boxed: most entries are INVITE
    /// attempts and BYEs, which need a few bytes).
    Relay(Box<Relay>),
}

/// A request relayed from leg `from`; its response goes back on `server`.
#[derive(Clone, Debug)]
pub(crate) struct Relay {
    /// The leg the original request came from.
    pub(crate) from: Side,
    /// Its server transaction.
    pub(crate) server: TransactionKey,
    /// The original request (to build the response).
    pub(crate) request: Message,
}

/// All calls, with the three indexes that find them.
#[derive(Debug, Default)]
pub(crate) struct SessionTable {
    pub(crate) calls: HashMap<CallId, Call>,
    pub(crate) dialogs: HashMap<DialogKey, CallId>,
    pub(crate) clients: HashMap<TransactionKey, (CallId, Purpose)>,
    pub(crate) invites: HashMap<TransactionKey, CallId>,
    next: CallId,
}

impl SessionTable {
    /// Inserts a call and indexes both legs and the A-leg INVITE.
    pub(crate) fn insert(&mut self, call: Call) -> CallId {
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        self.dialogs.insert(call.dialog_key(Side::A), id);
        self.dialogs.insert(call.dialog_key(Side::B), id);
        self.invites.insert(call.a_invite_key().clone(), id);
        self.calls.insert(id, call);
        id
    }

    /// Removes a call and its dialog and INVITE indexes. Client transaction
    /// entries go when their transactions terminate.
    pub(crate) fn remove(&mut self, id: CallId) -> Option<Call> {
        let call = self.calls.remove(&id)?;
        // A leg handed over to a transfer's new call is indexed to it now.
        for side in [Side::A, Side::B] {
            let key = call.dialog_key(side);
            if self.dialogs.get(&key) == Some(&id) {
                self.dialogs.remove(&key);
            }
        }
        self.invites.remove(call.a_invite_key());
        Some(call)
    }

    /// The call and leg of the dialog (`call_id`, our `local_tag`).
    pub(crate) fn find_dialog(&self, call_id: &str, local_tag: &str) -> Option<(CallId, Side)> {
        let key = dialog_bytes(call_id, local_tag);
        let id = *self.dialogs.get(key.as_slice())?;
        let call = self.calls.get(&id)?;
        // Compared part by part: a NUL inside a Replaces' Call-ID (`%00`)
        // must not make another split of the same bytes match.
        [Side::A, Side::B]
            .into_iter()
            .find(|&side| call.is_dialog(side, call_id, local_tag))
            .map(|side| (id, side))
    }
}
