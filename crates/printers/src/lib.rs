//! Server-side printing: the `metav1.Table` columns and cells behind
//! `kubectl get` and `kubectl get -o wide`.
//!
//! The apiserver answers `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`
//! by asking this crate for the [`columns`] of a kind and the [`cells`] of each
//! object, and wraps them into the Table itself. Like upstream's server-side
//! printers, rows always carry the wide (priority 1) cells too; kubectl hides
//! them unless `-o wide`. Custom resources use [`custom_columns`], built from a
//! CRD version's `additionalPrinterColumns`.
//!
//! The cell logic follows upstream's `pkg/printers/internalversion/printers.go`.
//! Objects are untyped JSON as stored; a missing field prints as upstream's Go
//! zero value would (`<none>`, `<unknown>`, `0`). This crate knows nothing
//! about HTTP, storage or the Table envelope, and does no IO.

mod apps;
mod batch;
mod config;
mod custom;
mod duration;
mod event;
mod networking;
mod node;
mod other;
mod pod;
mod rbac;
mod service;
mod storage;
mod util;

use jiff::Timestamp;
use serde_json::{Value, json};

pub use custom::{CustomColumns, custom_columns};
pub use duration::human_duration;

/// One column of a Table, as `metav1.TableColumnDefinition`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Header text, e.g. "Name"; kubectl upper-cases it.
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: &'static str,
    /// `name` for the Name column, else empty.
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 always shown, 1 only with `-o wide`.
    pub priority: i32,
}

/// A column whose texts are not static, e.g. from a CRD's printer columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnOwned {
    /// Header text.
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    /// Format hint (`name` for the Name column).
    pub format: String,
    /// What the column shows.
    pub description: String,
    /// 0 always shown, 1 only with `-o wide`.
    pub priority: i32,
}

impl From<Column> for ColumnOwned {
    fn from(c: Column) -> Self {
        ColumnOwned {
            name: c.name.to_string(),
            type_: c.type_.to_string(),
            format: c.format.to_string(),
            description: c.description.to_string(),
            priority: c.priority,
        }
    }
}

pub(crate) const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// A normal (priority 0) column.
pub(crate) const fn col(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

/// A column shown only with `-o wide`.
pub(crate) const fn wide(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
) -> Column {
    Column {
        priority: 1,
        ..col(name, type_, description)
    }
}

/// The Name column.
pub(crate) const NAME: Column = Column {
    format: "name",
    ..col("Name", "string", NAME_DESC)
};
/// The Age column.
pub(crate) const AGE: Column = col("Age", "string", AGE_DESC);
/// The "Created At" column (a date, rendered client-side).
pub(crate) const CREATED_AT: Column = col("Created At", "date", AGE_DESC);
/// Wide "Containers" column of workload kinds.
pub(crate) const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
/// Wide "Images" column of workload kinds.
pub(crate) const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

/// Builds the cells of one object.
pub(crate) type CellsFn = fn(&Value, Timestamp) -> Vec<Value>;

/// The printer of one kind.
pub(crate) struct Printer {
    pub(crate) group: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) columns: &'static [Column],
    pub(crate) cells: CellsFn,
}

const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

fn default_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![util::name(obj), util::age(obj, now)]
}

fn all_printers() -> impl Iterator<Item = &'static Printer> {
    [
        pod::PRINTERS,
        apps::PRINTERS,
        service::PRINTERS,
        node::PRINTERS,
        config::PRINTERS,
        event::PRINTERS,
        batch::PRINTERS,
        networking::PRINTERS,
        storage::PRINTERS,
        rbac::PRINTERS,
        other::PRINTERS,
    ]
    .into_iter()
    .flatten()
}

fn printer(group: &str, kind: &str) -> Option<&'static Printer> {
    all_printers().find(|p| p.group == group && p.kind == kind)
}

/// Whether this crate has a dedicated printer for the kind (else Name + Age).
pub fn has_printer(group: &str, kind: &str) -> bool {
    printer(group, kind).is_some()
}

/// The columns of a kind (`group` is `""` for the core group). Unknown kinds
/// get upstream's default: Name, Age.
pub fn columns(group: &str, kind: &str) -> Vec<Column> {
    printer(group, kind)
        .map_or(DEFAULT_COLUMNS, |p| p.columns)
        .to_vec()
}

/// The cells of one object, one per entry of [`columns`] for the same kind,
/// including the wide ones. Never panics, whatever `obj` holds.
pub fn cells(group: &str, kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    let f = printer(group, kind).map_or(default_cells as CellsFn, |p| p.cells);
    f(obj, now)
}

