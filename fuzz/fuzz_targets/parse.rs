//! Fuzz target: `Message::parse`, every accessor on whatever parses, and
//! stream framing. Any panic is a bug (ARCHITECTURE.md principle 5).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sipfront::sip::framing::{self, Frame};
use sipfront::sip::Message;

fn touch(m: &Message) {
    let _ = (
        m.is_request(),
        m.method(),
        m.request_uri(),
        m.status(),
        m.reason(),
    );
    let _ = (
        m.call_id(),
        m.cseq(),
        m.max_forwards(),
        m.content_length(),
        m.body(),
    );
    let _ = (
        m.content_type(),
        m.expires(),
        m.head_len(),
        m.header_count(),
    );
    if let Ok(v) = m.top_via() {
        let _ = (
            v.branch(),
            v.received(),
            v.rport(),
            v.sent_by(),
            v.maddr(),
            v.ttl(),
        );
        let _ = (v.is_rfc3261_branch(), v.transport_kind());
    }
    for v in m.vias().flatten() {
        let _ = v.params.iter().count();
    }
    for n in [m.from(), m.to()].into_iter().flatten() {
        let _ = (
            n.tag(),
            n.display_unescaped(),
            n.expires(),
            n.q(),
            n.instance(),
        );
        let _ = (
            n.uri.params.iter().count(),
            n.uri.host.ip(),
            n.uri.tel_number(),
        );
    }
    for c in m.contacts().flatten() {
        if let Some(a) = c.addr() {
            let _ = (a.q(), a.expires(), a.uri.transport_param());
        }
    }
    let _ = m.routes().count() + m.record_routes().count();
    let _ = (m.authorization(), m.proxy_authorization());
    let _ = (m.www_authenticate(), m.proxy_authenticate());
    for (name, value) in m.all_headers() {
        let _ = (m.header_unfolded(&name), m.header(&name), value.len());
    }
    assert_eq!(m.as_bytes().len(), m.head_len() + m.body().len());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(Bytes::copy_from_slice(data)) {
        touch(&m);
        assert!(data.starts_with(m.as_bytes()));
    }
    // Framing must never claim more bytes than it was given.
    let mut rest = data;
    for _ in 0..64 {
        match framing::check(rest, 65_536) {
            Ok(Frame::KeepAlive(n)) | Ok(Frame::Message(n)) => {
                assert!(n > 0 && n <= rest.len());
                if let Some(r) = rest.get(n..) {
                    rest = r;
                }
            }
            Err(_) => break,
        }
    }
});
