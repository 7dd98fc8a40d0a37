//! RFC 4475-style corpus: every file under `tests/corpus/` is parsed and
//! checked against its entry in `tests/corpus/manifest.toml` (outcome, error
//! kind and status, expected field values). Every accepted message must also
//! re-emit byte-exact and survive every accessor; framing must cut it whole.

use bytes::Bytes;
use sipfront::sip::framing::{self, Frame};
use sipfront::sip::{Contact, HeaderName, Host, Message, Scheme};
use std::path::Path;
use toml::Value;

mod common;
use common::touch_everything;

fn host_str(h: &Host<'_>) -> String {
    h.to_string()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{key}: expected a string"))
}

fn i(v: &Value, key: &str) -> i64 {
    v.as_integer()
        .unwrap_or_else(|| panic!("{key}: expected an integer"))
}

fn opt(o: Option<&str>) -> &str {
    o.unwrap_or("")
}

fn check_ok(file: &str, case: &toml::Table, m: &Message, input: &[u8]) {
    touch_everything(m);
    assert!(input.ends_with(b"") && !m.as_bytes().is_empty());
    // byte-exact re-emission (datagram bytes beyond Content-Length dropped)
    assert!(
        input.starts_with(m.as_bytes()),
        "{file}: not a prefix of input"
    );
    if case.get("body").is_none() {
        assert_eq!(
            m.as_bytes().as_ref(),
            input,
            "{file}: re-emit not byte-exact"
        );
    }
    // stream framing agrees on the length when Content-Length is present
    if m.content_length().is_some() {
        let mut at = 0;
        if let Ok(Frame::KeepAlive(n)) = framing::check(input, 1 << 20) {
            at = n;
        }
        assert_eq!(
            framing::check(&input[at..], 1 << 20),
            Ok(Frame::Message(m.as_bytes().len() - at)),
            "{file}: framing"
        );
    }
    for (key, v) in case {
        match key.as_str() {
            "file" | "outcome" => {}
            "method" => assert_eq!(m.method().map(|x| x.as_str()), Some(s(v, key)), "{file}"),
            "request_uri" => assert_eq!(
                m.request_uri().map(|u| u.as_str()),
                Some(s(v, key)),
                "{file}"
            ),
            "call_id" => assert_eq!(m.call_id().unwrap(), s(v, key).as_bytes(), "{file}"),
            "cseq" => assert_eq!(i64::from(m.cseq().unwrap().seq), i(v, key), "{file}"),
            "cseq_method" => assert_eq!(m.cseq().unwrap().method.as_str(), s(v, key), "{file}"),
            "branch" => assert_eq!(opt(m.top_via().unwrap().branch()), s(v, key), "{file}"),
            "from_tag" => assert_eq!(opt(m.from().unwrap().tag()), s(v, key), "{file}"),
            "to_tag" => assert_eq!(opt(m.to().unwrap().tag()), s(v, key), "{file}"),
            "from_display" => assert_eq!(
                m.from().unwrap().display_unescaped().as_deref(),
                Some(s(v, key)),
                "{file}"
            ),
            "vias" => {
                let vias: Vec<_> = m.vias().collect::<Result<_, _>>().unwrap();
                assert_eq!(vias.len() as i64, i(v, key), "{file}");
            }
            "via_host" => assert_eq!(host_str(&m.top_via().unwrap().host), s(v, key), "{file}"),
            "via_port" => assert_eq!(
                m.top_via().unwrap().port.map(i64::from),
                Some(i(v, key)),
                "{file}"
            ),
            "via_transport" => assert_eq!(m.top_via().unwrap().transport, s(v, key), "{file}"),
            "received" => assert_eq!(m.top_via().unwrap().received(), Some(s(v, key)), "{file}"),
            "rport" => {
                let r = m.top_via().unwrap().rport();
                match v.as_str() {
                    Some("flag") => assert_eq!(r, Some(None), "{file}"),
                    _ => assert_eq!(r, Some(Some(i(v, key) as u16)), "{file}"),
                }
            }
            "max_forwards" => assert_eq!(
                m.max_forwards().unwrap().map(i64::from),
                Some(i(v, key)),
                "{file}"
            ),
            "body_len" => assert_eq!(m.body().len() as i64, i(v, key), "{file}"),
            "body" => assert_eq!(
                m.body(),
                Bytes::copy_from_slice(s(v, key).as_bytes()),
                "{file}"
            ),
            "content_length" => assert_eq!(
                m.content_length().map_or(-1, |c| c as i64),
                i(v, key),
                "{file}"
            ),
            "content_type" => assert_eq!(m.content_type(), Some(s(v, key).as_bytes()), "{file}"),
            "contacts" => {
                let c: Vec<_> = m.contacts().collect::<Result<_, _>>().unwrap();
                assert_eq!(c.len() as i64, i(v, key), "{file}");
            }
            "wildcard" => assert_eq!(
                m.contacts().next().unwrap().unwrap() == Contact::Wildcard,
                v.as_bool().unwrap(),
                "{file}"
            ),
            "instance" => {
                let c = m.contacts().next().unwrap().unwrap();
                assert_eq!(c.addr().unwrap().instance(), Some(s(v, key)), "{file}");
            }
            "expires" => assert_eq!(
                m.expires().unwrap().map(i64::from),
                Some(i(v, key)),
                "{file}"
            ),
            "routes" => assert_eq!(
                m.routes().filter(Result::is_ok).count() as i64,
                i(v, key),
                "{file}"
            ),
            "record_routes" => assert_eq!(
                m.record_routes().filter(Result::is_ok).count() as i64,
                i(v, key),
                "{file}"
            ),
            "status" => assert_eq!(
                m.status().map(|c| i64::from(c.0)),
                Some(i(v, key)),
                "{file}"
            ),
            "reason" => assert_eq!(m.reason(), Some(s(v, key).as_bytes()), "{file}"),
            "header_count" => assert_eq!(m.header_count() as i64, i(v, key), "{file}"),
            "has_header" => {
                for h in v.as_array().unwrap() {
                    let name = HeaderName::from_bytes(s(h, key).as_bytes());
                    assert!(m.header(&name).is_some(), "{file}: missing {name}");
                }
            }
            "unfolded" => {
                for (h, want) in v.as_table().unwrap() {
                    let name = HeaderName::from_bytes(h.as_bytes());
                    let got = m.header_unfolded(&name).unwrap();
                    assert_eq!(&*got, s(want, key).as_bytes(), "{file}");
                }
            }
            "ruri_user" => assert_eq!(m.request_uri().unwrap().user, Some(s(v, key)), "{file}"),
            "ruri_password" => {
                assert_eq!(m.request_uri().unwrap().password, Some(s(v, key)), "{file}")
            }
            "ruri_host" => assert_eq!(
                host_str(&m.request_uri().unwrap().host),
                s(v, key),
                "{file}"
            ),
            "ruri_port" => assert_eq!(
                m.request_uri().unwrap().port.map(i64::from),
                Some(i(v, key)),
                "{file}"
            ),
            "ruri_scheme" => {
                let want = match s(v, key) {
                    "sip" => Scheme::Sip,
                    "sips" => Scheme::Sips,
                    "tel" => Scheme::Tel,
                    _ => Scheme::Other,
                };
                assert_eq!(m.request_uri().unwrap().scheme, want, "{file}");
            }
            "tel" => assert_eq!(
                m.request_uri().unwrap().tel_number(),
                Some(s(v, key)),
                "{file}"
            ),
            "to_scheme" => assert_eq!(m.to().unwrap().uri.scheme, Scheme::Other, "{file}"),
            "auth_username" | "auth_realm" | "auth_nc" | "auth_qop" => {
                let c = m.authorization().unwrap().unwrap();
                match key.as_str() {
                    "auth_username" => assert_eq!(c.username.as_deref(), Some(s(v, key))),
                    "auth_realm" => assert_eq!(c.realm.as_deref(), Some(s(v, key))),
                    "auth_qop" => assert_eq!(c.qop.as_deref(), Some(s(v, key))),
                    _ => assert_eq!(c.nc.map(i64::from), Some(i(v, key))),
                }
            }
            "proxy_auth_username" | "proxy_auth_algorithm" => {
                let c = m.proxy_authorization().unwrap().unwrap();
                let got = if key == "proxy_auth_username" {
                    c.username
                } else {
                    c.algorithm
                };
                assert_eq!(got.as_deref(), Some(s(v, key)), "{file}");
            }
            "challenge_realm" => {
                let c = m.www_authenticate().unwrap().unwrap();
                assert_eq!(c.realm.as_deref(), Some(s(v, key)), "{file}");
            }
            other => panic!("{file}: unknown manifest key {other}"),
        }
    }
}

