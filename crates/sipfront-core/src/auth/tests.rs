//! Digest and IP authentication tests: RFC 2617 §3.5 and RFC 7616 §3.9.1
//! known-answer vectors, then the verification rules.

use std::net::IpAddr;

use super::*;
use crate::config::TrunkConfig;

fn trunk(toml_text: &str) -> TrunkConfig {
    toml::from_str(toml_text).unwrap()
}

const REALM: &str = "sipfront.local";
const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));
const T0: u64 = 1_800_000_000;

fn trunks() -> Vec<TrunkConfig> {
    vec![
        trunk("id = 1\nname = \"36465\"\npassword = \"s3cret\""),
        trunk("id = 2\nname = \"iponly\"\npassword = \"x\"\nhost_request = \"198.51.100.7\""),
    ]
}

fn auth() -> Authenticator {
    Authenticator::new(REALM, [7u8; 32], &trunks())
}

/// Extracts the nonce from a challenge value.
fn nonce_of(challenge: &str) -> String {
    let start = challenge.find("nonce=\"").unwrap() + 7;
    let end = challenge[start..].find('"').unwrap() + start;
    challenge[start..end].to_owned()
}

/// What a UA puts in Proxy-Authorization.
fn client_header(
    alg: Algorithm,
    user: &str,
    password: &str,
    nonce: &str,
    nc: u32,
    method: &str,
) -> String {
    let uri = "sip:12125551234@sipfront.local";
    let cnonce = "0a4f113b";
    let ha1 = ha1(alg.is_sha256(), user, REALM, password);
    let resp = response(alg, &ha1, nonce, nc, cnonce, "auth", method, uri);
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{resp}\", algorithm={}, cnonce=\"{cnonce}\", qop=auth, nc={nc:08x}",
        alg.as_str()
    )
}

fn verify_header(
    a: &Authenticator,
    h: &str,
    method: &Method,
    src: IpAddr,
    now: u64,
) -> Result<TrunkId, AuthError> {
    let creds = DigestCredentials::parse(h.as_bytes()).unwrap();
    a.verify(&creds, method, src, now)
}

fn fresh_nonce(a: &Authenticator, now: u64) -> String {
    nonce_of(&a.challenge(ChallengeKind::Proxy, SRC, now, false)[0])
}

// --- known answers --------------------------------------------------------

#[test]
fn rfc2617_section_3_5_md5_vector() {
    // RFC 2617 §3.5: Mufasa / "Circle Of Life" @ testrealm@host.com.
    let ha1 = ha1(false, "Mufasa", "testrealm@host.com", "Circle Of Life");
    let r = response(
        Algorithm::Md5,
        &ha1,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        1,
        "0a4f113b",
        "auth",
        "GET",
        "/dir/index.html",
    );
    assert_eq!(r, "6629fae49393a05397450978507c4ef1");
}

