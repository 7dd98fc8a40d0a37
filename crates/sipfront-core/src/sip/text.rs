//! Scratch text for the message builders ([`super::build`]): every owned
//! value a builder is given lives in one growing buffer instead of a
//! `String` each (one allocation per message, not one per header), and
//! numbers are written without a heap `String`.

use bytes::{BufMut, BytesMut};

/// A range of an [`Arena`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Piece {
    start: u32,
    end: u32,
}

/// Owned text pieces in one buffer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Arena {
    text: String,
}

impl Arena {
    /// Copies `s` in. The first piece reserves room for a typical message's
    /// worth of values, so the buffer rarely grows again.
    pub(crate) fn push(&mut self, s: &str) -> Piece {
        if self.text.capacity() == 0 {
            self.text.reserve(s.len().max(256));
        }
        let start = self.text.len();
        self.text.push_str(s);
        // A builder holds far less than 4 GiB; saturate rather than wrap.
        let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Piece {
            start: at(start),
            end: at(self.text.len()),
        }
    }

    /// The text of `p` (empty if `p` is not from this arena).
    pub(crate) fn get(&self, p: Piece) -> &str {
        self.text
            .get(p.start as usize..p.end as usize)
            .unwrap_or_default()
    }
}

/// Writes `n` in decimal.
pub(crate) fn put_u64(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            // n % 10 < 10
            #[allow(clippy::cast_possible_truncation)]
            let digit = (n % 10) as u8;
            *d = b'0' + digit;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.put_slice(digits.get(i..).unwrap_or_default());
}

/// `fmt::Write` into a message buffer with CR/LF replaced by SP, so no
/// formatted value can end a header line (header injection guard).
pub(crate) struct Clean<'a>(pub(crate) &'a mut BytesMut);

impl std::fmt::Write for Clean<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let b = s.as_bytes();
        if !b.iter().any(|&c| c == b'\r' || c == b'\n') {
            self.0.put_slice(b);
        } else {
            for &c in b {
                self.0
                    .put_u8(if c == b'\r' || c == b'\n' { b' ' } else { c });
            }
        }
        Ok(())
    }
}

/// The dotted-quad text of `a` (what `Ipv4Addr`'s `Display` writes),
/// without the formatting machinery: addresses go into every transaction
/// key and every response's Via, and `Display` cost ~400 instructions
/// each (5 % of a call's).
pub(crate) fn ipv4(a: std::net::Ipv4Addr, buf: &mut [u8; 15]) -> &str {
    let mut n = 0;
    for (i, o) in a.octets().into_iter().enumerate() {
        let mut put = |b: u8| {
            if let Some(slot) = buf.get_mut(n) {
                *slot = b;
                n += 1;
            }
        };
        if i > 0 {
            put(b'.');
        }
        if o >= 100 {
            put(b'0' + o / 100);
        }
        if o >= 10 {
            put(b'0' + o / 10 % 10);
        }
        put(b'0' + o % 10);
    }
    std::str::from_utf8(buf.get(..n).unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_and_numbers() {
        let mut a = Arena::default();
        let x = a.push("alpha");
        let y = a.push("");
        let z = a.push("beta");
        assert_eq!((a.get(x), a.get(y), a.get(z)), ("alpha", "", "beta"));
        for n in [0u64, 7, 10, 4711, u64::from(u32::MAX), u64::MAX] {
            let mut out = BytesMut::new();
            put_u64(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
    }

    #[test]
    fn ipv4_text_is_display() {
        use std::net::Ipv4Addr;
        for a in [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(10, 99, 100, 255),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(1, 20, 109, 9),
        ] {
            assert_eq!(ipv4(a, &mut [0; 15]), a.to_string());
        }
    }
}
