//! Static pods (upstream's `config/file.go` + mirror pods): manifests in the pod manifest
//! directory run on this node without the API; each gets a mirror pod in the API so
//! `kubectl get pods` shows it.
//!
//! As upstream: the pod is named `<name>-<node>`, defaults to namespace `default`, and gets a
//! UID hashed from the node, the file and the manifest, so an unchanged file keeps its pod
//! across kubelet restarts and a changed one becomes a new pod (the old one is stopped).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::pods::PodWorkers;

/// `kubernetes.io/config.source`.
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// `kubernetes.io/config.hash`.
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// `kubernetes.io/config.seen`.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
/// `kubernetes.io/config.mirror`: marks a mirror pod, its value is the static pod's hash.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// Whether a pod from the API is a mirror of a static pod.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFIG_MIRROR))
}

/// The UID of a static pod: a hash of node, file and manifest (32 hex digits, as upstream's
/// md5-based one).
pub fn static_pod_uid(node: &str, file: &Path, manifest: &Value) -> String {
    let mut h = Sha256::new();
    h.update(format!("host:{node}").as_bytes());
    h.update(format!("file:{}", file.display()).as_bytes());
    h.update(manifest.to_string().as_bytes());
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Turns one manifest document into the static pod this node runs.
pub fn static_pod(doc: &Value, file: &Path, node: &str, seen: &str) -> Result<Pod, String> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != "Pod" {
        return Err(format!("{}: kind {kind:?} is not Pod", file.display()));
    }
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{}: metadata.name is required", file.display()))?;
    let uid = static_pod_uid(node, file, doc);
    let mut v = doc.clone();
    v["apiVersion"] = json!("v1");
    let meta = v
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| format!("{}: metadata must be an object", file.display()))?;
    meta.insert(
        "name".into(),
        json!(format!("{name}-{}", node.to_lowercase())),
    );
    if meta
        .get("namespace")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        meta.insert("namespace".into(), json!("default"));
    }
    meta.insert("uid".into(), json!(uid));
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if !ann.is_object() {
        *ann = json!({});
    }
    ann[CONFIG_SOURCE] = json!("file");
    ann[CONFIG_HASH] = json!(uid);
    ann[CONFIG_SEEN] = json!(seen);
    let spec = v
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| format!("{}: spec is required", file.display()))?;
    spec.insert("nodeName".into(), json!(node));
    spec.entry("restartPolicy").or_insert(json!("Always"));
    spec.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    spec.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    spec.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    // Static pods tolerate every NoExecute taint (upstream adds this toleration).
    let tol = spec.entry("tolerations").or_insert(json!([]));
    if let Some(list) = tol.as_array_mut() {
        list.push(json!({"operator": "Exists", "effect": "NoExecute"}));
    }
    serde_json::from_value(v).map_err(|e| format!("{}: invalid pod: {e}", file.display()))
}

