//! The REST operations of each resource, as data that both the v2 and the v3 documents render.
//!
//! Upstream's installer derives paths, operation ids, `x-kubernetes-action` and the query
//! parameters from the verbs a resource supports; this module does the same from a
//! [`ResourceType`], so the two documents cannot disagree about what is served.

use rkube_core::registry::ResourceType;

use crate::definitions::{DELETE_OPTIONS, PATCH, SCALE, STATUS, WATCH_EVENT};

/// Kind of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// A string.
    String,
    /// A boolean.
    Boolean,
    /// An integer.
    Integer,
}

/// A query or path parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// The parameter's name.
    pub name: &'static str,
    /// `query` or `path`.
    pub location: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Its value type.
    pub ty: ParamType,
}

const fn query(name: &'static str, ty: ParamType, description: &'static str) -> Param {
    Param {
        name,
        location: "query",
        description,
        ty,
    }
}

const fn path(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: "path",
        description,
        ty: ParamType::String,
    }
}

use ParamType::{Boolean, Integer, String as Str};

/// `pretty`.
pub const PRETTY: Param = query(
    "pretty",
    Str,
    "If 'true', then the output is pretty printed.",
);
/// `dryRun`.
pub const DRY_RUN: Param = query(
    "dryRun",
    Str,
    "When present, indicates that modifications should not be persisted. Valid value: All (process every stage of the request without persisting it).",
);
/// `fieldManager`.
pub const FIELD_MANAGER: Param = query(
    "fieldManager",
    Str,
    "Name of the actor making the change, recorded in managed fields. At most 128 printable characters. Required for apply patches.",
);
/// `fieldValidation`.
pub const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    Str,
    "How the server treats unknown or duplicate fields in the request body: Ignore (drop them silently), Warn (drop them and return a warning per field) or Strict (fail the request).",
);
/// `force`.
pub const FORCE: Param = query(
    "force",
    Boolean,
    "Force is going to \"force\" Apply requests: the request takes over fields other managers own. Must be unset for non-apply patches.",
);
const NAME: Param = path("name", "name of the object");
const NAMESPACE: Param = path(
    "namespace",
    "object name and auth scope, such as for teams and projects",
);

/// Parameters of list and watch requests.
pub const LIST_PARAMS: &[Param] = &[
    query(
        "allowWatchBookmarks",
        Boolean,
        "Ask for watch events of type BOOKMARK; servers may ignore it.",
    ),
    query(
        "continue",
        Str,
        "The continue token of a previous paged list call, to fetch the next page.",
    ),
    query(
        "fieldSelector",
        Str,
        "Restrict the returned objects by their fields. Defaults to everything.",
    ),
    query(
        "labelSelector",
        Str,
        "Restrict the returned objects by their labels. Defaults to everything.",
    ),
    query(
        "limit",
        Integer,
        "Maximum number of objects to return; the response carries a continue token when more exist.",
    ),
    query(
        "resourceVersion",
        Str,
        "Which resource version the list or watch starts from; see resourceVersionMatch.",
    ),
    query(
        "resourceVersionMatch",
        Str,
        "How resourceVersion applies to a list call: Exact or NotOlderThan.",
    ),
    query(
        "sendInitialEvents",
        Boolean,
        "With watch=true, start the watch with synthetic ADDED events for the current state.",
    ),
    query(
        "timeoutSeconds",
        Integer,
        "Timeout for the list or watch call, regardless of activity.",
    ),
    query(
        "watch",
        Boolean,
        "Watch for changes to the described resources and return them as a stream of add, update and remove notifications.",
    ),
];

/// Parameters of delete requests.
pub const DELETE_PARAMS: &[Param] = &[
    DRY_RUN,
    query(
        "gracePeriodSeconds",
        Integer,
        "Seconds before the object should be deleted; zero means immediately.",
    ),
    query(
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        Boolean,
        "Delete an object whose stored data cannot be decoded. Dangerous.",
    ),
    query(
        "orphanDependents",
        Boolean,
        "Deprecated: use propagationPolicy. Whether dependents are orphaned.",
    ),
    query(
        "propagationPolicy",
        Str,
        "Whether and how garbage collection is performed: Orphan, Background or Foreground.",
    ),
];

/// Parameters of create and replace requests.
pub const WRITE_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
/// Parameters of patch requests.
pub const PATCH_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];

/// Content types a PATCH accepts.
pub const PATCH_CONTENT_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+cbor",
];

/// Content types responses are offered in.
pub const PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/cbor",
];

/// Content types a watch streams in.
pub const PRODUCES_WATCH: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/cbor",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/cbor-seq",
];

/// One operation on a path.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// HTTP method, lower case.
    pub method: &'static str,
    /// Upstream-style operation id, e.g. `listAppsV1NamespacedDeployment`.
    pub id: String,
    /// `x-kubernetes-action`.
    pub action: &'static str,
    /// Human description.
    pub description: String,
    /// Query parameters.
    pub params: &'static [Param],
    /// Definition of the request body, if any (`Patch` for PATCH).
    pub body: Option<String>,
    /// Definition of the successful response.
    pub response: String,
    /// Successful status codes.
    pub statuses: &'static [&'static str],
    /// Group, version and kind the operation is about.
    pub gvk: (String, String, String),
}

