//! SIP over WebSocket (RFC 7118): browser and WebRTC phones connect to a
//! `ws` listener (or `wss`, the same over TLS), upgrade with the `sip`
//! subprotocol (RFC 7118 §4, RFC 6455 §4.2), then carry exactly one SIP
//! message per WebSocket text or binary message (RFC 7118 §5): no
//! Content-Length framing on top.
//!
//! The HTTP upgrade and WebSocket framing are `tokio-tungstenite`'s; this
//! file adds the SIP rules and the limits of the stream layer:
//!
//! * accept, the connection permit and the per-IP cap are TCP's
//!   ([`super::tcp::accept_loop`]), and the connection sits in the same
//!   table ([`super::conn::ConnTable`]) as a `Ws`/`Wss` entry;
//! * the upgrade must finish within `tcp_message_deadline` (a stalled
//!   upgrade is closed); tungstenite caps the request at 64 KiB;
//! * a message (or frame) over `max_message` closes the connection with
//!   status 1009, and a message begun must complete within
//!   `tcp_message_deadline` (a slow sender is closed, as on TCP);
//! * a connection silent for half of `tcp_idle_timeout` gets a WebSocket
//!   Ping (RFC 6455 §5.5.2); one silent for all of it is closed;
//! * a message of only CR/LF with a double CRLF is a keep-alive ping
//!   answered with CRLF (RFC 5626 §4.4.1, as SIP.js sends it).
//!
//! sipfront never dials a WebSocket client (its Via and Contact hosts are
//! `.invalid`, RFC 7118 §5): [`send`] only queues on a connection the
//! client opened, and fails once it has gone.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::conn::PeerKey;
use super::stream::{Conn as StreamConn, WRITE_TIMEOUT};
use super::write_queue::Pushed;
use super::{Inbound, Outbound, Shared, TransportEvent, TransportStats};
use crate::sip::Transport;

/// The WebSocket subprotocol of SIP (RFC 7118 §4, IANA registry).
pub const SUBPROTOCOL: &str = "sip";

/// Bytes read from the socket at a time: small, because most connections
/// idle (a larger message grows the buffer as far as `max_message`).
const READ_BUFFER: usize = 4 * 1024;

/// Messages written per wake before the connection reads again.
const WRITES_PER_WAKE: usize = 64;

/// Why an upgrade request is refused: the HTTP answer tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Sec-WebSocket-Protocol: sip` offered (RFC 7118 §4.1).
    NoSipSubprotocol,
}

impl Refusal {
    /// The HTTP status and the text of the refusal.
    pub fn answer(self) -> (StatusCode, &'static str) {
        match self {
            Refusal::NoSipSubprotocol => (
                StatusCode::BAD_REQUEST,
                "SIP over WebSocket needs Sec-WebSocket-Protocol: sip (RFC 7118 section 4)\n",
            ),
        }
    }
}

/// Checks an upgrade request for the `sip` subprotocol (tokens compared
/// without case, every `Sec-WebSocket-Protocol` header and list element).
///
/// # Returns
/// The token as the client wrote it: the answer must echo one of the
/// offered values (RFC 6455 §4.2.2).
///
/// # Errors
/// [`Refusal::NoSipSubprotocol`] when the client did not offer `sip`.
pub fn check_upgrade(req: &Request) -> Result<HeaderValue, Refusal> {
    req.headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| p.eq_ignore_ascii_case(SUBPROTOCOL))
        .and_then(|p| HeaderValue::from_str(p).ok())
        .ok_or(Refusal::NoSipSubprotocol)
}

/// The answer to an upgrade request: the 101 response with the chosen
/// subprotocol, or an HTTP error (the connection then closes). `refused`
/// records why, for the caller's log and counters.
// The error type is tungstenite's `Callback` contract; it is built once
// per refused upgrade, so its size does not matter.
#[allow(clippy::result_large_err)]
pub fn upgrade_answer(
    req: &Request,
    mut resp: Response,
    refused: &mut Option<Refusal>,
) -> Result<Response, ErrorResponse> {
    match check_upgrade(req) {
        Ok(token) => {
            resp.headers_mut().insert("sec-websocket-protocol", token);
            Ok(resp)
        }
        Err(why) => {
            *refused = Some(why);
            let (status, text) = why.answer();
            let mut err = ErrorResponse::new(Some(text.to_owned()));
            *err.status_mut() = status;
            Err(err)
        }
    }
}

