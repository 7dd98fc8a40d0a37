//! The rate table: `prefix,per_minute[,destination name]` CSV, longest prefix wins.
//!
//! Loaded once with the config and kept as an immutable value; errors name
//! `file:line`. Blank lines, `#` comments and a leading `prefix,...` header
//! line are allowed.

use std::collections::HashMap;

use super::error::ConfigError;

/// One rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// Dialled-number prefix (digits).
    pub prefix: String,
    /// USD per minute.
    pub per_minute: f64,
    /// Destination name for CDRs; may be empty.
    pub name: String,
}

/// Prefix → rate, looked up by longest matching prefix.
#[derive(Debug, Clone, Default)]
pub struct RateTable {
    by_prefix: HashMap<String, Rate>,
    longest: usize,
}

impl RateTable {
    /// Parses CSV text; `file` is used only in error messages.
    ///
    /// # Errors
    /// Every bad line is reported (`file:LINE`): wrong column count, a prefix
    /// that is not all digits, a negative or non-numeric price, a duplicate prefix.
    pub fn parse(text: &str, file: &str) -> Result<RateTable, Vec<ConfigError>> {
        let mut table = RateTable::default();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |key: &str, message: String| ConfigError {
                file: file.to_owned(),
                line: Some(line_no),
                key: key.to_owned(),
                message,
            };
            let cols: Vec<&str> = line.splitn(3, ',').map(str::trim).collect();
            let (prefix, price, name) = match cols.as_slice() {
                [p, r] => (*p, *r, ""),
                [p, r, n] => (*p, *r, *n),
                _ => {
                    errors.push(err("", "expected `prefix,per_minute[,name]`".to_owned()));
                    continue;
                }
            };
            if table.is_empty() && errors.is_empty() && prefix.eq_ignore_ascii_case("prefix") {
                continue; // header line
            }
            if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                errors.push(err("prefix", format!("`{prefix}` must be digits only")));
                continue;
            }
            let per_minute = match price.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => v,
                _ => {
                    errors.push(err(
                        "per_minute",
                        format!("`{price}` must be a number >= 0"),
                    ));
                    continue;
                }
            };
            if table.by_prefix.contains_key(prefix) {
                errors.push(err("prefix", format!("duplicate prefix `{prefix}`")));
                continue;
            }
            table.longest = table.longest.max(prefix.len());
            table.by_prefix.insert(
                prefix.to_owned(),
                Rate {
                    prefix: prefix.to_owned(),
                    per_minute,
                    name: name.to_owned(),
                },
            );
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    /// The rate whose prefix is the longest prefix of `number`.
    pub fn lookup(&self, number: &str) -> Option<&Rate> {
        let max = self.longest.min(number.len());
        (1..=max)
            .rev()
            .filter_map(|n| number.get(..n))
            .find_map(|p| self.by_prefix.get(p))
    }

    /// Number of rates.
    pub fn len(&self) -> usize {
        self.by_prefix.len()
    }

    /// Whether there are no rates.
    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let t = RateTable::parse(
            "prefix,per_minute,name\n1,0.01,US\n1212,0.02,NYC\n44,0.03\n",
            "r.csv",
        )
        .unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.lookup("12125551234").unwrap().name, "NYC");
        assert_eq!(t.lookup("13105551234").unwrap().prefix, "1");
        assert_eq!(t.lookup("44207").unwrap().per_minute, 0.03);
        assert!(t.lookup("33").is_none());
        assert!(t.lookup("").is_none());
    }

    #[test]
    fn errors_name_lines() {
        let e = RateTable::parse("# c\n1,0.01\n1x,0.2\n2,-1\n3\n1,0.5\n", "r.csv").unwrap_err();
        let s: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(
            s,
            [
                "r.csv:3: prefix: `1x` must be digits only",
                "r.csv:4: per_minute: `-1` must be a number >= 0",
                "r.csv:5: expected `prefix,per_minute[,name]`",
                "r.csv:6: prefix: duplicate prefix `1`",
            ]
        );
    }
}
