//! Config loading tests: defaults, the shipped file and its examples, and
//! that every kind of error names the right line and key.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, ConfigSource::File(PathBuf::from("t.toml")))
}

fn err(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

const GOOD_TRUNK: &str = "[[trunk]]\nid = 1\nname = \"36465\"\npassword = \"x\"\n";

#[test]
fn empty_file_gets_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.listen[0].address.to_string(), "127.0.0.1:5060");
    assert_eq!(c.http.address.to_string(), "127.0.0.1:8080");
    assert_eq!(c.store.path, PathBuf::from("data/sipfront.db"));
    assert_eq!(c.server.realm, "sipfront.local");
    assert_eq!(c.server.drain_s, 30);
    assert_eq!(c.server.ring_timeout_s, 30);
    assert_eq!(c.security.max_auth_failures, 10);
    assert!(c
        .security
        .user_agent_block
        .iter()
        .any(|u| u == "friendly-scanner"));
    assert!(c.rate_table.is_empty());
}

#[test]
fn embedded_default_is_valid() {
    let c = Config::default_embedded().unwrap();
    assert_eq!(c.source, ConfigSource::Embedded);
    assert_eq!(c.listen.len(), 2);
    assert!(c.rate_table.lookup("12125550000").is_some());
}

#[test]
fn shipped_examples_validate() {
    // Uncomment the example section of the shipped file.
    let text: String = EMBEDDED_CONFIG
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = Config::parse(&text, ConfigSource::Embedded).unwrap();
    assert_eq!(c.trunk.len(), 1);
    assert_eq!(c.trunk[0].login(), "36465");
    assert_eq!(c.trunk[0].max_channels, 10);
    assert_eq!(c.did[0].destinations[0].transport, 5);
    assert_eq!(c.upstream[0].name, "carrier-a");
    assert_eq!(c.http.api_key[0].key.as_deref(), Some("change-me"));
}

#[test]
fn multiple_numbers_alias() {
    let c = parse(&format!("{GOOD_TRUNK}multiple_numbers = true\n")).unwrap();
    assert!(c.trunk[0].passthrough);
}

#[test]
fn trunk_ids_and_names_resolved() {
    let c = parse("[[trunk]]\nid = 7\npassword = \"a\"\n[[trunk]]\nhost_request = \"192.0.2.1\"\n")
        .unwrap();
    assert_eq!(c.trunk[0].login(), "10007");
    assert_eq!(c.trunk[1].id(), 8);
    assert_eq!(c.trunk[1].login(), "10008");
}

#[test]
fn type_error_names_line_and_key() {
    let e = err(&format!("# comment\n{GOOD_TRUNK}max_channels = \"10\"\n"));
    assert_eq!(
        e,
        ["t.toml:6: trunk[0].max_channels: expected an integer, found string \"10\""]
    );
}

#[test]
fn media_relay_needs_an_rtpengine_and_names_the_key() {
    let e = err(&format!("{GOOD_TRUNK}media = \"relay\"\n"));
    assert_eq!(
        e,
        ["t.toml:5: trunk[0].media: is \"relay\" but [media] rtpengine lists no rtpengine"]
    );
    let e = err(&format!("{GOOD_TRUNK}media = \"anchored\"\n"));
    assert!(
        e[0].starts_with("t.toml:5: trunk[0].media: unknown variant `anchored`"),
        "{e:?}"
    );
    let c = parse(&format!(
        "[media]\nrtpengine = [\"127.0.0.1:2223\"]\n{GOOD_TRUNK}media = \"relay\"\n"
    ))
    .unwrap();
    assert!(c.trunk[0].media.relays());
    assert_eq!(c.media.timeout_ms, 500);
    assert_eq!(c.media.budget(), std::time::Duration::from_millis(1000));
    let e = err("[media]\nrtpengine = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\ntries = 0\n");
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn unknown_key_is_an_error() {
    let e = err(&format!("{GOOD_TRUNK}max_chanels = 10\n"));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("t.toml:5: trunk[0].max_chanels: unknown field `max_chanels`"),
        "{e:?}"
    );
}

#[test]
fn syntax_error_names_line() {
    let e = err("[server]\nrealm = \"x\"\ndrain_s = = 3\n");
    assert!(e[0].starts_with("t.toml:3"), "{e:?}");
}

