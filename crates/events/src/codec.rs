//! Encodings of [`Event`]s.
//!
//! * **Avro single-object encoding** (default on Kafka without a registry, and in the
//!   embedded log): `C3 01`, the 8-byte CRC-64-AVRO fingerprint of the envelope schema,
//!   then the envelope datum. Self-describing: no registry needed.
//! * **Confluent wire format** (with a schema registry): `00`, the registry's 4-byte
//!   big-endian schema id of the envelope schema, then the envelope datum.
//! * **JSON** for exports, debugging and CI systems that cannot speak Avro.
//!
//! The envelope's `payload` is the fact's Avro datum written with
//! `schemas/facts/<event_type>.v<schema_version>.avsc`. Decoding resolves an older writer
//! version against the current reader schema (Avro schema resolution), so facts written
//! under an older schema keep decoding after a compatible change.

use std::collections::HashMap;
use std::sync::LazyLock;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::{Schema, from_avro_datum, to_avro_datum};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Event, Fact, Result, facts::SCHEMA_SOURCES};

/// The envelope schema's source.
pub const ENVELOPE_SCHEMA: &str = include_str!("../../../schemas/envelope.v1.avsc");

/// Magic bytes of Avro single-object encoding.
const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
/// Magic byte of the Confluent wire format.
const CONFLUENT_MAGIC: u8 = 0x00;

struct Schemas {
    envelope: Schema,
    envelope_header: Vec<u8>,
    /// event_type → version → schema.
    facts: HashMap<&'static str, HashMap<i32, Schema>>,
    /// event_type → newest version.
    current: HashMap<&'static str, i32>,
}

static SCHEMAS: LazyLock<std::result::Result<Schemas, String>> = LazyLock::new(|| {
    let envelope = Schema::parse_str(ENVELOPE_SCHEMA).map_err(|e| format!("envelope: {e}"))?;
    let envelope_header = RabinFingerprintHeader::from_schema(&envelope).build_header();
    let mut facts = HashMap::new();
    let mut current: HashMap<&'static str, i32> = HashMap::new();
    for (ty, version, src) in SCHEMA_SOURCES {
        let schema = Schema::parse_str(src).map_err(|e| format!("{ty}.v{version}: {e}"))?;
        facts
            .entry(*ty)
            .or_insert_with(HashMap::new)
            .insert(*version, schema);
        let v = current.entry(ty).or_insert(*version);
        *v = (*v).max(*version);
    }
    Ok(Schemas {
        envelope,
        envelope_header,
        facts,
        current,
    })
});

fn schemas() -> Result<&'static Schemas> {
    SCHEMAS.as_ref().map_err(|e| Error::Schema(e.clone()))
}

/// The schema of a fact type at a version.
///
/// # Errors
///
/// [`Error::UnknownEventType`] when there is no such schema.
pub fn fact_schema(event_type: &str, version: i32) -> Result<&'static Schema> {
    schemas()?
        .facts
        .get(event_type)
        .and_then(|versions| versions.get(&version))
        .ok_or_else(|| Error::UnknownEventType(format!("{event_type} v{version}")))
}

/// The newest schema version of a fact type.
///
/// # Errors
///
/// [`Error::UnknownEventType`] for an unknown type.
pub fn current_version(event_type: &str) -> Result<i32> {
    schemas()?
        .current
        .get(event_type)
        .copied()
        .ok_or_else(|| Error::UnknownEventType(event_type.to_owned()))
}

/// The envelope schema.
///
/// # Errors
///
/// Only if the checked-in schema does not parse (a build defect the tests catch).
pub fn envelope_schema() -> Result<&'static Schema> {
    Ok(&schemas()?.envelope)
}

/// Encodes a fact's payload with the current schema of its type (Avro binary, no header).
///
/// # Errors
///
/// When the fact does not match its schema.
pub fn encode_fact(fact: &Fact) -> Result<(i32, Vec<u8>)> {
    let version = current_version(fact.event_type())?;
    let schema = fact_schema(fact.event_type(), version)?;
    // The direct serializer is several times cheaper than building a `Value`, resolving
    // and validating it (each of which rebuilds the schema's name table); the tests prove
    // both give the same bytes for every fact type. Whatever it refuses takes the general
    // path, which reports the real error.
    if let Ok(bytes) = fact.write_avro_datum(schema) {
        return Ok((version, bytes));
    }
    encode_fact_resolved(fact, schema).map(|bytes| (version, bytes))
}

