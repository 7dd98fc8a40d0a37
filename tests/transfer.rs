//! Blind transfer (RFC 3515 REFER) through the real binary on loopback:
//! SIPp as the trunk's PBX (127.0.0.1, IP-authenticated) places a call to
//! the carrier (SIPp UAS on 127.0.0.3) and REFERs it to another number;
//! scenarios `tests/sipp/xfer_*.xml`. Attended transfer (REFER with
//! `Replaces`, RFC 3891): two SIPp PBX instances (twins in SIPp's 3pcc
//! mode, so one learns the other's dialog) place two calls and REFER one
//! with the other's dialog; scenarios `tests/sipp/att_*.xml`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::calls::{read_msgs, Msg};
use common::{
    api_get, free_port, scenario, shipped_rates, sipp_counter, sipp_run, Server, SippBg, TempDir,
    IP_TRUNK, LOOPBACK_CONFIG, TEST_API_KEY, TEST_API_KEY_CONFIG,
};

const CARRIER_IP: &str = "127.0.0.3";

/// The end of `xfer_pbx.xml` when sipfront ends the referrer's leg.
const END_BYE: &str = r#"  <recv request="BYE"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>"#;

/// The end of `xfer_pbx.xml` when the call goes on and the PBX hangs up.
const END_HANGUP: &str = r#"  <pause milliseconds="300"/>
  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: pbx <sip:2001@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>"#;

/// sipfront with the IP trunk `pbx` (plus `trunk_extra`), the shipped rates
/// and the carrier at 127.0.0.3:`carrier_port`.
fn server(trunk_extra: &str, carrier_port: u16) -> Server {
    Server::start(&format!(
        "{LOOPBACK_CONFIG}\n[rates]\nfile = \"{}\"\n\n{IP_TRUNK}{trunk_extra}\n\n\
         [[upstream]]\nname = \"carrier\"\nuri = \"sip:{CARRIER_IP}:{carrier_port};transport=udp\"\n\
         priority = 1\nping_interval_s = 0\n",
        shipped_rates()
    ))
}

/// `xfer_pbx.xml` for a transfer to `target` expecting `final_status`.
fn pbx_scenario(dir: &TempDir, target: &str, final_status: &str, end: &str) -> PathBuf {
    let tpl = std::fs::read_to_string(scenario("xfer_pbx.xml")).expect("template");
    let xml = tpl
        .replace("__TARGET__", target)
        .replace("__FINAL__", final_status)
        .replace("__END__", end);
    dir.write("xfer_pbx.xml", &xml)
}

/// Runs the PBX once against `server`; asserts its one call succeeded.
fn run_pbx(server: &Server, sf: &Path, log: &str, carrier: &mut SippBg) {
    let (sf, port, target) = (
        sf.display().to_string(),
        free_port().to_string(),
        server.udp.to_string(),
    );
    let args = [
        "-sf",
        sf.as_str(),
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
        "-recv_timeout",
        "15000",
        "-trace_msg",
        "-message_file",
        log,
        &target,
    ];
    let (code, text) = sipp_run(&args);
    let ok = sipp_counter(&text, "Successful call");
    assert!(
        code == Some(0) && ok == Some(1),
        "PBX: exit {code:?}, successful {ok:?}\n--- sipp ---\n{text}\n--- carrier ---\n{}\n\
         --- sipfront log ---\n{}",
        carrier.text(),
        server.log_text()
    );
}

/// The carrier on 127.0.0.3:`port`: scenario `sf`, or SIPp's built-in UAS.
fn carrier(port: u16, sf: Option<&str>, calls: &str, log: &str) -> SippBg {
    let sf = sf.map(|s| scenario(s).display().to_string());
    let port = port.to_string();
    let mut args = vec![
        "-i",
        CARRIER_IP,
        "-p",
        &port,
        "-m",
        calls,
        "-nostdin",
        "-timeout",
        "40s",
        "-trace_msg",
        "-message_file",
        log,
    ];
    match &sf {
        Some(sf) => args.extend(["-sf", sf.as_str()]),
        None => args.extend(["-sn", "uas"]),
    }
    SippBg::start(&args)
}

fn requests<'a>(msgs: &'a [Msg], method: &str) -> Vec<&'a Msg> {
    msgs.iter()
        .filter(|m| !m.sent && m.method() == Some(method))
        .collect()
}

