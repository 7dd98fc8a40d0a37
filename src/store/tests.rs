use std::path::Path;

use super::*;
use crate::config::{DestinationConfig, IpNet};

fn temp_db(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sipfront-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("sub").join("store.db")
}

fn trunk(id: u64, name: &str) -> TrunkConfig {
    let mut t: TrunkConfig = serde_json::from_str("{}").unwrap_or_else(|e| panic!("{e}"));
    t.id = Some(id);
    t.name = Some(name.to_owned());
    t.password = "pw".to_owned();
    t.max_call_cost = 0.18;
    t.allowed_ips = vec!["10.0.0.0/8"
        .parse::<IpNet>()
        .unwrap_or_else(|e| panic!("{e}"))];
    t
}

fn did(number: &str) -> DidConfig {
    DidConfig {
        number: number.to_owned(),
        channels: 2,
        call_status_url: String::new(),
        destinations: vec![DestinationConfig {
            transport: 5,
            destination: "a".to_owned(),
            priority: 1,
        }],
    }
}

#[test]
fn round_trip_seed_once_and_reopen() {
    let path = temp_db("rt");
    {
        let s = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let (seeded, trunks, dids) =
            seed_if_new(&s, &[trunk(1, "a")], &[did("155")]).unwrap_or_else(|e| panic!("{e}"));
        assert!(seeded);
        assert_eq!(trunks, vec![trunk(1, "a")]);
        assert_eq!(dids, vec![did("155")]);
        let mut t2 = trunk(2, "b");
        s.put_trunk(&t2).unwrap_or_else(|e| panic!("{e}"));
        t2.max_channels = 7;
        s.put_trunk(&t2).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.delete_trunk(1).unwrap_or_else(|e| panic!("{e}")));
        assert!(!s.delete_trunk(1).unwrap_or_else(|e| panic!("{e}")));
    }
    let s = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    // Seeding happens once: the file's trunk 1 does not come back.
    let (seeded, trunks, _) =
        seed_if_new(&s, &[trunk(1, "a")], &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!seeded);
    assert_eq!(trunks.len(), 1);
    assert_eq!((trunks[0].id(), trunks[0].max_channels), (2, 7));
    assert!(s.delete_did("155").unwrap_or_else(|e| panic!("{e}")));
    assert!(s.dids().unwrap_or_else(|e| panic!("{e}")).is_empty());
    let _ = std::fs::remove_dir_all(path.parent().and_then(Path::parent).unwrap_or(&path));
}

#[test]
fn shares_the_file_with_the_cdr_store() {
    let path = temp_db("cdr");
    let _cdr = crate::cdr::CdrStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let s = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    s.put_trunk(&trunk(3, "c"))
        .unwrap_or_else(|e| panic!("{e}"));
    drop(s);
    // Reopening both in either order keeps each one's schema.
    let _cdr2 = crate::cdr::CdrStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let s = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.trunks().unwrap_or_else(|e| panic!("{e}")).len(), 1);
    let _ = std::fs::remove_dir_all(path.parent().and_then(Path::parent).unwrap_or(&path));
}

#[test]
fn an_empty_file_leaves_an_empty_store_unseeded_so_later_trunks_still_seed() {
    let path = temp_db("empty-first");
    let s = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let (seeded, t, _) = seed_if_new(&s, &[], &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!seeded && t.is_empty());
    let (seeded, t, _) = seed_if_new(&s, &[trunk(1, "a")], &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(seeded);
    assert_eq!(t.len(), 1);
    // Seeded now: the file's later edits do not come back in.
    let (seeded, t, _) = seed_if_new(&s, &[trunk(2, "b")], &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!seeded);
    assert_eq!(t.len(), 1);
    let _ = std::fs::remove_dir_all(path.parent().and_then(Path::parent).unwrap_or(&path));
}

#[test]
fn replace_trunks_swaps_the_whole_set_or_nothing() {
    let path = temp_db("replace");
    let s = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    for t in [trunk(1, "a"), trunk(2, "b"), trunk(3, "c")] {
        s.put_trunk(&t).unwrap_or_else(|e| panic!("{e}"));
    }
    // 1 and 2 swap names (a row-by-row upsert would trip UNIQUE(name)), 3 goes, 4 comes.
    let next = vec![trunk(1, "b"), trunk(2, "a"), trunk(4, "d")];
    s.replace_trunks(&next).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.trunks().unwrap_or_else(|e| panic!("{e}")), next);
    // A set the table refuses (two trunks named "x") changes nothing.
    let bad = vec![trunk(5, "x"), trunk(6, "x")];
    assert!(s.replace_trunks(&bad).is_err());
    assert_eq!(s.trunks().unwrap_or_else(|e| panic!("{e}")), next);
    let _ = std::fs::remove_dir_all(path.parent().and_then(Path::parent).unwrap_or(&path));
}

