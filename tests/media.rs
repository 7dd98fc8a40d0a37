//! Media anchoring through a real rtpengine (SPEC §8.4), started by the
//! test in userspace mode on loopback and stopped by its pid.
//!
//! First the ng client on its own (offer, answer, delete against the real
//! daemon; fail-over between rtpengines; none answering), then whole calls
//! through the real sipfront binary.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::rtpengine::Rtpengine;
use sipfront::b2bua::media::{MediaCommand, MediaError, MediaRequest, MediaResult};
use sipfront::config::MediaConfig;
use sipfront::media::client::query;
use sipfront::media::MediaClient;

const CALLER_SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n";
const CARRIER_SDP: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn req(id: u64, command: MediaCommand, to_tag: Option<&str>, sdp: &str, new: bool) -> MediaRequest {
    MediaRequest {
        id,
        command,
        call_id: "client-test-1".into(),
        from_tag: "caller".into(),
        to_tag: to_tag.map(str::to_owned),
        sdp: Bytes::copy_from_slice(sdp.as_bytes()),
        nat_source: (command == MediaCommand::Offer).then(|| "127.0.0.2".parse().unwrap()),
        new_session: new,
    }
}

fn media_cfg(engines: Vec<SocketAddr>) -> MediaConfig {
    MediaConfig {
        rtpengine: engines,
        timeout_ms: 200,
        tries: 2,
        ping_interval_s: 0,
    }
}

async fn ask(client: &MediaClient, r: MediaRequest) -> MediaResult {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    client.request(r, &tx);
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an answer within 10 s")
        .expect("client alive")
}

