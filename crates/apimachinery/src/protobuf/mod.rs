//! Decoding Kubernetes protobuf bodies into JSON objects.
//!
//! kubectl's typed clients (`kubectl create namespace|configmap|deployment …`) send request
//! bodies as `application/vnd.kubernetes.protobuf`: the `k8s\0` magic, then a
//! `runtime.Unknown` envelope holding the apiVersion/kind and the object encoded with
//! upstream's generated.proto schemas. This module turns that into the JSON the rest of the
//! apiserver works with, driven by a field table (`messages.txt`, generated from the k8s-pb
//! and k8s-openapi crates by `scripts/gen-protobuf-table.py`): tag → JSON name and type.
//!
//! Upstream's proto2 encoding writes non-pointer fields even when empty; as Go's JSON
//! `omitempty` would, empty scalars are left out of the result.

mod wire;

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use wire::{Reader, WireType};

/// The magic prefix of a Kubernetes protobuf body.
pub const MAGIC: &[u8] = b"k8s\x00";

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

#[derive(Debug, Clone)]
enum Kind {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    Message(String),
    Map(Box<Kind>),
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    kind: Kind,
    repeated: bool,
}

struct Table {
    /// message → tag → field.
    messages: HashMap<String, HashMap<u64, Field>>,
}

fn parse_kind(s: &str) -> Kind {
    match s {
        "string" => Kind::String,
        "bytes" => Kind::Bytes,
        "bool" => Kind::Bool,
        "int32" | "uint32" | "sint32" | "fixed32" => Kind::Int32,
        "int64" | "uint64" | "sint64" | "fixed64" => Kind::Int64,
        "double" | "float" => Kind::Double,
        m if m.starts_with("message=") => Kind::Message(m["message=".len()..].to_string()),
        m if m.starts_with("map:") => {
            // map:<key>:<value>; keys are always strings in the Kubernetes API.
            let value = m.splitn(3, ':').nth(2).unwrap_or("string");
            Kind::Map(Box::new(parse_kind(value)))
        }
        _ => Kind::String,
    }
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut messages: HashMap<String, HashMap<u64, Field>> = HashMap::new();
        let mut current = String::new();
        for line in include_str!("messages.txt").lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["M", name] => {
                    current = name.to_string();
                    messages.entry(current.clone()).or_default();
                }
                ["F", tag, name, kind, card] => {
                    if let (Ok(tag), Some(fields)) = (tag.parse(), messages.get_mut(&current)) {
                        fields.insert(
                            tag,
                            Field {
                                name: name.to_string(),
                                kind: parse_kind(kind),
                                repeated: *card == "repeated",
                            },
                        );
                    }
                }
                _ => {}
            }
        }
        Table { messages }
    })
}

/// The message module of an API group version, as the table names them.
fn module_of(api_version: &str) -> String {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("core", api_version),
    };
    match group {
        "apiextensions.k8s.io" => {
            format!("apiextensions_apiserver.pkg.apis.apiextensions.{version}")
        }
        "apiregistration.k8s.io" => format!("kube_aggregator.pkg.apis.apiregistration.{version}"),
        g => format!("api.{}.{version}", g.split('.').next().unwrap_or(g)),
    }
}

/// The message holding `kind` of `api_version`: the group's own, else the meta types
/// (`DeleteOptions` is sent with any group's version).
fn message_for(api_version: &str, kind: &str) -> Option<String> {
    let t = table();
    let lower = kind.to_ascii_lowercase();
    [
        module_of(api_version),
        "apimachinery.pkg.apis.meta.v1".to_string(),
    ]
    .into_iter()
    .find_map(|module| {
        t.messages
            .keys()
            .find(|m| {
                m.strip_prefix(module.as_str())
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|n| n.to_ascii_lowercase() == lower)
            })
            .cloned()
    })
}

