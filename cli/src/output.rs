//! How the command prints: a table for people on a terminal, JSON for
//! everything else.

use std::io::IsTerminal;

use clap::ValueEnum;
use serde::Serialize;

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
    /// Comma-separated values, one line a row (`rekey audit` only).
    Csv,
}

impl Format {
    /// `--output`, else a table on a terminal and JSON otherwise.
    pub fn chosen(flag: Option<Format>) -> Format {
        flag.unwrap_or(if std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Json
        })
    }
}

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into())
    );
}

/// `rows` under `headers`, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(headers.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// `rows` under `headers` as CSV (RFC 4180: a cell with a comma, a quote
/// or a line break is quoted, its quotes doubled).
pub fn csv(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |c: &str| {
        if c.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", c.replace('"', "\"\""))
        } else {
            c.to_owned()
        }
    };
    let line = |cells: Vec<&str>| cells.into_iter().map(cell).collect::<Vec<_>>().join(",");
    let mut out = line(headers.to_vec());
    out.push_str("\r\n");
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let rows = vec![vec![
            "a,b".to_owned(),
            "say \"hi\"".to_owned(),
            "plain".to_owned(),
        ]];
        assert_eq!(
            csv(&["X", "Y", "Z"], &rows),
            "X,Y,Z\r\n\"a,b\",\"say \"\"hi\"\"\",plain\r\n"
        );
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = vec![
            vec!["rekey/aws/alice".to_owned(), "AKIA1".to_owned()],
            vec!["b".to_owned(), "".to_owned()],
        ];
        assert_eq!(
            table(&["SECRET", "KEY"], &rows),
            "SECRET           KEY\nrekey/aws/alice  AKIA1\nb"
        );
    }
}