/// The general encoding: Rust value → Avro `Value`, resolved against the schema, validated.
fn encode_fact_resolved(fact: &Fact, schema: &Schema) -> Result<Vec<u8>> {
    let value = fact.to_avro_value()?.resolve(schema)?;
    Ok(to_avro_datum(schema, value)?)
}

/// Decodes a fact's payload written with `version` of its type's schema, resolving it
/// against the current version.
///
/// # Errors
///
/// Unknown type or version, or bytes that do not match the schema.
pub fn decode_fact(event_type: &str, version: i32, mut bytes: &[u8]) -> Result<Fact> {
    let writer = fact_schema(event_type, version)?;
    let current = current_version(event_type)?;
    // Written with the current schema: read straight into the Rust type (a test proves
    // this covers every fact type's schema).
    if current == version {
        return Fact::from_avro_datum_direct(event_type, writer, bytes)
            .map_err(|e| Error::Invalid(format!("{event_type} v{version}: {e}")));
    }
    // An older writer schema is resolved by apache-avro's general decoder, which reserves
    // memory by the item counts it reads: untrusted bytes could ask for tens of GB (found
    // by fuzzing). The structure is checked first without allocating, so only counts the
    // datum really holds reach it.
    crate::avro_de::from_datum::<serde::de::IgnoredAny>(writer, bytes)
        .map_err(|e| Error::Invalid(format!("{event_type} v{version}: {e}")))?;
    let reader = (current != version)
        .then(|| fact_schema(event_type, current))
        .transpose()?;
    let value = from_avro_datum(writer, &mut bytes, reader)?;
    Fact::from_avro_value(event_type, &value)
}

#[derive(Serialize, Deserialize)]
struct EnvelopeWire {
    event_id: String,
    event_type: String,
    schema_version: i32,
    occurred_at: i64,
    recorded_at: i64,
    tenant: String,
    subject: String,
    correlation_id: String,
    causation_id: Option<String>,
    producer: String,
    #[serde(with = "apache_avro::serde_avro_bytes")]
    payload: Vec<u8>,
}

fn envelope_datum(event: &Event) -> Result<Vec<u8>> {
    let (schema_version, payload) = encode_fact(&event.fact)?;
    let wire = EnvelopeWire {
        event_id: event.event_id.to_string(),
        event_type: event.event_type().to_owned(),
        schema_version,
        occurred_at: event.occurred_at.timestamp_micros(),
        recorded_at: event.recorded_at.timestamp_micros(),
        tenant: event.tenant.clone(),
        subject: event.subject.clone(),
        correlation_id: event.correlation_id.to_string(),
        causation_id: event.causation_id.map(|u| u.to_string()),
        producer: event.producer.clone(),
        payload,
    };
    let schema = envelope_schema()?;
    let mut out = Vec::with_capacity(wire.payload.len() + 192);
    if apache_avro::write_avro_datum_ref(schema, &wire, &mut out).is_ok() {
        return Ok(out);
    }
    let value = apache_avro::to_value(&wire)?.resolve(schema)?;
    Ok(to_avro_datum(schema, value)?)
}

fn parse_uuid(field: &'static str, s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| Error::Invalid(format!("{field}: {e}")))
}

fn micros(field: &'static str, v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| Error::Invalid(format!("{field}: {v}")))
}

fn from_envelope_datum(bytes: &[u8]) -> Result<Event> {
    let schema = envelope_schema()?;
    // Straight into the wire struct (no `Value` tree; see `avro_de`).
    let wire: EnvelopeWire = crate::avro_de::from_datum(schema, bytes)
        .map_err(|e| Error::Invalid(format!("envelope: {e}")))?;
    let fact = decode_fact(&wire.event_type, wire.schema_version, &wire.payload)?;
    Ok(Event {
        event_id: parse_uuid("event_id", &wire.event_id)?,
        occurred_at: micros("occurred_at", wire.occurred_at)?,
        recorded_at: micros("recorded_at", wire.recorded_at)?,
        tenant: wire.tenant,
        subject: wire.subject,
        correlation_id: parse_uuid("correlation_id", &wire.correlation_id)?,
        causation_id: wire
            .causation_id
            .map(|c| parse_uuid("causation_id", &c))
            .transpose()?,
        producer: wire.producer,
        fact,
    })
}

