//! The rate table: `prefix,per_minute[,destination name]` CSV, longest prefix wins.
//!
//! Loaded once with the config and kept as an immutable value; errors name
//! `file:line`. Blank lines, `#` comments and a leading `prefix,...` header
//! line are allowed.
//!
//! Lookup walks a decimal trie, one node per digit, so it costs
//! O(digits of the number) whatever the table size, and loading is
//! O(total prefix digits).

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

/// No child / no rate in the trie.
const NONE: u32 = u32::MAX;

/// One trie node: the child per next digit, and the rate ending here.
#[derive(Debug, Clone, Copy)]
struct Node {
    next: [u32; 10],
    rate: u32,
}

const EMPTY: Node = Node {
    next: [NONE; 10],
    rate: NONE,
};

/// Prefix → rate, looked up by longest matching prefix.
#[derive(Debug, Clone, Default)]
pub struct RateTable {
    rates: Vec<Rate>,
    /// Node 0 is the root (empty prefix) once anything is inserted.
    nodes: Vec<Node>,
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
            let rate = Rate {
                prefix: prefix.to_owned(),
                per_minute,
                name: name.to_owned(),
            };
            if !table.insert(rate) {
                errors.push(err("prefix", format!("duplicate prefix `{prefix}`")));
            }
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    /// Adds `rate` under its (all-digit) prefix; false if that prefix
    /// already has a rate (the table is unchanged then).
    fn insert(&mut self, rate: Rate) -> bool {
        if self.nodes.is_empty() {
            self.nodes.push(EMPTY);
        }
        let mut at = 0usize;
        for d in rate.prefix.bytes() {
            let digit = usize::from(d.wrapping_sub(b'0'));
            let new_index = u32::try_from(self.nodes.len()).unwrap_or(NONE);
            let Some(slot) = self.nodes.get_mut(at).and_then(|n| n.next.get_mut(digit)) else {
                return false; // not a digit: parse() has already refused it
            };
            let grow = *slot == NONE;
            if grow {
                *slot = new_index;
            }
            at = *slot as usize;
            if grow {
                self.nodes.push(EMPTY);
            }
        }
        let index = u32::try_from(self.rates.len()).unwrap_or(NONE);
        match self.nodes.get_mut(at) {
            Some(node) if node.rate == NONE => {
                node.rate = index;
                self.rates.push(rate);
                true
            }
            _ => false,
        }
    }

    /// The rate whose prefix is the longest prefix of `number`; the walk
    /// stops at the first non-digit. O(`number.len()`).
    pub fn lookup(&self, number: &str) -> Option<&Rate> {
        let mut node = self.nodes.first()?;
        let mut best = node.rate;
        for d in number.bytes() {
            let Some(&next) = node.next.get(usize::from(d.wrapping_sub(b'0'))) else {
                break;
            };
            let Some(n) = self.nodes.get(next as usize) else {
                break;
            };
            node = n;
            if node.rate != NONE {
                best = node.rate;
            }
        }
        self.rates.get(best as usize)
    }

    /// Number of rates.
    pub fn len(&self) -> usize {
        self.rates.len()
    }

    /// Whether there are no rates.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
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
        assert_eq!(t.lookup("1").unwrap().prefix, "1");
        assert_eq!(t.lookup("121").unwrap().prefix, "1");
        assert_eq!(t.lookup("1212").unwrap().name, "NYC");
        // The walk stops at a non-digit: the digits before it still match.
        assert_eq!(t.lookup("1212x5").unwrap().name, "NYC");
        assert_eq!(t.lookup("+1212").map(|r| r.prefix.as_str()), None);
        assert!(RateTable::default().lookup("1").is_none());
    }

    #[test]
    fn agrees_with_a_linear_scan() {
        let mut text = String::new();
        for p in [
            "1", "12", "123", "1234", "2", "21", "2199", "9", "99999", "0",
        ] {
            text.push_str(&format!("{p},0.{},n{p}\n", p.len()));
        }
        let t = RateTable::parse(&text, "r.csv").unwrap();
        for num in [
            "1", "12", "1239", "12345", "219", "21990", "999", "99999999", "0", "3", "",
        ] {
            let want = t
                .rates
                .iter()
                .filter(|r| num.starts_with(r.prefix.as_str()))
                .max_by_key(|r| r.prefix.len());
            assert_eq!(t.lookup(num), want, "{num}");
        }
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
