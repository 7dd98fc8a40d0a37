//! Registrar rules with a fake clock (sans-IO): RFC 3261 §10.3, RFC 5626
//! instance replacement, limits, and hostile input.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::sip::Bytes;

const LOGIN: &str = "100";

fn src(port: u16) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 7], port))
}

/// A REGISTER for `to_user` with the given extra header lines (Contact,
/// Expires ...), Call-ID and CSeq.
fn reg(to_user: &str, call_id: &str, cseq: u32, extra: &[&str]) -> Message {
    let mut s = format!(
        "REGISTER sip:sipfront.local SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK{call_id}{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{to_user}@sipfront.local>;tag=f1\r\n\
         To: <sip:{to_user}@sipfront.local>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         User-Agent: test-ua\r\n"
    );
    for h in extra {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    Message::parse(Bytes::from(s)).expect("test REGISTER parses")
}

struct H {
    r: Registrar,
    t0: Instant,
}

impl H {
    /// Default limits, no keep-alive (its timers have their own tests).
    fn new() -> H {
        H::with(RegistrarConfig {
            keepalive_s: 0,
            ..RegistrarConfig::default()
        })
    }
    fn with(cfg: RegistrarConfig) -> H {
        H {
            r: Registrar::new(cfg, Random::from_seed([4; 32])),
            t0: Instant::now(),
        }
    }
    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }
    fn send(&mut self, m: &Message, port: u16, secs: u64) -> RegisterOutcome {
        let now = self.at(secs);
        self.r
            .register(m, LOGIN, src(port), Transport::Udp, None, now)
    }
    fn contacts(&self, secs: u64) -> Vec<String> {
        self.r
            .store()
            .lookup(LOGIN, self.at(secs))
            .iter()
            .map(|b| b.contact.clone())
            .collect()
    }
}

fn contact_headers(o: &RegisterOutcome) -> Vec<&str> {
    o.headers
        .iter()
        .filter(|(n, _)| *n == "Contact")
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn register_lists_binding_with_expires_and_keeps_source() {
    let mut h = H::new();
    let o = h.send(
        &reg(
            LOGIN,
            "c1",
            1,
            &["Contact: <sip:100@10.1.2.3:5060>", "Expires: 600"],
        ),
        40000,
        0,
    );
    assert_eq!(o.status, StatusCode::OK);
    assert_eq!(contact_headers(&o), ["<sip:100@10.1.2.3:5060>;expires=600"]);
    let b = h.r.store().lookup(LOGIN, h.at(1));
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source, src(40000));
    assert_eq!(b[0].contact, "sip:100@10.1.2.3:5060");
    assert_eq!(b[0].user_agent, "test-ua");
    assert_eq!(b[0].transport, Transport::Udp);
    assert_eq!(h.r.store().len(), 1);
}

#[test]
fn binding_expires_on_time() {
    let mut h = H::new();
    h.send(
        &reg(
            LOGIN,
            "c1",
            1,
            &["Contact: <sip:100@10.1.2.3>", "Expires: 60"],
        ),
        1,
        0,
    );
    assert_eq!(h.r.poll_timeout(), Some(h.at(60)));
    assert_eq!(h.contacts(59).len(), 1);
    // Readers never see it past its time, even before the sweep.
    assert!(h.contacts(60).is_empty());
    h.r.handle_timeout(h.at(59));
    assert_eq!(h.r.store().len(), 1);
    h.r.handle_timeout(h.at(60));
    assert!(h.r.store().is_empty());
    assert_eq!(h.r.poll_timeout(), None);
}

