//! Fleets on PostgreSQL (`[store] url`): two real sipfront nodes on one
//! real PostgreSQL started by the test (Debian's `postgresql` binaries, a
//! throwaway cluster on a free loopback port), SIPp as PBX and carrier.
//!
//! - a trunk created over node 1's API is in force on node 2 within 2 s
//!   (LISTEN/NOTIFY) and takes a call there;
//! - node 2's `/v1/cdr` lists node 1's calls;
//! - PostgreSQL stopped: calls go on, their CDRs wait and are written when
//!   it returns; a node stopped meanwhile keeps them in its spill file and
//!   replays it when it starts again; none lost (counted);
//! - `[sync]` on two nodes: the lease holder pulls, the other takes the
//!   pulled trunks from the store's change feed; a key made by
//!   `sipfront key create` works on both within 2 s;
//! - the store itself (trunks, DIDs, registrations, seeding) and the sync
//!   lease, against the same real server.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::calls::{carrier_uas, uac, SippOut};
use common::postgres::Postgres;
use common::remote::{list, RemoteServer};
use common::{
    api_get, api_text, carrier_upstream, free_port, scenario, shipped_rates, Server, TempDir,
    LOOPBACK_CONFIG, TEST_API_KEY, TEST_API_KEY_CONFIG,
};
use reqwest::blocking::Client;
use serde_json::{json, Value};

/// A node's config: loopback ports, the test API key, the shipped rates,
/// the carrier, and the shared store (`store_dir` holds its spill file).
fn node_config(pg: &Postgres, up_port: u16, store_dir: &Path) -> String {
    format!(
        "{LOOPBACK_CONFIG}{TEST_API_KEY_CONFIG}\n[rates]\nfile = \"{}\"\n\n{}\n\
         [store]\nurl = \"{}\"\npath = \"{}\"\n",
        shipped_rates(),
        carrier_upstream(up_port),
        pg.url(),
        store_dir.join("sipfront.db").display()
    )
}

fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let resp = Client::new()
        .post(format!("http://{}{path}", server.http))
        .bearer_auth(TEST_API_KEY)
        .json(body)
        .timeout(Duration::from_secs(10))
        .send()
        .expect("POST");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// One digest call to 12125551234 as the fleet trunk, which must succeed.
fn call(server: &Server, dir: &TempDir, tag: &str) -> SippOut {
    let out = uac(
        server,
        dir,
        &scenario("auth_uac.xml"),
        ("fleetpbx", "pw-fleet"),
        tag,
    );
    assert!(
        out.all_ok(1),
        "call {tag}:\n{}\n{}",
        out.show(),
        server.log_text()
    );
    out
}

/// The Call-ID of the INVITE a SIPp run sent.
fn call_id(out: &SippOut) -> String {
    out.msgs
        .iter()
        .find(|m| m.sent && m.method() == Some("INVITE"))
        .map(|m| m.call_id().to_owned())
        .expect("an INVITE was sent")
}

