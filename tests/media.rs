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