#[test]
fn refresh_extends() {
    let mut h = H::new();
    let c = "Contact: <sip:100@10.1.2.3>";
    h.send(&reg(LOGIN, "c1", 1, &[c, "Expires: 60"]), 1, 0);
    let o = h.send(&reg(LOGIN, "c1", 2, &[c, "Expires: 60"]), 1, 50);
    assert_eq!(contact_headers(&o), ["<sip:100@10.1.2.3>;expires=60"]);
    assert_eq!(h.r.store().len(), 1);
    h.r.handle_timeout(h.at(60)); // the first deadline: stale now
    assert_eq!(h.contacts(100).len(), 1);
    h.r.handle_timeout(h.at(110));
    assert!(h.r.store().is_empty());
}

#[test]
fn wildcard_removes_all_only_with_expires_zero_and_alone() {
    let mut h = H::new();
    h.send(
        &reg(
            LOGIN,
            "c1",
            1,
            &["Contact: <sip:100@10.1.2.3>, <sip:100@10.1.2.4>"],
        ),
        1,
        0,
    );
    assert_eq!(h.r.store().len(), 2);
    let o = h.send(&reg(LOGIN, "c1", 2, &["Contact: *"]), 1, 1);
    assert_eq!(o.status, StatusCode::BAD_REQUEST);
    let o = h.send(&reg(LOGIN, "c1", 3, &["Contact: *", "Expires: 5"]), 1, 1);
    assert_eq!(o.status, StatusCode::BAD_REQUEST);
    let o = h.send(
        &reg(
            LOGIN,
            "c1",
            4,
            &["Contact: *, <sip:100@10.1.2.3>", "Expires: 0"],
        ),
        1,
        1,
    );
    assert_eq!(o.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.r.store().len(), 2);
    let o = h.send(&reg(LOGIN, "c9", 1, &["Contact: *", "Expires: 0"]), 1, 1);
    assert_eq!(o.status, StatusCode::OK);
    assert!(contact_headers(&o).is_empty());
    assert!(h.r.store().is_empty());
}

#[test]
fn expires_zero_removes_one() {
    let mut h = H::new();
    h.send(
        &reg(
            LOGIN,
            "c1",
            1,
            &["Contact: <sip:100@a.example>, <sip:100@b.example>"],
        ),
        1,
        0,
    );
    let o = h.send(
        &reg(LOGIN, "c1", 2, &["Contact: <sip:100@a.example>;expires=0"]),
        1,
        1,
    );
    assert_eq!(o.status, StatusCode::OK);
    assert_eq!(contact_headers(&o), ["<sip:100@b.example>;expires=3599"]);
    // Removing what is not there is fine.
    let o = h.send(
        &reg(
            LOGIN,
            "c1",
            3,
            &["Contact: <sip:100@zz.example>", "Expires: 0"],
        ),
        1,
        1,
    );
    assert_eq!(o.status, StatusCode::OK);
    assert_eq!(h.r.store().len(), 1);
}

#[test]
fn instance_replaces_binding_from_new_nat_port() {
    let mut h = H::new();
    let inst = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"";
    h.send(
        &reg(
            LOGIN,
            "c1",
            1,
            &[&format!(
                "Contact: <sip:100@192.168.1.2:5060>;{inst};reg-id=1"
            )],
        ),
        40000,
        0,
    );
    // Rebooted behind a new NAT binding: new Call-ID, new port, new URI.
    let o = h.send(
        &reg(
            LOGIN,
            "other",
            1,
            &[&format!(
                "Contact: <sip:100@192.168.1.2:5062>;{inst};reg-id=1"
            )],
        ),
        40002,
        10,
    );
    assert_eq!(o.status, StatusCode::OK);
    let b = h.r.store().lookup(LOGIN, h.at(11));
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source, src(40002));
    assert_eq!(b[0].contact, "sip:100@192.168.1.2:5062");
    assert_eq!(b[0].reg_id, Some(1));
    assert_eq!(
        b[0].instance.as_deref(),
        Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
    );
    let c = contact_headers(&o);
    assert_eq!(c.len(), 1);
    assert!(c[0].contains("+sip.instance=\"<urn:uuid:") && c[0].ends_with(";reg-id=1"));
    // Another reg-id of the same instance is another flow.
    h.send(
        &reg(
            LOGIN,
            "other",
            2,
            &[&format!(
                "Contact: <sip:100@192.168.1.2:5062>;{inst};reg-id=2"
            )],
        ),
        40002,
        12,
    );
    assert_eq!(h.r.store().len(), 2);
}

