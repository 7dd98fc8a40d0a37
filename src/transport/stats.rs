//! Counters of the socket layer and their `/metrics` lines (Prometheus text
//! format 0.0.4). Updated with relaxed atomics from every socket task; read
//! only when `/metrics` is asked for.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::endpoint::metric;

/// Counters of the socket layer, exported by `/metrics`
/// ([`TransportStats::write_metrics`]).
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Datagrams received.
    pub udp_received: AtomicU64,
    /// Datagrams sent.
    pub udp_sent: AtomicU64,
    /// Datagrams that met a full socket send buffer (`EWOULDBLOCK`/`ENOBUFS`)
    /// and were queued to be sent when the socket is writable again.
    pub udp_send_queued: AtomicU64,
    /// Datagrams dropped because the send retry queue was full (left to the
    /// transaction layer's retransmissions, RFC 3261 §17.1.1.2).
    pub udp_send_queue_dropped: AtomicU64,
    /// Stream messages received.
    pub tcp_received: AtomicU64,
    /// Stream messages queued for sending.
    pub tcp_sent: AtomicU64,
    /// Stream messages queued while their connection's writer was behind
    /// (the socket would block): they wait, they do not fail.
    pub tcp_write_queued: AtomicU64,
    /// Stream messages refused because their connection already had
    /// `tcp_write_queue_bytes` waiting (a peer that stopped reading).
    pub tcp_write_queue_full: AtomicU64,
    /// TCP connections accepted.
    pub tcp_accepted: AtomicU64,
    /// TCP connections closed at once: their IP already had the most allowed.
    pub tcp_refused_per_ip: AtomicU64,
    /// TCP connections we opened.
    pub tcp_connected: AtomicU64,
    /// Streams closed for a framing error or an oversize message.
    pub tcp_framing_errors: AtomicU64,
    /// WebSocket upgrades accepted (RFC 7118 §4, subprotocol `sip`).
    pub ws_upgrades_accepted: AtomicU64,
    /// WebSocket upgrades refused: no `sip` subprotocol, not an upgrade
    /// request, or not completed within the deadline.
    pub ws_upgrades_refused: AtomicU64,
    /// SIP messages received over WebSocket.
    pub ws_received: AtomicU64,
    /// SIP messages queued for sending over WebSocket.
    pub ws_sent: AtomicU64,
    /// WebSocket connections closed for an oversize or slow message or a
    /// protocol error.
    pub ws_protocol_errors: AtomicU64,
    /// RFC 5626 double-CRLF pings answered.
    pub keepalive_pongs: AtomicU64,
    /// Inbound messages dropped because the core's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Datagrams dropped for being larger than `max_message`.
    pub dropped_too_large: AtomicU64,
    /// Events (send failures, closes) dropped because the queue was full.
    pub dropped_events: AtomicU64,
    /// Sends that failed (reported to the core as transport errors).
    pub send_errors: AtomicU64,
}

impl TransportStats {
    pub(super) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the counters to a `/metrics` page.
    pub fn write_metrics(&self, m: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters: [(&str, &str, &AtomicU64); 22] = [
            (
                "sipfront_udp_received_total",
                "SIP datagrams received.",
                &self.udp_received,
            ),
            (
                "sipfront_udp_sent_total",
                "SIP datagrams sent.",
                &self.udp_sent,
            ),
            (
                "sipfront_udp_send_queued_total",
                "Datagrams that met a full socket send buffer and were queued for retry.",
                &self.udp_send_queued,
            ),
            (
                "sipfront_udp_send_queue_dropped_total",
                "Datagrams dropped because the send retry queue was full.",
                &self.udp_send_queue_dropped,
            ),
            (
                "sipfront_udp_oversize_dropped_total",
                "Datagrams dropped for exceeding the largest SIP message.",
                &self.dropped_too_large,
            ),
            (
                "sipfront_tcp_received_total",
                "SIP messages received over TCP.",
                &self.tcp_received,
            ),
            (
                "sipfront_tcp_sent_total",
                "SIP messages queued for sending over TCP.",
                &self.tcp_sent,
            ),
            (
                "sipfront_tcp_write_queued_total",
                "TCP messages that waited behind a connection's earlier writes.",
                &self.tcp_write_queued,
            ),
            (
                "sipfront_tcp_write_queue_full_total",
                "TCP messages refused: the connection's write queue was full.",
                &self.tcp_write_queue_full,
            ),
            (
                "sipfront_tcp_accepted_total",
                "TCP connections accepted.",
                &self.tcp_accepted,
            ),
            (
                "sipfront_tcp_connected_total",
                "TCP connections opened by sipfront.",
                &self.tcp_connected,
            ),
            (
                "sipfront_tcp_refused_per_ip_total",
                "TCP connections closed at once: too many from that IP.",
                &self.tcp_refused_per_ip,
            ),
            (
                "sipfront_tcp_framing_errors_total",
                "TCP connections closed for a framing error or an oversize message.",
                &self.tcp_framing_errors,
            ),
            (
                "sipfront_ws_upgrades_accepted_total",
                "WebSocket upgrades accepted (RFC 7118, subprotocol sip).",
                &self.ws_upgrades_accepted,
            ),
            (
                "sipfront_ws_upgrades_refused_total",
                "WebSocket upgrades refused: no sip subprotocol, not an upgrade, or too slow.",
                &self.ws_upgrades_refused,
            ),
            (
                "sipfront_ws_received_total",
                "SIP messages received over WebSocket.",
                &self.ws_received,
            ),
            (
                "sipfront_ws_sent_total",
                "SIP messages queued for sending over WebSocket.",
                &self.ws_sent,
            ),
            (
                "sipfront_ws_protocol_errors_total",
                "WebSocket connections closed for an oversize or slow message or a protocol error.",
                &self.ws_protocol_errors,
            ),
            (
                "sipfront_keepalive_pongs_total",
                "RFC 5626 CRLF keep-alive pings answered.",
                &self.keepalive_pongs,
            ),
            (
                "sipfront_inbound_queue_dropped_total",
                "Received messages dropped because the core's queue was full.",
                &self.dropped_queue_full,
            ),
            (
                "sipfront_transport_events_dropped_total",
                "Transport events (send failures, closes) dropped on a full queue.",
                &self.dropped_events,
            ),
            (
                "sipfront_transport_send_errors_total",
                "Sends that failed with a transport error.",
                &self.send_errors,
            ),
        ];
        for (name, help, c) in counters {
            metric(m, name, "counter", help, get(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_exported_once() {
        let s = TransportStats::default();
        TransportStats::inc(&s.udp_send_queued);
        TransportStats::inc(&s.udp_send_queued);
        let mut m = String::new();
        s.write_metrics(&mut m);
        assert!(m.contains("\nsipfront_udp_send_queued_total 2\n"), "{m}");
        assert_eq!(m.matches("# TYPE ").count(), 22);
    }
}
