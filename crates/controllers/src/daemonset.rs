//! The DaemonSet controller: one daemon pod on every eligible node.
//!
//! A node is eligible when the pod template's `nodeName`, `nodeSelector` and required node
//! affinity match it and its NoSchedule/NoExecute taints are tolerated, counting the
//! tolerations this controller adds to every daemon pod (not-ready, unreachable, the
//! pressure conditions, unschedulable, and network-unavailable for hostNetwork pods). Pods
//! are pinned with a required node affinity `matchFields metadata.name In [node]`, so the
//! scheduler still binds them, and labelled with `controller-revision-hash` and
//! `pod-template-generation`. Templates are recorded as ControllerRevisions; RollingUpdate
//! replaces old pods node by node within `maxUnavailable` (delete first), or, with
//! `maxSurge`, starts the new pod beside the old one and deletes the old one once the new
//! one is available (create first); OnDelete replaces pods only when they are deleted.
//! A change to any node re-reconciles every DaemonSet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rkube_apimachinery::labels::Selector;
use serde_json::{Value, json};

use crate::controllerrevision::{self as revisions, CONTROLLER_REVISION_HASH, Owner, Synced};
use crate::events::Recorder;
use crate::pods::{self, is_active, is_available, is_ready};

/// The label recording the DaemonSet generation a pod was created from.
pub const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";

pub use crate::Error;

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let daemonsets: Api<DaemonSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), "daemonset-controller"),
        client,
    });
    let controller = Controller::new(daemonsets, watcher::Config::default());
    let store = controller.store();
    controller
        .owns(pods, watcher::Config::default())
        .watches(nodes, watcher::Config::default(), move |_node: Node| {
            // Any node may become (in)eligible for any DaemonSet.
            store
                .state()
                .into_iter()
                .map(|ds| ObjectRef::from_obj(&*ds))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_ds: Arc<DaemonSet>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!("daemonset controller: {err}");
    Action::requeue(Duration::from_secs(2))
}

/// The tolerations every daemon pod gets (upstream's `AddOrUpdateDaemonPodTolerations`), so
/// that daemons keep running on nodes that are unhealthy or cordoned.
pub fn daemon_tolerations(host_network: bool) -> Vec<Value> {
    let t = |key: &str, effect: &str| json!({"key": format!("node.kubernetes.io/{key}"), "operator": "Exists", "effect": effect});
    let mut out = vec![
        t("not-ready", "NoExecute"),
        t("unreachable", "NoExecute"),
        t("disk-pressure", "NoSchedule"),
        t("memory-pressure", "NoSchedule"),
        t("pid-pressure", "NoSchedule"),
        t("unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(t("network-unavailable", "NoSchedule"));
    }
    out
}

/// The pod spec with the daemon tolerations added where not already present.
pub fn with_daemon_tolerations(spec: &Value) -> Value {
    let mut spec = spec.clone();
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    let mut list = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for t in daemon_tolerations(host_network) {
        let same = |x: &Value| x["key"] == t["key"] && x["effect"] == t["effect"];
        if !list.iter().any(same) {
            list.push(t);
        }
    }
    spec["tolerations"] = json!(list);
    spec
}

/// Whether `toleration` tolerates `taint` (both as JSON).
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let effect = s(toleration, "effect");
    if !effect.is_empty() && effect != s(taint, "effect") {
        return false;
    }
    let key = s(toleration, "key");
    let exists = s(toleration, "operator") == "Exists";
    if key.is_empty() {
        // An empty key with Exists tolerates everything.
        return exists;
    }
    if key != s(taint, "key") {
        return false;
    }
    exists || s(toleration, "value") == s(taint, "value")
}

fn untolerated<'a>(spec: &Value, taints: &'a [Value], effects: &[&str]) -> Option<&'a Value> {
    let tolerations = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    taints.iter().find(|taint| {
        let effect = taint.get("effect").and_then(Value::as_str).unwrap_or("");
        effects.contains(&effect) && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

fn requirement_matches(r: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = r
        .get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let num = |s: &str| s.parse::<i64>().ok();
    match r.get("operator").and_then(Value::as_str).unwrap_or("") {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => match (value.and_then(num), values.first().and_then(|v| num(v))) {
            (Some(have), Some(want)) if values.len() == 1 => {
                if op == "Gt" {
                    have > want
                } else {
                    have < want
                }
            }
            _ => false,
        },
        _ => false,
    }
}

/// Whether one node selector term matches; a term without requirements matches nothing.
fn term_matches(term: &Value, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
    let list = |k: &str| {
        term.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (exprs, fields) = (list("matchExpressions"), list("matchFields"));
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let key = |r: &Value| {
        r.get("key")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&key(r)).map(String::as_str)))
        && fields.iter().all(|r| {
            let v = (key(r) == "metadata.name").then_some(node_name);
            requirement_matches(r, v)
        })
}

/// Whether the pod spec's nodeName, nodeSelector and required node affinity admit the node.
pub fn fits_node(spec: &Value, node: &Node) -> bool {
    let name = node.metadata.name.clone().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(n) = spec.get("nodeName").and_then(Value::as_str)
        && !n.is_empty()
        && n != name
    {
        return false;
    }
    let selector_ok = spec
        .get("nodeSelector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    if !selector_ok {
        return false;
    }
    match spec.pointer(
        "/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
    ) {
        Some(Value::Array(terms)) => terms.iter().any(|t| term_matches(t, &name, &labels)),
        _ => true,
    }
}

/// (should run a daemon pod, may keep an existing one) for a pod spec on a node, as
/// upstream's `NodeShouldRunDaemonPod`: an untolerated NoSchedule taint keeps new pods away,
/// only an untolerated NoExecute one evicts running pods.
pub fn should_run(spec: &Value, node: &Node) -> (bool, bool) {
    if !fits_node(spec, node) {
        return (false, false);
    }
    let taints: Vec<Value> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| {
            t.iter()
                .filter_map(|t| serde_json::to_value(t).ok())
                .collect()
        })
        .unwrap_or_default();
    let spec = with_daemon_tolerations(spec);
    if untolerated(&spec, &taints, &["NoSchedule", "NoExecute"]).is_none() {
        return (true, true);
    }
    (false, untolerated(&spec, &taints, &["NoExecute"]).is_none())
}

