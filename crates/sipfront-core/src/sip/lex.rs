//! Lexical helpers shared by the typed views (RFC 3261 §25.1 basic rules):
//! linear white space (folding included), tokens, quoted strings, comma lists
//! and `;name=value` parameter lists.
//!
//! Folded header lines keep their CRLF inside the value span; every helper here
//! treats CR and LF like SP, so typed views borrow from the buffer even when a
//! header was folded.

/// SP, HT, CR or LF: white space once folding is taken into account.
#[inline(always)]
pub(crate) fn is_lws(b: u8) -> bool {
    is(b, LWS)
}

/// Character classes, one table lookup per byte on the hot paths.
pub(crate) const TOKEN: u8 = 1;
/// SP, HT, CR, LF.
pub(crate) const LWS: u8 = 2;
/// Host name characters: alphanumeric, `-`, `.`, `_`.
pub(crate) const HOST: u8 = 4;
/// Allowed anywhere in a sip/sips/tel URI: visible ASCII or UTF-8 except `<>"`.
pub(crate) const URI: u8 = 8;
/// URI `paramchar` (RFC 3261 §25.1).
pub(crate) const URI_PARAM: u8 = 16;
/// Control characters other than HT (not allowed in a start line).
pub(crate) const CTL: u8 = 32;
/// A header parameter value character: token or `:` (bare IPv6).
pub(crate) const HDR_VALUE: u8 = 64;
/// A digit or `.`: what an IPv4 literal is made of.
pub(crate) const DIGIT_DOT: u8 = 128;

const fn class_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            c |= TOKEN;
        }
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            c |= LWS;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            c |= HOST;
        }
        if b > b' ' && b != 0x7f && !matches!(b, b'<' | b'>' | b'"') {
            c |= URI;
        }
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
                    | b'%'
                    | b'['
                    | b']'
                    | b'/'
                    | b':'
                    | b'&'
                    | b'+'
                    | b'$'
            )
        {
            c |= URI_PARAM;
        }
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            c |= CTL;
        }
        if c & TOKEN != 0 || b == b':' {
            c |= HDR_VALUE;
        }
        if b.is_ascii_digit() || b == b'.' {
            c |= DIGIT_DOT;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CLASS: [u8; 256] = class_table();

/// Whether `b` is in any of the classes in `mask`.
#[inline(always)]
pub(crate) fn is(b: u8, mask: u8) -> bool {
    CLASS[usize::from(b)] & mask != 0
}

/// Whether every byte of `s` is in class `class` (one bit): branch-free,
/// as the common answer is yes.
#[inline]
pub(crate) fn all_in(s: &[u8], class: u8) -> bool {
    s.iter().fold(class, |acc, &b| acc & CLASS[usize::from(b)]) != 0
}

/// The length of the leading run of `s` in class `host_class`, and whether
/// that run is all digits and dots (a candidate IPv4 literal).
#[inline]
pub(crate) fn run_of(s: &[u8], host_class: u8) -> (usize, bool) {
    let mut seen = DIGIT_DOT;
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        let c = CLASS[usize::from(b)];
        if c & host_class == 0 {
            break;
        }
        seen &= c;
        i += 1;
    }
    (i, seen != 0)
}

/// RFC 3261 `token` characters.
#[inline(always)]
pub(crate) fn is_token(b: u8) -> bool {
    is(b, TOKEN)
}

/// Splits at the first occurrence of an ASCII byte, dropping it.
#[inline]
pub(crate) fn split_byte(s: &str, c: u8) -> Option<(&str, &str)> {
    // Values are short: a plain loop beats memchr's dispatch here.
    let i = s.bytes().position(|b| b == c)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// Trims LWS on both ends of a byte slice.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_lws(b)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

/// Trims LWS on both ends of a str.
pub(crate) fn trim_str(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or("")
}

/// Skips leading LWS.
#[inline]
pub(crate) fn skip_lws(s: &str) -> &str {
    let i = s.bytes().position(|c| !is_lws(c)).unwrap_or(s.len());
    s.get(i..).unwrap_or("")
}

/// Splits off the leading run of token characters.
pub(crate) fn take_token(s: &str) -> (&str, &str) {
    let end = s.bytes().position(|b| !is_token(b)).unwrap_or(s.len());
    s.split_at_checked(end).unwrap_or((s, ""))
}

/// Splits a string that starts with `"` into (content without quotes, rest).
/// Backslash escapes one byte. Returns `None` when the quote is unterminated.
pub(crate) fn take_quoted(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => {
                let inner = s.get(1..i)?;
                let rest = s.get(i + 1..)?;
                return Some((inner, rest));
            }
            _ => i += 1,
        }
    }
    None
}

