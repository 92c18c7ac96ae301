//! Server-side printing: objects as a `meta.k8s.io/v1` Table (what `kubectl get` asks for),
//! with the cells computed by the printers crate, and `PartialObjectMetadata`.

use rkube_core::registry::ResourceType;
use serde_json::{Value, json};

use crate::ApiServer;
use crate::request::Query;

/// A Table of `objs` with the columns of their kind (built-in printers, or a custom
/// resource's printer columns); each row carries the object as `includeObject` asks.
pub fn table(
    srv: &ApiServer,
    rt: &ResourceType,
    objs: &[&Value],
    rv: &str,
    query: &Query,
) -> Value {
    match srv.custom_columns(rt) {
        Some(cols) if rt.definition.is_empty() => custom_table(&cols, objs, rv, query),
        _ => builtin_table(rt, objs, rv, query),
    }
}

fn builtin_table(rt: &ResourceType, objs: &[&Value], rv: &str, query: &Query) -> Value {
    let now = jiff::Timestamp::now();
    let cols = rkube_printers::columns(&rt.group, &rt.kind);
    let rows = objs
        .iter()
        .map(|o| row(rkube_printers::cells(&rt.group, &rt.kind, o, now), o, query))
        .collect();
    wrap(rkube_printers::column_definitions_json(&cols), rows, rv)
}

/// A Table with the printer columns of a custom resource.
fn custom_table(
    columns: &rkube_printers::CustomColumns,
    objs: &[&Value],
    rv: &str,
    query: &Query,
) -> Value {
    let now = jiff::Timestamp::now();
    let rows = objs
        .iter()
        .map(|o| row(columns.cells(o, now), o, query))
        .collect();
    wrap(columns.column_definitions_json(), rows, rv)
}

fn wrap(column_definitions: Value, rows: Vec<Value>, rv: &str) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

fn row(cells: Vec<Value>, obj: &Value, query: &Query) -> Value {
    let object = match query.get("includeObject").unwrap_or("Metadata") {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => partial_metadata(obj),
    };
    let mut r = json!({"cells": cells});
    if !object.is_null() {
        r["object"] = object;
    }
    r
}

/// The object reduced to its metadata, as `PartialObjectMetadata`.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}
