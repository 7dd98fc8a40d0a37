//! Blind transfer (RFC 3515 REFER) through the real binary on loopback:
//! SIPp as the trunk's PBX (127.0.0.1, IP-authenticated) places a call to
//! the carrier (SIPp UAS on 127.0.0.3) and REFERs it to another number;
//! scenarios `tests/sipp/xfer_*.xml`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::calls::{read_msgs, Msg};
use common::{
    free_port, scenario, shipped_rates, sipp_counter, sipp_run, Server, SippBg, TempDir, IP_TRUNK,
    LOOPBACK_CONFIG,
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