#[test]
fn blind_transfer_places_the_new_call_and_bridges_the_transferred_party() {
    let dir = TempDir::new("xfer");
    let port = free_port();
    let carrier_log = dir.path().join("carrier.msg").display().to_string();
    let mut uas = carrier(port, Some("xfer_carrier.xml"), "2", &carrier_log);
    let server = server("", port);
    let sf = pbx_scenario(&dir, "12125550199", "200 OK", END_BYE);
    let pbx_log = dir.path().join("pbx.msg").display().to_string();
    run_pbx(&server, &sf, &pbx_log, &mut uas);

    let (code, text) = uas.wait(Duration::from_secs(40));
    assert!(
        code == Some(0) && sipp_counter(&text, "Successful call") == Some(2),
        "carrier: exit {code:?}\n{text}\n--- sipfront log ---\n{}",
        server.log_text()
    );
    let msgs = read_msgs(Path::new(&carrier_log));
    let invites = requests(&msgs, "INVITE");
    let new = invites
        .iter()
        .find(|m| m.first_line().contains("sip:12125550199@"))
        .unwrap_or_else(|| panic!("no INVITE for the Refer-To number: {invites:#?}"));
    assert!(
        !new.text.contains("2001") && !new.text.contains("Refer"),
        "the new INVITE leaks the PBX side:\n{}",
        new.text
    );
    assert!(new.text.contains("s=transferred") || new.text.contains("s=party-1"));
    let first = invites
        .iter()
        .find(|m| m.first_line().contains("sip:12125551234@"))
        .expect("the original call");
    let reinvite = invites
        .iter()
        .find(|m| m.call_id() == first.call_id() && !std::ptr::eq(**m, *first))
        .expect("a re-INVITE to the transferred party");
    assert!(
        reinvite.text.contains("s=party-2"),
        "bridging re-INVITE carries the new party's SDP:\n{}",
        reinvite.text
    );
    // Signalling only: the SDP is passed through (media is not anchored).
    let pbx = read_msgs(Path::new(&pbx_log));
    let head = |m: &Msg| m.text.split("\n\n").next().unwrap_or("").to_owned();
    let leak = pbx.iter().find(|m| head(m).contains(CARRIER_IP));
    assert!(
        leak.is_none(),
        "the carrier's address reached the PBX: {leak:#?}"
    );
    let notifies = requests(&pbx, "NOTIFY");
    assert_eq!(notifies.len(), 2, "100 Trying, then 200 OK: {notifies:#?}");
}

#[test]
fn a_transfer_the_trunk_may_not_place_is_notified_403_and_the_call_goes_on() {
    let dir = TempDir::new("xfer-refused");
    let port = free_port();
    let carrier_log = dir.path().join("carrier.msg").display().to_string();
    let mut uas = carrier(port, None, "1", &carrier_log);
    // 0.05 buys minutes to New York (0.012/min), under one to a UK mobile.
    let server = server("cost_limit = true\nmax_call_cost = 0.05\n", port);
    let sf = pbx_scenario(&dir, "447700900123", "403 Forbidden", END_HANGUP);
    let pbx_log = dir.path().join("pbx.msg").display().to_string();
    run_pbx(&server, &sf, &pbx_log, &mut uas);
    let (code, text) = uas.wait(Duration::from_secs(40));
    assert!(
        code == Some(0) && sipp_counter(&text, "Successful call") == Some(1),
        "carrier: the original call ends normally by the PBX's BYE: {code:?}\n{text}"
    );
    let msgs = read_msgs(Path::new(&carrier_log));
    assert!(
        !requests(&msgs, "INVITE")
            .iter()
            .any(|m| m.first_line().contains("447700900123")),
        "nothing placed toward the refused number"
    );
    assert!(server.wait_log("transfer refused", Duration::from_secs(10)));
}

// ---- attended transfer (REFER with Replaces) ------------------------------

/// The end of `att_pbx1.xml` when the call goes on: it tells its twin to
/// hang up call 2, then hangs up call 1 itself.
const ATT_END_HANGUP: &str = r#"  <sendCmd>
    <![CDATA[
      Call-ID: [$rcid]
      X-Hangup: now
    ]]>
  </sendCmd>
  <pause milliseconds="200"/>
  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: pbx <sip:2001@[local_ip]:[local_port]>;tag=pbx1tag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>"#;