/// Whether `bytes` are a Kubernetes protobuf body.
pub fn is_protobuf(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Decodes a protobuf body (with its `k8s\0` envelope) into a JSON object with `apiVersion`
/// and `kind` set.
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| DecodeError("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]".into()))?;
    // runtime.Unknown: typeMeta = 1, raw = 2, contentEncoding = 3, contentType = 4.
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut r = Reader::new(body);
    while let Some((tag, wt)) = r.key()? {
        match (tag, wt) {
            (1, WireType::Len) => {
                let mut tm = Reader::new(r.bytes()?);
                while let Some((t, w)) = tm.key()? {
                    match (t, w) {
                        (1, WireType::Len) => api_version = tm.string()?,
                        (2, WireType::Len) => kind = tm.string()?,
                        _ => tm.skip(w)?,
                    }
                }
            }
            (2, WireType::Len) => raw = r.bytes()?,
            _ => r.skip(wt)?,
        }
    }
    let message = message_for(&api_version, &kind).ok_or_else(|| {
        DecodeError(format!(
            "no kind {kind:?} is registered for version {api_version:?} in protobuf"
        ))
    })?;
    let mut obj = decode_message(raw, &message, 0)?;
    if let Value::Object(m) = &mut obj {
        let mut typed = Map::new();
        typed.insert("apiVersion".into(), Value::String(api_version));
        typed.insert("kind".into(), Value::String(kind));
        typed.extend(std::mem::take(m));
        *m = typed;
    }
    Ok(obj)
}

const MAX_DEPTH: usize = 64;