/// [`upgrade_answer`] as tungstenite's handshake callback.
#[allow(clippy::result_large_err)] // as for `upgrade_answer`
fn answerer(
    refused: &mut Option<Refusal>,
) -> impl FnOnce(&Request, Response) -> Result<Response, ErrorResponse> + Unpin + '_ {
    |req: &Request, resp: Response| upgrade_answer(req, resp, refused)
}

/// The WebSocket limits for a stream layer whose largest SIP message is
/// `max_message`: no message or frame above it, small eager buffers.
pub fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(max_message.saturating_mul(2).max(READ_BUFFER))
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Runs one accepted `ws` connection: upgrade, then SIP messages until it
/// ends.
pub(super) async fn run_plain(stream: TcpStream, conn: StreamConn) {
    let deadline = Instant::now() + conn.shared.limits.tcp_message_deadline;
    run(stream, conn, Transport::Ws, deadline).await;
}

/// Runs one accepted `wss` connection: the TLS handshake (TLS's deadline,
/// certificate and counters, `tls.rs`), then the upgrade within its own
/// deadline, then SIP messages until it ends.
pub(super) async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    conn: StreamConn,
) {
    super::tls::serve_with(acceptor, tcp, conn, |tls, conn| async move {
        let deadline = Instant::now() + conn.shared.limits.tcp_message_deadline;
        run(tls, conn, Transport::Wss, deadline).await
    })
    .await
}

