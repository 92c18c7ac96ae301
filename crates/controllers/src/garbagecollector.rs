//! The garbage collector: deletes objects whose owners are gone, and carries out the
//! `orphan` and `foregroundDeletion` propagation policies, as upstream's does.
//!
//! It keeps a graph of every object's metadata (uid, ownerReferences, deletion state), fed by
//! one metadata-only watch per resource that supports list, watch and delete, and reacts to
//! changes through a work queue of uids:
//! - a dependent all of whose owners are absent is deleted (after confirming with the API
//!   that the owner really is gone, since the graph may lag);
//! - an owner being deleted with the `orphan` finalizer has its reference removed from every
//!   dependent, then the finalizer removed;
//! - an owner being deleted with `foregroundDeletion` has its dependents deleted, and the
//!   finalizer removed once none is left.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, PartialObjectMeta};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::mpsc;

/// Finalizer of the `Orphan` propagation policy.
pub const ORPHAN: &str = "orphan";
/// Finalizer of the `Foreground` propagation policy.
pub const FOREGROUND: &str = "foregroundDeletion";

/// One owner reference, reduced to what the collector needs.
#[derive(Debug, Clone, PartialEq)]
struct Owner {
    uid: String,
    kind: String,
    api_version: String,
    name: String,
}

/// An object in the graph.
#[derive(Debug, Clone)]
struct Node {
    resource: Arc<ApiResource>,
    namespaced: bool,
    namespace: Option<String>,
    name: String,
    owners: Vec<Owner>,
    deleting: bool,
    finalizers: Vec<String>,
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// owner uid → dependent uids.
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn upsert(&mut self, uid: String, node: Node) {
        self.remove(&uid);
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        self.nodes.insert(uid, node);
    }

    fn remove(&mut self, uid: &str) -> Option<Node> {
        let old = self.nodes.remove(uid)?;
        for o in &old.owners {
            if let Some(d) = self.dependents.get_mut(&o.uid) {
                d.remove(uid);
                if d.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
        Some(old)
    }

    fn dependents_of(&self, uid: &str) -> Vec<(String, Node)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).map(|n| (d.clone(), n.clone())))
            .collect()
    }
}