#[test]
fn same_uri_from_new_source_updates_source() {
    let mut h = H::new();
    let c = "Contact: <sip:100@10.1.2.3:5060>";
    h.send(&reg(LOGIN, "c1", 1, &[c]), 40000, 0);
    h.send(&reg(LOGIN, "c1", 2, &[c]), 41000, 5);
    let b = h.r.store().lookup(LOGIN, h.at(6));
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source, src(41000));
}

#[test]
fn contact_param_wins_over_expires_header_then_default() {
    let mut h = H::new();
    let o = h.send(
        &reg(
            LOGIN,
            "c1",
            1,
            &[
                "Contact: <sip:100@a.example>;expires=120, <sip:100@b.example>",
                "Expires: 300",
            ],
        ),
        1,
        0,
    );
    let mut c = contact_headers(&o);
    c.sort_unstable();
    assert_eq!(
        c,
        [
            "<sip:100@a.example>;expires=120",
            "<sip:100@b.example>;expires=300"
        ]
    );
    let o = h.send(
        &reg(LOGIN, "c1", 2, &["Contact: <sip:100@c.example>"]),
        1,
        0,
    );
    assert!(contact_headers(&o).contains(&"<sip:100@c.example>;expires=3600"));
}

#[test]
fn too_brief_is_423_with_min_expires_and_changes_nothing() {
    let mut h = H::new();
    let o = h.send(
        &reg(
            LOGIN,
            "c1",
            1,
            &["Contact: <sip:100@a.example>", "Expires: 10"],
        ),
        1,
        0,
    );
    assert_eq!(o.status, StatusCode::INTERVAL_TOO_BRIEF);
    assert_eq!(o.headers, vec![("Min-Expires", "60".to_owned())]);
    let o = h.send(
        &reg(LOGIN, "c1", 2, &["Contact: <sip:100@a.example>;expires=59"]),
        1,
        0,
    );
    assert_eq!(o.status, StatusCode::INTERVAL_TOO_BRIEF);
    assert!(h.r.store().is_empty());
}

#[test]
fn too_long_is_clamped_including_huge_values() {
    let mut h = H::new();
    let o = h.send(
        &reg(
            LOGIN,
            "c1",
            1,
            &["Contact: <sip:100@a.example>", "Expires: 86400"],
        ),
        1,
        0,
    );
    assert_eq!(contact_headers(&o), ["<sip:100@a.example>;expires=3600"]);
    let o = h.send(
        &reg(
            LOGIN,
            "c1",
            2,
            &["Contact: <sip:100@a.example>;expires=999999999999999999999999"],
        ),
        1,
        0,
    );
    assert_eq!(o.status, StatusCode::OK);
    assert_eq!(contact_headers(&o), ["<sip:100@a.example>;expires=3600"]);
    let o = h.send(
        &reg(
            LOGIN,
            "c1",
            3,
            &["Contact: <sip:100@a.example>", "Expires: 99999999999999"],
        ),
        1,
        0,
    );
    assert_eq!(o.status, StatusCode::OK);
}

#[test]
fn to_user_must_be_the_login() {
    let mut h = H::new();
    let o = h.send(
        &reg("200", "c1", 1, &["Contact: <sip:200@a.example>"]),
        1,
        0,
    );
    assert_eq!(o.status, StatusCode::FORBIDDEN);
    assert!(h.r.store().is_empty());
    assert!(h.r.store().lookup("200", h.at(0)).is_empty());
}