/// Parses a manifest file (YAML or JSON, one or more documents).
pub fn parse_manifest(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The static pods of a directory, keyed by UID, and the errors of files that could not be
/// read. `seen` keeps each UID's first-seen time stable across scans.
pub fn scan_dir(
    dir: &Path,
    node: &str,
    seen: &mut HashMap<String, String>,
) -> (BTreeMap<String, Pod>, Vec<String>) {
    let mut pods = BTreeMap::new();
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (pods, errors);
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            // Editors' temp files and hidden files are skipped, as upstream does.
            p.is_file() && !name.starts_with('.') && !name.ends_with('~')
        })
        .collect();
    files.sort();
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        let docs = match parse_manifest(&text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        for doc in docs {
            let uid = static_pod_uid(node, &f, &doc);
            let seen_at = seen.entry(uid).or_insert_with(|| now.clone()).clone();
            match static_pod(&doc, &f, node, &seen_at) {
                Ok(p) => {
                    pods.insert(p.metadata.uid.clone().unwrap_or_default(), p);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    seen.retain(|uid, _| pods.contains_key(uid));
    (pods, errors)
}

/// The static pod source: the current pods and their first-seen times.
#[derive(Debug)]
pub struct StaticPods {
    dir: PathBuf,
    node: String,
    seen: HashMap<String, String>,
    /// The pods currently defined, by UID.
    pub pods: BTreeMap<String, Pod>,
}

/// What changed between two scans.
#[derive(Debug, Default)]
pub struct Changes {
    /// New pods (new files or changed contents).
    pub added: Vec<Pod>,
    /// Pods whose manifest went away (or changed: the old UID is removed).
    pub removed: Vec<Pod>,
}

impl StaticPods {
    /// A source over `dir` for node `node`.
    pub fn new(dir: PathBuf, node: String) -> StaticPods {
        StaticPods {
            dir,
            node,
            seen: HashMap::new(),
            pods: BTreeMap::new(),
        }
    }

    /// Re-reads the directory.
    pub fn scan(&mut self) -> Changes {
        let (pods, errors) = scan_dir(&self.dir, &self.node, &mut self.seen);
        for e in errors {
            tracing::warn!("static pod manifest: {e}");
        }
        let mut ch = Changes::default();
        for (uid, p) in &pods {
            if !self.pods.contains_key(uid) {
                ch.added.push(p.clone());
            }
        }
        for (uid, p) in &self.pods {
            if !pods.contains_key(uid) {
                ch.removed.push(p.clone());
            }
        }
        self.pods = pods;
        ch
    }
}

/// The mirror pod object of a static pod.
pub fn mirror_pod(pod: &Pod, node: &Node) -> Value {
    let mut v = serde_json::to_value(pod).unwrap_or_default();
    let hash = pod.metadata.uid.clone().unwrap_or_default();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("uid");
        meta.remove("resourceVersion");
        meta.remove("creationTimestamp");
        meta.entry("annotations").or_insert_with(|| json!({}))[CONFIG_MIRROR] = json!(hash);
        meta.insert(
            "ownerReferences".into(),
            json!([{
                "apiVersion": "v1", "kind": "Node",
                "name": node.metadata.name.clone().unwrap_or_default(),
                "uid": node.metadata.uid.clone().unwrap_or_default(),
                "controller": true,
            }]),
        );
    }
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
        obj.insert("kind".into(), json!("Pod"));
    }
    v
}

/// Makes the API hold a current mirror pod for each static pod, and none for removed ones.
pub async fn sync_mirrors(
    client: &Client,
    node_name: &str,
    pods: &BTreeMap<String, Pod>,
    removed: &[Pod],
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let Ok(node) = nodes.get(node_name).await else {
        // Not registered yet (or the API is down): next round.
        return;
    };
    for p in removed {
        let api: Api<Pod> = Api::namespaced(
            client.clone(),
            p.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = p.metadata.name.clone().unwrap_or_default();
        if let Ok(Some(m)) = api.get_opt(&name).await
            && is_mirror(&m)
        {
            let _ = api.delete(&name, &delete_now(&m)).await;
        }
    }
    for p in pods.values() {
        let ns = p.metadata.namespace.as_deref().unwrap_or("default");
        let name = p.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        let hash = p.metadata.uid.clone().unwrap_or_default();
        match api.get_opt(&name).await {
            Ok(Some(m)) => {
                let current = m
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CONFIG_MIRROR))
                    .is_some_and(|h| *h == hash);
                if !is_mirror(&m) {
                    tracing::warn!(pod = %name, "a pod not created by this kubelet has the static pod's name");
                } else if !current || m.metadata.deletion_timestamp.is_some() {
                    // Outdated or being deleted: replace it (recreated next round).
                    let _ = api.delete(&name, &delete_now(&m)).await;
                }
            }
            Ok(None) => {
                let body = mirror_pod(p, &node);
                match serde_json::from_value::<Pod>(body) {
                    Ok(mp) => {
                        if let Err(e) = api.create(&PostParams::default(), &mp).await {
                            tracing::debug!(pod = %name, error = %e, "creating mirror pod failed");
                        }
                    }
                    Err(e) => tracing::warn!(pod = %name, error = %e, "mirror pod not built"),
                }
            }
            Err(e) => tracing::debug!(pod = %name, error = %e, "reading mirror pod failed"),
        }
    }
}

fn delete_now(p: &Pod) -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: p.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    }
}

