//! API discovery: the legacy documents (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`) and the
//! aggregated `apidiscovery.k8s.io/v2` documents kubectl v1.35 asks for first.

use rkube_core::registry::{Registry, ResourceType};
use serde_json::{Value, json};

/// Media type of an aggregated discovery response.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Subresources the apiserver serves today, with the kind answered and the verbs allowed.
/// Discovery advertises only these, so clients never find an endpoint that is not there.
fn served_subresource(r: &ResourceType, sub: &str) -> Option<(Value, &'static [&'static str])> {
    let own = json!({"group": r.group, "version": r.version, "kind": r.kind});
    match sub {
        "status" => Some((own, &["get", "patch", "update"])),
        "scale" => Some((
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            &["get", "patch", "update"],
        )),
        "binding" => Some((
            json!({"group": "", "version": "v1", "kind": "Binding"}),
            &["create"],
        )),
        "eviction" => Some((
            json!({"group": "policy", "version": "v1", "kind": "Eviction"}),
            &["create"],
        )),
        "token" => Some((
            json!({"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}),
            &["create"],
        )),
        "finalize" => Some((own, &["update"])),
        "log" => Some((own, &["get"])),
        "exec" | "attach" | "portforward" => {
            let kind = match sub {
                "exec" => "PodExecOptions",
                "attach" => "PodAttachOptions",
                _ => "PodPortForwardOptions",
            };
            Some((
                json!({"group": "", "version": "v1", "kind": kind}),
                &["create", "get"],
            ))
        }
        _ => None,
    }
}

/// Whether the apiserver serves `sub` on `r`.
pub fn serves_subresource(r: &ResourceType, sub: &str) -> bool {
    r.subresources.iter().any(|s| s == sub) && served_subresource(r, sub).is_some()
}

/// Whether the client asked for aggregated discovery.
pub fn wants_aggregated(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',').next().is_some_and(|first| {
                first.contains("g=apidiscovery.k8s.io")
                    && first.contains("v=v2")
                    && !first.contains("v=v2beta1")
            }) || a
                .split(',')
                .any(|m| m.contains("apidiscovery.k8s.io") && m.contains("v=v2;"))
        })
}

/// `GET /api` (legacy).
pub fn legacy_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

/// `GET /apis` (legacy).
pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = groups(reg)
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| group_json(&g, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>` (legacy).
pub fn group(reg: &Registry, group: &str) -> Option<Value> {
    groups(reg)
        .into_iter()
        .find(|(g, _)| g == group)
        .map(|(g, v)| {
            let mut j = group_json(&g, &v);
            j["kind"] = json!("APIGroup");
            j["apiVersion"] = json!("v1");
            j
        })
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
}

/// Groups in registry order, each with its versions.
fn groups(reg: &Registry) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (g, v) in reg.group_versions() {
        match out.iter_mut().find(|(og, _)| *og == g) {
            Some((_, vs)) => vs.push(v),
            None => out.push((g, vec![v])),
        }
    }
    out
}

/// `GET /api/v1` or `/apis/<g>/<v>` (legacy): the APIResourceList.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in reg.in_group_version(group, version) {
        let mut main = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            main["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            main["categories"] = json!(r.categories);
        }
        resources.push(main);
        for sub in &r.subresources {
            if let Some((kind, verbs)) = served_subresource(r, sub) {
                let mut s = json!({
                    "name": format!("{}/{}", r.plural, sub),
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": kind["kind"],
                    "verbs": verbs,
                });
                if kind["group"] != json!(r.group) {
                    s["group"] = kind["group"].clone();
                    s["version"] = kind["version"].clone();
                }
                resources.push(s);
            }
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

/// The aggregated discovery document for the core group (`legacy`) or all named groups.
pub fn aggregated(reg: &Registry, legacy: bool) -> Value {
    let items: Vec<Value> = groups(reg)
        .into_iter()
        .filter(|(g, _)| g.is_empty() == legacy)
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = reg
                        .in_group_version(&g, v)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let metadata = if g.is_empty() {
                json!({"creationTimestamp": null})
            } else {
                json!({"name": g, "creationTimestamp": null})
            };
            json!({"metadata": metadata, "versions": vs})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(r: &ResourceType) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .filter_map(|sub| {
            served_subresource(r, sub).map(
                |(kind, verbs)| json!({"subresource": sub, "responseKind": kind, "verbs": verbs}),
            )
        })
        .collect();
    let mut j = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        j["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        j["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        j["subresources"] = json!(subresources);
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents() {
        let reg = Registry::builtin();
        let core = resource_list(&reg, "", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/status"));
        assert!(names.contains(&"pods/exec") && names.contains(&"serviceaccounts/token"));
        assert!(!names.contains(&"pods/ephemeralcontainers"));
        let apis = group_list(&reg);
        assert!(
            apis["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "apps")
        );
        let agg = aggregated(&reg, false);
        assert!(agg["items"].as_array().unwrap().len() > 5);
        let legacy = aggregated(&reg, true);
        assert_eq!(legacy["items"].as_array().unwrap().len(), 1);
    }
}
