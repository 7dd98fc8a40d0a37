//! The registrar through the real binary on loopback (SPEC §5 "Registrar"):
//! SIPp REGISTER scenarios under `tests/sipp/reg_*.xml` (digest `401` then
//! `200`, wrong password `403`, too brief `423`, `*` unregister), a NATed
//! Contact naming a private address, and baresip as a real softphone.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    free_port, scenario, sipp_counter, sipp_run, wait_registrations, Server, TempDir,
    LOOPBACK_CONFIG, TEST_API_KEY_CONFIG,
};

const LOGIN: &str = "100";
const PASSWORD: &str = "s3cret";

fn registrar_config() -> String {
    format!(
        "{LOOPBACK_CONFIG}{TEST_API_KEY_CONFIG}\n[registrar]\nmin_expires = 60\nmax_expires = 3600\n\n\
         [[trunk]]\nid = 1\nname = \"{LOGIN}\"\npassword = \"{PASSWORD}\"\n"
    )
}

/// Runs one REGISTER scenario once against `target` from its own port
/// (never SIPp's default 5060, which parallel tests would share) and
/// asserts it succeeded.
fn sipp_register(
    server: &Server,
    target: SocketAddr,
    sf: &str,
    password: &str,
    contact: &str,
    expires: &str,
) -> String {
    sipp_register_from(server, target, sf, password, contact, expires, free_port())
}

/// [`sipp_register`] from 127.0.0.1:`port`.
fn sipp_register_from(
    server: &Server,
    target: SocketAddr,
    sf: &str,
    password: &str,
    contact: &str,
    expires: &str,
    port: u16,
) -> String {
    let sf = scenario(sf).display().to_string();
    let target_s = target.to_string();
    let port = port.to_string();
    let args = [
        "-sf",
        sf.as_str(),
        "-s",
        LOGIN,
        "-au",
        LOGIN,
        "-ap",
        password,
        "-key",
        "contact",
        contact,
        "-key",
        "expires",
        expires,
        "-i",
        "127.0.0.1",
        "-p",
        port.as_str(),
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "20s",
        "-timeout_error",
        "-recv_timeout",
        "5000",
        target_s.as_str(),
    ];
    let (code, text) = sipp_run(&args);
    let ok = sipp_counter(&text, "Successful call");
    let failed = sipp_counter(&text, "Failed call");
    assert!(
        code == Some(0) && ok == Some(1) && failed == Some(0),
        "SIPp {sf}: exit {code:?}, successful {ok:?}, failed {failed:?}\n\
         --- sipp output ---\n{text}\n--- sipfront log ---\n{}",
        server.log_text()
    );
    text
}

