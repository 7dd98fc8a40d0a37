//! TLS for the integration tests: a CA and certificates made by the test
//! (`rcgen`), sipfront's `[[listen]] transport = "tls"` on them, and a
//! rustls client (the library sipfront uses, driven blocking over a std
//! `TcpStream`); and a TLS peer sipfront dials ([`TlsPeer`]).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{
    self, ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
    StreamOwned,
};

use super::TempDir;

/// A TLS client stream.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// The server side of a TLS connection (the test playing a TLS peer).
pub type TlsServerStream = StreamOwned<ServerConnection, TcpStream>;

/// A test CA and one certificate it signed, as PEM files in a temp dir.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    ca_der: CertificateDer<'static>,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    dir: PathBuf,
}

impl Pki {
    /// A CA named `tag`, and a certificate for `names` (DNS names or IP
    /// literals) valid until 1 January of `year`, written under `dir`.
    pub fn new(dir: &TempDir, tag: &str, names: &[&str], year: i32) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("sipfront test CA {tag}"));
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let ca = dir.write(&format!("{tag}-ca.pem"), &ca_cert.pem());
        let mut pki = Pki {
            ca,
            cert: PathBuf::new(),
            key: PathBuf::new(),
            ca_der: ca_cert.der().clone(),
            ca_params,
            ca_key,
            dir: dir.path().to_owned(),
        };
        let (cert, key) = pki.issue(tag, names, year);
        pki.cert = cert;
        pki.key = key;
        pki
    }

    /// Another certificate from the same CA: (cert, key) files `tag-*.pem`.
    pub fn issue(&self, tag: &str, names: &[&str], year: i32) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("sipfront test {tag}"));
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        let c = self.dir.join(format!("{tag}-cert.pem"));
        let k = self.dir.join(format!("{tag}-key.pem"));
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }

    /// A `[[listen]]` TLS entry on 127.0.0.1 (OS-chosen port) with this
    /// certificate.
    pub fn listen_toml(&self) -> String {
        format!(
            "\n[[listen]]\ntransport = \"tls\"\naddress = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }

    /// A client trusting this CA only.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add CA");
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }
}

/// `tcp` with a TLS client on it for `name`, the handshake done (so a
/// certificate problem shows here).
pub fn client(tcp: TcpStream, config: Arc<ClientConfig>, name: &str) -> TlsStream {
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    let conn = ClientConnection::new(config, name).expect("client connection");
    let mut s = StreamOwned::new(conn, tcp);
    s.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .expect("TLS handshake with sipfront");
    }
    s.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s
}

/// A TLS connection from 127.0.0.1 to `server`, verified for `name`.
pub fn connect(server: SocketAddr, config: Arc<ClientConfig>, name: &str) -> TlsStream {
    client(super::phone::tcp_connect(server), config, name)
}

/// A TLS server presenting `cert` (PEM chain) with `key`.
pub fn server_config(cert: &Path, key: &Path) -> Arc<ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("cert PEM");
    let key = PrivateKeyDer::from_pem_file(key).expect("key PEM");
    Arc::new(
        ServerConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate"),
    )
}

/// A TLS peer the test plays (an upstream sipfront dials): a listener on
/// 127.0.0.1 (OS-chosen port) presenting one certificate. Each accepted
/// connection's handshake runs on a thread of its own; its outcome (the
/// stream, or the error, e.g. the alert a client sent on refusing the
/// certificate) comes out of [`TlsPeer::next`] in order of completion.
pub struct TlsPeer {
    pub addr: SocketAddr,
    rx: mpsc::Receiver<Result<TlsServerStream, String>>,
}

impl TlsPeer {
    /// Listens with `cert`/`key`.
    pub fn start(cert: &Path, key: &Path) -> TlsPeer {
        let config = server_config(cert, key);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind TLS peer");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let (tx, config) = (tx.clone(), config.clone());
                std::thread::spawn(move || {
                    let _ = tx.send(accept(tcp, config));
                });
            }
        });
        TlsPeer { addr, rx }
    }

    /// The next handshake's outcome, within `timeout` (`None`: no
    /// connection came).
    pub fn next(&self, timeout: Duration) -> Option<Result<TlsServerStream, String>> {
        self.rx.recv_timeout(timeout).ok()
    }
}

/// The server side of a handshake on `tcp` (5 s at most).
fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> Result<TlsServerStream, String> {
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let conn = ServerConnection::new(config).map_err(|e| e.to_string())?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
    }
    s.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    Ok(s)
}
