//! A minimal softphone written in the tests, over one connection it opens
//! itself: TCP (Content-Length framing) or WebSocket (RFC 7118, one SIP
//! message per WebSocket message, client side by tokio-tungstenite). It
//! registers with MD5 digest, answers a call on the same connection and
//! can hang up. Every message sent or received is kept in `log` for
//! assertion messages.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One message stream to sipfront.
pub trait Pipe {
    /// Sends one SIP message.
    fn send_msg(&mut self, msg: &str);
    /// The next whole message within `timeout` (on TCP a bare CRLFCRLF
    /// keep-alive comes back as the message `"\r\n\r\n"`).
    fn recv_msg(&mut self, timeout: Duration) -> Option<String>;
    /// Via transport token: `TCP`, `WS` or `WSS`.
    fn via_transport(&self) -> &'static str;
    /// The `host:port` this phone writes as Via sent-by (RFC 7118 §5: a
    /// WebSocket client writes an `.invalid` host).
    fn sent_by(&self) -> String;
}

/// A softphone over `P`.
pub struct Phone<P> {
    pub pipe: P,
    /// Every message read or written.
    pub log: String,
    /// Our Contact URI (set by [`Phone::register`]).
    pub contact: String,
    cseq: u32,
}

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

/// Every header line `name` (case-insensitive) of `msg`, as written.
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

/// The value of the first header `name`, trimmed.
pub fn header_value<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    let line = header_lines(msg, name).into_iter().next()?;
    Some(line.split_once(':')?.1.trim())
}

