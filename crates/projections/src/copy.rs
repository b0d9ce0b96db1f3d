//! PostgreSQL `COPY … FROM STDIN` for rows appended to a rebuild's fresh tables: the rows
//! are inserted in bulk, with no conflict check per row.
//!
//! The binary format is used where every column has a type [`Column`] covers (all of the
//! projections' today): values go in the types' wire representation, so the server does
//! not parse UUIDs, times and numbers from text (about a third of a text `COPY`'s time).
//! Otherwise — an unknown column type, or a value the binary encoder will not vouch for —
//! the text format, where the server parses each value with the column type's input
//! function (as the `::uuid`, `::timestamptz`, `::jsonb` casts of the batched upserts do).

use chrono::{DateTime, Timelike};

use crate::plan::Param;

/// A row's value, borrowed, as `COPY` writes it (the kinds of [`Param`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Float(Option<f64>),
    Bool(Option<bool>),
}

impl<'a> From<&'a Param> for Value<'a> {
    fn from(p: &'a Param) -> Value<'a> {
        match p {
            Param::Text(v) => Value::Text(v.as_deref()),
            Param::Int(v) => Value::Int(*v),
            Param::Float(v) => Value::Float(*v),
            Param::Bool(v) => Value::Bool(*v),
        }
    }
}

/// A row `COPY` can write without taking it apart: its values, borrowed, in column order.
/// The projection rows ([`crate::rows`]) are written straight from the folded state, so
/// a rebuild keeps them (for the next batch's fold) without copying every one.
pub(crate) trait CopyRow {
    /// The values, in column order.
    fn values(&self) -> impl Iterator<Item = Value<'_>>;
}

impl CopyRow for Vec<Param> {
    fn values(&self) -> impl Iterator<Item = Value<'_>> {
        self.iter().map(Value::from)
    }
}

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

/// The table and the columns of a `COPY <table> (<columns>) FROM STDIN` statement made by
/// [`statement`].
pub(crate) fn table_and_columns(copy: &str) -> Option<(&str, Vec<&str>)> {
    let rest = copy.strip_prefix("COPY ")?;
    let (table, rest) = rest.split_once(" (")?;
    let (columns, _) = rest.split_once(')')?;
    Some((table, columns.split(", ").collect()))
}

/// The rows in `COPY`'s text format: values separated by tabs, rows ended by newlines,
/// `\N` for NULL, and backslash, tab, newline and carriage return escaped.
pub(crate) fn encode_text<R: CopyRow>(rows: &[R]) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(rows.len() * 256);
    for row in rows {
        for (i, value) in row.values().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            // Writing into a Vec cannot fail.
            let _ = match value {
                Value::Text(Some(s)) => {
                    escape(&mut out, s);
                    Ok(())
                }
                Value::Int(Some(n)) => write!(out, "{n}"),
                Value::Float(Some(f)) if f.is_nan() => write!(out, "NaN"),
                Value::Float(Some(f)) if f.is_infinite() => {
                    write!(out, "{}Infinity", if f < 0.0 { "-" } else { "" })
                }
                // Rust prints the shortest text that reads back as the same double.
                Value::Float(Some(f)) => write!(out, "{f}"),
                Value::Bool(Some(b)) => write!(out, "{}", if b { 't' } else { 'f' }),
                Value::Text(None) | Value::Int(None) | Value::Float(None) | Value::Bool(None) => {
                    write!(out, "\\N")
                }
            };
        }
        out.push(b'\n');
    }
    out
}

/// A column type written in `COPY`'s binary format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Column {
    /// `text`, `varchar`: the UTF-8 bytes.
    Text,
    /// `uuid`: 16 bytes.
    Uuid,
    /// `timestamptz`: microseconds since 2000-01-01 UTC, big-endian `i64`.
    Timestamptz,
    /// `jsonb`: version 1, then the JSON text.
    Jsonb,
    /// `json`: the JSON text.
    Json,
    /// `bigint`.
    Int8,
    /// `integer`.
    Int4,
    /// `double precision`.
    Float8,
    /// `boolean`.
    Bool,
}

impl Column {
    /// The column type named `pg_type` (as `format_type` prints it); `None` for a type
    /// written as text only.
    pub(crate) fn of(pg_type: &str) -> Option<Column> {
        Some(match pg_type {
            "text" | "character varying" => Column::Text,
            "uuid" => Column::Uuid,
            "timestamp with time zone" => Column::Timestamptz,
            "jsonb" => Column::Jsonb,
            "json" => Column::Json,
            "bigint" => Column::Int8,
            "integer" => Column::Int4,
            "double precision" => Column::Float8,
            "boolean" => Column::Bool,
            _ => return None,
        })
    }
}

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_UNIX_SECONDS: i64 = 946_684_800;

/// The rows in `COPY`'s binary format for columns of the types `columns`; `None` when a
/// value does not fit its column (wrong kind, out of range, an unparsable UUID or time, a
/// time finer than microseconds), for the caller to send the text format instead, whose
/// parse by the server reports what is wrong.
pub(crate) fn encode_binary<R: CopyRow>(rows: &[R], columns: &[Column]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(19 + rows.len() * 256);
    // Signature, flags (no OIDs), header extension length.
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0_i32.to_be_bytes());
    out.extend_from_slice(&0_i32.to_be_bytes());
    let width = i16::try_from(columns.len()).ok()?;
    for row in rows {
        out.extend_from_slice(&width.to_be_bytes());
        let mut n = 0;
        for value in row.values() {
            field(&mut out, value, *columns.get(n)?)?;
            n += 1;
        }
        if n != columns.len() {
            return None;
        }
    }
    out.extend_from_slice(&(-1_i16).to_be_bytes());
    Some(out)
}