/// Removes quoted-pair escapes (`\x` -> `x`) from the inside of a quoted string.
pub(crate) fn unescape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\\') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Iterator over the elements of a comma-separated header value, splitting only
/// at commas outside quoted strings and `<...>`. Elements are LWS-trimmed.
#[derive(Clone, Debug)]
pub(crate) struct CommaSplit<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(value: &'a [u8]) -> Self {
        CommaSplit { rest: Some(value) }
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        if memchr::memchr3(b',', b'"', b'<', s).is_none() {
            self.rest = None;
            return Some(trim(s));
        }
        let mut in_quote = false;
        let mut in_angle = false;
        let mut i = 0;
        while let Some(&b) = s.get(i) {
            match b {
                b'\\' if in_quote => i += 1,
                b'"' => in_quote = !in_quote,
                b'<' if !in_quote => in_angle = true,
                b'>' if !in_quote => in_angle = false,
                b',' if !in_quote && !in_angle => {
                    self.rest = s.get(i + 1..);
                    return Some(trim(s.get(..i).unwrap_or_default()));
                }
                _ => {}
            }
            i += 1;
        }
        self.rest = None;
        Some(trim(s))
    }
}

/// A `;`-separated parameter list (`;name=value;flag`), validated at creation
/// so that iteration cannot fail. Names compare case-insensitively; quoted
/// values are returned without their quotes (escapes kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Params<'a> {
    raw: &'a str,
}

/// Which grammar parameter values follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grammar {
    /// Header `generic-param`: token / host / quoted-string (RFC 3261 §25.1);
    /// bare IPv6 (`received`) allows `:`.
    Header,
    /// URI `uri-parameter`: paramchar (unreserved, escaped, `[]/:&+$`).
    Uri,
}

impl Grammar {
    /// The class of value characters (token or `:` / URI `paramchar`).
    #[inline(always)]
    fn value_class(self) -> u8 {
        match self {
            Grammar::Header => HDR_VALUE,
            Grammar::Uri => URI_PARAM,
        }
    }
}

