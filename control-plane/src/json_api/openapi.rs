//! The OpenAPI 3 document of the JSON API (`GET /openapi.json`), built
//! from the protos' descriptors at start, so it cannot drift from what is
//! served: a path per method of [`super::methods::PATHS`], a schema per
//! message and enum in the protobuf JSON mapping.

use std::collections::BTreeMap;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use serde_json::{Map, Value, json};

use super::methods::PATHS;

/// The document.
pub fn document() -> Value {
    let set = FileDescriptorSet::decode(herald_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptors compiled into herald-proto decode");
    let mut schemas = BTreeMap::new();
    let mut maps = BTreeMap::new();
    for file in &set.file {
        let pkg = file.package();
        for m in &file.message_type {
            collect_message(pkg, m, &mut schemas, &mut maps);
        }
        for e in &file.enum_type {
            schemas.insert(format!("{pkg}.{}", e.name()), enum_schema(e));
        }
    }
    let schemas = resolve_maps(schemas, &maps);
    let mut paths = Map::new();
    for file in &set.file {
        for svc in &file.service {
            let service = format!("{}.{}", file.package(), svc.name());
            for m in &svc.method {
                let path = format!("{service}/{}", m.name());
                if !PATHS.contains(&path.as_str()) {
                    continue;
                }
                paths.insert(format!("/api/{path}"), operation(svc.name(), m));
            }
        }
    }
    let mut components = Map::new();
    components.insert("schemas".into(), Value::Object(schemas));
    components.insert(
        "securitySchemes".into(),
        json!({"apiKey": {"type": "http", "scheme": "bearer", "description": "A Herald API key: `Authorization: Bearer hk_...`"}}),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Herald",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Herald's API over HTTP with JSON bodies: every public gRPC method at POST /api/{package.Service}/{Method} (the Connect protocol's unary form), with the request and the answer in the protobuf JSON mapping (field names as in the .proto files). Errors are {\"code\", \"message\"}, the message naming the field as over gRPC.",
        },
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": components,
    })
}

fn operation(service: &str, m: &prost_types::MethodDescriptorProto) -> Value {
    let json_of = |t: &str| json!({"application/json": {"schema": {"$ref": reference(t)}}});
    json!({
        "post": {
            "operationId": format!("{service}_{}", m.name()),
            "tags": [service],
            "requestBody": {"required": true, "content": json_of(m.input_type())},
            "responses": {
                "200": {"description": "The answer.", "content": json_of(m.output_type())},
                "default": {
                    "description": "An error: its gRPC code, by name, and a message naming the field.",
                    "content": {"application/json": {"schema": error_schema()}},
                },
            },
        }
    })
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "example": "invalid_argument"},
            "message": {"type": "string", "example": "spec.url: must be an absolute http(s) URL"},
        },
    })
}

/// `.herald.v1.Foo.Bar` → `#/components/schemas/herald.v1.Foo.Bar`.
fn reference(type_name: &str) -> String {
    format!("#/components/schemas/{}", type_name.trim_start_matches('.'))
}

/// A message's schema, and its nested types; map entries are kept aside
/// (a map field is an object, not an array of entries).
fn collect_message(
    scope: &str,
    m: &DescriptorProto,
    schemas: &mut BTreeMap<String, Value>,
    maps: &mut BTreeMap<String, Value>,
) {
    let name = format!("{scope}.{}", m.name());
    for nested in &m.nested_type {
        if nested.options.as_ref().is_some_and(|o| o.map_entry()) {
            let value = nested
                .field
                .iter()
                .find(|f| f.name() == "value")
                .map_or(json!({}), field_schema);
            maps.insert(format!(".{name}.{}", nested.name()), value);
        } else {
            collect_message(&name, nested, schemas, maps);
        }
    }
    for e in &m.enum_type {
        schemas.insert(format!("{name}.{}", e.name()), enum_schema(e));
    }
    let mut props = Map::new();
    for f in &m.field {
        let one = field_schema(f);
        let schema = if f.label() == Label::Repeated && !is_map(f, m) {
            json!({"type": "array", "items": one})
        } else {
            one
        };
        props.insert(f.name().to_string(), schema);
    }
    schemas.insert(
        name,
        json!({"type": "object", "properties": props, "additionalProperties": false}),
    );
}

/// Whether `f` of `m` is a map (a repeated entry type nested in `m`).
fn is_map(f: &FieldDescriptorProto, m: &DescriptorProto) -> bool {
    f.r#type() == Type::Message
        && m.nested_type.iter().any(|n| {
            n.options.as_ref().is_some_and(|o| o.map_entry())
                && f.type_name().ends_with(&format!(".{}", n.name()))
        })
}

/// A map field's `$ref` to its entry type becomes an object of values.
fn resolve_maps(
    schemas: BTreeMap<String, Value>,
    maps: &BTreeMap<String, Value>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, mut schema) in schemas {
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            for prop in props.values_mut() {
                let target = prop
                    .get("$ref")
                    .and_then(Value::as_str)
                    .map(|r| format!(".{}", r.trim_start_matches("#/components/schemas/")));
                if let Some(value) = target.and_then(|t| maps.get(&t)) {
                    *prop = json!({"type": "object", "additionalProperties": value});
                }
            }
        }
        out.insert(name, schema);
    }
    out
}

fn enum_schema(e: &prost_types::EnumDescriptorProto) -> Value {
    let names: Vec<&str> = e.value.iter().map(|v| v.name()).collect();
    json!({"type": "string", "enum": names})
}

/// One value of a field, in the protobuf JSON mapping.
fn field_schema(f: &FieldDescriptorProto) -> Value {
    match f.r#type() {
        Type::Double | Type::Float => json!({"type": "number"}),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Type::Uint32 | Type::Fixed32 => json!({"type": "integer", "minimum": 0}),
        // 64-bit integers are strings in the mapping (numbers are read too).
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => {
            json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
        }
        Type::Uint64 | Type::Fixed64 => json!({"type": "string", "pattern": "^[0-9]+$"}),
        Type::Bool => json!({"type": "boolean"}),
        Type::String => json!({"type": "string"}),
        Type::Bytes => json!({"type": "string", "format": "byte"}),
        Type::Enum | Type::Message | Type::Group => json!({"$ref": reference(f.type_name())}),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_method_has_a_path_and_every_ref_a_schema() {
        let doc = super::document();
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), super::PATHS.len());
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(schemas.contains_key(name), "no schema {name}");
        }
        let spec = &schemas["herald.v1.EndpointSpec"]["properties"];
        assert_eq!(spec["headers"]["type"], "object");
        assert_eq!(spec["event_types"]["type"], "array");
    }
}
