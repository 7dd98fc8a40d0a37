//! Fleets (README "Fleets", `[cluster]`): two sipfront nodes on one real
//! redis-server (started by the test on a Unix socket, stopped by pid)
//! share a trunk's channel limit exactly; a node killed with SIGKILL gives
//! its channels back within its `node_ttl_s`; Redis stopped under light
//! load leaves calls going on, and the counts reconcile when it returns; a
//! DID call reaching node 2 rings a phone registered on node 1, through
//! node 1.
//!
//! The PBX is SIPp's built-in UAC (the trunk authenticates it by its
//! source 127.0.0.1), the carrier SIPp's built-in UAS; a call is held for
//! `-d` ms by the UAC.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::calls::{read_msgs, Msg};
use common::redis::Redis;
use common::{api_get, api_text, free_port, Server, SippBg, TempDir};

const KEY: &str = "k";
const TRUNK_KEY: &str = "sipfront:ch:trunk:1";

/// A node's config: the shared carrier at `carrier`, trunk 1 for
/// 127.0.0.1 limited to `max` channels, `[cluster]` on `redis`.
fn node_config(
    dir: &TempDir,
    node: &str,
    redis: &Redis,
    carrier: u16,
    max: u32,
    cluster: &str,
) -> String {
    let db = dir.path().join(format!("{node}.db"));
    format!(
        "{loopback}\n[[http.api_key]]\nname = \"t\"\nkey = \"{KEY}\"\n\n\
         [store]\npath = \"{db}\"\n\n[rates]\nfile = \"{rates}\"\n\n\
         [[upstream]]\nname = \"carrier\"\nuri = \"sip:127.0.0.1:{carrier};transport=udp\"\n\
         priority = 1\nping_interval_s = 0\n\n\
         [[trunk]]\nid = 1\nname = \"pbx\"\nhost_request = \"127.0.0.1\"\n\
         channels_restrict = true\nmax_channels = {max}\n\n\
         [cluster]\nredis = \"{url}\"\nnode = \"{node}\"\n{cluster}\n",
        loopback = common::LOOPBACK_CONFIG,
        db = db.display(),
        rates = common::shipped_rates(),
        url = redis.url(),
    )
}

/// A call from the PBX through `node`, held `hold_ms` once answered,
/// in the background; its messages go to `dir/{tag}.msg`.
fn call(
    dir: &TempDir,
    node: &Server,
    hold_ms: u32,
    calls: u32,
    rate: u32,
    tag: &str,
) -> (SippBg, PathBuf) {
    let msgs = dir.path().join(format!("{tag}.msg"));
    let (port, hold, m, r) = (
        free_port().to_string(),
        hold_ms.to_string(),
        calls.to_string(),
        rate.to_string(),
    );
    let (msg_s, target) = (msgs.display().to_string(), node.udp.to_string());
    let bg = SippBg::start(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-d",
        &hold,
        "-m",
        &m,
        "-r",
        &r,
        "-l",
        "100",
        "-nostdin",
        "-timeout",
        "60s",
        "-recv_timeout",
        "20000",
        "-trace_msg",
        "-message_file",
        &msg_s,
        &target,
    ]);
    (bg, msgs)
}

/// Final responses to the INVITEs in a UAC trace, one per call
/// (retransmissions folded).
fn finals(msgs: &[Msg]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    msgs.iter()
        .filter(|m| !m.sent && m.cseq_method() == "INVITE" && m.status().is_some_and(|s| s >= 200))
        .filter(|m| seen.insert(m.call_id().to_owned()))
        .map(|m| m.first_line().to_owned())
        .collect()
}

/// Waits until `f` holds, up to `limit`.
fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Calls in progress on `node` (`/v1/calls`), answered ones only.
fn answered_calls(node: &Server) -> usize {
    let (_, body) = api_get(node, KEY, "/v1/calls");
    body["items"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|c| c["state"] == "answered").count())
}

