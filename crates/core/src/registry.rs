//! The resource registry: every kind the API serves, as data.
//!
//! Upstream spreads this over Go types, `RESTStorage` constructors and discovery code; here one
//! table row says everything the generic REST handler, discovery, OpenAPI and the store need to
//! know about a kind. Behaviour that differs per kind lives in the apiserver's strategies, keyed
//! by [`ResourceType::kind`] and [`ResourceType::group`].

/// Verbs every ordinary stored resource supports.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One served resource: a (group, version, plural) with its kind and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, empty for the core ("legacy") group.
    pub group: String,
    /// Served version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Plural resource name used in URLs, e.g. `deployments`.
    pub plural: String,
    /// Singular name as discovery reports it, e.g. `deployment`.
    pub singular: String,
    /// Whether objects live inside a namespace.
    pub namespaced: bool,
    /// kubectl short names, e.g. `deploy`.
    pub short_names: Vec<String>,
    /// Discovery categories, e.g. `all`.
    pub categories: Vec<String>,
    /// Subresources served beside the main resource, e.g. `status`, `scale`.
    pub subresources: Vec<String>,
    /// Verbs the main resource supports.
    pub verbs: Vec<String>,
    /// OpenAPI definition name of the kind, e.g. `io.k8s.api.apps.v1.Deployment`; empty for
    /// custom resources, whose schema comes from their CustomResourceDefinition.
    pub definition: String,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `pods` for the core group: how upstream names a resource in errors.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind of a list of these objects, e.g. `DeploymentList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// URL prefix of the group version: `/api/v1` or `/apis/apps/v1`.
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The group whose objects this resource's objects are: its own group, except for a
    /// resource that is only another view of a resource of another group (see
    /// [`SHARED_STORAGE`]).
    pub fn storage_group(&self) -> &str {
        SHARED_STORAGE
            .iter()
            .find(|(group, plural, _)| *group == self.group && *plural == self.plural)
            .map_or(self.group.as_str(), |(_, _, stored)| stored)
    }

    /// Whether this resource is a view of another group's stored objects (converted on the
    /// way in and out), as `events.k8s.io` Events are of core Events.
    pub fn is_view_of_other_group(&self) -> bool {
        self.storage_group() != self.group
    }

    /// Store key prefix under which all objects of this resource live (ends with `/`).
    ///
    /// Core resources sit at `/registry/<plural>/` as upstream stores them; other groups add
    /// the group so that two groups' same-named resources never share keys. A resource in
    /// [`SHARED_STORAGE`] uses the prefix of the resource it is a view of.
    pub fn key_prefix(&self) -> String {
        let group = self.storage_group();
        if group.is_empty() {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", group, self.plural)
        }
    }

    /// Store key prefix of one namespace's objects (or all objects, when cluster-scoped or
    /// `namespace` is `None`).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{}/", self.key_prefix(), ns),
            _ => self.key_prefix(),
        }
    }

    /// Store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{}/{}", self.key_prefix(), ns, name),
            _ => format!("{}{}", self.key_prefix(), name),
        }
    }

    /// Whether `name` is how a user may refer to this resource on kubectl's command line.
    pub fn answers_to(&self, name: &str) -> bool {
        self.plural == name
            || self.singular == name
            || self.kind.eq_ignore_ascii_case(name)
            || self.short_names.iter().any(|s| s == name)
    }
}

/// Resources that are another group's view of the same stored objects: (group, plural,
/// storage group). Upstream keeps one Event resource at `/registry/events/NS/NAME` and serves
/// it as core `v1` Events and as `events.k8s.io/v1` Events, converting field by field.
pub const SHARED_STORAGE: &[(&str, &str, &str)] = &[("events.k8s.io", "events", "")];

/// Compact description of a built-in row: (group, version, kind, plural, namespaced, short
/// names, categories, subresources, definition package).
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
    &'static str,
);

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

/// The built-in kinds, in the order discovery lists them.
const BUILTINS: &[Row] = &[
    (
        "",
        "v1",
        "Binding",
        "bindings",
        true,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        &["cm"],
        NONE,
        NONE,
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "Endpoints",
        "endpoints",
        true,
        &["ep"],
        NONE,
        NONE,
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        NONE,
        NONE,
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "LimitRange",
        "limitranges",
        true,
        &["limits"],
        NONE,
        NONE,
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        &["ns"],
        NONE,
        &["status", "finalize"],
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "Node",
        "nodes",
        false,
        &["no"],
        NONE,
        &["status", "proxy"],
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        NONE,
        &["status"],
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
        NONE,
        &["status"],
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "Pod",
        "pods",
        true,
        &["po"],
        ALL,
        &[
            "status",
            "binding",
            "eviction",
            "log",
            "exec",
            "attach",
            "portforward",
            "ephemeralcontainers",
            "proxy",
        ],
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
        &["rc"],
        ALL,
        &["status", "scale"],
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        &["quota"],
        NONE,
        &["status"],
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "Secret",
        "secrets",
        true,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        NONE,
        &["token"],
        "io.k8s.api.core.v1",
    ),
    (
        "",
        "v1",
        "Service",
        "services",
        true,
        &["svc"],
        ALL,
        &["status", "proxy"],
        "io.k8s.api.core.v1",
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        NONE,
        &["status"],
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1",
    ),
    (
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.apps.v1",
    ),
    (
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        &["ds"],
        ALL,
        &["status"],
        "io.k8s.api.apps.v1",
    ),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        ALL,
        &["status", "scale"],
        "io.k8s.api.apps.v1",
    ),
    (
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        ALL,
        &["status", "scale"],
        "io.k8s.api.apps.v1",
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        &["sts"],
        ALL,
        &["status", "scale"],
        "io.k8s.api.apps.v1",
    ),
    (
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        true,
        &["cj"],
        ALL,
        &["status"],
        "io.k8s.api.batch.v1",
    ),
    (
        "batch",
        "v1",
        "Job",
        "jobs",
        true,
        NONE,
        ALL,
        &["status"],
        "io.k8s.api.batch.v1",
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.coordination.v1",
    ),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.discovery.v1",
    ),
    (
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        NONE,
        NONE,
        "io.k8s.api.events.v1",
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.networking.v1",
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        &["ing"],
        NONE,
        &["status"],
        "io.k8s.api.networking.v1",
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        &["netpol"],
        NONE,
        NONE,
        "io.k8s.api.networking.v1",
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
        NONE,
        &["status"],
        "io.k8s.api.policy.v1",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.rbac.v1",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.rbac.v1",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.rbac.v1",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.rbac.v1",
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
        NONE,
        NONE,
        "io.k8s.api.scheduling.v1",
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        &["sc"],
        NONE,
        NONE,
        "io.k8s.api.storage.v1",
    ),
];

/// The registry of served resources: the built-ins plus any added at run time (custom
/// resources from CRDs).
#[derive(Debug, Clone)]
pub struct Registry {
    resources: Vec<ResourceType>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// The registry of built-in kinds only.
    pub fn builtin() -> Self {
        let resources = BUILTINS
            .iter()
            .map(
                |&(group, version, kind, plural, namespaced, short, cats, subs, package)| {
                    let verbs: &[&str] = if kind == "Binding" {
                        &["create"]
                    } else {
                        STANDARD_VERBS
                    };
                    ResourceType {
                        group: group.into(),
                        version: version.into(),
                        kind: kind.into(),
                        plural: plural.into(),
                        singular: kind.to_ascii_lowercase(),
                        namespaced,
                        short_names: short.iter().map(|s| s.to_string()).collect(),
                        categories: cats.iter().map(|s| s.to_string()).collect(),
                        subresources: subs.iter().map(|s| s.to_string()).collect(),
                        verbs: verbs.iter().map(|s| s.to_string()).collect(),
                        definition: format!("{package}.{kind}"),
                    }
                },
            )
            .collect();
        Registry { resources }
    }

    /// All served resources.
    pub fn resources(&self) -> &[ResourceType] {
        &self.resources
    }

    /// Adds or replaces a resource (a custom resource from a CRD).
    pub fn upsert(&mut self, resource: ResourceType) {
        self.resources.retain(|r| {
            !(r.group == resource.group
                && r.version == resource.version
                && r.plural == resource.plural)
        });
        self.resources.push(resource);
    }

    /// Removes every version of `plural` in `group`.
    pub fn remove(&mut self, group: &str, plural: &str) {
        self.resources
            .retain(|r| !(r.group == group && r.plural == plural));
    }

    /// The resource served at `group`/`version`/`plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The resource of a kind in an `apiVersion`, e.g. (`apps/v1`, `Deployment`).
    pub fn lookup_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        let (group, version) = split_api_version(api_version);
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// The group versions served, core first, each once, in registry order.
    pub fn group_versions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for r in &self.resources {
            let gv = (r.group.clone(), r.version.clone());
            if !out.contains(&gv) {
                out.push(gv);
            }
        }
        out
    }

    /// The resources of one group version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceType> + 'a {
        self.resources
            .iter()
            .filter(move |r| r.group == group && r.version == version)
    }
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_upstream_layout() {
        let reg = Registry::builtin();
        let pods = reg.lookup("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        let deploy = reg.lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(
            deploy.key(Some("ns"), "d"),
            "/registry/apps/deployments/ns/d"
        );
        let ns = reg.lookup("", "v1", "namespaces").unwrap();
        assert_eq!(
            ns.key(Some("ignored"), "kube-system"),
            "/registry/namespaces/kube-system"
        );
    }

    #[test]
    fn events_k8s_io_events_share_core_event_keys() {
        let reg = Registry::builtin();
        let core = reg.lookup("", "v1", "events").unwrap();
        let events = reg.lookup("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(events.key(Some("ns"), "e"), "/registry/events/ns/e");
        assert_eq!(events.key_prefix(), core.key_prefix());
        assert!(events.is_view_of_other_group());
        assert!(!core.is_view_of_other_group());
        assert_eq!(events.group_resource(), "events.events.k8s.io");
    }

    #[test]
    fn kubectl_names_resolve() {
        let reg = Registry::builtin();
        let deploy = reg.lookup_kind("apps/v1", "Deployment").unwrap();
        assert!(deploy.answers_to("deploy"));
        assert!(deploy.answers_to("deployment"));
        assert!(deploy.answers_to("deployments"));
        assert_eq!(deploy.group_resource(), "deployments.apps");
        assert_eq!(deploy.definition, "io.k8s.api.apps.v1.Deployment");
    }

    #[test]
    fn core_group_comes_first() {
        let reg = Registry::builtin();
        assert_eq!(reg.group_versions()[0], ("".to_string(), "v1".to_string()));
    }
}
