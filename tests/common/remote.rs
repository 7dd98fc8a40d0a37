//! The remote control plane of the trunk sync, played by the tests: a
//! one-thread HTTP/1.1 server on 127.0.0.1 serving a `/v1/trunks`-shaped
//! list with an `ETag` (`304` on `If-None-Match`), or an error the test
//! switches to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// What the remote answers.
#[derive(Clone)]
pub enum Reply {
    /// `200` with the list and its `ETag`; `304` when `If-None-Match` matches.
    List { body: String, etag: String },
    /// This status and body, whatever the request.
    Raw { status: u16, body: String },
}

/// What the remote saw and serves; the test changes `reply` as it goes.
pub struct Remote {
    pub reply: Reply,
    pub requests: u32,
    pub not_modified: u32,
    pub authorization: Vec<Option<String>>,
}

/// A one-thread HTTP/1.1 server on 127.0.0.1, one request per connection.
pub struct RemoteServer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<Remote>>,
}

impl RemoteServer {
    pub fn start(reply: Reply) -> RemoteServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind remote");
        let addr = listener.local_addr().expect("remote addr");
        let state = Arc::new(Mutex::new(Remote {
            reply,
            requests: 0,
            not_modified: 0,
            authorization: Vec::new(),
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                serve_one(conn, &shared);
            }
        });
        RemoteServer { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1/trunks", self.addr)
    }

    pub fn set(&self, reply: Reply) {
        self.state.lock().expect("remote state").reply = reply;
    }

    /// (requests, 304s answered).
    pub fn counts(&self) -> (u32, u32) {
        let s = self.state.lock().expect("remote state");
        (s.requests, s.not_modified)
    }
}

/// The request head (bounded), then the answer, then close.
fn serve_one(mut conn: TcpStream, state: &Mutex<Remote>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let (status, etag, body) = {
        let mut s = state.lock().expect("remote state");
        s.requests += 1;
        s.authorization.push(header("authorization"));
        match s.reply.clone() {
            Reply::List { etag, .. } if header("if-none-match").as_deref() == Some(&etag) => {
                s.not_modified += 1;
                (304, Some(etag), String::new())
            }
            Reply::List { body, etag } => (200, Some(etag), body),
            Reply::Raw { status, body } => (status, None, body),
        }
    };
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        _ => "Internal Server Error",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    if let Some(tag) = etag {
        out.push_str(&format!("ETag: {tag}\r\n"));
    }
    if status != 304 {
        out.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    out.push_str("\r\n");
    let _ = conn.write_all(out.as_bytes());
    let _ = conn.write_all(body.as_bytes());
}

pub fn list(trunks: &[Value], etag: &str) -> Reply {
    Reply::List {
        body: json!({ "items": trunks }).to_string(),
        etag: format!("\"{etag}\""),
    }
}
