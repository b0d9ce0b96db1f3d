/// Declares the [`Fact`](crate::Fact) enum from the list of fact structs and their
/// `event_type` names, with the schema of each (`schemas/facts/<event_type>.v1.avsc`).
#[macro_export]
#[doc(hidden)]
macro_rules! fact_enum {
    ($($name:ident => $ty:literal,)*) => {
        /// Any fact, tagged by its type.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Fact {
            $(
                #[doc = concat!("`", $ty, "`")]
                $name($name),
            )*
        }

        impl Fact {
            /// Every fact type name, in declaration order.
            pub const TYPES: &'static [&'static str] = &[$($ty,)*];

            /// The snake_case type name (`event_type` on the wire).
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Fact::$name(_) => $ty,)*
                }
            }

            /// The fact as JSON (the payload only, without envelope).
            pub fn to_json(&self) -> $crate::Result<serde_json::Value> {
                Ok(match self {
                    $(Fact::$name(f) => serde_json::to_value(f)?,)*
                })
            }

            /// Parses a fact of the given type from JSON.
            pub fn from_json(event_type: &str, value: serde_json::Value) -> $crate::Result<Fact> {
                match event_type {
                    $($ty => Ok(Fact::$name(serde_json::from_value(value)?)),)*
                    other => Err($crate::Error::UnknownEventType(other.to_owned())),
                }
            }

            pub(crate) fn to_avro_value(&self) -> $crate::Result<apache_avro::types::Value> {
                Ok(match self {
                    $(Fact::$name(f) => apache_avro::to_value(f)?,)*
                })
            }

            /// The fact's Avro datum written straight from the Rust value by apache-avro's
            /// schema-aware serializer (no intermediate `Value`, no resolution pass).
            pub(crate) fn write_avro_datum(
                &self,
                schema: &apache_avro::Schema,
            ) -> apache_avro::AvroResult<Vec<u8>> {
                let mut out = Vec::with_capacity(256);
                match self {
                    $(Fact::$name(f) => apache_avro::write_avro_datum_ref(schema, f, &mut out)?,)*
                };
                Ok(out)
            }

            /// Decodes a fact of the given type straight from its Avro datum written with
            /// `schema` (see `avro_de`); `Err` where that path does not apply.
            pub(crate) fn from_avro_datum_direct(
                event_type: &str,
                schema: &apache_avro::Schema,
                bytes: &[u8],
            ) -> Result<Fact, $crate::avro_de::Unsupported> {
                match event_type {
                    $($ty => Ok(Fact::$name($crate::avro_de::from_datum(schema, bytes)?)),)*
                    other => Err(serde::de::Error::custom(format!("unknown event type {other}"))),
                }
            }

            pub(crate) fn from_avro_value(
                event_type: &str,
                value: &apache_avro::types::Value,
            ) -> $crate::Result<Fact> {
                match event_type {
                    $($ty => Ok(Fact::$name(apache_avro::from_value(value)?)),)*
                    other => Err($crate::Error::UnknownEventType(other.to_owned())),
                }
            }
        }

        /// The checked-in schema sources: (event_type, version, `.avsc` text).
        pub(crate) const SCHEMA_SOURCES: &[(&str, i32, &str)] = &[
            $(($ty, 1, include_str!(concat!("../../../schemas/facts/", $ty, ".v1.avsc"))),)*
        ];

        $(
            impl From<$name> for Fact {
                fn from(f: $name) -> Fact {
                    Fact::$name(f)
                }
            }
        )*
    };
}