#[test]
fn bad_transport_and_address() {
    let e = err("[[listen]]\ntransport = \"sctp\"\naddress = \"127.0.0.1:5060\"\n");
    assert!(
        e[0].starts_with("t.toml:2: listen[0].transport: unknown variant `sctp`"),
        "{e:?}"
    );
    let e = err("[[listen]]\ntransport = \"udp\"\naddress = \"localhost\"\n");
    assert!(e[0].starts_with("t.toml:3: listen[0].address:"), "{e:?}");
}

#[test]
fn ws_listener_needs_a_port_of_its_own() {
    let c = parse("[[listen]]\ntransport = \"ws\"\naddress = \"127.0.0.1:8088\"\n").unwrap();
    assert_eq!(c.listen[0].transport, ListenTransport::Ws);
    let e = err(
        "[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n\
         [[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:5060\"\n\
         [[listen]]\ntransport = \"ws\"\naddress = \"127.0.0.1:5060\"\n",
    );
    assert!(
        e[0].starts_with(
            "t.toml:9: listen[2].address: ws 127.0.0.1:5060 is also a tcp listen address"
        ),
        "{e:?}"
    );
}

#[test]
fn missing_field_names_table() {
    let e = err("[server]\n\n[[upstream]]\nname = \"a\"\n");
    assert!(
        e[0].starts_with("t.toml:3: upstream[0]: missing field `uri`"),
        "{e:?}"
    );
}

#[test]
fn semantic_errors_are_all_reported_with_lines() {
    let text = "\
[[http.api_key]]
name = \"admin\"

[[upstream]]
name = \"a\"
uri = \"http://x\"

[[trunk]]
id = 1
name = \"100\"
password = \"p\"

[[trunk]]
id = 1
name = \"100\"

[[did]]
number = \"12x\"
destinations = [ { transport = 5, destination = \"nobody\" }, { transport = 3, destination = \"x\", priority = 2 } ]
";
    let e = err(text);
    assert_eq!(
        e,
        [
            "t.toml:1: http.api_key[0]: needs `key` or `key_sha256`",
            "t.toml:6: upstream[0].uri: `http://x` must start with sip: or sips:",
            "t.toml:14: trunk[1].id: duplicate trunk id 1 (also trunk[0])",
            "t.toml:15: trunk[1].name: duplicate trunk name `100` (also trunk[0])",
            "t.toml:13: trunk[1].password: a trunk needs a password (digest) or host_request (IP authentication)",
            "t.toml:18: did[0].number: `12x` must be digits (E.164 without +)",
            "t.toml:19: did[0].destinations[0].destination: no trunk with name `nobody`",
            "t.toml:19: did[0].destinations[1].transport: 3 is not 1 (SIP URI), 4 (PSTN) or 5 (trunk)",
        ]
    );
}

#[test]
fn rates_file_errors_name_csv_line() {
    let dir = std::env::temp_dir().join(format!("sipfront-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("rates.csv");
    std::fs::write(&csv, "1,0.01\n44,abc\n").unwrap();
    let text = format!("[rates]\nfile = {:?}\n", csv.display().to_string());
    let e = err(&text);
    assert_eq!(
        e,
        [format!(
            "{}:2: per_minute: `abc` must be a number >= 0",
            csv.display()
        )]
    );
    let missing = format!(
        "[rates]\nfile = {:?}\n",
        dir.join("nope.csv").display().to_string()
    );
    let e = err(&missing);
    assert!(
        e[0].starts_with("t.toml:2: rates.file: cannot read rates file"),
        "{e:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn api_key_sha256_checked() {
    let e = err("[[http.api_key]]\nname = \"a\"\nkey_sha256 = \"abc\"\n");
    assert_eq!(
        e,
        ["t.toml:3: http.api_key[0].key_sha256: must be 64 hex digits (SHA-256)"]
    );
    let ok = format!(
        "[[http.api_key]]\nname = \"a\"\nkey_sha256 = \"{}\"\nallowed_ips = [\"10.0.0.0/8\"]\n",
        "a".repeat(64)
    );
    assert!(parse(&ok).is_ok());
    let e = err("[[http.api_key]]\nname = \"a\"\nkey = \"k\"\nallowed_ips = [\"10.0.0.0/40\"]\n");
    assert!(
        e[0].starts_with("t.toml:4: http.api_key[0].allowed_ips"),
        "{e:?}"
    );
}

#[test]
fn registrar_section_defaults_and_bounds() {
    let c = parse("").unwrap();
    assert_eq!(c.registrar, RegistrarSettings::default());
    assert_eq!(
        (
            c.registrar.min_expires,
            c.registrar.max_expires,
            c.registrar.default_expires,
            c.registrar.max_contacts
        ),
        (60, 3600, 3600, 10)
    );
    let c = parse("[registrar]\nmin_expires = 30\nmax_expires = 600\ndefault_expires = 300\nmax_contacts = 3\n")
        .unwrap();
    assert_eq!(c.registrar.default_expires, 300);
    assert_eq!(c.registrar.max_contacts, 3);

    let e = err("[registrar]\nmin_expires = 0\nmax_contacts = 0\n");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.toml:2: registrar.min_expires")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.toml:3: registrar.max_contacts")),
        "{e:?}"
    );
    assert_eq!(c.registrar.keepalive_s, 30);
    let c = parse("[registrar]\nkeepalive_s = 0\n").unwrap();
    assert_eq!(c.registrar.keepalive_s, 0);
    let e = err("[registrar]\nmin_expires = 60\nkeepalive_s = 86400\n");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.toml:3: registrar.keepalive_s")),
        "{e:?}"
    );
    let e = err("[registrar]\nmin_expires = 100\nmax_expires = 50\ndefault_expires = 70\n");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.toml:3: registrar.max_expires")),
        "{e:?}"
    );
    let e = err("[registrar]\ndefault_expires = 7200\n");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.toml:2: registrar.default_expires")),
        "{e:?}"
    );
    let e = err("[registrar]\nmin_expire = 7\n");
    assert!(e.iter().any(|m| m.contains("min_expire")), "{e:?}");
}

