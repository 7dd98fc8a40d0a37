//! One test per SPEC §3 row (and its edge cases), then [`decide`] end to end,
//! including which row answers when several would fail.

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::config::{DidConfig, Rate, RateTable, TrunkConfig};

fn trunk(extra: &str) -> TrunkConfig {
    toml::from_str(&format!(
        "id = 1\nname = \"36465\"\npassword = \"s3cret\"\ncallerid = \"12121234567\"\n{extra}"
    ))
    .unwrap()
}

fn rate(per_minute: f64) -> Rate {
    Rate {
        prefix: "44".into(),
        per_minute,
        name: "UK".into(),
    }
}

fn rates() -> RateTable {
    RateTable::parse(
        "1,0.01,US\n1212,0.012,NYC\n1800,0,toll-free\n44,0.02,UK\n882,2.5,satellite\n",
        "r.csv",
    )
    .unwrap()
}

fn on_net() -> OnNetIndex {
    let other: TrunkConfig = toml::from_str("id = 2\nname = \"50001\"").unwrap();
    let did: DidConfig = toml::from_str("number = \"12565378257\"").unwrap();
    OnNetIndex::new([&trunk(""), &other], [&did])
}

const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

fn facts(dialled: &str) -> CallFacts<'_> {
    CallFacts {
        dialled,
        caller_user: Some("2001"),
        source_ip: SRC,
        active_channels: 0,
    }
}

fn run(t: &TrunkConfig, call: &CallFacts<'_>) -> Result<Decision, Denied> {
    let (r, o) = (rates(), on_net());
    decide(
        t,
        call,
        &PolicyContext {
            rates: &r,
            on_net: &o,
        },
    )
}

// --- ip_restrict -----------------------------------------------------------

#[test]
fn ip_restrict_row() {
    assert_eq!(check_ip(&trunk(""), SRC), Ok(()));
    let t = trunk("ip_restrict = true\nallowed_ips = [\"192.0.2.0/24\"]");
    assert_eq!(check_ip(&t, SRC), Ok(()));
    let e = check_ip(&t, "198.51.100.1".parse().unwrap()).unwrap_err();
    assert_eq!(e.status().as_u16(), 403);
    assert!(e.to_string().contains("198.51.100.1"));
    assert!(check_ip(&trunk("ip_restrict = true"), SRC).is_err());
}

// --- channels ----------------------------------------------------------------

#[test]
fn channels_row() {
    let t = trunk("channels_restrict = true\nmax_channels = 2");
    assert_eq!(check_channels(&t, 0), Ok(()));
    assert_eq!(check_channels(&t, 1), Ok(()));
    let e = check_channels(&t, 2).unwrap_err();
    assert_eq!(e, Denied::ChannelLimit { active: 2, max: 2 });
    assert_eq!(e.status().as_u16(), 503);
    assert!(e.reason_phrase().contains("max_channels 2"));
    assert!(e.to_string().contains("max_channels 2"));
    // Not restricted: any count.
    assert_eq!(check_channels(&trunk("max_channels = 2"), 99), Ok(()));
    // Restricted to zero: nothing passes.
    assert!(check_channels(&trunk("channels_restrict = true\nmax_channels = 0"), 0).is_err());
}

// --- rewrite and number ------------------------------------------------------

#[test]
fn rewrite_function() {
    assert_eq!(rewrite("0044207", "00", ""), "44207");
    assert_eq!(rewrite("0044207", "00", "9"), "944207");
    // cond absent in the number: only the prefix is added.
    assert_eq!(rewrite("44207", "00", "1"), "144207");
    assert_eq!(rewrite("44207", "", "1"), "144207");
    assert_eq!(rewrite("44207", "", ""), "44207");
    // Only a leading cond is removed.
    assert_eq!(rewrite("4400", "00", ""), "4400");
}

#[test]
fn number_row() {
    let t = trunk("");
    assert_eq!(dialled_number(&t, "442071234567").unwrap(), "442071234567");
    assert_eq!(dialled_number(&t, "+442071234567").unwrap(), "442071234567");
    for bad in [
        "", "+", "44-20", "abc", "++44", "44 20", "*98", "4420#", "٣٣",
    ] {
        let e = dialled_number(&t, bad).unwrap_err();
        assert_eq!(e.status().as_u16(), 484, "{bad}");
    }
}

