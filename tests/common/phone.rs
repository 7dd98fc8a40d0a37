//! A minimal softphone over one stream connection (TCP, or TLS written
//! with rustls in the test): REGISTER with MD5 digest, then answers calls
//! on the same connection, as a phone behind NAT does (RFC 5626 §3).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A byte stream the phone talks over.
pub trait Wire: Read + Write {
    /// Our end of the TCP connection underneath.
    fn tcp(&self) -> &TcpStream;
}

impl Wire for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Wire for tokio_rustls::rustls::StreamOwned<tokio_rustls::rustls::ClientConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// A phone over `S`: `transport` is the Via token (`TCP`, `TLS`).
pub struct Phone<S: Wire> {
    pub stream: S,
    transport: &'static str,
    buf: Vec<u8>,
    /// Every message read or written, for assertion messages.
    pub log: String,
}

/// A phone over plain TCP.
pub type TcpPhone = Phone<TcpStream>;

pub fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `name="value"` or `name=value` inside a challenge header.
pub fn auth_param(h: &str, name: &str) -> Option<String> {
    let i = h.find(&format!("{name}="))? + name.len() + 1;
    let rest = &h[i..];
    if let Some(r) = rest.strip_prefix('"') {
        Some(r[..r.find('"')?].to_owned())
    } else {
        Some(rest.split([',', ' ']).next()?.to_owned())
    }
}

pub fn header_lines<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .collect()
}

/// A TCP connection from 127.0.0.1 to `server`, with SO_REUSEADDR so the
/// test can listen on its address once it is closed (Linux wants it on
/// the TIME_WAIT socket too).
pub fn tcp_connect(server: SocketAddr) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_reuse_address(true).expect("SO_REUSEADDR");
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    sock.connect(&server.into()).expect("connect to sipfront");
    let stream: TcpStream = sock.into();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    stream
}

impl TcpPhone {
    /// A phone on a new TCP connection to `server`.
    pub fn connect(server: SocketAddr) -> TcpPhone {
        Phone::over(tcp_connect(server), "TCP")
    }
}

impl<S: Wire> Phone<S> {
    /// A phone over an open stream (its TCP socket with a short read
    /// timeout); `transport` is its Via token.
    pub fn over(stream: S, transport: &'static str) -> Phone<S> {
        Phone {
            stream,
            transport,
            buf: Vec::new(),
            log: String::new(),
        }
    }

    /// Our address on the connection.
    pub fn local(&self) -> SocketAddr {
        self.stream.tcp().local_addr().expect("local")
    }

    fn tparam(&self) -> String {
        self.transport.to_ascii_lowercase()
    }

    pub fn send(&mut self, msg: &str) {
        self.log.push_str(&format!("--- sent ---\n{msg}"));
        self.stream.write_all(msg.as_bytes()).expect("write");
        self.stream.flush().expect("flush");
    }

    /// The next whole message (headers and Content-Length body) within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(hdr_end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..hdr_end]).into_owned();
                let len: usize = head
                    .split("\r\n")
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        let n = n.trim().to_ascii_lowercase();
                        (n == "content-length" || n == "l").then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let total = hdr_end + 4 + len;
                if self.buf.len() >= total {
                    let msg = String::from_utf8_lossy(&self.buf[..total]).into_owned();
                    self.buf.drain(..total);
                    self.log.push_str(&format!("--- received ---\n{msg}"));
                    return Some(msg);
                }
            }
            if Instant::now() >= end {
                return None;
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }

    /// REGISTER `login` with Contact `contact`; digest on 401. The final status.
    pub fn register(
        &mut self,
        login: &str,
        password: &str,
        contact: &str,
        server: SocketAddr,
    ) -> u16 {
        let local = self.local();
        let t = self.transport;
        let uri = format!("sip:{server}");
        let mut auth = String::new();
        for cseq in 1..=2 {
            self.send(&format!(
                "REGISTER {uri} SIP/2.0\r\n\
                 Via: SIP/2.0/{t} {local};branch=z9hG4bKtcpreg{cseq};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:{login}@{server}>;tag=tcpreg\r\n\
                 To: <sip:{login}@{server}>\r\n\
                 Call-ID: tcpreg-{login}@test\r\n\
                 CSeq: {cseq} REGISTER\r\n\
                 Contact: <{contact}>\r\n\
                 Expires: 3600\r\n{auth}\
                 Content-Length: 0\r\n\r\n"
            ));
            let resp = loop {
                match self.recv(Duration::from_secs(5)) {
                    Some(m) if m.starts_with("SIP/2.0 1") => continue,
                    Some(m) => break m,
                    None => return 0,
                }
            };
            let code: u16 = resp.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
            if code != 401 || cseq == 2 {
                return code;
            }
            let chal = header_lines(&resp, "WWW-Authenticate");
            let md5 = chal
                .iter()
                .find(|h| !h.contains("SHA-256"))
                .copied()
                .unwrap_or_default();
            let realm = auth_param(md5, "realm").unwrap_or_default();
            let nonce = auth_param(md5, "nonce").unwrap_or_default();
            let opaque = auth_param(md5, "opaque");
            let ha1 = md5_hex(&format!("{login}:{realm}:{password}"));
            let ha2 = md5_hex(&format!("REGISTER:{uri}"));
            let response = md5_hex(&format!("{ha1}:{nonce}:00000001:tcpcnonce:auth:{ha2}"));
            auth = format!(
                "Authorization: Digest username=\"{login}\", realm=\"{realm}\", nonce=\"{nonce}\", \
                 uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"tcpcnonce\", \
                 qop=auth, nc=00000001{}\r\n",
                opaque.map(|o| format!(", opaque=\"{o}\"")).unwrap_or_default()
            );
        }
        0
    }

    /// A response to `req` copying its Via/From/To/Call-ID/CSeq.
    pub fn respond(&mut self, req: &str, status: &str, body: &str) {
        let local = self.local();
        let tparam = self.tparam();
        let mut s = format!("SIP/2.0 {status}\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for l in header_lines(req, name) {
                s.push_str(l);
                if name == "To" && !l.contains("tag=") {
                    s.push_str(";tag=tcpphone");
                }
                s.push_str("\r\n");
            }
        }
        s.push_str(&format!(
            "Contact: <sip:001@{local};transport={tparam}>\r\n"
        ));
        if body.is_empty() {
            s.push_str("Content-Length: 0\r\n\r\n");
        } else {
            s.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        self.send(&s);
    }

    /// Answers one call: INVITE (returned whole), 180, 200, ACK, BYE, 200.
    pub fn answer_one_call(&mut self) -> Result<String, String> {
        let invite = loop {
            match self.recv(Duration::from_secs(15)) {
                Some(m) if m.starts_with("INVITE ") => break m,
                Some(_) => continue,
                None => return Err("no INVITE on the registered connection".into()),
            }
        };
        let sdp = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 40000 RTP/AVP 0\r\na=sendrecv\r\n";
        self.respond(&invite, "180 Ringing", "");
        self.respond(&invite, "200 OK", sdp);
        let mut got_ack = false;
        loop {
            match self.recv(Duration::from_secs(15)) {
                Some(m) if m.starts_with("ACK ") => got_ack = true,
                Some(m) if m.starts_with("BYE ") => {
                    self.respond(&m, "200 OK", "");
                    return if got_ack {
                        Ok(invite)
                    } else {
                        Err("BYE without an ACK first".into())
                    };
                }
                Some(_) => continue,
                None => return Err(format!("no BYE (ACK seen: {got_ack})")),
            }
        }
    }
}
