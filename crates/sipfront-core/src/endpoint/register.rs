//! REGISTER at the endpoint: digest (`401` challenge, `403` for wrong
//! credentials, RFC 3261 §22.2), then the [`Registrar`](crate::registrar::Registrar)
//! for the trunk the credentials name, answered through the request's
//! server transaction; a challenge over UDP is answered without one and
//! remembered instead (see `challenges`).

use std::time::Instant;

use super::challenges::Challenge;
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
        // Over UDP a challenge holds no transaction (see `challenges`).
        let mut stateless = None;
        let (status, headers, reason) = match auth.verify_request(msg, peer.ip(), now_unix) {
            Err(e) => {
                self.auth_outcome(peer.ip(), Err(e), now);
                let headers = if e.challenge_kind().is_none() {
                    tracing::info!(%peer, "REGISTER refused: {e}");
                    Vec::new()
                } else if inbound.transport.is_reliable() {
                    tracing::debug!(%peer, "REGISTER challenged: {e}");
                    auth.rejection_headers_for(&e, msg, peer.ip(), now_unix)
                } else {
                    tracing::debug!(%peer, "REGISTER challenged: {e}");
                    let rng = &mut self.rng;
                    let c = self.challenges.get_or_insert(&key, now, || {
                        Challenge::new(auth.nonce_seed(now_unix), rng.next_u64())
                    });
                    stateless = Some(c.tag());
                    auth.rejection_headers_seeded(&e, msg, peer.ip(), c.seed)
                };
                (e.status(), headers, None)
            }
            Ok(TrunkId(id)) => match admission.trunk(id).inspect(|_| {
                self.auth_outcome(peer.ip(), Ok(()), now);
            }) {
                // Cannot happen within one snapshot; refuse as unknown.
                None => (StatusCode::FORBIDDEN, Vec::new(), None),
                Some(trunk) => {
                    let out = self.shared.registrar().register(
                        msg,
                        trunk.login(),
                        peer,
                        inbound.transport,
                        inbound.conn,
                        now,
                    );
                    self.registrar_changed();
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
        let is_stateless = stateless.is_some();
        let tag = stateless.unwrap_or_else(|| self.rng.tag());
        let mut b = ResponseBuilder::new(msg, status)
            .received(peer)
            .to_tag(&tag)
            .server(&self.cfg.server_header);
        if let Some(r) = &reason {
            b = b.reason(r);
        }
        for (name, value) in &headers {
            b = b.header(name, value);
        }
        self.stats.count_answer(status);
        if is_stateless {
            // A retransmission is a new request here, and gets the same
            // bytes: same nonce, same To tag.
            self.txns.respond_stateless(&key, b.build(), status, now);
        } else {
            self.txns.respond(&key, b.build(), status, now);
        }
    }
}