/// The `Authorization`/`Proxy-Authorization` value answering the MD5
/// challenge among `challenges` (`WWW-Authenticate`/`Proxy-Authenticate`
/// lines) for `method` on `uri` (qop=auth, nc 1).
pub fn digest_answer(
    challenges: &[&str],
    login: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> String {
    let md5 = challenges
        .iter()
        .find(|h| !h.contains("SHA-256"))
        .copied()
        .unwrap_or_default();
    let realm = auth_param(md5, "realm").unwrap_or_default();
    let nonce = auth_param(md5, "nonce").unwrap_or_default();
    let opaque = auth_param(md5, "opaque");
    let ha1 = md5_hex(&format!("{login}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:phonecnonce:auth:{ha2}"));
    format!(
        "Digest username=\"{login}\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"phonecnonce\", \
         qop=auth, nc=00000001{}",
        opaque
            .map(|o| format!(", opaque=\"{o}\""))
            .unwrap_or_default()
    )
}

/// The URI inside `<...>` of a name-addr, or the value up to `;`.
fn uri_of(name_addr: &str) -> &str {
    match (name_addr.find('<'), name_addr.find('>')) {
        (Some(a), Some(b)) if a < b => &name_addr[a + 1..b],
        _ => name_addr.split(';').next().unwrap_or(name_addr).trim(),
    }
}

impl<P: Pipe> Phone<P> {
    pub fn new(pipe: P) -> Phone<P> {
        Phone {
            pipe,
            log: String::new(),
            contact: String::new(),
            cseq: 100,
        }
    }

    pub fn send(&mut self, msg: &str) {
        self.log.push_str(&format!("--- sent ---\n{msg}"));
        self.pipe.send_msg(msg);
    }

    pub fn recv(&mut self, timeout: Duration) -> Option<String> {
        let m = self.pipe.recv_msg(timeout)?;
        self.log.push_str(&format!("--- received ---\n{m}"));
        Some(m)
    }

    /// The next final response within `timeout` (provisionals skipped).
    fn final_response(&mut self, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            match self.recv(left) {
                Some(m) if m.starts_with("SIP/2.0 1") => continue,
                Some(m) if m.starts_with("SIP/2.0 ") => return Some(m),
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// REGISTER `login` with Contact `contact`; digest on 401. The final
    /// status (0: no answer).
    pub fn register(
        &mut self,
        login: &str,
        password: &str,
        contact: &str,
        server: SocketAddr,
    ) -> u16 {
        self.contact = contact.to_owned();
        let (via, sent_by) = (self.pipe.via_transport(), self.pipe.sent_by());
        let uri = format!("sip:{server}");
        let mut auth = String::new();
        for cseq in 1..=2 {
            self.send(&format!(
                "REGISTER {uri} SIP/2.0\r\n\
                 Via: SIP/2.0/{via} {sent_by};branch=z9hG4bKreg{cseq};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:{login}@{server}>;tag=phonereg\r\n\
                 To: <sip:{login}@{server}>\r\n\
                 Call-ID: phonereg-{login}@test\r\n\
                 CSeq: {cseq} REGISTER\r\n\
                 Contact: <{contact}>\r\n\
                 Expires: 3600\r\n{auth}\
                 Content-Length: 0\r\n\r\n"
            ));
            let Some(resp) = self.final_response(Duration::from_secs(5)) else {
                return 0;
            };
            let code: u16 = resp.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
            if code != 401 || cseq == 2 {
                return code;
            }
            let chal = header_lines(&resp, "WWW-Authenticate");
            let answer = digest_answer(&chal, login, password, "REGISTER", &uri);
            auth = format!("Authorization: {answer}\r\n");
        }
        0
    }

    /// A response to `req` copying its Via/From/To/Call-ID/CSeq.
    pub fn respond(&mut self, req: &str, status: &str, body: &str) {
        let mut s = format!("SIP/2.0 {status}\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for l in header_lines(req, name) {
                s.push_str(l);
                if name == "To" && !l.contains("tag=") {
                    s.push_str(";tag=phone");
                }
                s.push_str("\r\n");
            }
        }
        s.push_str(&format!("Contact: <{}>\r\n", self.contact));
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

    /// Waits for an INVITE.
    pub fn wait_invite(&mut self, timeout: Duration) -> Result<String, String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end
                .checked_duration_since(Instant::now())
                .ok_or("no INVITE on the registered connection")?;
            match self.recv(left) {
                Some(m) if m.starts_with("INVITE ") => return Ok(m),
                Some(_) => continue,
                None => return Err("no INVITE on the registered connection".into()),
            }
        }
    }

    /// Answers `invite` (180, 200 with SDP) and waits for the ACK.
    pub fn answer(&mut self, invite: &str) -> Result<(), String> {
        let sdp = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 40000 RTP/AVP 0\r\na=sendrecv\r\n";
        self.respond(invite, "180 Ringing", "");
        self.respond(invite, "200 OK", sdp);
        loop {
            match self.recv(Duration::from_secs(15)) {
                Some(m) if m.starts_with("ACK ") => return Ok(()),
                Some(_) => continue,
                None => return Err("no ACK for the 200 OK".into()),
            }
        }
    }

    /// Waits for the far end's BYE and answers it 200.
    pub fn wait_bye(&mut self) -> Result<(), String> {
        loop {
            match self.recv(Duration::from_secs(15)) {
                Some(m) if m.starts_with("BYE ") => {
                    self.respond(&m, "200 OK", "");
                    return Ok(());
                }
                Some(_) => continue,
                None => return Err("no BYE".into()),
            }
        }
    }

    /// Answers one call: INVITE (its first line returned), 180, 200, ACK,
    /// then the far end's BYE, 200.
    pub fn answer_one_call(&mut self) -> Result<String, String> {
        let invite = self.wait_invite(Duration::from_secs(15))?;
        self.answer(&invite)?;
        self.wait_bye()?;
        Ok(invite.lines().next().unwrap_or("").to_owned())
    }

    /// Hangs up the call `invite` opened (which this phone answered): BYE
    /// in that dialog (RFC 3261 §15.1.1) to the caller's Contact, then its
    /// final status (0: none).
    pub fn hang_up(&mut self, invite: &str) -> u16 {
        let target = header_value(invite, "Contact").map(uri_of).unwrap_or("");
        let from = header_value(invite, "To").unwrap_or("");
        let from = if from.contains("tag=") {
            from.to_owned()
        } else {
            format!("{from};tag=phone")
        };
        let to = header_value(invite, "From").unwrap_or("");
        let routes: Vec<&str> = header_lines(invite, "Record-Route");
        self.bye(target, &from, to, invite, &routes)
    }

    /// Hangs up a call this phone placed, from the 2xx `ok` that answered
    /// it: BYE to the callee's Contact (route set reversed, §12.1.2).
    pub fn hang_up_placed(&mut self, ok: &str) -> u16 {
        let target = header_value(ok, "Contact").map(uri_of).unwrap_or("");
        let from = header_value(ok, "From").unwrap_or("");
        let to = header_value(ok, "To").unwrap_or("");
        let mut routes: Vec<&str> = header_lines(ok, "Record-Route");
        routes.reverse();
        self.bye(target, from, to, ok, &routes)
    }

    /// BYE in the dialog of `msg` (its Call-ID), then its final status.
    fn bye(&mut self, target: &str, from: &str, to: &str, msg: &str, rr: &[&str]) -> u16 {
        let call_id = header_value(msg, "Call-ID").unwrap_or("");
        let routes: String = rr
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(_, v)| format!("Route: {}\r\n", v.trim()))
            .collect();
        self.cseq += 1;
        let (via, sent_by, cseq) = (self.pipe.via_transport(), self.pipe.sent_by(), self.cseq);
        self.send(&format!(
            "BYE {target} SIP/2.0\r\n\
             Via: SIP/2.0/{via} {sent_by};branch=z9hG4bKbye{cseq};rport\r\n\
             Max-Forwards: 70\r\n{routes}\
             From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} BYE\r\n\
             Content-Length: 0\r\n\r\n"
        ));
        self.final_response(Duration::from_secs(5))
            .and_then(|r| r.get(8..11)?.parse().ok())
            .unwrap_or(0)
    }

    /// Calls `number` through sipfront at `server` as trunk `login`: INVITE,
    /// the 407 challenge answered (ACK, then INVITE with
    /// Proxy-Authorization), the final response ACKed. The final response.
    ///
    /// # Errors
    /// No final response within 10 s.
    pub fn call(
        &mut self,
        number: &str,
        login: &str,
        password: &str,
        server: SocketAddr,
    ) -> Result<String, String> {
        let (via, sent_by) = (self.pipe.via_transport(), self.pipe.sent_by());
        let uri = format!("sip:{number}@{server}");
        let sdp = "v=0\r\no=phone 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 40002 RTP/AVP 0\r\na=sendrecv\r\n";
        let from = format!("<sip:{login}@{server}>;tag=caller");
        let call_id = format!("call-{login}-{number}@test");
        let contact = self.contact.clone();
        let mut auth = String::new();
        for cseq in 1..=2u32 {
            let branch = format!("z9hG4bKinv{cseq}");
            self.send(&format!(
                "INVITE {uri} SIP/2.0\r\n\
                 Via: SIP/2.0/{via} {sent_by};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: {from}\r\n\
                 To: <{uri}>\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: {cseq} INVITE\r\n\
                 Contact: <{contact}>\r\n{auth}\
                 Content-Type: application/sdp\r\n\
                 Content-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ));
            let resp = self
                .final_response(Duration::from_secs(10))
                .ok_or("no final response to the INVITE")?;
            let code: u16 = resp.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
            let to = header_value(&resp, "To").unwrap_or("").to_owned();
            // ACK: same branch for a non-2xx (§17.1.1.3), a new one for 2xx.
            let (ack_branch, ack_uri) = if (200..300).contains(&code) {
                let target = header_value(&resp, "Contact").map(uri_of).unwrap_or(&uri);
                (format!("z9hG4bKack{cseq}"), target.to_owned())
            } else {
                (branch, uri.clone())
            };
            self.send(&format!(
                "ACK {ack_uri} SIP/2.0\r\n\
                 Via: SIP/2.0/{via} {sent_by};branch={ack_branch};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: {from}\r\n\
                 To: {to}\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: {cseq} ACK\r\n\
                 Content-Length: 0\r\n\r\n"
            ));
            if code != 407 || cseq == 2 {
                return Ok(resp);
            }
            let chal = header_lines(&resp, "Proxy-Authenticate");
            let answer = digest_answer(&chal, login, password, "INVITE", &uri);
            auth = format!("Proxy-Authorization: {answer}\r\n");
        }
        Err("unreachable".into())
    }
}

// ---- TCP -------------------------------------------------------------------------

/// A byte stream over one TCP connection: plain, or TLS (rustls) on it.
pub trait Wire: std::io::Read + std::io::Write {
    /// The TCP connection underneath.
    fn tcp(&self) -> &std::net::TcpStream;
}

impl Wire for std::net::TcpStream {
    fn tcp(&self) -> &std::net::TcpStream {
        self
    }
}

impl Wire for super::tls::TlsStream {
    fn tcp(&self) -> &std::net::TcpStream {
        &self.sock
    }
}

/// One stream connection (TCP, or TLS over it), Content-Length framing.
pub struct TcpPipe<S = std::net::TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
    /// Via transport token: `TCP` or `TLS`.
    via: &'static str,
}

/// A phone over TCP.
pub type TcpPhone = Phone<TcpPipe>;

/// A phone over TLS.
pub type TlsPhone = Phone<TcpPipe<super::tls::TlsStream>>;

/// 127.0.0.1 → `server` over TCP with SO_REUSEADDR (so that a test can
/// listen on its address once it is closed: Linux wants it on the
/// TIME_WAIT socket too) and a short read timeout.
pub fn tcp_connect(server: SocketAddr) -> std::net::TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_reuse_address(true).expect("SO_REUSEADDR");
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    sock.connect(&server.into()).expect("connect to sipfront");
    let stream: std::net::TcpStream = sock.into();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    stream
}