fn stored(contact: &str, port: u16, expires_unix_ms: u64) -> crate::registrar::StoredBinding {
    crate::registrar::StoredBinding {
        contact: contact.to_owned(),
        source: std::net::SocketAddr::from(([198, 51, 100, 9], port)),
        transport: crate::sip::Transport::Udp,
        expires_unix_ms,
        instance: Some("<urn:uuid:1>".to_owned()),
        reg_id: Some(1),
        call_id: "c1".to_owned(),
        cseq: 7,
        user_agent: "ua".to_owned(),
    }
}

fn write(login: &str, bindings: Vec<crate::registrar::StoredBinding>) -> BindingWrite {
    BindingWrite {
        login: login.to_owned(),
        bindings,
    }
}

#[test]
fn bindings_are_replaced_per_login_and_survive_a_reopen() {
    let path = temp_db("bindings");
    {
        let s = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        s.write_bindings(&[
            write(
                "a",
                vec![
                    stored("sip:a@10.0.0.1", 1, 10),
                    stored("sip:a2@10.0.0.1", 2, 20),
                ],
            ),
            write("b", vec![stored("sip:b@10.0.0.2", 3, 30)]),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        // a refreshed to one binding, b unregistered.
        s.write_bindings(&[
            write("a", vec![stored("sip:a@10.0.0.1", 1, 40)]),
            write("b", vec![]),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let s = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let rows = s.bindings().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rows,
        vec![("a".to_owned(), stored("sip:a@10.0.0.1", 1, 40))]
    );
    let _ = std::fs::remove_dir_all(path.parent().and_then(Path::parent).unwrap_or(&path));
}

#[test]
fn a_version_1_file_gains_the_binding_and_api_key_tables_and_keeps_its_trunks() {
    let path = temp_db("v1");
    {
        let s = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        s.put_trunk(&trunk(1, "one"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Make it look like a file from before registrations and API keys were stored.
    {
        let c = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        c.execute_batch(
            "DROP TABLE binding; DROP TABLE api_key; \
             UPDATE store_meta SET value = 1 WHERE key = 'schema_version';",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let s = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.trunks().unwrap_or_else(|e| panic!("{e}")).len(), 1);
    assert!(s.bindings().unwrap_or_else(|e| panic!("{e}")).is_empty());
    s.write_bindings(&[write("a", vec![stored("sip:a@h", 1, 1)])])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.bindings().unwrap_or_else(|e| panic!("{e}")).len(), 1);
    assert!(s.api_keys().unwrap_or_else(|e| panic!("{e}")).is_empty());
    let _ = std::fs::remove_dir_all(path.parent().and_then(Path::parent).unwrap_or(&path));
}

#[test]
fn the_binding_writer_applies_the_last_write_of_each_login() {
    let path = temp_db("writer");
    let s: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}")));
    let (writer, sink) = BindingWriter::start(s.clone(), 16).unwrap_or_else(|e| panic!("{e}"));
    assert!(sink.write(write("a", vec![stored("sip:a@h", 1, 1)])));
    assert!(sink.write(write("b", vec![stored("sip:b@h", 2, 2)])));
    assert!(sink.write(write("a", vec![stored("sip:a@h", 1, 99)])));
    writer.shutdown();
    assert_eq!(sink.written(), 3);
    assert_eq!(sink.dropped(), 0);
    // Stopped: further writes are refused and counted.
    assert!(!sink.write(write("c", vec![])));
    assert_eq!(sink.dropped(), 1);
    let rows = s.bindings().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rows,
        vec![
            ("a".to_owned(), stored("sip:a@h", 1, 99)),
            ("b".to_owned(), stored("sip:b@h", 2, 2))
        ]
    );
    let _ = std::fs::remove_dir_all(path.parent().and_then(Path::parent).unwrap_or(&path));
}

#[test]
fn api_keys_are_added_once_by_name_listed_and_deleted() {
    let path = temp_db("keys");
    let key = |name: &str, generated| StoredApiKey {
        name: name.to_owned(),
        sha256: "ab".repeat(32),
        generated,
        created_ms: 1_700_000_000_000,
    };
    {
        let s = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.api_keys().unwrap_or_else(|e| panic!("{e}")).is_empty());
        assert!(s
            .add_api_key(&key("ops", false))
            .unwrap_or_else(|e| panic!("{e}")));
        assert!(s
            .add_api_key(&key("generated", true))
            .unwrap_or_else(|e| panic!("{e}")));
        // A second key of the same name is refused and changes nothing.
        let mut other = key("ops", true);
        other.sha256 = "cd".repeat(32);
        assert!(!s.add_api_key(&other).unwrap_or_else(|e| panic!("{e}")));
    }
    let s = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.api_keys().unwrap_or_else(|e| panic!("{e}")),
        vec![key("generated", true), key("ops", false)]
    );
    assert!(s.delete_api_key("ops").unwrap_or_else(|e| panic!("{e}")));
    assert!(!s.delete_api_key("ops").unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(s.api_keys().unwrap_or_else(|e| panic!("{e}")).len(), 1);
    let _ = std::fs::remove_dir_all(path.parent().and_then(Path::parent).unwrap_or(&path));
}