/// The node a daemon pod is for: its nodeName, else its `metadata.name` node affinity.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = &spec.node_name {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            let single = r.values.as_ref().filter(|v| v.len() == 1)?;
            (r.key == "metadata.name" && r.operator == "In").then(|| single[0].clone())
        })
    })
}

/// Pins a pod spec to `node` with a required `matchFields metadata.name In [node]` term; the
/// other required terms were already checked against the node.
pub fn pin_to_node(spec: &Value, node: &str) -> Value {
    let mut spec = spec.clone();
    let term =
        json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]});
    if !spec.get("affinity").is_some_and(Value::is_object) {
        spec["affinity"] = json!({});
    }
    if !spec["affinity"]
        .get("nodeAffinity")
        .is_some_and(Value::is_object)
    {
        spec["affinity"]["nodeAffinity"] = json!({});
    }
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] =
        json!({"nodeSelectorTerms": [term]});
    spec
}

/// An int-or-percent resolved against the desired number (percentages round up, as
/// upstream's `GetScaledValueFromIntOrPercent(.., true)`); `default` when unset.
pub fn scaled(v: Option<&IntOrString>, desired: usize, default: usize) -> usize {
    match v {
        Some(IntOrString::Int(i)) => (*i).max(0) as usize,
        Some(IntOrString::String(s)) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            (pct * desired as f64 / 100.0).ceil().max(0.0) as usize
        }
        None => default,
    }
}

/// maxUnavailable resolved against the desired number (percentages round up); at least 1.
pub fn max_unavailable(v: Option<&IntOrString>, desired: usize) -> usize {
    scaled(v, desired, 1).max(1)
}

/// The RollingUpdate limits of a DaemonSet strategy for `desired` daemon pods.
pub fn rolling_limits(
    r: Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet>,
    desired: usize,
) -> Rolling {
    let surge = scaled(r.and_then(|r| r.max_surge.as_ref()), desired, 0);
    let unavailable = scaled(r.and_then(|r| r.max_unavailable.as_ref()), desired, 1);
    Rolling {
        // Both zero would stall the update: upstream then allows one unavailable node.
        max_unavailable: unavailable.max(1),
        max_surge: surge,
    }
}

