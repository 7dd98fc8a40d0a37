//! Config keys from the environment, so a container runs without a mounted
//! file (`docker run -e SIPFRONT_PUBLIC_ADDRESS=203.0.113.7 …`).
//!
//! The shell reads the process environment and hands the variables in
//! ([`EnvOverrides::from_vars`]); nothing here reads it. A variable set
//! replaces its key after the file is parsed and before the file's rules
//! are checked, so a value from the environment is held to the same rules,
//! and an error names the variable and the key.

use serde::Deserialize;

use super::error::ConfigError;
use super::schema::{Config, ListenConfig, LogFormat};

/// Every variable read, with the config key it sets.
pub const VARS: &[(&str, &str)] = &[
    ("SIPFRONT_PUBLIC_ADDRESS", "server.public_address"),
    ("SIPFRONT_REALM", "server.realm"),
    ("SIPFRONT_LISTEN", "listen"),
    ("SIPFRONT_HTTP_ADDRESS", "http.address"),
    ("SIPFRONT_STORE_PATH", "store.path"),
    ("SIPFRONT_LOG_FORMAT", "log.format"),
];

/// The prefix of the variables read; others with it are reported unknown.
const PREFIX: &str = "SIPFRONT_";

/// What the environment sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvOverrides {
    /// (variable, config key, value), in [`VARS`] order.
    pub set: Vec<(&'static str, &'static str, String)>,
    /// `SIPFRONT_*` variables that set nothing (a typo?), sorted.
    pub unknown: Vec<String>,
}

/// One value read as the type of its key, through the file's own serde
/// rules (a TOML document `value = "…"`).
#[derive(Deserialize)]
struct One<T> {
    value: T,
}

fn typed<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let doc = format!("value = {}", toml::Value::String(text.to_owned()));
    toml::from_str::<One<T>>(&doc)
        .map(|o| o.value)
        .map_err(|e| super::error::friendly(e.message()))
}

/// `SIPFRONT_LISTEN`: `transport:IP:port` items separated by commas or
/// spaces (`udp:0.0.0.0:5060,tcp:0.0.0.0:5060`), replacing every
/// `[[listen]]`. TLS and wss listeners need certificate files: the file.
fn listen(text: &str) -> Result<Vec<ListenConfig>, String> {
    let items: Vec<&str> = text
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err("no listener: write `transport:IP:port`, e.g. `udp:0.0.0.0:5060`".to_owned());
    }
    items
        .iter()
        .map(|item| {
            let (transport, address) = item
                .split_once(':')
                .ok_or_else(|| format!("`{item}`: write `transport:IP:port`"))?;
            let doc = format!(
                "transport = {}\naddress = {}",
                toml::Value::String(transport.to_owned()),
                toml::Value::String(address.to_owned())
            );
            toml::from_str::<ListenConfig>(&doc)
                .map_err(|e| format!("`{item}`: {}", super::error::friendly(e.message())))
        })
        .collect()
}

