//! Pods: spec defaults (including the admission plugins upstream enables by default:
//! ServiceAccount, DefaultTolerationSeconds and Priority), the initial `Pending` status with its QoS
//! class, container validation, and upstream's rule that a pod's spec is immutable except for
//! images, tolerations additions and activeDeadlineSeconds.

use std::sync::Arc;

use futures::future::BoxFuture;
use rkube_core::status::ApiError;
use rkube_core::validation::{self, FieldError};
use serde_json::{Value, json};

use super::Strategy;
use super::defaults::{pod_spec, set_default};
use crate::ApiServer;

/// The pod strategy.
pub struct Pod;

/// Where upstream's ServiceAccount admission mounts the API credentials.
const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Mirror pods (static pods shown in the API) get nothing added, as upstream.
fn is_mirror_pod(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
}

/// Upstream's ServiceAccount admission: unless `automountServiceAccountToken: false`, a
/// projected `kube-api-access-<suffix>` volume (a bound token, the cluster CA from the
/// `kube-root-ca.crt` ConfigMap and the namespace) mounted read-only in every container.
fn mount_service_account_token(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("automountServiceAccountToken") == Some(&json!(false)) {
        return;
    }
    let containers = ["containers", "initContainers"];
    let already = containers.iter().any(|k| {
        spec.get(*k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c["volumeMounts"].as_array().into_iter().flatten())
            .any(|m| m["mountPath"] == SERVICE_ACCOUNT_MOUNT_PATH)
    });
    if already {
        return;
    }
    let name = crate::rest::write::generated_name("kube-api-access-");
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]
        }
    });
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(v) = volumes.as_array_mut() {
        v.push(volume);
    }
    let mount = json!({"name": name, "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH});
    for key in containers {
        for c in spec
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let mounts = c
                .as_object_mut()
                .map(|c| c.entry("volumeMounts").or_insert_with(|| json!([])));
            if let Some(m) = mounts.and_then(Value::as_array_mut) {
                m.push(mount.clone());
            }
        }
    }
}

impl Strategy for Pod {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            pod_spec(spec);
            if let Some(s) = spec.as_object_mut() {
                set_default(s, "serviceAccountName", json!("default"));
                let sa = s["serviceAccountName"].clone();
                set_default(s, "serviceAccount", sa);
                set_default(s, "enableServiceLinks", json!(true));
                add_default_tolerations(s);
            }
        }
        if !is_mirror_pod(obj) {
            mount_service_account_token(obj);
        }
        let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
        if let Some(map) = obj.as_object_mut() {
            map.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if let Some(spec) = new.get_mut("spec") {
            pod_spec(spec);
            // Priority admission set these at create: an update that omits them keeps them.
            if let Some(s) = spec.as_object_mut() {
                for key in ["priority", "preemptionPolicy"] {
                    if s.get(key).is_none_or(Value::is_null)
                        && let Some(v) = old.pointer(&format!("/spec/{key}"))
                    {
                        s.insert(key.into(), v.clone());
                    }
                }
            }
        }
        if let Some(map) = new.as_object_mut()
            && let Some(status) = old.get("status")
        {
            map.insert("status".into(), status.clone());
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec")
    }

    fn admit<'a>(
        &'a self,
        srv: &'a Arc<ApiServer>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if old.is_some() {
                return Ok(());
            }
            super::priorityclass::admit_pod(srv, obj, name).await
        })
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let (Some(mut n), Some(o)) = (new.get("spec").cloned(), old.get("spec")) else {
            return errs;
        };
        // Blank out what may change, then the rest must be equal.
        let mut o = o.clone();
        for spec in [&mut n, &mut o] {
            if let Some(s) = spec.as_object_mut() {
                s.remove("activeDeadlineSeconds");
                s.remove("tolerations");
                s.remove("terminationGracePeriodSeconds");
                for key in ["containers", "initContainers"] {
                    if let Some(cs) = s.get_mut(key).and_then(Value::as_array_mut) {
                        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                            c.remove("image");
                        }
                    }
                }
            }
        }
        if n != o {
            errs.push(FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
        errs
    }
}

