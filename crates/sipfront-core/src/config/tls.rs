//! Certificate, key and CA files named by `[[listen]]` (`transport = "tls"`)
//! and `[[upstream]] ca`: read as PEM (RFC 7468), each problem naming the
//! file, so `sipfront check` and SIGHUP reject a bad file before it is used.
//!
//! Pure file reading and DER walking, no TLS library: the shell builds its
//! rustls configuration from what [`read_identity`] and [`read_ca`] return,
//! so the files are parsed by one piece of code whether checked or served.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Which file of a TLS identity was at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFileKind {
    /// The certificate chain (`cert`).
    Cert,
    /// The private key (`key`).
    Key,
    /// Trust roots (`ca`).
    Ca,
}

impl TlsFileKind {
    /// The config key that names this file.
    pub fn key(self) -> &'static str {
        match self {
            TlsFileKind::Cert => "cert",
            TlsFileKind::Key => "key",
            TlsFileKind::Ca => "ca",
        }
    }
}

/// A certificate, key or CA file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFileError {
    /// Which of the files.
    pub kind: TlsFileKind,
    /// The file as configured.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            TlsFileKind::Cert => "certificate file",
            TlsFileKind::Key => "private key file",
            TlsFileKind::Ca => "CA file",
        };
        write!(f, "{what} `{}`: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for TlsFileError {}

/// A certificate chain and its private key, as read from PEM files.
#[derive(Debug)]
pub struct PemIdentity {
    /// The chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PrivateKeyDer<'static>,
    /// The leaf's notAfter (RFC 5280 §4.1.2.5) in Unix seconds.
    pub not_after: i64,
}

fn pem_error(kind: TlsFileKind, path: &Path, e: pem::Error) -> TlsFileError {
    let message = match e {
        pem::Error::Io(io) => format!("cannot read: {io}"),
        pem::Error::NoItemsFound => match kind {
            TlsFileKind::Key => "no PEM private key (BEGIN PRIVATE KEY) found".to_owned(),
            _ => "no PEM certificate (BEGIN CERTIFICATE) found".to_owned(),
        },
        other => format!("not valid PEM: {other}"),
    };
    TlsFileError {
        kind,
        path: path.to_owned(),
        message,
    }
}

fn read_certs(
    kind: TlsFileKind,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(kind, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(kind, path, e))?;
    if certs.is_empty() {
        return Err(pem_error(kind, path, pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// Reads a PEM certificate chain and its private key.
///
/// # Errors
/// A file cannot be read, holds no certificate or key, or the leaf
/// certificate is not DER X.509 (its validity cannot be found).
pub fn read_identity(cert: &Path, key: &Path) -> Result<PemIdentity, TlsFileError> {
    let certs = read_certs(TlsFileKind::Cert, cert)?;
    let not_after = certs
        .first()
        .and_then(|c| not_after(c))
        .ok_or_else(|| TlsFileError {
            kind: TlsFileKind::Cert,
            path: cert.to_owned(),
            message: "the first certificate is not an X.509 certificate (no validity found)"
                .to_owned(),
        })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(TlsFileKind::Key, key, e))?;
    Ok(PemIdentity {
        certs,
        key,
        not_after,
    })
}

/// Reads PEM trust roots (one or more CA certificates).
///
/// # Errors
/// The file cannot be read or holds no certificate.
pub fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    read_certs(TlsFileKind::Ca, path)
}

/// One DER element: tag, contents, what follows (X.690 §8.1).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        let len = bytes.iter().fold(0usize, |l, &b| (l << 8) | usize::from(b));
        (len, rest.get(n..)?)
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

/// notAfter of a DER X.509 certificate in Unix seconds (RFC 5280 §4.1:
/// Certificate → tbsCertificate → [version], serial, signature, issuer,
/// validity { notBefore, notAfter }).
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (0x30, cert, _) = tlv(cert)? else {
        return None;
    };
    let (0x30, mut tbs, _) = tlv(cert)? else {
        return None;
    };
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    for _ in 0..3 {
        tbs = tlv(tbs)?.2; // serialNumber, signature, issuer
    }
    let (0x30, validity, _) = tlv(tbs)? else {
        return None;
    };
    let (_, _, rest) = tlv(validity)?;
    let (tag, time, _) = tlv(rest)?;
    asn1_time(tag, time)
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`) as RFC 5280 §4.1.2.5 allows them, in Unix seconds.
fn asn1_time(tag: u8, t: &[u8]) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let (year, rest) = match (tag, t.len()) {
        (0x17, 13) => {
            let yy = digits(t.get(..2)?)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, t.get(2..)?)
        }
        (0x18, 15) => (digits(t.get(..4)?)?, t.get(4..)?),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let field = |i: usize| digits(rest.get(i..i + 2)?);
    let (month, day) = (field(0)?, field(2)?);
    let (h, m, s) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(asn1_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(asn1_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(asn1_time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(asn1_time(0x18, b"20000229120000Z"), Some(951_825_600));
        assert_eq!(asn1_time(0x17, b"7001010000Z"), None);
        assert_eq!(asn1_time(0x17, b"701301000000Z"), None);
        assert_eq!(asn1_time(0x17, b"70010100000+Z"), None);
    }

    #[test]
    fn hostile_der_never_panics() {
        for bytes in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x82, 0xff, 0xff],
            &[0x30, 0x03, 0x30, 0x01, 0xa0],
            &[0x30, 0x80],
        ] {
            assert_eq!(not_after(bytes), None);
        }
    }

    #[test]
    fn missing_and_bad_files_name_themselves() {
        let dir = std::env::temp_dir().join(format!("sipfront-tlsfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "hello\n").unwrap();
        let e = read_identity(&dir.join("nope.pem"), &garbage).unwrap_err();
        assert_eq!(e.kind, TlsFileKind::Cert);
        assert!(e.to_string().contains("nope.pem"), "{e}");
        assert!(e.to_string().contains("cannot read"), "{e}");
        let e = read_ca(&garbage).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