#[test]
fn max_contacts_evicts_oldest_and_refuses_too_many_at_once() {
    let mut h = H::with(RegistrarConfig {
        max_contacts: 2,
        ..RegistrarConfig::default()
    });
    for (i, host) in ["a", "b", "c"].iter().enumerate() {
        let o = h.send(
            &reg(
                LOGIN,
                "c1",
                u32::try_from(i).unwrap() + 1,
                &[&format!("Contact: <sip:100@{host}.example>")],
            ),
            1,
            u64::try_from(i).unwrap(),
        );
        assert_eq!(o.status, StatusCode::OK);
    }
    // Most recent first; "a" was evicted.
    assert_eq!(h.contacts(3), ["sip:100@c.example", "sip:100@b.example"]);
    let o = h.send(
        &reg(
            LOGIN,
            "c1",
            9,
            &["Contact: <sip:100@x.example>, <sip:100@y.example>, <sip:100@z.example>"],
        ),
        1,
        4,
    );
    assert_eq!(o.status, StatusCode::FORBIDDEN);
    assert_eq!(h.r.store().len(), 2);
}

#[test]
fn out_of_order_cseq_same_call_id_is_refused_and_changes_nothing() {
    let mut h = H::new();
    h.send(
        &reg(
            LOGIN,
            "c1",
            5,
            &["Contact: <sip:100@a.example>", "Expires: 600"],
        ),
        1,
        0,
    );
    let o = h.send(
        &reg(
            LOGIN,
            "c1",
            4,
            &["Contact: <sip:100@a.example>", "Expires: 0"],
        ),
        1,
        1,
    );
    assert_eq!(o.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.r.store().len(), 1);
    let o = h.send(&reg(LOGIN, "c1", 5, &["Contact: *", "Expires: 0"]), 1, 1);
    assert_eq!(o.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.r.store().len(), 1);
    // Another Call-ID may: a rebooted UA starts over at CSeq 1.
    let o = h.send(
        &reg(
            LOGIN,
            "c2",
            1,
            &["Contact: <sip:100@a.example>", "Expires: 0"],
        ),
        1,
        1,
    );
    assert_eq!(o.status, StatusCode::OK);
    assert!(h.r.store().is_empty());
}

#[test]
fn no_contact_is_a_query() {
    let mut h = H::new();
    h.send(
        &reg(LOGIN, "c1", 1, &["Contact: <sip:100@a.example>"]),
        1,
        0,
    );
    let o = h.send(&reg(LOGIN, "c1", 2, &[]), 1, 100);
    assert_eq!(o.status, StatusCode::OK);
    assert_eq!(contact_headers(&o), ["<sip:100@a.example>;expires=3500"]);
}

#[test]
fn garbage_contact_or_expires_is_400() {
    let mut h = H::new();
    for extra in [
        &["Contact: <sip:100@a.example"][..],
        &["Contact: <sip:100@a.example>;expires=soon"],
        &["Contact: <sip:100@a.example>;expires"],
        &["Contact: <sip:100@a.example>;reg-id=x"],
        &["Contact: <mailto:x@y>"],
        &["Contact: <sip:100@a.example>", "Expires: -1"],
        &["Contact: <sip:100@a.example>", "Expires: later"],
    ] {
        let o = h.send(&reg(LOGIN, "c1", 1, extra), 1, 0);
        assert_eq!(o.status, StatusCode::BAD_REQUEST, "{extra:?}");
    }
    assert!(h.r.store().is_empty());
}

