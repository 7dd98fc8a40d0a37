//! A throwaway redis-server for the fleet tests: no TCP port (nothing to
//! race for), a Unix socket in its own temporary directory, no
//! persistence; stopped by its own pid on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

/// A running redis-server.
pub struct Redis {
    child: Option<Child>,
    dir: TempDir,
}

impl Redis {
    /// Starts redis-server and waits (up to 10 s) until it answers PING.
    pub fn start() -> Redis {
        let mut r = Redis {
            child: None,
            dir: TempDir::new("redis"),
        };
        r.restart();
        r
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The URL for `[cluster] redis`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Kills the server (SIGKILL: an outage, not a clean stop).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts it (again, empty) on the same socket.
    pub fn restart(&mut self) {
        self.stop();
        let sock = self.socket().display().to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--unixsocket",
                &sock,
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (Debian package redis-server)");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < end, "redis-server did not answer PING");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis-cli ARGS` on its socket: the trimmed output, `None` when it
    /// failed.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The sum of every node's count in hash `key`.
    pub fn hash_sum(&self, key: &str) -> u64 {
        self.cli(&["HVALS", key])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
