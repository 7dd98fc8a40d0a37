//! SIP over TLS (RFC 3261 §26.2, RFC 5630) against the real binary, with
//! certificates made by the test (`rcgen`) and a rustls client written in
//! the test: the listener answers over TLS, certificates are re-read on
//! SIGHUP without dropping connections (their expiry is a metric), bad
//! files are `sipfront check` errors naming file, line and key, and
//! clients that are not TLS or stall the handshake are closed within the
//! deadline while the server keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::phone::TlsPhone;
use common::tls::{connect, Pki};
use common::{Server, TempDir, BIN, LOOPBACK_CONFIG, TEST_API_KEY, TEST_API_KEY_CONFIG};

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
