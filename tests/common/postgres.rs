//! A throwaway PostgreSQL cluster for one test: Debian's `postgresql`
//! binaries (`/usr/lib/postgresql/<version>/bin`), `initdb` into a temp
//! dir, the postmaster on 127.0.0.1 and a free port, trust auth for the
//! user `sipfront`. PostgreSQL refuses to run as root, so as root it runs
//! as the `postgres` user (or `nobody`), which owns the directory; it is
//! stopped by its own pid.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, TempDir};

/// A running (or stopped, restartable) cluster.
pub struct Postgres {
    child: Option<Child>,
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// uid:gid to run as, when we are root.
    ids: Option<(String, String)>,
    dir: TempDir,
}

/// The newest `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (Debian package `postgresql`; test.sh installs it)")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/*/bin/initdb")
        .1
}

fn id_of(user: &str, flag: &str) -> Option<String> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Postgres {
    /// A new cluster, started and answering queries.
    pub fn start() -> Postgres {
        let dir = TempDir::new("pg");
        let data = dir.path().join("data");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let ids = root.then(|| {
            let user = if id_of("postgres", "-u").is_some() {
                "postgres"
            } else {
                "nobody"
            };
            (
                id_of(user, "-u").expect("uid"),
                id_of(user, "-g").expect("gid"),
            )
        });
        if let Some((uid, gid)) = &ids {
            let st = Command::new("chown")
                .args(["-R", &format!("{uid}:{gid}")])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(st.success(), "chown of the PostgreSQL temp dir failed");
        }
        let mut pg = Postgres {
            child: None,
            port: free_port(),
            bin: bin_dir(),
            data,
            ids,
            dir,
        };
        let out = pg
            .command("initdb")
            .args(["-U", "sipfront", "-A", "trust", "--no-sync", "-E", "UTF8"])
            .arg("--locale=C")
            .arg("-D")
            .arg(&pg.data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pg.resume();
        pg
    }

    /// `bin/NAME`, as the cluster's owner when we are root.
    fn command(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        match &self.ids {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={gid}"),
                    "--clear-groups",
                    "--",
                ])
                .arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    /// The connection URL for sipfront.
    pub fn url(&self) -> String {
        format!("postgres://sipfront@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the postmaster (again) and waits until it answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("log");
        let err = log.try_clone().expect("log");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            // A test cluster: nothing here needs to survive a power cut.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(30);
        while self.query("SELECT 1").as_deref() != Some("1") {
            assert!(
                Instant::now() < end,
                "PostgreSQL did not answer in 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown (SIGINT to the postmaster, by pid): clients are
    /// disconnected at once. Waits for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One value (first column of the first row) of `sql`, or `None` when
    /// the server does not answer.
    pub fn query(&self, sql: &str) -> Option<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U", "sipfront", "-d", "postgres", "-X", "-A", "-t", "-c", sql,
            ])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