/// A value of `/metrics` on `node` (0 if absent).
fn metric(node: &Server, name: &str) -> u64 {
    let (_, text) = api_text(node, KEY, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

fn show(nodes: &[&Server]) -> String {
    nodes
        .iter()
        .map(|n| n.log_text())
        .collect::<Vec<_>>()
        .join("\n--- next node ---\n")
}

#[test]
fn max_channels_2_holds_across_two_nodes_in_two_round_trips_per_call() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet-limit");
    let carrier = free_port();
    let _uas = common::calls::carrier_uas(carrier);
    // No heartbeat during the measurement: its round trips are the calls'.
    let slow = "heartbeat_s = 60\nnode_ttl_s = 120\n";
    let n1 = Server::start(&node_config(&dir, "node-1", &redis, carrier, 2, slow));
    let n2 = Server::start(&node_config(&dir, "node-2", &redis, carrier, 2, slow));
    let both = || show(&[&n1, &n2]);
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &n1,
            "sipfront_cluster_redis_up"
        ) == 1
            && metric(&n2, "sipfront_cluster_redis_up") == 1),
        "{}",
        both()
    );

    // Ten sequential short calls on node 1: Redis round trips per call.
    let before = metric(&n1, "sipfront_cluster_redis_round_trips_total");
    let (mut seq, seq_msgs) = call(&dir, &n1, 0, 10, 10, "seq");
    let (code, text) = seq.wait(Duration::from_secs(40));
    assert_eq!(code, Some(0), "{text}\n{}", both());
    assert!(
        wait_for(Duration::from_secs(5), || redis.hash_sum(TRUNK_KEY) == 0),
        "every call's end written: {:?}",
        redis.cli(&["HGETALL", TRUNK_KEY])
    );
    let trips = metric(&n1, "sipfront_cluster_redis_round_trips_total") - before;
    assert_eq!(finals(&read_msgs(&seq_msgs)).len(), 10);
    assert!(
        (10..=20).contains(&trips),
        "10 calls took {trips} Redis round trips (goal <= 2 per call)\n{}",
        both()
    );
    eprintln!("redis round trips for 10 calls: {trips}");

    // One call held on each node: the trunk's 2 channels are in use.
    let (_h1, h1_msgs) = call(&dir, &n1, 15_000, 1, 1, "held1");
    assert!(
        wait_for(Duration::from_secs(10), || answered_calls(&n1) == 1),
        "{}",
        both()
    );
    let (_h2, h2_msgs) = call(&dir, &n2, 15_000, 1, 1, "held2");
    assert!(
        wait_for(Duration::from_secs(10), || answered_calls(&n2) == 1),
        "{}",
        both()
    );
    assert_eq!(
        redis.hash_sum(TRUNK_KEY),
        2,
        "{:?}",
        redis.cli(&["HGETALL", TRUNK_KEY])
    );

    // A third call on either node: 503 naming the limit.
    for (node, tag) in [(&n1, "third1"), (&n2, "third2")] {
        let (mut bg, msgs) = call(&dir, node, 0, 1, 1, tag);
        let _ = bg.wait(Duration::from_secs(20));
        let got = finals(&read_msgs(&msgs));
        assert_eq!(
            got,
            vec!["SIP/2.0 503 Channel Limit Reached (max_channels 2)".to_owned()],
            "{tag}\n{}",
            both()
        );
    }
    assert_eq!(
        metric(&n1, "sipfront_cluster_channel_asks_refused_total"),
        1
    );
    assert_eq!(
        metric(&n2, "sipfront_cluster_channel_asks_refused_total"),
        1
    );
    // The held calls were answered, not refused.
    for m in [&h1_msgs, &h2_msgs] {
        assert!(
            read_msgs(m)
                .iter()
                .any(|m| !m.sent && m.status() == Some(200)),
            "{}",
            both()
        );
    }

    // /v1/cluster on node 2 lists both nodes, alive.
    let (status, view) = api_get(&n2, KEY, "/v1/cluster");
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["node"], "node-2");
    assert_eq!(view["redis_up"], true);
    let names: Vec<&str> = view["nodes"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["node"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["node-1", "node-2"], "{view}");
    assert!(view["nodes"]
        .as_array()
        .is_some_and(|a| a.iter().all(|n| n["alive"] == true)));
}