/// Runs one connection over any byte stream (TCP for `ws`, TLS for `wss`):
/// the upgrade must be done by `deadline`, then messages flow until the peer closes, it idles out,
/// a limit is broken, or shutdown.
pub(super) async fn run<S>(stream: S, conn: StreamConn, transport: Transport, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let StreamConn {
        peer: key,
        local,
        id,
        mut rx,
        shared,
        handle,
        permit: _permit,
    } = conn;
    let peer = key.addr;
    let mut shutdown = handle.subscribe();
    let limits = &shared.limits;
    let stream = SlowMessage::new(stream, limits.tcp_message_deadline);
    let mut refused = None;
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        answerer(&mut refused),
        Some(config(limits.max_message)),
    );
    let upgraded = tokio::select! {
        r = tokio::time::timeout_at(deadline, upgrade) => r,
        _ = shutdown.recv() => {
            close_entry(&shared, id, peer, transport, &mut rx, End::Shutdown);
            return;
        }
    };
    let mut ws = match upgraded {
        Ok(Ok(ws)) => {
            TransportStats::inc(&shared.stats.ws_upgrades_accepted);
            tracing::debug!(%peer, %local, %id, %transport, "WebSocket upgrade accepted");
            ws
        }
        Ok(Err(e)) => {
            TransportStats::inc(&shared.stats.ws_upgrades_refused);
            let why = match refused {
                Some(Refusal::NoSipSubprotocol) => {
                    "no `sip` subprotocol offered (answered 400)".to_owned()
                }
                None => format!("not a WebSocket upgrade: {e}"),
            };
            tracing::info!(%peer, %id, %transport, "WebSocket upgrade refused: {why}");
            close_entry(&shared, id, peer, transport, &mut rx, End::Refused);
            return;
        }
        Err(_) => {
            TransportStats::inc(&shared.stats.ws_upgrades_refused);
            tracing::info!(%peer, %id, %transport, "WebSocket upgrade not completed in time; closing");
            close_entry(&shared, id, peer, transport, &mut rx, End::Refused);
            return;
        }
    };

    // The request's bytes are behind us: the next byte starts a message.
    ws.get_mut().message_done();
    let idle = limits.tcp_idle_timeout;
    let mut last_heard = Instant::now();
    let mut pinged = false;
    let end = 'conn: loop {
        let ping_at = last_heard + idle / 2;
        tokio::select! {
            m = ws.next() => {
                let msg = match m {
                    None => break 'conn End::PeerClosed,
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => break 'conn End::from(e),
                };
                ws.get_mut().message_done();
                last_heard = Instant::now();
                pinged = false;
                let bytes = match classify(msg) {
                    Incoming::Sip(bytes) => bytes,
                    Incoming::KeepAlive => {
                        TransportStats::inc(&shared.stats.keepalive_pongs);
                        if let Err(end) = write(&mut ws, Message::text("\r\n")).await {
                            break 'conn end;
                        }
                        continue;
                    }
                    Incoming::Nothing => continue,
                };
                TransportStats::inc(&shared.stats.ws_received);
                let ev = TransportEvent::Inbound(Inbound {
                    bytes,
                    peer,
                    local,
                    transport,
                    conn: Some(id),
                    received: last_heard.into_std(),
                });
                // Backpressure as on TCP: a slow core slows this peer.
                tokio::select! {
                    r = shared.events.send(ev) => if r.is_err() { break 'conn End::Shutdown },
                    _ = shutdown.recv() => break 'conn End::Shutdown,
                }
            }
            out = rx.recv() => {
                let Some(first) = out else { break 'conn End::Shutdown };
                // Each queued SIP message is one WebSocket message
                // (RFC 7118 §5); what else is queued goes in the same flush.
                let mut next = Some(first);
                let mut n = 0;
                while let Some(bytes) = next.take() {
                    let len = bytes.len();
                    let fed = tokio::time::timeout(WRITE_TIMEOUT, ws.feed(message(bytes))).await;
                    rx.written(len);
                    match fed {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break 'conn End::from(e),
                        Err(_) => break 'conn End::Io(io::ErrorKind::TimedOut),
                    }
                    n += 1;
                    if n < WRITES_PER_WAKE {
                        next = rx.try_recv();
                    }
                }
                match tokio::time::timeout(WRITE_TIMEOUT, ws.flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break 'conn End::from(e),
                    Err(_) => break 'conn End::Io(io::ErrorKind::TimedOut),
                }
            }
            _ = tokio::time::sleep_until(ping_at), if !pinged => {
                pinged = true;
                if let Err(end) = write(&mut ws, Message::Ping(Bytes::new())).await {
                    break 'conn end;
                }
            }
            _ = tokio::time::sleep_until(last_heard + idle) => break 'conn End::Idle,
            _ = shutdown.recv() => break 'conn End::Shutdown,
        }
    };

    // Say why, when the protocol has a word for it (RFC 6455 §7.4.1).
    let close = match &end {
        End::TooLarge => Some((CloseCode::Size, "SIP message too large")),
        End::Protocol(_) => Some((CloseCode::Protocol, "WebSocket protocol error")),
        End::Slow => Some((CloseCode::Policy, "message not completed in time")),
        End::Idle => Some((CloseCode::Away, "idle")),
        End::Shutdown => Some((CloseCode::Away, "shutting down")),
        End::PeerClosed | End::Refused | End::Io(_) => None,
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(frame))).await;
    }
    close_entry(&shared, id, peer, transport, &mut rx, end);
}

/// What one received WebSocket message is to SIP.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// One SIP message for the core (RFC 7118 §5).
    Sip(Bytes),
    /// A double-CRLF keep-alive ping (RFC 5626 §4.4.1): answer CRLF.
    KeepAlive,
    /// Control frames (tungstenite answers Ping and Close itself; a Pong is
    /// liveness only) and stray CR/LF.
    Nothing,
}

/// Sorts one received WebSocket message.
pub fn classify(msg: Message) -> Incoming {
    let bytes = match msg {
        Message::Text(t) => Bytes::from(t),
        Message::Binary(b) => b,
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Close(_) => {
            return Incoming::Nothing
        }
    };
    if !bytes.iter().all(|&b| b == b'\r' || b == b'\n') {
        Incoming::Sip(bytes)
    } else if bytes.windows(4).any(|w| w == b"\r\n\r\n") {
        Incoming::KeepAlive
    } else {
        Incoming::Nothing
    }
}