/// Appends one field (length, then bytes; length -1 for NULL).
fn field(out: &mut Vec<u8>, value: Value<'_>, column: Column) -> Option<()> {
    fn sized(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
        out.extend_from_slice(&i32::try_from(bytes.len()).ok()?.to_be_bytes());
        out.extend_from_slice(bytes);
        Some(())
    }
    match (value, column) {
        (Value::Text(None) | Value::Int(None) | Value::Float(None) | Value::Bool(None), _) => {
            out.extend_from_slice(&(-1_i32).to_be_bytes());
            Some(())
        }
        (Value::Text(Some(s)), Column::Text | Column::Json) => sized(out, s.as_bytes()),
        (Value::Text(Some(s)), Column::Jsonb) => {
            out.extend_from_slice(&i32::try_from(s.len() + 1).ok()?.to_be_bytes());
            out.push(1);
            out.extend_from_slice(s.as_bytes());
            Some(())
        }
        (Value::Text(Some(s)), Column::Uuid) => {
            sized(out, uuid::Uuid::try_parse(s).ok()?.as_bytes())
        }
        (Value::Text(Some(s)), Column::Timestamptz) => {
            let t = DateTime::parse_from_rfc3339(s).ok()?;
            if t.nanosecond() % 1_000 != 0 {
                return None;
            }
            let micros = (t.timestamp() - PG_EPOCH_UNIX_SECONDS)
                .checked_mul(1_000_000)?
                .checked_add(i64::from(t.timestamp_subsec_micros()))?;
            sized(out, &micros.to_be_bytes())
        }
        (Value::Int(Some(n)), Column::Int8) => sized(out, &n.to_be_bytes()),
        (Value::Int(Some(n)), Column::Int4) => sized(out, &i32::try_from(n).ok()?.to_be_bytes()),
        (Value::Float(Some(f)), Column::Float8) => sized(out, &f.to_bits().to_be_bytes()),
        (Value::Bool(Some(b)), Column::Bool) => sized(out, &[u8::from(b)]),
        _ => None,
    }
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
        assert_eq!(
            table_and_columns("COPY failures (id, tenant, recorded_at) FROM STDIN"),
            Some(("failures", vec!["id", "tenant", "recorded_at"]))
        );
        assert_eq!(statement("SELECT 1"), None);
        assert_eq!(
            statement("INSERT INTO t (a; DROP TABLE x) VALUES (1)"),
            None
        );
    }

    #[test]
    fn binary_format_writes_each_type_in_its_wire_form() {
        let rows = vec![vec![
            Param::Text(Some("a\tb".into())),
            Param::Text(Some("67e55044-10b1-426f-9247-bb680e5fe0c8".into())),
            Param::Text(Some("2000-01-01T00:00:01.000002Z".into())),
            Param::Text(Some("{\"k\": 1}".into())),
            Param::Int(Some(-2)),
            Param::Int(Some(7)),
            Param::Float(Some(0.5)),
            Param::Bool(Some(true)),
            Param::Text(None),
        ]];
        let columns = [
            Column::Text,
            Column::Uuid,
            Column::Timestamptz,
            Column::Jsonb,
            Column::Int8,
            Column::Int4,
            Column::Float8,
            Column::Bool,
            Column::Uuid,
        ];
        let bytes = encode_binary(&rows, &columns).expect("encodable");
        let mut expected = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        expected.extend_from_slice(&9_i16.to_be_bytes());
        for field in [
            &b"a\tb"[..],
            &[
                0x67, 0xe5, 0x50, 0x44, 0x10, 0xb1, 0x42, 0x6f, 0x92, 0x47, 0xbb, 0x68, 0x0e, 0x5f,
                0xe0, 0xc8,
            ],
            &1_000_002_i64.to_be_bytes(),
            b"\x01{\"k\": 1}",
            &(-2_i64).to_be_bytes(),
            &7_i32.to_be_bytes(),
            &0.5_f64.to_bits().to_be_bytes(),
            &[1],
        ] {
            expected.extend_from_slice(&i32::try_from(field.len()).expect("short").to_be_bytes());
            expected.extend_from_slice(field);
        }
        expected.extend_from_slice(&(-1_i32).to_be_bytes());
        expected.extend_from_slice(&(-1_i16).to_be_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn binary_format_refuses_what_it_cannot_vouch_for() {
        for (value, column) in [
            (Param::Text(Some("not-a-uuid".into())), Column::Uuid),
            (Param::Text(Some("yesterday".into())), Column::Timestamptz),
            // Finer than PostgreSQL keeps: the server rounds, which text COPY leaves to it.
            (
                Param::Text(Some("2024-01-01T00:00:00.0000001Z".into())),
                Column::Timestamptz,
            ),
            (Param::Int(Some(i64::from(i32::MAX) + 1)), Column::Int4),
            (Param::Int(Some(1)), Column::Text),
            (Param::Text(Some("1".into())), Column::Int8),
        ] {
            assert_eq!(
                encode_binary(&[vec![value.clone()]], &[column]),
                None,
                "{value:?} as {column:?}"
            );
        }
        assert_eq!(
            encode_binary(&[Vec::<Param>::new()], &[Column::Text]),
            None,
            "row width"
        );
        assert_eq!(
            encode_binary(
                &[vec![Param::Int(Some(1)), Param::Int(Some(2))]],
                &[Column::Int8]
            ),
            None,
            "a row wider than the columns"
        );
        assert_eq!(Column::of("numeric"), None);
        assert_eq!(
            Column::of("timestamp with time zone"),
            Some(Column::Timestamptz)
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
