//! Configuration: the SPEC §2 TOML file, its rate table, and line-accurate errors.
//!
//! Loading is three steps: deserialize into the plain serde types of
//! [`schema`] (syntax and type errors, located by the `toml` crate's spans),
//! [`validate`](validate::validate) the cross-field rules (located by looking
//! the key path up in a span-preserving `toml_edit` parse, see
//! [`SpanIndex`]), then load the `[rates]` CSV. The result is one immutable
//! [`Config`] value; SIGHUP builds a new one and a bad file never replaces the
//! running one.

mod cluster;
mod dns;
mod env;
mod error;
mod media;
mod rates;
mod schema;
pub mod tls;
mod transport;
mod validate;

use std::path::{Path, PathBuf};

pub use cluster::{check_node_name, check_redis_url, ClusterConfig};
pub use dns::{default_failover_codes, DnsConfig, FailoverCode};
pub use env::{EnvOverrides, VARS as ENV_VARS};
pub use error::{ConfigError, ConfigErrors, SpanIndex};
pub use media::{MediaConfig, MediaMode};
pub use rates::{Rate, RateTable};
pub use schema::{
    ApiKeyConfig, CaptureConfig, Config, ConfigSource, DestinationConfig, DidConfig, HttpConfig,
    IpNet, ListenConfig, ListenTransport, LogConfig, LogFormat, NumberFormat, RatesConfig,
    RegistrarSettings, SecuritySettings, ServerConfig, StoreConfig, SyncConfig, TrunkConfig,
    UpstreamConfig, WebhooksConfig,
};
pub use transport::{TransportSettings, MAX_TRANSPORT_BYTES, MIN_TRANSPORT_BYTES};

pub use validate::check_trunk;

/// The default config path (SPEC §1), relative to the working directory.
pub const DEFAULT_PATH: &str = "config/sipfront.toml";

/// The shipped `config/sipfront.toml`, built in so `sipfront run` works with no files.
pub const EMBEDDED_CONFIG: &str = include_str!("../../../../config/sipfront.toml");

/// The shipped `config/sipfront.toml`'s rate table, used by the embedded
/// config when its `[rates] file` is not on disk.
pub const EMBEDDED_RATES: &str = include_str!("../../../../config/rates.csv");

