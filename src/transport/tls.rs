//! TLS (RFC 3261 §26.2, RFC 5630): TLS 1.2/1.3 by rustls (aws-lc-rs, the
//! provider reqwest already uses) over the shared stream machinery of
//! `stream.rs`, so framing, limits, idle and slowloris deadlines are TCP's.
//!
//! Inbound: [`ServerTls`] turns a `[[listen]] transport = "tls"` entry into a
//! `tokio_rustls::TlsAcceptor` whose certificate comes from a resolver
//! holding an `ArcSwap`: [`ServerTls::reload`] (SIGHUP) swaps in the re-read
//! files, new handshakes use them, open connections are untouched. A
//! handshake must finish within `tls_handshake_timeout`; failures are
//! counted. `verify_client` asks for a client certificate chaining to `ca`
//! (mutual TLS with carriers).
//!
//! Outbound: a peer's name comes from the upstream it is (`sips:` or
//! `transport=tls` in `[[upstream]] uri`); the server certificate is
//! verified for that name (SNI; an IP literal is checked against the IP
//! SANs) against the system roots (`rustls-native-certs`: the OS trust
//! store operators already manage) or the upstream's `ca`. A connection is
//! reused only for the name it verified (see `conn.rs`). A failure fails
//! what was queued on it: the transaction layer sees a transport error and
//! the call goes to the next target (RFC 3263 §4.3).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::{aws_lc_rs, CryptoProvider};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::conn::PeerKey;
use super::stream::{self, Conn};
use super::{Outbound, Shared, ShutdownHandle, TransportStats};
use crate::config::tls::{read_ca, read_identity, TlsFileError, TlsFileKind};
use crate::config::{ListenConfig, UpstreamConfig};
use crate::sip::{Transport, Uri};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

