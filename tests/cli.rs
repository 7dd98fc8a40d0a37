//! The command line (SPEC §1): `--version`, `check` on good and bad files
//! (exit codes, `file:line: key: message`), `run` with signals.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{Server, TempDir, BIN, LOOPBACK_CONFIG};

fn sipfront(args: &[&str], cwd: &std::path::Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run sipfront")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn version() {
    let dir = TempDir::new("version");
    let out = sipfront(&["--version"], dir.path());
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("sipfront {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_embedded_default_when_no_file() {
    let dir = TempDir::new("embedded");
    let out = sipfront(&["check"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("OK: <embedded>/config/sipfront.toml"),
        "{stdout}"
    );
    assert!(stdout.contains("udp:127.0.0.1:5060"), "{stdout}");
}

#[test]
fn check_uses_config_dir_file_when_present() {
    let dir = TempDir::new("cwdfile");
    std::fs::create_dir_all(dir.path().join("config")).expect("mkdir");
    dir.write("config/sipfront.toml", "[server]\nrealm = \"here\"\n");
    let out = sipfront(&["check"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("OK: config/sipfront.toml"));
}

#[test]
fn check_good_file() {
    let dir = TempDir::new("good");
    dir.write("rates.csv", "prefix,per_minute,name\n1,0.01,US\n");
    let cfg = dir.write(
        "good.toml",
        r#"
[[listen]]
transport = "udp"
address = "127.0.0.1:5070"

[rates]
file = "rates.csv"

[[trunk]]
id = 1
name = "36465"
password = "s3cret"
multiple_numbers = true

[[did]]
number = "12565378257"
destinations = [ { transport = 5, destination = "36465", priority = 1 } ]
"#,
    );
    let out = sipfront(
        &["check", "--config", &cfg.display().to_string()],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("OK: "), "{stdout}");
    assert!(stdout.contains("1 trunks, 1 DIDs"), "{stdout}");
}

fn check_fails(dir: &TempDir, name: &str, body: &str) -> String {
    let cfg = dir.write(name, body);
    let out = sipfront(&["check", "--config", name], dir.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "check must exit 1 for {}",
        cfg.display()
    );
    text(&out.stderr)
}

#[test]
fn check_type_error_names_file_line_key() {
    let dir = TempDir::new("type");
    let err = check_fails(
        &dir,
        "bad.toml",
        "[server]\nrealm = \"x\"\n\n[[trunk]]\nid = 1\npassword = \"p\"\nmax_channels = \"ten\"\n",
    );
    assert_eq!(
        err.trim(),
        "bad.toml:7: trunk[0].max_channels: expected an integer, found string \"ten\""
    );
}

#[test]
fn check_semantic_errors_name_file_line_key() {
    let dir = TempDir::new("sem");
    let err = check_fails(
        &dir,
        "bad.toml",
        "[[trunk]]\nid = 1\nname = \"a\"\npassword = \"p\"\n\n[[did]]\nnumber = \"123\"\ndestinations = [ { transport = 5, destination = \"b\" } ]\n",
    );
    assert_eq!(
        err.trim(),
        "bad.toml:8: did[0].destinations[0].destination: no trunk with name `b`"
    );
}

#[test]
fn check_unknown_key_and_syntax() {
    let dir = TempDir::new("typo");
    let err = check_fails(&dir, "typo.toml", "[server]\nrelm = \"x\"\n");
    assert!(
        err.starts_with("typo.toml:2: server.relm: unknown field `relm`"),
        "{err}"
    );
    let err = check_fails(&dir, "syntax.toml", "[server\n");
    assert!(err.starts_with("syntax.toml:1"), "{err}");
}

#[test]
fn check_rates_errors_name_csv_line() {
    let dir = TempDir::new("rates");
    dir.write("rates.csv", "1,0.01\n12a,0.02\n");
    let err = check_fails(&dir, "r.toml", "[rates]\nfile = \"rates.csv\"\n");
    assert_eq!(err.trim(), "rates.csv:2: prefix: `12a` must be digits only");
    let err = check_fails(&dir, "m.toml", "[rates]\nfile = \"missing.csv\"\n");
    assert!(
        err.starts_with("m.toml:2: rates.file: cannot read rates file"),
        "{err}"
    );
}

#[test]
fn check_missing_file() {
    let dir = TempDir::new("missing");
    let out = sipfront(&["check", "--config", "nope.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("nope.toml: cannot read"));
}

#[test]
fn run_rejects_bad_config_with_exit_1() {
    let dir = TempDir::new("runbad");
    dir.write("bad.toml", "[server]\ndrain_s = -1\n");
    let out = sipfront(&["run", "--config", "bad.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("bad.toml:2: server.drain_s"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sighup_rereads_and_sigterm_stops_cleanly() {
    let mut server = Server::start(LOOPBACK_CONFIG);
    server.signal("HUP");
    assert!(
        server.wait_log("SIGHUP: config re-read", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
    std::fs::write(&server.config, "[server]\nrealm = 5\n").expect("rewrite config");
    server.signal("HUP");
    assert!(
        server.wait_log("SIGHUP: config rejected", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
    assert!(
        server.log_text().contains("server.realm"),
        "{}",
        server.log_text()
    );
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        server.log_text()
    );
    assert!(server.log_text().contains("stopped"));
}

#[test]
fn sigint_stops_cleanly() {
    let mut server = Server::start(LOOPBACK_CONFIG);
    server.signal("INT");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        server.log_text()
    );
}

/// What users read stands on its own: the README, the shipped config, the
/// container and service files and every `--help` cite RFCs and the README,
/// never the internal product contract ("SPEC") they do not have. (The
/// OpenAPI document has the same check in `control_api.rs`.)
#[test]
fn user_facing_text_never_cites_the_internal_spec() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts: Vec<(String, String)> = Vec::new();
    for name in ["README.md", "config/sipfront.toml", "Dockerfile"] {
        let text = std::fs::read_to_string(root.join(name)).expect(name);
        texts.push((name.to_owned(), text));
    }
    if let Ok(dir) = std::fs::read_dir(root.join("contrib")) {
        for entry in dir.flatten() {
            let path = entry.path();
            let text = std::fs::read_to_string(&path).expect("contrib file");
            texts.push((path.display().to_string(), text));
        }
    }
    let dir = TempDir::new("help");
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["check", "--help"],
        &["key", "--help"],
        &["key", "create", "--help"],
        &["key", "list", "--help"],
        &["key", "delete", "--help"],
    ] {
        let out = sipfront(args, dir.path());
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        texts.push((format!("sipfront {}", args.join(" ")), text(&out.stdout)));
    }
    for (name, text) in &texts {
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains("SPEC"),
                "{name}:{}: cites the internal spec: {line}",
                n + 1
            );
        }
    }
    // The README really was read (a wrong path would pass the loop above).
    assert!(texts[0].1.contains("RFC 3261"), "README.md looks empty");
}