#[test]
fn rfc7616_section_3_9_1_md5_and_sha256_vectors() {
    // RFC 7616 §3.9.1: Mufasa / "Circle of Life" @ http-auth@example.org.
    let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    let realm = "http-auth@example.org";
    let md5 = ha1(false, "Mufasa", realm, "Circle of Life");
    let sha = ha1(true, "Mufasa", realm, "Circle of Life");
    let uri = "/dir/index.html";
    assert_eq!(
        response(Algorithm::Md5, &md5, nonce, 1, cnonce, "auth", "GET", uri),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
    assert_eq!(
        response(
            Algorithm::Sha256,
            &sha,
            nonce,
            1,
            cnonce,
            "auth",
            "GET",
            uri
        ),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

#[test]
fn sess_variant_rehashes_ha1_with_nonce_and_cnonce() {
    let base = ha1(false, "u", "r", "p");
    let sess_ha1 = {
        use md5::{Digest, Md5};
        digest::hex(&Md5::digest(format!("{base}:n:c").as_bytes()))
    };
    assert_eq!(
        response(
            Algorithm::Md5Sess,
            &base,
            "n",
            1,
            "c",
            "auth",
            "INVITE",
            "sip:x"
        ),
        response(
            Algorithm::Md5,
            &sess_ha1,
            "n",
            1,
            "c",
            "auth",
            "INVITE",
            "sip:x"
        )
    );
}

#[test]
fn algorithm_names() {
    assert_eq!(Algorithm::from_param(None), Some(Algorithm::Md5));
    assert_eq!(
        Algorithm::from_param(Some("sha-256")),
        Some(Algorithm::Sha256)
    );
    assert_eq!(
        Algorithm::from_param(Some("SHA-256-sess")),
        Some(Algorithm::Sha256Sess)
    );
    assert_eq!(
        Algorithm::from_param(Some("MD5-sess")),
        Some(Algorithm::Md5Sess)
    );
    assert_eq!(Algorithm::from_param(Some("SHA-512-256")), None);
}

// --- challenges -------------------------------------------------------------

#[test]
fn challenge_offers_md5_then_sha256_with_qop_auth() {
    let a = auth();
    let c = a.challenge(ChallengeKind::Proxy, SRC, T0, false);
    assert_eq!(c.len(), 2);
    assert!(c[0].starts_with("Digest realm=\"sipfront.local\", nonce=\""));
    assert!(c[0].contains("algorithm=MD5, qop=\"auth\""));
    assert!(c[1].contains("algorithm=SHA-256, qop=\"auth\""));
    assert!(!c[0].contains("stale"));
    assert_eq!(nonce_of(&c[0]), nonce_of(&c[1]));
    // The challenge parses with our own parser.
    let p = crate::sip::DigestChallenge::parse(c[1].as_bytes()).unwrap();
    assert_eq!(p.algorithm.as_deref(), Some("SHA-256"));
    let s = a.challenge(ChallengeKind::Www, SRC, T0, true);
    assert!(s.iter().all(|v| v.ends_with(", stale=true")));
    assert!(
        crate::sip::DigestChallenge::parse(s[1].as_bytes())
            .unwrap()
            .stale
    );
}

#[test]
fn kinds_map_to_401_and_407() {
    assert_eq!(
        ChallengeKind::for_method(&Method::Register),
        ChallengeKind::Www
    );
    assert_eq!(
        ChallengeKind::for_method(&Method::Invite),
        ChallengeKind::Proxy
    );
    assert_eq!(ChallengeKind::Www.status().as_u16(), 401);
    assert_eq!(ChallengeKind::Proxy.status().as_u16(), 407);
    assert_eq!(
        ChallengeKind::Proxy.challenge_header(),
        "Proxy-Authenticate"
    );
}

// --- verification -------------------------------------------------------------

#[test]
fn right_password_ok_for_both_algorithms_and_sess() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    let algs = [
        Algorithm::Sha256,
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256Sess,
    ];
    for (nc, alg) in (1..).zip(algs) {
        let h = client_header(alg, "36465", "s3cret", &n, nc, "INVITE");
        assert_eq!(
            verify_header(&a, &h, &Method::Invite, SRC, T0 + 1),
            Ok(TrunkId(1)),
            "{alg:?}"
        );
    }
}

#[test]
fn uppercase_response_hex_accepted() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    let h = client_header(Algorithm::Md5, "36465", "s3cret", &n, 1, "INVITE");
    let start = h.find("response=\"").unwrap() + 10;
    let mut h2 = h.clone();
    h2.replace_range(
        start..start + 32,
        &h[start..start + 32].to_ascii_uppercase(),
    );
    assert_eq!(
        verify_header(&a, &h2, &Method::Invite, SRC, T0),
        Ok(TrunkId(1))
    );
}

#[test]
fn wrong_password_is_403() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    let h = client_header(Algorithm::Sha256, "36465", "guess", &n, 1, "INVITE");
    let e = verify_header(&a, &h, &Method::Invite, SRC, T0).unwrap_err();
    assert_eq!(e, AuthError::Forbidden);
    assert_eq!(e.status().as_u16(), 403);
    assert_eq!(e.challenge_kind(), None);
}

#[test]
fn unknown_user_is_403() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    let h = client_header(Algorithm::Md5, "nobody", "s3cret", &n, 1, "INVITE");
    assert_eq!(
        verify_header(&a, &h, &Method::Invite, SRC, T0),
        Err(AuthError::Forbidden)
    );
}

#[test]
fn ip_trunks_and_empty_passwords_are_not_digest_users() {
    let a = auth();
    assert_eq!(a.user_count(), 1);
    let n = fresh_nonce(&a, T0);
    let h = client_header(Algorithm::Md5, "iponly", "x", &n, 1, "INVITE");
    assert_eq!(
        verify_header(&a, &h, &Method::Invite, SRC, T0),
        Err(AuthError::Forbidden)
    );
}

#[test]
fn expired_nonce_with_right_password_is_stale_rechallenge() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    let h = client_header(Algorithm::Sha256, "36465", "s3cret", &n, 1, "INVITE");
    let e = verify_header(&a, &h, &Method::Invite, SRC, T0 + DEFAULT_NONCE_TTL + 1).unwrap_err();
    assert_eq!(e, AuthError::Stale(ChallengeKind::Proxy));
    assert!(e.is_stale());
    assert_eq!(e.status().as_u16(), 407);
    // At exactly the TTL it is still fresh.
    assert!(verify_header(&a, &h, &Method::Invite, SRC, T0 + DEFAULT_NONCE_TTL).is_ok());
}

