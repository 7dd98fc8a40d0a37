//! Write-back and restore of bindings (module `persist`) with a fake clock
//! and a fake wall clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::routing::Locations;
use crate::sip::Bytes;

const WALL0: u64 = 1_800_000_000_000;

fn reg(login: &str, call_id: &str, cseq: u32, contact: &str, expires: u32) -> Message {
    let s = format!(
        "REGISTER sip:sipfront.local SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK{call_id}{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{login}@sipfront.local>;tag=f1\r\n\
         To: <sip:{login}@sipfront.local>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <{contact}>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\n\
         Expires: {expires}\r\n\
         User-Agent: ua/1\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(s)).expect("test REGISTER parses")
}

fn nat() -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 9], 40123))
}

fn registrar() -> Registrar {
    Registrar::new(
        RegistrarConfig {
            keepalive_s: 0,
            ..RegistrarConfig::default()
        },
        Random::from_seed([4; 32]),
    )
}

fn drain(r: &mut Registrar, now: Instant, unix_ms: u64) -> Vec<BindingWrite> {
    std::iter::from_fn(|| r.poll_write(now, unix_ms)).collect()
}

#[test]
fn every_change_is_one_write_of_the_whole_login() {
    let mut r = registrar();
    let t0 = Instant::now();
    let m = reg("100", "c1", 1, "sip:100@10.0.0.5:5060", 600);
    assert!(r
        .register(&m, "100", nat(), Transport::Udp, None, t0)
        .status
        .is_success());
    // A refresh before the drain: still one write, with the latest state.
    let m = reg("100", "c1", 2, "sip:100@10.0.0.5:5060", 300);
    assert!(r
        .register(&m, "100", nat(), Transport::Udp, None, t0)
        .status
        .is_success());
    assert_eq!(r.pending_writes(), 1);
    let w = drain(&mut r, t0, WALL0);
    assert_eq!(w.len(), 1, "{w:?}");
    let b = &w[0].bindings;
    assert_eq!(w[0].login, "100");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].contact, "sip:100@10.0.0.5:5060");
    assert_eq!(b[0].source, nat());
    assert_eq!(b[0].transport, Transport::Udp);
    assert_eq!(b[0].expires_unix_ms, WALL0 + 300_000);
    assert_eq!(b[0].instance.as_deref(), Some("<urn:uuid:1>"));
    assert_eq!(b[0].reg_id, Some(1));
    assert_eq!((b[0].call_id.as_str(), b[0].cseq), ("c1", 2));
    assert_eq!(b[0].user_agent, "ua/1");
    assert!(r.poll_write(t0, WALL0).is_none());

    // Removal (Expires: 0) is a write of nothing.
    let m = reg("100", "c1", 3, "sip:100@10.0.0.5:5060", 0);
    assert!(r
        .register(&m, "100", nat(), Transport::Udp, None, t0)
        .status
        .is_success());
    let w = drain(&mut r, t0, WALL0);
    assert_eq!(w.len(), 1);
    assert!(w[0].bindings.is_empty());
}

#[test]
fn expiry_and_closed_connections_are_written_too() {
    let mut r = registrar();
    let t0 = Instant::now();
    let m = reg("100", "c1", 1, "sip:100@10.0.0.5:5060", 60);
    r.register(&m, "100", nat(), Transport::Udp, None, t0);
    let conn = crate::transport::ConnId(7);
    let m = reg("200", "c2", 1, "sip:200@10.0.0.6:5060;transport=tcp", 600);
    r.register(&m, "200", nat(), Transport::Tcp, Some(conn), t0);
    drain(&mut r, t0, WALL0);

    let later = t0 + Duration::from_secs(61);
    r.handle_timeout(later);
    r.connection_closed(conn);
    let mut w = drain(&mut r, later, WALL0 + 61_000);
    w.sort_by(|a, b| a.login.cmp(&b.login));
    let logins: Vec<(&str, usize)> = w
        .iter()
        .map(|w| (w.login.as_str(), w.bindings.len()))
        .collect();
    assert_eq!(logins, [("100", 0), ("200", 0)]);
}

