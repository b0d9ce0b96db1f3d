//! PostgreSQL `COPY … FROM STDIN` in the text format, for rows appended to a rebuild's
//! fresh tables: the server parses each value with the column type's input function (the
//! same as the `::uuid`, `::timestamptz`, `::jsonb` casts of the batched upserts) and
//! inserts the rows in bulk, with no conflict check per row.

use crate::plan::Param;

/// Bytes per `CopyData` message sent.
pub(crate) const CHUNK: usize = 1 << 20;

/// `COPY <table> (<columns>) FROM STDIN` for the table and column list of an
/// `INSERT INTO <table> (<columns>) …` statement; `None` when `insert` is not one.
pub(crate) fn statement(insert: &str) -> Option<String> {
    let start = insert.find("INSERT INTO ")? + "INSERT INTO ".len();
    let rest = &insert[start..];
    let open = rest.find('(')?;
    let table = rest[..open].trim();
    let close = rest[open..].find(')')? + open;
    let columns: Vec<&str> = rest[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let simple = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    if !simple(table) || columns.is_empty() || !columns.iter().all(|c| simple(c)) {
        return None;
    }
    Some(format!("COPY {table} ({}) FROM STDIN", columns.join(", ")))
}

/// The rows in `COPY`'s text format: values separated by tabs, rows ended by newlines,
/// `\N` for NULL, and backslash, tab, newline and carriage return escaped.
pub(crate) fn encode_text(rows: &[Vec<Param>]) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(rows.len() * 256);
    for row in rows {
        for (i, value) in row.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            // Writing into a Vec cannot fail.
            let _ = match value {
                Param::Text(Some(s)) => {
                    escape(&mut out, s);
                    Ok(())
                }
                Param::Int(Some(n)) => write!(out, "{n}"),
                Param::Float(Some(f)) if f.is_nan() => write!(out, "NaN"),
                Param::Float(Some(f)) if f.is_infinite() => {
                    write!(out, "{}Infinity", if *f < 0.0 { "-" } else { "" })
                }
                // Rust prints the shortest text that reads back as the same double.
                Param::Float(Some(f)) => write!(out, "{f}"),
                Param::Bool(Some(b)) => write!(out, "{}", if *b { 't' } else { 'f' }),
                Param::Text(None) | Param::Int(None) | Param::Float(None) | Param::Bool(None) => {
                    write!(out, "\\N")
                }
            };
        }
        out.push(b'\n');
    }
    out
}

fn escape(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        out.extend_from_slice(escaped);
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_statement_takes_the_insert_column_list() {
        let insert = "INSERT INTO failures (\n    id, tenant,\n    recorded_at)\nSELECT u.id::uuid \
                      FROM UNNEST($1::text[]) AS u(id) ON CONFLICT (id) DO UPDATE SET x = 1";
        assert_eq!(
            statement(insert).as_deref(),
            Some("COPY failures (id, tenant, recorded_at) FROM STDIN")
        );
        assert_eq!(statement("SELECT 1"), None);
        assert_eq!(
            statement("INSERT INTO t (a; DROP TABLE x) VALUES (1)"),
            None
        );
    }

    #[test]
    fn text_format_escapes_and_marks_nulls() {
        let rows = vec![
            vec![
                Param::Text(Some("a\tb\\c\nd\re".into())),
                Param::Int(Some(-7)),
                Param::Float(Some(0.1)),
                Param::Bool(Some(true)),
            ],
            vec![
                Param::Text(None),
                Param::Int(None),
                Param::Float(Some(f64::NEG_INFINITY)),
                Param::Bool(Some(false)),
            ],
        ];
        assert_eq!(
            String::from_utf8(encode_text(&rows)).expect("utf-8"),
            "a\\tb\\\\c\\nd\\re\t-7\t0.1\tt\n\\N\t\\N\t-Infinity\tf\n"
        );
    }
}