#[test]
fn expired_nonce_with_wrong_password_is_403_not_stale() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    let h = client_header(Algorithm::Sha256, "36465", "nope", &n, 1, "INVITE");
    assert_eq!(
        verify_header(&a, &h, &Method::Invite, SRC, T0 + 10_000),
        Err(AuthError::Forbidden)
    );
}

#[test]
fn replayed_nc_is_refused_with_rechallenge() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    let h1 = client_header(Algorithm::Md5, "36465", "s3cret", &n, 1, "INVITE");
    assert!(verify_header(&a, &h1, &Method::Invite, SRC, T0).is_ok());
    let e = verify_header(&a, &h1, &Method::Invite, SRC, T0 + 1).unwrap_err();
    assert_eq!(e, AuthError::Replay(ChallengeKind::Proxy));
    assert_eq!(e.status().as_u16(), 407);
    // The next nc on the same nonce works; going back does not.
    let h2 = client_header(Algorithm::Md5, "36465", "s3cret", &n, 2, "INVITE");
    assert!(verify_header(&a, &h2, &Method::Invite, SRC, T0 + 2).is_ok());
    assert!(verify_header(&a, &h1, &Method::Invite, SRC, T0 + 3).is_err());
    assert_eq!(a.replay_len(), 1);
}

#[test]
fn forged_nonce_is_refused() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    // Same timestamp, altered MAC; and a made-up nonce; and a later timestamp.
    let mut forged = n.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (_, mac) = n.split_once('.').unwrap();
    let shifted = format!("{:x}.{mac}", T0 + 100);
    for bad in [forged.as_str(), "deadbeef", "", "x.y", shifted.as_str()] {
        let h = client_header(Algorithm::Md5, "36465", "s3cret", bad, 1, "INVITE");
        assert_eq!(
            verify_header(&a, &h, &Method::Invite, SRC, T0 + 1),
            Err(AuthError::InvalidNonce(ChallengeKind::Proxy)),
            "{bad}"
        );
    }
    // A nonce minted by another instance (other secret).
    let other = Authenticator::new(REALM, [8u8; 32], &trunks());
    let n2 = fresh_nonce(&other, T0);
    let h = client_header(Algorithm::Md5, "36465", "s3cret", &n2, 1, "INVITE");
    assert!(matches!(
        verify_header(&a, &h, &Method::Invite, SRC, T0),
        Err(AuthError::InvalidNonce(_))
    ));
}

#[test]
fn nonce_from_another_source_ip_is_refused() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    let h = client_header(Algorithm::Sha256, "36465", "s3cret", &n, 1, "INVITE");
    let other: IpAddr = "192.0.2.11".parse().unwrap();
    assert_eq!(
        verify_header(&a, &h, &Method::Invite, other, T0),
        Err(AuthError::InvalidNonce(ChallengeKind::Proxy))
    );
}

#[test]
fn future_nonce_is_refused() {
    let a = auth();
    let n = fresh_nonce(&a, T0 + 60);
    let h = client_header(Algorithm::Md5, "36465", "s3cret", &n, 1, "INVITE");
    assert!(matches!(
        verify_header(&a, &h, &Method::Invite, SRC, T0),
        Err(AuthError::InvalidNonce(_))
    ));
}

#[test]
fn register_uses_401_kind() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    let h = client_header(Algorithm::Md5, "36465", "s3cret", &n, 1, "REGISTER");
    assert!(verify_header(&a, &h, &Method::Register, SRC, T0).is_ok());
    let e = verify_header(&a, &h, &Method::Register, SRC, T0).unwrap_err();
    assert_eq!(e.status().as_u16(), 401);
    // The method is part of HA2: a REGISTER response does not pass as INVITE.
    let h = client_header(Algorithm::Md5, "36465", "s3cret", &n, 2, "REGISTER");
    assert_eq!(
        verify_header(&a, &h, &Method::Invite, SRC, T0),
        Err(AuthError::Forbidden)
    );
}

