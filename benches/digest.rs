//! Digest verification micro-benchmarks (RFC 7616 / RFC 8760): one SHA-256
//! and one MD5 `verify` including the nonce MAC check and the replay table,
//! plus the two 403 paths (wrong password, unknown user) whose times should
//! match.

use std::net::IpAddr;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use sipfront::auth::{ha1, response, Algorithm, Authenticator, ChallengeKind};
use sipfront::config::TrunkConfig;
use sipfront::sip::{DigestCredentials, Method};

const REALM: &str = "sipfront.local";
const NOW: u64 = 1_800_000_000;

fn header(alg: Algorithm, user: &str, password: &str, nonce: &str, nc: u32) -> String {
    let uri = "sip:442071234567@sipfront.local";
    let cnonce = "0a4f113b";
    let h = ha1(alg.is_sha256(), user, REALM, password);
    let r = response(alg, &h, nonce, nc, cnonce, "auth", "INVITE", uri);
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{r}\", algorithm={}, cnonce=\"{cnonce}\", qop=auth, nc={nc:08x}",
        alg.as_str()
    )
}

fn bench(c: &mut Criterion) {
    let trunks: Vec<TrunkConfig> = (0..1000)
        .map(|i| {
            toml::from_str(&format!(
                "id = {}\nname = \"{}\"\npassword = \"pw{i}\"",
                i + 1,
                50_000 + i
            ))
            .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let auth = Authenticator::new(REALM, [42; 32], &trunks);
    let src: IpAddr = "192.0.2.10".parse().unwrap_or_else(|e| panic!("{e}"));
    let challenge = auth.challenge(ChallengeKind::Proxy, src, NOW, false);
    let nonce = {
        let c = &challenge[0];
        let s = c.find("nonce=\"").unwrap_or(0) + 7;
        let e = c[s..].find('"').unwrap_or(0) + s;
        c[s..e].to_owned()
    };

    // A fresh nc every iteration (shared by both algorithms: same nonce) so
    // each one is accepted (the success path, including the replay table).
    let mut nc = 0u32;
    for alg in [Algorithm::Sha256, Algorithm::Md5] {
        c.bench_function(&format!("digest/verify ok {}", alg.as_str()), |b| {
            b.iter_batched(
                || {
                    nc += 1;
                    header(alg, "50500", "pw500", &nonce, nc)
                },
                |h| {
                    let creds =
                        DigestCredentials::parse(h.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
                    let r = auth.verify(&creds, &Method::Invite, src, NOW);
                    assert!(r.is_ok());
                    r
                },
                BatchSize::SmallInput,
            )
        });
    }
    for (what, user) in [("wrong password", "50500"), ("unknown user", "nobody")] {
        let h = header(Algorithm::Sha256, user, "guess", &nonce, 1);
        c.bench_function(&format!("digest/verify 403 {what} SHA-256"), |b| {
            b.iter(|| {
                let creds = DigestCredentials::parse(black_box(h.as_bytes()))
                    .unwrap_or_else(|e| panic!("{e:?}"));
                auth.verify(&creds, &Method::Invite, src, NOW)
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