#[test]
fn rewrite_row_applies_only_when_enabled() {
    let off = trunk("rewrite_cond = \"00\"\nrewrite_prefix = \"1\"");
    assert_eq!(dialled_number(&off, "0044207").unwrap(), "0044207");
    let on = trunk("rewrite_enabled = true\nrewrite_cond = \"00\"\nrewrite_prefix = \"\"");
    assert_eq!(dialled_number(&on, "0044207").unwrap(), "44207");
    // `+` is stripped before the rewrite.
    let on = trunk("rewrite_enabled = true\nrewrite_cond = \"44\"\nrewrite_prefix = \"0044\"");
    assert_eq!(dialled_number(&on, "+44207").unwrap(), "0044207");
    // The rewrite cannot make a bad number good.
    let on = trunk("rewrite_enabled = true\nrewrite_cond = \"\"\nrewrite_prefix = \"1\"");
    assert!(dialled_number(&on, "x").is_err());
    // Stripping everything leaves nothing: 484.
    let all = trunk("rewrite_enabled = true\nrewrite_cond = \"123\"");
    assert_eq!(
        dialled_number(&all, "123").unwrap_err().status().as_u16(),
        484
    );
}

#[test]
fn normalize_function() {
    assert_eq!(normalize("+1"), Some("1"));
    assert_eq!(normalize("1"), Some("1"));
    assert_eq!(normalize("+"), None);
    assert_eq!(normalize("1+"), None);
}

// --- rate and cost -------------------------------------------------------------

#[test]
fn rate_row_longest_prefix_and_404() {
    let r = rates();
    assert_eq!(rate_for(&r, "12125551234").unwrap().name, "NYC");
    assert_eq!(rate_for(&r, "13105551234").unwrap().name, "US");
    let e = rate_for(&r, "33123").unwrap_err();
    assert_eq!(e.status().as_u16(), 404);
    assert!(e.to_string().contains("33123"));
}

#[test]
fn cost_row() {
    let t = trunk("cost_limit = true\nmax_call_cost = 0.18");
    // 0.18 / 0.02 = 9 minutes.
    assert_eq!(
        cost_duration(&t, &rate(0.02)),
        Ok(Some(Duration::from_secs(540)))
    );
    // Exactly one minute is allowed (floating point: 0.18 / 0.18).
    assert_eq!(
        cost_duration(&t, &rate(0.18)),
        Ok(Some(Duration::from_secs(60)))
    );
    let t3 = trunk("cost_limit = true\nmax_call_cost = 0.3");
    assert_eq!(
        cost_duration(&t3, &rate(0.1)),
        Ok(Some(Duration::from_secs(180)))
    );
    // Less than one minute is refused with 403.
    let e = cost_duration(&t, &rate(0.19)).unwrap_err();
    assert_eq!(e.status().as_u16(), 403);
    assert!(e.to_string().contains("0.19"));
    // Rounded down to whole seconds: 0.18 / 0.07 = 2.571… min = 154.28 s.
    assert_eq!(
        cost_duration(&t, &rate(0.07)),
        Ok(Some(Duration::from_secs(154)))
    );
    // Free destinations have no cost limit.
    assert_eq!(cost_duration(&t, &rate(0.0)), Ok(None));
    // cost_limit off: no limit, however expensive.
    assert_eq!(
        cost_duration(&trunk("max_call_cost = 0.01"), &rate(9.0)),
        Ok(None)
    );
    // cost_limit on with max_call_cost 0 refuses every paid call.
    assert!(cost_duration(&trunk("cost_limit = true"), &rate(0.01)).is_err());
}

// --- caller ID ---------------------------------------------------------------------

#[test]
fn caller_id_row() {
    let fixed = trunk("");
    assert_eq!(caller_id(&fixed, Some("2001")), "12121234567");
    assert_eq!(caller_id(&fixed, None), "12121234567");
    let pass = trunk("passthrough = true");
    assert_eq!(caller_id(&pass, Some("4420712345")), "4420712345");
    assert_eq!(caller_id(&pass, Some("+4420712345")), "4420712345");
    assert_eq!(caller_id(&pass, Some("alice")), "12121234567");
    assert_eq!(caller_id(&pass, Some("")), "12121234567");
    assert_eq!(caller_id(&pass, None), "12121234567");
    // The alias from SPEC §2.
    let alias = trunk("multiple_numbers = true");
    assert_eq!(caller_id(&alias, Some("555")), "555");
    let mut plus = trunk("");
    plus.callerid = "+15550001".into();
    assert_eq!(caller_id(&plus, None), "15550001");
}

// --- duration ----------------------------------------------------------------------

#[test]
fn duration_row() {
    let s = Duration::from_secs;
    let off = trunk("call_limit = 100");
    assert_eq!(max_duration(&off, None), None);
    assert_eq!(max_duration(&off, Some(s(540))), Some(s(540)));
    let on = trunk("call_restrict = true\ncall_limit = 100");
    assert_eq!(max_duration(&on, None), Some(s(100)));
    // The smaller of both limits.
    assert_eq!(max_duration(&on, Some(s(540))), Some(s(100)));
    assert_eq!(max_duration(&on, Some(s(60))), Some(s(60)));
}

