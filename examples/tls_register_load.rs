//! REGISTER with digest over TLS, under load: the client for comparing
//! sipfront's TLS listener with Kamailio's `tls` module (Debian's SIPp 3.6
//! is built without TLS). Each registration is REGISTER → 401 → REGISTER
//! with an MD5 `Authorization` (qop=auth) → 200, for one user of
//! `u100000…` (password `s3cret`, as the shared bench's `reg-users.xml`).
//! `CONNS` clients run at once, closed loop (each starts its next
//! registration when the last ends), so the figure is the most the server
//! does at 0 failures with that many clients.
//!
//! ```text
//! cargo build --release --example tls_register_load
//! target/release/examples/tls_register_load ADDR NAME CA USERS CONNS MODE [PID]
//!   ADDR   the TLS listener, 127.0.0.1:5061
//!   NAME   the name its certificate is verified for (SNI)
//!   CA     PEM file of the CA that signed it
//!   USERS  registrations in all (users u100000 … u100000+USERS-1)
//!   CONNS  concurrent clients
//!   MODE   `reuse`: each client keeps one TLS connection for all its
//!          registrations; `new`: a new TCP connection and full handshake
//!          per registration (no session resumption)
//!   PID    the server's process: its CPU (utime+stime from /proc, all
//!          threads and child processes) is reported per registration
//! ```
//!
//! The client is one thread (it shares the cores with the server); it
//! prints its own CPU time too, so the rest of the machine's use can be
//! told apart. Key exchange is X25519 only: Debian's OpenSSL 3.0 (Kamailio's) has no
//! post-quantum hybrid, which rustls would otherwise prefer, so both
//! servers do the same handshake work.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

const PASSWORD: &str = "s3cret";
const FIRST_USER: u64 = 100_000;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Target {
    addr: SocketAddr,
    name: ServerName<'static>,
    connector: TlsConnector,
}

impl Target {
    async fn connect(&self) -> Result<TlsStream<TcpStream>, Error> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(self.connector.connect(self.name.clone(), tcp).await?)
    }
}

/// One SIP connection: Content-Length framing over TLS.
struct Conn {
    tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// The next whole message (a response; CRLF keep-alives skipped).
    async fn recv(&mut self) -> Result<String, Error> {
        loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let len: usize = head
                    .split("\r\n")
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        let n = n.trim();
                        (n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l"))
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    self.buf.drain(..end + 4 + len);
                    return Ok(head);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.tls.read(&mut chunk))
                .await
                .map_err(|_| "no answer within 10 s")??;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(&mut self, msg: &str) -> Result<(), Error> {
        self.tls.write_all(msg.as_bytes()).await?;
        Ok(())
    }
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `name="value"` or `name=value` inside a challenge.
fn param(h: &str, name: &str) -> Option<String> {
    let i = h.find(&format!("{name}="))? + name.len() + 1;
    let rest = &h[i..];
    match rest.strip_prefix('"') {
        Some(r) => Some(r[..r.find('"')?].to_owned()),
        None => Some(rest.split([',', ' ']).next()?.to_owned()),
    }
}

/// One registration of user `u` on `conn`: 401, then 200.
async fn register(conn: &mut Conn, t: &Target, u: u64) -> Result<(), Error> {
    let local = conn.tls.get_ref().0.local_addr()?;
    let host = t.addr;
    let uri = format!("sip:{host}");
    let user = format!("u{u}");
    let mut auth = String::new();
    for cseq in 1..=2 {
        conn.send(&format!(
            "REGISTER {uri} SIP/2.0\r\n\
             Via: SIP/2.0/TLS {local};branch=z9hG4bK{u}r{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{host}>;tag={u}\r\n\
             To: <sip:{user}@{host}>\r\n\
             Call-ID: reg-{u}@{local}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@{local};transport=tls>\r\n\
             Expires: 3600\r\n{auth}\
             Content-Length: 0\r\n\r\n"
        ))
        .await?;
        let resp = loop {
            let r = conn.recv().await?;
            if !r.starts_with("SIP/2.0 1") {
                break r;
            }
        };
        let code = resp.get(8..11).unwrap_or("");
        match (cseq, code) {
            (1, "401") => {
                let chal = resp
                    .split("\r\n")
                    .filter_map(|l| l.split_once(':'))
                    .filter(|(n, _)| n.trim().eq_ignore_ascii_case("WWW-Authenticate"))
                    .map(|(_, v)| v.trim())
                    .find(|v| !v.contains("SHA-256"))
                    .ok_or("401 without an MD5 challenge")?;
                let realm = param(chal, "realm").unwrap_or_default();
                let nonce = param(chal, "nonce").unwrap_or_default();
                let opaque = param(chal, "opaque")
                    .map(|o| format!(", opaque=\"{o}\""))
                    .unwrap_or_default();
                let ha1 = md5_hex(&format!("{user}:{realm}:{PASSWORD}"));
                let ha2 = md5_hex(&format!("REGISTER:{uri}"));
                let cnonce = format!("c{u}");
                let response = md5_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
                auth = format!(
                    "Authorization: Digest username=\"{user}\", realm=\"{realm}\", \
                     nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", \
                     algorithm=MD5, cnonce=\"{cnonce}\", qop=auth, nc=00000001{opaque}\r\n"
                );
            }
            (2, "200") => return Ok(()),
            _ => return Err(format!("REGISTER {cseq} answered {code}").into()),
        }
    }
    Err("unreachable".into())
}

/// CPU ticks (utime+stime) of `pid` and every process below it.
fn cpu_ticks(pid: u32) -> u64 {
    let mut total = 0;
    let mut todo = vec![pid];
    let procs: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // Fields after the `)` that ends the command name: state is
            // field 3, ppid 4, utime 14, stime 15.
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ppid = rest.get(1)?.parse().ok()?;
            let cpu = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
            Some((p, ppid, cpu))
        })
        .collect();
    while let Some(p) = todo.pop() {
        for &(q, parent, cpu) in &procs {
            if q == p {
                total += cpu;
            }
            if parent == p {
                todo.push(q);
            }
        }
    }
    total
}

