//! Defaulting shared by kinds that embed the same types (a Pod's spec and every pod template),
//! following upstream's `SetDefaults_*` functions.

use serde_json::{Map, Value, json};

/// Sets `obj[key]` to `v` if absent.
pub fn set_default(obj: &mut Map<String, Value>, key: &str, v: Value) {
    if !obj.contains_key(key) || obj[key].is_null() {
        obj.insert(key.to_string(), v);
    }
}

/// The object at `obj[key]`, created if missing.
pub fn object_at<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let v = obj.entry(key).or_insert_with(|| json!({}));
    if v.is_null() {
        *v = json!({});
    }
    v.as_object_mut()
}

/// Defaults of a PodSpec.
pub fn pod_spec(spec: &mut Value) {
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    if let Some(res) = spec.get_mut("resources").and_then(Value::as_object_mut) {
        canonical_resources(res);
    }
    if let Some(overhead) = spec.get_mut("overhead") {
        rkube_core::quantity::canonicalize_list(overhead);
    }
    for key in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(key).and_then(Value::as_array_mut) {
            for c in cs {
                container(c);
            }
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            volume(v);
        }
    }
}

fn volume(v: &mut Map<String, Value>) {
    for (source, mode_key) in [("configMap", "defaultMode"), ("secret", "defaultMode")] {
        if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
            set_default(s, mode_key, json!(420));
        }
    }
    if let Some(limit) = v.get_mut("emptyDir").and_then(|e| e.get_mut("sizeLimit"))
        && let Some(c) = limit.as_str().and_then(rkube_core::quantity::canonical)
    {
        *limit = json!(c);
    }
    let has_source = v.keys().any(|k| k != "name");
    if !has_source {
        v.insert("emptyDir".into(), json!({}));
    }
}

/// Defaults of a Container.
pub fn container(c: &mut Value) {
    let Some(c) = c.as_object_mut() else { return };
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    set_default(c, "imagePullPolicy", json!(default_pull_policy(image)));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
        }
    }
    // Limits without requests mean requests equal to the limits.
    if let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) {
        if let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() {
            let requests = object_at(res, "requests");
            if let Some(req) = requests {
                for (k, v) in limits {
                    req.entry(k).or_insert(v);
                }
            }
        }
        canonical_resources(res);
    }
}

/// Quantities in `requests`/`limits` in the canonical form upstream stores (`0.5` → `500m`).
fn canonical_resources(res: &mut Map<String, Value>) {
    for key in ["requests", "limits"] {
        if let Some(list) = res.get_mut(key) {
            rkube_core::quantity::canonicalize_list(list);
        }
    }
}

/// `Always` for `:latest` or untagged images, otherwise `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Defaults of a PodTemplateSpec at `template` (its spec; metadata left as given).
pub fn pod_template(template: Option<&mut Value>) {
    if let Some(spec) = template.and_then(|t| t.get_mut("spec")) {
        pod_spec(spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.17.3"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(
            default_pull_policy("localhost:5000/busybox:1"),
            "IfNotPresent"
        );
    }

    #[test]
    fn pod_spec_defaults() {
        let mut spec = json!({"containers": [{"name": "a", "image": "x:1", "ports": [{"containerPort": 80}],
            "resources": {"limits": {"cpu": "1"}}}]});
        pod_spec(&mut spec);
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["containers"][0]["resources"]["requests"]["cpu"], "1");
        let mut spec = json!({"containers": [{"name": "a", "image": "x:1",
            "resources": {"requests": {"cpu": "0.5", "memory": "2048Mi"}, "limits": {"cpu": 2}}}]});
        pod_spec(&mut spec);
        let res = &spec["containers"][0]["resources"];
        assert_eq!(res["requests"], json!({"cpu": "500m", "memory": "2Gi"}));
        assert_eq!(res["limits"], json!({"cpu": "2"}));
    }
}