/// The end of `att_pbx2.xml` when the call goes on: its twin's word, then
/// its own BYE.
const ATT_END_TWIN_HANGUP: &str = r#"  <recvCmd/>
  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: pbx <sip:2001@[local_ip]:[local_port]>;tag=pbx2tag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>"#;

/// One PBX twin: `att_pbx{n}.xml` with its placeholders filled, calling
/// `number`, its messages in `log`.
fn att_pbx(
    dir: &TempDir,
    server: &Server,
    n: u8,
    fill: &[(&str, &str)],
    number: &str,
    twin: u16,
    log: &str,
) -> SippBg {
    let name = format!("att_pbx{n}.xml");
    let mut xml = std::fs::read_to_string(scenario(&name)).expect("template");
    for (from, to) in fill {
        xml = xml.replace(from, to);
    }
    let sf = dir.write(&name, &xml).display().to_string();
    let (port, twin, target) = (
        free_port().to_string(),
        format!("127.0.0.1:{twin}"),
        server.udp.to_string(),
    );
    // Call 1's Call-ID is fixed ("att1-1") so its twin can address it.
    let cid = if n == 1 { "att1-%u" } else { "att2-%u-%p" };
    SippBg::start(&[
        "-sf",
        &sf,
        "-s",
        number,
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-3pcc",
        &twin,
        "-cid_str",
        cid,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "40s",
        "-timeout_error",
        "-recv_timeout",
        "20000",
        "-trace_msg",
        "-message_file",
        log,
        &target,
    ])
}

