//! The pod sandbox's configuration: hostname, DNS (`dnsPolicy` + `dnsConfig`, as upstream's
//! `dns.go`), namespace options, and the kubelet-managed `/etc/hosts`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use rkube_cri::{
    DnsConfig, NamespaceMode, NamespaceOptions, PodSandboxConfig, PodSandboxMetadata, labels,
};

/// Upstream's limit on search domains.
const MAX_DNS_SEARCH_PATHS: usize = 32;

/// What DNS and hosts need to know about the cluster.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    /// Cluster DNS servers (`10.43.0.10`).
    pub cluster_dns: Vec<IpAddr>,
    /// Cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// The host's resolv.conf contents (for `Default` and search-path inheritance).
    pub host_resolv_conf: String,
}

/// The pod's hostname: `spec.hostname` or the pod name, cut to 63 characters as upstream.
pub fn hostname(pod: &Pod) -> String {
    let spec_host = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty());
    let mut h = spec_host.unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    if h.len() > 63 {
        h.truncate(63);
        while h.ends_with(['-', '.']) {
            h.pop();
        }
    }
    h
}

/// Whether the pod uses the host's network.
pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// Parses resolv.conf text.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut out = DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => out.servers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => {
                out.searches = words.map(str::to_string).collect();
            }
            Some("options") => out.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    out
}

/// Renders a DNS config as resolv.conf.
pub fn render_resolv_conf(cfg: &DnsConfig) -> String {
    let mut s = String::new();
    if !cfg.searches.is_empty() {
        s.push_str(&format!("search {}\n", cfg.searches.join(" ")));
    }
    for ns in &cfg.servers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    if !cfg.options.is_empty() {
        s.push_str(&format!("options {}\n", cfg.options.join(" ")));
    }
    s
}

fn push_unique(list: &mut Vec<String>, v: String) {
    if !list.contains(&v) {
        list.push(v);
    }
}

fn merge_options(opts: &mut Vec<String>, name: &str, value: Option<&str>) {
    let entry = match value {
        Some(v) => format!("{name}:{v}"),
        None => name.to_string(),
    };
    if let Some(existing) = opts.iter_mut().find(|o| o.split(':').next() == Some(name)) {
        *existing = entry;
    } else {
        opts.push(entry);
    }
}

/// The pod's resolv.conf per `dnsPolicy` and `dnsConfig`; `None` = the host's file unchanged.
pub fn dns_config(pod: &Pod, s: &DnsSettings) -> Option<DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host = parse_resolv_conf(&s.host_resolv_conf);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network(pod),
        _ => false,
    };
    let mut cfg = if policy == "None" {
        DnsConfig::default()
    } else if cluster_first && !s.cluster_dns.is_empty() {
        let d = &s.cluster_domain;
        let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
        for h in &host.searches {
            push_unique(&mut searches, h.clone());
        }
        DnsConfig {
            servers: s.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
            searches,
            options: vec!["ndots:5".into()],
        }
    } else if spec.dns_config.is_none() {
        // Default (or ClusterFirst without a cluster DNS): the host's file as is.
        return None;
    } else {
        host
    };
    if let Some(extra) = &spec.dns_config {
        for n in extra.nameservers.iter().flatten() {
            push_unique(&mut cfg.servers, n.clone());
        }
        for n in extra.searches.iter().flatten() {
            push_unique(&mut cfg.searches, n.clone());
        }
        for o in extra.options.iter().flatten() {
            if let Some(name) = &o.name {
                merge_options(&mut cfg.options, name, o.value.as_deref());
            }
        }
    }
    cfg.searches.truncate(MAX_DNS_SEARCH_PATHS);
    Some(cfg)
}

/// Namespace sharing from hostNetwork/hostPID/hostIPC/shareProcessNamespace.
pub fn namespace_options(pod: &Pod) -> NamespaceOptions {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    NamespaceOptions {
        network: if flag(|s| s.host_network) {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        },
        pid: if flag(|s| s.host_pid) {
            NamespaceMode::Node
        } else if flag(|s| s.share_process_namespace) {
            NamespaceMode::Pod
        } else {
            NamespaceMode::Container
        },
        ipc: if flag(|s| s.host_ipc) {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        },
    }
}

/// The log directory of a pod: `<logs root>/<ns>_<name>_<uid>`.
pub fn pod_log_dir(logs_root: &Path, pod: &Pod) -> std::path::PathBuf {
    logs_root.join(format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    ))
}

/// The labels identifying a pod's sandbox and containers.
pub fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(
        labels::POD_NAME.into(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    l.insert(
        labels::POD_NAMESPACE.into(),
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
    );
    l.insert(
        labels::POD_UID.into(),
        pod.metadata.uid.clone().unwrap_or_default(),
    );
    l
}

/// The sandbox config of a pod (cgroup parent and resources are filled by the caller from
/// the QoS rules).
pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    dns: &DnsSettings,
    logs_root: &Path,
) -> PodSandboxConfig {
    let mut sb_labels: BTreeMap<String, String> = pod.metadata.labels.clone().unwrap_or_default();
    sb_labels.extend(pod_labels(pod));
    let sysctls = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.sysctls.as_ref())
        .map(|v| {
            v.iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            attempt,
        },
        hostname: hostname(pod),
        log_directory: pod_log_dir(logs_root, pod),
        dns_config: dns_config(pod, dns),
        namespace_options: namespace_options(pod),
        cgroup_parent: String::new(),
        resources: Default::default(),
        sysctls,
        labels: sb_labels,
        annotations: pod.metadata.annotations.clone().unwrap_or_default(),
    }
}