/// Re-reads the manifests every `every`, feeding changes to the pod workers and keeping the
/// mirror pods current. Runs forever.
pub async fn run(
    mut source: StaticPods,
    workers: Arc<PodWorkers>,
    client: Option<Client>,
    node_name: String,
    every: Duration,
) {
    let mut pending_removed: Vec<Pod> = Vec::new();
    loop {
        let ch = source.scan();
        for p in &ch.added {
            tracing::info!(pod = ?p.metadata.name, "static pod added");
            workers.update(p.clone());
        }
        for p in &ch.removed {
            tracing::info!(pod = ?p.metadata.name, "static pod removed");
            if let Some(uid) = &p.metadata.uid {
                workers.remove(uid);
            }
            // A changed manifest keeps its name: only delete mirrors of names no longer used.
            let still_named = source
                .pods
                .values()
                .any(|q| q.metadata.name == p.metadata.name);
            if !still_named {
                pending_removed.push(p.clone());
            }
        }
        if let Some(c) = &client {
            sync_mirrors(c, &node_name, &source.pods, &pending_removed).await;
            pending_removed.clear();
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - name: etcd\n    image: etcd:3.5\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx\n";

    #[test]
    fn naming_uid_and_annotations() {
        let dir = crate::pods::tests_support::TempDir::new("static");
        std::fs::write(dir.0.join("pods.yaml"), MANIFEST).unwrap();
        std::fs::write(dir.0.join(".hidden.yaml"), "garbage: [").unwrap();
        let mut sp = StaticPods::new(dir.0.clone(), "Node-A".into());
        let ch = sp.scan();
        assert_eq!(ch.added.len(), 2);
        let etcd = ch
            .added
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some("etcd-node-a"))
            .unwrap();
        assert_eq!(etcd.metadata.namespace.as_deref(), Some("kube-system"));
        let web = ch
            .added
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some("web-node-a"))
            .unwrap();
        assert_eq!(web.metadata.namespace.as_deref(), Some("default"));
        let uid = web.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        let ann = web.metadata.annotations.clone().unwrap();
        assert_eq!(ann[CONFIG_SOURCE], "file");
        assert_eq!(ann[CONFIG_HASH], uid);
        assert!(ann.contains_key(CONFIG_SEEN));
        assert_eq!(
            web.spec.as_ref().unwrap().node_name.as_deref(),
            Some("Node-A")
        );
        // Unchanged: nothing new, same UID.
        let ch = sp.scan();
        assert!(ch.added.is_empty() && ch.removed.is_empty());
        // Changed: a new UID replaces the old pod.
        std::fs::write(
            dir.0.join("pods.yaml"),
            MANIFEST.replace("nginx", "nginx:1.27"),
        )
        .unwrap();
        let ch = sp.scan();
        assert_eq!((ch.added.len(), ch.removed.len()), (1, 1));
        assert_ne!(ch.added[0].metadata.uid.as_deref(), Some(uid.as_str()));
        // Removed file: both go.
        std::fs::remove_file(dir.0.join("pods.yaml")).unwrap();
        assert_eq!(sp.scan().removed.len(), 2);
    }

    #[test]
    fn uid_is_deterministic() {
        let doc: Value = serde_json::from_str(
            r#"{"kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[]}}"#,
        )
        .unwrap();
        let a = static_pod_uid("n", Path::new("/m/a.yaml"), &doc);
        assert_eq!(a, static_pod_uid("n", Path::new("/m/a.yaml"), &doc));
        assert_ne!(a, static_pod_uid("m", Path::new("/m/a.yaml"), &doc));
        assert_ne!(a, static_pod_uid("n", Path::new("/m/b.yaml"), &doc));
    }

    #[test]
    fn mirror_pod_has_owner_and_mirror_annotation() {
        let doc: Value = serde_json::from_str(r#"{"kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"x"}]}}"#).unwrap();
        let p = static_pod(&doc, Path::new("/m/a.json"), "n1", "now").unwrap();
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": "n1", "uid": "node-uid"}})).unwrap();
        let m = mirror_pod(&p, &node);
        assert_eq!(
            m["metadata"]["annotations"][CONFIG_MIRROR],
            json!(p.metadata.uid.clone().unwrap())
        );
        assert_eq!(
            m["metadata"]["ownerReferences"][0]["uid"],
            json!("node-uid")
        );
        assert_eq!(
            m["metadata"]["ownerReferences"][0]["controller"],
            json!(true)
        );
        assert!(m["metadata"].get("uid").is_none());
        let p: Pod = serde_json::from_value(m).unwrap();
        assert!(is_mirror(&p));
        assert!(
            static_pod(
                &json!({"kind": "Service", "metadata": {"name": "x"}}),
                Path::new("/f"),
                "n",
                "t"
            )
            .is_err()
        );
    }
}