#[test]
fn a_killed_nodes_channel_comes_back_within_its_ttl() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet-kill");
    let carrier = free_port();
    let _uas = common::calls::carrier_uas(carrier);
    let short = "heartbeat_s = 1\nnode_ttl_s = 3\n";
    let mut n1 = Server::start(&node_config(&dir, "node-1", &redis, carrier, 1, short));
    let n2 = Server::start(&node_config(&dir, "node-2", &redis, carrier, 1, short));
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &n2,
            "sipfront_cluster_redis_up"
        ) == 1),
        "{}",
        n2.log_text()
    );
    let (_held, _) = call(&dir, &n1, 60_000, 1, 1, "held");
    assert!(
        wait_for(Duration::from_secs(10), || answered_calls(&n1) == 1),
        "{}",
        n1.log_text()
    );

    n1.signal("KILL");
    let killed = Instant::now();
    let _ = n1.wait_exit(Duration::from_secs(5));
    // At once: the dead node's channel still counts.
    let (mut bg, msgs) = call(&dir, &n2, 0, 1, 1, "at-once");
    let _ = bg.wait(Duration::from_secs(20));
    assert_eq!(
        finals(&read_msgs(&msgs)),
        vec!["SIP/2.0 503 Channel Limit Reached (max_channels 1)".to_owned()],
        "{}",
        n2.log_text()
    );
    // Within node_ttl_s (+ slack for a busy machine) a call goes through.
    let mut tries = 0;
    let placed = wait_for(Duration::from_secs(15), || {
        tries += 1;
        let (mut bg, msgs) = call(&dir, &n2, 0, 1, 1, &format!("retry{tries}"));
        let _ = bg.wait(Duration::from_secs(20));
        finals(&read_msgs(&msgs))
            .first()
            .is_some_and(|f| f.starts_with("SIP/2.0 200"))
    });
    let took = killed.elapsed();
    assert!(placed, "no call after {took:?}\n{}", n2.log_text());
    assert!(took < Duration::from_secs(15), "{took:?}");
    eprintln!("the killed node's channel came back after {took:?} (node_ttl_s = 3)");
    let (_, view) = api_get(&n2, KEY, "/v1/cluster");
    let n1_view = view["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node"] == "node-1"))
        .cloned();
    assert_eq!(
        n1_view.map(|v| v["alive"].clone()),
        Some(serde_json::json!(false)),
        "{view}"
    );
}

#[test]
fn redis_stopped_under_load_calls_go_on_and_counts_reconcile() {
    let mut redis = Redis::start();
    let dir = TempDir::new("fleet-outage");
    let carrier = free_port();
    let _uas = common::calls::carrier_uas(carrier);
    let cfg = "heartbeat_s = 1\nnode_ttl_s = 3\ntimeout_ms = 100\n";
    let n1 = Server::start(&node_config(&dir, "node-1", &redis, carrier, 50, cfg));
    let n2 = Server::start(&node_config(&dir, "node-2", &redis, carrier, 50, cfg));
    let both = || show(&[&n1, &n2]);
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &n1,
            "sipfront_cluster_redis_up"
        ) == 1
            && metric(&n2, "sipfront_cluster_redis_up") == 1),
        "{}",
        both()
    );
    // 50 calls/s (25 on each node) for 10 s, each held 300 ms; Redis is
    // stopped for 5 s in the middle.
    let (mut l1, m1) = call(&dir, &n1, 300, 250, 25, "load1");
    let (mut l2, m2) = call(&dir, &n2, 300, 250, 25, "load2");
    std::thread::sleep(Duration::from_secs(2));
    redis.stop();
    let stopped = Instant::now();
    assert!(
        wait_for(Duration::from_secs(5), || metric(
            &n1,
            "sipfront_cluster_redis_up"
        ) == 0),
        "{}",
        both()
    );
    // A call held across the outage, placed while Redis is down.
    let (_held, held_msgs) = call(&dir, &n1, 20_000, 1, 1, "held");
    assert!(
        wait_for(Duration::from_secs(10), || answered_calls(&n1) >= 1),
        "{}",
        both()
    );
    std::thread::sleep(Duration::from_secs(5).saturating_sub(stopped.elapsed()));
    redis.restart();
    for (bg, msgs, tag) in [(&mut l1, &m1, "load1"), (&mut l2, &m2, "load2")] {
        let (code, text) = bg.wait(Duration::from_secs(40));
        let finals = finals(&read_msgs(msgs));
        assert!(
            code == Some(0)
                && finals.len() == 250
                && finals.iter().all(|f| f.starts_with("SIP/2.0 200")),
            "{tag}: exit {code:?}, {} finals, not all 200: {:?}\n{text}\n{}",
            finals.len(),
            finals
                .iter()
                .filter(|f| !f.starts_with("SIP/2.0 200"))
                .collect::<Vec<_>>(),
            both()
        );
    }
    assert!(read_msgs(&held_msgs)
        .iter()
        .any(|m| !m.sent && m.status() == Some(200)));
    // Redis came back empty: the heartbeats rewrite each node's counts,
    // so the held call (let through without Redis) is counted again.
    assert!(
        wait_for(Duration::from_secs(10), || redis.hash_sum(TRUNK_KEY) == 1),
        "after the outage: {:?}\n{}",
        redis.cli(&["HGETALL", TRUNK_KEY]),
        both()
    );
    assert_eq!(
        redis.cli(&["HGET", TRUNK_KEY, "node-1"]).as_deref(),
        Some("1")
    );
    for n in [&n1, &n2] {
        assert_eq!(metric(n, "sipfront_cluster_redis_up"), 1, "{}", both());
        assert!(metric(n, "sipfront_cluster_redis_errors_total") > 0);
        assert!(!n.log_text().contains("panicked"), "{}", both());
    }
    assert!(
        metric(&n1, "sipfront_cluster_unconfirmed_calls_total") > 0,
        "{}",
        both()
    );
    let (_, view) = api_get(&n1, KEY, "/v1/cluster");
    assert_eq!(view["redis_up"], true, "{view}");
    assert!(n1.log_text().contains("Redis unreachable"), "{}", both());
}