/// What [`replay`] saw on one connection.
#[derive(Debug, Default)]
pub struct Replay {
    /// The upgrade was accepted.
    pub upgraded: bool,
    /// Why it was refused, when the `sip` rule refused it.
    pub refused: Option<Refusal>,
    /// What would go to the core, in order.
    pub incoming: Vec<Incoming>,
    /// How the connection ended (tungstenite's error text).
    pub end: String,
}

/// Runs the upgrade and WebSocket framing of one connection over `input`
/// (the bytes a client sent), held in memory, with a live listener's rules
/// and limits (`max_message`). No socket and no clock: the deadlines are
/// the live task's; this is the input path that fuzzing and tests drive.
pub fn replay(input: &[u8], max_message: usize) -> Replay {
    use std::io::{Read, Write};
    use tokio_tungstenite::tungstenite::{accept_hdr_with_config, HandshakeError};

    /// The client's bytes in (the upgrade request first, alone, as a
    /// client that waits for the 101 sends it), our answers discarded.
    struct Wire<'a> {
        head: &'a [u8],
        rest: &'a [u8],
    }
    impl Read for Wire<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.head.is_empty() {
                self.rest.read(buf)
            } else {
                self.head.read(buf)
            }
        }
    }
    impl Write for Wire<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    let mut out = Replay::default();
    let mut refused = None;
    let head_len = input
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(input.len(), |i| i + 4);
    let (head, rest) = input.split_at(head_len);
    let accepted = accept_hdr_with_config(
        Wire { head, rest },
        answerer(&mut refused),
        Some(config(max_message)),
    );
    let accepted = accepted.map_err(|e| match e {
        HandshakeError::Failure(e) => e.to_string(),
        HandshakeError::Interrupted(_) => "interrupted".to_owned(),
    });
    out.refused = refused;
    let mut ws = match accepted {
        Ok(ws) => ws,
        Err(e) => {
            out.end = e;
            return out;
        }
    };
    out.upgraded = true;
    loop {
        match ws.read() {
            Ok(m) => out.incoming.push(classify(m)),
            Err(e) => {
                out.end = e.to_string();
                return out;
            }
        }
    }
}

/// One SIP message as one WebSocket message: text when it is UTF-8 (as
/// SIP is, RFC 3261 §7), binary otherwise (a binary body).
fn message(bytes: Bytes) -> Message {
    match Utf8Bytes::try_from(bytes.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(bytes),
    }
}

/// Sends one message now (a pong or ping of our own).
async fn write<S>(ws: &mut WebSocketStream<S>, msg: Message) -> Result<(), End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(WRITE_TIMEOUT, ws.send(msg)).await {
        Ok(r) => r.map_err(End::from),
        Err(_) => Err(End::Io(io::ErrorKind::TimedOut)),
    }
}

/// Why a WebSocket connection ended.
#[derive(Debug)]
enum End {
    PeerClosed,
    /// The upgrade was refused or did not finish in time.
    Refused,
    Idle,
    Shutdown,
    /// A message or frame over `max_message`.
    TooLarge,
    /// A message begun was not completed within `tcp_message_deadline`.
    Slow,
    Protocol(String),
    Io(io::ErrorKind),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::PeerClosed => f.write_str("peer closed"),
            End::Refused => f.write_str("upgrade refused"),
            End::Idle => f.write_str("idle timeout"),
            End::Shutdown => f.write_str("shutting down"),
            End::TooLarge => f.write_str("message larger than the largest SIP message"),
            End::Slow => f.write_str("message not completed in time (slow sender)"),
            End::Protocol(why) => write!(f, "WebSocket protocol error: {why}"),
            End::Io(kind) => write!(f, "I/O error: {kind}"),
        }
    }
}