/// Node `server`'s `/v1/cdr` call ids (newest first, up to 1000).
fn cdr_ids(server: &Server) -> Option<Vec<String>> {
    let (status, body) = api_get(server, TEST_API_KEY, "/v1/cdr?per_page=1000");
    (status == 200).then(|| {
        body["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["call_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Waits up to `timeout` until node `server` lists every id of `want`.
fn wait_cdrs(server: &Server, want: &[String], timeout: Duration) -> Result<(), String> {
    let end = Instant::now() + timeout;
    loop {
        let have = cdr_ids(server).unwrap_or_default();
        let missing: Vec<&String> = want.iter().filter(|id| !have.contains(id)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!(
                "CDRs missing on {}: {missing:?} (listed: {have:?})",
                server.http
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `/metrics` sample of node `server`.
fn metric(server: &Server, name: &str) -> Option<u64> {
    let (_, text) = api_text(server, TEST_API_KEY, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn wait_metric(server: &Server, name: &str, ok: impl Fn(u64) -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if metric(server, name).is_some_and(&ok) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn two_nodes_share_trunks_and_cdrs_and_keep_cdrs_while_postgres_is_down() {
    let mut pg = Postgres::start();
    let up_port = free_port();
    let _carrier = carrier_uas(up_port);
    let dir = TempDir::new("fleet");
    let (dir1, dir2) = (TempDir::new("fleet-n1"), TempDir::new("fleet-n2"));
    let cfg1 = node_config(&pg, up_port, dir1.path());
    let mut node1 = Server::start(&cfg1);
    let node2 = Server::start(&node_config(&pg, up_port, dir2.path()));

    // A trunk created through node 1 is in force on node 2 within 2 s.
    let (st, t) = post(
        &node1,
        "/v1/trunks",
        &json!({"name": "fleetpbx", "password": "pw-fleet"}),
    );
    assert_eq!(st, 201, "{t}\n{}", node1.log_text());
    let created = Instant::now();
    let seen = loop {
        let (_, trunks) = api_get(&node2, TEST_API_KEY, "/v1/trunks");
        let listed = trunks
            .as_array()
            .or_else(|| trunks["items"].as_array())
            .is_some_and(|a| a.iter().any(|t| t["name"] == "fleetpbx"));
        if listed {
            break created.elapsed();
        }
        assert!(
            created.elapsed() < Duration::from_secs(2),
            "node 2 does not have node 1's trunk after 2 s:\n{}",
            node2.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("trunk created on node 1 was in force on node 2 after {seen:?}");
    assert!(node2.wait_log("changed on another node", Duration::from_secs(1)));
    let on2 = call(&node2, &dir, "via-node2");

    // Node 2 lists node 1's calls (and its own).
    let on1 = call(&node1, &dir, "via-node1");
    let mut placed = vec![call_id(&on2), call_id(&on1)];
    wait_cdrs(&node2, &placed, Duration::from_secs(10)).unwrap();

    // PostgreSQL stopped: calls go on, their CDRs wait.
    pg.stop();
    for i in 0..4 {
        placed.push(call_id(&call(&node1, &dir, &format!("pg-down-{i}"))));
    }
    assert!(
        wait_metric(&node1, "sipfront_cdrs_pending", |n| n == 4),
        "node 1 should hold 4 CDRs: {:?}\n{}",
        metric(&node1, "sipfront_cdrs_pending"),
        node1.log_text()
    );
    // ... and are written when it returns.
    pg.resume();
    wait_cdrs(&node2, &placed, Duration::from_secs(20)).unwrap();
    assert!(wait_metric(&node1, "sipfront_cdrs_pending", |n| n == 0));

    // Down again, and node 1 stopped meanwhile: its CDRs go to the spill
    // file, and the restarted node replays it once PostgreSQL is back.
    pg.stop();
    for i in 0..2 {
        placed.push(call_id(&call(&node1, &dir, &format!("spill-{i}"))));
    }
    node1.signal("TERM");
    assert_eq!(
        node1.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        node1.log_text()
    );
    let spill = dir1.path().join("cdr-spill.jsonl");
    let lines = std::fs::read_to_string(&spill).unwrap_or_default();
    assert_eq!(lines.lines().count(), 2, "spill file {}", spill.display());
    assert!(
        node1.log_text().contains("cdrs_spilled=2"),
        "{}",
        node1.log_text()
    );
    pg.resume();
    let node1 = Server::start(&cfg1);
    wait_cdrs(&node2, &placed, Duration::from_secs(20)).unwrap();
    assert!(wait_metric(&node1, "sipfront_cdrs_replayed_total", |n| n == 2));
    assert!(!spill.exists(), "the spill file is removed once replayed");

    // None lost, none doubled: the store holds exactly the calls placed,
    // and so do the per-day totals the listing's stats come from.
    let (_, page) = api_get(&node2, TEST_API_KEY, "/v1/cdr");
    assert_eq!(page["stats"]["count"], json!(placed.len()), "{page}");
    // SIPp to SIPp over UDP, the spilled and replayed records too.
    let legs: Vec<(&str, &str)> = page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|c| {
                    let s = |k: &str| c[k].as_str().unwrap_or("<missing>");
                    (s("a_transport"), s("b_transport"))
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(legs, vec![("udp", "udp"); placed.len()], "{page}");
    let stored = pg.query("SELECT count(*) FROM cdr").unwrap_or_default();
    assert_eq!(stored, placed.len().to_string(), "{}", pg.log());
    let distinct = pg
        .query("SELECT count(DISTINCT call_id) FROM cdr")
        .unwrap_or_default();
    assert_eq!(distinct, placed.len().to_string());
    for node in [&node1, &node2] {
        assert_eq!(metric(node, "sipfront_cdrs_dropped_total"), Some(0));
        assert_eq!(metric(node, "sipfront_cdrs_failed_total"), Some(0));
    }
}

/// A `PgStore` on `pg` for `node`, queries run on `rt`.
fn store(pg: &Postgres, rt: &tokio::runtime::Runtime, node: &str) -> sipfront::store::PgStore {
    let pool = sipfront::store::PgPool::new(&pg.url(), rt.handle().clone())
        .unwrap_or_else(|e| panic!("{e}"));
    sipfront::store::PgStore::open(pool, node.to_owned(), format!("{node}-instance"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn trunk(id: u64, name: &str) -> sipfront::config::TrunkConfig {
    serde_json::from_value(json!({"id": id, "name": name, "password": "pw", "max_channels": 3}))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn binding(contact: &str, port: u16) -> sipfront::registrar::StoredBinding {
    sipfront::registrar::StoredBinding {
        contact: contact.to_owned(),
        source: std::net::SocketAddr::from(([127, 0, 0, 9], port)),
        transport: sipfront::sip::Transport::Tcp,
        expires_unix_ms: 1_800_000_000_000,
        instance: Some("<urn:uuid:1>".to_owned()),
        reg_id: Some(1),
        call_id: "c1".to_owned(),
        cseq: 7,
        user_agent: "ua".to_owned(),
    }
}

#[test]
fn store_seeds_once_shares_keys_keeps_registrations_per_node_and_leases_to_one_holder() {
    use sipfront::registrar::BindingWrite;
    use sipfront::store::{seed_if_new, Store};

    let pg = Postgres::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (a, b) = (store(&pg, &rt, "node-a"), store(&pg, &rt, "node-b"));

    // Two nodes start on an empty database: the first seeds, the second
    // finds the store made and takes it as it is.
    let did: sipfront::config::DidConfig =
        serde_json::from_value(json!({"number": "12565378257", "channels": 2}))
            .unwrap_or_else(|e| panic!("{e}"));
    let (seeded, trunks, dids) = seed_if_new(&a, &[trunk(1, "one")], std::slice::from_ref(&did))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(seeded);
    assert_eq!((trunks.len(), dids), (1, vec![did]));
    let (seeded, trunks, _) =
        seed_if_new(&b, &[trunk(9, "nine")], &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!seeded);
    assert_eq!(trunks, vec![trunk(1, "one")]);

    // Writes on one node are read on the other; delete answers whether
    // the row existed; a sync's replace is all or none.
    a.put_trunk(&trunk(2, "two"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.trunks().unwrap_or_else(|e| panic!("{e}")).len(), 2);
    // A create whose id another node took a moment ago writes nothing.
    assert!(!b
        .create_trunk(&trunk(2, "late"))
        .unwrap_or_else(|e| panic!("{e}")));
    assert!(b
        .create_trunk(&trunk(3, "three"))
        .unwrap_or_else(|e| panic!("{e}")));
    assert!(a.delete_trunk(3).unwrap_or_else(|e| panic!("{e}")));
    assert!(b.delete_trunk(1).unwrap_or_else(|e| panic!("{e}")));
    assert!(!a.delete_trunk(1).unwrap_or_else(|e| panic!("{e}")));
    let clash = [trunk(5, "same"), trunk(6, "same")];
    assert!(
        a.replace_trunks(&clash).is_err(),
        "duplicate logins refused"
    );
    assert_eq!(
        b.trunks().unwrap_or_else(|e| panic!("{e}")),
        vec![trunk(2, "two")]
    );
    assert!(a
        .delete_did("12565378257")
        .unwrap_or_else(|e| panic!("{e}")));

    // Registrations belong to the node that holds their connection.
    let write = |login: &str, bs| BindingWrite {
        login: login.to_owned(),
        bindings: bs,
    };
    a.write_bindings(&[write(
        "alice",
        vec![binding("sip:a@x", 1), binding("sip:a2@x", 2)],
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    b.write_bindings(&[write("alice", vec![binding("sip:b@x", 3)])])
        .unwrap_or_else(|e| panic!("{e}"));
    let on_a = a.bindings().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        on_a.iter()
            .map(|(l, b)| (l.as_str(), b.contact.as_str()))
            .collect::<Vec<_>>(),
        [("alice", "sip:a@x"), ("alice", "sip:a2@x")]
    );
    assert_eq!(on_a[0].1, binding("sip:a@x", 1));
    a.write_bindings(&[write("alice", vec![])])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(a.bindings().unwrap_or_else(|e| panic!("{e}")).is_empty());
    assert_eq!(b.bindings().unwrap_or_else(|e| panic!("{e}")).len(), 1);

    // API keys (their SHA-256) are the fleet's: made on one node, known to all.
    let key = sipfront::store::StoredApiKey {
        name: "ops".to_owned(),
        sha256: "ab".repeat(32),
        generated: false,
        created_ms: 1_800_000_000_000,
    };
    assert!(a.add_api_key(&key).unwrap_or_else(|e| panic!("{e}")));
    assert!(!b.add_api_key(&key).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(b.api_keys().unwrap_or_else(|e| panic!("{e}")), vec![key]);
    assert!(b.delete_api_key("ops").unwrap_or_else(|e| panic!("{e}")));
    assert!(a.api_keys().unwrap_or_else(|e| panic!("{e}")).is_empty());

    // The sync lease: one holder at a time, renewable, taken over once it
    // expires (PostgreSQL's clock decides).
    let ttl = Duration::from_millis(600);
    assert!(a
        .lease("trunk_sync", "a", ttl)
        .unwrap_or_else(|e| panic!("{e}")));
    assert!(!b
        .lease("trunk_sync", "b", ttl)
        .unwrap_or_else(|e| panic!("{e}")));
    assert!(a
        .lease("trunk_sync", "a", ttl)
        .unwrap_or_else(|e| panic!("{e}")));
    let renewed = Instant::now();
    let taken = loop {
        if b.lease("trunk_sync", "b", ttl)
            .unwrap_or_else(|e| panic!("{e}"))
        {
            break renewed.elapsed();
        }
        assert!(
            renewed.elapsed() < Duration::from_secs(5),
            "lease never expired"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        taken >= Duration::from_millis(500),
        "taken over after {taken:?}"
    );
    assert!(!a
        .lease("trunk_sync", "a", ttl)
        .unwrap_or_else(|e| panic!("{e}")));
}

/// The trunk names node `server` has in force.
fn trunk_names(server: &Server) -> Vec<String> {
    common::trunk_names(server, TEST_API_KEY)
}

#[test]
fn trunk_sync_pulls_on_the_lease_holder_only_and_a_cli_key_reaches_every_node() {
    let pg = Postgres::start();
    let remote = RemoteServer::start(list(
        &[json!({"id": 7, "name": "synced", "password": "pw"})],
        "v1",
    ));
    let sync = format!(
        "\n[sync]\nurl = \"{}\"\nappid = \"sync\"\ninterval_s = 1\n",
        remote.url()
    );
    let up_port = free_port();
    let (dir1, dir2) = (TempDir::new("sync-n1"), TempDir::new("sync-n2"));
    let node1 = Server::start(&(node_config(&pg, up_port, dir1.path()) + &sync));
    assert!(
        node1.wait_log("holds the sync lease and pulls", Duration::from_secs(10)),
        "{}",
        node1.log_text()
    );
    let node2 = Server::start(&(node_config(&pg, up_port, dir2.path()) + &sync));
    assert!(
        node2.wait_log("another node holds the sync lease", Duration::from_secs(10)),
        "{}",
        node2.log_text()
    );

    // The remote changes: node 1 pulls it, node 2 follows through the store.
    remote.set(list(
        &[json!({"id": 8, "name": "synced2", "password": "pw"})],
        "v2",
    ));
    let changed = Instant::now();
    while trunk_names(&node2) != ["synced2"] {
        assert!(
            changed.elapsed() < Duration::from_secs(5),
            "node 2 still has {:?}\nnode 1:\n{}",
            trunk_names(&node2),
            node1.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(trunk_names(&node1), ["synced2"]);
    let log2 = node2.log_text();
    assert!(!log2.contains("holds the sync lease and pulls"), "{log2}");
    assert!(!log2.contains("trunk sync: applied"), "{log2}");
    assert!(node1.log_text().contains("trunk sync: applied"));

    // `sipfront key create` against the fleet store: the key works on
    // every node within 2 s, without a SIGHUP.
    let made = std::process::Command::new(common::BIN)
        .args(["key", "create", "fleet-ops", "--config"])
        .arg(&node1.config)
        .output()
        .expect("run sipfront key create");
    assert!(made.status.success(), "{made:?}");
    let key = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    let created = Instant::now();
    while api_get(&node2, &key, "/v1/trunks").0 != 200 {
        assert!(
            created.elapsed() < Duration::from_secs(2),
            "node 2 refuses the new key\n{}",
            node2.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(api_get(&node1, &key, "/v1/trunks").0, 200);
}

/// A database of schema version 2 (CDRs without leg transports) is brought
/// to the current version by the next node to open it: old rows read with
/// empty transports, new ones keep theirs.
#[test]
fn a_version_2_database_gets_cdr_leg_transports() {
    use sipfront::cdr::{Cdr, CdrFilter, CdrSource, Direction, Disposition, Keyed, PgCdr};

    let pg = Postgres::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    use sipfront::sip::Transport;
    let record = |n: u64, a, b| Keyed {
        uid: format!("uid-{n}"),
        cdr: Cdr {
            call_id: format!("call-{n}"),
            start_unix_ms: 1_795_425_300_000 + n,
            direction: Direction::Placed,
            from: "12121234567".into(),
            to: "442079460000".into(),
            duration_s: 3,
            disposition: Disposition::Answered,
            sip_code: 200,
            per_minute: 0.012,
            destination: "United Kingdom - London".into(),
            sip_trunk: "one".into(),
            trunk_id: Some(1),
            a_transport: a,
            b_transport: b,
        },
    };
    let cdrs = PgCdr::new(store(&pg, &rt, "node-a").pool().clone());
    let n = cdrs.insert(&[record(1, Some(Transport::Tls), Some(Transport::Udp))]);
    assert_eq!(n.unwrap_or_else(|e| panic!("{e}")), 1);
    // Make it a version-2 database: its rows never had the columns.
    let old = "ALTER TABLE cdr DROP COLUMN a_transport, DROP COLUMN b_transport; \
               UPDATE store_meta SET value = 2 WHERE key = 'schema_version'; SELECT 1";
    // (psql prints each statement's tag, then the SELECT's row.)
    let done = pg.query(old);
    assert_eq!(
        done.as_deref().and_then(|o| o.lines().last()),
        Some("1"),
        "{done:?}\n{}",
        pg.log()
    );

    let cdrs = PgCdr::new(store(&pg, &rt, "node-b").pool().clone());
    let n = cdrs.insert(&[record(2, Some(Transport::Wss), None)]);
    assert_eq!(n.unwrap_or_else(|e| panic!("{e}")), 1);
    let legs: Vec<_> = cdrs
        .query_keyed(&CdrFilter::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|(_, c)| (c.call_id, c.a_transport, c.b_transport))
        .collect();
    assert_eq!(
        legs,
        vec![
            ("call-1".to_owned(), None, None),
            ("call-2".to_owned(), Some(Transport::Wss), None)
        ]
    );
}