#[test]
fn restore_keeps_remaining_expiry_and_nat_source_and_drops_expired_and_tcp() {
    // Before the restart: three logins written.
    let mut old = registrar();
    let t0 = Instant::now();
    let m = reg("100", "c1", 5, "sip:100@10.0.0.5:5060", 600);
    old.register(&m, "100", nat(), Transport::Udp, None, t0);
    let m = reg("200", "c2", 1, "sip:200@10.0.0.6:5060", 60);
    old.register(&m, "200", nat(), Transport::Udp, None, t0);
    let conn = crate::transport::ConnId(1);
    let m = reg("300", "c3", 1, "sip:300@10.0.0.7:5060;transport=tcp", 600);
    old.register(&m, "300", nat(), Transport::Tcp, Some(conn), t0);
    let rows: Vec<(String, StoredBinding)> = drain(&mut old, t0, WALL0)
        .into_iter()
        .flat_map(|w| {
            let login = w.login;
            w.bindings.into_iter().map(move |b| (login.clone(), b))
        })
        .collect();
    assert_eq!(rows.len(), 3);

    // 100 s later, a new process with a new monotonic origin.
    let mut r = registrar();
    let t1 = Instant::now() + Duration::from_secs(5000);
    let report = r.restore(rows, t1, WALL0 + 100_000);
    assert_eq!(
        report,
        RestoreReport {
            restored: 1,
            expired: 1,
            tcp_dropped: 1
        }
    );
    let b = r.store().lookup("100", t1);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].expires_in(t1), 500);
    assert_eq!(b[0].conn, None);
    // Calls reach it at the NAT source, with its Contact as Request-URI.
    let reach = r.store().reach("100", t1);
    assert_eq!(reach.len(), 1);
    assert_eq!(reach[0].addr, nat());
    assert_eq!(reach[0].uri, "sip:100@10.0.0.5:5060");
    assert!(r.store().lookup("200", t1).is_empty());
    assert!(r.store().lookup("300", t1).is_empty());

    // Only the logins that lost rows are written (their rows go).
    let mut w = drain(&mut r, t1, WALL0 + 100_000);
    w.sort_by(|a, b| a.login.cmp(&b.login));
    let logins: Vec<(&str, usize)> = w
        .iter()
        .map(|w| (w.login.as_str(), w.bindings.len()))
        .collect();
    assert_eq!(logins, [("200", 0), ("300", 0)]);

    // CSeq ordering goes on across the restart (§10.3 step 7).
    let stale = reg("100", "c1", 4, "sip:100@10.0.0.5:5060", 600);
    assert_eq!(
        r.register(&stale, "100", nat(), Transport::Udp, None, t1)
            .status,
        StatusCode::BAD_REQUEST
    );
    // And it expires on time.
    r.handle_timeout(t1 + Duration::from_secs(500));
    assert!(r.store().is_empty());
}

/// `[registrar] persist = false`: nothing is marked for the store; turned
/// on by a reload, the next change is written.
#[test]
fn persist_off_marks_nothing_until_turned_on() {
    let mut r = Registrar::new(
        RegistrarConfig {
            keepalive_s: 0,
            persist: false,
            ..RegistrarConfig::default()
        },
        Random::from_seed([4; 32]),
    );
    let t0 = Instant::now();
    let m = reg("100", "c1", 1, "sip:100@10.0.0.5:5060", 600);
    assert!(r
        .register(&m, "100", nat(), Transport::Udp, None, t0)
        .status
        .is_success());
    assert_eq!(r.pending_writes(), 0);
    assert!(r.poll_write(t0, WALL0).is_none());
    r.set_config(RegistrarConfig {
        keepalive_s: 0,
        ..RegistrarConfig::default()
    });
    let m = reg("100", "c1", 2, "sip:100@10.0.0.5:5060", 600);
    assert!(r
        .register(&m, "100", nat(), Transport::Udp, None, t0)
        .status
        .is_success());
    assert_eq!(drain(&mut r, t0, WALL0).len(), 1);
}

/// Rows come a login at a time; a store that split one login's rows
/// still restores all of them, the earlier run first.
#[test]
fn restore_groups_runs_and_joins_a_split_login() {
    let t0 = Instant::now();
    let row = |login: &str, call_id: &str| {
        (
            login.to_owned(),
            StoredBinding {
                contact: format!("sip:{login}@10.0.0.5;c={call_id}"),
                source: nat(),
                transport: Transport::Udp,
                expires_unix_ms: WALL0 + 60_000,
                instance: None,
                reg_id: None,
                call_id: call_id.to_owned(),
                cseq: 1,
                user_agent: String::new(),
            },
        )
    };
    let rows = vec![
        row("a", "ca1"),
        row("b", "cb1"),
        row("b", "cb2"),
        row("a", "ca2"),
    ];
    let mut r = registrar();
    let report = r.restore(rows, t0, WALL0);
    assert_eq!(report.restored, 4);
    let ids = |login: &str| -> Vec<String> {
        r.store()
            .raw(login)
            .iter()
            .map(|b| b.call_id.clone())
            .collect()
    };
    assert_eq!(ids("a"), ["ca1", "ca2"]);
    assert_eq!(ids("b"), ["cb1", "cb2"]);
    assert_eq!(r.store().len(), 4);
}
