//! SIPp message logs (`-trace_msg`), UAC run results and CDR rows from the
//! SQLite store: what the SIPp end-to-end tests (`trunk_policy`, `did_calls`)
//! read and show in their assertion messages.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{free_port, scenario, sipp_counter, sipp_run, Server, SippBg, TempDir};

// ---- SIPp message logs ------------------------------------------------------

/// One message of a SIPp `-trace_msg` file.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Seconds (wall clock, microsecond resolution) when SIPp logged it.
    pub t: f64,
    pub sent: bool,
    pub text: String,
}

impl Msg {
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    /// Status code of a response.
    pub fn status(&self) -> Option<u16> {
        let l = self.first_line();
        l.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
    }

    /// Method of a request.
    pub fn method(&self) -> Option<&str> {
        let l = self.first_line();
        if l.starts_with("SIP/2.0") {
            None
        } else {
            l.split(' ').next()
        }
    }

    /// First header `name` (case-insensitive), value trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        for l in self.text.lines().skip(1) {
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                if n.trim().eq_ignore_ascii_case(name) {
                    return Some(v.trim());
                }
            }
        }
        None
    }

    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or("")
    }

    pub fn cseq_method(&self) -> &str {
        self.header("CSeq")
            .and_then(|c| c.split_whitespace().nth(1))
            .unwrap_or("")
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-23 11:24:30.977656` → seconds.
pub fn parse_stamp(s: &str) -> Option<f64> {
    let (date, time) = s.trim().split_once(' ')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let h: f64 = t.next()?.parse().ok()?;
    let mi: f64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next()?.parse().ok()?;
    Some(days_from_civil(y, mo, da) as f64 * 86_400.0 + h * 3600.0 + mi * 60.0 + sec)
}

/// Parses a SIPp message file (absent or empty: no messages).
pub fn parse_msgs(text: &str) -> Vec<Msg> {
    let mut out: Vec<Msg> = Vec::new();
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).peekable();
    while let Some(l) = lines.next() {
        if !l.starts_with("-----") {
            if let Some(m) = out.last_mut() {
                if !(m.text.is_empty() && l.is_empty()) {
                    m.text.push_str(l);
                    m.text.push('\n');
                }
            }
            continue;
        }
        let stamp = l.trim_start_matches(['-', ' ']);
        let t = parse_stamp(stamp).unwrap_or(0.0);
        let kind = lines.next().unwrap_or("");
        out.push(Msg {
            t,
            sent: kind.contains(" sent"),
            text: String::new(),
        });
    }
    out
}

pub fn read_msgs(path: &Path) -> Vec<Msg> {
    parse_msgs(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Distinct Call-IDs of messages matching `f`.
pub fn call_ids(msgs: &[Msg], f: impl Fn(&Msg) -> bool) -> BTreeSet<String> {
    msgs.iter()
        .filter(|m| f(m))
        .map(|m| m.call_id().to_owned())
        .collect()
}

// ---- CDRs --------------------------------------------------------------------

#[derive(Debug, Clone)]
#[allow(dead_code)] // every field is shown in failure messages
pub struct Cdr {
    pub call_id: String,
    pub date: String,
    pub ts_ms: i64,
    pub kind: String,
    pub from: String,
    pub to: String,
    pub duration: i64,
    pub disposition: String,
    pub sip_code: i64,
    pub charge: f64,
    pub per_minute: f64,
    pub destination: String,
    pub sip_trunk: String,
    pub trunk_id: Option<i64>,
}

pub fn read_cdrs(db: &Path) -> Result<Vec<Cdr>, String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("open {}: {e}", db.display()))?;
    let mut st = conn
        .prepare(
            "SELECT call_id, date, ts_ms, type, from_number, to_number, duration, \
             disposition, sip_code, charge, per_minute, destination, sip_trunk, trunk_id \
             FROM cdr ORDER BY ts_ms",
        )
        .map_err(|e| format!("prepare: {e}"))?;
    let rows = st
        .query_map([], |r| {
            let s = |i: usize| -> rusqlite::Result<String> {
                Ok(r.get::<_, Option<String>>(i)?
                    .unwrap_or_else(|| "<NULL>".into()))
            };
            Ok(Cdr {
                call_id: s(0)?,
                date: s(1)?,
                ts_ms: r.get(2)?,
                kind: s(3)?,
                from: s(4)?,
                to: s(5)?,
                duration: r.get(6)?,
                disposition: s(7)?,
                sip_code: r.get(8)?,
                charge: r.get::<_, Option<f64>>(9)?.unwrap_or(f64::NAN),
                per_minute: r.get::<_, Option<f64>>(10)?.unwrap_or(f64::NAN),
                destination: s(11)?,
                sip_trunk: s(12)?,
                trunk_id: r.get(13)?,
            })
        })
        .map_err(|e| format!("query: {e}"))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("row: {e}"))
}

pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The billed charge of a CDR row is per_minute × duration / 60 to 4 dp.
pub fn charge_ok(c: &Cdr) -> bool {
    (c.charge - round4(c.per_minute * c.duration as f64 / 60.0)).abs() < 1e-9
}

// ---- the rig -------------------------------------------------------------------

/// Output of one SIPp UAC run.
pub struct SippOut {
    pub code: Option<i32>,
    /// stdout+stderr and the error file.
    pub text: String,
    pub msgs: Vec<Msg>,
    pub msg_file: PathBuf,
}

impl SippOut {
    pub fn ok(&self) -> Option<u64> {
        sipp_counter(&self.text, "Successful call")
    }
    pub fn failed(&self) -> Option<u64> {
        sipp_counter(&self.text, "Failed call")
    }
    pub fn all_ok(&self, calls: u64) -> bool {
        self.code == Some(0) && self.ok() == Some(calls) && self.failed() == Some(0)
    }
    /// Everything, for assertion messages.
    pub fn show(&self) -> String {
        let log = std::fs::read_to_string(&self.msg_file).unwrap_or_default();
        format!(
            "--- SIPp UAC: exit {:?}, successful {:?}, failed {:?} ---\n{}\n--- UAC messages ---\n{log}",
            self.code,
            self.ok(),
            self.failed(),
            self.text
        )
    }
}

/// A copy of the UAS check template with `<ereg check_it>` elements, one per
/// `(header or "" for the whole message, regexp)`.
pub fn check_scenario(dir: &TempDir, name: &str, checks: &[(&str, &str)]) -> PathBuf {
    let tpl = std::fs::read_to_string(scenario("policy_uas_check.xml")).expect("template");
    let mut xml = String::new();
    let mut refs = Vec::new();
    for (i, (hdr, re)) in checks.iter().enumerate() {
        let var = format!("chk{i}");
        if hdr.is_empty() {
            xml.push_str(&format!(
                "      <ereg regexp=\"{re}\" search_in=\"msg\" check_it=\"true\" assign_to=\"{var}\"/>\n"
            ));
        } else {
            xml.push_str(&format!(
                "      <ereg regexp=\"{re}\" search_in=\"hdr\" header=\"{hdr}:\" check_it=\"true\" assign_to=\"{var}\"/>\n"
            ));
        }
        refs.push(var);
    }
    let out = tpl
        .replace("__CHECKS__", &xml)
        .replace("__REFS__", &refs.join(","));
    assert!(!out.contains("__"), "unfilled template:\n{out}");
    let p = dir.path().join(name);
    std::fs::write(&p, out).expect("write scenario");
    p
}

/// The carrier: a SIPp UAS on 127.0.0.1:`port` answering every call
/// (`policy_uas.xml`), for up to two minutes.
pub fn carrier_uas(port: u16) -> SippBg {
    let sf = scenario("policy_uas.xml").display().to_string();
    let port = port.to_string();
    SippBg::start(&[
        "-sf",
        &sf,
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-nostdin",
        "-timeout",
        "120s",
        "-recv_timeout",
        "100000",
    ])
}

/// SIPp's built-in UAS on 127.0.0.1:`port` (180, then 200): answers
/// `calls` calls, each ended by a BYE it receives.
pub fn builtin_uas(port: u16, calls: u32) -> SippBg {
    let (port, calls) = (port.to_string(), calls.to_string());
    SippBg::start(&[
        "-sn",
        "uas",
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-m",
        &calls,
        "-nostdin",
        "-timeout",
        "30s",
    ])
}

/// A copy of the scenario template `tpl` (`auth_uac_refused.xml`,
/// `did_uac_refused.xml`, ...) with `__CODE__` = `code`.
pub fn code_scenario(dir: &TempDir, tpl: &str, code: u16) -> PathBuf {
    let text = std::fs::read_to_string(scenario(tpl)).expect("template");
    let p = dir.path().join(format!("{code}-{tpl}"));
    std::fs::write(&p, text.replace("__CODE__", &code.to_string())).expect("write");
    p
}

/// A copy of `auth_uac_refused.xml` expecting `code`.
pub fn refused_scenario(dir: &TempDir, code: u16) -> PathBuf {
    code_scenario(dir, "auth_uac_refused.xml", code)
}

/// SIPp UAC: one digest call to 12125551234 via sipfront's UDP port as `user`/`pass`.
pub fn uac(server: &Server, dir: &TempDir, sf: &Path, creds: (&str, &str), tag: &str) -> SippOut {
    let msg_file = dir.path().join(format!("{tag}.msg"));
    let (sf, msg_s) = (sf.display().to_string(), msg_file.display().to_string());
    let port = free_port().to_string();
    let target = server.udp.to_string();
    let args = [
        "-sf",
        &sf,
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-au",
        creds.0,
        "-ap",
        creds.1,
        "-nostdin",
        "-timeout",
        "20s",
        "-timeout_error",
        "-recv_timeout",
        "10000",
        "-m",
        "1",
        "-d",
        "200",
        "-trace_msg",
        "-message_file",
        &msg_s,
        &target,
    ];
    let (code, text) = sipp_run(&args);
    SippOut {
        code,
        text,
        msgs: read_msgs(&msg_file),
        msg_file,
    }
}

// ---- a phone on a stream transport places a call -----------------------------

/// `ph`, connected to sipfront's listener `sip` (transport `scheme`:
/// `tcp`, `tls`, `ws`, `wss`), places a call as trunk `login`/`password`
/// to the SIPp carrier UAS already answering behind sipfront over UDP
/// ([`carrier_uas`]): its INVITE is challenged 407 and answered over its
/// connection, the 200 comes back with our Via in its transport,
/// `/v1/calls` shows `scheme` → `udp`, the phone's BYE ends the call, and
/// its `/v1/cdr` record keeps `scheme` and `udp` as the legs' transports.
pub fn phone_places_a_call_to_a_udp_carrier<P: super::phone::Pipe>(
    server: &Server,
    mut ph: super::phone::Phone<P>,
    sip: std::net::SocketAddr,
    scheme: &str,
    (login, password): (&str, &str),
) {
    use super::phone::header_value;
    use super::{api_get, wait_until, TEST_API_KEY};
    ph.contact = format!("sip:{login}@{};transport={scheme}", ph.pipe.sent_by());
    let show = |log: &str| format!("{log}\n--- sipfront log ---\n{}", server.log_text());
    let ok = ph
        .call("12125550000", login, password, sip)
        .unwrap_or_else(|e| panic!("{e}\n{}", show(&ph.log)));
    assert!(ok.starts_with("SIP/2.0 200"), "{}", show(&ph.log));
    let via = header_value(&ok, "Via").unwrap_or("");
    let token = format!("SIP/2.0/{} ", ph.pipe.via_transport());
    assert!(via.starts_with(&token), "{via}\n{}", show(&ph.log));
    let (status, calls) = api_get(server, TEST_API_KEY, "/v1/calls");
    let call = &calls["items"][0];
    assert_eq!(
        (
            status,
            call["a_transport"].as_str(),
            call["b_transport"].as_str()
        ),
        (200, Some(scheme), Some("udp")),
        "{calls}\n{}",
        show(&ph.log)
    );
    assert_eq!(ph.hang_up_placed(&ok), 200, "{}", show(&ph.log));
    assert!(
        wait_until(std::time::Duration::from_secs(5), || {
            let (_, calls) = api_get(server, TEST_API_KEY, "/v1/calls");
            calls["items"].as_array().is_some_and(Vec::is_empty)
        }),
        "the call is still listed after the BYE\n{}",
        show(&ph.log)
    );
    // Its record keeps both legs' transports.
    let mut cdrs = serde_json::Value::Null;
    let written = wait_until(std::time::Duration::from_secs(5), || {
        cdrs = api_get(server, TEST_API_KEY, "/v1/cdr").1;
        cdrs["items"].as_array().is_some_and(|a| !a.is_empty())
    });
    assert!(written, "no CDR after the BYE: {cdrs}\n{}", show(&ph.log));
    let cdr = &cdrs["items"][0];
    assert_eq!(
        (
            cdrs["items"].as_array().map(Vec::len),
            cdr["disposition"].as_str(),
            cdr["a_transport"].as_str(),
            cdr["b_transport"].as_str()
        ),
        (Some(1), Some("answered"), Some(scheme), Some("udp")),
        "{cdrs}\n{}",
        show(&ph.log)
    );
}
