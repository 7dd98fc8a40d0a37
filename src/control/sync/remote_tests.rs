use serde_json::json;

use super::*;
use crate::config::ConfigSource;

/// A config in force with trunk 1 (`pbx`, password `old-pw`) and a DID
/// routed to it.
fn current() -> Config {
    let text = "[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n\n\
                [[trunk]]\nid = 1\nname = \"pbx\"\npassword = \"old-pw\"\n\n\
                [[did]]\nnumber = \"15551230000\"\n\
                [[did.destinations]]\ntransport = 5\ndestination = \"pbx\"\npriority = 1\n";
    Config::parse(text, ConfigSource::Embedded).unwrap_or_else(|e| panic!("{e}"))
}

fn body(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn invalid_text(r: Result<impl fmt::Debug, SyncError>) -> String {
    match r {
        Err(SyncError::Invalid(t)) => t,
        other => panic!("want Invalid, got {other:?}"),
    }
}

#[test]
fn a_bare_array_or_one_under_items_data_or_trunks() {
    let list = json!([{"id": 1, "name": "pbx"}]);
    for v in [
        list.clone(),
        json!({"items": list}),
        json!({"data": list, "pagination": {}}),
        json!({"trunks": list}),
        // `items` not an array: the next key is tried.
        json!({"items": "x", "data": list}),
    ] {
        let items = items(&body(&v)).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(items.len(), 1, "{v}");
    }
    assert!(matches!(
        items(&body(&json!({"results": []}))),
        Err(SyncError::Shape(_))
    ));
    assert!(matches!(items(b"42"), Err(SyncError::Shape(_))));
}

#[test]
fn garbage_and_hostile_bodies_are_errors_not_panics() {
    for bad in [
        &b""[..],
        b"<html>502 Bad Gateway</html>",
        b"[{\"id\": 1,",
        b"\xff\xfe\x00",
    ] {
        assert!(
            matches!(items(bad), Err(SyncError::NotJson(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // 1 MB of nesting: serde_json's depth limit, no stack overflow.
    let deep = "[".repeat(1 << 20);
    assert!(matches!(items(deep.as_bytes()), Err(SyncError::NotJson(_))));
    // Huge values end up in messages cut to a bounded length.
    let huge = "x".repeat(1 << 20);
    let list: Vec<Value> = (1..=50)
        .map(|i| json!({"id": i, "name": format!("{huge}{i}"), "callerid": huge}))
        .collect();
    let items = items(&body(&Value::Array(list))).unwrap_or_else(|e| panic!("{e}"));
    let text = invalid_text(remote_trunks(&items, &current()));
    assert!(text.len() <= TEXT_LIMIT + 4, "{} bytes", text.len());
    assert!(text.starts_with("trunk[0] (id 1): "), "{}", &text[..80]);
    // Items that are not objects are named by position.
    let text = invalid_text(remote_trunks(&[json!(1), json!("x")], &current()));
    assert_eq!(
        text,
        "trunk[0]: is not a JSON object; trunk[1]: is not a JSON object"
    );
}

#[test]
fn provider_fields_as_post_reads_them_and_unknown_ones_are_skipped() {
    let items = [json!({
        "id": "7", "name": "36465", "password": "pw", "max_call_cost": "0.18",
        "max_channels": "10", "channels_restrict": 1, "multiple_numbers": "true",
        "allowed_ips": "10.0.0.0/8, 192.0.2.7", "created_at": "2026-01-01", "status": "active",
    })];
    let t = remote_trunks(&items, &current()).unwrap_or_else(|e| panic!("{e}"));
    let t = &t[0];
    assert_eq!((t.id(), t.login(), t.password.as_str()), (7, "36465", "pw"));
    assert_eq!((t.max_call_cost, t.max_channels), (0.18, 10));
    assert!(t.channels_restrict && t.passthrough);
    assert_eq!(t.allowed_ips.len(), 2);
}

#[test]
fn id_and_name_are_required_and_bad_fields_are_named() {
    let items = [
        json!({"name": "a", "password": "p"}),
        json!({"id": 2, "password": "p"}),
        json!({"id": 3, "name": "c", "password": "p", "max_call_cost": "lots", "max_channels": -1}),
        json!({"id": 4, "name": "d", "password": "p"}),
    ];
    let text = invalid_text(remote_trunks(&items, &current()));
    assert_eq!(
        text,
        "trunk[0]: id: is required: sync knows a trunk by its id and name; \
         trunk[1] (id 2): name: is required: sync knows a trunk by its id and name; \
         trunk[2] (id 3): max_call_cost: must be a number >= 0 (or a string holding one), \
         max_channels: must be a whole number >= 0"
    );
}

#[test]
fn a_masked_password_keeps_the_one_this_id_has() {
    let cur = current();
    let items = [json!({"id": 1, "name": "pbx-renamed", "password": MASK})];
    let t = remote_trunks(&items, &cur).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t[0].password, "old-pw");
    // A new id has no password to keep.
    let items = [json!({"id": 9, "name": "new", "password": MASK})];
    let text = invalid_text(remote_trunks(&items, &cur));
    assert!(
        text.starts_with("trunk[0] (id 9): password: is masked"),
        "{text}"
    );
}

#[test]
fn plan_is_none_for_the_set_in_force_and_whole_config_errors_name_trunks() {
    let cur = current();
    let same = [json!({"id": 1, "name": "pbx", "password": MASK})];
    assert_eq!(plan(&same, &cur), Ok(None));
    // Duplicate names pass one by one; the whole config catches them, and
    // dropping `pbx` breaks the DID routed to it.
    let items = [
        json!({"id": 2, "name": "twin", "password": "p"}),
        json!({"id": 3, "name": "twin", "password": "p"}),
    ];
    let (trunks, diff) = plan(&items, &cur)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a change"));
    assert_eq!(
        diff.to_string(),
        "trunks: 2 (+2 added: 2, 3; -1 removed: 1)"
    );
    let mut next = cur.clone();
    next.trunk = trunks;
    let errors = next
        .validate_value("sync")
        .err()
        .unwrap_or_else(|| panic!("invalid"));
    let text = invalid_text(Err::<(), _>(SyncError::invalid(&errors, &next.trunk)));
    assert_eq!(
        text,
        "trunk[1] (id 3): name: duplicate trunk name `twin` (also trunk[0]); \
         did[0].destinations[0].destination: no trunk with name `pbx`"
    );
}

fn trunk(id: u64, max_channels: u32) -> TrunkConfig {
    let mut t = trunks::blank().unwrap_or_else(|e| panic!("{e:?}"));
    t.id = Some(id);
    t.name = Some(format!("t{id}"));
    t.max_channels = max_channels;
    t
}

#[test]
fn diff_summary_counts_and_names_a_few_ids() {
    let old: Vec<_> = (1..=6).map(|i| trunk(i, 1)).collect();
    let mut new: Vec<_> = (3..=12).map(|i| trunk(i, 1)).collect();
    new[0].max_channels = 5; // id 3
    new.reverse(); // order does not matter
    let d = Diff::between(&old, &new);
    assert_eq!(
        (d.added.len(), d.removed.clone(), d.changed.clone()),
        (6, vec![1, 2], vec![3])
    );
    assert_eq!(
        d.to_string(),
        "trunks: 10 (+6 added: 7, 8, 9, … and 3 more; -2 removed: 1, 2; ~1 changed: 3)"
    );
    let same = Diff::between(&old, &old);
    assert!(same.is_empty());
    assert_eq!(same.to_string(), "trunks: 6 (no change)");
}

/// Not a timed assertion: prints what reading, planning and validating
/// 1,000 trunks costs (`cargo test --lib sync -- --nocapture`).
#[test]
fn thousand_trunks_read_plan_and_validate() {
    let list: Vec<Value> = (1..=1000)
        .map(|i| {
            json!({"id": i, "name": format!("{}", 20_000 + i), "password": format!("pw{i}"),
                   "max_call_cost": "0.5", "cost_limit": true, "max_channels": "4",
                   "channels_restrict": true, "allowed_ips": ["10.0.0.0/8"]})
        })
        .collect();
    let mut list = list;
    list.push(json!({"id": 1_001, "name": "pbx", "password": "x"}));
    let bytes = body(&Value::Array(list));
    let cur = current();
    let t0 = std::time::Instant::now();
    let items = items(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let (trunks, diff) = plan(&items, &cur)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a change"));
    let mut next = cur.clone();
    next.trunk = trunks;
    next.validate_value("sync")
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "1,001 trunks ({} KiB): parse + plan + validate in {:?}; {diff}",
        bytes.len() / 1024,
        t0.elapsed()
    );
    assert_eq!(diff.total, 1001);
}
