//! SIP over TLS (RFC 3261 §26.2, RFC 5630) against the real binary, with
//! certificates made by the test (`rcgen`) and a rustls client written in
//! the test: the listener answers over TLS, certificates are re-read on
//! SIGHUP without dropping connections (their expiry is a metric), bad
//! files are `sipfront check` errors naming file, line and key, and
//! clients that are not TLS or stall the handshake are closed within the
//! deadline while the server keeps serving; a TLS PBX places a call to a
//! UDP carrier; upstreams reached over TLS whose certificate does not
//! verify are failed over, logged and counted; and what an idle TLS
//! connection costs in memory. (A TLS phone's registration and DID call:
//! `did_calls.rs`, `tls_client_*`.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::phone::{header_value, TlsPhone};
use common::tls::{connect, Pki, TlsPeer};
use common::{
    api_get, wait_until, Server, TempDir, BIN, LOOPBACK_CONFIG, TEST_API_KEY, TEST_API_KEY_CONFIG,
};

const TRUNK: &str = "[[trunk]]\nid = 1\nname = \"alice\"\npassword = \"pw-alice\"\n";

/// 2030-01-01T00:00:00Z and 2031-01-01T00:00:00Z.
const Y2030: i64 = 1_893_456_000;
const Y2031: i64 = 1_924_992_000;

fn metrics(server: &Server) -> String {
    reqwest::blocking::Client::new()
        .get(format!("http://{}/metrics", server.http))
        .bearer_auth(TEST_API_KEY)
        .timeout(Duration::from_secs(10))
        .send()
        .and_then(|r| r.text())
        .expect("metrics")
}

fn tls_server(dir: &TempDir, pki: &Pki, extra: &str) -> Server {
    let _ = dir;
    Server::start(&format!(
        "{LOOPBACK_CONFIG}{TEST_API_KEY_CONFIG}{}{extra}",
        pki.listen_toml()
    ))
}

