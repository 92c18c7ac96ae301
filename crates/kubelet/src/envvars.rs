//! A container's environment, as upstream's kubelet builds it (`makeEnvironmentVariables`):
//! service links, `envFrom`, then `env` in order with `$(VAR)` expansion and the `valueFrom`
//! sources (ConfigMap and Secret keys, pod fields, container resources).
//!
//! The pure parts ([`expand`], [`service_env`], [`pod_field_value`], [`resource_field_value`])
//! are shared with the downward API volume and `subPathExpr`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Node, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Client;
use kube::api::Api;
use rkube_core::quantity;

/// Why a container's configuration could not be built; the kubelet reports it as
/// `CreateContainerConfigError` with [`ConfigError::message`] as the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// Upstream's text, e.g. `configmap "nope" not found` or
    /// `couldn't find key foo in ConfigMap default/cfg`.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// Reason of the warning event for `envFrom` keys that are not variable names.
pub const INVALID_ENV_NAMES_REASON: &str = "InvalidEnvironmentVariableNames";

/// Expands `$(VAR)` references in `input` as upstream's `expansion.Expand`: `$$` is an escaped
/// `$`; a reference `mapping` does not resolve is left as written; a `$` not starting a
/// reference is kept.
pub fn expand(input: &str, mut mapping: impl FnMut(&str) -> Option<String>) -> String {
    let b = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < b.len() {
        if b[cursor] == b'$' && cursor + 1 < b.len() {
            out.extend_from_slice(&b[checkpoint..cursor]);
            let rest = &b[cursor + 1..];
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|&c| c == b')') {
                    Some(close) => {
                        let name = String::from_utf8_lossy(&rest[1..close]);
                        match mapping(&name) {
                            Some(v) => out.extend_from_slice(v.as_bytes()),
                            None => {
                                out.extend_from_slice(b"$(");
                                out.extend_from_slice(name.as_bytes());
                                out.push(b')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.push(b'$');
                    out.push(other);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < b.len() {
        out.extend_from_slice(&b[checkpoint..]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `name` may be an environment variable name (upstream's relaxed rule, GA in 1.34:
/// printable ASCII without `=`).
pub fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| (b' '..=b'~').contains(&c) && c != b'=')
}

fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// Docker-link-style variables for services, as upstream's `envvars.FromServices`:
/// `{SVC}_SERVICE_HOST`, `{SVC}_SERVICE_PORT`, `{SVC}_SERVICE_PORT_{NAME}` and
/// `{SVC}_PORT`, `{SVC}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]`. Services without a
/// cluster IP are skipped.
pub fn service_link_vars(services: &[&Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let ip = spec.cluster_ip.as_deref().unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = env_name(svc.metadata.name.as_deref().unwrap_or(""));
        let ports = spec.ports.as_deref().unwrap_or(&[]);
        out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        if let Some(p) = ports.first() {
            out.push((format!("{name}_SERVICE_PORT"), p.port.to_string()));
        }
        for p in ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{name}_SERVICE_PORT_{}", env_name(pn)),
                    p.port.to_string(),
                ));
            }
        }
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            let lower = proto.to_lowercase();
            let url = format!("{lower}://{host}:{}", p.port);
            if i == 0 {
                out.push((format!("{name}_PORT"), url.clone()));
            }
            let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((prefix.clone(), url));
            out.push((format!("{prefix}_PROTO"), lower));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// The service variables a pod in `namespace` gets (upstream `getServiceEnvVarMap`): the
/// `kubernetes` service of the `default` namespace always, and with `enableServiceLinks` every
/// service of the pod's namespace, by name order.
pub fn service_env(
    services: &[Service],
    namespace: &str,
    enable_service_links: bool,
) -> Vec<(String, String)> {
    let mut by_name: BTreeMap<&str, &Service> = BTreeMap::new();
    for svc in services {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or("");
        if ns == "default" && name == "kubernetes" {
            by_name.entry(name).or_insert(svc);
        } else if ns == namespace && enable_service_links {
            by_name.insert(name, svc);
        }
    }
    service_link_vars(&by_name.into_values().collect::<Vec<_>>())
}

/// Go's `%q` for the downward API's `key="value"` lines.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A label or annotation map as the downward API prints it: sorted `key="value"` lines.
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `metadata.labels['key']` → (`metadata.labels`, `key`).
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (base, rest) = path.split_once('[')?;
    let key = rest.strip_suffix(']')?;
    let key = key
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')))?;
    Some((base, key))
}

/// The value of a pod field (`fieldRef.fieldPath`) as upstream's kubelet resolves it for env
/// and downward API files. IPs come from `pod.status`.
pub fn pod_field_value(pod: &Pod, path: &str) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    if let Some((base, key)) = subscript(path) {
        let map = match base {
            "metadata.labels" => meta.labels.as_ref(),
            "metadata.annotations" => meta.annotations.as_ref(),
            _ => return Err(ConfigError(format!("unsupported fieldPath: {path}"))),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let joined_ips = |ips: Option<Vec<String>>| ips.unwrap_or_default().join(",");
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => joined_ips(
            status
                .and_then(|s| s.host_ips.as_ref())
                .map(|v| v.iter().map(|i| i.ip.clone()).collect()),
        ),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => joined_ips(
            status
                .and_then(|s| s.pod_ips.as_ref())
                .map(|v| v.iter().map(|i| i.ip.clone()).collect()),
        ),
        _ => return Err(ConfigError(format!("unsupported fieldPath: {path}"))),
    })
}

/// [`pod_field_value`] for an `ObjectFieldSelector`.
pub fn field_ref_value(pod: &Pod, sel: &ObjectFieldSelector) -> Result<String, ConfigError> {
    pod_field_value(pod, &sel.field_path)
}

fn ceil_div(a: i64, b: i64) -> i64 {
    if b <= 0 {
        return 0;
    }
    (a + b - 1).div_euclid(b)
}

/// The value of a `resourceFieldRef` for `container`, as upstream's
/// `ExtractContainerResourceValue`: CPU in units of the divisor (`1m` → millicores), memory,
/// ephemeral storage and huge pages in the divisor's units, rounded up. Missing limits read as
/// `allocatable` (the node's), as upstream's `defaultPodLimitsForDownwardAPI` makes them.
pub fn resource_field_value(
    container: &Container,
    sel: &ResourceFieldSelector,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, ConfigError> {
    let res = container.resources.as_ref();
    let (kind, name) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| ConfigError(format!("unsupported container resource : {}", sel.resource)))?;
    let list = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => {
            return Err(ConfigError(format!(
                "unsupported container resource : {}",
                sel.resource
            )));
        }
    };
    let supported =
        matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
    if !supported {
        return Err(ConfigError(format!(
            "unsupported container resource : {}",
            sel.resource
        )));
    }
    let mut q = list.and_then(|l| l.get(name)).map(|q| q.0.clone());
    if q.is_none() && kind == "limits" && !name.starts_with("hugepages-") {
        q = allocatable.get(name).map(|q| q.0.clone());
    }
    // Requests default to limits, as the apiserver defaults them.
    if q.is_none() && kind == "requests" {
        q = res
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(name))
            .map(|q| q.0.clone());
    }
    let q = q.unwrap_or_else(|| "0".into());
    let divisor = sel
        .divisor
        .as_ref()
        .map(|d| d.0.as_str())
        .filter(|d| !d.is_empty())
        .unwrap_or("1");
    let bad = |s: &str| ConfigError(format!("invalid quantity {s:?} for {}", sel.resource));
    let v = if name == "cpu" {
        let amount = quantity::milli_value(&q).map_err(|_| bad(&q))?;
        let d = quantity::milli_value(divisor).map_err(|_| bad(divisor))?;
        ceil_div(amount, d.max(1))
    } else {
        let amount = quantity::value(&q).map_err(|_| bad(&q))?;
        let d = quantity::value(divisor).map_err(|_| bad(divisor))?;
        ceil_div(amount, d.max(1))
    };
    Ok(v.to_string())
}

/// Objects fetched while building one container's environment, each once (as upstream keeps
/// them for the duration of one call).
pub(crate) struct Sources<'a> {
    client: &'a Client,
    namespace: String,
    config_maps: BTreeMap<String, Option<ConfigMap>>,
    secrets: BTreeMap<String, Option<Secret>>,
}

impl<'a> Sources<'a> {
    pub(crate) fn new(client: &'a Client, namespace: &str) -> Self {
        Sources {
            client,
            namespace: namespace.to_string(),
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    /// The ConfigMap, `None` when it does not exist; other failures are errors.
    pub(crate) async fn config_map(
        &mut self,
        name: &str,
    ) -> Result<Option<ConfigMap>, ConfigError> {
        if let Some(c) = self.config_maps.get(name) {
            return Ok(c.clone());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let c = api.get_opt(name).await.map_err(|e| {
            ConfigError(format!(
                "couldn't get configMap {}/{name}: {e}",
                self.namespace
            ))
        })?;
        self.config_maps.insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// The Secret, `None` when it does not exist; other failures are errors.
    pub(crate) async fn secret(&mut self, name: &str) -> Result<Option<Secret>, ConfigError> {
        if let Some(s) = self.secrets.get(name) {
            return Ok(s.clone());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let s = api.get_opt(name).await.map_err(|e| {
            ConfigError(format!(
                "couldn't get secret {}/{name}: {e}",
                self.namespace
            ))
        })?;
        self.secrets.insert(name.to_string(), s.clone());
        Ok(s)
    }
}

/// The node's allocatable resources: from its Node object, else this host's.
pub(crate) async fn node_allocatable(client: &Client, pod: &Pod) -> BTreeMap<String, Quantity> {
    if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        let api: Api<Node> = Api::all(client.clone());
        if let Ok(n) = api.get(node).await
            && let Some(a) = n.status.and_then(|s| s.allocatable)
        {
            return a;
        }
    }
    crate::hostinfo::HostCapacity::read(std::path::Path::new("/")).allocatable()
}

/// An ordered environment in which a later definition replaces an earlier one in place.
#[derive(Default)]
struct Env {
    order: Vec<String>,
    values: BTreeMap<String, String>,
}

impl Env {
    fn set(&mut self, k: String, v: String) {
        if self.values.insert(k.clone(), v).is_none() {
            self.order.push(k);
        }
    }
}

/// The container's environment (see [`container_env_with_warnings`]); the warnings are logged.
pub async fn container_env(
    client: &Client,
    pod: &Pod,
    container: &Container,
    services: &[Service],
) -> Result<Vec<(String, String)>, ConfigError> {
    let (env, warnings) = container_env_with_warnings(client, pod, container, services).await?;
    for w in warnings {
        tracing::warn!("{INVALID_ENV_NAMES_REASON}: {w}");
    }
    Ok(env)
}

/// The container's environment, in order: `envFrom` sources, then `env` as declared (values
/// expanded against the variables before them and the service variables), then the service
/// variables not otherwise defined. `services` should hold the pod namespace's services and
/// `default/kubernetes`; which ones apply follows `enableServiceLinks`. IPs for `fieldRef` are
/// read from `pod.status`, so the caller sets them first.
///
/// The second value lists warning-event messages (reason [`INVALID_ENV_NAMES_REASON`]) for
/// `envFrom` keys skipped as invalid names.
pub async fn container_env_with_warnings(
    client: &Client,
    pod: &Pod,
    container: &Container,
    services: &[Service],
) -> Result<(Vec<(String, String)>, Vec<String>), ConfigError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let service_vars = service_env(services, ns, links);
    let service_map: BTreeMap<&str, &str> = service_vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut sources = Sources::new(client, ns);
    let mut env = Env::default();
    let mut warnings = Vec::new();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (kind, name, data): (&str, String, BTreeMap<String, String>) =
            if let Some(r) = &from.config_map_ref {
                let optional = r.optional.unwrap_or(false);
                match sources.config_map(&r.name).await? {
                    Some(cm) => ("configMap", r.name.clone(), cm.data.unwrap_or_default()),
                    None if optional => continue,
                    None => return Err(ConfigError(format!("configmap {:?} not found", r.name))),
                }
            } else if let Some(r) = &from.secret_ref {
                let optional = r.optional.unwrap_or(false);
                match sources.secret(&r.name).await? {
                    Some(s) => (
                        "secret",
                        r.name.clone(),
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                            .collect(),
                    ),
                    None if optional => continue,
                    None => return Err(ConfigError(format!("secret {:?} not found", r.name))),
                }
            } else {
                continue;
            };
        let mut invalid = Vec::new();
        for (k, v) in data {
            let k = format!("{prefix}{k}");
            if is_env_var_name(&k) {
                env.set(k, v);
            } else {
                invalid.push(k);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            warnings.push(format!(
                "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }

    let mut allocatable: Option<BTreeMap<String, Quantity>> = None;
    for var in container.env.iter().flatten() {
        let value = var.value.as_deref().unwrap_or("");
        let resolved = if !value.is_empty() {
            expand(value, |name| {
                env.values
                    .get(name)
                    .cloned()
                    .or_else(|| service_map.get(name).map(|v| v.to_string()))
            })
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                field_ref_value(pod, f)?
            } else if let Some(r) = &from.resource_field_ref {
                if allocatable.is_none() {
                    allocatable = Some(node_allocatable(client, pod).await);
                }
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(n) if n != container.name => find_container(pod, n)
                        .ok_or_else(|| ConfigError(format!("container {n} not found")))?,
                    _ => container,
                };
                resource_field_value(target, r, allocatable.as_ref().expect("fetched above"))?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                let Some(cm) = sources.config_map(&r.name).await? else {
                    if optional {
                        continue;
                    }
                    return Err(ConfigError(format!("configmap {:?} not found", r.name)));
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(ConfigError(format!(
                            "couldn't find key {} in ConfigMap {ns}/{}",
                            r.key, r.name
                        )));
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                let Some(s) = sources.secret(&r.name).await? else {
                    if optional {
                        continue;
                    }
                    return Err(ConfigError(format!("secret {:?} not found", r.name)));
                };
                match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(ConfigError(format!(
                            "couldn't find key {} in Secret {ns}/{}",
                            r.key, r.name
                        )));
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), resolved);
    }

    let Env { order, mut values } = env;
    let mut out: Vec<(String, String)> = order
        .into_iter()
        .map(|k| {
            let v = values.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect();
    let defined: std::collections::HashSet<String> = out.iter().map(|(k, _)| k.clone()).collect();
    out.extend(
        service_vars
            .into_iter()
            .filter(|(k, _)| !defined.contains(k)),
    );
    Ok((out, warnings))
}

/// A container of the pod (regular, init or ephemeral) by name.
pub fn find_container<'p>(pod: &'p Pod, name: &str) -> Option<&'p Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    /// Cases from upstream's `TestMapReference` / `TestExpand`.
    #[test]
    fn expansion() {
        let m = map(&[
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ]);
        for (input, want) in [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("$(VAR_EMPTY)", ""),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$VAR_A", "$VAR_A"),
            ("$", "$"),
            ("foo$", "foo$"),
            ("$$", "$"),
            ("$(", "$("),
            ("$()", "$()"),
            ("f00__(VAR_A)__", "f00__(VAR_A)__"),
            ("$(VAR_A)$$", "A$"),
            ("é$(VAR_A)ü$ü", "éAü$ü"),
        ] {
            assert_eq!(expand(input, &m), want, "{input}");
        }
    }

    #[test]
    fn env_names() {
        assert!(is_env_var_name("FOO_bar.1"));
        assert!(is_env_var_name("1abc"));
        assert!(!is_env_var_name("a=b"));
        assert!(!is_env_var_name(""));
        assert!(!is_env_var_name("tab\there"));
    }

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports}}))
        .unwrap()
    }

    #[test]
    fn service_links() {
        let services = vec![
            svc(
                "default",
                "kubernetes",
                "10.43.0.1",
                json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            svc(
                "app",
                "my-db",
                "10.43.0.9",
                json!([{"name": "sql", "port": 5432, "protocol": "TCP"},
                                                   {"port": 53, "protocol": "UDP"}]),
            ),
            svc("app", "headless", "None", json!([{"port": 80}])),
            svc("other", "x", "10.43.0.7", json!([{"port": 80}])),
        ];
        let vars: BTreeMap<String, String> =
            service_env(&services, "app", true).into_iter().collect();
        assert_eq!(vars["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
        assert_eq!(vars["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(vars["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(vars["KUBERNETES_PORT"], "tcp://10.43.0.1:443");
        assert_eq!(vars["KUBERNETES_PORT_443_TCP"], "tcp://10.43.0.1:443");
        assert_eq!(vars["KUBERNETES_PORT_443_TCP_PROTO"], "tcp");
        assert_eq!(vars["KUBERNETES_PORT_443_TCP_PORT"], "443");
        assert_eq!(vars["KUBERNETES_PORT_443_TCP_ADDR"], "10.43.0.1");
        assert_eq!(vars["MY_DB_SERVICE_HOST"], "10.43.0.9");
        assert_eq!(vars["MY_DB_SERVICE_PORT"], "5432");
        assert_eq!(vars["MY_DB_SERVICE_PORT_SQL"], "5432");
        assert_eq!(vars["MY_DB_PORT"], "tcp://10.43.0.9:5432");
        assert_eq!(vars["MY_DB_PORT_53_UDP"], "udp://10.43.0.9:53");
        assert_eq!(vars["MY_DB_PORT_53_UDP_PROTO"], "udp");
        assert!(
            !vars
                .keys()
                .any(|k| k.starts_with("HEADLESS") || k.starts_with("X_"))
        );
        // Without service links only the kubernetes service remains.
        let vars = service_env(&services, "app", false);
        assert!(vars.iter().all(|(k, _)| k.starts_with("KUBERNETES_")));
        assert_eq!(vars.len(), 8);
    }

    fn test_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                         "labels": {"b": "2", "a": "x\"y"}, "annotations": {"k": "v"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": [{"name": "c",
                "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}}]},
            "status": {"hostIP": "10.0.0.1", "hostIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                       "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}]},
        }))
        .unwrap()
    }

    #[test]
    fn field_refs() {
        let p = test_pod();
        for (path, want) in [
            ("metadata.name", "p"),
            ("metadata.namespace", "ns"),
            ("metadata.uid", "u-1"),
            ("metadata.labels['b']", "2"),
            ("metadata.labels['nope']", ""),
            ("metadata.annotations['k']", "v"),
            ("metadata.labels", "a=\"x\\\"y\"\nb=\"2\""),
            ("spec.nodeName", "n1"),
            ("spec.serviceAccountName", "sa"),
            ("status.hostIP", "10.0.0.1"),
            ("status.hostIPs", "10.0.0.1,fd00::1"),
            ("status.podIP", "10.42.0.5"),
            ("status.podIPs", "10.42.0.5"),
        ] {
            assert_eq!(pod_field_value(&p, path).unwrap(), want, "{path}");
        }
        assert!(pod_field_value(&p, "spec.nope").is_err());
    }

    #[test]
    fn resource_refs() {
        let p = test_pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let alloc: BTreeMap<String, Quantity> = [
            ("cpu".to_string(), Quantity("2".into())),
            ("memory".to_string(), Quantity("4Gi".into())),
        ]
        .into();
        let sel = |r: &str, d: Option<&str>| ResourceFieldSelector {
            container_name: None,
            divisor: d.map(|d| Quantity(d.into())),
            resource: r.into(),
        };
        let v = |r, d| resource_field_value(c, &sel(r, d), &alloc).unwrap();
        assert_eq!(v("limits.cpu", None), "1"); // 500m rounds up
        assert_eq!(v("limits.cpu", Some("1m")), "500");
        assert_eq!(v("requests.cpu", Some("1m")), "250");
        assert_eq!(v("requests.memory", None), "67108864");
        assert_eq!(v("requests.memory", Some("1Mi")), "64");
        // No memory limit: the node's allocatable.
        assert_eq!(v("limits.memory", Some("1Gi")), "4");
        assert!(resource_field_value(c, &sel("limits.gpu", None), &alloc).is_err());
    }
}
