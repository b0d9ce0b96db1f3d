//! The published JSON Schema of the failure report and the Rust validator agree.

use sentinel_ingest::BotIdentity;
use sentinel_ingest::model::ParseError;
use sentinel_ingest::report::{JSON_SCHEMA, parse_json};
use serde_json::{Value, json};

fn schema() -> Value {
    serde_json::from_str(JSON_SCHEMA).expect("the schema is JSON")
}

fn full() -> Value {
    json!({
        "repository": "/srv/app", "branch": "main", "commit": "0123abcd",
        "command": "black --check .", "log": "would reformat app.py",
        "run_url": "https://ci.example.com/1", "occurred_at": "2024-01-01T00:00:00Z",
        "tenant": "acme", "job_name": "lint", "author": "Alice",
        "author_email": "alice@example.com", "delivery_id": "ci-1"
    })
}

fn validate(v: &Value) -> Result<(), ParseError> {
    parse_json(v.to_string().as_bytes())?
        .validate("generic", None, &BotIdentity::default())
        .map(|_| ())
}

#[test]
fn schema_properties_and_required_fields_match_the_validator() {
    let s = schema();
    assert_eq!(s["additionalProperties"], false);
    let props: Vec<String> = s["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    let mut example: Vec<String> = full().as_object().expect("obj").keys().cloned().collect();
    let mut sorted_props = props.clone();
    sorted_props.sort();
    example.sort();
    assert_eq!(
        sorted_props, example,
        "the example uses every documented property"
    );
    validate(&full()).expect("a report with every documented property is valid");

    let required: Vec<&str> = s["required"]
        .as_array()
        .expect("required")
        .iter()
        .map(|r| r.as_str().expect("name"))
        .collect();
    for p in &props {
        let mut v = full();
        v.as_object_mut().expect("obj").remove(p);
        let r = validate(&v);
        if required.contains(&p.as_str()) {
            match r {
                Err(ParseError::Invalid(fields)) => {
                    assert!(
                        fields.iter().any(|f| f.starts_with(p.as_str())),
                        "{p}: {fields:?}"
                    )
                }
                other => panic!("{p} is required by the schema but accepted: {other:?}"),
            }
        } else {
            r.unwrap_or_else(|e| panic!("{p} is optional in the schema but refused: {e}"));
        }
    }
    let mut v = full();
    v["undocumented"] = json!(1);
    assert!(validate(&v).is_err(), "additionalProperties: false");
    let mut v = full();
    v["commit"] = json!("xyz");
    assert!(validate(&v).is_err(), "commit pattern");
    let mut v = full();
    v["tenant"] = json!("a/b");
    assert!(validate(&v).is_err(), "tenant pattern");
}