/// One OPTIONS over a TLS phone connection: its final response.
fn options_over(ph: &mut TlsPhone, server: std::net::SocketAddr, n: u32) -> String {
    let local = ph.pipe.stream.sock.local_addr().expect("local");
    ph.send(&common::options("TLS", local, server, &format!("tls{n}")));
    ph.recv(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no answer to OPTIONS over TLS\n{}", ph.log))
}

#[test]
fn tls_listener_answers_and_reloads_its_certificate_on_sighup_keeping_connections() {
    let dir = TempDir::new("tls-reload");
    let pki = Pki::new(&dir, "srv", &["localhost", "127.0.0.1"], 2030);
    let server = tls_server(&dir, &pki, "");
    let tls = server.tls.expect("tls=[…] in the ready line");
    let mut ph = TlsPhone::tls(connect(tls, pki.client_config(), "localhost"));
    let resp = options_over(&mut ph, tls, 1);
    assert!(
        resp.starts_with("SIP/2.0 200"),
        "{resp}\n{}",
        server.log_text()
    );
    assert!(resp.contains("Via: SIP/2.0/TLS "), "{resp}");
    let m = metrics(&server);
    assert!(
        m.contains(&format!(
            "sipfront_tls_certificate_expiry_seconds{{listen=\"{tls}\"}} {Y2030}"
        )),
        "{m}"
    );

    // A renewal: new files in place, SIGHUP.
    let (cert, key) = pki.issue("renewed", &["localhost", "127.0.0.1"], 2031);
    std::fs::copy(&cert, &pki.cert).expect("copy cert");
    std::fs::copy(&key, &pki.key).expect("copy key");
    server.signal("HUP");
    assert!(
        server.wait_log("TLS certificate re-read", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
    let m = metrics(&server);
    assert!(
        m.contains(&format!(
            "sipfront_tls_certificate_expiry_seconds{{listen=\"{tls}\"}} {Y2031}"
        )),
        "{m}"
    );
    // The open connection goes on; a new one gets the new certificate.
    let resp = options_over(&mut ph, tls, 2);
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}");
    let fresh = connect(tls, pki.client_config(), "127.0.0.1");
    let leaf = fresh
        .conn
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .expect("server certificate");
    let renewed = std::fs::read_to_string(&cert).expect("renewed cert");
    let der = tokio_rustls::rustls::pki_types::pem::PemObject::from_pem_slice(renewed.as_bytes())
        .map(|c: tokio_rustls::rustls::pki_types::CertificateDer<'static>| c.to_vec())
        .expect("pem");
    assert_eq!(
        leaf.as_ref(),
        der.as_slice(),
        "new handshakes present the renewed certificate"
    );

    // A broken renewal is refused and the running certificate stays.
    std::fs::write(&pki.key, "not a key\n").expect("write");
    server.signal("HUP");
    assert!(
        server.wait_log("the running certificate stays", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
    let mut again = TlsPhone::tls(connect(tls, pki.client_config(), "localhost"));
    let resp = options_over(&mut again, tls, 3);
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}");
}

/// UDP and TCP on loopback, then (from line 13) a TLS listener on `cert`
/// (line 16) and `key` (line 17).
fn tls_listen_config(cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "{LOOPBACK_CONFIG}\n[[listen]]\ntransport = \"tls\"\naddress = \"127.0.0.1:0\"\n\
         cert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

#[test]
fn bad_certificate_files_are_check_errors_naming_file_line_and_key() {
    let dir = TempDir::new("tls-check");
    let pki = Pki::new(&dir, "srv", &["localhost"], 2030);
    let missing = dir.path().join("nope.pem");
    let garbage = dir.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
    let cases = [
        // (cert, key, expected line, key path, words)
        (
            missing.clone(),
            pki.key.clone(),
            16,
            "listen[2].cert",
            "nope.pem",
        ),
        (
            pki.cert.clone(),
            garbage.clone(),
            17,
            "listen[2].key",
            "garbage.pem",
        ),
    ];
    for (cert, key, line, path, words) in cases {
        let cfg = dir.write("bad.toml", &tls_listen_config(&cert, &key));
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&cfg)
            .output()
            .expect("run check");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("bad.toml:{line}: {path}: ")) && err.contains(words),
            "{err}"
        );
    }
    // A key of another certificate: refused when the listener starts.
    let (_, other_key) = pki.issue("other", &["localhost"], 2030);
    let cfg = dir.write("mismatch.toml", &tls_listen_config(&pki.cert, &other_key));
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("other-key.pem"), "{err}");
}

/// Reads until the peer closes (true) or `within` passes (false).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let end = Instant::now() + within;
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn plain_tcp_and_stalled_handshakes_are_closed_within_the_deadline() {
    let dir = TempDir::new("tls-hostile");
    let pki = Pki::new(&dir, "srv", &["localhost"], 2030);
    let server = tls_server(
        &dir,
        &pki,
        "\n[transport]\ntls_handshake_timeout_ms = 500\n",
    );
    let tls = server.tls.expect("tls address");

    // SIP in clear text on the TLS port.
    let mut plain = TcpStream::connect(tls).expect("connect");
    let local = plain.local_addr().expect("local");
    plain
        .write_all(common::options("TCP", local, tls, "plain").as_bytes())
        .expect("write");
    assert!(
        closed_within(&mut plain, Duration::from_secs(3)),
        "clear text was not closed"
    );

    // A client that connects and never says hello.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(tls).expect("connect");
    assert!(
        closed_within(&mut stalled, Duration::from_secs(5)),
        "stalled handshake not closed"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "closed after {took:?}, deadline 500 ms"
    );

    // Still serving.
    let mut ph = TlsPhone::tls(connect(tls, pki.client_config(), "localhost"));
    let resp = options_over(&mut ph, tls, 9);
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}");
    let m = metrics(&server);
    assert!(
        m.contains("sipfront_tls_handshake_failures_total{direction=\"inbound\"} 2"),
        "{m}\n{}",
        server.log_text()
    );
    assert!(server.log_text().contains("TLS handshake failed"));
}

/// `[rates]` (the shipped table) and trunk `alice`, for calls.
fn rates_and_trunk() -> String {
    format!(
        "\n[rates]\nfile = \"{}\"\n\n{TRUNK}",
        common::shipped_rates()
    )
}

