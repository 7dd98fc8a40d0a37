//! REGISTER at the endpoint: digest (`401` challenge, `403` for wrong
//! credentials, RFC 3261 §22.2), then the [`Registrar`](crate::registrar::Registrar)
//! for the trunk the credentials name, answered through the request's
//! server transaction.

use std::time::Instant;

use super::Endpoint;
use crate::auth::TrunkId;
use crate::sip::build::ResponseBuilder;
use crate::sip::{Message, StatusCode};
use crate::transaction::TransactionKey;
use crate::transport::Inbound;

impl Endpoint {
    /// Answers one new REGISTER (retransmissions never get here).
    pub(super) fn handle_register(
        &mut self,
        msg: &Message,
        key: TransactionKey,
        inbound: &Inbound,
        now: Instant,
    ) {
        let peer = inbound.peer;
        let now_unix = self.cfg.b2bua.wall.unix_secs(now);
        let admission = self.b2bua.admission().clone();
        let auth = admission.auth();
        let (status, headers, reason) = match auth.verify_request(msg, peer.ip(), now_unix) {
            Err(e) => {
                self.auth_outcome(peer.ip(), Err(e), now);
                let headers = auth.rejection_headers_for(&e, msg, peer.ip(), now_unix);
                if e.challenge_kind().is_some() {
                    tracing::debug!(%peer, "REGISTER challenged: {e}");
                } else {
                    tracing::info!(%peer, "REGISTER refused: {e}");
                }
                (e.status(), headers, None)
            }
            Ok(TrunkId(id)) => match admission.trunk(id).inspect(|_| {
                self.auth_outcome(peer.ip(), Ok(()), now);
            }) {
                // Cannot happen within one snapshot; refuse as unknown.
                None => (StatusCode::FORBIDDEN, Vec::new(), None),
                Some(trunk) => {
                    let out = self.registrar.register(
                        msg,
                        trunk.login(),
                        peer,
                        inbound.transport,
                        inbound.conn,
                        now,
                    );
                    if !out.status.is_success() {
                        let why = out
                            .reason
                            .clone()
                            .unwrap_or_else(|| out.status.canonical_reason().to_owned());
                        tracing::info!(
                            %peer,
                            login = trunk.login(),
                            status = out.status.as_u16(),
                            "REGISTER refused: {why}"
                        );
                    }
                    (out.status, out.headers, out.reason)
                }
            },
        };
        let mut b = ResponseBuilder::new(msg, status)
            .received(peer)
            .to_tag(&self.rng.tag())
            .server(&self.cfg.server_header);
        if let Some(r) = &reason {
            b = b.reason(r);
        }
        for (name, value) in &headers {
            b = b.header(name, value);
        }
        self.stats.count_answer(status);
        // The 401 too is kept for Timer J (not sent statelessly, as RFC
        // 3261 §26.3.2.4 would allow): a UA, or SIPp, that retransmits its
        // first REGISTER under load must get the same challenge again, not
        // a new nonce and To tag it takes for an unexpected response.
        self.txns.respond(&key, b.build(), status, now);
    }
}
