//! `GET /openapi/v2` in protobuf (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`):
//! the JSON document re-encoded as gnostic's `openapi.v2.Document`, the form kubectl asks
//! for when it validates a kind that the OpenAPI v3 documents don't describe.
//!
//! Field numbers are those of gnostic's `OpenAPIv2.proto`. Free-form values (defaults,
//! examples, enum members, vendor extensions) travel as the `Any.yaml` string, as gnostic
//! writes them; JSON is valid YAML, so they are written as JSON.

use serde_json::{Map, Value};

/// Encodes a Swagger 2.0 JSON document.
pub fn encode_document(doc: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 1, doc["swagger"].as_str().unwrap_or("2.0"));
    if let Some(info) = doc.get("info") {
        message(&mut out, 2, &encode_info(info));
    }
    for (field, key) in [(3, "host"), (4, "basePath")] {
        if let Some(s) = doc[key].as_str() {
            string(&mut out, field, s);
        }
    }
    for (field, key) in [(5, "schemes"), (6, "consumes"), (7, "produces")] {
        strings(&mut out, field, &doc[key]);
    }
    if let Some(paths) = doc["paths"].as_object() {
        message(&mut out, 8, &encode_paths(paths));
    }
    if let Some(defs) = doc["definitions"].as_object() {
        let mut body = Vec::new();
        for (name, schema) in defs {
            message(&mut body, 1, &named(name, &encode_schema(schema)));
        }
        message(&mut out, 9, &body);
    }
    if let Some(obj) = doc.as_object() {
        extensions(&mut out, 16, obj);
    }
    out
}

fn encode_info(info: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for (field, key) in [(1, "title"), (2, "version"), (3, "description")] {
        if let Some(s) = info[key].as_str() {
            string(&mut out, field, s);
        }
    }
    out
}

fn encode_paths(paths: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, item) in paths {
        let mut body = Vec::new();
        for (field, verb) in [
            (2, "get"),
            (3, "put"),
            (4, "post"),
            (5, "delete"),
            (6, "options"),
            (7, "head"),
            (8, "patch"),
        ] {
            if let Some(op) = item.get(verb) {
                message(&mut body, field, &encode_operation(op));
            }
        }
        for p in item["parameters"].as_array().into_iter().flatten() {
            message(&mut body, 9, &encode_parameters_item(p));
        }
        if let Some(obj) = item.as_object() {
            extensions(&mut body, 10, obj);
        }
        message(&mut out, 2, &named(path, &body));
    }
    out
}

fn encode_operation(op: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    strings(&mut out, 1, &op["tags"]);
    for (field, key) in [(2, "summary"), (3, "description"), (5, "operationId")] {
        if let Some(s) = op[key].as_str() {
            string(&mut out, field, s);
        }
    }
    strings(&mut out, 6, &op["produces"]);
    strings(&mut out, 7, &op["consumes"]);
    for p in op["parameters"].as_array().into_iter().flatten() {
        message(&mut out, 8, &encode_parameters_item(p));
    }
    if let Some(responses) = op["responses"].as_object() {
        let mut body = Vec::new();
        for (code, r) in responses {
            let value = match r["$ref"].as_str() {
                Some(reference) => tagged(2, &json_reference(reference)),
                None => {
                    let mut resp = Vec::new();
                    string(&mut resp, 1, r["description"].as_str().unwrap_or(""));
                    if let Some(schema) = r.get("schema") {
                        message(&mut resp, 2, &tagged(1, &encode_schema(schema)));
                    }
                    tagged(1, &resp)
                }
            };
            message(&mut body, 1, &named(code, &value));
        }
        message(&mut out, 9, &body);
    }
    strings(&mut out, 10, &op["schemes"]);
    if op["deprecated"].as_bool() == Some(true) {
        boolean(&mut out, 11, true);
    }
    if let Some(obj) = op.as_object() {
        extensions(&mut out, 13, obj);
    }
    out
}

/// A parameter: a `$ref`, a body parameter, or a non-body one (query, path, header, form).
fn encode_parameters_item(p: &Value) -> Vec<u8> {
    if let Some(reference) = p["$ref"].as_str() {
        return tagged(2, &json_reference(reference));
    }
    let mut param = Vec::new();
    let location = p["in"].as_str().unwrap_or("");
    if location == "body" {
        let mut body = Vec::new();
        for (field, key) in [(1, "description"), (2, "name"), (3, "in")] {
            if let Some(s) = p[key].as_str() {
                string(&mut body, field, s);
            }
        }
        boolean(&mut body, 4, p["required"].as_bool().unwrap_or(false));
        if let Some(schema) = p.get("schema") {
            message(&mut body, 5, &encode_schema(schema));
        }
        message(&mut param, 1, &body);
    } else {
        // Query, path and header sub-schemas share these field numbers (form data differs
        // only after `name`, and Kubernetes has no form parameters).
        let mut sub = Vec::new();
        boolean(&mut sub, 1, p["required"].as_bool().unwrap_or(false));
        for (field, key) in [(2, "in"), (3, "description"), (4, "name")] {
            if let Some(s) = p[key].as_str() {
                string(&mut sub, field, s);
            }
        }
        let (type_field, unique_field) = match location {
            "query" => (6, 20),
            _ => (5, 19),
        };
        if let Some(t) = p["type"].as_str() {
            string(&mut sub, type_field, t);
        }
        if p["uniqueItems"].as_bool() == Some(true) {
            boolean(&mut sub, unique_field, true);
        }
        let which = match location {
            "header" => 1,
            "formData" => 2,
            "query" => 3,
            _ => 4,
        };
        message(&mut param, 2, &tagged(which, &sub));
    }
    tagged(1, &param)
}

