//! Trunk sync (SPEC §7, `[sync] url, appid, interval_s`): pull a remote
//! `/v1/trunks`-shaped list, validate it whole, swap it in atomically,
//! keep the last good set on any error.
//!
//! One task ([`run`]) pulls at start-up and then every `interval_s`:
//! `GET url` with `Authorization: Bearer <appid>` (nothing when `appid` is
//! empty) and `If-None-Match` with the `ETag` of the set in force; `304` means
//! unchanged. The body (at most [`BODY_LIMIT`]) is read by [`remote`] with
//! the `POST /v1/trunks` field rules, and the whole set replaces the
//! trunks through [`Live::replace_trunks`]: validated with the rest of the
//! config in force, written to the store in one transaction (a restart with
//! the remote down starts on the last good set), swapped in; calls in
//! progress keep their terms; DIDs are not touched. Any failure (connect,
//! timeout, non-2xx, too large, not JSON, an invalid trunk) changes
//! nothing, logs one line saying why, and is counted; [`status`] is what
//! `/healthz` and `/metrics` show.
//!
//! In a fleet (`[store] url`) one node pulls at a time: the one holding the
//! `trunk_sync` lease in the shared store, renewed at every pull and given
//! up after three missed ones (at least 15 s); the others get its trunks
//! through the store's change feed.
//!
//! While `[sync]` is configured the remote is the source of truth for
//! trunks: `POST`, `PUT` and `DELETE /v1/trunks` answer `409` (a local edit
//! would be undone by the next pull); `GET` still works and DIDs stay
//! editable. `[sync]` is read at start-up; changing it needs a restart.

mod remote;
mod status;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{ACCEPT, ETAG, IF_NONE_MATCH};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio::time::MissedTickBehavior;

pub(crate) use remote::SyncError;
use status::{Pulled, Same, SyncStatus};

use super::Live;
use crate::config::SyncConfig;
use crate::transport::Shutdown;

/// Connect timeout, and the limit on one whole pull (send, headers, body).
const PULL_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest remote body read (8 MiB: some 20,000 trunks); larger is an error.
pub(crate) const BODY_LIMIT: usize = 8 << 20;

/// An `ETag` longer than this is not kept (a remote could send anything).
const ETAG_LIMIT: usize = 256;

/// The sync's settings (from start-up) and the status of its pulls.
#[derive(Debug)]
pub(crate) struct SyncState {
    config: SyncConfig,
    status: Mutex<SyncStatus>,
}

impl SyncState {
    pub(crate) fn new(config: SyncConfig) -> SyncState {
        SyncState {
            config,
            status: Mutex::new(SyncStatus::default()),
        }
    }

    /// The remote list's URL.
    pub(crate) fn url(&self) -> &str {
        &self.config.url
    }

    /// The settings the sync runs on.
    pub(crate) fn config(&self) -> &SyncConfig {
        &self.config
    }

    fn status_mut(&self) -> MutexGuard<'_, SyncStatus> {
        // Only plain assignments happen under the lock; a poisoned one is usable.
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `"sync"` object of `/healthz`; `trunks` is the count in force.
    pub(crate) fn to_json(&self, trunks: usize) -> Value {
        self.status_mut().to_json(self.config.interval_s, trunks)
    }

    /// Appends the sync's metrics to `/metrics` text.
    pub(crate) fn metrics(&self, out: &mut String) {
        self.status_mut().metrics(out);
    }
}

/// Runs the trunk sync until `shutdown` fires; returns at once when
/// `[sync]` is not configured. Spawn it beside [`super::serve`].
pub async fn run(live: Arc<Live>, mut shutdown: Shutdown) {
    let Some(state) = live.sync().cloned() else {
        return;
    };
    let cfg = state.config();
    let client = match client(PULL_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("trunk sync is off: cannot build its HTTP client: {e}");
            return;
        }
    };
    tracing::info!(
        url = %cfg.url,
        "trunk sync: pulling trunks every {} s; they are read-only over the API while [sync] is set",
        cfg.interval_s
    );
    let interval = Duration::from_secs(cfg.interval_s.max(1));
    let ttl = lease_ttl(interval);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut held = None;
    loop {
        // The first tick is at once: one pull at start-up.
        tokio::select! {
            () = shutdown.recv() => break,
            _ = tick.tick() => {}
        }
        // In a fleet, one node pulls (the lease holder); the others get
        // its trunks through the shared store's change feed.
        let now_held = live.hold_lease(LEASE, ttl).await;
        if held != Some(now_held) {
            if now_held {
                tracing::info!("trunk sync: this node holds the sync lease and pulls");
            } else {
                tracing::info!(
                    "trunk sync: another node holds the sync lease (or the store is away); \
                     this node takes the trunks it stores"
                );
            }
            held = Some(now_held);
        }
        if !now_held {
            continue;
        }
        tokio::select! {
            () = shutdown.recv() => break,
            () = pull_once(&live, &client, &state) => {}
        }
    }
    tracing::debug!("trunk sync stopped");
}

/// The name of the trunk sync's lease in the store.
const LEASE: &str = "trunk_sync";

/// How long a node holds the sync lease without renewing it: three pulls,
/// at least 15 s. A node that stops is replaced within that time.
fn lease_ttl(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(15))
}