#[test]
fn corpus_matches_manifest() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let manifest: toml::Table = std::fs::read_to_string(dir.join("manifest.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let cases = manifest["case"].as_array().unwrap();
    assert!(cases.len() >= 40, "corpus must hold at least 40 messages");
    let mut listed = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for case in cases {
        let case = case.as_table().unwrap();
        let file = case["file"].as_str().unwrap();
        assert!(listed.insert(file.to_owned()), "{file} listed twice");
        let input = std::fs::read(dir.join(file)).unwrap();
        let outcome = std::panic::catch_unwind(|| check_case(file, case, &input));
        if outcome.is_err() {
            failures.push(file.to_owned());
        }
    }
    assert!(failures.is_empty(), "failing corpus entries: {failures:?}");
    // every message file is in the manifest
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".sip") {
            assert!(listed.contains(&name), "{name} missing from manifest");
        }
    }
}

fn check_case(file: &str, case: &toml::Table, input: &[u8]) {
    let parsed = Message::parse(Bytes::copy_from_slice(input));
    match case["outcome"].as_str().unwrap() {
        "ok" => {
            let m = parsed.unwrap_or_else(|e| panic!("{file}: expected ok, got {e:?}"));
            check_ok(file, case, &m, input);
        }
        "error" => {
            let e = parsed
                .err()
                .unwrap_or_else(|| panic!("{file}: expected an error"));
            assert_eq!(e.kind(), case["kind"].as_str().unwrap(), "{file}: {e:?}");
            assert_eq!(
                i64::from(e.status().0),
                case["status"].as_integer().unwrap(),
                "{file}"
            );
            assert!(!e.reason().is_empty());
        }
        other => panic!("{file}: bad outcome {other}"),
    }
}