/// One path and its operations.
#[derive(Debug, Clone, PartialEq)]
pub struct PathItem {
    /// The URL path, e.g. `/apis/apps/v1/namespaces/{namespace}/deployments/{name}`.
    pub path: String,
    /// Path-level parameters (path parameters and `pretty`).
    pub params: Vec<Param>,
    /// Operations.
    pub operations: Vec<Operation>,
}

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`: how upstream names a group version in ids.
pub fn id_infix(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    let mut out = String::new();
    for part in group.split(['.', '-']).chain(std::iter::once(version)) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// `core_v1`, `apps_v1`, `rbacAuthorization_v1`: upstream's operation tag.
pub fn tag(group: &str, version: &str) -> String {
    let infix = id_infix(group, version);
    let group_part = &infix[..infix.len().saturating_sub(version.len())];
    let mut chars = group_part.chars();
    let lowered: String = chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default();
    format!("{lowered}_{version}")
}

/// The paths of one resource, whose kind's schema is `definition`.
pub fn resource_paths(r: &ResourceType, definition: &str) -> Vec<PathItem> {
    let has = |verb: &str| r.verbs.iter().any(|v| v == verb);
    let infix = id_infix(&r.group, &r.version);
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let kind = &r.kind;
    let list_def = crate::definitions::list_definition_name(definition);
    let gvk = (r.group.clone(), r.version.clone(), r.kind.clone());
    let prefix = r.group_version_path();
    let ns_part = if r.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let scope_params: Vec<Param> = if r.namespaced {
        vec![NAMESPACE]
    } else {
        vec![]
    };
    let with = |mut extra: Vec<Param>| {
        let mut p = vec![];
        p.append(&mut extra);
        p.extend(scope_params.iter().copied());
        p.push(PRETTY);
        p
    };
    let op = |method,
              id: String,
              action,
              description: String,
              params,
              body: Option<&str>,
              response: &str,
              statuses| {
        Operation {
            method,
            id,
            action,
            description,
            params,
            body: body.map(str::to_string),
            response: response.to_string(),
            statuses,
            gvk: gvk.clone(),
        }
    };
    let mut out = Vec::new();

    let mut collection = Vec::new();
    if has("list") {
        collection.push(op(
            "get",
            format!("list{infix}{scope}{kind}"),
            "list",
            format!("list or watch objects of kind {kind}"),
            LIST_PARAMS,
            None,
            &list_def,
            &["200"],
        ));
    }
    if has("create") {
        collection.push(op(
            "post",
            format!("create{infix}{scope}{kind}"),
            "post",
            format!("create a {kind}"),
            WRITE_PARAMS,
            Some(definition),
            definition,
            &["200", "201", "202"],
        ));
    }
    if has("deletecollection") {
        collection.push(op(
            "delete",
            format!("delete{infix}Collection{scope}{kind}"),
            "deletecollection",
            format!("delete collection of {kind}"),
            collection_delete_params(),
            Some(DELETE_OPTIONS),
            STATUS,
            &["200"],
        ));
    }
    if !collection.is_empty() {
        out.push(PathItem {
            path: format!("{prefix}{ns_part}/{}", r.plural),
            params: with(vec![]),
            operations: collection,
        });
    }

    let mut item = Vec::new();
    if has("get") {
        item.push(op(
            "get",
            format!("read{infix}{scope}{kind}"),
            "get",
            format!("read the specified {kind}"),
            &[],
            None,
            definition,
            &["200"],
        ));
    }
    if has("update") {
        item.push(op(
            "put",
            format!("replace{infix}{scope}{kind}"),
            "put",
            format!("replace the specified {kind}"),
            WRITE_PARAMS,
            Some(definition),
            definition,
            &["200", "201"],
        ));
    }
    if has("patch") {
        item.push(op(
            "patch",
            format!("patch{infix}{scope}{kind}"),
            "patch",
            format!("partially update the specified {kind}"),
            PATCH_PARAMS,
            Some(PATCH),
            definition,
            &["200", "201"],
        ));
    }
    if has("delete") {
        item.push(op(
            "delete",
            format!("delete{infix}{scope}{kind}"),
            "delete",
            format!("delete a {kind}"),
            DELETE_PARAMS,
            Some(DELETE_OPTIONS),
            STATUS,
            &["200", "202"],
        ));
    }
    if !item.is_empty() {
        out.push(PathItem {
            path: format!("{prefix}{ns_part}/{}/{{name}}", r.plural),
            params: with(vec![NAME]),
            operations: item,
        });
    }

    for sub in &r.subresources {
        let (suffix, sub_def, sub_gvk) = match sub.as_str() {
            "status" => ("Status", definition, gvk.clone()),
            "scale" => (
                "Scale",
                SCALE,
                (
                    "autoscaling".to_string(),
                    "v1".to_string(),
                    "Scale".to_string(),
                ),
            ),
            _ => continue,
        };
        let mut ops = vec![
            op(
                "get",
                format!("read{infix}{scope}{kind}{suffix}"),
                "get",
                format!("read {sub} of the specified {kind}"),
                &[],
                None,
                sub_def,
                &["200"],
            ),
            op(
                "put",
                format!("replace{infix}{scope}{kind}{suffix}"),
                "put",
                format!("replace {sub} of the specified {kind}"),
                WRITE_PARAMS,
                Some(sub_def),
                sub_def,
                &["200", "201"],
            ),
            op(
                "patch",
                format!("patch{infix}{scope}{kind}{suffix}"),
                "patch",
                format!("partially update {sub} of the specified {kind}"),
                PATCH_PARAMS,
                Some(PATCH),
                sub_def,
                &["200", "201"],
            ),
        ];
        for o in &mut ops {
            o.gvk = sub_gvk.clone();
        }
        out.push(PathItem {
            path: format!("{prefix}{ns_part}/{}/{{name}}/{sub}", r.plural),
            params: with(vec![NAME]),
            operations: ops,
        });
    }

    if has("watch") {
        let watch_params = |extra| {
            let mut all = with(extra);
            all.extend(LIST_PARAMS.iter().copied());
            all
        };
        out.push(PathItem {
            path: format!("{prefix}/watch{ns_part}/{}", r.plural),
            params: watch_params(vec![]),
            operations: vec![op("get", format!("watch{infix}{scope}{kind}List"), "watchlist", format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."), &[], None, WATCH_EVENT, &["200"])],
        });
        out.push(PathItem {
            path: format!("{prefix}/watch{ns_part}/{}/{{name}}", r.plural),
            params: watch_params(vec![NAME]),
            operations: vec![op("get", format!("watch{infix}{scope}{kind}"), "watch", format!("watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."), &[], None, WATCH_EVENT, &["200"])],
        });
    }

    if r.namespaced && has("list") {
        let mut all = LIST_PARAMS.to_vec();
        all.push(PRETTY);
        out.push(PathItem {
            path: format!("{prefix}/{}", r.plural),
            params: all.clone(),
            operations: vec![op(
                "get",
                format!("list{infix}{kind}ForAllNamespaces"),
                "list",
                format!("list or watch objects of kind {kind}"),
                &[],
                None,
                &list_def,
                &["200"],
            )],
        });
        if has("watch") {
            out.push(PathItem {
                path: format!("{prefix}/watch/{}", r.plural),
                params: all,
                operations: vec![op("get", format!("watch{infix}{kind}ListForAllNamespaces"), "watchlist", format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."), &[], None, WATCH_EVENT, &["200"])],
            });
        }
    }
    out
}

/// Delete-collection takes both the delete and the list parameters.
fn collection_delete_params() -> &'static [Param] {
    use std::sync::OnceLock;
    static PARAMS: OnceLock<Vec<Param>> = OnceLock::new();
    PARAMS.get_or_init(|| {
        let mut p = DELETE_PARAMS.to_vec();
        p.extend(
            LIST_PARAMS
                .iter()
                .filter(|q| !matches!(q.name, "allowWatchBookmarks" | "watch")),
        );
        p.sort_by_key(|q| q.name);
        p
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_core::registry::Registry;

    #[test]
    fn ids_and_tags_follow_upstream() {
        assert_eq!(id_infix("", "v1"), "CoreV1");
        assert_eq!(
            id_infix("rbac.authorization.k8s.io", "v1"),
            "RbacAuthorizationV1"
        );
        assert_eq!(id_infix("apiextensions.k8s.io", "v1"), "ApiextensionsV1");
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
        assert_eq!(tag("", "v1"), "core_v1");
    }

    #[test]
    fn deployment_paths() {
        let reg = Registry::builtin();
        let d = reg.lookup("apps", "v1", "deployments").unwrap();
        let paths = resource_paths(d, &d.definition);
        let item = paths
            .iter()
            .find(|p| p.path == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            .unwrap();
        let patch = item
            .operations
            .iter()
            .find(|o| o.method == "patch")
            .unwrap();
        assert_eq!(patch.id, "patchAppsV1NamespacedDeployment");
        assert!(patch.params.iter().any(|p| p.name == "fieldValidation"));
        let scale = paths.iter().find(|p| p.path.ends_with("/scale")).unwrap();
        assert_eq!(scale.operations[0].gvk.2, "Scale");
        assert!(paths.iter().any(|p| p.path == "/apis/apps/v1/deployments"));
        assert!(
            paths
                .iter()
                .any(|p| p.path == "/apis/apps/v1/watch/namespaces/{namespace}/deployments/{name}")
        );
    }

    #[test]
    fn binding_only_creates() {
        let reg = Registry::builtin();
        let b = reg.lookup("", "v1", "bindings").unwrap();
        let paths = resource_paths(b, &b.definition);
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0].operations[0].action, "post");
    }
}
