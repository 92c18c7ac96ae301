//! NetworkPolicies and endpoint objects: upstream's defaults.

use serde_json::{Value, json};

use super::Strategy;
use super::defaults::set_default;

/// The NetworkPolicy strategy.
pub struct NetworkPolicy;
/// The Endpoints and EndpointSlice strategy.
pub struct Endpoints;

impl Strategy for NetworkPolicy {
    fn prepare_for_create(&self, obj: &mut Value) {
        // policyTypes defaults to Ingress, plus Egress when egress rules are given.
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if spec
            .get("policyTypes")
            .is_none_or(|p| p.as_array().is_none_or(Vec::is_empty))
        {
            let mut types = vec![json!("Ingress")];
            if spec.get("egress").and_then(Value::as_array).is_some() {
                types.push(json!("Egress"));
            }
            spec.insert("policyTypes".into(), Value::Array(types));
        }
        for rules in ["ingress", "egress"] {
            for rule in spec
                .get_mut(rules)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                for p in rule
                    .get_mut("ports")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(p) = p.as_object_mut() {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

impl Strategy for Endpoints {
    fn prepare_for_create(&self, obj: &mut Value) {
        let default_protocol = |ports: Option<&mut Value>| {
            for p in ports.and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(p) = p.as_object_mut() {
                    set_default(p, "protocol", json!("TCP"));
                }
            }
        };
        // Endpoints keep ports per subset; EndpointSlices at the top level.
        for subset in obj
            .get_mut("subsets")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            default_protocol(subset.get_mut("ports"));
        }
        default_protocol(obj.get_mut("ports"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_types_default_from_rules() {
        let mut np = json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}});
        NetworkPolicy.prepare_for_create(&mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        let mut only = json!({"spec": {"podSelector": {}}});
        NetworkPolicy.prepare_for_create(&mut only);
        assert_eq!(only["spec"]["policyTypes"], json!(["Ingress"]));
    }
}