impl EnvOverrides {
    /// Picks the known variables out of `vars` (the process environment).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> EnvOverrides {
        let mut out = EnvOverrides::default();
        let mut found: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with(PREFIX))
            .collect();
        found.sort();
        for (var, key) in VARS {
            if let Some((_, v)) = found.iter().find(|(k, _)| k == var) {
                out.set.push((var, key, v.clone()));
            }
        }
        out.unknown = found
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !VARS.iter().any(|(v, _)| v == k))
            .collect();
        out
    }

    /// The variable that set `key`, if one did.
    pub fn var_of(&self, key: &str) -> Option<&'static str> {
        self.set
            .iter()
            .find(|(_, k, _)| *k == key || key.starts_with(&format!("{k}[")))
            .map(|(v, _, _)| *v)
    }

    /// Sets each key in `cfg`; an error per value that is not of its key's
    /// type (the file's rules are checked after, on the whole config).
    pub fn apply(&self, cfg: &mut Config) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (var, key, value) in &self.set {
            let done = match *key {
                "server.public_address" => typed(value).map(|v| cfg.server.public_address = v),
                "server.realm" => typed(value).map(|v| cfg.server.realm = v),
                "listen" => listen(value).map(|v| cfg.listen = v),
                "http.address" => typed(value).map(|v| cfg.http.address = v),
                "store.path" => typed(value).map(|v| cfg.store.path = v),
                "log.format" => typed::<LogFormat>(value).map(|v| cfg.log.format = v),
                _ => Err(format!("no key `{key}`")),
            };
            if let Err(message) = done {
                errors.push(ConfigError {
                    file: format!("environment {var}"),
                    line: None,
                    key: (*key).to_owned(),
                    message,
                });
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSource, ListenTransport};

    fn vars(list: &[(&str, &str)]) -> EnvOverrides {
        EnvOverrides::from_vars(list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn known_variables_set_their_keys_and_others_are_reported() {
        let env = vars(&[
            ("PATH", "/bin"),
            ("SIPFRONT_PUBLIC_ADDRESS", "203.0.113.7"),
            ("SIPFRONT_LISTEN", "udp:0.0.0.0:5060, tcp:0.0.0.0:5061"),
            ("SIPFRONT_HTTP_ADDRESS", "0.0.0.0:8080"),
            ("SIPFRONT_STORE_PATH", "/var/lib/sipfront/data/sipfront.db"),
            ("SIPFRONT_LOG_FORMAT", "json"),
            ("SIPFRONT_PUBLIC_ADRESS", "typo"),
        ]);
        assert_eq!(env.unknown, ["SIPFRONT_PUBLIC_ADRESS"]);
        let cfg = Config::parse_with_env("", ConfigSource::Embedded, &env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.server.public_address, "203.0.113.7");
        assert_eq!(cfg.listen.len(), 2);
        assert_eq!(cfg.listen[0].transport, ListenTransport::Udp);
        assert_eq!(cfg.listen[1].address.to_string(), "0.0.0.0:5061");
        assert_eq!(cfg.http.address.to_string(), "0.0.0.0:8080");
        assert_eq!(
            cfg.store.path,
            std::path::Path::new("/var/lib/sipfront/data/sipfront.db")
        );
        assert_eq!(cfg.log.format, LogFormat::Json);
        assert_eq!(env.var_of("listen[1].address"), Some("SIPFRONT_LISTEN"));
        assert_eq!(env.var_of("server.realm"), None);
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let file = "[server]\npublic_address = \"127.0.0.1\"\nrealm = \"file\"\n";
        let env = vars(&[("SIPFRONT_PUBLIC_ADDRESS", "sip.example.net")]);
        let cfg = Config::parse_with_env(file, ConfigSource::Embedded, &env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.server.public_address, "sip.example.net");
        assert_eq!(cfg.server.realm, "file");
    }

    #[test]
    fn bad_values_name_the_variable_and_the_key() {
        for (var, value, key) in [
            ("SIPFRONT_HTTP_ADDRESS", "nowhere", "http.address"),
            ("SIPFRONT_LISTEN", "sctp:0.0.0.0:5060", "listen"),
            ("SIPFRONT_LISTEN", "0.0.0.0", "listen"),
            ("SIPFRONT_LISTEN", " , ", "listen"),
            ("SIPFRONT_LOG_FORMAT", "xml", "log.format"),
        ] {
            let env = vars(&[(var, value)]);
            let errors = Config::parse_with_env("", ConfigSource::Embedded, &env)
                .err()
                .unwrap_or_else(|| panic!("{var}={value} accepted"));
            let text = errors.to_string();
            assert!(
                text.starts_with(&format!("environment {var}: {key}: ")),
                "{var}={value}: {text}"
            );
        }
    }

    #[test]
    fn a_value_breaking_a_file_rule_is_blamed_on_its_variable() {
        // A TLS listener from the environment has no certificate.
        let env = vars(&[("SIPFRONT_LISTEN", "tls:0.0.0.0:5061")]);
        let text = Config::parse_with_env("", ConfigSource::Embedded, &env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.contains("environment SIPFRONT_LISTEN: listen[0]"),
            "{text}"
        );
    }
}
