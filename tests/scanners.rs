//! SIP scanners against the real binary (issue #7): sipvicious's `svmap`
//! finds no SIP service and `svwar` enumerates no extension, because their
//! requests are dropped unanswered (`[security] user_agent_block`), while a
//! normal OPTIONS from the same address is still answered.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, LOOPBACK_CONFIG};

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd} (test.sh installs sipvicious): {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn sipvicious_finds_nothing() {
    let cfg =
        format!("{LOOPBACK_CONFIG}\n[[trunk]]\nid = 1\nname = \"1001\"\npassword = \"s3cret\"\n");
    let server = Server::start(&cfg);
    let port = server.udp.port().to_string();
    let map = run("svmap", &["-p", &port, "127.0.0.1"]);
    assert!(
        map.contains("found nothing"),
        "svmap found something:\n{map}"
    );
    let war = run(
        "svwar",
        &[
            "-e",
            "1000-1002",
            "-m",
            "REGISTER",
            "-p",
            &port,
            "127.0.0.1",
        ],
    );
    assert!(
        !war.contains("1001"),
        "svwar enumerated the trunk:\n{war}\n{}",
        server.log_text()
    );
    // The same address is not banned: an ordinary OPTIONS is answered.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = sock.local_addr().unwrap();
    let req = common::options("UDP", local, server.udp, "z9hG4bK-after-scan");
    sock.send_to(req.as_bytes(), server.udp).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("OPTIONS answered");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"));
}