impl From<WsError> for End {
    fn from(e: WsError) -> End {
        match e {
            WsError::ConnectionClosed | WsError::AlreadyClosed => End::PeerClosed,
            WsError::Capacity(_) | WsError::WriteBufferFull(_) => End::TooLarge,
            // Only reads time out inside the stream ([`SlowMessage`]);
            // write timeouts are ours and become `Io(TimedOut)`.
            WsError::Io(e) if e.kind() == io::ErrorKind::TimedOut => End::Slow,
            WsError::Io(e) => End::Io(e.kind()),
            other => End::Protocol(other.to_string()),
        }
    }
}

/// Takes the connection out of the table, fails what is still queued on it,
/// logs why it ended and tells the core (its bindings go).
fn close_entry(
    shared: &Arc<Shared>,
    id: super::ConnId,
    peer: SocketAddr,
    transport: Transport,
    rx: &mut super::write_queue::WriteRx,
    end: End,
) {
    shared.conns.remove(id);
    match &end {
        End::TooLarge | End::Slow | End::Protocol(_) => {
            TransportStats::inc(&shared.stats.ws_protocol_errors);
            tracing::info!(%peer, %id, %transport, "closing WebSocket connection: {end}");
        }
        other => tracing::debug!(%peer, %id, %transport, "WebSocket connection closed: {other}"),
    }
    rx.close();
    while let Some(b) = rx.try_recv() {
        rx.written(b.len());
        shared.send_failed(peer, transport, Some(id), io::ErrorKind::BrokenPipe);
    }
    if !matches!(end, End::Refused) {
        shared.report(TransportEvent::Closed { conn: id, peer });
    }
}

/// Queues `out` on the WebSocket connection the client opened: the one
/// named, else the one the core's destination address is (the source of
/// the client's requests). Never opens a connection: without one the send
/// fails at once (RFC 7118 §5).
pub(super) fn send(shared: &Arc<Shared>, out: Outbound) {
    let Outbound {
        bytes,
        dest,
        transport,
        conn,
    } = out;
    let fail = |conn, kind| shared.send_failed(dest, transport, conn, kind);
    if bytes.len() > shared.limits.max_message {
        return fail(conn, io::ErrorKind::InvalidInput);
    }
    let entry = match conn {
        Some(id) => shared.conns.get(id),
        None => shared.conns.by_peer(&PeerKey::plain(transport, dest)),
    };
    let Some(entry) = entry.filter(|e| e.peer.transport == transport) else {
        tracing::debug!(%dest, ?conn, %transport, "no WebSocket connection to send on");
        return fail(conn, io::ErrorKind::NotConnected);
    };
    match entry.tx.push(bytes) {
        Pushed::Queued | Pushed::Behind => TransportStats::inc(&shared.stats.ws_sent),
        Pushed::Full => {
            TransportStats::inc(&shared.stats.tcp_write_queue_full);
            fail(Some(entry.id), io::ErrorKind::WouldBlock)
        }
        Pushed::Closed => fail(Some(entry.id), io::ErrorKind::BrokenPipe),
    }
}

/// A byte stream that fails a read with `TimedOut` once the bytes of a
/// message have been arriving for longer than `limit` (a WebSocket
/// slowloris: a byte every few seconds keeps a connection from idling out
/// but never completes a message). The clock starts at the first byte after
/// [`SlowMessage::message_done`]; before the first call (the upgrade, which
/// has its own deadline) there is none.
struct SlowMessage<S> {
    inner: S,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    /// Counting starts after the upgrade.
    active: bool,
    armed: bool,
}

impl<S> SlowMessage<S> {
    fn new(inner: S, limit: Duration) -> Self {
        SlowMessage {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            active: false,
            armed: false,
        }
    }

    /// A whole message has been read (or the upgrade): the next byte
    /// starts a new clock.
    fn message_done(&mut self) {
        self.active = true;
        self.armed = false;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SlowMessage<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.armed && this.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got = matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        if got && this.active && !this.armed {
            this.armed = true;
            let at = Instant::now() + this.limit;
            this.timer.as_mut().reset(at);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SlowMessage<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
