//! The JSON Schema of each document, generated from its serde types with `schemars`
//! (so `#[serde(rename, skip, flatten, ...)]` shape it as they shape the JSON), then
//! pinned to the document: its `format` and `format_version` as constants, the times
//! its envelope carries as required and the others absent, its outcomes listed.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};

use crate::format::{Format, Timing};

/// The schema of `format`'s documents, of type `D`: a [`crate::Document`], or a type
/// that flattens an [`crate::Envelope`] itself. It describes the JSON as planrun
/// writes it (serialisation), in JSON Schema 2020-12.
pub fn document_schema<D: JsonSchema>(format: &Format) -> Schema {
    let generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let mut schema = generator.into_root_schema_for::<D>();
    let root = schema
        .as_object_mut()
        .expect("a document's schema is an object schema");
    root.insert("title".into(), format.name.into());
    root.insert("description".into(), format.describes.into());

    let properties = root
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .filter(|properties| properties.contains_key("format"))
        .expect("a document has properties, the envelope's among them");
    pin(properties, "format", json!(format.name));
    pin(properties, "format_version", json!(format.version));
    let outcomes: Vec<Value> = format
        .outcomes
        .iter()
        .map(|outcome| outcome.as_str().into())
        .collect();
    if let Some(Value::Object(outcome)) = properties.get_mut("outcome") {
        outcome.insert("enum".into(), outcomes.into());
    }
    let (present, absent): (&[&str], &[&str]) = match format.timing {
        Timing::Span => (
            &["started_at", "finished_at", "duration_ms"],
            &["generated_at"],
        ),
        Timing::Instant => (
            &["generated_at"],
            &["started_at", "finished_at", "duration_ms"],
        ),
        Timing::Timeless => (
            &[],
            &["started_at", "finished_at", "duration_ms", "generated_at"],
        ),
    };
    for key in absent {
        properties.remove(*key);
    }
    for key in present {
        if let Some(schema) = properties.get_mut(*key) {
            not_null(schema);
        }
    }
    let required = root
        .entry("required")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .expect("`required` is an array");
    for key in present {
        if !required.iter().any(|name| name == key) {
            required.push((*key).into());
        }
    }
    schema
}

/// Takes `null` out of what `schema` accepts: the envelope's optional times are
/// always there in the documents that carry them.
fn not_null(schema: &mut Value) {
    let is_null = |branch: &Value| branch.get("type") == Some(&json!("null"));
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|kind| kind != "null");
        if let [single] = types.as_slice() {
            let single = single.clone();
            object.insert("type".into(), single);
        }
    }
    if let Some(Value::Array(branches)) = object.get_mut("anyOf") {
        branches.retain(|branch| !is_null(branch));
        if let [single] = branches.as_slice() {
            if let Some(single) = single.as_object().cloned() {
                object.remove("anyOf");
                object.extend(single);
            }
        }
    }
}

/// Replaces the schema of `key` with a constant, keeping its description.
fn pin(properties: &mut Map<String, Value>, key: &str, value: Value) {
    let description = properties
        .get(key)
        .and_then(|schema| schema.get("description"))
        .cloned();
    let mut pinned = Map::new();
    if let Some(description) = description {
        pinned.insert("description".into(), description);
    }
    pinned.insert("const".into(), value);
    properties.insert(key.into(), Value::Object(pinned));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{format, Document};
    use serde::Serialize;

    #[derive(Serialize, JsonSchema)]
    struct Body {
        plan: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(skip)]
        #[allow(dead_code)]
        hidden: u32,
    }

    #[test]
    fn a_schema_is_pinned_to_its_document_and_follows_serde() {
        let schema = document_schema::<Document<Body>>(&format::STATUS);
        let value = schema.as_value();
        assert_eq!(value["title"], "planrun.status");
        assert_eq!(value["properties"]["format"]["const"], "planrun.status");
        assert_eq!(value["properties"]["format_version"]["const"], 1);
        assert_eq!(value["properties"]["outcome"]["enum"], json!(["ok"]));
        let required: Vec<&str> = value["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for key in ["format", "generated_at", "outcome", "exit_code", "plan"] {
            assert!(required.contains(&key), "{key} required: {required:?}");
        }
        assert!(!required.contains(&"note"));
        assert!(value["properties"].get("started_at").is_none());
        assert_eq!(
            value["properties"]["generated_at"]["$ref"], "#/$defs/Timestamp",
            "a time the document always carries is never null: {:#}",
            value["properties"]["generated_at"]
        );
        assert!(value["properties"].get("hidden").is_none());
        assert!(value["properties"].get("note").is_some());
    }
}
