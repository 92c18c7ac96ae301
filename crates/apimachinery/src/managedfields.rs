//! Field management (`metadata.managedFields`) and server-side apply, after upstream's
//! structured-merge-diff as the apiserver uses it.
//!
//! Each [`ManagedFieldsEntry`] records the [`FieldSet`] one manager owns. [`apply`] merges an
//! applied configuration into the live object, prunes what the applier stopped applying and
//! reports [`Conflicts`] with other managers; [`update`] moves the fields an ordinary write
//! changed to its manager. Fields upstream never tracks (`apiVersion`, `kind`, `status`,
//! `metadata.name`, `metadata.namespace`, `metadata.uid`, `metadata.resourceVersion`,
//! `metadata.generation`, `metadata.creationTimestamp`, `metadata.managedFields`, ...) are left
//! out of every set.
//!
//! Simplifications: [`Schema::Any`] values are atomic (upstream deduces a schema for
//! untyped values); there is no version conversion (a manager's set is read as if its
//! `apiVersion` were the current one); subresources are not distinguished.

mod fieldset;
mod walk;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use fieldset::{FieldSet, FieldSetError, PathElement, path_string};
pub use walk::{Comparison, compare, to_field_set};

use crate::schema::{Schema, Schemas};
use crate::validation::go_quote;

/// `metav1.ManagedFieldsEntry`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFieldsEntry {
    /// Who manages the fields (the `fieldManager`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manager: String,
    /// `Apply` or `Update`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operation: String,
    /// The API version the fields were set with.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// When the manager last changed the object (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Always `FieldsV1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fields_type: String,
    /// The owned [`FieldSet`] in its JSON form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields_v1: Option<Value>,
    /// The subresource written through, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

impl ManagedFieldsEntry {
    /// The entry as JSON, as serialising it gives, but moving its field set rather than
    /// copying it (every tracked write stores one).
    pub fn into_json(self) -> Value {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: String| {
            if !v.is_empty() {
                m.insert(k.to_string(), Value::String(v));
            }
        };
        put("manager", self.manager);
        put("operation", self.operation);
        put("apiVersion", self.api_version);
        if let Some(t) = self.time {
            m.insert("time".into(), Value::String(t));
        }
        if !self.fields_type.is_empty() {
            m.insert("fieldsType".into(), Value::String(self.fields_type));
        }
        if let Some(f) = self.fields_v1 {
            m.insert("fieldsV1".into(), f);
        }
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), Value::String(self.subresource));
        }
        Value::Object(m)
    }
}

/// `Apply`.
pub const OPERATION_APPLY: &str = "Apply";
/// `Update`.
pub const OPERATION_UPDATE: &str = "Update";

impl ManagedFieldsEntry {
    /// The owned fields (empty when `fieldsV1` is absent or malformed).
    pub fn field_set(&self) -> FieldSet {
        self.fields_v1
            .as_ref()
            .and_then(|v| FieldSet::from_json(v).ok())
            .unwrap_or_default()
    }

    /// Whether two entries are the same manager: same name, operation and subresource, and for
    /// `Update` the same API version (as upstream's manager identifier).
    fn same_manager(&self, other: &ManagedFieldsEntry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == OPERATION_APPLY || self.api_version == other.api_version)
    }

    /// How upstream names the manager in conflicts: `"kubectl"`, or
    /// `"kubectl-client-side-apply" using apps/v1` for updaters.
    pub fn describe(&self) -> String {
        let mut s = go_quote(&self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {}", go_quote(&self.subresource));
        }
        if self.operation == OPERATION_UPDATE {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// One field another manager owns and the apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager, as [`ManagedFieldsEntry::describe`] prints it.
    pub manager: String,
    /// The field, e.g. `.spec.replicas`.
    pub field: String,
}

/// An apply refused because of conflicts (HTTP 409); [`fmt::Display`] gives upstream's
/// message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Conflicts(pub Vec<Conflict>);

impl fmt::Display for Conflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [c] = self.0.as_slice() {
            return write!(
                f,
                "Apply failed with 1 conflict: conflict with {}: {}",
                c.manager, c.field
            );
        }
        write!(f, "Apply failed with {} conflicts: ", self.0.len())?;
        let mut managers: Vec<&str> = self.0.iter().map(|c| c.manager.as_str()).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(
                self.0
                    .iter()
                    .filter(|c| c.manager == m)
                    .map(|c| format!("- {}", c.field)),
            );
        }
        f.write_str(&lines.join("\n"))
    }
}