impl Wire for super::tls::TlsServerStream {
    fn tcp(&self) -> &std::net::TcpStream {
        &self.sock
    }
}

impl<S: Wire> Phone<TcpPipe<S>> {
    /// A phone on an open TLS connection (client side, or the server side
    /// of a TLS peer the test plays).
    pub fn tls(stream: S) -> Phone<TcpPipe<S>> {
        Phone::new(TcpPipe {
            stream,
            buf: Vec::new(),
            via: "TLS",
        })
    }
}

impl Phone<TcpPipe> {
    /// Connects to sipfront's TCP listener from 127.0.0.1 ([`tcp_connect`]).
    pub fn connect(server: SocketAddr) -> TcpPhone {
        Phone::new(TcpPipe {
            stream: tcp_connect(server),
            buf: Vec::new(),
            via: "TCP",
        })
    }
}

impl<S: Wire> Pipe for TcpPipe<S> {
    fn send_msg(&mut self, msg: &str) {
        self.stream.write_all(msg.as_bytes()).expect("write");
        self.stream.flush().expect("flush");
    }

    fn recv_msg(&mut self, timeout: Duration) -> Option<String> {
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

    fn via_transport(&self) -> &'static str {
        self.via
    }

    fn sent_by(&self) -> String {
        self.stream.tcp().local_addr().expect("local").to_string()
    }
}

