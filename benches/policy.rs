//! Policy micro-benchmarks: the full SPEC §3 decision for one off-net call
//! against a 100k-prefix rate table (goal ≤ 2 µs), alone and as the whole
//! admission of a parsed INVITE, the rate lookup alone, and
//! loading the 100k-prefix table (goal < 1 s; reported once, not asserted).

use std::collections::HashSet;
use std::fmt::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sipfront::b2bua::Admission;
use sipfront::config::{Config, ConfigSource, DidConfig, RateTable, TrunkConfig};
use sipfront::policy::{decide, CallFacts, OnNetIndex, PolicyContext};
use sipfront::sip::Message;

/// 100 000 distinct prefixes of 1–9 digits (deterministic LCG), plus the
/// ones the benchmarked call matches.
fn rates_csv(n: usize) -> String {
    let mut seen = HashSet::with_capacity(n);
    let mut text = String::with_capacity(n * 24);
    text.push_str("prefix,per_minute,name\n");
    for p in ["44", "4420", "4420712"] {
        seen.insert(p.to_owned());
        let _ = writeln!(text, "{p},0.0200,United Kingdom London");
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while seen.len() < n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let len = 1 + (x >> 60) as usize % 9;
        let digits = format!("{:018}", (x >> 4) % 1_000_000_000_000_000_000);
        let p = &digits[..len];
        if p.starts_with("4420712") || !seen.insert(p.to_owned()) {
            continue;
        }
        let _ = writeln!(text, "{p},0.{:04},Destination {}", x % 10_000, seen.len());
    }
    text
}

fn trunk() -> TrunkConfig {
    toml::from_str(
        r#"
id = 1
name = "36465"
password = "s3cret"
callerid = "12121234567"
ip_restrict = true
allowed_ips = ["10.0.0.0/8", "192.0.2.0/24"]
call_restrict = true
call_limit = 3600
cost_limit = true
max_call_cost = 0.18
channels_restrict = true
max_channels = 10
rewrite_enabled = true
rewrite_cond = "00"
rewrite_prefix = ""
passthrough = true
"#,
    )
    .unwrap_or_else(|e| panic!("bench trunk: {e}"))
}

fn bench(c: &mut Criterion) {
    let csv = rates_csv(100_000);
    let start = Instant::now();
    let rates = RateTable::parse(&csv, "bench.csv").unwrap_or_else(|_| panic!("rates"));
    eprintln!(
        "rate table: {} prefixes parsed in {:?} (one-off measurement)",
        rates.len(),
        start.elapsed()
    );

    let trunks: Vec<TrunkConfig> = (0..1000)
        .map(|i| {
            let mut t = trunk();
            t.id = Some(i + 1);
            t.name = Some(format!("{}", 50_000 + i));
            t
        })
        .collect();
    let dids: Vec<DidConfig> = (0..1000)
        .map(|i| {
            toml::from_str(&format!("number = \"1256537{i:04}\""))
                .unwrap_or_else(|e| panic!("did: {e}"))
        })
        .collect();
    let on_net = OnNetIndex::new(&trunks, &dids);
    let ctx = PolicyContext {
        rates: &rates,
        on_net: &on_net,
    };
    let t = trunk();
    let call = CallFacts {
        dialled: "00442071234567",
        caller_user: Some("+13125550100"),
        source_ip: "192.0.2.10".parse().unwrap_or_else(|e| panic!("{e}")),
        active_channels: 3,
    };
    let d = decide(&t, &call, &ctx).unwrap_or_else(|e| panic!("bench call denied: {e}"));
    assert_eq!(d.rate().map(|r| r.prefix.as_str()), Some("4420712"));
    assert_eq!(d.max_duration, Some(Duration::from_secs(540)));

    c.bench_function("policy/decide offnet call, 100k rates", |b| {
        b.iter(|| decide(black_box(&t), black_box(&call), black_box(&ctx)))
    });
    c.bench_function("policy/rate lookup, 100k rates", |b| {
        b.iter(|| rates.lookup(black_box("442071234567")))
    });
    // The whole admission of a parsed INVITE from an IP-authenticated
    // trunk: identification, Request-URI/From/PAI reads, then decide.
    let mut cfg = Config::parse(
        "[[trunk]]\nid = 1\nname = \"36465\"\nhost_request = \"192.0.2.10\"\n\
         callerid = \"12121234567\"\ncost_limit = true\nmax_call_cost = 0.18\n\
         channels_restrict = true\nmax_channels = 10\nrewrite_enabled = true\n\
         rewrite_cond = \"00\"\npassthrough = true\n",
        ConfigSource::Embedded,
    )
    .unwrap_or_else(|e| panic!("bench config: {e}"));
    cfg.trunk.extend(trunks.iter().map(|t| {
        let mut t = t.clone();
        t.id = t.id.map(|i| i + 1);
        t
    }));
    cfg.rate_table = rates.clone();
    let admission = Admission::new(&cfg, [7; 32]);
    let invite = Message::parse(Bytes::from_static(
        b"INVITE sip:00442071234567@192.0.2.1 SIP/2.0\r\n\
          Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n\
          Max-Forwards: 70\r\n\
          From: \"PBX\" <sip:201@192.0.2.10>;tag=1928301774\r\n\
          P-Asserted-Identity: <sip:+13125550100@192.0.2.10>\r\n\
          To: <sip:00442071234567@192.0.2.1>\r\n\
          Call-ID: a84b4c76e66710@192.0.2.10\r\n\
          CSeq: 314159 INVITE\r\n\
          Content-Length: 0\r\n\r\n",
    ))
    .unwrap_or_else(|e| panic!("bench invite: {e}"));
    let source = "192.0.2.10".parse().unwrap_or_else(|e| panic!("{e}"));
    let a = admission
        .admit(&invite, source, false, 0, |_| 3)
        .unwrap_or_else(|e| panic!("bench call refused: {e}"));
    assert_eq!(a.decision.caller_id, "13125550100");
    c.bench_function(
        "admission/admit IP-trunk INVITE, 1k trunks, 100k rates",
        |b| b.iter(|| admission.admit(black_box(&invite), source, false, 0, |_| 3)),
    );
    let mut g = c.benchmark_group("policy/load");
    g.sample_size(10);
    g.bench_function("parse 100k-prefix rates.csv", |b| {
        b.iter(|| RateTable::parse(black_box(&csv), "bench.csv").map(|t| t.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