#[test]
fn register_with_digest_gets_200_listing_the_contact() {
    let server = Server::start(&registrar_config());
    let contact = "sip:100@127.0.0.1:5999";
    sipp_register(&server, server.udp, "reg_ok.xml", PASSWORD, contact, "300");
    assert!(
        server.wait_log(&format!("contact={contact}"), Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
}

#[test]
fn register_over_tcp_gets_200() {
    let server = Server::start(&registrar_config());
    let sf = scenario("reg_ok.xml").display().to_string();
    let target = server.tcp.to_string();
    let port = free_port().to_string();
    let (code, text) = sipp_run(&[
        "-sf",
        &sf,
        "-s",
        LOGIN,
        "-au",
        LOGIN,
        "-ap",
        PASSWORD,
        "-key",
        "contact",
        "sip:100@127.0.0.1:5998;transport=tcp",
        "-key",
        "expires",
        "600",
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "t1",
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "20s",
        "-timeout_error",
        &target,
    ]);
    assert!(
        code == Some(0) && sipp_counter(&text, "Successful call") == Some(1),
        "{text}\n--- sipfront log ---\n{}",
        server.log_text()
    );
    assert!(
        server.wait_log("transport=TCP", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
}

#[test]
fn register_with_wrong_password_gets_403() {
    let server = Server::start(&registrar_config());
    sipp_register(
        &server,
        server.udp,
        "reg_forbidden.xml",
        "wrong",
        "sip:100@127.0.0.1:5999",
        "300",
    );
    // The refusal is logged; nothing was registered before or after it.
    assert!(
        server.wait_log("REGISTER refused", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
    assert!(
        !server.log_text().contains(" registered"),
        "{}",
        server.log_text()
    );
}

#[test]
fn register_expires_10_gets_423_with_min_expires() {
    let server = Server::start(&registrar_config());
    sipp_register(
        &server,
        server.udp,
        "reg_too_brief.xml",
        PASSWORD,
        "sip:100@127.0.0.1:5999",
        "10",
    );
}

#[test]
fn unregister_with_star_leaves_no_binding() {
    let server = Server::start(&registrar_config());
    sipp_register(
        &server,
        server.udp,
        "reg_unregister.xml",
        PASSWORD,
        "sip:100@127.0.0.1:5999",
        "300",
    );
    assert!(
        server.wait_log("unregistered: Contact: *", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
}

#[test]
fn private_contact_is_bound_to_the_packet_source() {
    let server = Server::start(&registrar_config());
    sipp_register(
        &server,
        server.udp,
        "reg_ok.xml",
        PASSWORD,
        "sip:100@10.1.2.3:5060",
        "300",
    );
    // The binding keeps the private Contact as registered, and the
    // loopback source the REGISTER came from (where calls go). SIPp may
    // return before the core has logged its line: ask the API, which
    // answers from the core itself, until the binding shows.
    let items = wait_registrations(&server, Duration::from_secs(10), |items| {
        items
            .iter()
            .any(|r| r["contact"] == "sip:100@10.1.2.3:5060")
    })
    .unwrap_or_else(|| panic!("no registration listed:\n{}", server.log_text()));
    let binding = items
        .iter()
        .find(|r| r["contact"] == "sip:100@10.1.2.3:5060")
        .unwrap_or_else(|| panic!("{items:?}"));
    assert_eq!(binding["login"], LOGIN, "{items:?}");
    assert_eq!(binding["transport"], "UDP", "{items:?}");
    let source = binding["source"].as_str().unwrap_or_default();
    assert!(source.starts_with("127.0.0.1:"), "{items:?}");
    assert!(
        server.wait_log("contact=sip:100@10.1.2.3:5060", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
    let line = server
        .log_text()
        .lines()
        .find(|l| l.contains("registered") && l.contains("contact=sip:100@10.1.2.3:5060"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(line.contains(&format!("source={source}")), "{line}");
    assert!(line.contains("transport=UDP"), "{line}");
}

// ---- keep-alive (SPEC §8.2) ----------------------------------------------

/// The phone's side of a keep-alive OPTIONS: a `200 OK` echoing Via, From,
/// To, Call-ID and CSeq (RFC 3261 §8.2.6.2).
fn answer_options(req: &str) -> Option<String> {
    if !req.starts_with("OPTIONS ") {
        return None;
    }
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in req.split("\r\n") {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out)
}

/// A NATed phone registers over UDP from 127.0.0.1:X (SIPp), then a socket
/// bound to X plays the phone: while it answers the OPTIONS pings
/// (`keepalive_s = 1`) the binding stays; once it goes silent (its NAT
/// mapping gone), the binding leaves `/v1/registrations` after two
/// unanswered pings, long before its 300 s expiry.
#[test]
fn udp_contact_that_stops_answering_options_loses_its_binding() {
    let cfg = registrar_config().replace("[registrar]\n", "[registrar]\nkeepalive_s = 1\n");
    let server = Server::start(&cfg);
    let port = free_port();
    let contact = "sip:100@10.9.8.7:5060";
    sipp_register_from(
        &server,
        server.udp,
        "reg_ok.xml",
        PASSWORD,
        contact,
        "300",
        port,
    );
    let phone = std::net::UdpSocket::bind(("127.0.0.1", port)).expect("bind the phone's port");
    phone
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let listed = |items: &[serde_json::Value]| items.iter().any(|r| r["contact"] == contact);

    // Answering: three pings in a row, from sipfront's SIP port, to the
    // NAT address, for the registered Contact.
    let mut answered = 0;
    let end = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 65_536];
    while answered < 3 && Instant::now() < end {
        let Ok((n, from)) = phone.recv_from(&mut buf) else {
            continue;
        };
        let req = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert_eq!(from, server.udp, "ping from elsewhere: {req}");
        assert!(
            req.starts_with(&format!("OPTIONS {contact} SIP/2.0")),
            "{req}"
        );
        if let Some(resp) = answer_options(&req) {
            phone.send_to(resp.as_bytes(), from).expect("answer");
            answered += 1;
        }
    }
    assert_eq!(
        answered,
        3,
        "no keep-alive OPTIONS came\n{}",
        server.log_text()
    );
    assert!(
        wait_registrations(&server, Duration::from_secs(5), listed).is_some(),
        "the answering phone lost its binding\n{}",
        server.log_text()
    );

    // Silent: the binding goes (two more pings, ~2 s), and it is logged.
    let silent_from = Instant::now();
    let gone = wait_registrations(&server, Duration::from_secs(20), |items| !listed(items));
    assert!(
        gone.is_some(),
        "the silent phone kept its binding\n{}",
        server.log_text()
    );
    eprintln!(
        "binding dropped {:?} after the phone went silent",
        silent_from.elapsed()
    );
    assert!(
        server.wait_log("no answer to 2 keep-alive OPTIONS", Duration::from_secs(5)),
        "{}",
        server.log_text()
    );
}

// ---- baresip -----------------------------------------------------------

/// baresip's config dir for a headless softphone on loopback (TESTING-NOTES).
fn baresip_dir(sip_port: u16, server: SocketAddr) -> TempDir {
    let dir = TempDir::new("baresip");
    dir.write(
        "config",
        &format!(
            "poll_method\t\tpoll\n\
             sip_listen\t\t127.0.0.1:{sip_port}\n\
             net_interface\t\t127.0.0.1\n\
             audio_player\t\taubridge,nil\n\
             audio_source\t\tausine,440\n\
             audio_alert\t\taubridge,nil\n\
             ausrc_srate\t\t48000\n\
             ausrc_channels\t\t2\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\n\
             module\t\t\tausine.so\n\
             module\t\t\taubridge.so\n\
             module_tmp\t\taccount.so\n"
        ),
    );
    dir.write(
        "accounts",
        &format!(
            "<sip:{LOGIN}@{}:{};transport=udp>;auth_pass={PASSWORD};regint=60;answermode=auto;mwi=no\n",
            server.ip(),
            server.port()
        ),
    );
    dir
}

fn baresip_bin() -> &'static str {
    if let Err(e) = Command::new("baresip").arg("-h").output() {
        panic!(
            "baresip is not installed ({e}). Install it with \
             `apt-get update && apt-get install -y baresip`, or run ./test.sh which does."
        );
    }
    "baresip"
}

#[test]
fn baresip_registers_as_a_real_softphone() {
    let server = Server::start(&registrar_config());
    let port = free_port();
    let dir = baresip_dir(port, server.udp);
    let out_path = dir.path().join("baresip.out");
    let out = std::fs::File::create(&out_path).expect("create baresip output");
    let err = out.try_clone().expect("clone file");
    let mut child = Command::new(baresip_bin())
        .arg("-f")
        .arg(dir.path())
        .args(["-t", "30"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start baresip");
    let end = Instant::now() + Duration::from_secs(20);
    let mut registered = false;
    while Instant::now() < end {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains("200 OK") && l.contains("[1 binding]"))
        {
            registered = true;
            break;
        }
        if text.contains("403 Forbidden") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM (by its own pid): baresip unregisters on the way out.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stop = Instant::now() + Duration::from_secs(5);
    while Instant::now() < stop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        registered,
        "baresip did not register\n--- baresip ---\n{text}\n--- sipfront log ---\n{}",
        server.log_text()
    );
    assert!(
        server.wait_log("source=127.0.0.1:", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
    // Its unregister on SIGTERM reaches us.
    assert!(
        server.wait_log("unregistered", Duration::from_secs(10)),
        "--- baresip ---\n{text}\n--- sipfront log ---\n{}",
        server.log_text()
    );
}
