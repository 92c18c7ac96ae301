//! Services: defaults, validation, and ClusterIP/NodePort allocation as upstream's Service
//! REST storage does it (requested values honoured, conflicts rejected, released on delete,
//! allocated values kept across updates that omit them).

use rkube_core::status::ApiError;
use rkube_core::validation::FieldError;
use serde_json::{Value, json};

use super::defaults::set_default;
use super::{Allocation, Strategy};
use crate::alloc::{AllocError, ServiceAllocators};

/// The Service strategy.
pub struct Service;

fn svc_type(obj: &Value) -> &str {
    obj.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn wants_node_ports(obj: &Value) -> bool {
    matches!(svc_type(obj), "NodePort" | "LoadBalancer")
}

impl Strategy for Service {
    fn prepare_for_create(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        let spec = map.entry("spec").or_insert_with(|| json!({}));
        let Some(spec) = spec.as_object_mut() else {
            return;
        };
        set_default(spec, "type", json!("ClusterIP"));
        let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
        if ty != "ExternalName" {
            set_default(spec, "sessionAffinity", json!("None"));
            set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            set_default(spec, "ipFamilies", json!(["IPv4"]));
            set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        }
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            set_default(spec, "externalTrafficPolicy", json!("Cluster"));
        }
        if ty == "LoadBalancer" {
            set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
        }
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                set_default(p, "protocol", json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    set_default(p, "targetPort", port);
                }
            }
        }
        map.entry("status")
            .or_insert_with(|| json!({"loadBalancer": {}}));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // Allocated values the client left out are kept, as upstream's `PatchAllocatedValues`.
        if let (Some(spec), Some(old_spec)) = (
            new.get_mut("spec").and_then(Value::as_object_mut),
            old.get("spec"),
        ) {
            for key in ["clusterIP", "clusterIPs"] {
                if spec.get(key).is_none_or(|v| v.is_null() || v == "")
                    && let Some(v) = old_spec.get(key)
                {
                    spec.insert(key.into(), v.clone());
                }
            }
        }
        let keep_ports = wants_node_ports(new) && wants_node_ports(old);
        if keep_ports {
            let old_ports = old.pointer("/spec/ports").cloned().unwrap_or(json!([]));
            if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut() {
                    if p.get("nodePort").is_none() {
                        let same = old_ports.as_array().into_iter().flatten().find(|o| {
                            o.get("port") == p.get("port")
                                && o.get("protocol").unwrap_or(&json!("TCP"))
                                    == p.get("protocol").unwrap_or(&json!("TCP"))
                        });
                        if let Some(np) = same.and_then(|o| o.get("nodePort")) {
                            p["nodePort"] = np.clone();
                        }
                    }
                }
            }
        }
        self.prepare_for_create(new);
        if let (Some(map), Some(status)) = (new.as_object_mut(), old.get("status")) {
            map.insert("status".into(), status.clone());
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let ty = svc_type(obj);
        if !matches!(
            ty,
            "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
        ) {
            errs.push(FieldError::not_supported(
                "spec.type",
                json!(ty),
                &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
            ));
        }
        let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
        let ports = obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if ports.is_empty() && ty != "ExternalName" && !headless {
            errs.push(FieldError::required("spec.ports", ""));
        }
        if ty == "ExternalName"
            && obj
                .pointer("/spec/externalName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            errs.push(FieldError::required("spec.externalName", ""));
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in ports.iter().enumerate() {
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(&format!("spec.ports[{i}].name"), ""));
            }
            if !name.is_empty() && !names.insert(name) {
                errs.push(FieldError::duplicate(
                    &format!("spec.ports[{i}].name"),
                    json!(name),
                ));
            }
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&port) {
                errs.push(FieldError::invalid(
                    &format!("spec.ports[{i}].port"),
                    json!(port),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            if !matches!(proto, "TCP" | "UDP" | "SCTP") {
                errs.push(FieldError::not_supported(
                    &format!("spec.ports[{i}].protocol"),
                    json!(proto),
                    &["SCTP", "TCP", "UDP"],
                ));
            }
            if p.get("nodePort").is_some() && !wants_node_ports(obj) {
                errs.push(FieldError::forbidden(
                    &format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let old_ip = old.pointer("/spec/clusterIP").and_then(Value::as_str);
        let new_ip = new.pointer("/spec/clusterIP").and_then(Value::as_str);
        if old_ip.is_some_and(|o| !o.is_empty())
            && svc_type(new) != "ExternalName"
            && new_ip != old_ip
        {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                json!(new_ip),
                "may not change once set",
            ));
        }
        errs
    }

    fn allocate(
        &self,
        alloc: &ServiceAllocators,
        new: &mut Value,
        old: Option<&Value>,
    ) -> Result<Allocation, ApiError> {
        let mut held = Allocation::default();
        let name = rkube_core::meta::name(new).to_string();
        // On failure everything allocated so far is given back before answering.
        let fail = |held: Allocation, field: &str, value: Value, detail: String| {
            held.release(alloc);
            ApiError::invalid(
                "",
                "Service",
                &name,
                &[FieldError::invalid(field, value, &detail)],
            )
        };
        // ClusterIP: allocated once, for every type but ExternalName.
        let had_ip = old.is_some_and(|o| !crate::alloc::cluster_ips(o).is_empty());
        let requested = new
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from);
        if svc_type(new) != "ExternalName" && !had_ip && requested.as_deref() != Some("None") {
            match alloc.allocate_ip(requested.as_deref()) {
                Ok(ip) => {
                    held.ips.push(ip);
                    new["spec"]["clusterIP"] = json!(ip.to_string());
                    new["spec"]["clusterIPs"] = json!([ip.to_string()]);
                }
                Err(e) => {
                    let ip = requested.unwrap_or_default();
                    let detail = format!("failed to allocate IP {ip}: {}", alloc_message(e));
                    return Err(fail(held, "spec.clusterIPs", json!([ip]), detail));
                }
            }
        }
        if requested.as_deref() == Some("None") {
            new["spec"]["clusterIPs"] = json!(["None"]);
        }
        // NodePorts: for NodePort and LoadBalancer Services, per port.
        if wants_node_ports(new) {
            let old_ports: Vec<u16> = old.map(crate::alloc::node_ports).unwrap_or_default();
            let count = new
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            for i in 0..count {
                let p = &new["spec"]["ports"][i];
                let wanted = p.get("nodePort").and_then(Value::as_u64).map(|n| n as u16);
                if wanted.is_some_and(|w| old_ports.contains(&w)) {
                    continue;
                }
                match alloc.allocate_port(wanted) {
                    Ok(port) => {
                        held.ports.push(port);
                        new["spec"]["ports"][i]["nodePort"] = json!(port);
                    }
                    Err(e) => {
                        let field = format!("spec.ports[{i}].nodePort");
                        let value = json!(wanted.unwrap_or(0));
                        return Err(fail(held, &field, value, alloc_message(e)));
                    }
                }
            }
        }
        Ok(held)
    }

    fn allocates(&self) -> bool {
        true
    }

    fn release(&self, alloc: &ServiceAllocators, obj: &Value) {
        alloc.release(obj);
    }

    fn name_is_label(&self) -> bool {
        true
    }
}

fn alloc_message(e: AllocError) -> String {
    match e {
        AllocError::Taken(m) | AllocError::OutOfRange(m) | AllocError::Full(m) => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_and_rejects_conflicts() {
        let alloc = ServiceAllocators::new("10.43.0.0/16", (30000, 32767)).unwrap();
        let mut a = json!({"metadata": {"name": "a"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        Service.prepare_for_create(&mut a);
        Service.allocate(&alloc, &mut a, None).unwrap();
        assert!(
            a["spec"]["clusterIP"]
                .as_str()
                .unwrap()
                .starts_with("10.43.")
        );
        assert_eq!(a["spec"]["ports"][0]["targetPort"], 80);
        let mut b = json!({"metadata": {"name": "b"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        let err = Service.allocate(&alloc, &mut b, None).unwrap_err();
        assert_eq!(
            err.message,
            "Service \"b\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        );
        let ip = a["spec"]["clusterIP"].as_str().unwrap().to_string();
        let mut c =
            json!({"metadata": {"name": "c"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}});
        let err = Service.allocate(&alloc, &mut c, None).unwrap_err();
        assert!(
            err.message.contains("provided IP is already allocated"),
            "{}",
            err.message
        );
    }
}
