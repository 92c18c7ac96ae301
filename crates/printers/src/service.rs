//! Service and Endpoints (core group).

use jiff::Timestamp;
use serde_json::Value;

use crate::util::{
    age, arr_at, format_labels, int_at, join_host_port, load_balancer_ingress, map_at, name,
    scalar_text, str_at,
};
use crate::{AGE, Column, NAME, Printer, col, wide};

pub(crate) const PRINTERS: &[Printer] = &[
    Printer {
        group: "",
        kind: "Service",
        columns: SERVICE,
        cells: service,
    },
    Printer {
        group: "",
        kind: "Endpoints",
        columns: ENDPOINTS,
        cells: endpoints,
    },
];

const SERVICE: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed.",
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
];

/// Upstream's `makePortString`: `80/TCP`, `80:30080/TCP`, comma-joined.
/// A missing protocol prints as the API default, TCP.
fn port_string(ports: &[Value]) -> String {
    ports
        .iter()
        .map(|p| {
            let port = int_at(p, "/port");
            let protocol = match str_at(p, "/protocol") {
                "" => "TCP",
                other => other,
            };
            let node_port = int_at(p, "/nodePort");
            if node_port > 0 {
                format!("{port}:{node_port}/{protocol}")
            } else {
                format!("{port}/{protocol}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Upstream's `getServiceExternalIP`, wide form (no truncation), as the
/// server-side printer always renders it.
fn external_ip(svc: &Value, type_: &str) -> String {
    let external: Vec<String> = arr_at(svc, "/spec/externalIPs")
        .iter()
        .map(scalar_text)
        .collect();
    match type_ {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_ingress(svc, "/status/loadBalancer/ingress");
            if !external.is_empty() {
                let mut all: Vec<String> = Vec::new();
                if !lb.is_empty() {
                    all.extend(lb.split(',').map(str::to_string));
                }
                all.extend(external);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

fn service(svc: &Value, now: Timestamp) -> Vec<Value> {
    // A missing type is the API default, ClusterIP.
    let type_ = match str_at(svc, "/spec/type") {
        "" => "ClusterIP",
        other => other,
    };
    let cluster_ip = arr_at(svc, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .or_else(|| svc.pointer("/spec/clusterIP").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let mut ports = port_string(arr_at(svc, "/spec/ports"));
    if ports.is_empty() {
        ports = "<none>".to_string();
    }
    vec![
        name(svc),
        Value::from(type_),
        Value::from(cluster_ip),
        Value::from(external_ip(svc, type_)),
        Value::from(ports),
        age(svc, now),
        Value::from(format_labels(map_at(svc, "/spec/selector"))),
    ]
}

const ENDPOINTS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

/// Upstream's `formatEndpoints`: up to three `ip:port`, then "+ N more...".
fn format_endpoints(obj: &Value) -> String {
    const MAX: usize = 3;
    let subsets = arr_at(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0usize;
    for ss in subsets {
        let addresses = arr_at(ss, "/addresses");
        let ports = arr_at(ss, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    break;
                }
                list.push(str_at(a, "/ip").to_string());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    break;
                }
                list.push(join_host_port(str_at(a, "/ip"), int_at(p, "/port")));
            }
        }
    }
    let ret = list.join(",");
    if count > MAX && list.len() == MAX {
        return format!("{ret} + {} more...", count - MAX);
    }
    if ret.is_empty() {
        "<none>".to_string()
    } else {
        ret
    }
}

fn endpoints(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(obj), Value::from(format_endpoints(obj)), age(obj, now)]
}

#[cfg(test)]
mod tests {
    use crate::testing::{ago, check};
    use serde_json::{Value, json};

    fn svc(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": ago(30 * 3600)}, "spec": spec, "status": status})
    }

    #[test]
    fn services() {
        for (obj, expect) in [
            (
                svc(
                    json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}], "selector": {"k8s-app": "kube-dns"}}),
                    json!({}),
                ),
                json!([
                    "web",
                    "ClusterIP",
                    "10.96.0.10",
                    "<none>",
                    "53/UDP,53/TCP",
                    "30h",
                    "k8s-app=kube-dns"
                ]),
            ),
            (
                svc(
                    json!({"type": "NodePort", "clusterIPs": ["10.0.0.1"], "externalIPs": ["1.2.3.4"],
                    "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
                    json!({}),
                ),
                json!([
                    "web",
                    "NodePort",
                    "10.0.0.1",
                    "1.2.3.4",
                    "80:30080/TCP",
                    "30h",
                    "<none>"
                ]),
            ),
            (
                svc(
                    json!({"type": "LoadBalancer", "clusterIPs": ["10.0.0.1"], "ports": [{"port": 443, "nodePort": 31443}]}),
                    json!({}),
                ),
                json!([
                    "web",
                    "LoadBalancer",
                    "10.0.0.1",
                    "<pending>",
                    "443:31443/TCP",
                    "30h",
                    "<none>"
                ]),
            ),
            (
                svc(
                    json!({"type": "LoadBalancer", "clusterIPs": ["10.0.0.1"], "externalIPs": ["9.9.9.9"]}),
                    json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}]}}),
                ),
                json!([
                    "web",
                    "LoadBalancer",
                    "10.0.0.1",
                    "5.6.7.8,lb.example.com,9.9.9.9",
                    "<none>",
                    "30h",
                    "<none>"
                ]),
            ),
            (
                svc(
                    json!({"type": "ExternalName", "externalName": "db.example.com"}),
                    json!({}),
                ),
                json!([
                    "web",
                    "ExternalName",
                    "<none>",
                    "db.example.com",
                    "<none>",
                    "30h",
                    "<none>"
                ]),
            ),
            (
                svc(json!({"clusterIPs": ["None"]}), json!({})),
                json!([
                    "web",
                    "ClusterIP",
                    "None",
                    "<none>",
                    "<none>",
                    "30h",
                    "<none>"
                ]),
            ),
        ] {
            check("", "Service", obj, expect);
        }
    }

    #[test]
    fn endpoints() {
        let meta = json!({"name": "kube-dns", "creationTimestamp": ago(40 * 86400)});
        for (subsets, expect) in [
            (json!([]), "<none>"),
            (
                json!([{"addresses": [{"ip": "10.1.0.20"}], "ports": [{"port": 53}]}]),
                "10.1.0.20:53",
            ),
            (
                json!([{"addresses": [{"ip": "10.1.0.20"}, {"ip": "10.1.0.21"}], "ports": [{"port": 53}, {"port": 53}, {"port": 9153}]}]),
                "10.1.0.20:53,10.1.0.21:53,10.1.0.20:53 + 3 more...",
            ),
            (
                json!([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]),
                "[fd00::1]:80",
            ),
            (json!([{"addresses": [{"ip": "10.0.0.1"}]}]), "10.0.0.1"),
            (
                json!([{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]),
                "<none>",
            ),
        ] {
            check(
                "",
                "Endpoints",
                json!({"metadata": meta, "subsets": subsets}),
                json!(["kube-dns", expect, "40d"]),
            );
        }
    }
}