fn json_reference(reference: &str) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 1, reference);
    out
}

/// One JSON Schema object as gnostic's `Schema`.
pub fn encode_schema(s: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for (field, key) in [(1, "$ref"), (2, "format"), (3, "title"), (4, "description")] {
        if let Some(v) = s[key].as_str() {
            string(&mut out, field, v);
        }
    }
    if let Some(d) = s.get("default") {
        message(&mut out, 5, &any(d));
    }
    for (field, key) in [(6, "multipleOf"), (7, "maximum"), (9, "minimum")] {
        if let Some(n) = s[key].as_f64() {
            double(&mut out, field, n);
        }
    }
    for (field, key) in [(8, "exclusiveMaximum"), (10, "exclusiveMinimum")] {
        if s[key].as_bool() == Some(true) {
            boolean(&mut out, field, true);
        }
    }
    for (field, key) in [(11, "maxLength"), (12, "minLength")] {
        if let Some(n) = s[key].as_i64() {
            varint_field(&mut out, field, n as u64);
        }
    }
    if let Some(p) = s["pattern"].as_str() {
        string(&mut out, 13, p);
    }
    for (field, key) in [(14, "maxItems"), (15, "minItems")] {
        if let Some(n) = s[key].as_i64() {
            varint_field(&mut out, field, n as u64);
        }
    }
    if s["uniqueItems"].as_bool() == Some(true) {
        boolean(&mut out, 16, true);
    }
    for (field, key) in [(17, "maxProperties"), (18, "minProperties")] {
        if let Some(n) = s[key].as_i64() {
            varint_field(&mut out, field, n as u64);
        }
    }
    strings(&mut out, 19, &s["required"]);
    for e in s["enum"].as_array().into_iter().flatten() {
        message(&mut out, 20, &any(e));
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Vec::new();
            boolean(&mut item, 2, *b);
            message(&mut out, 21, &item);
        }
        Some(schema @ Value::Object(_)) => {
            message(&mut out, 21, &tagged(1, &encode_schema(schema)));
        }
        _ => {}
    }
    match &s["type"] {
        Value::String(t) => message(&mut out, 22, &tagged_string(1, t)),
        Value::Array(ts) => {
            let mut item = Vec::new();
            for t in ts.iter().filter_map(Value::as_str) {
                string(&mut item, 1, t);
            }
            message(&mut out, 22, &item);
        }
        _ => {}
    }
    match &s["items"] {
        schema @ Value::Object(_) => message(&mut out, 23, &tagged(1, &encode_schema(schema))),
        Value::Array(schemas) => {
            let mut item = Vec::new();
            for schema in schemas {
                message(&mut item, 1, &encode_schema(schema));
            }
            message(&mut out, 23, &item);
        }
        _ => {}
    }
    for schema in s["allOf"].as_array().into_iter().flatten() {
        message(&mut out, 24, &encode_schema(schema));
    }
    if let Some(props) = s["properties"].as_object() {
        let mut body = Vec::new();
        for (name, schema) in props {
            message(&mut body, 1, &named(name, &encode_schema(schema)));
        }
        message(&mut out, 25, &body);
    }
    if let Some(d) = s["discriminator"].as_str() {
        string(&mut out, 26, d);
    }
    if s["readOnly"].as_bool() == Some(true) {
        boolean(&mut out, 27, true);
    }
    if let Some(e) = s.get("example") {
        message(&mut out, 30, &any(e));
    }
    if let Some(obj) = s.as_object() {
        extensions(&mut out, 31, obj);
    }
    out
}

/// `x-…` members as `NamedAny`s.
fn extensions(out: &mut Vec<u8>, field: u32, obj: &Map<String, Value>) {
    for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        message(out, field, &named(k, &any(v)));
    }
}

/// A free-form value as `Any { yaml }`.
fn any(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 2, &v.to_string());
    out
}

/// A `Named*` pair: name (1) and an encoded value message (2).
fn named(name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 1, name);
    message(&mut out, 2, value);
    out
}

/// A message holding one length-delimited field.
fn tagged(field: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    message(&mut out, field, body);
    out
}

fn tagged_string(field: u32, s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, field, s);
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn message(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    key(out, field, 2);
    varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    message(out, field, s.as_bytes());
}

fn strings(out: &mut Vec<u8>, field: u32, v: &Value) {
    for s in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
        string(out, field, s);
    }
}

fn boolean(out: &mut Vec<u8>, field: u32, b: bool) {
    key(out, field, 0);
    out.push(u8::from(b));
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

fn double(out: &mut Vec<u8>, field: u32, v: f64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_schema_encodes_its_fields_with_gnostic_numbers() {
        let bytes = encode_schema(&json!({"type": "string", "description": "d"}));
        // description (field 4, length 1), then type (field 22, a TypeItem holding "string").
        let mut want = vec![0x22, 1, b'd', 0xb2, 0x01, 8, 0x0a, 6];
        want.extend_from_slice(b"string");
        assert_eq!(bytes, want);
    }

    #[test]
    fn extensions_become_named_any_yaml() {
        let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.35.0"},
            "definitions": {"io.k8s.api.core.v1.Pod": {"type": "object",
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]}}});
        let bytes = encode_document(&doc);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("io.k8s.api.core.v1.Pod"));
        assert!(text.contains("x-kubernetes-group-version-kind"));
        assert!(text.contains(r#"[{"group":"","kind":"Pod","version":"v1"}]"#));
    }
}
