//! Upstream's per-field vendor extensions that schemars schemas lack.
//!
//! Upstream derives `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-list-type` and `x-kubernetes-list-map-keys` from struct tags in its Go types.
//! k8s-openapi's schemas carry the doc comments but not these, yet strategic merge patch,
//! server-side apply and `kubectl apply` all depend on them. This module is the table of those
//! tags for the registry's kinds (pod template path first) and the pass that writes them into
//! the definitions.

use serde_json::{Map, Value};

/// One field's extensions: (definition, field, patch strategy, merge key, list type, map keys).
/// Empty strings mean "absent".
type FieldExt = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

const CORE: &str = "io.k8s.api.core.v1.";
const APPS: &str = "io.k8s.api.apps.v1.";
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";

/// The field extension table. Definition names are relative to a package prefix, given by the
/// first letter group: `c:` core/v1, `a:` apps/v1, `m:` meta/v1, otherwise a full name.
#[rustfmt::skip]
const FIELDS: &[FieldExt] = &[
    // PodSpec
    ("c:PodSpec", "volumes", "merge,retainKeys", "name", "map", &["name"]),
    ("c:PodSpec", "initContainers", "merge", "name", "map", &["name"]),
    ("c:PodSpec", "containers", "merge", "name", "map", &["name"]),
    ("c:PodSpec", "ephemeralContainers", "merge", "name", "map", &["name"]),
    ("c:PodSpec", "imagePullSecrets", "merge", "name", "map", &["name"]),
    ("c:PodSpec", "hostAliases", "merge", "ip", "map", &["ip"]),
    ("c:PodSpec", "tolerations", "", "", "atomic", &[]),
    ("c:PodSpec", "topologySpreadConstraints", "merge", "topologyKey", "map", &["topologyKey", "whenUnsatisfiable"]),
    ("c:PodSpec", "readinessGates", "", "", "atomic", &[]),
    ("c:PodSpec", "schedulingGates", "merge", "name", "map", &["name"]),
    ("c:PodSpec", "resourceClaims", "merge,retainKeys", "name", "map", &["name"]),
    ("c:PodDNSConfig", "nameservers", "", "", "atomic", &[]),
    ("c:PodDNSConfig", "searches", "", "", "atomic", &[]),
    ("c:PodDNSConfig", "options", "", "", "atomic", &[]),
    ("c:PodSecurityContext", "supplementalGroups", "", "", "atomic", &[]),
    ("c:PodSecurityContext", "sysctls", "", "", "atomic", &[]),
    ("c:HostAlias", "hostnames", "", "", "atomic", &[]),
    // Container and EphemeralContainer share their fields.
    ("c:Container", "command", "", "", "atomic", &[]),
    ("c:Container", "args", "", "", "atomic", &[]),
    ("c:Container", "ports", "merge", "containerPort", "map", &["containerPort", "protocol"]),
    ("c:Container", "envFrom", "", "", "atomic", &[]),
    ("c:Container", "env", "merge", "name", "map", &["name"]),
    ("c:Container", "volumeMounts", "merge", "mountPath", "map", &["mountPath"]),
    ("c:Container", "volumeDevices", "merge", "devicePath", "map", &["devicePath"]),
    ("c:Container", "resizePolicy", "", "", "atomic", &[]),
    ("c:Container", "restartPolicyRules", "", "", "atomic", &[]),
    ("c:EphemeralContainer", "command", "", "", "atomic", &[]),
    ("c:EphemeralContainer", "args", "", "", "atomic", &[]),
    ("c:EphemeralContainer", "ports", "merge", "containerPort", "map", &["containerPort", "protocol"]),
    ("c:EphemeralContainer", "envFrom", "", "", "atomic", &[]),
    ("c:EphemeralContainer", "env", "merge", "name", "map", &["name"]),
    ("c:EphemeralContainer", "volumeMounts", "merge", "mountPath", "map", &["mountPath"]),
    ("c:EphemeralContainer", "volumeDevices", "merge", "devicePath", "map", &["devicePath"]),
    ("c:EphemeralContainer", "resizePolicy", "", "", "atomic", &[]),
    ("c:EphemeralContainer", "restartPolicyRules", "", "", "atomic", &[]),
    ("c:ResourceRequirements", "claims", "", "", "map", &["name"]),
    ("c:Capabilities", "add", "", "", "atomic", &[]),
    ("c:Capabilities", "drop", "", "", "atomic", &[]),
    ("c:ExecAction", "command", "", "", "atomic", &[]),
    ("c:HTTPGetAction", "httpHeaders", "", "", "atomic", &[]),
    // Affinity and selectors
    ("c:NodeSelector", "nodeSelectorTerms", "", "", "atomic", &[]),
    ("c:NodeSelectorTerm", "matchExpressions", "", "", "atomic", &[]),
    ("c:NodeSelectorTerm", "matchFields", "", "", "atomic", &[]),
    ("c:NodeSelectorRequirement", "values", "", "", "atomic", &[]),
    ("c:NodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[]),
    ("c:PodAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[]),
    ("c:PodAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[]),
    ("c:PodAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[]),
    ("c:PodAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[]),
    ("c:PodAffinityTerm", "namespaces", "", "", "atomic", &[]),
    ("c:PodAffinityTerm", "matchLabelKeys", "", "", "atomic", &[]),
    ("c:PodAffinityTerm", "mismatchLabelKeys", "", "", "atomic", &[]),
    ("c:TopologySpreadConstraint", "matchLabelKeys", "", "", "atomic", &[]),
    ("m:LabelSelector", "matchExpressions", "", "", "atomic", &[]),
    ("m:LabelSelectorRequirement", "values", "", "", "atomic", &[]),
    // Volumes
    ("c:ProjectedVolumeSource", "sources", "", "", "atomic", &[]),
    ("c:ConfigMapVolumeSource", "items", "", "", "atomic", &[]),
    ("c:SecretVolumeSource", "items", "", "", "atomic", &[]),
    ("c:ConfigMapProjection", "items", "", "", "atomic", &[]),
    ("c:SecretProjection", "items", "", "", "atomic", &[]),
    ("c:DownwardAPIVolumeSource", "items", "", "", "atomic", &[]),
    ("c:DownwardAPIProjection", "items", "", "", "atomic", &[]),
    ("c:PersistentVolumeClaimSpec", "accessModes", "", "", "atomic", &[]),
    // PodStatus
    ("c:PodStatus", "conditions", "merge", "type", "map", &["type"]),
    ("c:PodStatus", "podIPs", "merge", "ip", "map", &["ip"]),
    ("c:PodStatus", "hostIPs", "merge", "ip", "map", &["ip"]),
    ("c:PodStatus", "initContainerStatuses", "", "", "atomic", &[]),
    ("c:PodStatus", "containerStatuses", "", "", "atomic", &[]),
    ("c:PodStatus", "ephemeralContainerStatuses", "", "", "atomic", &[]),
    ("c:PodStatus", "resourceClaimStatuses", "merge,retainKeys", "name", "map", &["name"]),
    ("c:ContainerStatus", "volumeMounts", "merge", "mountPath", "map", &["mountPath"]),
    ("c:ContainerStatus", "allocatedResourcesStatus", "merge", "name", "map", &["name"]),
    // ObjectMeta
    ("m:ObjectMeta", "finalizers", "merge", "", "set", &[]),
    ("m:ObjectMeta", "ownerReferences", "merge", "uid", "map", &["uid"]),
    ("m:ObjectMeta", "managedFields", "", "", "atomic", &[]),
    ("m:StatusDetails", "causes", "", "", "atomic", &[]),
    // Service
    ("c:ServiceSpec", "ports", "merge", "port", "map", &["port", "protocol"]),
    ("c:ServiceSpec", "externalIPs", "", "", "atomic", &[]),
    ("c:ServiceSpec", "loadBalancerSourceRanges", "", "", "atomic", &[]),
    ("c:ServiceSpec", "clusterIPs", "", "", "atomic", &[]),
    ("c:ServiceSpec", "ipFamilies", "", "", "atomic", &[]),
    ("c:ServiceStatus", "conditions", "merge", "type", "map", &["type"]),
    ("c:LoadBalancerStatus", "ingress", "", "", "atomic", &[]),
    ("c:LoadBalancerIngress", "ports", "", "", "atomic", &[]),
    // Node
    ("c:NodeSpec", "podCIDRs", "merge", "", "set", &[]),
    ("c:NodeSpec", "taints", "", "", "atomic", &[]),
    ("c:NodeStatus", "conditions", "merge", "type", "map", &["type"]),
    ("c:NodeStatus", "addresses", "merge", "type", "map", &["type"]),
    ("c:NodeStatus", "images", "", "", "atomic", &[]),
    ("c:NodeStatus", "volumesInUse", "", "", "atomic", &[]),
    ("c:NodeStatus", "volumesAttached", "", "", "atomic", &[]),
    // Namespace, volumes, controllers, service accounts, endpoints
    ("c:NamespaceSpec", "finalizers", "", "", "atomic", &[]),
    ("c:NamespaceStatus", "conditions", "merge", "type", "map", &["type"]),
    ("c:PersistentVolumeClaimStatus", "conditions", "merge", "type", "map", &["type"]),
    ("c:PersistentVolumeClaimStatus", "accessModes", "", "", "atomic", &[]),
    ("c:PersistentVolumeSpec", "accessModes", "", "", "atomic", &[]),
    ("c:PersistentVolumeSpec", "mountOptions", "", "", "atomic", &[]),
    ("c:ReplicationControllerStatus", "conditions", "merge", "type", "map", &["type"]),
    ("c:ServiceAccount", "secrets", "merge", "name", "map", &["name"]),
    ("c:ServiceAccount", "imagePullSecrets", "", "", "atomic", &[]),
    ("c:Endpoints", "subsets", "", "", "atomic", &[]),
    ("c:EndpointSubset", "addresses", "", "", "atomic", &[]),
    ("c:EndpointSubset", "notReadyAddresses", "", "", "atomic", &[]),
    ("c:EndpointSubset", "ports", "", "", "atomic", &[]),
    ("c:LimitRangeSpec", "limits", "", "", "atomic", &[]),
    ("c:ResourceQuotaSpec", "scopes", "", "", "atomic", &[]),
    ("c:ScopeSelector", "matchExpressions", "", "", "atomic", &[]),
    // apps/v1
    ("a:DeploymentStatus", "conditions", "merge", "type", "map", &["type"]),
    ("a:ReplicaSetStatus", "conditions", "merge", "type", "map", &["type"]),
    ("a:StatefulSetStatus", "conditions", "merge", "type", "map", &["type"]),
    ("a:DaemonSetStatus", "conditions", "merge", "type", "map", &["type"]),
    ("a:StatefulSetSpec", "volumeClaimTemplates", "", "", "atomic", &[]),
    // batch/v1
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "merge", "type", "atomic", &[]),
    ("io.k8s.api.batch.v1.CronJobStatus", "active", "", "", "atomic", &[]),
    ("io.k8s.api.batch.v1.PodFailurePolicy", "rules", "", "", "atomic", &[]),
    ("io.k8s.api.batch.v1.SuccessPolicy", "rules", "", "", "atomic", &[]),
    // others
    ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", "", "", "atomic", &[]),
    ("io.k8s.api.discovery.v1.EndpointSlice", "ports", "", "", "atomic", &[]),
    ("io.k8s.api.discovery.v1.Endpoint", "addresses", "", "", "set", &[]),
    ("io.k8s.api.networking.v1.IngressSpec", "tls", "", "", "atomic", &[]),
    ("io.k8s.api.networking.v1.IngressSpec", "rules", "", "", "atomic", &[]),
    ("io.k8s.api.networking.v1.IngressTLS", "hosts", "", "", "atomic", &[]),
    ("io.k8s.api.networking.v1.HTTPIngressRuleValue", "paths", "", "", "atomic", &[]),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "ingress", "", "", "atomic", &[]),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "egress", "", "", "atomic", &[]),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "policyTypes", "", "", "atomic", &[]),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "merge", "type", "map", &["type"]),
    ("io.k8s.api.rbac.v1.Role", "rules", "", "", "atomic", &[]),
    ("io.k8s.api.rbac.v1.ClusterRole", "rules", "", "", "atomic", &[]),
    ("io.k8s.api.rbac.v1.RoleBinding", "subjects", "", "", "atomic", &[]),
    ("io.k8s.api.rbac.v1.ClusterRoleBinding", "subjects", "", "", "atomic", &[]),
    ("io.k8s.api.rbac.v1.PolicyRule", "verbs", "", "", "atomic", &[]),
    ("io.k8s.api.rbac.v1.PolicyRule", "apiGroups", "", "", "atomic", &[]),
    ("io.k8s.api.rbac.v1.PolicyRule", "resources", "", "", "atomic", &[]),
    ("io.k8s.api.rbac.v1.PolicyRule", "resourceNames", "", "", "atomic", &[]),
    ("io.k8s.api.rbac.v1.PolicyRule", "nonResourceURLs", "", "", "atomic", &[]),
    ("io.k8s.api.storage.v1.StorageClass", "mountOptions", "", "", "atomic", &[]),
    ("io.k8s.api.storage.v1.StorageClass", "allowedTopologies", "", "", "atomic", &[]),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec", "versions", "", "", "atomic", &[]),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "conditions", "", "", "map", &["type"]),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "storedVersions", "", "", "atomic", &[]),
];

