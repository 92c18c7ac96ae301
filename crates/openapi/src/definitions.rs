//! The OpenAPI definitions of the built-in API: every kind the registry serves, its list kind,
//! the meta types every API uses, and everything they reference.
//!
//! k8s-openapi already names its schemars schemas as upstream does
//! (`io.k8s.api.apps.v1.Deployment`), so one schemars generator walking a table of root types
//! collects the closure under upstream's names. What schemars lacks is added here: list kinds
//! (k8s-openapi's generic `List<T>` has no schema), `x-kubernetes-group-version-kind`, the
//! per-field patch and list-type extensions ([`crate::extensions`]) and upstream's spelling of
//! the few types that are "int or string" or free-form.
//!
//! Definitions are kept in Swagger 2.0 form (`#/definitions/...` references with sibling
//! descriptions); the v3 document rewrites them ([`crate::v3`]).

use std::sync::OnceLock;

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta;
use rkube_core::registry::Registry;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

/// Prefix of a Swagger 2.0 definition reference.
pub const V2_REF_PREFIX: &str = "#/definitions/";

/// `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`.
pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
/// `io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta`.
pub const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
/// `io.k8s.apimachinery.pkg.apis.meta.v1.Status`.
pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
/// `io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions`.
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
/// `io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent`.
pub const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
/// `io.k8s.apimachinery.pkg.apis.meta.v1.Patch`.
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
/// `io.k8s.api.autoscaling.v1.Scale`, the body of every `scale` subresource.
pub const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
/// `io.k8s.apimachinery.pkg.util.intstr.IntOrString`.
pub const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
/// `io.k8s.apimachinery.pkg.api.resource.Quantity`.
pub const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// One root of the definition table: its upstream name and how to add it (and what it
/// references) to a generator.
pub struct Root {
    /// The upstream definition name, from the type's `JsonSchema::schema_name`.
    pub name: fn() -> std::borrow::Cow<'static, str>,
    /// Adds the type's schema and every schema it references to the generator.
    pub register: fn(&mut SchemaGenerator),
}

macro_rules! roots {
    ($($ty:ty),* $(,)?) => {
        &[$(Root {
            name: <$ty as JsonSchema>::schema_name,
            register: |g: &mut SchemaGenerator| { g.subschema_for::<$ty>(); },
        }),*]
    };
}

/// The table of root types: every built-in kind of the registry plus the meta types that
/// requests and responses use. Everything they reference comes along.
pub const ROOTS: &[Root] = roots![
    // core/v1
    api::core::v1::Binding,
    api::core::v1::ConfigMap,
    api::core::v1::Endpoints,
    api::core::v1::Event,
    api::core::v1::LimitRange,
    api::core::v1::Namespace,
    api::core::v1::Node,
    api::core::v1::PersistentVolumeClaim,
    api::core::v1::PersistentVolume,
    api::core::v1::Pod,
    api::core::v1::PodTemplate,
    api::core::v1::ReplicationController,
    api::core::v1::ResourceQuota,
    api::core::v1::Secret,
    api::core::v1::ServiceAccount,
    api::core::v1::Service,
    // apiextensions.k8s.io/v1
    apiextensions::v1::CustomResourceDefinition,
    // apps/v1
    api::apps::v1::ControllerRevision,
    api::apps::v1::DaemonSet,
    api::apps::v1::Deployment,
    api::apps::v1::ReplicaSet,
    api::apps::v1::StatefulSet,
    // batch/v1
    api::batch::v1::CronJob,
    api::batch::v1::Job,
    // others
    api::coordination::v1::Lease,
    api::discovery::v1::EndpointSlice,
    api::events::v1::Event,
    api::networking::v1::IngressClass,
    api::networking::v1::Ingress,
    api::networking::v1::NetworkPolicy,
    api::policy::v1::PodDisruptionBudget,
    api::policy::v1::Eviction,
    api::rbac::v1::ClusterRoleBinding,
    api::rbac::v1::ClusterRole,
    api::rbac::v1::RoleBinding,
    api::rbac::v1::Role,
    api::scheduling::v1::PriorityClass,
    api::storage::v1::StorageClass,
    api::autoscaling::v1::Scale,
    api::authentication::v1::TokenRequest,
    // meta
    meta::v1::Status,
    meta::v1::DeleteOptions,
    meta::v1::WatchEvent<serde_json::Value>,
    meta::v1::Patch,
    meta::v1::APIResourceList,
    meta::v1::APIGroupList,
    meta::v1::APIGroup,
    meta::v1::APIVersions,
];