fn pod_label<'a>(p: &'a Pod, key: &str) -> Option<&'a str> {
    p.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// One DaemonSet's view of one reconcile.
struct Sync<'a> {
    ds: &'a DaemonSet,
    ns: String,
    hash: String,
    template: Value,
    min_ready: i64,
    now: jiff::Timestamp,
}

impl Sync<'_> {
    fn updated(&self, p: &Pod) -> bool {
        pod_label(p, CONTROLLER_REVISION_HASH) == Some(self.hash.as_str())
    }

    fn available(&self, p: &Pod) -> bool {
        is_available(p, self.min_ready, self.now)
    }

    fn new_pod(&self, node: &str) -> Value {
        let meta = self.template.get("metadata").cloned().unwrap_or(json!({}));
        let mut labels = meta.get("labels").cloned().unwrap_or(json!({}));
        labels[CONTROLLER_REVISION_HASH] = json!(self.hash);
        labels[POD_TEMPLATE_GENERATION] =
            json!(self.ds.metadata.generation.unwrap_or(0).to_string());
        let mut metadata = json!({
            "generateName": format!("{}-", self.ds.name_any()),
            "namespace": self.ns,
            "labels": labels,
            "ownerReferences": [self.owner().owner_reference()],
        });
        if let Some(a) = meta.get("annotations") {
            metadata["annotations"] = a.clone();
        }
        let spec = self.template.get("spec").cloned().unwrap_or(json!({}));
        let spec = pin_to_node(&with_daemon_tolerations(&spec), node);
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
    }

    fn owner(&self) -> Owner {
        Owner {
            kind: "DaemonSet",
            name: self.ds.name_any(),
            namespace: self.ns.clone(),
            uid: self.ds.metadata.uid.clone().unwrap_or_default(),
        }
    }
}

/// One active daemon pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Daemon {
    /// Pod name.
    pub name: String,
    /// Whether it runs the current template.
    pub updated: bool,
    /// Whether it is Ready.
    pub ready: bool,
    /// Whether it has been Ready for minReadySeconds.
    pub available: bool,
}

/// What one reconcile does: pods to create (by node) and to delete (by name).
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes needing a daemon pod.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
}

/// A node's daemon pods, as the plan needs them.
#[derive(Debug, Clone)]
pub struct NodePods {
    /// (should run, may keep running).
    pub eligibility: (bool, bool),
    /// Active (not terminating, not finished) pods, oldest first.
    pub active: Vec<Daemon>,
    /// Whether a pod is still terminating there.
    pub terminating: bool,
    /// Failed pods to clear away.
    pub failed: Vec<String>,
}

/// The RollingUpdate limits resolved against the desired number of daemon pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolling {
    /// Nodes that may be without an available daemon pod (delete-first updates).
    pub max_unavailable: usize,
    /// Nodes that may run an old and a new pod at once (create-first updates); when
    /// non-zero, maxUnavailable is not used, as upstream.
    pub max_surge: usize,
}

/// Decides creations and deletions from each node's pods: the manage step (a pod where one
/// should run, none where none may) and then the RollingUpdate step when `rolling` is set.
pub fn plan(nodes: &BTreeMap<String, NodePods>, rolling: Option<Rolling>) -> Plan {
    let mut plan = Plan::default();
    let surge = rolling.is_some_and(|r| r.max_surge > 0);
    for (node, p) in nodes {
        let (run, keep) = p.eligibility;
        plan.delete.extend(p.failed.iter().cloned());
        if run && p.active.is_empty() && !p.terminating {
            plan.create.push(node.clone());
        } else if (run || keep) && p.active.len() > 1 {
            plan.delete.extend(surplus_daemons(&p.active, surge));
        } else if !keep {
            plan.delete.extend(p.active.iter().map(|a| a.name.clone()));
        }
    }
    match rolling {
        Some(r) if r.max_surge > 0 => {
            let (create, delete) = surge_step(nodes, r.max_surge);
            plan.create.extend(create);
            plan.delete.extend(delete);
        }
        Some(r) => plan
            .delete
            .extend(rolling_deletions(nodes, r.max_unavailable)),
        None => {}
    }
    plan.create.sort();
    plan.create.dedup();
    plan.delete.sort();
    plan.delete.dedup();
    plan
}