/// Structs upstream marks `x-kubernetes-map-type: atomic` (replaced as a whole by apply).
const ATOMIC_STRUCTS: &[&str] = &[
    "m:LabelSelector",
    "c:NodeSelector",
    "c:NodeSelectorTerm",
    "c:ObjectReference",
    "c:LocalObjectReference",
    "c:ConfigMapKeySelector",
    "c:SecretKeySelector",
    "c:ObjectFieldSelector",
    "c:ResourceFieldSelector",
    "c:TypedLocalObjectReference",
    "c:TopologySelectorTerm",
    "c:ConfigMapEnvSource",
    "c:SecretEnvSource",
];

/// Field defaults upstream publishes in its OpenAPI (`+default=` markers) that server-side
/// apply needs: a missing list-map key takes its default (`ports` are keyed by port *and*
/// protocol, which is usually left out).
#[rustfmt::skip]
const DEFAULTS: &[(&str, &str, &str)] = &[
    ("c:ContainerPort", "protocol", "TCP"),
    ("c:ServicePort", "protocol", "TCP"),
    ("c:EndpointPort", "protocol", "TCP"),
];

/// Expands a table name (`c:PodSpec`) into a definition name.
fn expand(name: &str) -> String {
    match name.split_once(':') {
        Some(("c", rest)) => format!("{CORE}{rest}"),
        Some(("a", rest)) => format!("{APPS}{rest}"),
        Some(("m", rest)) => format!("{META}{rest}"),
        _ => name.to_string(),
    }
}