/// Kinds outside the registry that still carry a GVK, as (definition, group, version, kind).
const EXTRA_KINDS: &[(&str, &str, &str, &str)] = &[
    ("io.k8s.api.core.v1.PodTemplate", "", "v1", "PodTemplate"),
    ("io.k8s.api.policy.v1.Eviction", "policy", "v1", "Eviction"),
    (SCALE, "autoscaling", "v1", "Scale"),
    (
        "io.k8s.api.authentication.v1.TokenRequest",
        "authentication.k8s.io",
        "v1",
        "TokenRequest",
    ),
    (STATUS, "", "v1", "Status"),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
        "",
        "v1",
        "APIResourceList",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList",
        "",
        "v1",
        "APIGroupList",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup",
        "",
        "v1",
        "APIGroup",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
        "",
        "v1",
        "APIVersions",
    ),
];

/// A `$ref` to a definition, Swagger 2.0 style.
pub fn v2_ref(name: &str) -> Value {
    json!({ "$ref": format!("{V2_REF_PREFIX}{name}") })
}

/// The definition name a `$ref` points at, if it is a local definition reference.
pub fn ref_name(reference: &str) -> Option<&str> {
    reference
        .strip_prefix(V2_REF_PREFIX)
        .or_else(|| reference.strip_prefix("#/components/schemas/"))
}

/// The upstream definition package of a definition name: `io.k8s.api.apps.v1` for
/// `io.k8s.api.apps.v1.Deployment`.
pub fn package_of(definition: &str) -> &str {
    definition.rsplit_once('.').map_or("", |(p, _)| p)
}

/// The `x-kubernetes-group-version-kind` entry of one GVK.
pub fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

/// The built-in definitions (every root, its references and the list kinds of the builtin
/// registry). Generated once per process, as they depend only on compiled-in types, and kept
/// serialized and compressed: as a JSON tree they would hold several MiB for the process's
/// whole life, while they are needed only when the documents are rebuilt (at start, on CRD
/// changes).
pub fn builtin() -> Map<String, Value> {
    static DEFS: OnceLock<crate::cache::Gzipped> = OnceLock::new();
    let kept = DEFS.get_or_init(|| {
        let defs = generate(&Registry::builtin());
        crate::cache::Gzipped::new(&serde_json::to_vec(&defs).unwrap_or_default())
    });
    serde_json::from_slice(&kept.decompress()).unwrap_or_default()
}

/// Generates the definitions for a registry's built-in kinds (resources with a `definition`).
fn generate(registry: &Registry) -> Map<String, Value> {
    let mut generator = SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = "/definitions".into();
            s.meta_schema = None;
            s.transforms.clear();
        })
        .into_generator();
    for root in ROOTS {
        (root.register)(&mut generator);
    }
    let mut defs = generator.take_definitions(false);
    fix_special(&mut defs);
    crate::extensions::apply(&mut defs);

    for r in registry.resources() {
        if r.definition.is_empty() || !defs.contains_key(&r.definition) {
            continue;
        }
        add_gvk(&mut defs, &r.definition, &r.group, &r.version, &r.kind);
        let list = list_definition_name(&r.definition);
        defs.insert(list.clone(), list_schema(&r.definition, &r.kind));
        add_gvk(&mut defs, &list, &r.group, &r.version, &r.list_kind());
    }
    for &(name, group, version, kind) in EXTRA_KINDS {
        add_gvk(&mut defs, name, group, version, kind);
    }
    // DeleteOptions and WatchEvent are served by every group version.
    for (group, version) in registry.group_versions() {
        add_gvk(&mut defs, DELETE_OPTIONS, &group, &version, "DeleteOptions");
        add_gvk(&mut defs, WATCH_EVENT, &group, &version, "WatchEvent");
    }
    sort_keys(&mut defs);
    defs
}

/// `io.k8s.api.apps.v1.DeploymentList` for `io.k8s.api.apps.v1.Deployment`.
pub fn list_definition_name(definition: &str) -> String {
    format!("{definition}List")
}

/// The schema of a list kind holding items of `item_definition`.
pub fn list_schema(item_definition: &str, kind: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("List of {kind} objects."),
                "type": "array",
                "items": v2_ref(item_definition),
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents.",
                "type": "string",
            },
            "metadata": {
                "$ref": format!("{V2_REF_PREFIX}{LIST_META}"),
                "description": "Standard list metadata.",
            },
        },
        "required": ["items"],
    })
}