/// The extra pods on a node running more than one (oldest first). Without surge only the
/// oldest stays; with surge the oldest updated and the oldest old pod both stay, since the
/// old one goes only once the new one is available (upstream's `podsShouldBeOnNode`).
fn surplus_daemons(active: &[Daemon], surge: bool) -> Vec<String> {
    if !surge {
        return active[1..].iter().map(|a| a.name.clone()).collect();
    }
    let (mut new_kept, mut old_kept) = (false, false);
    let mut out = Vec::new();
    for d in active {
        let kept = if d.updated {
            &mut new_kept
        } else {
            &mut old_kept
        };
        if *kept {
            out.push(d.name.clone());
        } else {
            *kept = true;
        }
    }
    out
}

/// One create-first RollingUpdate step (upstream's surge path): a node whose new pod is
/// available loses its old pod; a node with only an old pod gets a new one beside it while
/// fewer than `max_surge` nodes are surging; a node whose old pod is unavailable anyway gets
/// its new pod regardless. Returns (nodes to create on, pods to delete).
fn surge_step(nodes: &BTreeMap<String, NodePods>, max_surge: usize) -> (Vec<String>, Vec<String>) {
    let mut surging = 0;
    let mut delete = Vec::new();
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    for (node, p) in nodes.iter().filter(|(_, p)| p.eligibility.0) {
        let new = p.active.iter().find(|d| d.updated);
        let old = p.active.iter().find(|d| !d.updated);
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !old.available => allowed.push(node.clone()),
            (None, Some(_)) => candidates.push(node.clone()),
            (Some(new), Some(old)) => {
                if new.available {
                    delete.push(old.name.clone());
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = max_surge.saturating_sub(surging).min(candidates.len());
    allowed.extend(candidates.into_iter().take(room));
    (allowed, delete)
}

/// Old pods to delete in one RollingUpdate step: unavailable old pods always, available ones
/// while the number of unavailable nodes stays within `max_unavailable`.
fn rolling_deletions(nodes: &BTreeMap<String, NodePods>, max_unavailable: usize) -> Vec<String> {
    let mut unavailable = 0;
    let mut replace = Vec::new();
    let mut candidates = Vec::new();
    for p in nodes.values().filter(|p| p.eligibility.0) {
        match p.active.as_slice() {
            [d] if !d.updated && !p.terminating => {
                if d.available {
                    candidates.push(d.name.clone());
                } else {
                    // Already down: replacing it costs no availability, but it counts.
                    replace.push(d.name.clone());
                    unavailable += 1;
                }
            }
            [d] if d.available => {}
            _ => unavailable += 1,
        }
    }
    let room = max_unavailable.saturating_sub(unavailable);
    replace.extend(candidates.into_iter().take(room));
    replace
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let selector =
        Selector::from_label_selector(&serde_json::to_value(&spec.selector).unwrap_or_default())
            .map_err(|e| Error::Selector(e.0))?;
    if selector.is_empty() {
        return Err(Error::Selector("empty selector".into()));
    }
    let template = serde_json::to_value(&spec.template).unwrap_or_default();
    let owner_uid = ds.metadata.uid.clone().unwrap_or_default();
    let collision = ds
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let rev_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = Owner {
        kind: "DaemonSet",
        name: ds.name_any(),
        namespace: ns.clone(),
        uid: owner_uid.clone(),
    };
    let (current, all_revisions) =
        match revisions::sync(&rev_api, &owner, &selector, &template, collision).await? {
            Synced::Ready(c, all) => (*c, all),
            Synced::Collision => {
                bump_collision(&ctx, &ds, collision + 1).await?;
                return Ok(Action::requeue(Duration::from_millis(100)));
            }
        };
    let sync = Sync {
        ds: &ds,
        ns: ns.clone(),
        hash: revisions::hash_of(&current),
        template: template.clone(),
        min_ready: spec.min_ready_seconds.unwrap_or(0) as i64,
        now: jiff::Timestamp::now(),
    };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owned = claim_pods(&pods_api, &sync, &selector).await?;
    let nodes: Vec<Node> = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let template_spec = template.get("spec").cloned().unwrap_or(json!({}));
    let by_node = group_by_node(&sync, &template_spec, &nodes, &owned);
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = (strategy.type_.as_deref() != Some("OnDelete")).then(|| {
        let desired = by_node.values().filter(|p| p.eligibility.0).count();
        rolling_limits(strategy.rolling_update.as_ref(), desired)
    });
    let plan = plan(&by_node, rolling);
    execute(&ctx, &sync, &pods_api, &plan).await?;

    let live: BTreeSet<String> = owned
        .iter()
        .filter_map(|p| pod_label(p, CONTROLLER_REVISION_HASH).map(String::from))
        .collect();
    let keep = BTreeSet::from([current.name_any()]);
    let limit = spec.revision_history_limit.unwrap_or(10);
    revisions::cleanup(&rev_api, &all_revisions, &keep, &live, limit).await?;

    let mut pending = write_status(&ctx, &sync, &by_node).await?;
    // A surging node's new pod is not the one status counts, but its availability matters.
    pending |= by_node
        .values()
        .any(|p| p.active.iter().any(|d| d.ready && !d.available));
    Ok(
        if pending || !plan.create.is_empty() || !plan.delete.is_empty() {
            // Availability after minReadySeconds is not announced by any watch event.
            Action::requeue(Duration::from_secs(sync.min_ready.clamp(1, 30) as u64))
        } else {
            Action::await_change()
        },
    )
}

/// Each node's daemon pods (including nodes that no longer exist, which keep none).
fn group_by_node(
    sync: &Sync,
    template_spec: &Value,
    nodes: &[Node],
    owned: &[Pod],
) -> BTreeMap<String, NodePods> {
    let mut out: BTreeMap<String, NodePods> = nodes
        .iter()
        .map(|n| {
            let np = NodePods {
                eligibility: should_run(template_spec, n),
                active: Vec::new(),
                terminating: false,
                failed: Vec::new(),
            };
            (n.name_any(), np)
        })
        .collect();
    let mut sorted: Vec<&Pod> = owned.iter().collect();
    sorted.sort_by_key(|p| {
        (
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.metadata.name.clone(),
        )
    });
    for p in sorted {
        let Some(node) = target_node(p) else { continue };
        let entry = out.entry(node).or_insert(NodePods {
            eligibility: (false, false),
            active: Vec::new(),
            terminating: false,
            failed: Vec::new(),
        });
        let name = p.name_any();
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        if p.metadata.deletion_timestamp.is_some() {
            entry.terminating = true;
        } else if phase == Some("Failed") {
            entry.failed.push(name);
        } else if is_active(p) {
            entry.active.push(Daemon {
                name,
                updated: sync.updated(p),
                ready: is_ready(p),
                available: sync.available(p),
            });
        }
    }
    out
}

async fn execute(ctx: &Ctx, sync: &Sync<'_>, api: &Api<Pod>, plan: &Plan) -> Result<(), Error> {
    let reference = crate::events::reference(sync.ds);
    let pp = &PostParams::default();
    let mut creates = Vec::new();
    for node in &plan.create {
        let pod: Pod =
            serde_json::from_value(sync.new_pod(node)).map_err(kube::Error::SerdeError)?;
        creates.push(async move { api.create(pp, &pod).await });
    }
    for r in join_all(creates).await {
        let pod = r?;
        let msg = format!("Created pod: {}", pod.name_any());
        ctx.recorder
            .record(&reference, "Normal", "SuccessfulCreate", &msg)
            .await;
    }
    let dp = DeleteParams::default();
    for name in &plan.delete {
        match api.delete(name, &dp).await {
            Ok(_) => {
                let msg = format!("Deleted pod: {name}");
                ctx.recorder
                    .record(&reference, "Normal", "SuccessfulDelete", &msg)
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Counts as upstream: over nodes that should run a pod, the oldest active pod there.
/// Returns whether some pod is ready but not yet available.
async fn write_status(
    ctx: &Ctx,
    sync: &Sync<'_>,
    by_node: &BTreeMap<String, NodePods>,
) -> Result<bool, Error> {
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut updated, mut ready, mut available) = (0, 0, 0);
    for p in by_node.values() {
        if !p.eligibility.0 {
            misscheduled += usize::from(!p.active.is_empty());
            continue;
        }
        desired += 1;
        if let Some(d) = p.active.first() {
            current += 1;
            updated += usize::from(d.updated);
            ready += usize::from(d.ready);
            available += usize::from(d.available);
        }
    }
    let mut status = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
        "observedGeneration": sync.ds.metadata.generation,
    });
    if desired > available {
        status["numberUnavailable"] = json!(desired - available);
    }
    let old = serde_json::to_value(&sync.ds.status).unwrap_or_default();
    let changed = status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| old.get(k).unwrap_or(&json!(0)) != v)
        || (desired == available && old.get("numberUnavailable").is_some());
    if changed {
        if desired == available {
            status["numberUnavailable"] = Value::Null;
        }
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &sync.ns);
        let patch = Patch::Merge(json!({"status": status}));
        api.patch_status(&sync.ds.name_any(), &PatchParams::default(), &patch)
            .await?;
    }
    Ok(ready > available)
}

async fn bump_collision(ctx: &Ctx, ds: &DaemonSet, to: i32) -> Result<(), Error> {
    let api: Api<DaemonSet> =
        Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
    let patch = Patch::Merge(json!({"status": {"collisionCount": to}}));
    api.patch_status(&ds.name_any(), &PatchParams::default(), &patch)
        .await?;
    Ok(())
}

/// The pods this DaemonSet controls, after adopting matching orphans and releasing owned
/// pods whose labels stopped matching.
async fn claim_pods(
    api: &Api<Pod>,
    sync: &Sync<'_>,
    selector: &Selector,
) -> Result<Vec<Pod>, Error> {
    let uid = sync.ds.metadata.uid.clone().unwrap_or_default();
    let list = api.list(&ListParams::default()).await?;
    let mut owned = Vec::new();
    for pod in list.items {
        let matches = selector.matches(|k| pod_label(&pod, k));
        match pods::controller_of(&pod) {
            Some(c) if c == uid && matches => owned.push(pod),
            Some(c) if c == uid => {
                pods::set_owner_references(api, &pod, None, &uid).await?;
            }
            None if matches && pod.metadata.deletion_timestamp.is_none() => {
                let reference = sync.owner().owner_reference();
                owned.extend(pods::set_owner_references(api, &pod, Some(reference), &uid).await?);
            }
            _ => {}
        }
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: Value, taints: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}}))
        .unwrap()
    }

    fn daemon(name: &str, updated: bool, available: bool) -> Daemon {
        Daemon {
            name: name.into(),
            updated,
            ready: available,
            available,
        }
    }

    fn on(eligibility: (bool, bool), active: Vec<Daemon>) -> NodePods {
        NodePods {
            eligibility,
            active,
            terminating: false,
            failed: Vec::new(),
        }
    }

    #[test]
    fn toleration_matching() {
        let taint = json!({"key": "k", "value": "v", "effect": "NoSchedule"});
        assert!(tolerates(
            &json!({"key": "k", "operator": "Exists"}),
            &taint
        ));
        assert!(tolerates(&json!({"key": "k", "value": "v"}), &taint));
        assert!(!tolerates(&json!({"key": "k", "value": "w"}), &taint));
        assert!(tolerates(&json!({"operator": "Exists"}), &taint));
        assert!(!tolerates(
            &json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}),
            &taint
        ));
        assert!(!tolerates(
            &json!({"key": "other", "operator": "Exists"}),
            &taint
        ));
    }

    #[test]
    fn daemon_tolerations_are_added_once() {
        let spec = json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable",
            "operator": "Exists", "effect": "NoSchedule"}]});
        let out = with_daemon_tolerations(&spec);
        assert_eq!(out["tolerations"].as_array().unwrap().len(), 6);
        let host = with_daemon_tolerations(&json!({"hostNetwork": true}));
        let keys: Vec<&str> = host["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["key"].as_str())
            .collect();
        assert!(keys.contains(&"node.kubernetes.io/network-unavailable"));
        assert!(keys.contains(&"node.kubernetes.io/not-ready"));
    }

    #[test]
    fn eligibility_follows_selector_affinity_and_taints() {
        let plain = node("a", json!({"disk": "hdd"}), json!([]));
        let ssd = node("b", json!({"disk": "ssd"}), json!([]));
        let sel = json!({"nodeSelector": {"disk": "ssd"}});
        assert_eq!(should_run(&sel, &plain), (false, false));
        assert_eq!(should_run(&sel, &ssd), (true, true));
        let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}]}}}});
        assert_eq!(should_run(&affinity, &plain), (true, true));
        assert_eq!(should_run(&affinity, &ssd), (false, false));
        assert_eq!(
            should_run(&json!({"nodeName": "b"}), &plain),
            (false, false)
        );

        let no_schedule = node(
            "c",
            json!({}),
            json!([{"key": "x", "effect": "NoSchedule"}]),
        );
        assert_eq!(should_run(&json!({}), &no_schedule), (false, true));
        let no_execute = node("d", json!({}), json!([{"key": "x", "effect": "NoExecute"}]));
        assert_eq!(should_run(&json!({}), &no_execute), (false, false));
        let tolerated = json!({"tolerations": [{"key": "x", "operator": "Exists"}]});
        assert_eq!(should_run(&tolerated, &no_execute), (true, true));
        let prefer = node(
            "e",
            json!({}),
            json!([{"key": "x", "effect": "PreferNoSchedule"}]),
        );
        assert_eq!(should_run(&json!({}), &prefer), (true, true));
        // The controller's own tolerations cover cordoned and not-ready nodes.
        let cordoned = node(
            "f",
            json!({}),
            json!([
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&json!({}), &cordoned), (true, true));
        let net = node(
            "g",
            json!({}),
            json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
        );
        assert_eq!(should_run(&json!({}), &net), (false, true));
        assert_eq!(
            should_run(&json!({"hostNetwork": true}), &net),
            (true, true)
        );
    }

    #[test]
    fn pinning_and_target_node_round_trip() {
        let spec = pin_to_node(&json!({"containers": []}), "n1");
        let pod: Pod = serde_json::from_value(json!({"spec": spec})).unwrap();
        assert_eq!(target_node(&pod).as_deref(), Some("n1"));
        let n1 = node("n1", json!({}), json!([]));
        let n2 = node("n2", json!({}), json!([]));
        assert!(fits_node(&spec, &n1));
        assert!(!fits_node(&spec, &n2));
    }

    #[test]
    fn max_unavailable_resolution() {
        assert_eq!(max_unavailable(None, 10), 1);
        assert_eq!(max_unavailable(Some(&IntOrString::Int(3)), 10), 3);
        assert_eq!(max_unavailable(Some(&IntOrString::Int(0)), 10), 1);
        assert_eq!(
            max_unavailable(Some(&IntOrString::String("25%".into())), 10),
            3
        );
    }

    #[test]
    fn manage_creates_and_deletes() {
        let nodes = BTreeMap::from([
            ("a".to_string(), on((true, true), vec![])),
            (
                "b".to_string(),
                on((false, false), vec![daemon("p-b", true, true)]),
            ),
            (
                "c".to_string(),
                on(
                    (true, true),
                    vec![daemon("p-c1", true, true), daemon("p-c2", true, true)],
                ),
            ),
            (
                "d".to_string(),
                on((false, true), vec![daemon("p-d", true, true)]),
            ),
        ]);
        let p = plan(&nodes, None);
        assert_eq!(p.create, vec!["a"]);
        assert_eq!(p.delete, vec!["p-b", "p-c2"]);
    }

    fn unavailable(n: usize) -> Option<Rolling> {
        Some(Rolling {
            max_unavailable: n,
            max_surge: 0,
        })
    }

    fn surge(n: usize) -> Option<Rolling> {
        Some(Rolling {
            max_unavailable: 1,
            max_surge: n,
        })
    }

    #[test]
    fn rolling_limits_follow_upstream_defaults() {
        use k8s_openapi::api::apps::v1::RollingUpdateDaemonSet;
        assert_eq!(rolling_limits(None, 10), unavailable(1).unwrap());
        let r = RollingUpdateDaemonSet {
            max_surge: Some(IntOrString::String("25%".into())),
            max_unavailable: Some(IntOrString::Int(0)),
        };
        assert_eq!(rolling_limits(Some(&r), 10), surge(3).unwrap());
        let zero = RollingUpdateDaemonSet {
            max_surge: Some(IntOrString::Int(0)),
            max_unavailable: Some(IntOrString::Int(0)),
        };
        assert_eq!(rolling_limits(Some(&zero), 10), unavailable(1).unwrap());
    }

    #[test]
    fn surge_creates_first_and_deletes_once_the_new_pod_is_available() {
        let nodes: BTreeMap<String, NodePods> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    on((true, true), vec![daemon(&format!("old-{n}"), false, true)]),
                )
            })
            .collect();
        // Nothing is deleted up front; new pods start on up to maxSurge nodes.
        let p = plan(&nodes, surge(1));
        assert_eq!((p.create, p.delete), (vec!["a".to_string()], vec![]));
        let p = plan(&nodes, surge(2));
        assert_eq!(p.create, vec!["a", "b"]);
        // While the new pod on a is not available, both stay and no other node surges.
        let mut a = nodes.clone();
        a.insert(
            "a".into(),
            on(
                (true, true),
                vec![daemon("old-a", false, true), daemon("new-a", true, false)],
            ),
        );
        assert_eq!(plan(&a, surge(1)), Plan::default());
        // Once it is available the old one goes, and the next node may surge.
        a.get_mut("a").unwrap().active[1].available = true;
        let p = plan(&a, surge(1));
        assert_eq!(p.delete, vec!["old-a"]);
        assert_eq!(p.create, vec!["b"]);
        // A node whose old pod is unavailable gets its new pod beyond maxSurge.
        let mut broken = a.clone();
        broken.get_mut("a").unwrap().active[1].available = false;
        broken.insert(
            "c".into(),
            on((true, true), vec![daemon("old-c", false, false)]),
        );
        let p = plan(&broken, surge(1));
        assert_eq!((p.create, p.delete), (vec!["c".to_string()], vec![]));
        // Extra pods beyond one new and one old are cleared away.
        let crowded = BTreeMap::from([(
            "a".to_string(),
            on(
                (true, true),
                vec![
                    daemon("old-1", false, true),
                    daemon("new-1", true, false),
                    daemon("old-2", false, true),
                    daemon("new-2", true, false),
                ],
            ),
        )]);
        assert_eq!(plan(&crowded, surge(1)).delete, vec!["new-2", "old-2"]);
        assert_eq!(
            plan(&crowded, unavailable(1)).delete,
            vec!["new-1", "new-2", "old-2"]
        );
    }

    #[test]
    fn rolling_update_stays_within_max_unavailable() {
        let nodes: BTreeMap<String, NodePods> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    on((true, true), vec![daemon(&format!("old-{n}"), false, true)]),
                )
            })
            .collect();
        assert_eq!(plan(&nodes, unavailable(1)).delete, vec!["old-a"]);
        assert_eq!(plan(&nodes, unavailable(2)).delete.len(), 2);
        // While one node has no available pod, no further available pod goes.
        let mut busy = nodes.clone();
        busy.insert(
            "a".into(),
            on((true, true), vec![daemon("new-a", true, false)]),
        );
        assert!(plan(&busy, unavailable(1)).delete.is_empty());
        // Old pods that are unavailable anyway are replaced at once.
        let mut broken = nodes.clone();
        broken.insert(
            "b".into(),
            on((true, true), vec![daemon("old-b", false, false)]),
        );
        assert_eq!(plan(&broken, unavailable(1)).delete, vec!["old-b"]);
    }
}