/// The carrier's address (a `trusted` upstream: identified by its IP).
const CARRIER_IP: &str = "127.0.0.2";
const DID: &str = "12565378257";

/// A node with the carrier on 127.0.0.2, softphone trunk `phone001`
/// (digest) and a DID ringing it.
fn phone_node_config(dir: &TempDir, node: &str, redis: &Redis, carrier: u16) -> String {
    let db = dir.path().join(format!("{node}.db"));
    format!(
        "{loopback}\n[[http.api_key]]\nname = \"t\"\nkey = \"{KEY}\"\n\n\
         [store]\npath = \"{db}\"\n\n[registrar]\nkeepalive_s = 0\n\n\
         [[upstream]]\nname = \"carrier\"\nuri = \"sip:{CARRIER_IP}:{carrier};transport=udp\"\n\
         priority = 1\nping_interval_s = 0\ntrusted = true\n\n\
         [[trunk]]\nid = 1\nname = \"phone001\"\npassword = \"pw001\"\n\n\
         [[did]]\nnumber = \"{DID}\"\ndestinations = [ {{ transport = 5, destination = \"phone001\", priority = 1 }} ]\n\n\
         [cluster]\nredis = \"{url}\"\nnode = \"{node}\"\nheartbeat_s = 1\nnode_ttl_s = 3\n",
        loopback = common::LOOPBACK_CONFIG,
        db = db.display(),
        url = redis.url(),
    )
}

