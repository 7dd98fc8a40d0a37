//! A dnsmasq started by the test on a loopback port, authoritative for
//! `*.test` (anything it was not told is NXDOMAIN), with short TTLs: the
//! DNS server of the RFC 3263 tests. Stopped by its own pid on drop.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, TempDir};

/// A running dnsmasq.
pub struct Dnsmasq {
    child: Child,
    pub port: u16,
    /// The `--addn-hosts` file: rewrite it with [`Dnsmasq::set_hosts`].
    pub hosts: PathBuf,
    pub log: PathBuf,
    dir: TempDir,
}

fn binary() -> &'static str {
    for b in ["dnsmasq", "/usr/sbin/dnsmasq"] {
        if Command::new(b).arg("--version").output().is_ok() {
            return b;
        }
    }
    panic!(
        "dnsmasq is not installed. Install it with `apt-get install -y dnsmasq-base`, \
         or run ./test.sh which does."
    );
}

/// A DNS query for the A record of `name` (id 0x5346).
fn probe(name: &str) -> Vec<u8> {
    let mut p = vec![0x53, 0x46, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    p
}

impl Dnsmasq {
    /// Starts dnsmasq with `args` (`--srv-host=…`, `--host-record=…`) and
    /// the hosts file `hosts` (`"IP name"` lines), TTL `ttl_s`; waits until
    /// it answers. Retries on another port if the chosen one was taken.
    pub fn start(args: &[String], hosts: &str, ttl_s: u32) -> Dnsmasq {
        let bin = binary();
        let dir = TempDir::new("dnsmasq");
        let hosts_path = dir.write("hosts", hosts);
        for _ in 0..5 {
            let port = free_port();
            let log = dir.path().join(format!("dnsmasq-{port}.log"));
            let file = std::fs::File::create(&log).expect("create dnsmasq log");
            let err = file.try_clone().expect("clone file");
            let mut child = Command::new(bin)
                .arg("--keep-in-foreground")
                .arg(format!("--port={port}"))
                .args([
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    "--local=/test/",
                    "--log-facility=-",
                    "--log-queries",
                    "--pid-file",
                ])
                .arg(format!("--local-ttl={ttl_s}"))
                .arg(format!("--addn-hosts={}", hosts_path.display()))
                .args(args)
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(err)
                .spawn()
                .expect("start dnsmasq");
            let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let end = Instant::now() + Duration::from_secs(10);
            let mut up = false;
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken, or a bad argument: see its log
                }
                let _ = sock.send_to(&probe("probe.test"), ("127.0.0.1", port));
                let mut buf = [0u8; 512];
                if sock.recv(&mut buf).is_ok() {
                    up = true;
                    break;
                }
            }
            if up {
                return Dnsmasq {
                    child,
                    port,
                    hosts: hosts_path,
                    log,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if !text.contains("Address already in use") && !text.contains("Address in use") {
                panic!("dnsmasq did not start:\n{text}");
            }
        }
        panic!("dnsmasq: no free port after 5 tries");
    }

    /// `"127.0.0.1:PORT"` for `[dns] nameservers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Rewrites the hosts file and makes dnsmasq re-read it (SIGHUP).
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).expect("rewrite hosts");
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
    }

    /// Its log (every query, with `--log-queries`).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
