//! Parser test helpers: the corpus on disk and "touch every accessor".

use sipfront::sip::framing;
use sipfront::sip::Message;
use std::path::{Path, PathBuf};

/// Calls every accessor; used to prove none panics on accepted input.
pub fn touch_everything(m: &Message) {
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
        let _ = m.header_unfolded(&name);
        let _ = (m.header(&name), value.len());
    }
    assert_eq!(m.as_bytes().len(), m.head_len() + m.body().len());
}

/// Parses arbitrary bytes and, when they parse, calls every accessor; also
/// runs stream framing over them. Must never panic.
pub fn exercise(bytes: &[u8]) {
    for max in [0, 16, 1024, 65_536] {
        let _ = framing::check(bytes, max);
    }
    if let Ok(m) = Message::parse(bytes::Bytes::copy_from_slice(bytes)) {
        touch_everything(&m);
        assert!(
            bytes.starts_with(m.as_bytes()),
            "re-emission must be a prefix of the input"
        );
    }
}

/// Every message file of the corpus, (name, bytes), sorted by name.
pub fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            name.ends_with(".sip")
                .then(|| (name, std::fs::read(e.path()).expect("read corpus file")))
        })
        .collect();
    out.sort();
    out
}