fn client_config(ca: &Path) -> Result<ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519];
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(config)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 7 {
        eprintln!(
            "usage: {} ADDR NAME CA USERS CONNS reuse|new [PID]",
            args[0]
        );
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse()?;
    let name = ServerName::try_from(args[2].clone())?;
    let connector = TlsConnector::from(Arc::new(client_config(Path::new(&args[3]))?));
    let users: u64 = args[4].parse()?;
    let conns: u64 = args[5].parse()?;
    let reuse = match args[6].as_str() {
        "reuse" => true,
        "new" => false,
        m => return Err(format!("MODE is reuse or new, not {m}").into()),
    };
    let pid: Option<u32> = args.get(7).map(|p| p.parse()).transpose()?;
    let target = Arc::new(Target {
        addr,
        name,
        connector,
    });
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));

    // `reuse`: the connections are opened before the clock starts.
    let mut opened = Vec::new();
    for _ in 0..conns {
        opened.push(if reuse {
            Some(target.connect().await?)
        } else {
            None
        });
    }
    let ticks0 = pid.map(cpu_ticks);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (w, tls) in opened.into_iter().enumerate() {
        let (t, ok, failed, first_error) = (
            target.clone(),
            ok.clone(),
            failed.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = tls.map(|tls| Conn {
                tls,
                buf: Vec::new(),
            });
            let mut u = w as u64;
            while u < users {
                let r = async {
                    // `new` mode leaves no connection behind; `reuse` only
                    // after a failure.
                    if conn.is_none() {
                        conn = Some(Conn {
                            tls: t.connect().await?,
                            buf: Vec::new(),
                        });
                    }
                    let c = conn.as_mut().ok_or("no connection")?;
                    register(c, &t, FIRST_USER + u).await
                }
                .await;
                match r {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut f) = first_error.lock() {
                            f.get_or_insert_with(|| e.to_string());
                        }
                        conn = None;
                    }
                }
                if !reuse {
                    if let Some(mut c) = conn.take() {
                        let _ = c.tls.shutdown().await;
                    }
                }
                u += conns;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let ticks1 = pid.map(cpu_ticks);
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    print!(
        "mode={} users={users} conns={conns} ok={ok} failed={failed} secs={secs:.2} reg_per_s={:.0}",
        args[6],
        ok as f64 / secs
    );
    if let (Some(a), Some(b)) = (ticks0, ticks1) {
        // /proc counts in USER_HZ ticks: 100 a second on Linux.
        let cpu_us = b.saturating_sub(a) as f64 * 10_000.0;
        print!(
            " server_cpu_s={:.2} cpu_us_per_reg={:.1}",
            cpu_us / 1e6,
            cpu_us / ok.max(1) as f64
        );
    }
    print!(
        " client_cpu_s={:.2}",
        cpu_ticks(std::process::id()) as f64 / 100.0
    );
    println!();
    if let Ok(Some(e)) = first_error.lock().map(|f| f.clone()) {
        eprintln!("first failure: {e}");
    }
    Ok(())
}