/// Encodes an event with Avro single-object encoding.
///
/// # Errors
///
/// When the fact does not match its schema (a defect).
pub fn to_single_object(event: &Event) -> Result<Vec<u8>> {
    let header = &schemas()?.envelope_header;
    let datum = envelope_datum(event)?;
    let mut out = Vec::with_capacity(header.len() + datum.len());
    out.extend_from_slice(header);
    out.extend_from_slice(&datum);
    Ok(out)
}

/// Encodes an event in the Confluent wire format with the registry's id of the envelope
/// schema.
///
/// # Errors
///
/// When the fact does not match its schema (a defect).
pub fn to_confluent(event: &Event, envelope_schema_id: u32) -> Result<Vec<u8>> {
    let datum = envelope_datum(event)?;
    let mut out = Vec::with_capacity(5 + datum.len());
    out.push(CONFLUENT_MAGIC);
    out.extend_from_slice(&envelope_schema_id.to_be_bytes());
    out.extend_from_slice(&datum);
    Ok(out)
}

/// Decodes any of the three encodings, telling them apart by their first bytes.
/// `confluent_envelope_id` is the registry id the envelope schema is known under, when a
/// registry is in use; a Confluent record with another id is rejected.
///
/// # Errors
///
/// [`Error::Invalid`] for unknown framing or a foreign fingerprint / schema id; Avro or
/// JSON errors for a corrupt body.
pub fn decode(bytes: &[u8], confluent_envelope_id: Option<u32>) -> Result<Event> {
    match bytes {
        [0xC3, 0x01, rest @ ..] => {
            let header = &schemas()?.envelope_header;
            let fingerprint = rest
                .get(..8)
                .ok_or_else(|| Error::Invalid("truncated".into()))?;
            if fingerprint != &header[2..] {
                return Err(Error::Invalid(format!(
                    "unknown schema fingerprint {}",
                    hex(fingerprint)
                )));
            }
            from_envelope_datum(&rest[8..])
        }
        [CONFLUENT_MAGIC, a, b, c, d, rest @ ..] => {
            let id = u32::from_be_bytes([*a, *b, *c, *d]);
            match confluent_envelope_id {
                Some(expected) if expected == id => from_envelope_datum(rest),
                _ => Err(Error::Invalid(format!("unknown Confluent schema id {id}"))),
            }
        }
        [first, ..] if first.is_ascii_whitespace() || *first == b'{' => {
            from_json(&serde_json::from_slice(bytes)?)
        }
        _ => Err(Error::Invalid(format!(
            "not an event: unknown framing {:?}",
            bytes.get(..2).unwrap_or(bytes)
        ))),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether these bytes start with the single-object marker.
pub fn is_single_object(bytes: &[u8]) -> bool {
    bytes.starts_with(&SINGLE_OBJECT_MARKER)
}

/// The JSON form of an event: envelope fields with RFC 3339 timestamps and the fact under
/// `"fact"`.
#[derive(Debug, Serialize, Deserialize)]
struct JsonEvent {
    event_id: Uuid,
    event_type: String,
    #[serde(default = "one")]
    schema_version: i32,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    tenant: String,
    subject: String,
    correlation_id: Uuid,
    #[serde(default)]
    causation_id: Option<Uuid>,
    producer: String,
    fact: serde_json::Value,
}

fn one() -> i32 {
    1
}

/// The event as JSON.
///
/// # Errors
///
/// Only if the fact cannot be represented as JSON (a defect).
pub fn to_json(event: &Event) -> Result<serde_json::Value> {
    let j = serde_json::json!({
        "event_id": event.event_id,
        "event_type": event.event_type(),
        "schema_version": current_version(event.event_type())?,
        "occurred_at": event.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "recorded_at": event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "tenant": event.tenant,
        "subject": event.subject,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "producer": event.producer,
        "fact": event.fact.to_json()?,
    });
    Ok(j)
}

/// Parses the JSON form of an event.
///
/// # Errors
///
/// Missing or mistyped envelope fields, an unknown `event_type`, or a fact that does not
/// match its type.
pub fn from_json(value: &serde_json::Value) -> Result<Event> {
    let j: JsonEvent = serde_json::from_value(value.clone())?;
    Ok(Event {
        event_id: j.event_id,
        occurred_at: j.occurred_at,
        recorded_at: j.recorded_at,
        tenant: j.tenant,
        subject: j.subject,
        correlation_id: j.correlation_id,
        causation_id: j.causation_id,
        producer: j.producer,
        fact: Fact::from_json(&j.event_type, j.fact)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::schema::{RecordSchema, UnionSchema};
    use apache_avro::types::Value;
    use chrono::TimeZone;

    /// A deterministic sample value for a schema: every field filled, unions take their
    /// non-null branch, arrays and maps hold one element.
    fn sample(schema: &Schema, name: &str) -> Value {
        match schema {
            Schema::Null => Value::Null,
            Schema::Boolean => Value::Boolean(true),
            Schema::Int => Value::Int(7),
            Schema::Long => Value::Long(42),
            Schema::Double => Value::Double(0.75),
            Schema::Bytes => Value::Bytes(vec![0, 159, 146, 150]),
            Schema::String => Value::String(format!("s-{name}-ü")),
            Schema::TimestampMicros => Value::TimestampMicros(1_700_000_000_000_000),
            Schema::Array(a) => Value::Array(vec![sample(&a.items, name)]),
            Schema::Map(m) => Value::Map([("k".to_owned(), sample(&m.types, name))].into()),
            Schema::Enum(e) => Value::Enum(1, e.symbols[1].clone()),
            Schema::Union(u) => {
                let (i, s) = non_null(u);
                Value::Union(i, Box::new(sample(s, name)))
            }
            Schema::Record(RecordSchema { fields, .. }) => Value::Record(
                fields
                    .iter()
                    .map(|f| (f.name.clone(), sample(&f.schema, &f.name)))
                    .collect(),
            ),
            other => panic!("no sample for {other:?}"),
        }
    }

    fn non_null(u: &UnionSchema) -> (u32, &Schema) {
        let (i, s) = u
            .variants()
            .iter()
            .enumerate()
            .find(|(_, s)| !matches!(s, Schema::Null))
            .expect("union with a non-null branch");
        (u32::try_from(i).expect("small union"), s)
    }

    fn all_samples() -> Vec<Fact> {
        SCHEMA_SOURCES
            .iter()
            .map(|(ty, v, _)| {
                let schema = fact_schema(ty, *v).expect("schema");
                Fact::from_avro_value(ty, &sample(schema, ty)).unwrap_or_else(|e| {
                    panic!("{ty}: sample does not decode into the Rust type: {e}")
                })
            })
            .collect()
    }

    fn sample_event(fact: Fact) -> Event {
        Event {
            event_id: Uuid::from_u128(1),
            occurred_at: Utc
                .timestamp_micros(1_700_000_000_123_456)
                .single()
                .expect("ts"),
            recorded_at: Utc
                .timestamp_micros(1_700_000_001_000_000)
                .single()
                .expect("ts"),
            tenant: "acme".into(),
            subject: "/srv/repos/app".into(),
            correlation_id: Uuid::from_u128(2),
            causation_id: Some(Uuid::from_u128(3)),
            producer: "test@0".into(),
            fact,
        }
    }

    #[test]
    fn every_schema_file_is_registered_and_every_type_has_a_schema() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/facts");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("schemas/facts")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".avsc"))
            .collect();
        files.sort();
        let mut registered: Vec<String> = SCHEMA_SOURCES
            .iter()
            .map(|(t, v, _)| format!("{t}.v{v}.avsc"))
            .collect();
        registered.sort();
        assert_eq!(files, registered);
        assert_eq!(Fact::TYPES.len(), SCHEMA_SOURCES.len());
        for ty in Fact::TYPES {
            current_version(ty).expect("every type has a schema");
        }
    }

    /// Like [`sample`], but every union takes its null branch where it has one.
    fn sample_nulls(schema: &Schema, name: &str) -> Value {
        match schema {
            Schema::Union(u) => match u.variants().iter().position(|s| matches!(s, Schema::Null)) {
                Some(i) => Value::Union(
                    u32::try_from(i).expect("small union"),
                    Box::new(Value::Null),
                ),
                None => sample(schema, name),
            },
            Schema::Record(RecordSchema { fields, .. }) => Value::Record(
                fields
                    .iter()
                    .map(|f| (f.name.clone(), sample_nulls(&f.schema, &f.name)))
                    .collect(),
            ),
            other => sample(other, name),
        }
    }

    /// The direct serializer `encode_fact` uses first agrees byte for byte with the general
    /// path (Value → resolve → validate → encode) on every fact type, with every optional
    /// field set and with every optional field empty; so does the envelope's.
    #[test]
    fn direct_avro_serialisation_matches_the_resolved_encoding() {
        for (ty, v, _) in SCHEMA_SOURCES {
            let schema = fact_schema(ty, *v).expect("schema");
            for value in [sample(schema, ty), sample_nulls(schema, ty)] {
                let fact = Fact::from_avro_value(ty, &value).expect("decode sample");
                let direct = fact
                    .write_avro_datum(schema)
                    .unwrap_or_else(|e| panic!("{ty}: direct serialisation failed: {e}"));
                let resolved = encode_fact_resolved(&fact, schema).expect("general path");
                assert_eq!(direct, resolved, "{ty}");
            }
        }
        for causation_id in [Some(Uuid::from_u128(3)), None] {
            let event = Event {
                causation_id,
                ..sample_event(all_samples().remove(0))
            };
            let (schema_version, payload) = encode_fact(&event.fact).expect("fact");
            let wire = EnvelopeWire {
                event_id: event.event_id.to_string(),
                event_type: event.event_type().to_owned(),
                schema_version,
                occurred_at: event.occurred_at.timestamp_micros(),
                recorded_at: event.recorded_at.timestamp_micros(),
                tenant: event.tenant.clone(),
                subject: event.subject.clone(),
                correlation_id: event.correlation_id.to_string(),
                causation_id: event.causation_id.map(|u| u.to_string()),
                producer: event.producer.clone(),
                payload,
            };
            let schema = envelope_schema().expect("envelope");
            let mut direct = Vec::new();
            apache_avro::write_avro_datum_ref(schema, &wire, &mut direct).expect("direct");
            let value = apache_avro::to_value(&wire)
                .expect("value")
                .resolve(schema)
                .expect("resolve");
            assert_eq!(direct, to_avro_datum(schema, value).expect("resolved"));
            assert_eq!(envelope_datum(&event).expect("envelope"), direct);
        }
    }

    /// The direct decoder `decode_fact` uses first gives the same fact as the general path
    /// (`Value` tree, then `from_value`) for every fact type, with every optional field set
    /// and with every optional field empty, and is not silently falling back; so does the
    /// envelope's. Truncated or padded data is refused by both.
    #[test]
    fn direct_avro_decoding_matches_the_general_path() {
        for (ty, v, _) in SCHEMA_SOURCES {
            let schema = fact_schema(ty, *v).expect("schema");
            for value in [sample(schema, ty), sample_nulls(schema, ty)] {
                let bytes = to_avro_datum(schema, value.clone()).expect("encode sample");
                let general = Fact::from_avro_value(ty, &value).expect("general path");
                let direct = Fact::from_avro_datum_direct(ty, schema, &bytes)
                    .unwrap_or_else(|e| panic!("{ty}: direct decoding refused: {e}"));
                assert_eq!(direct, general, "{ty}");
                let truncated = &bytes[..bytes.len() - 1];
                assert!(
                    Fact::from_avro_datum_direct(ty, schema, truncated).is_err(),
                    "{ty}"
                );
                let mut padded = bytes.clone();
                padded.push(0);
                assert!(
                    Fact::from_avro_datum_direct(ty, schema, &padded).is_err(),
                    "{ty}"
                );
            }
        }
        for causation_id in [Some(Uuid::from_u128(3)), None] {
            let event = Event {
                causation_id,
                ..sample_event(all_samples().remove(0))
            };
            let datum = envelope_datum(&event).expect("envelope");
            let schema = envelope_schema().expect("envelope");
            let direct: EnvelopeWire =
                crate::avro_de::from_datum(schema, &datum).expect("direct envelope");
            assert_eq!(direct.causation_id, causation_id.map(|u| u.to_string()));
            assert_eq!(direct.occurred_at, event.occurred_at.timestamp_micros());
            assert_eq!(from_envelope_datum(&datum).expect("decode"), event);
        }
    }

    #[test]
    fn every_fact_type_round_trips_through_its_avsc() {
        for (ty, v, _) in SCHEMA_SOURCES {
            let schema = fact_schema(ty, *v).expect("schema");
            let value = sample(schema, ty);
            let fact = Fact::from_avro_value(ty, &value).expect("decode sample");
            assert_eq!(fact.event_type(), *ty);
            // Rust → Avro must give exactly the sample's bytes, and back.
            let (version, bytes) = encode_fact(&fact).expect("encode");
            assert_eq!(version, *v);
            let expected = to_avro_datum(schema, value.clone()).expect("sample datum");
            assert_eq!(bytes, expected, "{ty}: Rust type and .avsc disagree");
            assert_eq!(decode_fact(ty, *v, &bytes).expect("decode"), fact, "{ty}");
        }
    }

    #[test]
    fn events_round_trip_in_every_encoding() {
        for fact in all_samples() {
            let e = sample_event(fact);
            let so = to_single_object(&e).expect("single object");
            assert!(is_single_object(&so));
            assert_eq!(decode(&so, None).expect("decode so"), e);
            let cf = to_confluent(&e, 17).expect("confluent");
            assert_eq!(&cf[..5], &[0, 0, 0, 0, 17]);
            assert_eq!(decode(&cf, Some(17)).expect("decode cf"), e);
            assert!(
                decode(&cf, Some(18)).is_err(),
                "foreign schema id must be refused"
            );
            let json = serde_json::to_vec(&to_json(&e).expect("json")).expect("bytes");
            assert_eq!(decode(&json, None).expect("decode json"), e);
        }
    }

    #[test]
    fn single_object_header_is_the_rabin_fingerprint_of_the_envelope() {
        let schema = envelope_schema().expect("envelope");
        let fp = schema.fingerprint::<apache_avro::rabin::Rabin>();
        let e = sample_event(all_samples().remove(0));
        let so = to_single_object(&e).expect("encode");
        assert_eq!(&so[..2], &[0xC3, 0x01]);
        assert_eq!(&so[2..10], &fp.bytes[..]);
    }

    #[test]
    fn garbage_is_refused_with_a_clear_error() {
        assert!(matches!(decode(b"", None), Err(Error::Invalid(_))));
        assert!(matches!(
            decode(&[0xC3, 0x01, 1, 2], None),
            Err(Error::Invalid(_))
        ));
        assert!(decode(&[0xC3, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 5], None).is_err());
        assert!(decode(b"{\"event_type\": \"nope\"}", None).is_err());
        let e = sample_event(all_samples().remove(0));
        let mut so = to_single_object(&e).expect("encode");
        so.truncate(so.len() - 3);
        assert!(decode(&so, None).is_err(), "truncated body must not decode");
    }

    /// A record found by fuzzing (`fuzz/`, target `event_decode`): as a fact payload it
    /// declared an array of about 500 million items, for which apache-avro's general
    /// decoder reserved 30 GB and aborted the process. Every fact type now refuses it.
    #[test]
    fn huge_declared_counts_are_refused_without_allocating() {
        let crash: &[u8] = &[
            0xf8, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff,
            0x03, 0x36, 0x31, 0x32, 0x2d, 0x35, 0x36, 0x34, 0x39, 0x37, 0x37, 0x33, 0x66, 0x35,
            0x20, 0x00, 0x36, 0x34, 0x36, 0x22, 0x2c, 0x22, 0x63, 0x6f, 0x72, 0x72, 0x65, 0x6c,
            0x61, 0x74, 0x69, 0x6f, 0x6e, 0x5f, 0x69, 0x64, 0x22, 0x3a, 0x72, 0x72, 0x65, 0x6c,
            0x61, 0x74, 0x69, 0x6f, 0x6e, 0x5f, 0x69, 0x00,
        ];
        assert!(decode(crash, Some(7)).is_err());
        for ty in Fact::TYPES {
            for payload in [crash, &crash[1..]] {
                assert!(decode_fact(ty, 1, payload).is_err(), "{ty}");
            }
        }
    }

    #[test]
    fn caused_ids_are_deterministic_and_chain() {
        let origin = sample_event(all_samples().remove(0));
        let fact = all_samples().remove(1);
        let a = origin.caused(fact.clone(), "classifier@1", 0, None);
        let b = origin.caused(fact.clone(), "classifier@1", 0, None);
        let c = origin.caused(fact, "classifier@1", 1, None);
        assert_eq!(a.event_id, b.event_id);
        assert_ne!(a.event_id, c.event_id);
        let upgraded = origin.caused(all_samples().remove(1), "classifier@2", 0, None);
        assert_eq!(a.event_id, upgraded.event_id, "an upgrade keeps output ids");
        assert_eq!(a.correlation_id, origin.correlation_id);
        assert_eq!(a.causation_id, Some(origin.event_id));
    }
}