/// `columnDefinitions` of a Table: `[{name, type, format, description, priority}]`.
pub fn column_definitions_json(cols: &[Column]) -> Value {
    cols.iter()
        .map(|c| column_definition(c.name, c.type_, c.format, c.description, c.priority))
        .collect()
}

/// Like [`column_definitions_json`], for owned columns (custom resources).
pub fn owned_column_definitions_json(cols: &[ColumnOwned]) -> Value {
    cols.iter()
        .map(|c| column_definition(&c.name, &c.type_, &c.format, &c.description, c.priority))
        .collect()
}

/// One `TableColumnDefinition`, the same for static and owned columns.
fn column_definition(
    name: &str,
    type_: &str,
    format: &str,
    description: &str,
    priority: i32,
) -> Value {
    json!({
        "name": name,
        "type": type_,
        "format": format,
        "description": description,
        "priority": priority,
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the data-driven printer tests.
    use jiff::Timestamp;
    use serde_json::Value;

    /// The fixed "now" of all tests.
    pub(crate) fn now() -> Timestamp {
        "2024-06-01T12:00:00Z".parse().unwrap()
    }

    /// A creation timestamp `secs` before [`now`].
    pub(crate) fn ago(secs: i64) -> String {
        let t = now() - jiff::SignedDuration::from_secs(secs);
        t.to_string()
    }

    /// Asserts the cells of `obj` as a `group`/`kind` equal `expect`.
    pub(crate) fn check(group: &str, kind: &str, obj: Value, expect: Value) {
        let got = Value::Array(super::cells(group, kind, &obj, now()));
        assert_eq!(got, expect, "cells of {kind} {obj}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Inputs that must not make any printer panic, and must still give one
    /// cell per column.
    fn odd_inputs() -> Vec<Value> {
        vec![
            json!(null),
            json!({}),
            json!([]),
            json!("pod"),
            json!({"metadata": null, "spec": [], "status": 3}),
            json!({"metadata": {"name": 5, "creationTimestamp": "garbage", "labels": [1], "deletionTimestamp": "2024-01-01T00:00:00Z"},
                   "spec": {"containers": [null, 1, {"name": {}}], "ports": [{}], "selector": {"matchExpressions": [{}]},
                            "rules": [null], "tls": [{}], "subjects": [{}], "endpoints": [{"addresses": [1]}]},
                   "status": {"containerStatuses": [{}, null, {"state": {"terminated": {}}}],
                              "initContainerStatuses": [{}, {"state": {"waiting": {"reason": 1}}}],
                              "conditions": [{}], "addresses": [{}], "hard": {"cpu": 1}, "loadBalancer": {"ingress": [{}]}},
                   "subsets": [{"addresses": [{}], "ports": [{}]}, {"addresses": [{}]}],
                   "involvedObject": {}, "series": {}, "data": [], "rules": {}}),
        ]
    }

    #[test]
    fn every_printer_gives_one_cell_per_column_on_any_input() {
        for p in all_printers() {
            for obj in odd_inputs() {
                let cells = (p.cells)(&obj, testing::now());
                assert_eq!(
                    cells.len(),
                    p.columns.len(),
                    "{}/{} on {obj}",
                    p.group,
                    p.kind
                );
            }
            assert_eq!(
                p.columns.iter().filter(|c| c.format == "name").count(),
                1,
                "{}",
                p.kind
            );
        }
    }

    #[test]
    fn printers_are_unique() {
        let all: Vec<_> = all_printers().map(|p| (p.group, p.kind)).collect();
        for (i, k) in all.iter().enumerate() {
            assert!(!all[i + 1..].contains(k), "duplicate printer {k:?}");
        }
    }

    #[test]
    fn fallback_is_name_age() {
        let cols = columns("example.com", "Widget");
        assert_eq!(
            cols.iter().map(|c| c.name).collect::<Vec<_>>(),
            ["Name", "Age"]
        );
        assert!(!has_printer("example.com", "Widget"));
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": testing::ago(45)}});
        assert_eq!(
            cells("example.com", "Widget", &obj, testing::now()),
            [json!("w"), json!("45s")]
        );
    }

    #[test]
    fn definitions_json() {
        let defs = column_definitions_json(&columns("", "Namespace"));
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[0]["format"], "name");
        assert_eq!(
            defs[1],
            json!({"name": "Status", "type": "string", "format": "", "description": defs[1]["description"], "priority": 0})
        );
        let owned: Vec<ColumnOwned> = columns("", "Pod").into_iter().map(Into::into).collect();
        assert_eq!(
            owned_column_definitions_json(&owned),
            column_definitions_json(&columns("", "Pod"))
        );
    }
}