impl Config {
    /// Reads and validates a config file.
    ///
    /// # Errors
    /// The file cannot be read, does not parse, or fails validation; every
    /// error names the file, line and key.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with_env(path, &EnvOverrides::default())
    }

    /// [`Config::load`] with keys set by the environment (`env`).
    ///
    /// # Errors
    /// As [`Config::load`], and a bad value from the environment.
    pub fn load_with_env(path: &Path, env: &EnvOverrides) -> Result<Config, ConfigErrors> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::one(ConfigError {
                file: name.clone(),
                line: None,
                key: String::new(),
                message: format!("cannot read: {e}"),
            })
        })?;
        Config::parse_with_env(&text, ConfigSource::File(path.to_owned()), env)
    }

    /// The configuration built into the binary.
    ///
    /// # Errors
    /// Only if the shipped file is broken (a test guards against that).
    pub fn default_embedded() -> Result<Config, ConfigErrors> {
        Config::parse(EMBEDDED_CONFIG, ConfigSource::Embedded)
    }

    /// What `sipfront run`/`check` use: `path` if given; else
    /// [`DEFAULT_PATH`] if it exists; else the embedded copy.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn resolve(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        Config::resolve_with_env(path, &EnvOverrides::default())
    }

    /// [`Config::resolve`] with keys set by the environment (`env`, see
    /// [`EnvOverrides`]): what `sipfront run` and `check` use.
    ///
    /// # Errors
    /// As [`Config::load`], and a bad value from the environment.
    pub fn resolve_with_env(
        path: Option<&Path>,
        env: &EnvOverrides,
    ) -> Result<Config, ConfigErrors> {
        match path {
            Some(p) => Config::load_with_env(p, env),
            None if Path::new(DEFAULT_PATH).is_file() => {
                Config::load_with_env(Path::new(DEFAULT_PATH), env)
            }
            None => Config::parse_with_env(EMBEDDED_CONFIG, ConfigSource::Embedded, env),
        }
    }

    /// Parses and validates config text; `source` names it in errors and
    /// decides the embedded rates fallback.
    ///
    /// # Errors
    /// All syntax, type, validation and rate-file errors found.
    pub fn parse(text: &str, source: ConfigSource) -> Result<Config, ConfigErrors> {
        Config::parse_with_env(text, source, &EnvOverrides::default())
    }

    /// [`Config::parse`] with keys set by the environment: they replace the
    /// text's before the rules are checked, and an error about one of them
    /// names its variable instead of a line.
    ///
    /// # Errors
    /// As [`Config::parse`], and a value from the environment that is not
    /// of its key's type.
    pub fn parse_with_env(
        text: &str,
        source: ConfigSource,
        env: &EnvOverrides,
    ) -> Result<Config, ConfigErrors> {
        let file = source.to_string();
        let index = SpanIndex::new(text);
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => (
                    Some(index.line_of(span.start)),
                    index.path_at(span.start).unwrap_or("").to_owned(),
                ),
                None => (None, String::new()),
            };
            ConfigErrors::one(ConfigError {
                file: file.clone(),
                line,
                key,
                message: error::friendly(e.message()),
            })
        })?;
        cfg.source = source;
        let env_errors = env.apply(&mut cfg);
        if !env_errors.is_empty() {
            return Err(ConfigErrors(env_errors));
        }
        let mut errors = validate::validate(&mut cfg, &file, &index)
            .err()
            .unwrap_or_default();
        for e in &mut errors {
            if let Some(var) = env.var_of(&e.key) {
                e.file = format!("environment {var}");
                e.line = None;
            }
        }
        if let Some(rates) = &cfg.rates {
            match load_rates(&rates.file, &cfg.source) {
                Ok(t) => cfg.rate_table = t,
                Err(RatesError::Read(msg)) => errors.push(ConfigError {
                    file: file.clone(),
                    line: index.line_of_path("rates.file"),
                    key: "rates.file".to_owned(),
                    message: msg,
                }),
                Err(RatesError::Parse(list)) => errors.extend(list),
            }
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Checks a configuration built in memory (by the HTTP API, or by
    /// merging the store into a file's config) with the same rules as a
    /// file, and resolves omitted trunk ids and logins as loading does.
    /// Errors carry key paths (`trunk[2].name`) but no lines; `label` names
    /// the origin in them.
    ///
    /// # Errors
    /// Every rule broken.
    pub fn validate_value(&mut self, label: &str) -> Result<(), ConfigErrors> {
        validate::validate(self, label, &SpanIndex::new("")).map_err(ConfigErrors)
    }

    /// A one-line summary for the startup log.
    pub fn summary(&self) -> String {
        let listen: Vec<String> = self
            .listen
            .iter()
            .map(|l| format!("{}:{}", l.transport, l.address))
            .collect();
        format!(
            "listen [{}], http {}, {} trunks, {} DIDs, {} upstreams, {} rates",
            listen.join(", "),
            self.http.address,
            self.trunk.len(),
            self.did.len(),
            self.upstream.len(),
            self.rate_table.len()
        )
    }
}

enum RatesError {
    Read(String),
    Parse(Vec<ConfigError>),
}

fn load_rates(path: &PathBuf, source: &ConfigSource) -> Result<RateTable, RatesError> {
    match std::fs::read_to_string(path) {
        Ok(text) => RateTable::parse(&text, &path.display().to_string()).map_err(RatesError::Parse),
        Err(_) if *source == ConfigSource::Embedded => {
            RateTable::parse(EMBEDDED_RATES, "<embedded>/config/rates.csv")
                .map_err(RatesError::Parse)
        }
        Err(e) => Err(RatesError::Read(format!(
            "cannot read rates file `{}`: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests;