// ---- WebSocket -------------------------------------------------------------------

/// One WebSocket connection (tokio-tungstenite client) driven from a
/// blocking test through its own single-threaded runtime.
pub struct WsPipe<S> {
    rt: tokio::runtime::Runtime,
    pub ws: tokio_tungstenite::WebSocketStream<S>,
    transport: &'static str,
    /// The random `.invalid` host of RFC 7118 §5.
    host: String,
}

/// A phone over `ws`.
pub type WsPhone = Phone<WsPipe<tokio::net::TcpStream>>;

/// The runtime a WebSocket test client runs on.
pub fn ws_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// An upgrade request to `ws://host/` offering `protocols` (none: no
/// `Sec-WebSocket-Protocol` header).
pub fn ws_request(
    scheme: &str,
    host: SocketAddr,
    protocols: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{scheme}://{host}/")
        .into_client_request()
        .expect("request");
    if let Some(p) = protocols {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().expect("header value"));
    }
    req
}

impl WsPhone {
    /// Connects to a `ws` listener and upgrades with subprotocol `sip`.
    ///
    /// # Errors
    /// The connection or the upgrade failed (its text).
    pub fn connect_ws(server: SocketAddr) -> Result<WsPhone, String> {
        let rt = ws_runtime();
        let ws = rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(server)
                .await
                .map_err(|e| e.to_string())?;
            let (ws, resp) =
                tokio_tungstenite::client_async(ws_request("ws", server, Some("sip")), tcp)
                    .await
                    .map_err(|e| e.to_string())?;
            let proto = resp.headers().get("sec-websocket-protocol");
            if proto.and_then(|p| p.to_str().ok()) != Some("sip") {
                return Err(format!(
                    "upgrade answered without subprotocol sip: {resp:?}"
                ));
            }
            Ok::<_, String>(ws)
        })?;
        Ok(Phone::new(WsPipe {
            rt,
            ws,
            transport: "WS",
            host: format!("ws{}.invalid", std::process::id()),
        }))
    }
}