/// A PBX on a TLS connection places a call with digest (RFC 3261 §26.2 on
/// the A-leg): challenged 407 and answered over its connection, the call
/// reaches the SIPp carrier over UDP, `/v1/calls` shows `tls` → `udp`, the
/// PBX's BYE ends it, and its CDR says `tls` and `udp`.
#[test]
fn tls_pbx_places_a_call_to_a_udp_carrier_and_hangs_up() {
    let dir = TempDir::new("tls-pbx");
    let pki = Pki::new(&dir, "srv", &["localhost"], 2030);
    let carrier_port = common::free_port();
    let extra = format!(
        "{}\n{}",
        rates_and_trunk(),
        common::carrier_upstream(carrier_port)
    );
    let server = tls_server(&dir, &pki, &extra);
    let tls = server.tls.expect("tls address");
    let _carrier = common::calls::carrier_uas(carrier_port);
    let ph = TlsPhone::tls(connect(tls, pki.client_config(), "localhost"));
    common::calls::phone_places_a_call_to_a_udp_carrier(
        &server,
        ph,
        tls,
        "tls",
        ("alice", "pw-alice"),
    );
}

/// An `[[upstream]]` dialled over TLS, its certificate checked against
/// `ca`.
fn tls_upstream(name: &str, uri: &str, priority: u32, ca: &std::path::Path) -> String {
    format!(
        "\n[[upstream]]\nname = \"{name}\"\nuri = \"{uri}\"\npriority = {priority}\n\
         ping_interval_s = 0\nca = \"{}\"\n",
        ca.display()
    )
}

/// RFC 5922 §7 / RFC 3263 §4.3: three carriers reached over TLS, tried in
/// priority order. The first presents a certificate from a CA sipfront
/// does not trust, the second one for another name; each handshake fails
/// (the peer gets sipfront's alert), is logged at WARN and counted in
/// `sipfront_tls_handshake_failures_total{direction="outbound"}`, and the
/// call moves on to the third, whose certificate verifies for its address
/// (`sips:`): it answers, `/v1/calls` shows `tls` → `tls`, and the BYE
/// reaches it on the same verified connection.
#[test]
fn tls_upstreams_whose_certificate_does_not_verify_are_failed_over() {
    let dir = TempDir::new("tls-upstreams");
    let pki = Pki::new(&dir, "srv", &["localhost"], 2030);
    let rogue = Pki::new(&dir, "rogue", &["127.0.0.1"], 2030);
    let (wrong_cert, wrong_key) = pki.issue("wrongname", &["carrier.example"], 2030);
    let (good_cert, good_key) = pki.issue("carrier", &["127.0.0.1"], 2030);
    let untrusted = TlsPeer::start(&rogue.cert, &rogue.key);
    let wrong = TlsPeer::start(&wrong_cert, &wrong_key);
    let good = TlsPeer::start(&good_cert, &good_key);
    let good_addr = good.addr;
    let extra = format!(
        "{}{}{}{}",
        rates_and_trunk(),
        tls_upstream(
            "untrusted",
            &format!("sip:{};transport=tls", untrusted.addr),
            1,
            &pki.ca
        ),
        tls_upstream(
            "wrongname",
            &format!("sip:{};transport=tls", wrong.addr),
            2,
            &pki.ca
        ),
        tls_upstream("good", &format!("sips:{good_addr}"), 3, &pki.ca),
    );
    let server = tls_server(&dir, &pki, &extra);
    let tls = server.tls.expect("tls address");

    // The good carrier: answers the call, then takes the BYE.
    let carrier = std::thread::spawn(move || {
        let stream = match good.next(Duration::from_secs(20)) {
            Some(Ok(s)) => s,
            Some(Err(e)) => return (Err(format!("handshake with the good peer: {e}")), None),
            None => return (Err("sipfront never dialled the good peer".into()), None),
        };
        let mut ph = common::phone::Phone::tls(stream);
        ph.contact = format!("sip:carrier@{good_addr};transport=tls");
        let r = (|| {
            let invite = ph.wait_invite(Duration::from_secs(15))?;
            ph.answer(&invite)?;
            ph.wait_bye()?;
            Ok(invite)
        })();
        (r, Some(ph.log))
    });

    let mut pbx = TlsPhone::tls(connect(tls, pki.client_config(), "localhost"));
    pbx.contact = format!(
        "sip:alice@{};transport=tls",
        pbx.pipe.stream.sock.local_addr().expect("local")
    );
    let show = |log: &str| format!("{log}\n--- sipfront log ---\n{}", server.log_text());
    let ok = pbx
        .call("12125550000", "alice", "pw-alice", tls)
        .unwrap_or_else(|e| panic!("{e}\n{}", show(&pbx.log)));
    assert!(ok.starts_with("SIP/2.0 200"), "{}", show(&pbx.log));
    let (_, calls) = api_get(&server, TEST_API_KEY, "/v1/calls");
    let call = &calls["items"][0];
    assert_eq!(
        (call["a_transport"].as_str(), call["b_transport"].as_str()),
        (Some("tls"), Some("tls")),
        "{calls}\n{}",
        show(&pbx.log)
    );
    assert_eq!(pbx.hang_up_placed(&ok), 200, "{}", show(&pbx.log));
    let (r, log) = carrier.join().expect("carrier thread");
    let log = log.unwrap_or_default();
    let invite = r.unwrap_or_else(|e| panic!("{e}\n{}", show(&log)));
    let via = header_value(&invite, "Via").unwrap_or("");
    assert!(via.starts_with("SIP/2.0/TLS "), "{via}\n{}", show(&log));

    // Both refusing peers saw a handshake sipfront aborted.
    for (peer, what) in [(&untrusted, "untrusted CA"), (&wrong, "wrong name")] {
        match peer.next(Duration::from_secs(5)) {
            Some(Err(e)) => assert!(e.contains("alert"), "{what}: {e}"),
            Some(Ok(_)) => panic!("{}", show(&format!("{what}: handshake completed"))),
            None => panic!("{}", show(&format!("{what}: never dialled"))),
        }
    }
    let m = metrics(&server);
    assert!(
        m.contains("sipfront_tls_handshake_failures_total{direction=\"outbound\"} 2\n"),
        "{m}\n{}",
        server.log_text()
    );
    let text = server.log_text();
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("TLS connection to 127.0.0.1 failed"))
        .collect();
    assert_eq!(failed.len(), 2, "{text}");
    assert!(
        failed.iter().any(|l| l.contains("UnknownIssuer"))
            && failed.iter().any(|l| l.contains("not valid for name")),
        "{failed:#?}"
    );
}