/// Runs the garbage collector until the process ends.
pub async fn run(client: Client) {
    let graph = Arc::new(Mutex::new(Graph::default()));
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let mut watched: HashSet<String> = HashSet::new();
    let worker_graph = graph.clone();
    let worker_client = client.clone();
    tokio::spawn(async move {
        while let Some(uid) = rx.recv().await {
            if let Err(e) = process(&worker_client, &worker_graph, &uid).await {
                tracing::debug!("garbage collector: {uid}: {e}");
            }
        }
    });
    // Resources appear with CRDs: rediscover now and then, watching what is new.
    loop {
        match Discovery::new(client.clone()).run().await {
            Ok(discovery) => {
                for group in discovery.groups() {
                    for (ar, caps) in group.recommended_resources() {
                        let ops = [verbs::LIST, verbs::WATCH, verbs::DELETE];
                        if !ops.iter().all(|v| caps.supports_operation(v)) {
                            continue;
                        }
                        // Upstream's ignored resources: events (both groups' views of
                        // them) never own anything and are too many to track.
                        if ar.plural == "events"
                            && (ar.group.is_empty() || ar.group == "events.k8s.io")
                        {
                            continue;
                        }
                        let key = format!("{}/{}/{}", ar.group, ar.version, ar.plural);
                        if watched.insert(key) {
                            let namespaced = caps.scope == Scope::Namespaced;
                            tokio::spawn(watch_resource(
                                client.clone(),
                                Arc::new(ar),
                                namespaced,
                                graph.clone(),
                                tx.clone(),
                            ));
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("garbage collector discovery: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

async fn watch_resource(
    client: Client,
    ar: Arc<ApiResource>,
    namespaced: bool,
    graph: Arc<Mutex<Graph>>,
    queue: mpsc::UnboundedSender<String>,
) {
    // An Api of PartialObjectMeta asks only for metadata (PartialObjectMetadata lists).
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &*ar);
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!("garbage collector watch {}: {e}", ar.plural);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut touched = Vec::new();
        {
            let mut g = graph.lock().expect("graph lock");
            match ev {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    if let Some((uid, node)) = node_of(&o, &ar, namespaced) {
                        touched.push(uid.clone());
                        // Dependents react to their owner appearing or starting to delete.
                        touched.extend(g.dependents.get(&uid).into_iter().flatten().cloned());
                        g.upsert(uid, node);
                    }
                }
                watcher::Event::Delete(o) => {
                    if let Some(uid) = o.metadata.uid.clone() {
                        // Owners waiting in foreground deletion re-check their dependents.
                        if let Some(old) = g.remove(&uid) {
                            touched.extend(old.owners.into_iter().map(|o| o.uid));
                        }
                        touched.extend(g.dependents.get(&uid).into_iter().flatten().cloned());
                    }
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
        for uid in touched {
            let _ = queue.send(uid);
        }
    }
}

fn node_of(
    o: &PartialObjectMeta<DynamicObject>,
    ar: &Arc<ApiResource>,
    namespaced: bool,
) -> Option<(String, Node)> {
    let m = &o.metadata;
    let uid = m.uid.clone()?;
    let owners = m
        .owner_references
        .iter()
        .flatten()
        .map(|r| Owner {
            uid: r.uid.clone(),
            kind: r.kind.clone(),
            api_version: r.api_version.clone(),
            name: r.name.clone(),
        })
        .collect();
    Some((
        uid,
        Node {
            resource: ar.clone(),
            namespaced,
            namespace: m.namespace.clone(),
            name: m.name.clone().unwrap_or_default(),
            owners,
            deleting: m.deletion_timestamp.is_some(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
        },
    ))
}

fn api_for(client: &Client, node: &Node) -> Api<DynamicObject> {
    match (&node.namespace, node.namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &*node.resource),
        _ => Api::all_with(client.clone(), &*node.resource),
    }
}

async fn process(client: &Client, graph: &Mutex<Graph>, uid: &str) -> Result<(), kube::Error> {
    let (node, dependents, absent_owners) = {
        let g = graph.lock().expect("graph lock");
        let Some(node) = g.nodes.get(uid).cloned() else {
            return Ok(());
        };
        let absent: Vec<Owner> = node
            .owners
            .iter()
            .filter(|o| !g.nodes.contains_key(&o.uid))
            .cloned()
            .collect();
        (node, g.dependents_of(uid), absent)
    };
    let api = api_for(client, &node);
    if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
        for (_, dep) in &dependents {
            remove_owner(client, dep, uid).await?;
        }
        return remove_finalizer(&api, &node, ORPHAN).await;
    }
    if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
        if dependents.is_empty() {
            return remove_finalizer(&api, &node, FOREGROUND).await;
        }
        for (_, dep) in dependents.iter().filter(|(_, d)| !d.deleting) {
            let dp = DeleteParams::foreground();
            match api_for(client, dep).delete(&dep.name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(());
    }
    if !node.owners.is_empty() && absent_owners.len() == node.owners.len() && !node.deleting {
        // The graph may not have seen an owner yet: ask the API before deleting anything.
        for o in &absent_owners {
            if owner_exists(client, &node, o).await? {
                return Ok(());
            }
        }
        match api.delete(&node.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether the owner `o` of `node` exists (same uid), asked of the API.
async fn owner_exists(client: &Client, node: &Node, o: &Owner) -> Result<bool, kube::Error> {
    let (group, version) = match o.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), o.api_version.clone()),
    };
    let discovery = kube::discovery::pinned_kind(
        client,
        &kube::core::GroupVersionKind::gvk(&group, &version, &o.kind),
    )
    .await;
    let Ok((ar, caps)) = discovery else {
        // An owner kind the server does not serve cannot exist.
        return Ok(false);
    };
    let api: Api<DynamicObject> = match (caps.scope, &node.namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    };
    Ok(api
        .get_metadata_opt(&o.name)
        .await?
        .is_some_and(|m| m.metadata.uid.as_deref() == Some(o.uid.as_str())))
}

async fn remove_owner(client: &Client, dep: &Node, owner_uid: &str) -> Result<(), kube::Error> {
    let api = api_for(client, dep);
    let Some(current) = api.get_metadata_opt(&dep.name).await? else {
        return Ok(());
    };
    let refs: Vec<_> = current
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.uid != owner_uid)
        .collect();
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": current.metadata.resource_version,
    }});
    api.patch(&dep.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

async fn remove_finalizer(
    api: &Api<DynamicObject>,
    node: &Node,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let Some(current) = api.get_metadata_opt(&node.name).await? else {
        return Ok(());
    };
    let kept: Vec<String> = current
        .metadata
        .finalizers
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    let patch = json!({"metadata": {
        "finalizers": kept,
        "resourceVersion": current.metadata.resource_version,
    }});
    api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}
