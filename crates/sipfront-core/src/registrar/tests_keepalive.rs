//! Keep-alive schedule, answers and misses (module `keepalive`) on a fake
//! clock: nothing here waits in real time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::sip::build::ResponseBuilder;
use crate::sip::Bytes;
use crate::transport::ConnId;

const K: u64 = 30;

fn reg(login: &str, contact: &str) -> Message {
    let s = format!(
        "REGISTER sip:sipfront.local SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKr{login};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{login}@sipfront.local>;tag=f1\r\n\
         To: <sip:{login}@sipfront.local>\r\n\
         Call-ID: c-{login}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <{contact}>\r\n\
         Expires: 3600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(s)).expect("test REGISTER parses")
}

fn nat(port: u16) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 9], port))
}

fn registrar(keepalive_s: u32) -> Registrar {
    let mut r = Registrar::new(
        RegistrarConfig {
            keepalive_s,
            ..RegistrarConfig::default()
        },
        Random::from_seed([4; 32]),
    );
    r.set_local("192.0.2.1:5060".to_owned());
    r
}

fn sent(r: &mut Registrar) -> Vec<crate::transport::Outbound> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

/// Runs the registrar's timers from `from` to `to` (jumping from deadline
/// to deadline, as the shell does) and returns what it sent.
fn run(r: &mut Registrar, to: Instant) -> Vec<crate::transport::Outbound> {
    let mut out = Vec::new();
    while let Some(at) = r.poll_timeout().filter(|at| *at <= to) {
        r.handle_timeout(at);
        out.extend(sent(r));
    }
    out
}

fn answer(ping: &crate::transport::Outbound) -> Message {
    let req = Message::parse(ping.bytes.clone()).expect("our OPTIONS parses");
    let resp = ResponseBuilder::new(&req, StatusCode::OK).build();
    Message::parse(resp).expect("the answer parses")
}

#[test]
fn udp_contact_gets_options_at_its_nat_address_once_per_interval() {
    let mut r = registrar(K as u32);
    let t0 = Instant::now();
    r.register(
        &reg("100", "sip:100@10.0.0.5:5060"),
        "100",
        nat(4000),
        Transport::Udp,
        None,
        t0,
    );
    // Nothing during the first interval: the REGISTER just proved it alive.
    assert!(run(
        &mut r,
        t0 + Duration::from_secs(K) - Duration::from_millis(1)
    )
    .is_empty());
    // Then one per interval, each answered.
    let mut times = Vec::new();
    let mut now = t0;
    for _ in 0..5 {
        let at = r.poll_timeout().expect("a ping is scheduled");
        assert!(at > now);
        now = at;
        r.handle_timeout(now);
        let pings = sent(&mut r);
        assert_eq!(pings.len(), 1, "{pings:?}");
        let p = &pings[0];
        assert_eq!(
            (p.dest, p.transport, p.conn),
            (nat(4000), Transport::Udp, None)
        );
        let text = String::from_utf8_lossy(&p.bytes).into_owned();
        assert!(
            text.starts_with("OPTIONS sip:100@10.0.0.5:5060 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK"),
            "{text}"
        );
        assert!(r.on_response(&answer(p)));
        times.push(now);
    }
    let first = times[0].duration_since(t0);
    assert!(
        first >= Duration::from_secs(K) && first < Duration::from_secs(2 * K),
        "{first:?}"
    );
    for w in times.windows(2) {
        assert_eq!(w[1].duration_since(w[0]), Duration::from_secs(K));
    }
    assert_eq!(r.store().len(), 1);
    let st = r.keepalive_stats();
    assert_eq!(
        (st.options_sent, st.options_answered, st.dropped),
        (5, 5, 0)
    );
    assert_eq!(r.keepalive_outstanding(), 0);
}

#[test]
fn two_unanswered_pings_in_a_row_drop_the_binding_and_write_it() {
    let mut r = registrar(K as u32);
    let t0 = Instant::now();
    r.register(
        &reg("100", "sip:100@10.0.0.5:5060"),
        "100",
        nat(4000),
        Transport::Udp,
        None,
        t0,
    );
    r.register(
        &reg("200", "sip:200@10.0.0.6:5060"),
        "200",
        nat(4001),
        Transport::Udp,
        None,
        t0,
    );
    while r.poll_write(t0, 0).is_some() {}
    // 200 answers everything, 100 nothing.
    let mut now = t0;
    let mut pings_to_100 = 0;
    while r.store().lookup("100", now).len() == 1 {
        now = r.poll_timeout().expect("scheduled");
        assert!(now < t0 + Duration::from_secs(5 * K), "never dropped");
        r.handle_timeout(now);
        for p in sent(&mut r) {
            if p.dest == nat(4001) {
                assert!(r.on_response(&answer(&p)));
            } else {
                pings_to_100 += 1;
            }
        }
    }
    // Ping 1 and ping 2 unanswered: dropped when ping 3 would be due.
    assert_eq!(pings_to_100, 2);
    assert_eq!(r.store().lookup("200", now).len(), 1);
    assert_eq!(r.keepalive_stats().dropped, 1);
    let w = r.poll_write(now, 0).expect("the drop is written");
    assert_eq!((w.login.as_str(), w.bindings.len()), ("100", 0));
    // No more pings for it, none outstanding for it.
    let later = run(&mut r, now + Duration::from_secs(3 * K));
    assert!(later.iter().all(|p| p.dest == nat(4001)), "{later:?}");
}