/// Top-level fields upstream never tracks, with everything below them.
const IGNORED_TOP: &[&str] = &["apiVersion", "kind", "status"];
/// Metadata fields upstream never tracks (the system sets them).
const IGNORED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The paths upstream never tracks: dropped with everything below them.
fn ignored() -> FieldSet {
    let f = |s: &str| PathElement::Field(s.to_string());
    let mut set = FieldSet::new();
    for top in IGNORED_TOP {
        set.insert(&[f(top)]);
    }
    for m in IGNORED_METADATA {
        set.insert(&[f("metadata"), f(m)]);
    }
    set
}

fn strip(set: &FieldSet) -> FieldSet {
    // Built once: stripping runs three times on every tracked write.
    static IGNORED: std::sync::LazyLock<FieldSet> = std::sync::LazyLock::new(ignored);
    static METADATA: std::sync::LazyLock<FieldSet> = std::sync::LazyLock::new(|| {
        let mut metadata = FieldSet::new();
        metadata.insert(&[PathElement::Field("metadata".into())]);
        metadata
    });
    set.recursive_difference(&IGNORED).difference(&METADATA)
}

/// The `FieldsV1` of a created object: [`walk::created_fields_json`] without the paths
/// [`strip`] drops (apiVersion, kind, status, the system-set metadata fields).
fn created_fields(
    new: &Value,
    schema: &Schema,
    schemas: &Schemas,
) -> Option<serde_json::Map<String, Value>> {
    let listed = |names: &[&str], k: &str| k.strip_prefix("f:").is_some_and(|f| names.contains(&f));
    let mut fields = walk::created_fields_json(new, schema, schemas)?;
    fields.retain(|k, _| !listed(IGNORED_TOP, k));
    if let Some(Value::Object(meta)) = fields.get_mut("f:metadata") {
        // "." is metadata itself, which [`strip`] drops too.
        meta.retain(|k, _| k != "." && !listed(IGNORED_METADATA, k));
        if meta.is_empty() {
            fields.shift_remove("f:metadata");
        }
    }
    Some(fields)
}

fn strip_comparison(c: Comparison) -> Comparison {
    Comparison {
        added: strip(&c.added),
        modified: strip(&c.modified),
        removed: strip(&c.removed),
    }
}

fn entry(
    manager: &str,
    operation: &str,
    api_version: &str,
    time: &str,
    set: &FieldSet,
) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: manager.to_string(),
        operation: operation.to_string(),
        api_version: api_version.to_string(),
        time: Some(time.to_string()),
        fields_type: "FieldsV1".to_string(),
        fields_v1: Some(set.to_json()),
        subresource: String::new(),
    }
}

/// Upstream's order: `Apply` entries before `Update` ones, then by time, manager, version.
fn sort_entries(entries: &mut [ManagedFieldsEntry]) {
    entries.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
}

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.shift_remove("managedFields");
    }
    v
}