#[test]
fn emergency_numbers_and_number_format() {
    let c = parse("").unwrap();
    assert_eq!(c.server.emergency_numbers, ["911", "112", "999", "933"]);
    let c = parse(
        "[server]\nemergency_numbers = [\"112\"]\n\
         [[upstream]]\nname = \"c\"\nuri = \"sip:192.0.2.1\"\nnumber_format = \"plus\"\n",
    )
    .unwrap();
    assert_eq!(c.server.emergency_numbers, ["112"]);
    assert_eq!(c.upstream[0].number_format, NumberFormat::Plus);
    let e = err("[server]\nemergency_numbers = [\n  \"911\",\n  \"+112\",\n]\n");
    assert_eq!(
        e,
        ["t.toml:4: server.emergency_numbers[1]: `+112` must be digits (the number as dialled, no `+`)"]
    );
    let e = err("[[upstream]]\nname = \"c\"\nuri = \"sip:192.0.2.1\"\nnumber_format = \"e164\"\n");
    assert!(
        e.len() == 1
            && e[0].starts_with("t.toml:4: upstream[0].number_format: unknown variant `e164`"),
        "{e:?}"
    );
}

#[test]
fn session_timer_keys_default_and_bounds() {
    let c = parse("").unwrap();
    assert_eq!((c.server.session_expires_s, c.server.min_se_s), (1800, 90));
    let c = parse("[server]\nsession_expires_s = 4\nmin_se_s = 2\n").unwrap();
    assert_eq!((c.server.session_expires_s, c.server.min_se_s), (4, 2));
    assert!(
        parse("[server]\nsession_expires_s = 0\n").is_ok(),
        "0 disables"
    );
    let e = err("[server]\nmin_se_s = 1\n");
    assert!(
        e.iter().any(|m| m.starts_with("t.toml:2: server.min_se_s")),
        "{e:?}"
    );
    let e = err("[server]\nmin_se_s = 120\nsession_expires_s = 60\n");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.toml:3: server.session_expires_s")),
        "{e:?}"
    );
}

#[test]
fn transport_sizes_default_and_bounds_name_the_line() {
    let c = parse("[transport]\nudp_send_queue = 65536\n").unwrap();
    assert_eq!(c.transport.udp_send_queue, 65_536);
    assert_eq!(c.transport.udp_recv_buffer, 4 << 20);
    let e = err("[transport]\nudp_recv_buffer = 4194304\ntcp_write_queue = 1024\n");
    assert_eq!(
        e,
        ["t.toml:3: transport.tcp_write_queue: must be between 65536 and 1073741824 bytes"]
    );
}

