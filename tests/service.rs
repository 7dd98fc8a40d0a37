//! Running as a service: `contrib/sipfront.service` passes
//! `systemd-analyze verify` (where the tool is installed), the binary
//! tells the `NOTIFY_SOCKET` the test binds `READY=1` once it serves and
//! `STOPPING=1` when SIGTERM starts the drain, and `SIPFRONT_*` variables
//! set config keys (what the container uses instead of a mounted file).

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use common::{Server, TempDir, BIN, LOOPBACK_CONFIG};

const UNIT: &str = include_str!("../contrib/sipfront.service");

#[test]
fn the_unit_is_type_notify_reloads_with_sighup_and_verifies() {
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/sipfront run --config /etc/sipfront/sipfront.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=sipfront",
    ] {
        assert!(UNIT.lines().any(|l| l == line), "unit lacks `{line}`");
    }
    let dir = TempDir::new("unit");
    // verify checks that ExecStart's program exists: point it at ours.
    let unit = dir.write(
        "sipfront.service",
        &UNIT.replace("/usr/local/bin/sipfront", BIN),
    );
    match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("systemd-analyze is not installed: SKIPPING only `systemd-analyze verify` of the unit");
        }
        Err(e) => panic!("systemd-analyze: {e}"),
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            // It exits 0 on some bad settings (it ignores them with a line).
            assert!(
                out.status.success() && !err.contains("sipfront.service"),
                "systemd-analyze verify: exit {:?}\n{err}",
                out.status.code()
            );
        }
    }
}

#[test]
fn ready_and_stopping_reach_the_notify_socket() {
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut server =
        Server::start_with_env(LOOPBACK_CONFIG, &[("NOTIFY_SOCKET", path.as_os_str())]);
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY=1 datagram");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains(&server.http.to_string()), "{ready}");
    server.signal("TERM");
    let n = sock.recv(&mut buf).expect("STOPPING=1 datagram");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        server.log_text()
    );
}

#[test]
fn environment_variables_set_config_keys() {
    let dir = TempDir::new("env");
    let run = |vars: &[(&str, &str)]| {
        let out = Command::new(BIN)
            .arg("check")
            .current_dir(dir.path())
            .envs(vars.iter().copied())
            .output()
            .expect("run sipfront check");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, text) = run(&[
        ("SIPFRONT_LISTEN", "udp:0.0.0.0:5070,tcp:0.0.0.0:5071"),
        ("SIPFRONT_HTTP_ADDRESS", "0.0.0.0:8081"),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("listen [udp:0.0.0.0:5070, tcp:0.0.0.0:5071], http 0.0.0.0:8081"),
        "{text}"
    );
    let (code, text) = run(&[("SIPFRONT_HTTP_ADDRESS", "anywhere")]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("environment SIPFRONT_HTTP_ADDRESS: http.address:"),
        "{text}"
    );
}