// --- decide: the rows together, in order -------------------------------------------

#[test]
fn plain_offnet_call() {
    let t =
        trunk("call_restrict = true\ncall_limit = 3600\ncost_limit = true\nmax_call_cost = 0.18");
    let d = run(&t, &facts("+442071234567")).unwrap();
    assert_eq!(d.number, "442071234567");
    assert_eq!(d.caller_id, "12121234567");
    assert_eq!(d.rate().unwrap().name, "UK");
    assert_eq!(d.max_duration, Some(Duration::from_secs(540)));
    assert!(matches!(d.route, Route::OffNet(_)));
}

#[test]
fn unrestricted_call_has_no_limit() {
    let d = run(&trunk(""), &facts("12125551234")).unwrap();
    assert_eq!(d.max_duration, None);
    assert_eq!(d.rate().unwrap().per_minute, 0.012);
}

#[test]
fn on_net_skips_rate_and_cost() {
    // 882… is not in the way: DIDs and logins have no rate, yet are routed.
    let t = trunk("cost_limit = true\ncall_restrict = true\ncall_limit = 600");
    let d = run(&t, &facts("+12565378257")).unwrap();
    assert_eq!(d.route, Route::OnNet(OnNetTarget::Did));
    assert_eq!(d.rate(), None);
    assert_eq!(d.max_duration, Some(Duration::from_secs(600)));
    let d = run(&t, &facts("50001")).unwrap();
    assert_eq!(d.route, Route::OnNet(OnNetTarget::Trunk(TrunkId(2))));
    // The trunk's own login is not "another trunk": rated as off-net (404 here).
    assert_eq!(run(&t, &facts("36465")).unwrap_err().status().as_u16(), 404);
}

#[test]
fn on_net_after_rewrite() {
    let t = trunk("rewrite_enabled = true\nrewrite_cond = \"9\"");
    let d = run(&t, &facts("950001")).unwrap();
    assert_eq!(d.number, "50001");
    assert_eq!(d.route, Route::OnNet(OnNetTarget::Trunk(TrunkId(2))));
}

#[test]
fn free_rate_with_cost_limit_is_not_limited() {
    let t = trunk("cost_limit = true\nmax_call_cost = 0.0");
    let d = run(&t, &facts("18005551234")).unwrap();
    assert_eq!(d.rate().unwrap().name, "toll-free");
    assert_eq!(d.max_duration, None);
}

#[test]
fn each_row_answers_in_order() {
    // Everything wrong at once: ip_restrict answers first.
    let t = trunk(
        "ip_restrict = true\nallowed_ips = [\"10.0.0.0/8\"]\nchannels_restrict = true\n\
         max_channels = 1\ncost_limit = true\nmax_call_cost = 0.01",
    );
    let mut c = facts("x");
    c.active_channels = 5;
    assert_eq!(run(&t, &c).unwrap_err().status().as_u16(), 403);
    assert!(matches!(run(&t, &c), Err(Denied::IpNotAllowed { .. })));
    c.source_ip = "10.1.1.1".parse().unwrap();
    assert_eq!(run(&t, &c).unwrap_err().status().as_u16(), 503);
    c.active_channels = 0;
    assert_eq!(run(&t, &c).unwrap_err().status().as_u16(), 484);
    c.dialled = "33123";
    assert_eq!(run(&t, &c).unwrap_err().status().as_u16(), 404);
    c.dialled = "88212345";
    let e = run(&t, &c).unwrap_err();
    assert_eq!(e.status().as_u16(), 403);
    assert!(matches!(e, Denied::CostLimit { .. }));
    // On-net is reached before rate and cost.
    c.dialled = "12565378257";
    assert!(run(&t, &c).is_ok());
}

#[test]
fn passthrough_in_decision() {
    let t = trunk("passthrough = true");
    let mut c = facts("12125551234");
    c.caller_user = Some("+15551230000");
    assert_eq!(run(&t, &c).unwrap().caller_id, "15551230000");
    c.caller_user = Some("anonymous");
    assert_eq!(run(&t, &c).unwrap().caller_id, "12121234567");
}

#[test]
fn statuses_and_reasons() {
    let cases = [
        (Denied::IpNotAllowed { addr: SRC }, 403),
        (Denied::ChannelLimit { active: 1, max: 1 }, 503),
        (Denied::BadNumber { number: "x".into() }, 484),
        (Denied::NoRate { number: "3".into() }, 404),
        (
            Denied::CostLimit {
                max_call_cost: 0.1,
                per_minute: 1.0,
                prefix: "1".into(),
            },
            403,
        ),
    ];
    for (d, code) in cases {
        assert_eq!(d.status().as_u16(), code);
        assert!(!d.reason_phrase().is_empty());
        assert!(!d.to_string().is_empty());
    }
}
