//! Reading an Avro datum straight into a Rust type, guided by the writer's schema.
//!
//! `apache_avro::from_avro_datum` builds a `Value` tree (an allocation per field, a
//! `String` per field name) that `apache_avro::from_value` then walks a second time. This
//! deserializer decodes the binary encoding field by field and hands each value to the
//! type's `Deserialize` impl as it is read, with the same mapping `from_value` uses:
//! records are maps keyed by field name, `["null", T]` unions are options, enums are their
//! symbols, timestamps are longs. It covers the schema features the checked-in schemas use
//! and refuses anything else (named references, fixed, decimals, durations); schema
//! resolution between versions stays with apache-avro, after this reader has checked the
//! datum's structure (`IgnoredAny`), because apache-avro reserves memory by the counts it
//! reads. A test decodes every fact type both ways and compares.

use apache_avro::Schema;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// Why the fast path did not decode a datum (the caller falls back to the general path).
#[derive(Debug)]
pub(crate) struct Unsupported(String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

impl de::Error for Unsupported {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Unsupported(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, Unsupported>;

fn fail<T>(what: &str) -> Result<T> {
    Err(Unsupported(what.to_owned()))
}

/// Decodes one datum written with `schema` into a `T`; the whole input must be used.
pub(crate) fn from_datum<'de, T: serde::Deserialize<'de>>(
    schema: &Schema,
    bytes: &'de [u8],
) -> Result<T> {
    let mut input = Input { bytes };
    let value = T::deserialize(Datum {
        schema,
        input: &mut input,
    })?;
    if !input.bytes.is_empty() {
        return fail("trailing bytes after the datum");
    }
    Ok(value)
}

struct Input<'de> {
    bytes: &'de [u8],
}

impl<'de> Input<'de> {
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if self.bytes.len() < n {
            return fail("truncated datum");
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// A zig-zag varint (Avro `int` and `long`).
    fn long(&mut self) -> Result<i64> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let [b] = self.take(1)? else {
                return fail("truncated varint");
            };
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((n >> 1) as i64) ^ -((n & 1) as i64));
            }
        }
        fail("varint longer than 10 bytes")
    }

    fn int(&mut self) -> Result<i32> {
        i32::try_from(self.long()?).map_err(|_| Unsupported("int out of range".into()))
    }

    fn len(&mut self) -> Result<usize> {
        usize::try_from(self.long()?).map_err(|_| Unsupported("negative length".into()))
    }

    fn bytes(&mut self) -> Result<&'de [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'de str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Unsupported("string is not UTF-8".into()))
    }

    /// The item count of the next block of an array or map (0 at the end); a negative
    /// count is followed by the block's size in bytes, which is not needed here.
    fn block(&mut self) -> Result<usize> {
        let n = self.long()?;
        if n < 0 {
            self.long()?;
        }
        usize::try_from(n.unsigned_abs()).map_err(|_| Unsupported("block too large".into()))
    }
}

struct Datum<'a, 'de> {
    schema: &'a Schema,
    input: &'a mut Input<'de>,
}

impl<'de> Datum<'_, 'de> {
    /// The branch of a union, its index read from the input.
    fn branch<'s>(schema: &'s Schema, input: &mut Input<'de>) -> Result<&'s Schema> {
        let Schema::Union(union) = schema else {
            return fail("not a union");
        };
        let i = usize::try_from(input.long()?)
            .map_err(|_| Unsupported("negative union index".into()))?;
        union
            .variants()
            .get(i)
            .ok_or_else(|| Unsupported("union index out of range".into()))
    }

    fn symbol<'s>(schema: &'s Schema, input: &mut Input<'de>) -> Result<&'s str> {
        let Schema::Enum(e) = schema else {
            return fail("not an enum");
        };
        let i =
            usize::try_from(input.int()?).map_err(|_| Unsupported("negative enum index".into()))?;
        e.symbols
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| Unsupported("enum index out of range".into()))
    }
}

