//! An rtpengine (Debian's `rtpengine-daemon`) started by the test in
//! userspace mode on loopback: ng control on a free port, media ports in a
//! stretch of its own, `--foreground` with its own pid file and log;
//! stopped by its own pid on drop. `ng` sends one ng command and returns
//! the reply (for `list`/`query` checks).
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sipfront::media::ng::{self, Reply, Request};

use super::{free_port, TempDir};

/// A running rtpengine.
pub struct Rtpengine {
    child: Option<Child>,
    /// The ng control socket.
    pub ng: SocketAddr,
    pub log: std::path::PathBuf,
    dir: TempDir,
}

fn binary() -> &'static str {
    for b in ["rtpengine", "/usr/bin/rtpengine", "/usr/sbin/rtpengine"] {
        if Command::new(b).arg("--version").output().is_ok() {
            return b;
        }
    }
    panic!(
        "rtpengine is not installed. Install it with `apt-get install -y rtpengine-daemon`, \
         or run ./test.sh which does."
    );
}

impl Rtpengine {
    /// Starts rtpengine and waits until it answers a `ping`.
    pub fn start() -> Rtpengine {
        let dir = TempDir::new("rtpengine");
        let port = free_port();
        let mut r = Rtpengine {
            child: None,
            ng: SocketAddr::from(([127, 0, 0, 1], port)),
            log: dir.path().join("rtpengine.log"),
            dir,
        };
        r.spawn();
        r
    }

    /// (Re)starts the daemon on the same ng port.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.ng.port();
        // Media ports of its own, well away from SIP ports and the
        // ephemeral range: 100 per instance from the ng port.
        let min = 40_000 + u32::from(port % 200) * 100;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("rtpengine log");
        let err = log.try_clone().expect("clone log");
        let child = Command::new(binary())
            .args([
                "--table=-1",
                "--interface=127.0.0.1",
                &format!("--listen-ng=127.0.0.1:{port}"),
                "--foreground",
                "--log-stderr",
                "--log-level=6",
                "--delete-delay=0",
                "--config-file=none",
                &format!(
                    "--pidfile={}",
                    self.dir.path().join("rtpengine.pid").display()
                ),
                &format!("--port-min={min}"),
                &format!("--port-max={}", min + 99),
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start rtpengine");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if self
                .ng(&Request::bare("ping"))
                .is_some_and(|r| r.result == "pong")
            {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!("rtpengine exited ({st}):\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("rtpengine did not answer ping:\n{}", self.log_text());
    }

    /// Stops it (by its pid) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One ng command; `None` without a reply within 500 ms.
    pub fn ng(&self, req: &Request<'_>) -> Option<Reply> {
        let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .ok()?;
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        // rtpengine answers a repeated cookie from its cache: one per command.
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cookie = format!("t{}_{n}", std::process::id());
        sock.send_to(&req.encode(&cookie).ok()?, self.ng).ok()?;
        let mut buf = vec![0u8; 65_535];
        let (n, _) = sock.recv_from(&mut buf).ok()?;
        let (c, reply) = ng::decode(buf.get(..n)?).ok()?;
        (c == cookie).then_some(reply)
    }

    /// The call-ids it holds.
    pub fn calls(&self) -> Vec<String> {
        let mut list = Request::bare("list");
        list.limit = Some(1000);
        self.ng(&list).and_then(|r| r.calls).unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        self.stop();
    }
}
