//! TLS for the integration tests: a CA and certificates made by the test
//! (`rcgen`), sipfront's `[[listen]] transport = "tls"` on them, and a
//! rustls client (the library sipfront uses, driven blocking over a std
//! `TcpStream`).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::TempDir;

/// A TLS client stream.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

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