fn decode_message(bytes: &[u8], message: &str, depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError("protobuf message nested too deeply".into()));
    }
    if let Some(v) = special(bytes, message)? {
        return Ok(v);
    }
    let fields = table().messages.get(message);
    let mut out = Map::new();
    let mut r = Reader::new(bytes);
    while let Some((tag, wt)) = r.key()? {
        let Some(field) = fields.and_then(|f| f.get(&tag)) else {
            r.skip(wt)?;
            continue;
        };
        match &field.kind {
            Kind::Map(value_kind) => {
                let (k, v) = map_entry(r.bytes()?, value_kind, depth)?;
                let entry = out
                    .entry(field.name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = entry {
                    m.insert(k, v);
                }
            }
            kind if field.repeated => {
                let values = repeated_values(&mut r, wt, kind, depth)?;
                let entry = out
                    .entry(field.name.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(a) = entry {
                    a.extend(values);
                }
            }
            kind => {
                let v = single_value(&mut r, wt, kind, depth)?;
                if !is_empty_scalar(&v) {
                    out.insert(field.name.clone(), v);
                } else {
                    out.remove(&field.name);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

fn is_empty_scalar(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn single_value(
    r: &mut Reader<'_>,
    wt: WireType,
    kind: &Kind,
    depth: usize,
) -> Result<Value, DecodeError> {
    Ok(match (kind, wt) {
        (Kind::String, WireType::Len) => Value::String(r.string()?),
        (Kind::Bytes, WireType::Len) => Value::String(base64(r.bytes()?)),
        (Kind::Message(m), WireType::Len) => decode_message(r.bytes()?, m, depth + 1)?,
        (Kind::Bool, WireType::Varint) => Value::Bool(r.varint()? != 0),
        (Kind::Int32, WireType::Varint) => Value::from(r.varint()? as i32),
        (Kind::Int64, WireType::Varint) => Value::from(r.varint()? as i64),
        (Kind::Double, WireType::Fixed64) => Value::from(f64::from_bits(r.fixed64()?)),
        (Kind::Double, WireType::Fixed32) => Value::from(f32::from_bits(r.fixed32()?) as f64),
        (_, wt) => {
            r.skip(wt)?;
            Value::Null
        }
    })
}

fn repeated_values(
    r: &mut Reader<'_>,
    wt: WireType,
    kind: &Kind,
    depth: usize,
) -> Result<Vec<Value>, DecodeError> {
    let packed = wt == WireType::Len
        && matches!(kind, Kind::Bool | Kind::Int32 | Kind::Int64 | Kind::Double);
    if !packed {
        return Ok(vec![single_value(r, wt, kind, depth)?]);
    }
    let mut inner = Reader::new(r.bytes()?);
    let elem_wt = if matches!(kind, Kind::Double) {
        WireType::Fixed64
    } else {
        WireType::Varint
    };
    let mut out = Vec::new();
    while !inner.done() {
        out.push(single_value(&mut inner, elem_wt, kind, depth)?);
    }
    Ok(out)
}

fn map_entry(
    bytes: &[u8],
    value_kind: &Kind,
    depth: usize,
) -> Result<(String, Value), DecodeError> {
    let mut r = Reader::new(bytes);
    let mut key = String::new();
    let mut value = match value_kind {
        Kind::String | Kind::Bytes => Value::String(String::new()),
        _ => Value::Null,
    };
    while let Some((tag, wt)) = r.key()? {
        match tag {
            1 => key = r.string()?,
            2 => value = single_value(&mut r, wt, value_kind, depth)?,
            _ => r.skip(wt)?,
        }
    }
    Ok((key, value))
}

/// Messages whose JSON form is not an object of their fields.
fn special(bytes: &[u8], message: &str) -> Result<Option<Value>, DecodeError> {
    let name = message.rsplit('.').next().unwrap_or("");
    let module = message.strip_suffix(name).unwrap_or("");
    let ints = |bytes: &[u8]| -> Result<HashMap<u64, Value>, DecodeError> {
        let mut r = Reader::new(bytes);
        let mut out = HashMap::new();
        while let Some((tag, wt)) = r.key()? {
            let v = match wt {
                WireType::Varint => Value::from(r.varint()? as i64),
                WireType::Len => Value::String(String::from_utf8_lossy(r.bytes()?).into_owned()),
                other => {
                    r.skip(other)?;
                    continue;
                }
            };
            out.insert(tag, v);
        }
        Ok(out)
    };
    Ok(match (module, name) {
        ("apimachinery.pkg.apis.meta.v1.", "Time" | "MicroTime") => {
            let f = ints(bytes)?;
            let secs = f.get(&1).and_then(Value::as_i64).unwrap_or(0);
            let nanos = f.get(&2).and_then(Value::as_i64).unwrap_or(0);
            Some(rfc3339(secs, nanos, name == "MicroTime"))
        }
        ("apimachinery.pkg.api.resource.", "Quantity") => Some(
            ints(bytes)?
                .remove(&1)
                .unwrap_or(Value::String(String::new())),
        ),
        ("apimachinery.pkg.util.intstr.", "IntOrString") => {
            let f = ints(bytes)?;
            let is_string = f.get(&1).and_then(Value::as_i64) == Some(1);
            Some(if is_string {
                f.get(&3).cloned().unwrap_or(Value::String(String::new()))
            } else {
                Value::from(f.get(&2).and_then(Value::as_i64).unwrap_or(0))
            })
        }
        ("apimachinery.pkg.runtime.", "RawExtension")
        | ("apimachinery.pkg.apis.meta.v1.", "FieldsV1")
        | ("apiextensions_apiserver.pkg.apis.apiextensions.v1.", "Json") => {
            let mut r = Reader::new(bytes);
            let mut raw: &[u8] = &[];
            while let Some((tag, wt)) = r.key()? {
                if tag == 1 && wt == WireType::Len {
                    raw = r.bytes()?;
                } else {
                    r.skip(wt)?;
                }
            }
            Some(serde_json::from_slice(raw).unwrap_or(Value::Null))
        }
        ("apimachinery.pkg.apis.meta.v1.", "Duration") => {
            let ns = ints(bytes)?.get(&1).and_then(Value::as_i64).unwrap_or(0);
            Some(Value::String(go_duration(ns)))
        }
        _ => None,
    })
}

fn rfc3339(secs: i64, nanos: i64, micro: bool) -> Value {
    if secs == 0 && nanos == 0 {
        return Value::Null;
    }
    // Civil date from days since the epoch (proleptic Gregorian), to stay dependency-free.
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if mo <= 2 { 1 } else { 0 };
    let base = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}");
    Value::String(if micro {
        format!("{base}.{:06}Z", nanos / 1000)
    } else {
        format!("{base}Z")
    })
}

fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let secs = ns as f64 / 1e9;
    let (h, rest) = ((secs / 3600.0).trunc(), secs % 3600.0);
    let (m, s) = ((rest / 60.0).trunc(), rest % 60.0);
    let mut out = String::new();
    if h != 0.0 {
        out.push_str(&format!("{h}h"));
    }
    if m != 0.0 || h != 0.0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