/// Server-side apply of `applied` by `manager` onto `live` (`{}` or null when creating).
///
/// Returns the new object (its `metadata.managedFields` is left for the caller to set from
/// the returned entries) and the new entries. Fields another manager owns that the apply
/// would change are [`Conflicts`] unless `force`, which takes them over. `time` is the
/// current time in RFC 3339, stamped on the applier's entry when something changed.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: &Value,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    managed: &[ManagedFieldsEntry],
    time: &str,
    schema: &Schema,
    schemas: &Schemas,
) -> Result<(Value, Vec<ManagedFieldsEntry>), Conflicts> {
    let empty = Value::Object(Default::default());
    let live = if live.is_object() { live } else { &empty };
    let applied = without_managed_fields(applied);
    let me = ManagedFieldsEntry {
        manager: manager.to_string(),
        operation: OPERATION_APPLY.to_string(),
        ..Default::default()
    };
    let previous = managed.iter().find(|e| e.same_manager(&me));
    let last_set = previous.map(|e| strip(&e.field_set())).unwrap_or_default();
    let new_set = strip(&to_field_set(&applied, schema, schemas));

    let mut merged = walk::merge(Some(live), &applied, schema, schemas);

    // Prune what this manager applied last time, no longer applies and nobody else owns.
    let others: Vec<&ManagedFieldsEntry> =
        managed.iter().filter(|e| !e.same_manager(&me)).collect();
    let owned = others
        .iter()
        .fold(new_set.clone(), |acc, e| acc.union(&strip(&e.field_set())));
    let to_remove = last_set.difference(&owned);
    if !to_remove.is_empty() {
        walk::remove_paths(&mut merged, &to_remove, Some(&owned), schema, schemas);
    }

    let cmp = strip_comparison(compare(live, &merged, schema, schemas));
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts = Vec::new();
    let mut entries = Vec::new();
    for e in &others {
        let set = e.field_set();
        let lost = set.intersection(&changed);
        for p in lost.paths() {
            conflicts.push(Conflict {
                manager: e.describe(),
                field: path_string(&p),
            });
        }
        let mut e = (*e).clone();
        let kept = set.difference(&lost).difference(&cmp.removed);
        if kept != set {
            e.fields_v1 = Some(kept.to_json());
        }
        if !kept.is_empty() {
            entries.push(e);
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(Conflicts(conflicts));
    }
    if !new_set.is_empty() {
        let object_changed = merged != *live;
        let time = match previous {
            Some(p) if !object_changed && p.field_set() == new_set => {
                p.time.clone().unwrap_or_else(|| time.to_string())
            }
            _ => time.to_string(),
        };
        entries.push(entry(
            manager,
            OPERATION_APPLY,
            api_version,
            &time,
            &new_set,
        ));
    }
    sort_entries(&mut entries);
    Ok((merged, entries))
}

/// Field ownership after an ordinary create, update or patch by `manager` from `old` to
/// `new` (`{}` or null for a create): changed and new fields move to the manager's `Update`
/// entry, removed fields leave every manager, managers left with nothing are dropped. The
/// entry's `time` is set when it gains fields.
#[allow(clippy::too_many_arguments)]
pub fn update(
    old: &Value,
    new: &Value,
    manager: &str,
    api_version: &str,
    managed: &[ManagedFieldsEntry],
    time: &str,
    schema: &Schema,
    schemas: &Schemas,
) -> Vec<ManagedFieldsEntry> {
    let empty = Value::Object(Default::default());
    let old = if old.is_object() { old } else { &empty };
    if managed.is_empty()
        && old.as_object().is_some_and(|m| m.is_empty())
        && let Some(fields) = created_fields(new, schema, schemas)
    {
        // A create: everything set belongs to the creator, built in one walk.
        if fields.is_empty() {
            return Vec::new();
        }
        return vec![ManagedFieldsEntry {
            manager: manager.to_string(),
            operation: OPERATION_UPDATE.to_string(),
            api_version: api_version.to_string(),
            time: Some(time.to_string()),
            fields_type: "FieldsV1".to_string(),
            fields_v1: Some(Value::Object(fields)),
            subresource: String::new(),
        }];
    }
    let cmp = strip_comparison(compare(old, new, schema, schemas));
    let changed = cmp.modified.union(&cmp.added);
    let me = ManagedFieldsEntry {
        manager: manager.to_string(),
        operation: OPERATION_UPDATE.to_string(),
        api_version: api_version.to_string(),
        ..Default::default()
    };
    let mut entries = Vec::new();
    let mut mine: Option<ManagedFieldsEntry> = None;
    for e in managed {
        if e.same_manager(&me) {
            mine = Some(e.clone());
            continue;
        }
        let set = e.field_set();
        let kept = set.difference(&changed).difference(&cmp.removed);
        let mut e = e.clone();
        if kept != set {
            e.fields_v1 = Some(kept.to_json());
        }
        if !kept.is_empty() {
            entries.push(e);
        }
    }
    let previous = mine
        .as_ref()
        .map(ManagedFieldsEntry::field_set)
        .unwrap_or_default();
    let set = previous.difference(&cmp.removed).union(&changed);
    if !set.is_empty() {
        let mut e = entry(manager, OPERATION_UPDATE, api_version, time, &set);
        if changed.is_empty()
            && let Some(t) = mine.and_then(|m| m.time)
        {
            e.time = Some(t);
        }
        entries.push(e);
    }
    sort_entries(&mut entries);
    entries
}

#[cfg(test)]
mod tests;