/// Appends one GVK to a definition's `x-kubernetes-group-version-kind`, once.
pub fn add_gvk(defs: &mut Map<String, Value>, name: &str, group: &str, version: &str, kind: &str) {
    let Some(Value::Object(def)) = defs.get_mut(name) else {
        return;
    };
    let entry = gvk(group, version, kind);
    let list = def
        .entry("x-kubernetes-group-version-kind")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = list
        && !items.contains(&entry)
    {
        items.push(entry);
    }
}

/// Rewrites the types whose schemars form differs from upstream's OpenAPI: `IntOrString` is
/// a string with format `int-or-string`, `Quantity` a string, free-form JSON has no type.
fn fix_special(defs: &mut Map<String, Value>) {
    let keep_description = |v: Option<&Value>| {
        v.and_then(|d| d.get("description"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let int_or_string = keep_description(defs.get(INT_OR_STRING));
    if defs.contains_key(INT_OR_STRING) {
        defs.insert(
            INT_OR_STRING.into(),
            json!({ "description": int_or_string, "type": "string", "format": "int-or-string" }),
        );
    }
    let quantity = keep_description(defs.get(QUANTITY));
    if defs.contains_key(QUANTITY) {
        defs.insert(
            QUANTITY.into(),
            json!({ "description": quantity, "type": "string" }),
        );
    }
    for name in [
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray",
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool",
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray",
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
    ] {
        if let Some(Value::Object(def)) = defs.get_mut(name) {
            def.retain(|k, _| k == "description");
        }
    }
}

/// Sorts definitions by name so that documents (and their hashes) are stable.
pub fn sort_keys(defs: &mut Map<String, Value>) {
    let mut entries: Vec<(String, Value)> = std::mem::take(defs).into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    defs.extend(entries);
}

/// Every definition name referenced (transitively) from `start`, including the names in
/// `start` itself; names without a definition are skipped.
pub fn closure(defs: &Map<String, Value>, start: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut stack: Vec<String> = start.into_iter().collect();
    while let Some(name) = stack.pop() {
        if seen.contains(&name) {
            continue;
        }
        let Some(def) = defs.get(&name) else {
            continue;
        };
        seen.insert(name);
        collect_refs(def, &mut stack);
    }
    seen.into_iter().collect()
}

/// Pushes the definition names of every local `$ref` inside `value`.
pub fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(name) = v.as_str().and_then(ref_name) {
                        out.push(name.to_string());
                    }
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_kind_has_a_definition_with_gvk() {
        let defs = builtin();
        for r in Registry::builtin().resources() {
            let def = defs
                .get(&r.definition)
                .unwrap_or_else(|| panic!("missing {}", r.definition));
            let gvks = def["x-kubernetes-group-version-kind"].as_array().unwrap();
            assert!(
                gvks.contains(&gvk(&r.group, &r.version, &r.kind)),
                "{}",
                r.kind
            );
            let list = &defs[&list_definition_name(&r.definition)];
            assert_eq!(
                list["x-kubernetes-group-version-kind"][0]["kind"],
                r.list_kind()
            );
        }
    }

    #[test]
    fn upstream_names_and_descriptions() {
        let defs = builtin();
        for name in [
            "io.k8s.api.core.v1.PodSpec",
            OBJECT_META,
            QUANTITY,
            INT_OR_STRING,
            STATUS,
            DELETE_OPTIONS,
            WATCH_EVENT,
            "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
        ] {
            assert!(defs.contains_key(name), "{name}");
        }
        let pod = &defs["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        let spec = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert!(spec["description"].as_str().unwrap().contains("containers"));
        assert_eq!(defs[INT_OR_STRING]["format"], "int-or-string");
    }

    #[test]
    fn every_reference_resolves() {
        let defs = builtin();
        let mut refs = Vec::new();
        for def in defs.values() {
            collect_refs(def, &mut refs);
        }
        for r in refs {
            assert!(defs.contains_key(&r), "dangling {r}");
        }
    }

    #[test]
    fn closure_follows_references() {
        let names = closure(&builtin(), ["io.k8s.api.apps.v1.Deployment".to_string()]);
        assert!(names.iter().any(|n| n == "io.k8s.api.core.v1.Container"));
        assert!(names.iter().any(|n| n == OBJECT_META));
        assert!(!names.iter().any(|n| n == "io.k8s.api.rbac.v1.Role"));
    }
}