impl<'de> de::Deserializer<'de> for Datum<'_, 'de> {
    type Error = Unsupported;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let input = self.input;
        match self.schema {
            Schema::Null => visitor.visit_unit(),
            Schema::Boolean => match input.take(1)? {
                [0] => visitor.visit_bool(false),
                [1] => visitor.visit_bool(true),
                _ => fail("invalid boolean"),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => visitor.visit_i32(input.int()?),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => visitor.visit_i64(input.long()?),
            Schema::Float => {
                let b = input.take(4)?;
                visitor.visit_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            Schema::Double => {
                let b = input.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                visitor.visit_f64(f64::from_le_bytes(a))
            }
            Schema::Bytes => visitor.visit_borrowed_bytes(input.bytes()?),
            Schema::String | Schema::Uuid => visitor.visit_borrowed_str(input.str()?),
            Schema::Enum(_) => visitor.visit_str(Self::symbol(self.schema, input)?),
            Schema::Union(_) => {
                let branch = Self::branch(self.schema, input)?;
                Datum {
                    schema: branch,
                    input,
                }
                .deserialize_any(visitor)
            }
            Schema::Record(record) => visitor.visit_map(Fields {
                fields: &record.fields,
                next: 0,
                input,
            }),
            Schema::Array(array) => visitor.visit_seq(Items {
                schema: &array.items,
                blocks: Blocks::default(),
                input,
            }),
            Schema::Map(map) => visitor.visit_map(Entries {
                schema: &map.types,
                blocks: Blocks::default(),
                input,
            }),
            _ => fail("schema type without a fast path"),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.schema {
            Schema::Union(_) => {
                let branch = Self::branch(self.schema, self.input)?;
                if matches!(branch, Schema::Null) {
                    visitor.visit_none()
                } else {
                    visitor.visit_some(Datum {
                        schema: branch,
                        input: self.input,
                    })
                }
            }
            Schema::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        // Unit variants by name, from an Avro enum's symbol or a string.
        let symbol: &str = match self.schema {
            Schema::Enum(_) => Self::symbol(self.schema, self.input)?,
            Schema::String => self.input.str()?,
            _ => return fail("enum from a schema type without a fast path"),
        };
        visitor.visit_enum(symbol.into_deserializer())
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // Still read past the value: the encoding has no other way to find the next one.
        self.deserialize_any(de::IgnoredAny)?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// A record's fields, in schema order, as a map keyed by field name.
struct Fields<'a, 'de> {
    fields: &'a [apache_avro::schema::RecordField],
    next: usize,
    input: &'a mut Input<'de>,
}

impl<'de> de::MapAccess<'de> for Fields<'_, 'de> {
    type Error = Unsupported;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(field.name.as_str().into_deserializer())
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let Some(field) = self.fields.get(self.next) else {
            return fail("value without a field");
        };
        self.next += 1;
        seed.deserialize(Datum {
            schema: &field.schema,
            input: self.input,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.fields.len() - self.next)
    }
}

/// Where an array or map is in its blocks of items.
#[derive(Default)]
struct Blocks {
    /// Items left in the current block.
    left: usize,
    /// The empty block that ends the value was read.
    done: bool,
}

impl Blocks {
    /// Moves to the next item: false at the end of the value.
    fn next(&mut self, input: &mut Input<'_>) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        if self.left == 0 {
            self.left = input.block()?;
            if self.left == 0 {
                self.done = true;
                return Ok(false);
            }
            // Every item of Sentinel's schemas takes at least one byte (no arrays or maps
            // of nulls or empty records), so a larger count is corrupt; refusing it bounds
            // the work a hostile count can ask for.
            if self.left > input.bytes.len() {
                return fail("more items in a block than bytes left");
            }
        }
        self.left -= 1;
        Ok(true)
    }
}

/// An array's items, block by block.
struct Items<'a, 'de> {
    schema: &'a Schema,
    blocks: Blocks,
    input: &'a mut Input<'de>,
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
    type Error = Unsupported;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if !self.blocks.next(self.input)? {
            return Ok(None);
        }
        seed.deserialize(Datum {
            schema: self.schema,
            input: self.input,
        })
        .map(Some)
    }
}

/// A map's entries, block by block; keys are strings.
struct Entries<'a, 'de> {
    schema: &'a Schema,
    blocks: Blocks,
    input: &'a mut Input<'de>,
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = Unsupported;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if !self.blocks.next(self.input)? {
            return Ok(None);
        }
        let key = self.input.str()?;
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(Datum {
            schema: self.schema,
            input: self.input,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(json: &str) -> Schema {
        Schema::parse_str(json).expect("schema")
    }

    /// Arrays and maps may come in several blocks, and a block may give its size in
    /// bytes after a negative count (writers other than ours do both).
    #[test]
    fn arrays_and_maps_in_several_blocks() {
        let array = schema(r#"{"type": "array", "items": "long"}"#);
        // Block of 2 (zig-zag 4): 1, 2; block of -1 (zig-zag 1) with its byte size 1
        // (zig-zag 2): 3; the end (0).
        let bytes = [4, 2, 4, 1, 2, 6, 0];
        assert_eq!(
            from_datum::<Vec<i64>>(&array, &bytes).expect("array"),
            [1, 2, 3]
        );
        let map = schema(r#"{"type": "map", "values": "string"}"#);
        // One entry "a" → "x", then another block with "b" → "y", then the end.
        let bytes = [2, 2, b'a', 2, b'x', 2, 2, b'b', 2, b'y', 0];
        let got: std::collections::BTreeMap<String, String> =
            from_datum(&map, &bytes).expect("map");
        assert_eq!(got.get("a").map(String::as_str), Some("x"));
        assert_eq!(got.get("b").map(String::as_str), Some("y"));
        // Without its end marker the array is truncated.
        assert!(from_datum::<Vec<i64>>(&array, &[2, 2]).is_err());
        // A block claiming a billion items in a few bytes is refused before any of them
        // is read, also when only the structure is checked.
        let huge = [0x80, 0xa8, 0xd6, 0xb9, 0x07, 2, 4, 0];
        assert!(from_datum::<Vec<i64>>(&array, &huge).is_err());
        assert!(from_datum::<serde::de::IgnoredAny>(&array, &huge).is_err());
        assert!(from_datum::<serde::de::IgnoredAny>(&array, &[4, 2, 4, 0]).is_ok());
    }

    #[test]
    fn bad_data_is_refused() {
        let union = schema(r#"["null", "string"]"#);
        assert_eq!(
            from_datum::<Option<String>>(&union, &[0]).expect("null"),
            None
        );
        assert_eq!(
            from_datum::<Option<String>>(&union, &[2, 2, b'x']).expect("string"),
            Some("x".to_owned())
        );
        // Branch 2 does not exist; a string that is not UTF-8; a varint that never ends.
        assert!(from_datum::<Option<String>>(&union, &[4]).is_err());
        assert!(from_datum::<String>(&schema(r#""string""#), &[2, 0xff]).is_err());
        assert!(from_datum::<i64>(&schema(r#""long""#), &[0xff; 11]).is_err());
        // Schema types without a fast path are refused (the caller falls back).
        let fixed = schema(r#"{"type": "fixed", "name": "f", "size": 1}"#);
        assert!(from_datum::<Vec<u8>>(&fixed, &[1]).is_err());
    }
}