#[test]
fn incomplete_or_unsupported_credentials_rechallenge() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    let good = client_header(Algorithm::Md5, "36465", "s3cret", &n, 1, "INVITE");
    let cases: [(String, AuthError); 5] = [
        (
            good.replace("qop=auth, nc=00000001", "nc=00000001"),
            AuthError::Missing(ChallengeKind::Proxy),
        ),
        (
            good.replace("cnonce=\"0a4f113b\", ", ""),
            AuthError::Missing(ChallengeKind::Proxy),
        ),
        (
            good.replace("qop=auth", "qop=auth-int"),
            AuthError::Unsupported(ChallengeKind::Proxy),
        ),
        (
            good.replace("algorithm=MD5", "algorithm=SHA-512-256"),
            AuthError::Unsupported(ChallengeKind::Proxy),
        ),
        (
            good.replace("realm=\"sipfront.local\"", "realm=\"evil\""),
            AuthError::WrongRealm(ChallengeKind::Proxy),
        ),
    ];
    for (h, want) in cases {
        assert_eq!(
            verify_header(&a, &h, &Method::Invite, SRC, T0),
            Err(want),
            "{h}"
        );
    }
    let basic = DigestCredentials::parse(b"Basic x=y").unwrap();
    assert_eq!(
        a.verify(&basic, &Method::Invite, SRC, T0),
        Err(AuthError::Missing(ChallengeKind::Proxy))
    );
}

#[test]
fn reload_keeps_secret_and_replay_table() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    let h = client_header(Algorithm::Md5, "36465", "s3cret", &n, 1, "INVITE");
    assert!(verify_header(&a, &h, &Method::Invite, SRC, T0).is_ok());
    let mut ts = trunks();
    ts[0].password = "new".into();
    let b = a.reload(REALM, &ts);
    // Old password no longer valid; old nonce still ours; its nc 1 still spent.
    assert_eq!(
        verify_header(&b, &h, &Method::Invite, SRC, T0),
        Err(AuthError::Forbidden)
    );
    let h1 = client_header(Algorithm::Md5, "36465", "new", &n, 1, "INVITE");
    assert!(matches!(
        verify_header(&b, &h1, &Method::Invite, SRC, T0),
        Err(AuthError::Replay(_))
    ));
    let h2 = client_header(Algorithm::Md5, "36465", "new", &n, 2, "INVITE");
    assert!(verify_header(&b, &h2, &Method::Invite, SRC, T0).is_ok());
}

#[test]
fn replay_table_is_bounded_and_eviction_forces_fresh_nonce() {
    let a = auth().with_replay_capacity(2);
    let n1 = fresh_nonce(&a, T0);
    let n2 = fresh_nonce(&a, T0 + 1);
    let n3 = fresh_nonce(&a, T0 + 2);
    let h = |n: &str, nc| client_header(Algorithm::Md5, "36465", "s3cret", n, nc, "INVITE");
    assert!(verify_header(&a, &h(&n1, 1), &Method::Invite, SRC, T0 + 2).is_ok());
    assert!(verify_header(&a, &h(&n2, 1), &Method::Invite, SRC, T0 + 2).is_ok());
    assert!(verify_header(&a, &h(&n3, 1), &Method::Invite, SRC, T0 + 2).is_ok());
    assert_eq!(a.replay_len(), 2);
    // n1 was evicted: replaying it must not pass; it asks for a fresh nonce.
    assert_eq!(
        verify_header(&a, &h(&n1, 1), &Method::Invite, SRC, T0 + 3),
        Err(AuthError::Stale(ChallengeKind::Proxy))
    );
}

#[test]
fn replay_entries_expire_with_their_nonce() {
    let a = auth().with_nonce_ttl(10);
    let n1 = fresh_nonce(&a, T0);
    let h1 = client_header(Algorithm::Md5, "36465", "s3cret", &n1, 1, "INVITE");
    assert!(verify_header(&a, &h1, &Method::Invite, SRC, T0).is_ok());
    assert_eq!(a.replay_len(), 1);
    let n2 = fresh_nonce(&a, T0 + 20);
    let h2 = client_header(Algorithm::Md5, "36465", "s3cret", &n2, 1, "INVITE");
    assert!(verify_header(&a, &h2, &Method::Invite, SRC, T0 + 20).is_ok());
    assert_eq!(a.replay_len(), 1);
    // The pruned nonce is expired, so it is stale rather than replayable.
    assert!(matches!(
        verify_header(&a, &h1, &Method::Invite, SRC, T0 + 20),
        Err(AuthError::Stale(_))
    ));
}

#[test]
fn failed_attempts_do_not_consume_the_nc() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    for user in ["36465", "nobody"] {
        let h = client_header(Algorithm::Sha256, user, "bad", &n, 1, "INVITE");
        assert_eq!(
            verify_header(&a, &h, &Method::Invite, SRC, T0),
            Err(AuthError::Forbidden)
        );
    }
    // A failed attempt does not consume the nc.
    let ok = client_header(Algorithm::Sha256, "36465", "s3cret", &n, 1, "INVITE");
    assert!(verify_header(&a, &ok, &Method::Invite, SRC, T0).is_ok());
}