fn setup_error(kind: TlsFileKind, path: &Path, message: impl Into<String>) -> TlsFileError {
    TlsFileError {
        kind,
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The certificate a listener presents, swapped whole on reload.
#[derive(Debug)]
struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
    not_after: AtomicI64,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reads `cert` and `key` into what rustls signs with, checking the key
/// belongs to the certificate.
fn load_key(cert: &Path, key: &Path) -> Result<(CertifiedKey, i64), TlsFileError> {
    let id = read_identity(cert, key)?;
    let ck = CertifiedKey::from_der(id.certs, id.key, &provider()).map_err(|e| {
        setup_error(
            TlsFileKind::Key,
            key,
            format!("not usable with `{}`: {e}", cert.display()),
        )
    })?;
    Ok((ck, id.not_after))
}

/// One TLS listener's server side: the acceptor and the files behind it.
pub struct ServerTls {
    address: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<ReloadingCert>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("address", &self.address)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("not_after", &self.not_after())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Builds the acceptor of a TLS `[[listen]]` entry (TLS 1.2 and 1.3;
    /// with `verify_client`, client certificates must chain to `ca`).
    /// `wss` listeners use it the same way.
    ///
    /// # Errors
    /// `cert`/`key` missing, unreadable, not PEM, or not a pair; `ca`
    /// unusable. The error names the file.
    pub fn load(l: &ListenConfig) -> Result<ServerTls, TlsFileError> {
        let missing =
            |k: TlsFileKind| setup_error(k, Path::new(""), format!("`{}` is required", k.key()));
        let cert = l.cert.clone().ok_or_else(|| missing(TlsFileKind::Cert))?;
        let key = l.key.clone().ok_or_else(|| missing(TlsFileKind::Key))?;
        let (ck, not_after) = load_key(&cert, &key)?;
        let resolver = Arc::new(ReloadingCert {
            current: ArcSwap::from_pointee(ck),
            not_after: AtomicI64::new(not_after),
        });
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup_error(TlsFileKind::Cert, &cert, e.to_string()))?;
        let builder = match (&l.ca, l.verify_client) {
            (Some(ca), true) => {
                let mut roots = RootCertStore::empty();
                for c in read_ca(ca)? {
                    roots
                        .add(c)
                        .map_err(|e| setup_error(TlsFileKind::Ca, ca, e.to_string()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| setup_error(TlsFileKind::Ca, ca, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            (None, true) => return Err(missing(TlsFileKind::Ca)),
            _ => builder.with_no_client_auth(),
        };
        let config = builder.with_cert_resolver(resolver.clone());
        Ok(ServerTls {
            address: l.address,
            cert,
            key,
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The acceptor. It stays valid across [`ServerTls::reload`]: the
    /// certificate is looked up per handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Re-reads `cert` and `key`. New handshakes present them; connections
    /// already open keep theirs. On error the running certificate stays.
    ///
    /// # Errors
    /// As [`ServerTls::load`]; nothing is changed.
    pub fn reload(&self) -> Result<(), TlsFileError> {
        let (ck, not_after) = load_key(&self.cert, &self.key)?;
        self.resolver.current.store(Arc::new(ck));
        self.resolver.not_after.store(not_after, Ordering::Relaxed);
        Ok(())
    }

    /// The listen address (a label for logs and metrics).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The served certificate's notAfter, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.resolver.not_after.load(Ordering::Relaxed)
    }

    /// The certificate file (for log lines).
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

/// TLS counters (`/metrics`).
#[derive(Debug, Default)]
pub(super) struct TlsStats {
    /// Inbound handshakes that failed or did not finish in time.
    accept_failures: AtomicU64,
    /// Outbound handshakes that failed (certificate not verified, peer
    /// not speaking TLS, timeout).
    connect_failures: AtomicU64,
}

/// Where outbound TLS goes: per address, the name to verify and the roots.
#[derive(Debug)]
pub(super) struct ClientTls {
    /// System roots: for peers without their own `ca`.
    system: Arc<ClientConfig>,
    /// Per upstream index (config order): its TLS name and client config,
    /// for upstreams that speak TLS.
    upstreams: HashMap<usize, Peer>,
    /// Addresses learnt for those upstreams (IP literals at start, DNS
    /// answers later).
    by_addr: RwLock<HashMap<SocketAddr, Peer>>,
    pub(super) stats: TlsStats,
    /// Listeners' certificates (for reload and metrics).
    pub(super) servers: RwLock<Vec<Arc<ServerTls>>>,
}

/// A peer's verified identity and the roots it is checked against.
#[derive(Debug, Clone)]
struct Peer {
    name: Arc<str>,
    config: Arc<ClientConfig>,
}

fn client_config(roots: RootCertStore) -> Result<ClientConfig, String> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The system trust store (loaded once, at start).
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!("TLS: system trust store: {e}");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "TLS: system roots loaded");
    roots
}

impl ClientTls {
    /// The outbound side for `upstreams` (config order).
    ///
    /// # Errors
    /// An upstream's `ca` is unusable.
    pub(super) fn new(upstreams: &[UpstreamConfig]) -> Result<ClientTls, String> {
        let tls: Vec<(usize, &UpstreamConfig, Uri<'_>)> = upstreams
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                let uri = Uri::parse(u.uri.trim())?;
                (uri.transport().ok()? == Some(Transport::Tls)).then_some((i, u, uri))
            })
            .collect();
        // Only read the system store when some peer needs it.
        let system_needed = tls.iter().any(|(_, u, _)| u.ca.is_none());
        let roots = if system_needed {
            system_roots()
        } else {
            RootCertStore::empty()
        };
        let system = Arc::new(client_config(roots)?);
        let mut by_index = HashMap::new();
        let mut by_addr = HashMap::new();
        for (i, u, uri) in tls {
            let config = match &u.ca {
                None => system.clone(),
                Some(ca) => {
                    let mut roots = RootCertStore::empty();
                    for c in read_ca(ca).map_err(|e| e.to_string())? {
                        roots
                            .add(c)
                            .map_err(|e| format!("upstream `{}`: ca: {e}", u.name))?;
                    }
                    Arc::new(client_config(roots)?)
                }
            };
            let name: Arc<str> = match uri.host.ip() {
                Some(ip) => ip.to_string().into(),
                None => uri.host.to_string().to_ascii_lowercase().into(),
            };
            let peer = Peer { name, config };
            if let Some(ip) = uri.host.ip() {
                let port = uri.port.unwrap_or(Transport::Tls.default_port());
                by_addr.insert(SocketAddr::new(ip, port), peer.clone());
            }
            by_index.insert(i, peer);
        }
        Ok(ClientTls {
            system,
            upstreams: by_index,
            by_addr: RwLock::new(by_addr),
            stats: TlsStats::default(),
            servers: RwLock::new(Vec::new()),
        })
    }

    /// Keeps a listener's certificate for reload and metrics, labelled
    /// with the address it is bound to.
    pub(super) fn add_server(&self, mut server: ServerTls, local: SocketAddr) {
        server.address = local;
        let mut list = self.servers.write().unwrap_or_else(|p| p.into_inner());
        list.push(Arc::new(server));
    }

    /// Re-reads every listener's files; returns how many were reloaded.
    pub(super) fn reload_servers(&self) -> Result<usize, Vec<String>> {
        let list = self.servers.read().unwrap_or_else(|p| p.into_inner());
        let mut errors = Vec::new();
        for s in list.iter() {
            match s.reload() {
                Ok(()) => tracing::info!(
                    listen = %s.address(),
                    not_after = s.not_after(),
                    "TLS certificate re-read from {}",
                    s.cert_path().display()
                ),
                Err(e) => errors.push(format!(
                    "tls {}: {e}; the running certificate stays",
                    s.address()
                )),
            }
        }
        if errors.is_empty() {
            Ok(list.len())
        } else {
            Err(errors)
        }
    }

    /// Upstream `index` resolved to `addrs` (RFC 3263): TLS to them
    /// verifies the upstream's name.
    pub(super) fn learn(&self, index: usize, addrs: impl IntoIterator<Item = SocketAddr>) {
        let Some(peer) = self.upstreams.get(&index) else {
            return;
        };
        let mut map = self.by_addr.write().unwrap_or_else(|p| p.into_inner());
        for a in addrs {
            map.insert(a, peer.clone());
        }
    }

    /// The identity to verify at `addr`: an upstream's, else the address
    /// itself (verified against its IP SANs with the system roots).
    fn peer(&self, addr: SocketAddr) -> (Option<Arc<str>>, Arc<ClientConfig>) {
        let map = self.by_addr.read().unwrap_or_else(|p| p.into_inner());
        match map.get(&addr) {
            Some(p) => (Some(p.name.clone()), p.config.clone()),
            None => (None, self.system.clone()),
        }
    }

    /// Appends the TLS lines to a `/metrics` page.
    pub(super) fn write_metrics(&self, m: &mut String) {
        use std::fmt::Write as _;
        let s = &self.stats;
        crate::endpoint::family(
            m,
            "sipfront_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out, by direction (inbound: on a TLS \
             listener; outbound: toward a peer, including certificates that did not verify).",
        );
        for (dir, c) in [
            ("inbound", &s.accept_failures),
            ("outbound", &s.connect_failures),
        ] {
            let _ = writeln!(
                m,
                "sipfront_tls_handshake_failures_total{{direction=\"{dir}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let servers = self.servers.read().unwrap_or_else(|p| p.into_inner());
        if !servers.is_empty() {
            crate::endpoint::family(
                m,
                "sipfront_tls_certificate_expiry_seconds",
                "gauge",
                "notAfter of the certificate a TLS listener presents, Unix seconds.",
            );
            for srv in servers.iter() {
                let _ = writeln!(
                    m,
                    "sipfront_tls_certificate_expiry_seconds{{listen=\"{}\"}} {}",
                    srv.address(),
                    srv.not_after()
                );
            }
        }
    }
}

/// Serves accepted TLS connections of one listener: the handshake within
/// the deadline, then the shared stream loop.
pub(super) async fn serve(acceptor: TlsAcceptor, tcp: TcpStream, conn: Conn) {
    serve_with(acceptor, tcp, conn, stream::run).await
}

/// The handshake within the deadline (a failure counted, logged, and the
/// connection given back), then `then` on the TLS stream: the SIP stream
/// loop for `tls`, the WebSocket upgrade for `wss`.
pub(super) async fn serve_with<F, Fut>(acceptor: TlsAcceptor, tcp: TcpStream, conn: Conn, then: F)
where
    F: FnOnce(tokio_rustls::server::TlsStream<TcpStream>, Conn) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let timeout = conn.shared.limits.tls_handshake_timeout;
    let peer = conn.peer.addr;
    let err = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => return then(tls, conn).await,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("handshake not finished within {timeout:?}"),
    };
    TransportStats::inc(&conn.shared.client_tls.stats.accept_failures);
    tracing::info!(%peer, id = %conn.id, "TLS handshake failed: {err}");
    conn.abandon(io::ErrorKind::ConnectionAborted).await;
}

/// Queues `out` on the TLS connection named, else the one to `out.dest`
/// for the same peer name, else a new verified one. Never waits.
pub(super) fn send(shared: &Arc<Shared>, out: Outbound, handle: &ShutdownHandle) {
    let (name, config) = shared.client_tls.peer(out.dest);
    let peer = PeerKey {
        transport: Transport::Tls,
        addr: out.dest,
        name,
    };
    stream::send(shared, out, peer, handle, move |conn| dial(conn, config));
}

/// Opens an outbound TLS connection (TCP, then the handshake verifying the
/// peer's name), then runs it like an accepted one.
async fn dial(conn: Conn, config: Arc<ClientConfig>) {
    let Some((tcp, conn)) = stream::connect_tcp(conn).await else {
        return;
    };
    let dest = conn.peer.addr;
    let name = match &conn.peer.name {
        Some(n) => ServerName::try_from(n.to_string()),
        None => Ok(ServerName::IpAddress(dest.ip().into())),
    };
    let err = match name {
        Ok(name) => {
            let connector = TlsConnector::from(config);
            let timeout = conn.shared.limits.tls_handshake_timeout;
            match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
                Ok(Ok(tls)) => {
                    tracing::debug!(%dest, id = %conn.id, name = ?conn.peer.name, "TLS connection opened");
                    return stream::run(tls, conn).await;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("handshake not finished within {timeout:?}"),
            }
        }
        Err(e) => format!("bad server name: {e}"),
    };
    TransportStats::inc(&conn.shared.client_tls.stats.connect_failures);
    let name = conn
        .peer
        .name
        .as_deref()
        .map_or_else(|| dest.ip().to_string(), str::to_owned);
    tracing::warn!(
        %dest,
        id = %conn.id,
        "TLS connection to {name} failed: {err}; its messages fail as a transport error"
    );
    conn.abandon(io::ErrorKind::InvalidData).await;
}