/// Resident memory of a process, from `/proc/PID/status` (bytes).
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// A counter's value on `/metrics`.
fn metric(server: &Server, name: &str) -> u64 {
    let text = metrics(server);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// Memory per idle TLS connection: `N` clients (1,000; `SIPFRONT_IDLE_TLS`
/// sets another count, up to 9,000 under the 10,000-connection cap) finish
/// the handshake from 127.0.0.10-109 (under the per-IP cap of 100) and
/// stay silent; sipfront's resident memory grows by the figure printed.
/// The goal is 16 KiB a connection (18 KiB today); the test fails over
/// 32 KiB.
#[test]
fn idle_tls_connection_memory() {
    let n: usize = std::env::var("SIPFRONT_IDLE_TLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 9_000);
    let dir = TempDir::new("tls-idle");
    let pki = Pki::new(&dir, "srv", &["localhost"], 2030);
    let server = tls_server(&dir, &pki, "");
    let tls = server.tls.expect("tls address");
    let pid = server.pid();
    let config = pki.client_config();
    let from = |last: u8| {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        sock.bind(&std::net::SocketAddr::from(([127, 0, 0, last], 0)).into())
            .expect("bind");
        sock.connect(&tls.into()).expect("connect");
        common::tls::client(sock.into(), config.clone(), "localhost")
    };
    // Warm up (the first connection's one-off allocations), then measure.
    let warm = from(9);
    std::thread::sleep(Duration::from_millis(300));
    let accepted = metric(&server, "sipfront_tcp_accepted_total");
    let before = rss(pid);
    let clients: Vec<_> = (0..n).map(|i| from(10 + (i % 100) as u8)).collect();
    assert!(
        wait_until(Duration::from_secs(10), || metric(
            &server,
            "sipfront_tcp_accepted_total"
        ) == accepted + n as u64),
        "{}",
        server.log_text()
    );
    std::thread::sleep(Duration::from_millis(300));
    let after = rss(pid);
    let per = after.saturating_sub(before) / n as u64;
    eprintln!(
        "idle TLS connections, sipfront RSS: {n} connections {before} -> {after} bytes \
         ({per} B each)"
    );
    assert_eq!(metric(&server, "sipfront_tcp_refused_per_ip_total"), 0);
    assert_eq!(
        metric(
            &server,
            "sipfront_tls_handshake_failures_total{direction=\"inbound\"}"
        ),
        0,
        "{}",
        server.log_text()
    );
    assert!(per < 32 * 1024, "{per} bytes per idle TLS connection");
    drop((warm, clients));
}
