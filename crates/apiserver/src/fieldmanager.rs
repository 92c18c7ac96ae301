//! Patching, server-side apply and managedFields bookkeeping, over the schema of each kind.
//!
//! The schema tells how every list merges (strategic merge patch) and which fields exist
//! (strict field validation); built-in kinds' schemas come from the OpenAPI definitions,
//! custom resources' from their CRDs.

use rkube_apimachinery::schema::{Schema, Schemas};
use rkube_apimachinery::{managedfields, patch, strict};
use rkube_core::registry::ResourceType;
use rkube_core::status::ApiError;
use serde_json::{Value, json};

use crate::ApiServer;

impl ApiServer {
    /// The schema of a resource's objects, and the definitions it refers to.
    fn schema_of(&self, rt: &ResourceType) -> (Schema, std::sync::Arc<Schemas>) {
        let schemas = self.schemas.read().expect("schemas lock").clone();
        let name = if rt.definition.is_empty() {
            rkube_openapi::custom::definition_of(rt)
        } else {
            rt.definition.clone()
        };
        if schemas.get(&name).is_some() {
            (Schema::Ref(name), schemas)
        } else {
            (Schema::Any, schemas)
        }
    }

    /// Paths of fields in `obj` its kind does not know (for `fieldValidation`).
    pub fn unknown_fields(&self, rt: &ResourceType, obj: &Value) -> Vec<String> {
        let (schema, schemas) = self.schema_of(rt);
        if schema == Schema::Any {
            return Vec::new();
        }
        strict::unknown_fields(obj, &schema, &schemas)
    }

    /// Drops the fields of `obj` its kind does not know.
    pub fn prune_unknown(&self, rt: &ResourceType, obj: &mut Value) {
        let (schema, schemas) = self.schema_of(rt);
        if schema != Schema::Any {
            strict::prune_unknown(obj, &schema, &schemas);
        }
    }

    /// Values of `obj` whose JSON type does not fit their field (always an error).
    pub fn type_errors(&self, rt: &ResourceType, obj: &Value) -> Vec<strict::TypeError> {
        let (schema, schemas) = self.schema_of(rt);
        if schema == Schema::Any {
            return Vec::new();
        }
        strict::type_errors(obj, &schema, &schemas)
    }

    /// Required fields (by the kind's schema) that `obj` lacks, as field errors.
    pub fn missing_required(
        &self,
        rt: &ResourceType,
        obj: &Value,
    ) -> Vec<rkube_core::validation::FieldError> {
        let (schema, schemas) = self.schema_of(rt);
        strict::missing_required(obj, &schema, &schemas)
            .into_iter()
            .map(|path| rkube_core::validation::FieldError::required(&path, ""))
            .collect()
    }

    /// Applies a JSON, merge or strategic merge patch to `old`.
    pub fn patch(
        &self,
        rt: &ResourceType,
        content_type: &str,
        old: &Value,
        p: &Value,
    ) -> Result<Value, ApiError> {
        let invalid = |e: patch::PatchError| ApiError::new(422, "Invalid", e.to_string());
        match content_type {
            "application/json-patch+json" => patch::json_patch(old, p).map_err(invalid),
            "application/merge-patch+json" => Ok(patch::merge_patch(old, p)),
            _ => {
                let (schema, schemas) = self.schema_of(rt);
                patch::strategic_merge_patch(old, p, &schema, &schemas).map_err(invalid)
            }
        }
    }

    /// Server-side apply of `applied` onto the live object `old` by `manager`.
    pub fn apply(
        &self,
        rt: &ResourceType,
        old: &Value,
        applied: &Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, ApiError> {
        let (schema, schemas) = self.schema_of(rt);
        let entries = managed_entries(old);
        let (mut merged, entries) = managedfields::apply(
            old,
            applied,
            manager,
            &rt.api_version(),
            force,
            &entries,
            &now(),
            &schema,
            &schemas,
        )
        .map_err(|c| {
            let mut e = ApiError::new(409, "Conflict", c.to_string());
            e.details = Some(Box::new(json!({"name": rkube_core::meta::name(old), "group": rt.group, "kind": rt.plural,
                "causes": c.0.iter().map(|x| json!({"reason": "FieldManagerConflict",
                    "message": format!("conflict with {}", x.manager), "field": x.field})).collect::<Vec<_>>()})));
            e
        })?;
        set_entries(&mut merged, entries);
        Ok(merged)
    }

    /// Server-side apply creating a new object: the applied configuration owned by `manager`.
    pub fn apply_to_new(
        &self,
        rt: &ResourceType,
        applied: Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        self.apply(rt, &json!({}), &applied, manager, true)
            .map(|mut v| {
                // The live object was empty: apiVersion/kind come from the applied config.
                v["apiVersion"] = applied["apiVersion"].clone();
                v["kind"] = applied["kind"].clone();
                v
            })
    }

    /// Records in `new.metadata.managedFields` that `manager` set the fields changed from
    /// `old` (an Update operation).
    pub fn track_managed_fields(
        &self,
        rt: &ResourceType,
        old: Option<&Value>,
        new: &mut Value,
        manager: &str,
        subresource: &str,
    ) {
        let (schema, schemas) = self.schema_of(rt);
        let entries = old
            .map(managed_entries)
            .unwrap_or_else(|| managed_entries(new));
        let mut entries = managedfields::update(
            old.unwrap_or(&json!({})),
            new,
            manager,
            &rt.api_version(),
            &entries,
            &now(),
            &schema,
            &schemas,
        );
        if !subresource.is_empty() {
            for e in entries
                .iter_mut()
                .filter(|e| e.manager == manager && e.operation == "Update")
            {
                e.subresource = subresource.to_string();
            }
        }
        set_entries(new, entries);
    }
}

fn managed_entries(obj: &Value) -> Vec<managedfields::ManagedFieldsEntry> {
    obj.pointer("/metadata/managedFields")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default()
}

fn set_entries(obj: &mut Value, entries: Vec<managedfields::ManagedFieldsEntry>) {
    let m = rkube_core::meta::metadata_mut(obj);
    if entries.is_empty() {
        m.remove("managedFields");
    } else {
        let entries = entries.into_iter().map(|e| e.into_json()).collect();
        m.insert("managedFields".into(), Value::Array(entries));
    }
}

fn now() -> String {
    crate::rest::now_rfc3339()
}
