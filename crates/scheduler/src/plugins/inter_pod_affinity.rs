//! InterPodAffinity: required pod affinity and anti-affinity (`requiredDuringScheduling…`
//! terms), both the incoming pod's and the anti-affinity of pods already running. Counts per
//! topology domain are computed once per attempt (pre-filter) from the cached pods, so the
//! per-node filter is a few map lookups.
//!
//! Not done yet: preferred terms (scoring), `namespaceSelector` other than `{}` (all
//! namespaces), `matchLabelKeys` / `mismatchLabelKeys`.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::framework::{Code, CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Status};

/// The plugin name.
pub const NAME: &str = "InterPodAffinity";
/// Upstream's reasons.
pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// The incoming pod's anti-affinity rejects the node.
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// A running pod's anti-affinity rejects the incoming pod.
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// The InterPodAffinity filter.
pub struct InterPodAffinity;

type TopologyCounts = HashMap<(String, String), i64>;

#[derive(Default)]
struct PreFilterState {
    existing_anti: TopologyCounts,
    affinity: TopologyCounts,
    anti: TopologyCounts,
    affinity_terms: Vec<PodAffinityTerm>,
    anti_terms: Vec<PodAffinityTerm>,
    matches_own_affinity: bool,
}

/// Whether a label selector selects `labels`; a missing selector selects nothing.
pub fn selector_matches(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = sel else {
        return false;
    };
    if let Some(ml) = &sel.match_labels
        && !ml.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let v = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => v.is_some_and(|v| values.contains(v)),
            "NotIn" => v.is_none_or(|v| !values.contains(v)),
            "Exists" => v.is_some(),
            "DoesNotExist" => v.is_none(),
            _ => false,
        }
    })
}

/// Whether `term` (declared by a pod in `owner_ns`) selects `pod`.
fn term_matches(term: &PodAffinityTerm, owner_ns: &str, pod: &Pod) -> bool {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    });
    let ns_ok = all_namespaces
        || match term.namespaces.as_deref() {
            Some(list) if !list.is_empty() => list.iter().any(|n| n == ns),
            _ => ns == owner_ns,
        };
    let empty = BTreeMap::new();
    ns_ok
        && selector_matches(
            term.label_selector.as_ref(),
            pod.metadata.labels.as_ref().unwrap_or(&empty),
        )
}

fn required_terms(pod: &Pod) -> (&[PodAffinityTerm], &[PodAffinityTerm]) {
    let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let aff = a
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default();
    let anti = a
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default();
    (aff, anti)
}