/// The kubelet-managed `/etc/hosts` of a pod (upstream's `managedHostsFileContent`).
pub fn hosts_file(pod: &Pod, pod_ips: &[IpAddr], cluster_domain: &str) -> String {
    let mut s = String::from("# Kubernetes-managed hosts file.\n");
    s.push_str("127.0.0.1\tlocalhost\n");
    s.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    s.push_str("fe00::0\tip6-localnet\n");
    s.push_str("fe00::0\tip6-mcastprefix\n");
    s.push_str("fe00::1\tip6-allnodes\n");
    s.push_str("fe00::2\tip6-allrouters\n");
    let host = hostname(pod);
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let subdomain = pod
        .spec
        .as_ref()
        .and_then(|s| s.subdomain.clone())
        .filter(|s| !s.is_empty());
    for ip in pod_ips {
        match &subdomain {
            Some(sub) => s.push_str(&format!(
                "{ip}\t{host}.{sub}.{ns}.svc.{cluster_domain}\t{host}\n"
            )),
            None => s.push_str(&format!("{ip}\t{host}\n")),
        }
    }
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.as_ref());
    if let Some(aliases) = aliases.filter(|a| !a.is_empty()) {
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.clone().unwrap_or_default().join("\t");
            s.push_str(&format!("{}\t{}\n", a.ip, names));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn settings() -> DnsSettings {
        DnsSettings {
            cluster_dns: vec!["10.43.0.10".parse().unwrap()],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: "nameserver 1.1.1.1\nsearch corp.example\noptions edns0\n".into(),
        }
    }

    #[test]
    fn cluster_first_resolv_conf() {
        let p = pod(json!({"containers": []}));
        let cfg = dns_config(&p, &settings()).unwrap();
        assert_eq!(
            render_resolv_conf(&cfg),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             nameserver 10.43.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_and_default_use_host_file() {
        let p = pod(json!({"containers": [], "hostNetwork": true}));
        assert_eq!(dns_config(&p, &settings()), None);
        let p = pod(json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(dns_config(&p, &settings()), None);
        let p = pod(
            json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
        );
        assert_eq!(
            dns_config(&p, &settings()).unwrap().servers,
            vec!["10.43.0.10"]
        );
    }

    #[test]
    fn dns_config_is_merged() {
        let p = pod(json!({"containers": [], "dnsConfig": {
            "nameservers": ["8.8.8.8"], "searches": ["extra.local"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}]}}));
        let cfg = dns_config(&p, &settings()).unwrap();
        assert_eq!(cfg.servers, vec!["10.43.0.10", "8.8.8.8"]);
        assert_eq!(cfg.searches.last().unwrap(), "extra.local");
        assert_eq!(cfg.options, vec!["ndots:2", "single-request"]);
        let p = pod(
            json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {"nameservers": ["9.9.9.9"]}}),
        );
        assert_eq!(
            render_resolv_conf(&dns_config(&p, &settings()).unwrap()),
            "nameserver 9.9.9.9\n"
        );
        let p = pod(
            json!({"containers": [], "dnsPolicy": "Default", "dnsConfig": {"searches": ["a.b"]}}),
        );
        let cfg = dns_config(&p, &settings()).unwrap();
        assert_eq!(cfg.servers, vec!["1.1.1.1"]);
        assert_eq!(cfg.searches, vec!["corp.example", "a.b"]);
    }

    #[test]
    fn hosts_file_content() {
        let p = pod(
            json!({"containers": [], "hostname": "db-0", "subdomain": "db",
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]}),
        );
        let ips = ["10.42.0.7".parse().unwrap()];
        let text = hosts_file(&p, &ips, "cluster.local");
        assert!(text.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.42.0.7\tdb-0.db.shop.svc.cluster.local\tdb-0\n"));
        assert!(
            text.ends_with("\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n")
        );
        let p = pod(json!({"containers": []}));
        assert!(hosts_file(&p, &ips, "cluster.local").contains("10.42.0.7\tweb\n"));
    }

    #[test]
    fn namespaces_and_hostname() {
        let p = pod(json!({"containers": [], "hostPID": true, "hostNetwork": true}));
        let o = namespace_options(&p);
        assert_eq!(
            (o.network, o.pid, o.ipc),
            (NamespaceMode::Node, NamespaceMode::Node, NamespaceMode::Pod)
        );
        let p = pod(json!({"containers": [], "shareProcessNamespace": true}));
        assert_eq!(namespace_options(&p).pid, NamespaceMode::Pod);
        assert_eq!(hostname(&p), "web");
        let cfg = sandbox_config(&p, 2, &settings(), Path::new("/logs"));
        assert_eq!(cfg.log_directory, Path::new("/logs/shop_web_u1"));
        assert_eq!(cfg.labels.get(labels::POD_UID).unwrap(), "u1");
        assert_eq!(cfg.metadata.attempt, 2);
    }
}