#[test]
fn an_answer_between_misses_starts_the_count_again() {
    let mut r = registrar(K as u32);
    let t0 = Instant::now();
    r.register(
        &reg("100", "sip:100@10.0.0.5:5060"),
        "100",
        nat(4000),
        Transport::Udp,
        None,
        t0,
    );
    // Unanswered, answered, unanswered, unanswered-pending: never two in a
    // row until the end.
    let mut answered = [false, true, false, true, false];
    let mut now = t0;
    for a in answered.iter_mut() {
        now = r.poll_timeout().expect("scheduled");
        r.handle_timeout(now);
        let pings = sent(&mut r);
        assert_eq!(pings.len(), 1, "dropped too early");
        if *a {
            assert!(r.on_response(&answer(&pings[0])));
        }
    }
    assert_eq!(r.store().lookup("100", now).len(), 1);
    // The last ping stays unanswered, and the next one too: gone.
    now = r.poll_timeout().expect("scheduled");
    r.handle_timeout(now);
    sent(&mut r);
    now = r.poll_timeout().expect("scheduled");
    r.handle_timeout(now);
    assert!(r.store().lookup("100", now).is_empty());
}

#[test]
fn a_stale_or_foreign_response_changes_nothing() {
    let mut r = registrar(K as u32);
    let t0 = Instant::now();
    r.register(
        &reg("100", "sip:100@10.0.0.5:5060"),
        "100",
        nat(4000),
        Transport::Udp,
        None,
        t0,
    );
    let at = r.poll_timeout().expect("scheduled");
    r.handle_timeout(at);
    let ping = sent(&mut r).pop().expect("a ping");
    let reply = answer(&ping);
    // Not ours: some other response.
    let other = ResponseBuilder::new(&reg("100", "sip:x@y"), StatusCode::OK).build();
    assert!(!r.on_response(&Message::parse(other).expect("parses")));
    assert!(r.on_response(&reply));
    // The same answer again (a retransmission): not a ping any more.
    assert!(!r.on_response(&reply));
}

#[test]
fn tcp_contact_gets_crlf_on_its_own_connection() {
    let mut r = registrar(K as u32);
    let t0 = Instant::now();
    let conn = ConnId(9);
    r.register(
        &reg("100", "sip:100@10.0.0.5:5060;transport=tcp"),
        "100",
        nat(4000),
        Transport::Tcp,
        Some(conn),
        t0,
    );
    let pings = run(&mut r, t0 + Duration::from_secs(4 * K));
    assert!(pings.len() >= 2, "{pings:?}");
    for p in &pings {
        assert_eq!(&p.bytes[..], b"\r\n\r\n");
        assert_eq!(
            (p.dest, p.transport, p.conn),
            (nat(4000), Transport::Tcp, Some(conn))
        );
    }
    // Never answered (phones need not pong) and still bound: only a dead
    // connection ends it.
    assert_eq!(r.store().len(), 1);
    r.connection_closed(conn);
    assert!(r.store().is_empty());
    assert!(run(&mut r, t0 + Duration::from_secs(8 * K)).is_empty());
}

#[test]
fn zero_disables_keepalive() {
    let mut r = registrar(0);
    let t0 = Instant::now();
    r.register(
        &reg("100", "sip:100@10.0.0.5:5060"),
        "100",
        nat(4000),
        Transport::Udp,
        None,
        t0,
    );
    // The only deadline is the expiry.
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(3600)));
    assert!(run(&mut r, t0 + Duration::from_secs(3599)).is_empty());
}

#[test]
fn many_logins_registered_at_once_are_spread_over_the_interval() {
    let mut r = registrar(K as u32);
    let t0 = Instant::now();
    let n = 3000;
    for i in 0..n {
        let login = format!("phone{i:05}");
        let m = reg(&login, &format!("sip:{i}@10.0.0.5:5060"));
        r.register(&m, &login, nat(10_000), Transport::Udp, None, t0);
    }
    // Pings of the first round, by second of the interval.
    let mut buckets = vec![0usize; K as usize];
    let end = t0 + Duration::from_secs(2 * K);
    while let Some(at) = r.poll_timeout().filter(|at| *at < end) {
        r.handle_timeout(at);
        let k = sent(&mut r).len();
        let sec = at.duration_since(t0).as_secs().saturating_sub(K);
        if let Some(b) = buckets.get_mut(usize::try_from(sec).unwrap_or(usize::MAX)) {
            *b += k;
        }
    }
    assert_eq!(buckets.iter().sum::<usize>(), n);
    let avg = n / K as usize;
    assert!(
        buckets.iter().all(|&b| b > avg / 2 && b < avg * 2),
        "pings per second: {buckets:?}"
    );
}

#[test]
fn one_tick_pings_a_bounded_number_of_logins() {
    let mut r = registrar(K as u32);
    let t0 = Instant::now();
    let n = MAX_LOGINS_PER_TICK + 500;
    for i in 0..n {
        let login = format!("p{i}");
        r.register(
            &reg(&login, "sip:x@10.0.0.5"),
            &login,
            nat(10_000),
            Transport::Udp,
            None,
            t0,
        );
    }
    // Wake late, with every login due.
    let late = t0 + Duration::from_secs(2 * K);
    r.handle_timeout(late);
    assert_eq!(sent(&mut r).len(), MAX_LOGINS_PER_TICK);
    // The rest is due at once, on the next wake.
    assert!(r.poll_timeout().is_some_and(|at| at <= late));
    r.handle_timeout(late);
    assert_eq!(sent(&mut r).len(), 500);
    assert!(r.poll_timeout().is_some_and(|at| at > late));
}