fn pod_ns(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[NodeInfo]) -> Status {
        let (affinity_terms, anti_terms) = required_terms(&pod.pod);
        let mut s = PreFilterState::default();
        let own_ns = pod_ns(&pod.pod);
        for node in nodes {
            let Some(labels) = node.labels() else {
                continue;
            };
            for existing in &node.pods {
                // Anti-affinity of running pods against the incoming one.
                let (_, their_anti) = required_terms(&existing.pod);
                for t in their_anti {
                    if term_matches(t, pod_ns(&existing.pod), &pod.pod)
                        && let Some(v) = labels.get(&t.topology_key)
                    {
                        *s.existing_anti
                            .entry((t.topology_key.clone(), v.clone()))
                            .or_default() += 1;
                    }
                }
                if !affinity_terms.is_empty()
                    && affinity_terms
                        .iter()
                        .all(|t| term_matches(t, own_ns, &existing.pod))
                {
                    for t in affinity_terms {
                        if let Some(v) = labels.get(&t.topology_key) {
                            *s.affinity
                                .entry((t.topology_key.clone(), v.clone()))
                                .or_default() += 1;
                        }
                    }
                }
                for t in anti_terms {
                    if term_matches(t, own_ns, &existing.pod)
                        && let Some(v) = labels.get(&t.topology_key)
                    {
                        *s.anti
                            .entry((t.topology_key.clone(), v.clone()))
                            .or_default() += 1;
                    }
                }
            }
        }
        s.matches_own_affinity = affinity_terms
            .iter()
            .all(|t| term_matches(t, own_ns, &pod.pod));
        s.affinity_terms = affinity_terms.to_vec();
        s.anti_terms = anti_terms.to_vec();
        state.write(s);
        Status::success()
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>() else {
            return Status::success();
        };
        let empty = BTreeMap::new();
        let labels = node.labels().unwrap_or(&empty);
        if !s.existing_anti.is_empty()
            && labels.iter().any(|(k, v)| {
                s.existing_anti
                    .get(&(k.clone(), v.clone()))
                    .is_some_and(|c| *c > 0)
            })
        {
            return Status::unschedulable(NAME, ERR_EXISTING_ANTI_AFFINITY);
        }
        for t in &s.anti_terms {
            if let Some(v) = labels.get(&t.topology_key)
                && s.anti
                    .get(&(t.topology_key.clone(), v.clone()))
                    .is_some_and(|c| *c > 0)
            {
                return Status::unschedulable(NAME, ERR_ANTI_AFFINITY);
            }
        }
        if !s.affinity_terms.is_empty() {
            let all_match = s.affinity_terms.iter().all(|t| {
                labels.get(&t.topology_key).is_some_and(|v| {
                    s.affinity
                        .get(&(t.topology_key.clone(), v.clone()))
                        .is_some_and(|c| *c > 0)
                })
            });
            // The first pod of a group that selects itself may go anywhere with the keys.
            let first_of_group = s.affinity.is_empty()
                && s.matches_own_affinity
                && s.affinity_terms
                    .iter()
                    .all(|t| labels.contains_key(&t.topology_key));
            if !all_match && !first_of_group {
                return Status::new(
                    Code::UnschedulableAndUnresolvable,
                    NAME,
                    vec![ERR_AFFINITY.into()],
                );
            }
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::filter_with_named_pods;
    use serde_json::json;

    fn anti(app: &str) -> serde_json::Value {
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}}})
    }

    fn aff(app: &str, key: &str) -> serde_json::Value {
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": [app]}]}, "topologyKey": key}]}}})
    }

    #[test]
    fn filter() {
        let nodes = [
            json!({"name": "a", "labels": {"zone": "z1"}}),
            json!({"name": "b", "labels": {"zone": "z1"}}),
            json!({"name": "c", "labels": {"zone": "z2"}}),
        ];
        let web = (json!({"app": "web"}), json!({}));
        let web_anti = (json!({"app": "web"}), anti("web"));
        let check = |labels,
                     spec,
                     on: [&[(serde_json::Value, serde_json::Value)]; 3],
                     expect: [Option<&str>; 3]| {
            let got = filter_with_named_pods(&InterPodAffinity, labels, spec, &nodes, &on);
            assert_eq!(got, expect);
        };
        // Incoming anti-affinity: not beside another web pod.
        check(
            json!({"app": "web"}),
            anti("web"),
            [std::slice::from_ref(&web), &[], &[]],
            [Some(ERR_ANTI_AFFINITY), None, None],
        );
        // Existing anti-affinity: a running web pod refuses other web pods beside it.
        check(
            json!({"app": "web"}),
            json!({}),
            [std::slice::from_ref(&web_anti), &[], &[]],
            [Some(ERR_EXISTING_ANTI_AFFINITY), None, None],
        );
        check(
            json!({"app": "db"}),
            json!({}),
            [&[web_anti], &[], &[]],
            [None, None, None],
        );
        // Affinity by zone: only where a web pod runs in the same zone.
        check(
            json!({"app": "cache"}),
            aff("web", "zone"),
            [std::slice::from_ref(&web), &[], &[]],
            [None, None, Some(ERR_AFFINITY)],
        );
        // No web pod anywhere and the pod is not web itself: nowhere.
        check(
            json!({"app": "cache"}),
            aff("web", "zone"),
            [&[], &[], &[]],
            [Some(ERR_AFFINITY); 3],
        );
        // The first pod of a self-selecting group goes anywhere.
        check(
            json!({"app": "web"}),
            aff("web", "zone"),
            [&[], &[], &[]],
            [None, None, None],
        );
    }
}