/// The pulls' HTTP client: `timeout` to connect and for a whole pull.
fn client(timeout: Duration) -> reqwest::Result<Client> {
    Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("sipfront/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One pull, recorded and logged in one line.
async fn pull_once(live: &Live, client: &Client, state: &SyncState) {
    let started = Instant::now();
    let etag = state.status_mut().etag.clone();
    let outcome = pull(live, client, state.config(), etag.as_deref()).await;
    let ms = started.elapsed().as_millis();
    let trunks = live.current().trunk.len();
    let url = &state.config().url;
    match &outcome {
        Ok(Pulled::Applied { diff, .. }) => {
            tracing::info!("trunk sync: applied {diff} from {url} in {ms} ms");
        }
        Ok(Pulled::Unchanged {
            how: Same::NotModified,
            ..
        }) => tracing::debug!("trunk sync: unchanged ({url} answered 304 Not Modified)"),
        Ok(Pulled::Unchanged {
            how: Same::Equal, ..
        }) => tracing::debug!("trunk sync: unchanged ({url} lists the {trunks} trunks in force)"),
        Err(e) => tracing::warn!(
            "trunk sync: pull from {url} failed, keeping the last good trunks ({trunks}): {e}"
        ),
    }
    state.status_mut().record(unix_ms(), &outcome);
}

/// Wall-clock now, in unix ms.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Fetch, read, apply.
async fn pull(
    live: &Live,
    client: &Client,
    cfg: &SyncConfig,
    etag: Option<&str>,
) -> Result<Pulled, SyncError> {
    let Some((body, etag)) = fetch(client, cfg, etag).await? else {
        return Ok(Pulled::Unchanged {
            how: Same::NotModified,
            etag: None,
        });
    };
    // Up to 8 MiB of JSON: parsed off the runtime's threads.
    let items = tokio::task::spawn_blocking(move || remote::items(&body))
        .await
        .map_err(|e| SyncError::Http(format!("reading the body: {e}")))??;
    let applied = live.replace_trunks(|cur| remote::plan(&items, cur)).await?;
    Ok(match applied {
        Some(diff) => Pulled::Applied { diff, etag },
        None => Pulled::Unchanged {
            how: Same::Equal,
            etag,
        },
    })
}

/// `GET` the list: its body and `ETag`, or `None` for `304 Not Modified`.
async fn fetch(
    client: &Client,
    cfg: &SyncConfig,
    etag: Option<&str>,
) -> Result<Option<(Vec<u8>, Option<String>)>, SyncError> {
    let mut req = client.get(&cfg.url).header(ACCEPT, "application/json");
    if !cfg.appid.is_empty() {
        req = req.bearer_auth(&cfg.appid);
    }
    if let Some(tag) = etag {
        req = req.header(IF_NONE_MATCH, tag);
    }
    let mut resp = req.send().await.map_err(http_error)?;
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED && etag.is_some() {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(SyncError::Status(status.to_string()));
    }
    let too_large = SyncError::TooLarge { limit: BODY_LIMIT };
    if resp.content_length().is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large);
    }
    let new_etag = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= ETAG_LIMIT)
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(http_error)? {
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some((body, new_etag)))
}

/// A transport failure in one line, without the URL (the log line names
/// it once) and with the root cause (`Connection refused`, not "error
/// sending request").
fn http_error(e: reqwest::Error) -> SyncError {
    if e.is_timeout() {
        return SyncError::Http(format!("timed out (limit {} s)", PULL_TIMEOUT.as_secs()));
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "reading the body failed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut root: &dyn std::error::Error = &e;
    while let Some(next) = root.source() {
        root = next;
    }
    SyncError::Http(format!("{what}: {root}"))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn cfg(url: String) -> SyncConfig {
        SyncConfig {
            url,
            appid: String::new(),
            interval_s: 1,
        }
    }

    /// A one-connection server: reads the request head, then `answer`s.
    async fn server(answer: Option<Vec<u8>>) -> String {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}/v1/trunks",
            l.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        tokio::spawn(async move {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            match answer {
                Some(bytes) => {
                    let _ = s.write_all(&bytes).await;
                }
                // Never answer; hold the connection until the client gives up.
                None => tokio::time::sleep(Duration::from_secs(30)).await,
            }
        });
        url
    }

    #[tokio::test]
    async fn a_body_without_length_is_cut_at_the_limit_while_reading() {
        let mut answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        answer.resize(answer.len() + BODY_LIMIT + 1, b' ');
        let url = server(Some(answer)).await;
        let client = client(Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
        let r = fetch(&client, &cfg(url), None).await;
        assert_eq!(r, Err(SyncError::TooLarge { limit: BODY_LIMIT }));
    }

    #[tokio::test]
    async fn refused_and_silent_remotes_are_one_line_errors() {
        let client = client(Duration::from_millis(300)).unwrap_or_else(|e| panic!("{e}"));
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            l.local_addr().unwrap_or_else(|e| panic!("{e}"))
        };
        let r = fetch(&client, &cfg(format!("http://{closed}/v1/trunks")), None).await;
        match r {
            Err(SyncError::Http(m)) => {
                assert!(
                    m.starts_with("cannot connect: ") && !m.contains("http://"),
                    "{m}"
                );
            }
            other => panic!("{other:?}"),
        }
        let url = server(None).await;
        let r = fetch(&client, &cfg(url), None).await;
        match r {
            Err(SyncError::Http(m)) => assert!(m.starts_with("timed out"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