#[test]
fn three_hundred_contacts_never_panic() {
    let mut h = H::with(RegistrarConfig {
        max_contacts: 1000,
        ..RegistrarConfig::default()
    });
    let list: Vec<String> = (0..300)
        .map(|i| format!("<sip:100@h{i}.example>"))
        .collect();
    let line = format!("Contact: {}", list.join(", "));
    let o = h.send(&reg(LOGIN, "c1", 1, &[&line]), 1, 0);
    assert_eq!(o.status, StatusCode::OK);
    assert_eq!(h.r.store().len(), 300);
    let mut h = H::new();
    let o = h.send(&reg(LOGIN, "c1", 1, &[&line]), 1, 0);
    assert_eq!(o.status, StatusCode::FORBIDDEN);
    // The same contact many times in one request is one binding.
    let line = format!("Contact: {}", ["<sip:100@a.example>"; 50].join(","));
    let o = h.send(&reg(LOGIN, "c2", 1, &[&line]), 1, 0);
    assert_eq!(o.status, StatusCode::FORBIDDEN);
    let line = format!("Contact: {}", ["<sip:100@a.example>"; 5].join(","));
    let o = h.send(&reg(LOGIN, "c2", 2, &[&line]), 1, 0);
    assert_eq!(o.status, StatusCode::OK);
    assert_eq!(h.r.store().len(), 1);
}

#[test]
fn hostile_messages_never_panic() {
    let bodies = [
        "Contact: *\r\nContact: *",
        "Contact: <sip:100@a>;expires=4294967296;q=7",
        "Contact: \"\\\" <sip:100@a>",
        "Contact: <sip:100@[::1]:99999>",
        "Contact: <sip:100@a>;+sip.instance=\"\";reg-id=99999999999",
        "Expires: 4294967295",
    ];
    let mut h = H::new();
    for (i, b) in bodies.iter().enumerate() {
        let raw = format!(
            "REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK{i}\r\n\
             From: <sip:100@x>;tag=1\r\nTo: <sip:100@x>\r\nCall-ID: h{i}\r\n\
             CSeq: 1 REGISTER\r\n{b}\r\nContent-Length: 0\r\n\r\n"
        );
        if let Ok(m) = Message::parse(Bytes::from(raw)) {
            let _ = h.send(&m, 1, 0);
        }
    }
}

#[test]
fn tcp_binding_keeps_connection_and_goes_with_it() {
    let mut h = H::new();
    let m = reg(
        LOGIN,
        "c1",
        1,
        &["Contact: <sip:100@10.0.0.9;transport=tcp>"],
    );
    let conn = crate::transport::ConnId(7);
    let now = h.at(0);
    h.r.register(&m, LOGIN, src(5000), Transport::Tcp, Some(conn), now);
    let b = h.r.store().lookup(LOGIN, now);
    assert_eq!(b[0].conn, Some(conn));
    assert_eq!(b[0].transport, Transport::Tcp);
    h.r.connection_closed(crate::transport::ConnId(8));
    assert_eq!(h.r.store().len(), 1);
    h.r.connection_closed(conn);
    assert!(h.r.store().is_empty());
}

#[test]
fn snapshot_view_for_the_api() {
    let mut h = H::new();
    h.send(
        &reg(
            LOGIN,
            "c1",
            1,
            &["Contact: <sip:100@a.example>", "Expires: 120"],
        ),
        9,
        0,
    );
    let v = h.r.store().snapshot(h.at(20));
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].login, "100");
    assert_eq!(v[0].expires, 100);
    assert_eq!(v[0].source, "203.0.113.7:9");
    assert_eq!(v[0].transport, "UDP");
    let all: Vec<_> = h.r.store().iter(h.at(20)).collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, "100");
    assert!(h.r.store().snapshot(h.at(120)).is_empty());
}

#[test]
fn config_is_sanitized_and_reloadable() {
    let mut r = Registrar::new(
        RegistrarConfig {
            min_expires: 0,
            max_expires: 0,
            default_expires: 9,
            max_contacts: 0,
            keepalive_s: 0,
            persist: true,
        },
        Random::from_seed([4; 32]),
    );
    let c = r.config();
    assert_eq!(
        (
            c.min_expires,
            c.max_expires,
            c.default_expires,
            c.max_contacts
        ),
        (1, 1, 1, 1)
    );
    r.set_config(RegistrarConfig {
        min_expires: 30,
        ..RegistrarConfig::default()
    });
    assert_eq!(r.config().min_expires, 30);
}