impl<'a> Params<'a> {
    /// Validates `raw` (the text after the first `;`, may be empty) as header
    /// parameters.
    #[cfg(test)]
    pub(crate) fn parse(raw: &'a str) -> Option<Params<'a>> {
        Self::parse_with(raw, Grammar::Header)
    }

    /// Validates `raw` as header parameters and, in the same pass, finds the
    /// parameter `want` (the result [`Params::get`] would give).
    pub(crate) fn parse_get(
        raw: &'a str,
        want: &str,
    ) -> Option<(Params<'a>, Option<Option<&'a str>>)> {
        let p = Params { raw };
        let mut it = ParamIter { rest: raw };
        let mut found = None;
        while !it.rest.is_empty() {
            let (name, value) = it.next_checked(Grammar::Header)?;
            if found.is_none() && name.eq_ignore_ascii_case(want) {
                found = Some(value);
            }
        }
        debug_assert_eq!(found, p.get(want), "{raw:?}");
        Some((p, found))
    }

    /// Validates `raw` as URI parameters.
    pub(crate) fn parse_uri(raw: &'a str) -> Option<Params<'a>> {
        Self::parse_with(raw, Grammar::Uri)
    }

    fn parse_with(raw: &'a str, g: Grammar) -> Option<Params<'a>> {
        let p = Params { raw };
        let mut it = ParamIter { rest: raw };
        while !it.rest.is_empty() {
            it.next_checked(g)?;
        }
        Some(p)
    }

    /// The raw text of the list, without the leading `;`.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        trim_str(self.raw).is_empty()
    }

    /// Iterates `(name, value)` pairs; `value` is `None` for flags.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.raw }
    }

    /// Looks a parameter up by name (case-insensitive).
    ///
    /// # Returns
    /// `None` if absent, `Some(None)` for a flag, `Some(Some(v))` for `name=v`.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether the parameter is present (as a flag or with a value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Iterator over a [`Params`] list.
#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    rest: &'a str,
}

impl<'a> ParamIter<'a> {
    /// Next parameter; `None` on a syntax error (only possible before validation).
    fn next_checked(&mut self, g: Grammar) -> Option<(&'a str, Option<&'a str>)> {
        let s = skip_lws(self.rest);
        let s = s.strip_prefix(';').map_or(s, skip_lws);
        let (name, after) = take_token(s);
        if name.is_empty() {
            return None;
        }
        let after = skip_lws(after);
        let (value, after) = if let Some(v) = after.strip_prefix('=') {
            let v = skip_lws(v);
            if v.starts_with('"') && g != Grammar::Uri {
                take_quoted(v).map(|(q, r)| (Some(q), r))?
            } else if v.starts_with('[') && g == Grammar::Header {
                // IPv6 reference as a host value
                let close = memchr::memchr(b']', v.as_bytes())?;
                let (val, r) = v.split_at_checked(close + 1)?;
                let inner = val.get(1..close)?;
                if !inner
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                {
                    return None;
                }
                (Some(val), r)
            } else {
                let class = g.value_class();
                let end = v.bytes().position(|b| !is(b, class)).unwrap_or(v.len());
                let (val, r) = v.split_at_checked(end)?;
                if val.is_empty() {
                    return None;
                }
                (Some(val), r)
            }
        } else {
            (None, after)
        };
        let after = skip_lws(after);
        if !(after.is_empty() || after.starts_with(';')) {
            return None;
        }
        self.rest = after;
        Some((name, value))
    }
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    /// Splits the next parameter off an already validated list: one pass
    /// that only tracks quotes, `;` and the first `=`.
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.rest.as_bytes();
        let mut i = 0;
        while b.get(i).is_some_and(|&c| c == b';' || is_lws(c)) {
            i += 1;
        }
        if i >= b.len() {
            self.rest = "";
            return None;
        }
        let start = i;
        let mut eq = None;
        let mut in_quote = false;
        while let Some(&c) = b.get(i) {
            if in_quote {
                if c == b'\\' {
                    i += 1;
                } else if c == b'"' {
                    in_quote = false;
                }
            } else if c == b'"' {
                in_quote = true;
            } else if c == b';' {
                break;
            } else if c == b'=' && eq.is_none() {
                eq = Some(i);
            }
            i += 1;
        }
        let end = i.min(b.len());
        let item = self.rest.get(start..end)?;
        self.rest = self.rest.get(end..).unwrap_or("");
        match eq {
            None => Some((trim_str(item), None)),
            Some(e) => {
                let name = trim_str(item.get(..e - start)?);
                let value = trim_str(item.get(e - start + 1..)?);
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                Some((name, Some(value)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_split_respects_quotes_and_angles() {
        let v: Vec<&[u8]> = CommaSplit::new(b"\"a, b\" <sip:x,y@h>;q=1 , <sip:z@h>").collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1], b"<sip:z@h>");
    }

    #[test]
    fn params() {
        let p = Params::parse("branch=z9hG4bK1 ; rport;received=1.2.3.4;x=\"a;b\"").unwrap();
        assert_eq!(p.get("BRANCH"), Some(Some("z9hG4bK1")));
        assert_eq!(p.get("rport"), Some(None));
        assert_eq!(p.get("x"), Some(Some("a;b")));
        assert_eq!(p.get("nope"), None);
        assert!(Params::parse("a=\"open").is_none());
        assert!(Params::parse("=x").is_none());
        assert!(Params::parse("").unwrap().is_empty());
        for raw in [
            "branch=z9hG4bK1 ; rport;received=1.2.3.4;x=\"a;b\"",
            " ; BRANCH = \"q\\\"x\" ;branch=2",
            "received=[2001:db8::1];branch;tag=x",
            "a=b\r\n ;Tag=T1",
            "",
        ] {
            for want in ["branch", "tag", "received", "x"] {
                let (p, got) = Params::parse_get(raw, want).unwrap();
                assert_eq!(got, p.get(want), "{raw:?} {want}");
            }
        }
        assert!(Params::parse_get("a=\"open", "a").is_none());
    }

    #[test]
    fn class_bits_match_their_definitions() {
        for b in 0..=255u8 {
            assert_eq!(is(b, CTL), (b < 0x20 && b != b'\t') || b == 0x7f, "{b}");
            assert_eq!(is(b, HDR_VALUE), is_token(b) || b == b':', "{b}");
            assert_eq!(is(b, DIGIT_DOT), b.is_ascii_digit() || b == b'.', "{b}");
        }
        assert!(all_in(b"", URI) && all_in(b"sip:a@b", URI) && !all_in(b"a b", URI));
        assert_eq!(run_of(b"10.0.0.1:5060", HOST), (8, true));
        assert_eq!(run_of(b"gw1.example:5", HOST), (11, false));
        assert_eq!(run_of(b":5", HOST), (0, true));
    }

    #[test]
    fn quoted() {
        assert_eq!(take_quoted("\"a\\\"b\" rest"), Some(("a\\\"b", " rest")));
        assert_eq!(unescape("a\\\"b"), "a\"b");
        assert_eq!(take_quoted("\"abc\\"), None);
    }
}