/// A port nobody listens on (bound, read back, closed: nothing answers there).
fn dead_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn ng_client_offers_answers_and_deletes_on_a_real_rtpengine() {
    let rtpe = Rtpengine::start();
    // The first rtpengine is dead: a new session fails over to the second.
    let dead = dead_port();
    let (client, _task) = MediaClient::start(&media_cfg(vec![dead, rtpe.ng]))
        .await
        .unwrap();
    let offer = ask(&client, req(1, MediaCommand::Offer, None, CALLER_SDP, true)).await;
    let a = offer.outcome.expect("offer rewritten");
    assert_eq!(a.relay, rtpe.ng.to_string());
    let sdp = String::from_utf8_lossy(&a.sdp).into_owned();
    assert!(sdp.contains("c=IN IP4 127.0.0.1"), "{sdp}");
    assert!(
        !sdp.contains("10.0.0.9"),
        "origin and connection replaced: {sdp}"
    );
    let answer = ask(
        &client,
        req(2, MediaCommand::Answer, Some("callee"), CARRIER_SDP, false),
    )
    .await;
    let a = answer.outcome.expect("answer rewritten");
    let sdp = String::from_utf8_lossy(&a.sdp).into_owned();
    assert!(sdp.contains("c=IN IP4 127.0.0.1"), "{sdp}");
    let held = rtpe.calls();
    assert!(
        held.contains(&"client-test-1".to_owned()),
        "{held:?}\n{}",
        rtpe.log_text()
    );
    let del = ask(&client, req(3, MediaCommand::Delete, None, "", false)).await;
    assert!(del.outcome.is_ok(), "{del:?}");
    let q = rtpe.ng(&query("client-test-1")).expect("query answered");
    assert_eq!(q.result, "error", "the session is gone: {q:?}");
    let mut metrics = String::new();
    client.stats().write_metrics(&mut metrics);
    assert!(
        metrics.contains("sipfront_rtpengine_requests_total{command=\"offer\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("sipfront_rtpengine_up{{rtpengine=\"{dead}\"}} 0")));
    assert!(
        metrics.contains("sipfront_rtpengine_latency_seconds_count 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn ng_client_fails_within_its_budget_when_no_rtpengine_answers() {
    let cfg = media_cfg(vec![dead_port(), dead_port()]);
    let (client, _task) = MediaClient::start(&cfg).await.unwrap();
    let t0 = Instant::now();
    let r = ask(&client, req(7, MediaCommand::Offer, None, CALLER_SDP, true)).await;
    let took = t0.elapsed();
    assert_eq!(r.id, 7);
    assert!(
        matches!(r.outcome, Err(MediaError::Unreachable(_))),
        "{r:?}"
    );
    // Two rtpengines, two tries of 200 ms each.
    assert!(took >= Duration::from_millis(790), "{took:?}");
    assert!(took < cfg.budget() + Duration::from_millis(500), "{took:?}");
}

// ---- whole calls through the real binary ------------------------------

use common::{api_get, scenario, shipped_rates, Server, SippBg, TempDir, LOOPBACK_CONFIG};
use std::net::UdpSocket;

const KEY: &str = "media-test-key";

/// sipfront with trunk `relay` (IP 127.0.0.2, `media = "relay"`), trunk
/// `direct` (IP 127.0.0.4, passthrough) and a passthrough carrier at
/// 127.0.0.3:`carrier`; rtpengine at `ng`.
fn relay_config(ng: SocketAddr, carrier: u16) -> String {
    format!(
        "{LOOPBACK_CONFIG}\n[[http.api_key]]\nname = \"t\"\nkey = \"{KEY}\"\n\
         \n[rates]\nfile = \"{}\"\n\
         \n[media]\nrtpengine = [\"{ng}\"]\ntimeout_ms = 200\ntries = 2\nping_interval_s = 1\n\
         \n[[trunk]]\nid = 1\nname = \"relay\"\nhost_request = \"127.0.0.2\"\nmedia = \"relay\"\n\
         \n[[trunk]]\nid = 2\nname = \"direct\"\nhost_request = \"127.0.0.4\"\n\
         \n[[upstream]]\nname = \"carrier\"\nuri = \"sip:127.0.0.3:{carrier};transport=udp\"\n\
         ping_interval_s = 0\n",
        shipped_rates()
    )
}

/// A scripted caller (a trunk's phone) on `ip`, talking to sipfront.
struct Caller {
    sock: UdpSocket,
    server: SocketAddr,
    call_id: String,
    tag: String,
    to_tag: Option<String>,
    cseq: u32,
}

/// One SIP message received: first line, headers, body.
#[derive(Debug, Clone)]
struct Sip {
    first: String,
    head: String,
    body: String,
}

impl Sip {
    fn parse(b: &[u8]) -> Sip {
        let t = String::from_utf8_lossy(b).replace("\r\n", "\n");
        let (head, body) = t.split_once("\n\n").unwrap_or((&t, ""));
        Sip {
            first: head.lines().next().unwrap_or("").to_owned(),
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }
    fn status(&self) -> Option<u16> {
        self.first.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// The `(address, port)` the SDP's audio goes to.
fn sdp_audio(sdp: &str) -> SocketAddr {
    let ip = sdp
        .lines()
        .filter_map(|l| l.strip_prefix("c=IN IP4 "))
        .next_back()
        .expect("c= line");
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .expect("m=audio line");
    format!("{}:{}", ip.trim(), port).parse().expect("address")
}

impl Caller {
    fn new(ip: &str, server: SocketAddr, n: u32) -> Caller {
        let sock = UdpSocket::bind(format!("{ip}:0")).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Caller {
            sock,
            server,
            call_id: format!("media-{n}-{}@test", std::process::id()),
            tag: format!("caller{n}"),
            to_tag: None,
            cseq: 0,
        }
    }

    fn local(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    fn send(&self, method: &str, cseq: u32, branch: &str, body: Option<&str>) {
        let local = self.local();
        let to_tag = self
            .to_tag
            .as_ref()
            .map_or_else(String::new, |t| format!(";tag={t}"));
        let (ct, body) = match body {
            Some(b) => ("Content-Type: application/sdp\r\n", b),
            None => ("", ""),
        };
        let cseq_method = method;
        let msg = format!(
            "{method} sip:12125551234@{srv} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:pbx@{ip}>;tag={tag}\r\n\
             To: <sip:12125551234@{srv}>{to_tag}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} {cseq_method}\r\n\
             Contact: <sip:pbx@{local}>\r\n\
             {ct}Content-Length: {len}\r\n\r\n{body}",
            srv = self.server,
            ip = local.ip(),
            tag = self.tag,
            cid = self.call_id,
            len = body.len(),
        );
        self.sock.send_to(msg.as_bytes(), self.server).unwrap();
    }

    /// Next message within `within` (requests from sipfront are answered
    /// 200 by the caller: none are expected here).
    fn recv(&self, within: Duration) -> Option<Sip> {
        let end = Instant::now() + within;
        let mut buf = vec![0u8; 65_535];
        while Instant::now() < end {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                return Some(Sip::parse(&buf[..n]));
            }
        }
        None
    }

    /// Waits for a response with `status` (skipping 100 and others),
    /// collecting every response seen.
    fn expect(&mut self, status: u16, seen: &mut Vec<Sip>) -> Sip {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(m) = self.recv(Duration::from_millis(500)) {
                seen.push(m.clone());
                if m.status() == Some(status) {
                    if let Some(t) = m
                        .header("To")
                        .and_then(|t| t.split(";tag=").nth(1).map(str::to_owned))
                    {
                        self.to_tag = Some(t);
                    }
                    return m;
                }
            }
        }
        panic!("no {status} within 10 s; got {seen:#?}");
    }

    fn invite(&mut self, sdp: &str) {
        self.cseq += 1;
        let branch = format!("z9hG4bK-inv{}-{}", self.cseq, self.tag);
        self.send("INVITE", self.cseq, &branch, Some(sdp));
    }

    fn ack(&self) {
        let branch = format!("z9hG4bK-ack{}-{}", self.cseq, self.tag);
        self.send("ACK", self.cseq, &branch, None);
    }
}

/// The caller's SDP: a private address (behind NAT) and its real port.
fn caller_sdp(port: u16, ver: u32, direction: &str) -> String {
    format!(
        "v=0\r\no=pbx 7 {ver} IN IP4 10.9.9.9\r\ns=-\r\nc=IN IP4 10.9.9.9\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n"
    )
}

/// One RTP packet (PCMU, 20 ms) with sequence `seq`.
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat(0xffu8).take(160));
    p
}

/// Sends RTP from `from` to `to` until `at` receives one from the relay
/// (up to 5 s); returns where it came from.
fn rtp_flows(from: &UdpSocket, to: SocketAddr, at: &UdpSocket, ssrc: u32) -> Option<SocketAddr> {
    at.set_read_timeout(Some(Duration::from_millis(40)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs(5);
    let mut seq = 0u16;
    while Instant::now() < end {
        seq = seq.wrapping_add(1);
        from.send_to(&rtp(seq, ssrc), to).unwrap();
        if let Ok((n, src)) = at.recv_from(&mut buf) {
            if n >= 12 && buf[8..12] == ssrc.to_be_bytes() {
                return Some(src);
            }
        }
    }
    None
}

/// The messages of a SIPp `-message_file` trace, split by its separators.
fn sipp_messages(path: &std::path::Path) -> Vec<Sip> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    common::calls::parse_msgs(&text)
        .into_iter()
        .map(|m| Sip::parse(m.text.as_bytes()))
        .collect()
}

/// Waits until rtpengine holds no session and the carrier's scenario
/// ended well.
fn no_session_left(rtpe: &Rtpengine, uas: &mut SippBg) {
    assert!(
        wait_until(|| rtpe.calls().is_empty()),
        "rtpengine still holds {:?}",
        rtpe.calls()
    );
    let (code, out) = uas.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{out}");
}

/// `/metrics` as text.
fn metrics_text(server: &Server) -> String {
    reqwest::blocking::Client::new()
        .get(format!("http://{}/metrics", server.http))
        .bearer_auth(KEY)
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default()
}

/// Waits up to 5 s for `f` to hold.
fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn carrier(sf: &str, port: u16, media_port: u16, trace: &std::path::Path) -> SippBg {
    let sf = scenario(sf).display().to_string();
    let (port, mp, trace) = (
        port.to_string(),
        media_port.to_string(),
        trace.display().to_string(),
    );
    SippBg::start(&[
        "-sf",
        &sf,
        "-i",
        "127.0.0.3",
        "-p",
        &port,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "60s",
        "-key",
        "carrier_port",
        &mp,
        "-trace_msg",
        "-message_file",
        &trace,
    ])
}

/// An rtpengine, a sipfront on [`relay_config`] using it, and the port
/// its carrier will listen on.
struct Rig {
    rtpe: Rtpengine,
    carrier_port: u16,
    server: Server,
    dir: TempDir,
}

impl Rig {
    fn start(tag: &str) -> Rig {
        let rtpe = Rtpengine::start();
        let carrier_port = common::free_port();
        let server = Server::start(&relay_config(rtpe.ng, carrier_port));
        Rig {
            rtpe,
            carrier_port,
            server,
            dir: TempDir::new(tag),
        }
    }

    /// The carrier (SIPp UAS `sf`, its SDP naming `media_port`) and the
    /// file its messages are traced to.
    fn carrier(&self, sf: &str, media_port: u16) -> (SippBg, std::path::PathBuf) {
        let trace = self.dir.path().join(format!("{sf}.msg"));
        (carrier(sf, self.carrier_port, media_port, &trace), trace)
    }
}

#[test]
fn relayed_call_early_media_hold_resume_and_rtp_both_ways_then_no_session() {
    let rig = Rig::start("media-call");
    let (rtpe, server) = (&rig.rtpe, &rig.server);
    let carrier_media = UdpSocket::bind("127.0.0.3:0").unwrap();
    let (mut uas, trace) = rig.carrier("media_uas.xml", carrier_media.local_addr().unwrap().port());
    let caller_media = UdpSocket::bind("127.0.0.2:0").unwrap();
    let a_port = caller_media.local_addr().unwrap().port();
    let mut caller = Caller::new("127.0.0.2", server.udp, 1);
    let mut seen = Vec::new();
    caller.invite(&caller_sdp(a_port, 1, "sendrecv"));
    let early = caller.expect(183, &mut seen);
    let ok = caller.expect(200, &mut seen);
    caller.ack();
    // The caller sees rtpengine, never the carrier's address.
    for m in [&early, &ok] {
        assert!(m.body.contains("c=IN IP4 127.0.0.1"), "{m:#?}");
        assert!(!m.body.contains("127.0.0.3"), "{m:#?}");
    }
    // The carrier sees rtpengine, never the caller's private address.
    assert!(wait_until(|| !sipp_messages(&trace).is_empty()));
    let invite = sipp_messages(&trace)
        .into_iter()
        .find(|m| m.first.starts_with("INVITE"))
        .expect("the carrier got the INVITE");
    assert!(invite.body.contains("c=IN IP4 127.0.0.1"), "{invite:#?}");
    assert!(!invite.body.contains("10.9.9.9"), "{invite:#?}");
    // RTP each way arrives through rtpengine (the caller's media address
    // is its SIP source: 127.0.0.2, not the 10.9.9.9 of its SDP).
    let to_b = sdp_audio(&ok.body);
    let to_a = sdp_audio(&invite.body);
    let src = rtp_flows(&caller_media, to_b, &carrier_media, 0xA1A1_A1A1)
        .unwrap_or_else(|| panic!("caller RTP never reached the carrier\n{}", rtpe.log_text()));
    assert_eq!(src.ip().to_string(), "127.0.0.1", "relayed by rtpengine");
    let src = rtp_flows(&carrier_media, to_a, &caller_media, 0xB2B2_B2B2)
        .unwrap_or_else(|| panic!("carrier RTP never reached the caller\n{}", rtpe.log_text()));
    assert_eq!(src.ip().to_string(), "127.0.0.1");
    // /v1/calls shows the relay.
    let (code, calls) = api_get(server, KEY, "/v1/calls");
    assert_eq!(code, 200);
    assert_eq!(calls["items"][0]["relay"], rtpe.ng.to_string(), "{calls}");
    // Hold, then resume, by re-INVITE.
    caller.invite(&caller_sdp(a_port, 2, "sendonly"));
    let held = caller.expect(200, &mut seen);
    caller.ack();
    assert!(held.body.contains("a=recvonly"), "{held:#?}");
    assert!(held.body.contains("c=IN IP4 127.0.0.1"), "{held:#?}");
    caller.invite(&caller_sdp(a_port, 3, "sendrecv"));
    let resumed = caller.expect(200, &mut seen);
    caller.ack();
    assert!(resumed.body.contains("a=sendrecv"), "{resumed:#?}");
    let reinvites: Vec<Sip> = sipp_messages(&trace)
        .into_iter()
        .filter(|m| m.first.starts_with("INVITE"))
        .collect();
    assert_eq!(reinvites.len(), 3, "{reinvites:#?}");
    assert!(
        reinvites[1].body.contains("a=sendonly"),
        "{:#?}",
        reinvites[1]
    );
    assert!(reinvites[1].body.contains("c=IN IP4 127.0.0.1"));
    assert!(reinvites[2].body.contains("a=sendrecv"));
    // Audio still flows after the resume.
    assert!(rtp_flows(&caller_media, to_b, &carrier_media, 0xC3C3_C3C3).is_some());
    // BYE: rtpengine holds no session afterwards.
    caller.cseq += 1;
    let branch = format!("z9hG4bK-bye-{}", caller.tag);
    caller.send("BYE", caller.cseq, &branch, None);
    caller.expect(200, &mut seen);
    no_session_left(rtpe, &mut uas);
    let metrics = metrics_text(server);
    assert!(
        metrics.contains("sipfront_rtpengine_requests_total{command=\"delete\"} 1"),
        "{metrics}"
    );
}

#[test]
fn cancel_while_ringing_deletes_the_session() {
    let rig = Rig::start("media-cancel");
    let (rtpe, server) = (&rig.rtpe, &rig.server);
    let (mut uas, _) = rig.carrier("uas_cancelled.xml", 9);
    let mut caller = Caller::new("127.0.0.2", server.udp, 2);
    let mut seen = Vec::new();
    caller.invite(&caller_sdp(40_000, 1, "sendrecv"));
    caller.expect(180, &mut seen);
    // Ringing: the offer made a session.
    assert_eq!(rtpe.calls(), vec![caller.call_id.clone()]);
    let branch = format!("z9hG4bK-inv1-{}", caller.tag);
    caller.to_tag = None;
    caller.send("CANCEL", 1, &branch, None);
    caller.expect(487, &mut seen);
    no_session_left(rtpe, &mut uas);
}

#[test]
fn no_rtpengine_gets_503_within_the_timeout_and_a_restart_brings_calls_back() {
    let mut rig = Rig::start("media-again");
    rig.rtpe.stop();
    let server = &rig.server;
    let mut caller = Caller::new("127.0.0.2", server.udp, 3);
    let mut seen = Vec::new();
    let t0 = Instant::now();
    caller.invite(&caller_sdp(40_002, 1, "sendrecv"));
    caller.expect(503, &mut seen);
    let took = t0.elapsed();
    // tries (2) x timeout_ms (200) on the one rtpengine, plus slack.
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(
        server.wait_log("media relay failed", Duration::from_secs(5)),
        "{}",
        server.log_text()
    );
    caller.ack();
    // Back again: the next call is relayed.
    rig.rtpe.spawn();
    let (_uas, _) = rig.carrier("media_uas.xml", 40_008);
    let mut caller = Caller::new("127.0.0.2", server.udp, 4);
    caller.invite(&caller_sdp(40_004, 1, "sendrecv"));
    let ok = caller.expect(200, &mut seen);
    caller.ack();
    assert!(ok.body.contains("c=IN IP4 127.0.0.1"), "{ok:#?}");
    assert_eq!(rig.rtpe.calls(), vec![caller.call_id.clone()]);
}

#[test]
fn a_passthrough_trunk_keeps_its_sdp_byte_for_byte() {
    let rig = Rig::start("media-direct");
    let (rtpe, server) = (&rig.rtpe, &rig.server);
    let (_uas, trace) = rig.carrier("media_uas.xml", 40_010);
    let mut caller = Caller::new("127.0.0.4", server.udp, 5);
    let mut seen = Vec::new();
    let offer = caller_sdp(40_006, 1, "sendrecv");
    caller.invite(&offer);
    let ok = caller.expect(200, &mut seen);
    caller.ack();
    assert!(wait_until(|| sipp_messages(&trace)
        .iter()
        .any(|m| m.first.starts_with("INVITE"))));
    let invite = sipp_messages(&trace)
        .into_iter()
        .find(|m| m.first.starts_with("INVITE"))
        .unwrap();
    // SIPp's trace drops the CRs: compare line by line.
    assert_eq!(
        invite.body.trim_end(),
        offer.replace("\r\n", "\n").trim_end()
    );
    let answer = "v=0\no=carrier 1 1 IN IP4 127.0.0.3\ns=-\nc=IN IP4 127.0.0.3\nt=0 0\n\
                  m=audio 40010 RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=sendrecv\n";
    assert_eq!(ok.body.replace("\r\n", "\n").trim_end(), answer.trim_end());
    assert!(
        rtpe.calls().is_empty(),
        "nothing relayed: {:?}",
        rtpe.calls()
    );
    let (code, calls) = api_get(server, KEY, "/v1/calls");
    assert_eq!(code, 200);
    assert!(calls["items"][0]["relay"].is_null(), "{calls}");
}