#[test]
fn workers_default_to_the_cpus_and_are_bounded() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get().min(64));
    assert_eq!(parse("").unwrap().server.workers as usize, cpus);
    assert_eq!(parse("[server]\nworkers = 1\n").unwrap().server.workers, 1);
    assert_eq!(
        parse("[server]\nworkers = 64\n").unwrap().server.workers,
        64
    );
    for bad in ["0", "65"] {
        let e = err(&format!("[server]\nrealm = \"r\"\nworkers = {bad}\n"));
        assert_eq!(
            e,
            [
                "t.toml:3: server.workers: must be between 1 and 64 core shards \
              (default: the number of CPUs)"
            ]
        );
    }
    let e = err("[server]\nworkers = -1\n");
    assert!(
        e.len() == 1 && e[0].starts_with("t.toml:2: server.workers"),
        "{e:?}"
    );
}

#[test]
fn overload_keys_default_and_bounds_name_the_line() {
    let c = parse("").unwrap();
    assert_eq!(
        (c.server.overload_queue_ms, c.server.overload_drop_ms),
        (200, 2000)
    );
    assert!(
        parse("[server]\noverload_queue_ms = 0\noverload_drop_ms = 0\n").is_ok(),
        "0 turns each off"
    );
    let e = err("[server]\noverload_queue_ms = 500\noverload_drop_ms = 400\n");
    assert_eq!(
        e,
        [
            "t.toml:3: server.overload_drop_ms: must be 0 (off) or more than \
          overload_queue_ms (500) and at most 60000 milliseconds"
        ]
    );
    let e = err("[server]\noverload_queue_ms = 60001\noverload_drop_ms = 0\n");
    assert_eq!(
        e,
        ["t.toml:2: server.overload_queue_ms: must be 0 (off) or at most 60000 milliseconds"]
    );
}

#[test]
fn tls_keys_belong_to_tls_listeners_and_need_their_files() {
    let keys = |text: &str| -> Vec<String> {
        parse(text)
            .err()
            .map(|e| e.0.into_iter().map(|e| e.key).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        keys("[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\ncert = \"c.pem\"\n"),
        ["listen[0].cert"]
    );
    assert_eq!(
        keys("[[listen]]\ntransport = \"tls\"\naddress = \"127.0.0.1:0\"\n"),
        ["listen[0].transport"]
    );
    assert_eq!(
        keys(
            "[[listen]]\ntransport = \"tls\"\naddress = \"127.0.0.1:0\"\ncert = \"/nonexistent/c.pem\"\n\
             key = \"/nonexistent/k.pem\"\nverify_client = true\n"
        ),
        ["listen[0].cert", "listen[0].verify_client"]
    );
    // `ca = ""` is no CA (the shipped examples write the default that way).
    assert!(keys("[[upstream]]\nname = \"a\"\nuri = \"sips:a.example\"\nca = \"\"\n").is_empty());
    assert_eq!(
        keys("[[upstream]]\nname = \"a\"\nuri = \"sip:a.example;transport=sctp\"\n"),
        ["upstream[0].uri"]
    );
}

#[test]
fn cluster_keys_are_checked_with_their_line() {
    let c = parse("[cluster]\nredis = \"redis://127.0.0.1:6379\"\nnode = \"n1\"\n").unwrap();
    assert!(c.cluster.enabled());
    assert_eq!(
        (
            c.cluster.heartbeat_s,
            c.cluster.node_ttl_s,
            c.cluster.timeout_ms
        ),
        (10, 30, 200),
        "a dead node's channels come back within 30 s by default"
    );
    assert!(!parse("").unwrap().cluster.enabled());
    let e = err("[cluster]\nredis = \"127.0.0.1:6379\"\nnode = \"a b\"\nheartbeat_s = 20\n");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("t.toml:2: cluster.redis: "), "{e:?}");
    assert!(e[1].starts_with("t.toml:3: cluster.node: "), "{e:?}");
    assert!(
        e[2].starts_with("t.toml:1: cluster.node_ttl_s: must be at least twice heartbeat_s"),
        "{e:?}"
    );
}