#[test]
fn a_phone_registered_on_node_1_gets_a_did_call_that_reached_node_2() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet-relay");
    let carrier = free_port();
    let n1 = Server::start(&phone_node_config(&dir, "node-1", &redis, carrier));
    let n2 = Server::start(&phone_node_config(&dir, "node-2", &redis, carrier));
    let both = || show(&[&n1, &n2]);
    // The phone registers with node 1 from 127.0.0.1:X (SIPp UAC, digest),
    // then a SIPp UAS takes that port: a call reaches it only through the
    // address node 1 learned from the REGISTER.
    let phone_port = free_port();
    let inf = dir.write(
        "reg.csv",
        "SEQUENTIAL\nphone001;10.0.0.1;[authentication username=phone001 password=pw001];001\n",
    );
    let reg_msgs = dir.path().join("reg.msg");
    let (sf, inf_s, port_s, reg_s, target) = (
        common::scenario("did_reg.xml").display().to_string(),
        inf.display().to_string(),
        phone_port.to_string(),
        reg_msgs.display().to_string(),
        n1.udp.to_string(),
    );
    let (code, text) = common::sipp_run(&[
        "-sf",
        &sf,
        "-inf",
        &inf_s,
        "-key",
        "expires",
        "3600",
        "-i",
        "127.0.0.1",
        "-p",
        &port_s,
        "-m",
        "1",
        "-nd",
        "-nostdin",
        "-timeout",
        "20s",
        "-timeout_error",
        "-recv_timeout",
        "5000",
        "-trace_msg",
        "-message_file",
        &reg_s,
        &target,
    ]);
    assert_eq!(code, Some(0), "registration failed: {text}\n{}", both());
    let phone_log = dir.path().join("phone.msg");
    let (uas_sf, phone_s) = (
        common::scenario("policy_uas.xml").display().to_string(),
        phone_log.display().to_string(),
    );
    let _phone = SippBg::start(&[
        "-sf",
        &uas_sf,
        "-i",
        "127.0.0.1",
        "-p",
        &port_s,
        "-nostdin",
        "-timeout",
        "60s",
        "-recv_timeout",
        "100000",
        "-trace_msg",
        "-message_file",
        &phone_s,
    ]);
    // Node 1 holds the registration; node 2 none.
    let (_, regs2) = api_get(&n2, KEY, "/v1/registrations");
    assert_eq!(regs2["items"].as_array().map(Vec::len), Some(0), "{regs2}");

    // The carrier calls the DID through node 2 until node 2 has read node
    // 1's registration (within two heartbeats); then the phone answers.
    let mut tries = 0;
    let answered = wait_for(Duration::from_secs(15), || {
        tries += 1;
        let msgs = dir.path().join(format!("carrier{tries}.msg"));
        let (cport, msgs_s, target) = (
            carrier.to_string(),
            msgs.display().to_string(),
            n2.udp.to_string(),
        );
        let (_, _) = common::sipp_run(&[
            "-sn",
            "uac",
            "-s",
            DID,
            "-i",
            CARRIER_IP,
            "-p",
            &cport,
            "-d",
            "200",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "15s",
            "-recv_timeout",
            "10000",
            "-trace_msg",
            "-message_file",
            &msgs_s,
            &target,
        ]);
        finals(&read_msgs(&msgs))
            .first()
            .is_some_and(|f| f.starts_with("SIP/2.0 200"))
    });
    assert!(
        answered,
        "no DID call answered after {tries} tries\n{}",
        both()
    );
    let phone_msgs = read_msgs(&phone_log);
    let invite = phone_msgs
        .iter()
        .find(|m| !m.sent && m.method() == Some("INVITE"))
        .expect("the phone got the INVITE");
    // Delivered by node 1 at the phone's registered Contact (RFC 3261
    // §10, the binding node 1 holds), not by node 2.
    assert!(
        invite.first_line().starts_with("INVITE sip:001@10.0.0.1"),
        "{}",
        invite.first_line()
    );
    let (_, view) = api_get(&n1, KEY, "/v1/cluster");
    let regs: Vec<u64> = view["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["registrations"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(regs, [1, 0], "{view}");
}

/// The digest challenge of one node answered to the other (a load
/// balancer need not be sticky): the nodes share the nonce key through
/// Redis.
#[test]
fn a_register_challenged_by_node_1_is_accepted_by_node_2() {
    use common::phone::{digest_answer, header_lines};
    let redis = Redis::start();
    let dir = TempDir::new("fleet-nonce");
    let carrier = free_port();
    let n1 = Server::start(&phone_node_config(&dir, "node-1", &redis, carrier));
    let n2 = Server::start(&phone_node_config(&dir, "node-2", &redis, carrier));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let me = sock.local_addr().expect("addr");
    let register = |to: std::net::SocketAddr, cseq: u32, auth: &str| {
        let msg = format!(
            "REGISTER sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKfleet{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:phone001@{to}>;tag=fleetreg\r\n\
             To: <sip:phone001@{to}>\r\nCall-ID: fleetreg@test\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:001@{me}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        );
        sock.send_to(msg.as_bytes(), to).expect("send");
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).expect("an answer");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let challenge = register(n1.udp, 1, "");
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let chal = header_lines(&challenge, "WWW-Authenticate");
    let uri = format!("sip:{}", n2.udp);
    let answer = digest_answer(&chal, "phone001", "pw001", "REGISTER", &uri);
    let ok = register(n2.udp, 2, &format!("Authorization: {answer}\r\n"));
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}\n{}", show(&[&n1, &n2]));
    assert!(
        redis.cli(&["STRLEN", "sipfront:nonce_key"]).as_deref() == Some("64"),
        "the fleet's key is in Redis"
    );
}