// --- IP authentication ----------------------------------------------------------

#[test]
fn host_request_identifies_trunk_by_source() {
    let ts = trunks();
    let ip = IpAuth::new(&ts);
    assert_eq!(
        ip.identify("198.51.100.7".parse().unwrap()),
        Some(TrunkId(2))
    );
    assert_eq!(
        ip.identify("::ffff:198.51.100.7".parse().unwrap()),
        Some(TrunkId(2))
    );
    assert_eq!(ip.identify(SRC), None);
}

#[test]
fn ip_restrict_limits_sources() {
    let open = trunk("allowed_ips = [\"10.0.0.0/8\"]");
    assert!(ip_allowed(&open, SRC));
    let t = trunk("ip_restrict = true\nallowed_ips = [\"10.0.0.0/8\", \"192.0.2.10\"]");
    assert!(ip_allowed(&t, SRC));
    assert!(ip_allowed(&t, "10.9.8.7".parse().unwrap()));
    assert!(ip_allowed(&t, "::ffff:10.9.8.7".parse().unwrap()));
    assert!(!ip_allowed(&t, "192.0.2.11".parse().unwrap()));
    let none = trunk("ip_restrict = true");
    assert!(!ip_allowed(&none, SRC));
}

#[test]
fn debug_output_hides_secret_and_ha1() {
    let a = auth();
    let s = format!("{a:?}");
    assert!(s.contains("sipfront.local"));
    assert!(!s.contains("[7, 7"));
    assert!(!s.contains(&ha1(false, "36465", REALM, "s3cret")));
}

fn request(method: &str, auth_headers: &[(&str, String)]) -> crate::sip::Message {
    let mut m = format!(
        "{method} sip:12125551234@sipfront.local SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n\
         Max-Forwards: 70\r\nTo: <sip:12125551234@sipfront.local>\r\n\
         From: <sip:36465@sipfront.local>;tag=1928301774\r\n\
         Call-ID: a84b4c76e66710\r\nCSeq: 1 {method}\r\n"
    );
    for (name, value) in auth_headers {
        m.push_str(&format!("{name}: {value}\r\n"));
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    crate::sip::Message::parse(crate::sip::Bytes::from(m)).unwrap()
}

#[test]
fn verify_request_picks_header_by_method_and_realm() {
    let a = auth();
    let n = fresh_nonce(&a, T0);
    let ours = client_header(Algorithm::Sha256, "36465", "s3cret", &n, 1, "INVITE");
    let theirs = ours.replace("realm=\"sipfront.local\"", "realm=\"upstream\"");
    let m = request(
        "INVITE",
        &[
            ("Proxy-Authorization", theirs),
            ("Proxy-Authorization", ours.clone()),
        ],
    );
    assert_eq!(a.verify_request(&m, SRC, T0), Ok(TrunkId(1)));
    // INVITE credentials in Authorization do not count: 407 challenge.
    let m = request("INVITE", &[("Authorization", ours)]);
    assert_eq!(
        a.verify_request(&m, SRC, T0),
        Err(AuthError::Missing(ChallengeKind::Proxy))
    );
    // REGISTER reads Authorization; none → 401 challenge.
    let reg = client_header(Algorithm::Md5, "36465", "s3cret", &n, 2, "REGISTER");
    let m = request("REGISTER", &[("Authorization", reg)]);
    assert_eq!(a.verify_request(&m, SRC, T0), Ok(TrunkId(1)));
    let e = a
        .verify_request(&request("REGISTER", &[]), SRC, T0)
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 401);
}

#[test]
fn two_uas_behind_one_address_get_their_own_nonces() {
    let a = auth();
    let n1 = fresh_nonce(&a, T0);
    let n2 = fresh_nonce(&a, T0);
    assert_ne!(n1, n2);
    // Each UA counts nc from 1 on its own nonce; neither is a replay.
    for n in [&n1, &n2] {
        let h = client_header(Algorithm::Md5, "36465", "s3cret", n, 1, "INVITE");
        assert_eq!(
            verify_header(&a, &h, &Method::Invite, SRC, T0),
            Ok(TrunkId(1))
        );
    }
    // Changing the serial breaks the MAC.
    let mut parts: Vec<&str> = n1.split('.').collect();
    parts[1] = "ff";
    let forged = parts.join(".");
    let h = client_header(Algorithm::Md5, "36465", "s3cret", &forged, 1, "INVITE");
    assert!(matches!(
        verify_header(&a, &h, &Method::Invite, SRC, T0),
        Err(AuthError::InvalidNonce(_))
    ));
}
