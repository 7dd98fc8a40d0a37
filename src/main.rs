//! The `sipfront` binary: CLI (SPEC §1) and the wiring of the tokio shell.
//!
//! This is the only place (with the transport tasks) that reads the clock or
//! spawns tasks: sockets feed the core tasks, each core task owns one
//! sans-IO endpoint (a shard, `[server] workers` of them) and drains its
//! actions back to the sockets, and one `Sleep` per shard is reset to its
//! next deadline (ARCHITECTURE.md, "Sans-IO core, thin async shell" and
//! "One core per CPU"; STYLE.md point 7).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sipfront::config::Config;

/// SIP signalling edge proxy and B2BUA for trunk termination.
#[derive(Debug, Parser)]
#[command(name = "sipfront", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run in the foreground.
    Run {
        /// Config file [default: config/sipfront.toml if present, else the built-in copy].
        #[arg(long, short = 'c', value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Validate the config (and the files it references); exit 1 on error.
    Check {
        /// Config file [default: config/sipfront.toml if present, else the built-in copy].
        #[arg(long, short = 'c', value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// HTTP API keys kept in the store (`[store] path`); a running sipfront
    /// reads them at start and on SIGHUP.
    Key {
        #[command(subcommand)]
        action: KeyAction,
        /// Config file [default: config/sipfront.toml if present, else the built-in copy].
        #[arg(long, short = 'c', value_name = "PATH", global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeyAction {
    /// Make a key named NAME and print it once (the store keeps only its SHA-256).
    Create {
        /// 1 to 64 letters, digits, `.`, `_` or `-`; shown in logs.
        name: String,
    },
    /// List the stored keys' names (the keys themselves are not kept).
    List,
    /// Delete the stored key NAME (revoked at the next SIGHUP or start).
    Delete {
        /// The key's name.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(config.as_deref()),
        Command::Run { config } => run(config.as_deref()),
        Command::Key { action, config } => key(&action, config.as_deref()),
    }
}

/// `sipfront key …`: the key or the list on stdout, anything else on stderr.
fn key(action: &KeyAction, path: Option<&Path>) -> ExitCode {
    use sipfront::control::keys;
    use sipfront::store::{self, SqliteStore, Store};
    let cfg = match resolve_config(path) {
        Ok(cfg) => cfg,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    // The fleet store runs its queries on a runtime of its own here.
    let opened = match &cfg.store.url {
        Some(url) => {
            store::pg::open_standalone(url, sipfront::cluster::node_name(&cfg)).map(|(rt, s)| {
                let shown = s.pool().shown().to_owned();
                (Box::new(s) as Box<dyn Store>, shown, Some(rt))
            })
        }
        None => SqliteStore::open(&cfg.store.path).map(|s| {
            let shown = s.path().display().to_string();
            (Box::new(s) as Box<dyn Store>, shown, None)
        }),
    };
    let (store, shown, _runtime) = match opened {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let store = &*store;
    let done = match action {
        KeyAction::Create { name } => keys::create(store, &cfg, name).map(|key| {
            println!("{key}");
            eprintln!(
                "API key `{name}` stored in {shown} (its SHA-256 only: this is the one time it is \
                 shown); a running sipfront takes it at SIGHUP (systemctl reload sipfront)"
            );
        }),
        KeyAction::List => store
            .api_keys()
            .map(|ks| {
                for k in ks {
                    let how = if k.generated {
                        "generated at first start"
                    } else {
                        "created"
                    };
                    println!("{}\t{how}\tcreated_ms={}", k.name, k.created_ms);
                }
            })
            .map_err(|e| e.to_string()),
        KeyAction::Delete { name } => keys::delete(store, name).map(|()| {
            eprintln!(
                "API key `{name}` deleted from {shown}; a running sipfront refuses it after SIGHUP"
            );
        }),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The `SIPFRONT_*` variables of the process environment (non-UTF-8 ones
/// are not ours and are skipped).
fn env_overrides() -> sipfront::config::EnvOverrides {
    sipfront::config::EnvOverrides::from_vars(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )
}

/// The config `run`, `check`, `key` and SIGHUP use: the file (or the
/// built-in copy) with the keys the environment sets.
fn resolve_config(path: Option<&Path>) -> Result<Config, sipfront::config::ConfigErrors> {
    Config::resolve_with_env(path, &env_overrides())
}

/// `sipfront check`: prints `OK: <file>: <summary>` or every error, one per line.
fn check(path: Option<&Path>) -> ExitCode {
    match resolve_config(path) {
        Ok(cfg) => {
            println!("OK: {}: {}", cfg.source, cfg.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), as text or as
/// one JSON object per line (`[log] format`).
fn init_logging(format: sipfront::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        sipfront::config::LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        sipfront::config::LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// `sipfront run`.
fn run(path: Option<&Path>) -> ExitCode {
    let cfg = match resolve_config(path) {
        Ok(cfg) => {
            init_logging(cfg.log.format);
            cfg
        }
        Err(errors) => {
            init_logging(sipfront::config::LogFormat::Text);
            for e in &errors.0 {
                tracing::error!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(source = %cfg.source, "config loaded: {}", cfg.summary());
    let public = cfg.server.public_address.as_str();
    let loopback_public = public == "localhost"
        || public
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback_public && cfg.listen.iter().any(|l| !l.address.ip().is_loopback()) {
        tracing::warn!(
            "server.public_address is {public} but sipfront listens beyond loopback: peers \
             elsewhere get {public} in Via and Contact and cannot answer; set \
             server.public_address (or SIPFRONT_PUBLIC_ADDRESS) to the address they reach"
        );
    }
    let env = env_overrides();
    for (var, key, _) in &env.set {
        tracing::info!("{var} sets {key} (environment wins over the file)");
    }
    for var in &env.unknown {
        tracing::warn!(
            "{var} is not read (a typo?); the environment sets only {}",
            sipfront::config::ENV_VARS
                .iter()
                .map(|(v, _)| *v)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sipfront")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(shell::serve(cfg, path.map(Path::to_path_buf))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The async shell: sockets, the core task, signals.
mod shell {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use sipfront::config::Config;
    use sipfront::transport::{
        EventSink, Shutdown, ShutdownController, TransportEvent, TransportLimits, Transports,
    };
    use tokio::sync::{mpsc, Notify};

    use sipfront::b2bua::WallClock;
    use sipfront::cdr::PgCdr;
    use sipfront::cdr::{CdrSink, CdrWriter};
    use sipfront::control::{self, Live};
    use sipfront::endpoint::{Endpoint, EndpointConfig, Env, SharedState};
    use sipfront::events::dispatch::{self as webhooks, WebhookSink};
    use sipfront::store::{self, BindingSink, BindingWriter, PgStore, SqliteStore, Store};

    /// Inbound queue between the sockets and each core shard.
    const EVENT_QUEUE: usize = 16 * 1024;
    /// Events the core handles per wake before draining and re-arming its timer.
    const EVENTS_PER_WAKE: usize = 256;
    /// How long shutdown waits for the socket tasks.
    const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
    /// CDRs queued for the store before new ones are dropped (and counted).
    const CDR_QUEUE: usize = 65_536;
    /// Registration writes queued for the store (each one login's whole
    /// set); beyond it changed logins wait, marked, in the registrar. Two
    /// of the writer's 4,096-write transactions: enough to keep it busy.
    const BINDING_QUEUE: usize = 8_192;
    /// How soon the core looks again at logins a full queue left waiting.
    const BINDING_RETRY: Duration = Duration::from_millis(20);
    /// Media relay answers queued for the core task (each shard has its own).
    const MEDIA_QUEUE: usize = 4096;
    /// How long the rtpengine deletes of calls ended at stop may take.
    const MEDIA_GRACE: Duration = Duration::from_secs(2);
    /// How long call-status events still queued at stop may take to go out.
    const WEBHOOK_GRACE: Duration = Duration::from_secs(2);

    /// The shell's clock: tokio's, so tests with paused time drive it too.
    /// The only place time is read; the core gets it as an argument.
    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    /// The core's other outside inputs, read once here: the wall clock
    /// against `now()`, and seeds from the OS (the core never reads either).
    /// Shards share the wall clock and the nonce key (a nonce minted on one
    /// is checked on another) and each draws its own seed ([`seed`]).
    fn env() -> Env {
        use rand::Rng;
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut os = rand::rngs::OsRng;
        Env {
            wall: WallClock { at: now(), unix_ms },
            seed: os.gen(),
            nonce_secret: os.gen(),
        }
    }

    /// A fresh seed from the OS, for a core shard's identifiers.
    fn seed() -> [u8; 32] {
        use rand::Rng;
        rand::rngs::OsRng.gen()
    }

    /// Copies each value of `rx` to every shard's queue (DNS answers: every
    /// shard routes calls).
    fn fan_out<T: Clone + Send + 'static>(mut rx: mpsc::Receiver<T>, shards: Vec<mpsc::Sender<T>>) {
        tokio::spawn(async move {
            while let Some(v) = rx.recv().await {
                for tx in &shards {
                    let _ = tx.send(v.clone()).await;
                }
            }
        });
    }

    /// `n` bounded queues of `cap`: the senders and the receivers.
    fn queues<T>(n: usize, cap: usize) -> (Vec<mpsc::Sender<T>>, Vec<mpsc::Receiver<T>>) {
        (0..n).map(|_| mpsc::channel(cap)).unzip()
    }

    /// Binds the sockets, runs the core task, handles signals until asked to stop.
    pub(crate) async fn serve(cfg: Config, path: Option<PathBuf>) -> Result<(), String> {
        let (cfg, store, fleet) = open_store(cfg).await?;
        let reader = store.clone();
        let loading = now();
        // `persist = false`: the store's rows are neither loaded nor written.
        let persist = cfg.registrar.persist;
        let stored = tokio::task::spawn_blocking(move || {
            if persist {
                reader.bindings()
            } else {
                Ok(Vec::new())
            }
        })
        .await
        .map_err(|e| format!("cannot start: store: {e}"))?
        .map_err(|e| format!("cannot start: {e}"))?;
        let (binding_writer, binding_sink) = BindingWriter::start(store.clone(), BINDING_QUEUE)
            .map_err(|e| format!("cannot start: registration writer: {e}"))?;
        let (cdr_writer, cdr_sink) = match &fleet {
            // The spill file sits where the embedded store would.
            Some(f) => PgCdr::new(f.pool().clone()).start_writer(
                cfg.store
                    .path
                    .parent()
                    .unwrap_or(std::path::Path::new(""))
                    .join(sipfront::cdr::SPILL_FILE),
                CDR_QUEUE,
            ),
            None => CdrWriter::start(&cfg.store.path, CDR_QUEUE),
        }
        .map_err(|e| format!("cannot start: CDR store: {e}"))?;
        let (webhooks, webhook_sink) = webhooks::Dispatcher::start(webhooks::Settings::default())
            .map_err(|e| format!("cannot start: {e}"))?;
        let controller = ShutdownController::new();
        // `[server] workers` core shards (validated 1..=64), each with its
        // own inbound queue: the sockets dispatch by Call-ID.
        let workers = usize::try_from(cfg.server.workers).unwrap_or(1).max(1);
        let (events_tx, events_rx) = queues::<TransportEvent>(workers, EVENT_QUEUE);
        let sink = EventSink::new(events_tx).ok_or("cannot start: no core shard")?;
        let transports = Transports::start(
            &cfg,
            TransportLimits::from_settings(&cfg.transport),
            sink,
            &controller,
        )
        .await
        .map_err(|e| format!("cannot start: {e}"))?;
        let capture = match cfg.capture.hep {
            Some(hep) => {
                let c = sipfront::capture::Capture::start(hep, cfg.capture.capture_id)
                    .await
                    .map_err(|e| format!("cannot start: [capture] hep = \"{hep}\": {e}"))?;
                Some(sipfront::capture::Tap::new(Arc::new(c), transports.bound()))
            }
            None => None,
        };
        let http = control::bind(cfg.http.address)
            .await
            .map_err(|e| format!("cannot start: HTTP API on {}: {e}", cfg.http.address))?;
        let http_addr = http
            .local_addr()
            .map_err(|e| format!("cannot start: HTTP API: {e}"))?;
        let mut signals =
            Signals::new().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let mut env = env();
        if cfg.cluster.enabled() {
            // A challenge from one node may be answered to another.
            match sipfront::cluster::fleet_nonce_key(&cfg.cluster, env.nonce_secret).await {
                Ok(key) => env.nonce_secret = key,
                Err(e) => tracing::warn!(
                    "cluster: no fleet nonce key from Redis ({e}): digest nonces minted \
                     here verify only here until a restart"
                ),
            }
        }
        let ep_cfg = EndpointConfig::from_config(&cfg, &transports.bound(), env)
            .map_err(|e| format!("cannot start: {e}"))?;
        // One path for every config change: the API and SIGHUP both go
        // through `Live`, which sends the validated snapshot to each shard.
        let (reload_tx, reload_rx) = queues(workers, 4);
        let (drain_tx, drain_rx) = queues(workers, 1);
        let drain_s = cfg.server.drain_s;
        let (core_handle, queries_rx) = control::Core::channels(workers);
        let node = sipfront::cluster::node_name(&cfg);
        let mut live = Live::new(Arc::new(cfg), store, reload_tx, core_handle);
        if let Some(f) = &fleet {
            // Unique per process: two nodes given one name never share a lease.
            let holder = format!("{node}/{}", f.instance());
            live = live.on_fleet(PgCdr::new(f.pool().clone()), holder);
        }
        let live = Arc::new(live);
        control::keys::load_at_start(&live, http_addr).await?;
        if let Some(f) = &fleet {
            follow_fleet_changes(f, &live, &controller);
        }
        tokio::spawn(control::serve(http, live.clone(), controller.subscribe()));
        tokio::spawn(control::sync_trunks(live.clone(), controller.subscribe()));
        tracing::info!(
            udp = ?transports.udp_addrs(),
            tcp = ?transports.tcp_addrs(),
            tls = ?transports.tls_addrs(),
            ws = ?transports.ws_addrs(),
            wss = ?transports.wss_addrs(),
            http = ?[http_addr],
            workers,
            "sipfront {} ready",
            env!("CARGO_PKG_VERSION")
        );
        sipfront::notify::notify(&format!(
            "READY=1\nSTATUS=SIP {} listener(s), HTTP API on {http_addr}",
            transports.bound().len()
        ));
        // RFC 3263: upstream host names are resolved on their own task; the
        // core gets each answer as an input and never waits for DNS.
        let (dns_tx, dns_rx) = mpsc::channel(64);
        let names: Vec<_> = ep_cfg
            .upstreams
            .resolutions()
            .into_iter()
            .filter_map(|(i, r)| {
                Some((
                    i,
                    format!("upstream `{}`", ep_cfg.upstreams.get(i)?.name),
                    r,
                ))
            })
            .collect();
        // The same for host names in DID SIP URI destinations, re-collected
        // by the core loop when a reload or the API changes the DIDs.
        let did_names = sipfront::routing::did_hosts::collect(&live.current().did);
        let (did_names_tx, did_names_rx) = tokio::sync::watch::channel(did_names);
        let (did_dns_tx, did_dns_rx) = mpsc::channel(64);
        match sipfront::dns::resolver(&live.current().dns) {
            Ok(resolver) => {
                if !names.is_empty() {
                    tokio::spawn(sipfront::dns::run(
                        resolver.clone(),
                        names,
                        dns_tx,
                        controller.subscribe(),
                    ));
                }
                tokio::spawn(sipfront::dns::run_did_hosts(
                    resolver,
                    did_names_rx,
                    did_dns_tx,
                    controller.handle(),
                    controller.subscribe(),
                ));
            }
            Err(e) if !names.is_empty() || !did_names_rx.borrow().is_empty() => {
                return Err(format!("cannot start: DNS: {e}"));
            }
            Err(e) => {
                tracing::warn!("DNS: {e}: host names in new DID destinations will not resolve")
            }
        }
        // SPEC §8.4: rtpengine's ng client on its own task; relayed calls
        // ask it through the core's outputs and get answers as inputs (each
        // shard on its own queue: request ids are per shard).
        let (media_client, media_task) = sipfront::media::MediaClient::start(&live.current().media)
            .await
            .map_err(|e| format!("cannot start: rtpengine client socket: {e}"))?;
        let (media_txs, media_rxs) = queues(workers, MEDIA_QUEUE);
        // README "Fleets": channel counts across nodes through Redis; the
        // core asks through its outputs, each shard gets verdicts on its
        // own queue (ask ids are per shard).
        let fleet_state = Arc::new(std::sync::OnceLock::new());
        let cluster = match &live.current().cluster {
            c if c.enabled() => {
                let node = sipfront::cluster::node_name(&live.current());
                // Where the other nodes relay calls for phones registered
                // here: the first UDP listener (its host from
                // public_address when bound to a wildcard).
                let sip = transports.udp_addrs().first().map(|a| {
                    match live.current().server.public_address.parse() {
                        Ok(ip) if a.ip().is_unspecified() => {
                            std::net::SocketAddr::new(ip, a.port())
                        }
                        _ => *a,
                    }
                });
                let cluster = sipfront::cluster::Cluster::start(
                    c,
                    node,
                    sip,
                    Arc::clone(&fleet_state),
                    controller.subscribe(),
                )
                .map_err(|e| format!("cannot start: {e}"))?;
                tracing::info!(
                    node = cluster.node(),
                    "cluster: channel limits shared through Redis"
                );
                live.set_cluster(cluster.clone());
                Some(cluster)
            }
            _ => None,
        };
        let (fleet_txs, fleet_rxs) = queues(workers, MEDIA_QUEUE);
        // Shard 0 first: it installs the shared registrar the others use.
        let shared = Arc::new(match &cluster {
            Some(c) => SharedState::with_channels(&ep_cfg.guard, c.counters()),
            None => SharedState::new(&ep_cfg.guard),
        });
        let _ = fleet_state.set(Arc::clone(&shared));
        let mut endpoints: Vec<Endpoint> = (0..workers)
            .map(|i| {
                let seed = if i == 0 { ep_cfg.seed } else { seed() };
                Endpoint::with_shared(ep_cfg.for_shard(i, workers, seed), Arc::clone(&shared))
            })
            .collect();
        let report = endpoints
            .first_mut()
            .map(|e| e.restore_bindings(stored, now()))
            .unwrap_or_default();
        tracing::info!(
            restored = report.restored,
            expired = report.expired,
            tcp_dropped = report.tcp_dropped,
            ms = loading.elapsed().as_millis() as u64,
            "registrations loaded from the store"
        );
        // DNS answers go to every shard; the DID names to resolve come
        // from shard 0 (every shard has the same DIDs).
        let (dns_txs, dns_rxs) = queues(workers, 64);
        fan_out(dns_rx, dns_txs);
        let (did_dns_txs, did_dns_rxs) = queues(workers, 64);
        fan_out(did_dns_rx, did_dns_txs);
        let mut did_names = Some(did_names_tx);
        // Non-owner shards wake shard 0 when they change the registrar.
        let nudge = Arc::new(Notify::new());
        let mut shards = Vec::with_capacity(workers);
        let inputs = endpoints
            .into_iter()
            .zip(events_rx)
            .zip(reload_rx)
            .zip(queries_rx)
            .zip(drain_rx)
            .zip(dns_rxs)
            .zip(did_dns_rxs)
            .zip(media_rxs.into_iter().zip(media_txs))
            .zip(fleet_rxs.into_iter().zip(fleet_txs));
        for (
            (
                ((((((endpoint, events), reloads), queries), drain), dns), did_dns),
                (media, media_answers),
            ),
            (fleet, fleet_answers),
        ) in inputs
        {
            shards.push(tokio::spawn(core_loop(
                endpoint,
                Inputs {
                    events,
                    reloads,
                    queries,
                    drain,
                    dns,
                    did_dns,
                    did_names: did_names.take(),
                    media,
                    fleet,
                    nudge: Arc::clone(&nudge),
                    shutdown: controller.subscribe(),
                },
                transports.clone(),
                Sinks {
                    cdrs: cdr_sink.clone(),
                    webhooks: webhook_sink.clone(),
                    bindings: binding_sink.clone(),
                    media: media_client.clone(),
                    media_answers,
                    cluster: cluster.clone(),
                    fleet_answers,
                    capture: capture.clone(),
                },
            )));
        }
        // SIGHUP re-reads TLS certificates through this handle.
        let sockets = transports.clone();
        drop(transports);
        // The shards hold the clients now: the media task ends with the last.
        drop(media_client);
        // Done when every shard is.
        let mut core = tokio::spawn(async move {
            for shard in shards {
                let _ = shard.await;
            }
        });

        let mut draining = false;
        let mut core_done = false;
        loop {
            let signal = tokio::select! {
                s = signals.next() => s,
                _ = &mut core, if draining => {
                    core_done = true;
                    tracing::info!("drained: every call has ended");
                    break;
                }
            };
            if matches!(signal, Signal::Stop(_)) {
                sipfront::notify::notify("STOPPING=1");
            }
            match signal {
                Signal::Stop(name) if !draining && drain_s > 0 => {
                    tracing::info!(
                        "{name}: draining: new calls get 503, calls in progress may go on \
                         for up to {drain_s} s (server.drain_s); send it again to stop now"
                    );
                    draining = true;
                    let until = now() + Duration::from_secs(drain_s);
                    for tx in &drain_tx {
                        let _ = tx.send(until).await;
                    }
                }
                Signal::Stop(name) => {
                    tracing::info!("{name}: shutting down");
                    break;
                }
                Signal::Reload => {
                    // Certificates first: a renewal needs no config change,
                    // and a config error must not keep an expiring one.
                    match sockets.reload_tls() {
                        Ok(0) => {}
                        Ok(n) => tracing::info!("SIGHUP: {n} TLS certificate(s) re-read"),
                        Err(errors) => {
                            for e in errors {
                                tracing::error!("SIGHUP: {e}");
                            }
                        }
                    }
                    reload_config(&live, path.as_deref()).await;
                    control::keys::reload(&live, "SIGHUP").await;
                }
            }
        }

        // The socket tasks end when the last handle on them goes.
        drop(sockets);
        if tokio::time::timeout(SHUTDOWN_GRACE, controller.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some socket tasks did not stop within {SHUTDOWN_GRACE:?}");
        }
        if !core_done {
            let _ = core.await;
        }
        // The deletes of the calls ended at stop get their chance to go out.
        if tokio::time::timeout(MEDIA_GRACE, media_task).await.is_err() {
            tracing::warn!("rtpengine deletes still unanswered at exit");
        }
        // Call-status events get a short, bounded chance to go out.
        webhooks.shutdown(WEBHOOK_GRACE).await;
        // Everything the core queued is written before we exit.
        let _ = tokio::task::spawn_blocking(move || binding_writer.shutdown()).await;
        let flushed = tokio::task::spawn_blocking(move || cdr_writer.shutdown()).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("CDR store: {e}"),
            Err(e) => tracing::error!("CDR writer: {e}"),
        }
        tracing::info!(
            cdrs_written = cdr_sink.written(),
            cdrs_dropped = cdr_sink.dropped(),
            cdrs_failed = cdr_sink.failed(),
            cdrs_spilled = cdr_sink.spilled(),
            cdrs_pending = cdr_sink.pending(),
            webhooks_delivered = webhook_sink.delivered(),
            webhooks_failed = webhook_sink.failed(),
            webhooks_dropped = webhook_sink.dropped(),
            registration_writes = binding_sink.written(),
            registration_writes_dropped = binding_sink.dropped(),
            registration_writes_failed = binding_sink.failed(),
            "stopped"
        );
        Ok(())
    }

    /// SIGHUP: re-reads the config file; a bad file leaves the running one.
    async fn reload_config(live: &Live, path: Option<&std::path::Path>) {
        match super::resolve_config(path) {
            Ok(new) => {
                let source = new.source.to_string();
                match live.reload_file(new).await {
                    Ok(()) => tracing::info!(
                        source = %source,
                        "SIGHUP: config re-read ({}); new calls use its rates and \
                         settings with the store's trunks and DIDs, calls in progress \
                         keep theirs; listen, upstream, http, store and cluster changes \
                         need a restart",
                        live.current().summary()
                    ),
                    Err(errors) => {
                        for e in &errors.0 {
                            tracing::error!("SIGHUP: {e}");
                        }
                        tracing::error!(
                            "SIGHUP: config rejected with the store's trunks and DIDs; \
                         the running config stays"
                        );
                    }
                }
            }
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!("SIGHUP: {e}");
                }
                tracing::error!("SIGHUP: config rejected; the running config stays");
            }
        }
    }

    /// A fleet store's changes made by other nodes, applied here: the
    /// change feed (`LISTEN`) wakes one task that re-reads the store through
    /// [`Live::refresh_from_store`].
    fn follow_fleet_changes(fleet: &PgStore, live: &Arc<Live>, controller: &ShutdownController) {
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(store::pg::listen_changes(
            fleet.pool().clone(),
            fleet.instance().to_owned(),
            tx,
            controller.subscribe(),
        ));
        let live = live.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // `sipfront key create|delete` on any machine of the fleet.
                control::keys::reload(&live, "fleet store").await;
                match live.refresh_from_store().await {
                    Ok(true) => tracing::info!(
                        "trunks and DIDs changed on another node: applied here ({})",
                        live.current().summary()
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::error!(
                        "trunks and DIDs changed in the store but are not applied here; \
                         the running config stays: {e}"
                    ),
                }
            }
        });
    }

    /// Opens the trunk/DID store (seeding it from the file's `[[trunk]]` and
    /// `[[did]]` the first time) and returns the config with the store's
    /// trunks and DIDs, validated whole, and the fleet store when it is
    /// one (`[store] url`). Blocking work runs off the runtime.
    async fn open_store(
        mut cfg: Config,
    ) -> Result<(Config, Arc<dyn Store>, Option<Arc<PgStore>>), String> {
        let path = cfg.store.path.clone();
        let url = cfg.store.url.clone();
        // Registrations are stored under the node's `[cluster] node` name.
        let node = sipfront::cluster::node_name(&cfg);
        let rt = tokio::runtime::Handle::current();
        let (file_trunks, file_dids) = (cfg.trunk.clone(), cfg.did.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let (s, fleet): (Arc<dyn Store>, _) = match url {
                Some(url) => {
                    let instance = format!("{:016x}", rand::random::<u64>());
                    let pool = store::PgPool::new(&url, rt)?;
                    let pg = Arc::new(PgStore::open(pool, node, instance)?);
                    (pg.clone() as Arc<dyn Store>, Some(pg))
                }
                None => (Arc::new(SqliteStore::open(&path)?) as Arc<dyn Store>, None),
            };
            let (seeded, trunks, dids) = store::seed_if_new(&*s, &file_trunks, &file_dids)?;
            Ok::<_, store::StoreError>((s, fleet, seeded, trunks, dids))
        })
        .await
        .map_err(|e| format!("cannot start: store: {e}"))?;
        let (s, fleet, seeded, trunks, dids) = opened.map_err(|e| format!("cannot start: {e}"))?;
        let shown = match &fleet {
            Some(f) => f.pool().shown().to_owned(),
            None => cfg.store.path.display().to_string(),
        };
        if seeded {
            tracing::info!(
                store = %shown,
                trunks = trunks.len(),
                dids = dids.len(),
                "store seeded from the config file's [[trunk]] and [[did]] entries"
            );
        } else if cfg.trunk != trunks || cfg.did != dids {
            tracing::warn!(
                store = %shown,
                "trunks and DIDs come from the store; the config file's [[trunk]] and [[did]] \
                 entries only seed an empty store"
            );
        }
        cfg.trunk = trunks;
        cfg.did = dids;
        let label = format!("{} (trunks and DIDs from the store)", cfg.source);
        if let Err(errors) = cfg.validate_value(&label) {
            return Err(format!("cannot start: {errors}"));
        }
        Ok((cfg, s, fleet))
    }

    /// The CDR queue's counters, appended to the core's metrics.
    fn cdr_metrics(m: &mut String, cdrs: &CdrSink) {
        use sipfront::endpoint::metric;
        metric(
            m,
            "sipfront_cdrs_written_total",
            "counter",
            "CDRs committed to the store.",
            cdrs.written(),
        );
        metric(
            m,
            "sipfront_cdrs_dropped_total",
            "counter",
            "CDRs lost to a full queue.",
            cdrs.dropped(),
        );
        metric(
            m,
            "sipfront_cdrs_failed_total",
            "counter",
            "CDRs whose write failed.",
            cdrs.failed(),
        );
        metric(
            m,
            "sipfront_cdrs_spilled_total",
            "counter",
            "CDRs put in the spill file while the fleet store was away.",
            cdrs.spilled(),
        );
        metric(
            m,
            "sipfront_cdrs_replayed_total",
            "counter",
            "CDRs replayed from the spill file into the fleet store.",
            cdrs.replayed(),
        );
        metric(
            m,
            "sipfront_cdrs_pending",
            "gauge",
            "CDRs waiting for the fleet store (in memory or in the spill file).",
            cdrs.pending(),
        );
    }

    /// The registration write queue's counters, appended to the core's metrics.
    fn binding_metrics(m: &mut String, sink: &BindingSink) {
        use sipfront::endpoint::metric;
        metric(
            m,
            "sipfront_registration_writes_total",
            "counter",
            "Registration changes (one login each) committed to the store.",
            sink.written(),
        );
        metric(
            m,
            "sipfront_registration_writes_dropped_total",
            "counter",
            "Registration changes lost to a full queue.",
            sink.dropped(),
        );
        metric(
            m,
            "sipfront_registration_writes_failed_total",
            "counter",
            "Registration changes whose store write failed.",
            sink.failed(),
        );
    }

    /// Where the core task hands what its calls produce, without waiting.
    struct Sinks {
        cdrs: CdrSink,
        webhooks: WebhookSink,
        bindings: BindingSink,
        /// rtpengine's ng client, and where its answers for this core go.
        media: sipfront::media::MediaClient,
        media_answers: sipfront::media::ReplyTo,
        /// The fleet (README "Fleets"), and where its verdicts for this
        /// core go.
        cluster: Option<sipfront::cluster::Cluster>,
        fleet_answers: sipfront::cluster::ReplyTo,
        /// `[capture] hep`: a copy of every message in and out.
        capture: Option<sipfront::capture::Tap>,
    }

    /// What the core task listens to besides its timer.
    struct Inputs {
        events: mpsc::Receiver<TransportEvent>,
        /// New configurations (SIGHUP, HTTP API), already validated.
        reloads: mpsc::Receiver<Arc<Config>>,
        /// Questions from the HTTP API (live calls, bans, metrics).
        queries: mpsc::Receiver<control::CoreQuery>,
        /// Start draining; end what is left at this instant.
        drain: mpsc::Receiver<Instant>,
        /// DNS answers for named upstreams (RFC 3263).
        dns: mpsc::Receiver<sipfront::dns::Answer>,
        did_dns: mpsc::Receiver<sipfront::dns::DidAnswer>,
        /// Shard 0's: the DID host names to resolve.
        did_names: Option<tokio::sync::watch::Sender<Vec<sipfront::routing::Resolve>>>,
        /// Shard 0 waits on it; the others notify it after changing the
        /// shared registrar (its timers and store writes).
        nudge: Arc<Notify>,
        /// The media relay's answers to this core's requests.
        media: mpsc::Receiver<sipfront::b2bua::media::MediaResult>,
        /// The fleet's verdicts on this core's channel asks.
        fleet: mpsc::Receiver<sipfront::b2bua::fleet::ChannelAnswer>,
        shutdown: Shutdown,
    }

    /// A core task: the only owner of its endpoint (one shard). Each wake
    /// handles a bounded batch of events (or the timer), drains what the
    /// endpoint wants sent, and re-arms one `Sleep` at `poll_timeout()`
    /// (quinn's `drive_timer`).
    async fn core_loop(
        mut endpoint: Endpoint,
        inputs: Inputs,
        transports: Transports,
        sinks: Sinks,
    ) {
        let Sinks {
            cdrs,
            webhooks,
            bindings,
            media,
            media_answers,
            cluster,
            fleet_answers,
            capture,
        } = sinks;
        let Inputs {
            mut events,
            mut reloads,
            mut queries,
            mut drain,
            mut dns,
            mut did_dns,
            did_names,
            nudge,
            media: mut media_results,
            fleet: mut verdicts,
            mut shutdown,
        } = inputs;
        let owner = endpoint.is_owner();
        let mut drain_until: Option<Instant> = None;
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        // Starts the endpoint's own timers (upstream OPTIONS pings).
        endpoint.handle_timeout(now());
        while let Some(out) = endpoint.poll_transmit() {
            if let Some(tap) = &capture {
                tap.outbound(&out);
            }
            transports.send(out);
        }
        let mut armed = endpoint.poll_timeout().is_some_and(|deadline| {
            sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            true
        });
        let mut stopping = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.recv() => {
                    // Tell every peer and write every CDR before stopping.
                    endpoint.hang_up_all(now());
                    stopping = true;
                }
                Some(cfg) = reloads.recv() => {
                    endpoint.reload(&cfg);
                    if let Some(did_names) = &did_names {
                        let names = sipfront::routing::did_hosts::collect(&cfg.did);
                        did_names.send_if_modified(|n| {
                            let changed = *n != names;
                            *n = names;
                            changed
                        });
                    }
                }
                Some(a) = did_dns.recv() => endpoint.set_did_host_targets(a.name, a.targets, a.error),
                Some(r) = media_results.recv() => endpoint.handle_media(r, now()),
                Some(a) = verdicts.recv() => endpoint.handle_channel_answer(a, now()),
                Some(q) = queries.recv() => match q {
                    control::CoreQuery::Metrics(tx) => {
                        let mut m = endpoint.metrics(now());
                        // The shell's counters once per node (shards' are summed).
                        if owner {
                            cdr_metrics(&mut m, &cdrs);
                            binding_metrics(&mut m, &bindings);
                            webhooks.write_metrics(&mut m);
                            transports.write_metrics(&mut m);
                            media.stats().write_metrics(&mut m);
                            if let Some(tap) = &capture {
                                tap.write_metrics(&mut m);
                            }
                            if let Some(c) = &cluster {
                                c.write_metrics(&mut m);
                            }
                        }
                        let _ = tx.send(m);
                    }
                    q => control::answer(&mut endpoint, q, now()),
                },
                Some(a) = dns.recv() => {
                    transports.learn_upstream(a.index, a.targets.iter().map(|t| t.addr));
                    endpoint.set_upstream_targets(a.index, a.targets, a.error, now());
                }
                Some(until) = drain.recv() => {
                    endpoint.drain();
                    // Unregistered while the sockets still run, so the
                    // registrar's challenge to it can be answered.
                    endpoint.unregister_all(now());
                    drain_until = Some(until);
                }
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    let now = now();
                    if let Some(tap) = &capture {
                        tap.inbound(&ev);
                    }
                    endpoint.handle_event(ev, now);
                    let mut drained = false;
                    for _ in 1..EVENTS_PER_WAKE {
                        match events.try_recv() {
                            Ok(ev) => {
                                if let Some(tap) = &capture {
                                    tap.inbound(&ev);
                                }
                                endpoint.handle_event(ev, now);
                            }
                            Err(_) => {
                                drained = true;
                                break;
                            }
                        }
                    }
                    if timers_due(endpoint.poll_timeout(), now, drained) {
                        endpoint.handle_timeout(now);
                    }
                }
                // After the inputs (`biased`): see `timers_due`.
                _ = &mut sleep, if armed => endpoint.handle_timeout(now()),
                // Another shard changed the registrar: re-read its deadline
                // and writes below.
                _ = nudge.notified(), if owner => {}
            }
            if endpoint.take_owner_nudge() {
                nudge.notify_one();
            }
            if let Some(until) = drain_until {
                // Drained, or out of time: BYE what is left, then stop.
                let idle =
                    endpoint.b2bua().active_calls() == 0 && !endpoint.b2bua().unregistering(now());
                if idle || now() >= until {
                    endpoint.hang_up_all(now());
                    stopping = true;
                }
            }
            while let Some(out) = endpoint.poll_transmit() {
                if let Some(tap) = &capture {
                    tap.outbound(&out);
                }
                transports.send(out);
            }
            while let Some(req) = endpoint.poll_media() {
                media.request(req, &media_answers);
            }
            while let Some(ask) = endpoint.poll_channel_ask() {
                // Only fleet counters confirm, so asks imply a cluster.
                if let Some(c) = &cluster {
                    c.ask(ask, &fleet_answers);
                }
            }
            while let Some(cdr) = endpoint.poll_cdr() {
                sipfront::cdr::log_ended(&cdr);
                // Logged at 1, 2, 4, 8… drops: visible, never a log flood.
                if !cdrs.record(cdr) && cdrs.dropped().is_power_of_two() {
                    tracing::warn!(
                        dropped = cdrs.dropped(),
                        "CDR queue full or store gone: call records are being dropped"
                    );
                }
            }
            let at = now();
            // While the queue is full the logins stay marked in the
            // registrar (bounded by the logins) and go on a later turn; at
            // stop they wait for room, so the store gets the last state.
            while stopping || bindings.has_room() {
                let Some(w) = endpoint.poll_binding_write(at) else {
                    break;
                };
                let queued = if stopping {
                    bindings.write_waiting(w)
                } else {
                    bindings.write(w)
                };
                if !queued && bindings.dropped().is_power_of_two() {
                    tracing::warn!(
                        dropped = bindings.dropped(),
                        "registration writer gone: the store lags behind the registrar"
                    );
                }
            }
            while let Some(ev) = endpoint.poll_call_event() {
                if !webhooks.send(ev) && webhooks.dropped().is_power_of_two() {
                    tracing::warn!(
                        dropped = webhooks.dropped(),
                        "webhook queue full: call-status events are being dropped"
                    );
                }
            }
            if stopping {
                break;
            }
            let mut wake = match (endpoint.poll_timeout(), drain_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if endpoint.pending_binding_writes() > 0 {
                // Logins left marked by a full queue: look again soon.
                let soon = at + BINDING_RETRY;
                wake = Some(wake.map_or(soon, |w| w.min(soon)));
            }
            match wake {
                Some(deadline) => {
                    sleep
                        .as_mut()
                        .reset(tokio::time::Instant::from_std(deadline));
                    armed = true;
                }
                None => armed = false,
            }
        }
        tracing::debug!("core task stopped");
    }

    /// How late a due timer may run while received messages still wait.
    const TIMER_SLACK: Duration = Duration::from_millis(50);

    /// Whether to fire the timers after a batch of received messages.
    /// Messages already received go first: a response waiting in the queue
    /// stops its transaction's retransmission timer (RFC 3261 §17.1.1.2)
    /// instead of racing it. Firing timers first, under load, retransmitted
    /// requests whose answers were queued, and each retransmission drew
    /// another answer: more load, more lateness. Timers never starve: once
    /// `TIMER_SLACK` late they fire between batches however busy the queue.
    fn timers_due(deadline: Option<Instant>, now: Instant, queue_drained: bool) -> bool {
        deadline.is_some_and(|d| {
            d <= now && (queue_drained || now.saturating_duration_since(d) >= TIMER_SLACK)
        })
    }

    /// What a signal asks for.
    enum Signal {
        Stop(&'static str),
        Reload,
    }

    /// SIGTERM/SIGINT stop, SIGHUP reloads.
    struct Signals {
        #[cfg(unix)]
        term: tokio::signal::unix::Signal,
        #[cfg(unix)]
        int: tokio::signal::unix::Signal,
        #[cfg(unix)]
        hup: tokio::signal::unix::Signal,
    }

    impl Signals {
        #[cfg(unix)]
        fn new() -> std::io::Result<Signals> {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }

        #[cfg(not(unix))]
        fn new() -> std::io::Result<Signals> {
            Ok(Signals {})
        }

        #[cfg(unix)]
        async fn next(&mut self) -> Signal {
            tokio::select! {
                _ = self.term.recv() => Signal::Stop("SIGTERM"),
                _ = self.int.recv() => Signal::Stop("SIGINT"),
                _ = self.hup.recv() => Signal::Reload,
            }
        }

        #[cfg(not(unix))]
        async fn next(&mut self) -> Signal {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop("Ctrl-C")
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn received_messages_go_before_timers_that_are_not_too_late() {
            let t0 = Instant::now();
            let ms = Duration::from_millis;
            // Nothing armed, or not due yet: no.
            assert!(!timers_due(None, t0, true));
            assert!(!timers_due(Some(t0 + ms(1)), t0, true));
            // Due and the queue is drained: fire.
            assert!(timers_due(Some(t0), t0, true));
            // Due but messages wait: they go first...
            assert!(!timers_due(Some(t0), t0 + ms(49), false));
            // ...unless the timer is TIMER_SLACK late: no starvation.
            assert!(timers_due(Some(t0), t0 + ms(50), false));
        }
    }
}
