//! Configuration errors that point at the file, line and key at fault.
//!
//! Operators fix config files by line number, so every error carries
//! `file:line: key: message`. Line numbers come from spans: the `toml`
//! deserializer reports a byte span for syntax and type errors, and for our
//! own semantic checks we look the key path up in a span-preserving
//! `toml_edit` parse of the same text (see [`SpanIndex`]). The two
//! directions (span → key path, key path → line) share one index.

use std::fmt;
use std::ops::Range;

/// One configuration problem, located as precisely as we can.
///
/// Displayed as `config/sipfront.toml:12: trunk[0].max_channels: expected an
/// integer, found string "10"`; parts that are unknown are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the user named it (or `<embedded>/...` for the built-in copy).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Key path such as `trunk[0].max_channels`; empty for file-level errors.
    pub key: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// All problems found in one load. Semantic validation does not stop at the
/// first error so an operator can fix a file in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A list with one error.
    pub fn one(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One key (or table header) of the document with where it sits.
#[derive(Debug)]
struct Node {
    path: String,
    /// Span of the key itself (or of the `[[table]]` header).
    key: Option<Range<usize>>,
    /// Span of the value (for tables in arrays: the header).
    value: Option<Range<usize>>,
}

/// Key paths of a TOML text with their byte spans, built once per load from a
/// `toml_edit` parse. We chose this over `toml::Spanned<T>` fields because it
/// keeps the schema types plain and locates *any* key, including ones only a
/// later check cares about.
#[derive(Debug, Default)]
pub struct SpanIndex {
    text: String,
    nodes: Vec<Node>,
}

impl SpanIndex {
    /// Indexes `text`. A text that does not parse gives an empty index (the
    /// deserializer reports the syntax error with its own span).
    pub fn new(text: &str) -> Self {
        let mut nodes = Vec::new();
        if let Ok(doc) = toml_edit::ImDocument::parse(text) {
            walk_table(doc.as_table(), "", &mut nodes);
        }
        SpanIndex {
            text: text.to_owned(),
            nodes,
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// Line of `path` (e.g. `trunk[1].name`), or of its nearest ancestor that
    /// appears in the text.
    pub fn line_of_path(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(n) = self.nodes.iter().find(|n| n.path == p) {
                if let Some(s) = n.key.as_ref().or(n.value.as_ref()) {
                    return Some(self.line_of(s.start));
                }
            }
            // Strip the last segment: `a.b[2].c` → `a.b[2]` → `a.b` → `a`.
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// The deepest key path whose key or value span contains `offset`;
    /// failing that, the last table header before it.
    pub fn path_at(&self, offset: usize) -> Option<&str> {
        let contains = |r: &Option<Range<usize>>| {
            r.as_ref()
                .is_some_and(|r| r.start <= offset && offset < r.end.max(r.start + 1))
        };
        let best = self
            .nodes
            .iter()
            .filter(|n| contains(&n.key) || contains(&n.value))
            // Containing nodes are ancestors of each other: the deepest is
            // the most specific.
            .max_by_key(|n| n.path.len());
        if let Some(n) = best {
            return Some(&n.path);
        }
        self.nodes
            .iter()
            .filter_map(|n| n.key.as_ref().map(|k| (k.start, n)))
            .filter(|(start, _)| *start <= offset)
            .max_by_key(|(start, _)| *start)
            .map(|(_, n)| n.path.as_str())
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk_table(t: &toml_edit::Table, prefix: &str, out: &mut Vec<Node>) {
    for (k, _) in t.iter() {
        if let Some((key, item)) = t.get_key_value(k) {
            walk_item(key.span(), item, &join(prefix, k), out);
        }
    }
}

fn walk_item(key: Option<Range<usize>>, item: &toml_edit::Item, path: &str, out: &mut Vec<Node>) {
    match item {
        toml_edit::Item::Table(t) => {
            out.push(Node {
                path: path.to_owned(),
                key: t.span().or(key),
                value: t.span(),
            });
            walk_table(t, path, out);
        }
        toml_edit::Item::ArrayOfTables(a) => {
            out.push(Node {
                path: path.to_owned(),
                key: key.clone(),
                value: a.span(),
            });
            for (i, t) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push(Node {
                    path: p.clone(),
                    key: t.span(),
                    value: t.span(),
                });
                walk_table(t, &p, out);
            }
        }
        toml_edit::Item::Value(v) => walk_value(key, v, path, out),
        toml_edit::Item::None => {}
    }
}

fn walk_value(key: Option<Range<usize>>, v: &toml_edit::Value, path: &str, out: &mut Vec<Node>) {
    out.push(Node {
        path: path.to_owned(),
        key: key.or(v.span()),
        value: v.span(),
    });
    match v {
        toml_edit::Value::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                walk_value(None, e, &format!("{path}[{i}]"), out);
            }
        }
        toml_edit::Value::InlineTable(t) => {
            for (k, _) in t.iter() {
                if let Some((key, item)) = t.get_key_value(k) {
                    walk_item(key.span(), item, &join(path, k), out);
                }
            }
        }
        _ => {}
    }
}

/// Rewrites serde's `invalid type: string "10", expected u32` into the
/// operator-friendly `expected an integer, found string "10"`.
pub(crate) fn friendly(message: &str) -> String {
    let msg = message.trim();
    let Some(rest) = msg
        .strip_prefix("invalid type: ")
        .or_else(|| msg.strip_prefix("invalid value: "))
    else {
        return msg.to_owned();
    };
    let Some((found, expected)) = rest.rsplit_once(", expected ") else {
        return msg.to_owned();
    };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" => "a boolean (true or false)",
        other => other,
    };
    format!("expected {expected}, found {found}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[server]\nrealm = \"x\"\n\n[[trunk]]\nid = 1\n\n[[trunk]]\nid = 2\nmax_channels = \"10\"\n\n[[did]]\nnumber = \"1\"\ndestinations = [ { transport = 5, destination = \"a\" } ]\n";

    #[test]
    fn path_to_line() {
        let ix = SpanIndex::new(DOC);
        assert_eq!(ix.line_of_path("server.realm"), Some(2));
        assert_eq!(ix.line_of_path("trunk[1].max_channels"), Some(9));
        assert_eq!(ix.line_of_path("trunk[1]"), Some(7));
        // Missing key falls back to its table.
        assert_eq!(ix.line_of_path("trunk[1].password"), Some(7));
        assert_eq!(
            ix.line_of_path("did[0].destinations[0].transport"),
            Some(13)
        );
    }

    #[test]
    fn offset_to_path() {
        let ix = SpanIndex::new(DOC);
        let off = DOC.find("\"10\"").unwrap_or(0);
        assert_eq!(ix.path_at(off), Some("trunk[1].max_channels"));
        let off = DOC.find("transport = 5").unwrap_or(0) + 12;
        assert_eq!(ix.path_at(off), Some("did[0].destinations[0].transport"));
    }

    #[test]
    fn friendly_messages() {
        assert_eq!(
            friendly("invalid type: string \"10\", expected u32"),
            "expected an integer, found string \"10\""
        );
        assert_eq!(friendly("unknown field `x`"), "unknown field `x`");
    }

    #[test]
    fn display() {
        let e = ConfigError {
            file: "a.toml".into(),
            line: Some(3),
            key: "trunk[0].id".into(),
            message: "duplicate".into(),
        };
        assert_eq!(e.to_string(), "a.toml:3: trunk[0].id: duplicate");
    }
}