/// A phone over `wss` (tokio-rustls under tokio-tungstenite).
pub type WssPhone = Phone<WsPipe<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>;

impl WssPhone {
    /// Connects to a `wss` listener, TLS for `name` with `config`, and
    /// upgrades with subprotocol `sip`.
    ///
    /// # Errors
    /// The connection, the TLS handshake or the upgrade failed (its text).
    pub fn connect_wss(
        server: SocketAddr,
        config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
        name: &str,
    ) -> Result<WssPhone, String> {
        let rt = ws_runtime();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(name.to_owned())
            .map_err(|e| e.to_string())?;
        let ws = rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(server)
                .await
                .map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (ws, _) =
                tokio_tungstenite::client_async(ws_request("wss", server, Some("sip")), tls)
                    .await
                    .map_err(|e| e.to_string())?;
            Ok::<_, String>(ws)
        })?;
        Ok(Phone::new(WsPipe {
            rt,
            ws,
            transport: "WSS",
            host: format!("wss{}.invalid", std::process::id()),
        }))
    }
}

impl<S> WsPipe<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    /// The next WebSocket message of any kind within `timeout` (`None`:
    /// none, or the connection ended).
    pub fn next_frame(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<tokio_tungstenite::tungstenite::Message, String>> {
        use futures_util::StreamExt;
        let next = self
            .rt
            .block_on(async { tokio::time::timeout(timeout, self.ws.next()).await });
        match next {
            Ok(Some(Ok(m))) => Some(Ok(m)),
            Ok(Some(Err(e))) => Some(Err(e.to_string())),
            Ok(None) | Err(_) => None,
        }
    }

    /// Sends one WebSocket message.
    ///
    /// # Errors
    /// The connection is closed (its text).
    pub fn send_frame(&mut self, m: tokio_tungstenite::tungstenite::Message) -> Result<(), String> {
        use futures_util::SinkExt;
        self.rt.block_on(self.ws.send(m)).map_err(|e| e.to_string())
    }
}

impl<S> Pipe for WsPipe<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn send_msg(&mut self, msg: &str) {
        use tokio_tungstenite::tungstenite::Message;
        self.send_frame(Message::text(msg)).expect("WebSocket send");
    }

    fn recv_msg(&mut self, timeout: Duration) -> Option<String> {
        use tokio_tungstenite::tungstenite::Message;
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            match self.next_frame(left)? {
                Ok(Message::Text(t)) => return Some(t.to_string()),
                Ok(Message::Binary(b)) => return Some(String::from_utf8_lossy(&b).into_owned()),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    fn via_transport(&self) -> &'static str {
        self.transport
    }

    fn sent_by(&self) -> String {
        self.host.clone()
    }
}