/// Waits (up to 20 s) until `GET /v1/calls` satisfies `f`; the last list.
fn wait_calls(server: &Server, f: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = api_get(server, TEST_API_KEY, "/v1/calls");
        let calls = body["items"].as_array().cloned().unwrap_or_default();
        if f(&calls) || std::time::Instant::now() > end {
            return calls;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_done(name: &str, sipp: &mut SippBg, calls: u64, server: &Server) {
    let (code, text) = sipp.wait(Duration::from_secs(45));
    assert!(
        code == Some(0) && sipp_counter(&text, "Successful call") == Some(calls),
        "{name}: exit {code:?}\n{text}\n--- sipfront log ---\n{}",
        server.log_text()
    );
}

/// The two calls of the attended-transfer tests, up to the moment the PBX
/// holds both: the two PBX twins (call 1 answered, call 2 placed) and the
/// message logs of PBX 1 and PBX 2.
fn att_setup(
    dir: &TempDir,
    server: &Server,
    pbx1_fill: &[(&str, &str)],
    pbx2_end: &str,
) -> (SippBg, SippBg, [String; 2]) {
    let log = |n: &str| dir.path().join(n).display().to_string();
    let logs = [log("pbx1.msg"), log("pbx2.msg")];
    let twin = free_port();
    let pbx1 = att_pbx(dir, server, 1, pbx1_fill, "12125551234", twin, &logs[0]);
    let answered = wait_calls(server, |c| c.len() == 1 && c[0]["state"] == "answered");
    assert!(
        answered.len() == 1,
        "call 1 answered: {answered:?}\n--- pbx 1 ---\n{}\n--- sipfront log ---\n{}",
        pbx1.text(),
        server.log_text()
    );
    let pbx2 = att_pbx(
        dir,
        server,
        2,
        &[("__END__", pbx2_end)],
        "12125550199",
        twin,
        &logs[1],
    );
    (pbx1, pbx2, logs)
}

#[test]
fn attended_transfer_bridges_the_far_parties_and_ends_both_pbx_legs() {
    let dir = TempDir::new("att");
    let port = free_port();
    let carrier_log = dir.path().join("carrier.msg").display().to_string();
    let mut uas = carrier(port, Some("att_carrier.xml"), "2", &carrier_log);
    // One core shard: the two calls must be on the same shard to be joined
    // (README "Threading model"), and call 2's Call-ID varies per run.
    let server = server(
        &format!("{TEST_API_KEY_CONFIG}\n[server]\nworkers = 1\n"),
        port,
    );
    let fill = [
        ("__TO_TAG__", "[$rtag]"),
        ("__FROM_TAG__", "[$rfrom]"),
        ("__FINAL__", "200 OK"),
        ("__END__", END_BYE),
    ];
    let (mut pbx1, mut pbx2, logs) = att_setup(&dir, &server, &fill, END_BYE);
    assert_done("PBX call 1", &mut pbx1, 1, &server);
    assert_done("PBX call 2", &mut pbx2, 1, &server);

    // The bridged pair is one answered call of the trunk: A calls C.
    let calls = wait_calls(&server, |c| c.len() == 1 && c[0]["to"] == "12125550199");
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let bridged = &calls[0];
    assert_eq!(bridged["state"], "answered");
    assert_eq!(bridged["trunk"], "pbx");
    assert_eq!(bridged["from"], "12125551234");
    let call_id = bridged["call_id"].as_str().expect("call_id").to_owned();
    assert!(!call_id.starts_with("att"), "its own Call-ID: {call_id}");

    // Ended from the API: both far parties get BYE.
    let url = format!("http://{}/v1/calls/{call_id}", server.http);
    let status = reqwest::blocking::Client::new()
        .delete(&url)
        .bearer_auth(TEST_API_KEY)
        .send()
        .map(|r| r.status().as_u16());
    assert!(matches!(status, Ok(200 | 204)), "DELETE {url}: {status:?}");
    assert_done("carrier", &mut uas, 2, &server);

    let msgs = read_msgs(Path::new(&carrier_log));
    let invites = requests(&msgs, "INVITE");
    let first = |number: &str| {
        invites
            .iter()
            .find(|m| m.first_line().contains(&format!("sip:{number}@")))
            .unwrap_or_else(|| panic!("no INVITE for {number}: {invites:#?}"))
            .call_id()
            .to_owned()
    };
    let (a, c) = (first("12125551234"), first("12125550199"));
    let reinvite = |cid: &str| {
        invites
            .iter()
            .filter(|m| m.call_id() == cid)
            .nth(1)
            .unwrap_or_else(|| panic!("no re-INVITE on {cid}: {invites:#?}"))
            .text
            .clone()
    };
    let body = |text: &str| text.split("\n\n").nth(1).unwrap_or("").trim().to_owned();
    assert_eq!(body(&reinvite(&a)), "", "A: offerless, for a fresh offer");
    assert!(
        reinvite(&c).contains("s=fresh-1"),
        "C gets A's fresh offer:\n{}",
        reinvite(&c)
    );
    let acks = requests(&msgs, "ACK");
    assert!(
        acks.iter()
            .any(|m| m.call_id() == a && m.text.contains("s=fresh-2")),
        "A gets C's answer in the ACK: {acks:#?}"
    );
    for cid in [&a, &c] {
        assert!(
            !reinvite(cid).contains("s=pbx-"),
            "the bridge carries only the far parties' SDP:\n{}",
            reinvite(cid)
        );
    }
    let head = |m: &Msg| m.text.split("\n\n").next().unwrap_or("").to_owned();
    for log in &logs {
        let pbx = read_msgs(Path::new(log));
        let leak = pbx.iter().find(|m| head(m).contains(CARRIER_IP));
        assert!(
            leak.is_none(),
            "the carrier's address reached the PBX: {leak:#?}"
        );
    }
    assert!(server.wait_log(
        "attended transfer: the far parties are bridged",
        Duration::from_secs(5)
    ));
}

#[test]
fn a_replaces_naming_no_dialog_is_notified_481_and_both_calls_go_on() {
    let dir = TempDir::new("att-refused");
    let port = free_port();
    let carrier_log = dir.path().join("carrier.msg").display().to_string();
    let mut uas = carrier(port, Some("att_carrier.xml"), "2", &carrier_log);
    let server = server(TEST_API_KEY_CONFIG, port);
    let fill = [
        ("__TO_TAG__", "nosuchtag"),
        ("__FROM_TAG__", "[$rfrom]"),
        ("__FINAL__", "481 Call/Transaction Does Not Exist"),
        ("__END__", ATT_END_HANGUP),
    ];
    let (mut pbx1, mut pbx2, _logs) = att_setup(&dir, &server, &fill, ATT_END_TWIN_HANGUP);
    assert_done("PBX call 1", &mut pbx1, 1, &server);
    assert_done("PBX call 2", &mut pbx2, 1, &server);
    assert_done("carrier", &mut uas, 2, &server);
    let msgs = read_msgs(Path::new(&carrier_log));
    let invites = requests(&msgs, "INVITE");
    assert_eq!(invites.len(), 2, "no re-INVITE: {invites:#?}");
    assert_eq!(
        requests(&msgs, "BYE").len(),
        2,
        "each call ended by its PBX"
    );
    assert!(server.wait_log("attended transfer refused", Duration::from_secs(5)));
}
