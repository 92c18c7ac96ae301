//! Networking: Ingress, IngressClass, NetworkPolicy (`networking.k8s.io`)
//! and EndpointSlice (`discovery.k8s.io`).

use jiff::Timestamp;
use serde_json::Value;

use crate::util::{
    age, arr_at, format_label_selector, list_with_more, load_balancer_ingress, name, opt_int,
    opt_str, str_at,
};
use crate::{AGE, Column, NAME, Printer, col};

pub(crate) const PRINTERS: &[Printer] = &[
    Printer {
        group: "networking.k8s.io",
        kind: "Ingress",
        columns: INGRESS,
        cells: ingress,
    },
    Printer {
        group: "networking.k8s.io",
        kind: "IngressClass",
        columns: INGRESS_CLASS,
        cells: ingress_class,
    },
    Printer {
        group: "networking.k8s.io",
        kind: "NetworkPolicy",
        columns: NETWORK_POLICY,
        cells: network_policy,
    },
    Printer {
        group: "discovery.k8s.io",
        kind: "EndpointSlice",
        columns: ENDPOINT_SLICE,
        cells: endpoint_slice,
    },
];

const INGRESS: &[Column] = &[
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for ingress",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

/// Upstream's `formatHosts`: up to three hosts, `*` when none.
fn hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = str_at(rule, "/host");
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", rules.len() - MAX);
    }
    ret
}

fn ingress(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports = if arr_at(obj, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(obj),
        Value::from(opt_str(obj, "/spec/ingressClassName").unwrap_or("<none>")),
        Value::from(hosts(arr_at(obj, "/spec/rules"))),
        Value::from(load_balancer_ingress(obj, "/status/loadBalancer/ingress")),
        Value::from(ports),
        age(obj, now),
    ]
}

const INGRESS_CLASS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

fn ingress_class(obj: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match obj.pointer("/spec/parameters").filter(|p| p.is_object()) {
        None => "<none>".to_string(),
        Some(p) => {
            let mut s = str_at(p, "/kind").to_string();
            if let Some(g) = opt_str(p, "/apiGroup") {
                s = format!("{s}.{g}");
            }
            format!("{s}/{}", str_at(p, "/name"))
        }
    };
    vec![
        name(obj),
        Value::from(str_at(obj, "/spec/controller")),
        Value::from(parameters),
        age(obj, now),
    ]
}

const NETWORK_POLICY: &[Column] = &[
    NAME,
    col(
        "Pod-Selector",
        "string",
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];

fn network_policy(obj: &Value, now: Timestamp) -> Vec<Value> {
    // podSelector is a required struct upstream: missing prints as empty, `<none>`.
    let selector = format_label_selector(obj.pointer("/spec/podSelector"));
    vec![name(obj), Value::from(selector), age(obj, now)]
}

const ENDPOINT_SLICE: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

fn endpoint_slice(obj: &Value, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 3;
    let ports_all = arr_at(obj, "/ports");
    let ports: Vec<String> = ports_all
        .iter()
        .take(MAX)
        .map(|p| match (opt_int(p, "/port"), opt_str(p, "/name")) {
            (Some(n), _) => n.to_string(),
            (None, Some(n)) => n.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let addresses: Vec<&Value> = arr_at(obj, "/endpoints")
        .iter()
        .flat_map(|e| arr_at(e, "/addresses"))
        .collect();
    let shown: Vec<String> = addresses
        .iter()
        .take(MAX)
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    vec![
        name(obj),
        Value::from(str_at(obj, "/addressType")),
        Value::from(list_with_more(&ports, ports_all.len(), MAX, "<unset>")),
        Value::from(list_with_more(&shown, addresses.len(), MAX, "<unset>")),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use crate::testing::{ago, check};
    use serde_json::json;

    #[test]
    fn ingresses() {
        let meta = json!({"name": "web", "creationTimestamp": ago(45)});
        for (obj, expect) in [
            (
                json!({"metadata": meta, "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.com"]}],
                    "rules": [{"host": "a.com"}, {"host": "b.com"}]},
                    "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
                json!(["web", "nginx", "a.com,b.com", "1.2.3.4", "80, 443", "45s"]),
            ),
            (
                json!({"metadata": meta, "spec": {"rules": [{"host": "a"}, {}, {"host": "c"}, {"host": "d"}, {"host": "e"}]}}),
                json!(["web", "<none>", "a,c,d + 2 more...", "", "80", "45s"]),
            ),
            (
                json!({"metadata": meta, "spec": {"defaultBackend": {"service": {"name": "x"}}}}),
                json!(["web", "<none>", "*", "", "80", "45s"]),
            ),
        ] {
            check("networking.k8s.io", "Ingress", obj, expect);
        }
    }

    #[test]
    fn ingress_classes_and_policies() {
        let meta = json!({"name": "x", "creationTimestamp": ago(45)});
        for (kind, obj, expect) in [
            (
                "IngressClass",
                json!({"metadata": meta, "spec": {"controller": "k8s.io/ingress-nginx",
                "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}}),
                json!([
                    "x",
                    "k8s.io/ingress-nginx",
                    "IngressParameters.k8s.example.com/p",
                    "45s"
                ]),
            ),
            (
                "IngressClass",
                json!({"metadata": meta, "spec": {"controller": "c"}}),
                json!(["x", "c", "<none>", "45s"]),
            ),
            (
                "NetworkPolicy",
                json!({"metadata": meta, "spec": {"podSelector": {"matchLabels": {"role": "db"}}}}),
                json!(["x", "role=db", "45s"]),
            ),
            (
                "NetworkPolicy",
                json!({"metadata": meta, "spec": {"podSelector": {}}}),
                json!(["x", "<none>", "45s"]),
            ),
        ] {
            check("networking.k8s.io", kind, obj, expect);
        }
    }

    #[test]
    fn endpoint_slices() {
        let meta = json!({"name": "web-abc", "creationTimestamp": ago(45)});
        for (obj, expect) in [
            (
                json!({"metadata": meta, "addressType": "IPv4", "ports": [{"port": 80, "name": "http"}, {"name": "x"}, {}],
                    "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]}),
                json!([
                    "web-abc",
                    "IPv4",
                    "80,x,*",
                    "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...",
                    "45s"
                ]),
            ),
            (
                json!({"metadata": meta, "addressType": "IPv6"}),
                json!(["web-abc", "IPv6", "<unset>", "<unset>", "45s"]),
            ),
        ] {
            check("discovery.k8s.io", "EndpointSlice", obj, expect);
        }
    }
}