/// The table as full names: (definition, field, strategy, merge key, list type, map keys).
pub fn table() -> impl Iterator<Item = (String, &'static FieldExt)> {
    FIELDS.iter().map(|f| (expand(f.0), f))
}

/// Writes the table's extensions into `defs`. Rows naming a missing definition or field are
/// skipped: the table may know fields a given API version lacks.
pub fn apply(defs: &mut Map<String, Value>) {
    for (definition, &(_, field, strategy, key, list_type, map_keys)) in table() {
        let Some(Value::Object(prop)) = defs
            .get_mut(&definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
        else {
            continue;
        };
        if !strategy.is_empty() {
            prop.insert("x-kubernetes-patch-strategy".into(), strategy.into());
        }
        if !key.is_empty() {
            prop.insert("x-kubernetes-patch-merge-key".into(), key.into());
        }
        if !list_type.is_empty() {
            prop.insert("x-kubernetes-list-type".into(), list_type.into());
        }
        if !map_keys.is_empty() {
            prop.insert(
                "x-kubernetes-list-map-keys".into(),
                Value::Array(map_keys.iter().map(|k| Value::from(*k)).collect()),
            );
        }
    }
    for &(definition, field, default) in DEFAULTS {
        if let Some(Value::Object(prop)) = defs
            .get_mut(&expand(definition))
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
        {
            prop.insert("default".into(), default.into());
        }
    }
    for name in ATOMIC_STRUCTS {
        if let Some(Value::Object(def)) = defs.get_mut(&expand(name)) {
            def.insert("x-kubernetes-map-type".into(), "atomic".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::builtin;

    fn prop(def: &str, field: &str) -> Value {
        builtin()[def]["properties"][field].clone()
    }

    #[test]
    fn pod_template_path_has_merge_keys() {
        let c = prop("io.k8s.api.core.v1.PodSpec", "containers");
        assert_eq!(c["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(c["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(c["x-kubernetes-list-type"], "map");
        let v = prop("io.k8s.api.core.v1.PodSpec", "volumes");
        assert_eq!(v["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let p = prop("io.k8s.api.core.v1.Container", "ports");
        assert_eq!(
            p["x-kubernetes-list-map-keys"],
            serde_json::json!(["containerPort", "protocol"])
        );
        let f = prop(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
        );
        assert_eq!(f["x-kubernetes-list-type"], "set");
        // Descriptions survive.
        assert!(c["description"].is_string());
    }

    #[test]
    fn table_rows_name_existing_fields() {
        let defs = builtin();
        for (definition, row) in table() {
            let Some(def) = defs.get(&definition) else {
                panic!("no definition {definition}");
            };
            assert!(
                def["properties"].get(row.1).is_some(),
                "{definition}.{} missing",
                row.1
            );
        }
    }
}
