//! Differential fuzz target: where rsip accepts a message (CRLF-only head,
//! one value in the first Via header) and we accept it too, both must agree
//! on method, Request-URI, Call-ID, CSeq and top Via branch. See
//! tests/rsip_oracle.rs for why the other cases are not comparable.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rsip::prelude::*;
use sipfront::sip::{HeaderName, Message};

fuzz_target!(|data: &[u8]| {
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = &data[..head_end];
    if head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
    {
        return;
    }
    let Ok(theirs) = rsip::SipMessage::try_from(data) else {
        return;
    };
    let Ok(ours) = Message::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let (Ok(cid), Ok(cseq), Ok(via)) = (
        theirs.call_id_header(),
        theirs.cseq_header(),
        theirs.via_header(),
    ) else {
        return;
    };
    let (Ok(cseq), Ok(via)) = (cseq.typed(), via.typed()) else {
        return;
    };
    // Methods are case-sensitive (RFC 3261 §7.1): we keep `INVItE` as an
    // unknown method, rsip folds it into INVITE. Compare ignoring case.
    let same_method = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if let rsip::SipMessage::Request(r) = &theirs {
        let m = ours.method().map(|m| m.to_string()).unwrap_or_default();
        assert!(same_method(&m, &r.method.to_string()), "{m} vs {}", r.method);
        // rsip re-serialises the URI, so a port written `02` comes back `2`:
        // compare the text only when our port is written canonically.
        let uri = ours.request_uri().expect("validated");
        if uri
            .port
            .is_none_or(|p| uri.as_str().contains(&format!(":{p}")))
        {
            assert_eq!(
                uri.as_str().to_ascii_lowercase(),
                r.uri.to_string().to_ascii_lowercase()
            );
        }
    }
    assert_eq!(ours.call_id().ok(), Some(cid.value().trim().as_bytes()));
    let c = ours.cseq().expect("validated");
    assert_eq!(c.seq, cseq.seq);
    assert!(same_method(&c.method.to_string(), &cseq.method.to_string()));
    // rsip neither splits comma-separated Via values nor reads params after
    // SWS before ';' (it then reports no branch): compare when it found one.
    // It also cuts a branch at the first non-token character (we allow ':').
    if let Some(theirs) = via.branch() {
        let ours_branch = ours.top_via().expect("validated").branch().unwrap_or("");
        let token = ours_branch
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c));
        let comma = ours
            .header(&HeaderName::Via)
            .unwrap_or_default()
            .contains(&b',');
        if token && !comma {
            assert_eq!(ours_branch, theirs.to_string().trim());
        }
    }
});