/// Field errors of a PodSpec at `path` (also used for pod templates).
pub fn validate_pod_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(|c| c.is_empty()) {
        errs.push(FieldError::required(&format!("{path}.containers"), ""));
    }
    let mut names = std::collections::HashSet::new();
    for key in ["initContainers", "containers"] {
        for (i, c) in spec
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let cpath = format!("{path}.{key}[{i}]");
            match c.get("name").and_then(Value::as_str) {
                None | Some("") => errs.push(FieldError::required(&format!("{cpath}.name"), "")),
                Some(n) => {
                    for m in validation::dns1123_label(n) {
                        errs.push(FieldError::invalid(&format!("{cpath}.name"), json!(n), &m));
                    }
                    if !names.insert(n.to_string()) {
                        errs.push(FieldError::duplicate(&format!("{cpath}.name"), json!(n)));
                    }
                }
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errs.push(FieldError::required(&format!("{cpath}.image"), ""));
            }
            for (j, p) in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    errs.push(FieldError::invalid(
                        &format!("{cpath}.ports[{j}].containerPort"),
                        json!(port),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
    }
    if let Some(policy) = spec.get("restartPolicy").and_then(Value::as_str)
        && !matches!(policy, "Always" | "OnFailure" | "Never")
    {
        errs.push(FieldError::not_supported(
            &format!("{path}.restartPolicy"),
            json!(policy),
            &["Always", "OnFailure", "Never"],
        ));
    }
    errs
}

/// Tolerations the DefaultTolerationSeconds admission plugin adds: 300 s for not-ready and
/// unreachable nodes, unless the pod already tolerates them.
fn add_default_tolerations(spec: &mut serde_json::Map<String, Value>) {
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = list.iter().any(|t| {
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || (k.is_empty() && op == "Exists"))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !covered {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// The QoS class upstream derives from requests and limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for key in ["initContainers", "containers"] {
        for c in spec
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let limits = c.pointer("/resources/limits").and_then(Value::as_object);
            let requests = c.pointer("/resources/requests").and_then(Value::as_object);
            let relevant = |m: Option<&serde_json::Map<String, Value>>| {
                m.map(|m| {
                    m.iter()
                        .filter(|(k, _)| *k == "cpu" || *k == "memory")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
            };
            let (l, r) = (relevant(limits), relevant(requests));
            if !l.is_empty() || !r.is_empty() {
                any = true;
            }
            let has_both = ["cpu", "memory"]
                .iter()
                .all(|res| l.iter().any(|(k, _)| k == res));
            let equal = r
                .iter()
                .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v));
            if !has_both || !equal {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos() {
        assert_eq!(
            qos_class(&json!({"containers": [{"name": "a"}]})),
            "BestEffort"
        );
        assert_eq!(
            qos_class(
                &json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]})
            ),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(
                &json!({"containers": [{"resources": {"requests": {"memory": "64Mi", "cpu": "0.5"}, "limits": {"memory": "128Mi", "cpu": "1"}}}]})
            ),
            "Burstable"
        );
    }

    #[test]
    fn create_defaults_and_validation() {
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        Pod.prepare_for_create(&mut p);
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 2);
        assert!(Pod.validate(&p).is_empty());
        let errs = Pod.validate(&json!({"spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(
            errs[0].to_string(),
            "spec.containers[0].image: Required value"
        );
    }

    #[test]
    fn spec_is_immutable_but_image() {
        let old = json!({"spec": {"containers": [{"name": "c", "image": "a"}]}});
        let ok = json!({"spec": {"containers": [{"name": "c", "image": "b"}]}});
        assert!(Pod.validate_update(&ok, &old).is_empty());
        let bad = json!({"spec": {"containers": [{"name": "c", "image": "b", "args": ["x"]}]}});
        assert_eq!(Pod.validate_update(&bad, &old).len(), 1);
    }
}
