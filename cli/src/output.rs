//! Rendering results as aligned text tables or JSON.

use clap::ValueEnum;
use serde_json::Value;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with a header row.
    Table,
    /// Pretty-printed JSON.
    Json,
}

impl Format {
    /// Prints `json` in JSON mode, otherwise a table of `headers` and `rows`.
    pub fn emit(self, json: &Value, headers: &[&str], rows: &[Vec<String>]) {
        match self {
            Format::Json => println!("{}", pretty(json)),
            Format::Table => print!("{}", render_table(headers, rows)),
        }
    }

    /// Prints `json` in JSON mode, otherwise each table (headers and rows)
    /// with a blank line between them.
    pub fn emit_tables(self, json: &Value, tables: &[(&[&str], Vec<Vec<String>>)]) {
        match self {
            Format::Json => println!("{}", pretty(json)),
            Format::Table => print!("{}", render_tables(tables)),
        }
    }

    /// Prints `json` in JSON mode, otherwise the plain `message` line.
    pub fn emit_message(self, json: &Value, message: &str) {
        match self {
            Format::Json => println!("{}", pretty(json)),
            Format::Table => println!("{message}"),
        }
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Renders rows under a header as columns separated by two spaces, each
/// line ending in `\n` without trailing blanks.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(cur) => *cur = (*cur).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(&format!("{cell:<w$}", w = widths[i]));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Renders several tables separated by blank lines.
pub fn render_tables(tables: &[(&[&str], Vec<Vec<String>>)]) -> String {
    let rendered: Vec<String> = tables
        .iter()
        .map(|(headers, rows)| render_table(headers, rows))
        .collect();
    rendered.join("\n")
}

/// Milliseconds since the epoch as RFC 3339 UTC, or `-` for zero.
pub fn time(ms: i64) -> String {
    if ms == 0 {
        "-".into()
    } else {
        herald_shared::envelope::rfc3339_ms(ms)
    }
}

/// Parses JSON text into a value, or `null` when empty (for JSON output of
/// fields that hold JSON as text); invalid JSON is kept as a string.
pub fn json_text(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["acme".to_string(), "Acme Corp".to_string()],
            vec!["b".to_string(), String::new()],
        ];
        let t = render_table(&["ID", "NAME"], &rows);
        assert_eq!(t, "ID    NAME\nacme  Acme Corp\nb\n");
    }

    #[test]
    fn table_header_only() {
        assert_eq!(render_table(&["A", "B"], &[]), "A  B\n");
    }

    #[test]
    fn tables_are_separated() {
        let rows = vec![vec!["1".to_string()]];
        let t = render_tables(&[(&["A"], rows.clone()), (&["B"], rows)]);
        assert_eq!(t, "A\n1\n\nB\n1\n");
    }

    #[test]
    fn json_text_values() {
        assert_eq!(json_text(""), Value::Null);
        assert_eq!(json_text(r#"{"a":1}"#)["a"], 1);
        assert_eq!(json_text("nope"), Value::String("nope".into()));
    }
}
