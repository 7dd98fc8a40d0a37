//! Dialled-number handling (SPEC §3 "rewrite", "number", "caller ID"):
//! E.164 digits without `+` (ITU-T E.164; `+` as in RFC 3966 §5.1.4 global
//! numbers is accepted and stripped).

/// Strips one leading `+`; returns the rest if it is non-empty ASCII digits.
pub fn normalize(number: &str) -> Option<&str> {
    let n = number.strip_prefix('+').unwrap_or(number);
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(n)
}

/// SPEC §3 "rewrite": deletes `cond` from the front of `number` when it is
/// there (an empty `cond` deletes nothing), then puts `prefix` in front. A
/// number that does not start with `cond` only gets `prefix`.
pub fn rewrite(number: &str, cond: &str, prefix: &str) -> String {
    let rest = number.strip_prefix(cond).unwrap_or(number);
    let mut out = String::with_capacity(prefix.len() + rest.len());
    out.push_str(prefix);
    out.push_str(rest);
    out
}
