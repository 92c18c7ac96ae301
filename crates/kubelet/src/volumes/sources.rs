//! The files of API-backed volumes, computed from fetched objects (no IO): keys of ConfigMaps
//! and Secrets with `items` and modes (upstream's `MakePayload`), and downward API files.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::atomic_writer::{FileProjection, Payload};

/// A ConfigMap's `data` and `binaryData` as bytes by key.
pub fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

/// A Secret's `data` by key.
pub fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// Files for the keys of a ConfigMap or Secret: every key under its own name with
/// `default_mode`, or only `items` (key → path, optional mode). A missing item key fails with
/// `<missing_key_text>: <key>` unless the source is optional.
pub fn key_payload(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
    missing_key_text: &str,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(
                    k,
                    FileProjection {
                        data: v,
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for it in items {
                let Some(v) = data.get(&it.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("{missing_key_text}: {}", it.key));
                };
                let mode = it.mode.map_or(default_mode, |m| (m as u32) & 0o7777);
                out.insert(
                    it.path.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Files of a downward API volume (or projection): pod fields and container resources.
pub fn downward_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            crate::envvars::field_ref_value(pod, f).map_err(|e| e.0)?
        } else if let Some(r) = &it.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or_default();
            let c = crate::envvars::find_container(pod, name)
                .ok_or_else(|| format!("container {name:?} not found in pod"))?;
            crate::envvars::resource_field_value(c, r, allocatable).map_err(|e| e.0)?
        } else {
            continue;
        };
        let mode = it.mode.map_or(default_mode, |m| (m as u32) & 0o7777);
        out.insert(
            it.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items(v: serde_json::Value) -> Vec<KeyToPath> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn items_and_modes() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"bin": "AAE="}}))
        .unwrap();
        let data = config_map_data(&cm);
        assert_eq!(data["bin"], vec![0, 1]);

        let all = key_payload(data.clone(), None, 0o644, false, "x").unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all["a"].mode, 0o644);

        let sel = items(
            json!([{"key": "a", "path": "dir/a.txt", "mode": 0o400}, {"key": "b", "path": "b"}]),
        );
        let some = key_payload(data.clone(), Some(&sel), 0o600, false, "x").unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), vec!["b", "dir/a.txt"]);
        assert_eq!(some["dir/a.txt"].mode, 0o400);
        assert_eq!(some["b"].mode, 0o600);
        assert_eq!(some["b"].data, b"2");

        let missing = items(json!([{"key": "zz", "path": "zz"}]));
        assert_eq!(
            key_payload(
                data.clone(),
                Some(&missing),
                0o644,
                false,
                "configmap references non-existent config key"
            )
            .unwrap_err(),
            "configmap references non-existent config key: zz"
        );
        assert!(
            key_payload(data, Some(&missing), 0o644, true, "x")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn downward_files() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "tier": "a"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]}}))
        .unwrap();
        let files: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
        ]))
        .unwrap();
        let p = downward_payload(&pod, &files, 0o644, &BTreeMap::new()).unwrap();
        assert_eq!(p["labels"].data, b"app=\"web\"\ntier=\"a\"");
        assert_eq!(p["name"].data, b"p");
        assert_eq!(p["name"].mode, 0o600);
        assert_eq!(p["mem"].data, b"64");
    }
}
