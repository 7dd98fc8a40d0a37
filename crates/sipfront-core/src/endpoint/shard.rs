//! Which core shard owns a message: a pure function of its raw bytes, run
//! by the shell before anything is parsed (issue 17 goal 2, ARCHITECTURE.md
//! "One core per CPU").
//!
//! Every message of a transaction and of a dialog carries the same Call-ID
//! (RFC 3261 §8.1.1.4, §12), so the Call-ID alone decides:
//! * a Call-ID sipfront minted (B-leg, keep-alive and health OPTIONS,
//!   upstream registrations, transfer calls) starts with the mark of the
//!   shard that minted it (`sf03-…`, [`shard_mark`]): its answers go back
//!   there without a lookup;
//! * any other Call-ID (a caller's A-leg) goes to a hash of its bytes, so
//!   every later message of that call (ACK, CANCEL, re-INVITE, BYE, the
//!   responses to our in-dialog requests) lands on the same shard;
//! * a message whose Call-ID cannot be found goes to shard 0, which answers
//!   it (`400`) or drops it as one core did.
//!
//! The scan reads header lines up to the blank line and stops at the
//! Call-ID (`Call-ID` or compact `i`, any case, RFC 3261 §7.3.3): no
//! allocation, no parse. Header folding of the Call-ID (obsolete, RFC 3261
//! §7.3.1) is followed one line.

use crate::sip::random::shard_mark;

/// The shard (below `shards`) that owns the message `bytes`.
pub fn of_message(bytes: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    call_id(bytes).map_or(0, |id| of_call_id(id, shards))
}

/// The shard (below `shards`) that owns the call or transaction with this
/// Call-ID: the one its mark names, else a hash of its bytes (FNV-1a).
pub fn of_call_id(call_id: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    if let Some(n) = shard_mark(call_id).map(usize::from) {
        if n < shards {
            return n;
        }
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in call_id {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The high bits mix best; `shards` is at most 64.
    usize::try_from((h >> 32) % shards as u64).unwrap_or(0)
}

/// The Call-ID value of the raw message `bytes`, trimmed, if its header
/// section has one.
pub fn call_id(bytes: &[u8]) -> Option<&[u8]> {
    let mut lines = bytes.split(|&b| b == b'\n').map(trim_cr).skip(1).peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            return None; // end of the header section
        }
        let Some(value) = call_id_value(line) else {
            continue;
        };
        let value = trim(value);
        if !value.is_empty() {
            return Some(value);
        }
        // Folded onto the next line.
        return lines
            .next_if(|l| l.first().is_some_and(|&c| c == b' ' || c == b'\t'))
            .map(trim)
            .filter(|v| !v.is_empty());
    }
    None
}

/// The text after the colon when `line` is a Call-ID header line.
fn call_id_value(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = trim(line.get(..colon)?);
    let is_call_id = name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i");
    is_call_id.then(|| line.get(colon + 1..)).flatten()
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::random::Random;

    #[test]
    fn finds_the_call_id_in_its_forms() {
        let cases: [(&[u8], Option<&[u8]>); 8] = [
            (
                b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nCall-ID: abc@h\r\n\r\n",
                Some(b"abc@h"),
            ),
            (b"SIP/2.0 200 OK\r\ncall-id:abc@h \r\n\r\n", Some(b"abc@h")),
            (b"BYE sip:a SIP/2.0\r\ni :\tabc\r\n\r\n", Some(b"abc")),
            (b"BYE sip:a SIP/2.0\nI: abc\n\n", Some(b"abc")),
            (
                b"BYE sip:a SIP/2.0\r\nCall-ID:\r\n  abc\r\n\r\n",
                Some(b"abc"),
            ),
            // Only in the body, or no value: not found.
            (
                b"MESSAGE sip:a SIP/2.0\r\nTo: x\r\n\r\nCall-ID: body\r\n",
                None,
            ),
            (b"BYE sip:a SIP/2.0\r\nCall-ID: \r\nTo: x\r\n\r\n", None),
            // The start line is never a header.
            (b"Call-ID: x\r\n\r\n", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(call_id(bytes), want, "{}", String::from_utf8_lossy(bytes));
        }
        // Not confused by look-alike names.
        assert_eq!(
            call_id(b"OPTIONS sip:a SIP/2.0\r\nCall-Info: x\r\nId: y\r\ni: z\r\n\r\n"),
            Some(&b"z"[..])
        );
    }

    #[test]
    fn minted_call_ids_go_to_their_shard_others_spread_and_stay_put() {
        for shards in [2, 4, 64] {
            for n in 0..shards {
                let mut r = Random::from_seed([9; 32]).with_shard(n as u8);
                let id = r.call_id("127.0.0.1");
                let msg = format!("SIP/2.0 180 Ringing\r\nCall-ID: {id}\r\n\r\n");
                assert_eq!(of_message(msg.as_bytes(), shards), n);
            }
        }
        // A mark beyond the shards: hashed like any other Call-ID.
        assert!(of_call_id(b"sf09-x", 4) < 4);
        let mut seen = [0usize; 4];
        for i in 0..400 {
            let id = format!("{i}-caller@10.0.0.1");
            let s = of_call_id(id.as_bytes(), 4);
            assert_eq!(s, of_call_id(id.as_bytes(), 4), "deterministic");
            seen[s] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "spread: {seen:?}");
        // Nothing to go by, or one shard: shard 0.
        assert_eq!(of_message(b"\r\n\r\n", 4), 0);
        assert_eq!(of_message(b"garbage", 4), 0);
        assert_eq!(of_message(b"BYE x SIP/2.0\r\nCall-ID: a\r\n\r\n", 1), 0);
    }
}
