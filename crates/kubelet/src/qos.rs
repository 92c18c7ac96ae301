//! Quality of service: a pod's QoS class (upstream's `GetPodQOS`), its cgroup parent, and the
//! cgroup limits of containers and pods as upstream's kuberuntime computes them
//! (`MilliCPUToShares`, `MilliCPUToQuota`, `GetContainerOOMScoreAdjust`, `ResourceConfigForPod`).
//!
//! Resource quantities are read with `rkube_core::quantity` (the apiserver's parser), rounding
//! up as upstream's `Quantity.MilliValue()` and `Quantity.Value()` do.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use rkube_core::quantity;
use rkube_cri::LinuxResources;

/// `Guaranteed`.
pub const GUARANTEED: &str = "Guaranteed";
/// `Burstable`.
pub const BURSTABLE: &str = "Burstable";
/// `BestEffort`.
pub const BEST_EFFORT: &str = "BestEffort";

/// Smallest `cpu.shares` (upstream `MinShares`).
pub const MIN_SHARES: i64 = 2;
/// Largest `cpu.shares` (upstream `MaxShares`).
pub const MAX_SHARES: i64 = 262_144;
/// CFS period in microseconds (upstream `QuotaPeriod`).
pub const QUOTA_PERIOD: i64 = 100_000;
/// Smallest CFS quota in microseconds (upstream `MinQuotaPeriod`).
pub const MIN_QUOTA_PERIOD: i64 = 1_000;
/// `oom_score_adj` of Guaranteed and node-critical containers.
pub const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
/// `oom_score_adj` of BestEffort containers.
pub const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;
/// Priority from which a pod is node-critical (`system-node-critical`), as upstream's
/// `IsNodeCriticalPod`.
const SYSTEM_NODE_CRITICAL_PRIORITY: i32 = 2_000_001_000;

/// Amounts of one container, in milli-CPU and bytes, with requests defaulted from limits as
/// the apiserver does (so a pod that skipped defaulting, such as a static pod, reads the same).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Amounts {
    cpu_request: i64,
    cpu_limit: Option<i64>,
    memory_request: i64,
    memory_limit: Option<i64>,
}

/// `list[name]` read with `read` ([`quantity::milli_value`] or [`quantity::value`]); `None`
/// when absent or not a quantity.
fn quantity_of(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    name: &str,
    read: fn(&str) -> Result<i64, quantity::QuantityError>,
) -> Option<i64> {
    list.and_then(|l| l.get(name)).and_then(|q| read(&q.0).ok())
}

fn amounts(res: Option<&ResourceRequirements>) -> Amounts {
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    let cpu_limit = quantity_of(limits, "cpu", quantity::milli_value);
    let memory_limit = quantity_of(limits, "memory", quantity::value);
    Amounts {
        cpu_request: quantity_of(requests, "cpu", quantity::milli_value)
            .or(cpu_limit)
            .unwrap_or(0),
        cpu_limit,
        memory_request: quantity_of(requests, "memory", quantity::value)
            .or(memory_limit)
            .unwrap_or(0),
        memory_limit,
    }
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's QoS class: `status.qosClass` when the apiserver set it (as upstream's
/// `GetPodQOS` does), else [`compute_qos_class`].
pub fn qos_class(pod: &Pod) -> &'static str {
    match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        Some(GUARANTEED) => GUARANTEED,
        Some(BURSTABLE) => BURSTABLE,
        Some(BEST_EFFORT) => BEST_EFFORT,
        _ => compute_qos_class(pod),
    }
}

/// The QoS class computed from the spec, as upstream's `ComputePodQOS`: BestEffort when no
/// container (init containers included) requests or limits CPU or memory; Guaranteed when every
/// container limits both and the pod's summed requests equal its summed limits; otherwise
/// Burstable. Pod-level `spec.resources`, when set, decide alone.
pub fn compute_qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return BEST_EFFORT;
    };
    let mut requests: BTreeMap<&str, i64> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i64> = BTreeMap::new();
    let mut guaranteed = true;
    let mut add = |res: Option<&ResourceRequirements>| {
        let a = amounts(res);
        for (name, req, lim) in [
            ("cpu", a.cpu_request, a.cpu_limit),
            ("memory", a.memory_request, a.memory_limit),
        ] {
            if req > 0 {
                *requests.entry(name).or_default() += req;
            }
            match lim {
                Some(l) if l > 0 => *limits.entry(name).or_default() += l,
                _ => guaranteed = false,
            }
        }
    };
    let pod_level = spec.resources.as_ref().filter(|r| {
        r.requests.as_ref().is_some_and(|m| !m.is_empty())
            || r.limits.as_ref().is_some_and(|m| !m.is_empty())
    });
    if let Some(res) = pod_level {
        add(Some(res));
    } else {
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            add(c.resources.as_ref());
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return BEST_EFFORT;
    }
    if guaranteed
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
        && requests.len() == limits.len()
    {
        GUARANTEED
    } else {
        BURSTABLE
    }
}

/// The pod's cgroup, relative to each hierarchy's root, as upstream's cgroupfs driver names
/// it: `kubepods/pod<uid>` (Guaranteed), `kubepods/burstable/pod<uid>`,
/// `kubepods/besteffort/pod<uid>`.
pub fn pod_cgroup_parent(pod: &Pod) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    match qos_class(pod) {
        GUARANTEED => format!("kubepods/pod{uid}"),
        BURSTABLE => format!("kubepods/burstable/pod{uid}"),
        _ => format!("kubepods/besteffort/pod{uid}"),
    }
}

/// `cpu.shares` for a CPU request in millicores (upstream `MilliCPUToShares`).
pub fn milli_cpu_to_shares(milli_cpu: i64) -> i64 {
    if milli_cpu <= 0 {
        return MIN_SHARES;
    }
    (milli_cpu.saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// CFS quota in microseconds for a CPU limit in millicores over `period` (upstream
/// `MilliCPUToQuota`): 0 (unlimited) without a limit, at least 1 ms.
pub fn milli_cpu_to_quota(milli_cpu: i64, period: i64) -> i64 {
    if milli_cpu <= 0 {
        return 0;
    }
    (milli_cpu.saturating_mul(period) / 1000).max(MIN_QUOTA_PERIOD)
}

fn is_node_critical(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.priority)
        .is_some_and(|p| p >= SYSTEM_NODE_CRITICAL_PRIORITY)
}

/// Burstable score for a memory request: `1000 - 1000·request/capacity`, kept above
/// Guaranteed's and below BestEffort's.
fn burstable_score(memory_request: i64, memory_capacity: i64) -> i64 {
    let capacity = memory_capacity.max(1) as i128;
    let score = 1000 - (1000 * memory_request as i128) / capacity;
    let score = score as i64;
    if score < 1000 + GUARANTEED_OOM_SCORE_ADJ {
        1000 + GUARANTEED_OOM_SCORE_ADJ
    } else if score == BEST_EFFORT_OOM_SCORE_ADJ {
        score - 1
    } else {
        score
    }
}

/// The container's `oom_score_adj` (upstream `GetContainerOOMScoreAdjust`): -997 for node-critical
/// and Guaranteed pods, 1000 for BestEffort, and for Burstable `1000 - 1000·memoryRequest /
/// memoryCapacity` kept within [3, 999]; a sidecar (restartable init container) gets no more
/// than the lowest score of the pod's regular containers, so it outlives them.
pub fn oom_score_adj(pod: &Pod, container: &Container, memory_capacity: i64) -> i64 {
    if is_node_critical(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        GUARANTEED => return GUARANTEED_OOM_SCORE_ADJ,
        BEST_EFFORT => return BEST_EFFORT_OOM_SCORE_ADJ,
        _ => {}
    }
    let mut score = burstable_score(
        amounts(container.resources.as_ref()).memory_request,
        memory_capacity,
    );
    let spec = pod.spec.as_ref();
    let is_init_sidecar = is_sidecar(container)
        && spec
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|ics| ics.iter().any(|c| c.name == container.name));
    if is_init_sidecar {
        let min_main = spec
            .into_iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| {
                burstable_score(
                    amounts(c.resources.as_ref()).memory_request,
                    memory_capacity,
                )
            })
            .min();
        if let Some(m) = min_main {
            score = score.min(m);
        }
    }
    score
}

/// The container's cgroup limits, with the host's memory capacity as the denominator of the
/// Burstable OOM score. Shares from the CPU request (the limit when no request), quota from the
/// CPU limit over a 100 ms period, the memory limit in bytes.
pub fn container_resources(pod: &Pod, container: &Container) -> LinuxResources {
    container_resources_with_capacity(pod, container, crate::hostinfo::memory_capacity_bytes())
}

/// [`container_resources`] with an explicit node memory capacity in bytes.
pub fn container_resources_with_capacity(
    pod: &Pod,
    container: &Container,
    memory_capacity: i64,
) -> LinuxResources {
    let a = amounts(container.resources.as_ref());
    let cpu_limit = a.cpu_limit.unwrap_or(0);
    let mut r = LinuxResources {
        cpu_shares: milli_cpu_to_shares(a.cpu_request),
        memory_limit_in_bytes: a.memory_limit.unwrap_or(0).max(0),
        oom_score_adj: oom_score_adj(pod, container, memory_capacity),
        ..LinuxResources::default()
    };
    if cpu_limit > 0 {
        r.cpu_period = QUOTA_PERIOD;
        r.cpu_quota = milli_cpu_to_quota(cpu_limit, QUOTA_PERIOD);
    }
    r
}

/// The pod's effective amounts, as upstream's `PodRequests`/`PodLimits`: regular containers and
/// sidecars add up; each other init container runs alone (beside the sidecars started before
/// it), so the pod needs the larger of the two. `declared` is false when some container leaves
/// the resource unlimited (a pod limit would then cap it wrongly).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PodAmounts {
    cpu_request: i64,
    cpu_limit: i64,
    cpu_limit_declared: bool,
    memory_limit: i64,
    memory_limit_declared: bool,
}

fn pod_amounts(pod: &Pod) -> PodAmounts {
    let Some(spec) = pod.spec.as_ref() else {
        return PodAmounts::default();
    };
    let mut sum = [0i64; 3]; // cpu request, cpu limit, memory limit
    let mut declared = [true; 2];
    let mut note = |a: &Amounts| {
        declared[0] &= a.cpu_limit.is_some_and(|l| l > 0);
        declared[1] &= a.memory_limit.is_some_and(|l| l > 0);
    };
    let vec_of = |a: &Amounts| {
        [
            a.cpu_request,
            a.cpu_limit.unwrap_or(0),
            a.memory_limit.unwrap_or(0),
        ]
    };
    // Init containers in order: sidecars accumulate; a regular init container needs its own
    // amount plus the sidecars already running.
    let mut sidecars = [0i64; 3];
    let mut init_max = [0i64; 3];
    for c in spec.init_containers.iter().flatten() {
        let a = amounts(c.resources.as_ref());
        note(&a);
        let v = vec_of(&a);
        if is_sidecar(c) {
            for i in 0..3 {
                sidecars[i] += v[i];
                init_max[i] = init_max[i].max(sidecars[i]);
            }
        } else {
            for i in 0..3 {
                init_max[i] = init_max[i].max(sidecars[i] + v[i]);
            }
        }
    }
    for c in &spec.containers {
        let a = amounts(c.resources.as_ref());
        note(&a);
        let v = vec_of(&a);
        for i in 0..3 {
            sum[i] += v[i];
        }
    }
    for i in 0..3 {
        sum[i] = (sum[i] + sidecars[i]).max(init_max[i]);
    }
    // Pod-level resources replace the containers' sums where given.
    if let Some(res) = spec.resources.as_ref() {
        let a = amounts(Some(res));
        if let Some(l) = a.cpu_limit.filter(|l| *l > 0) {
            sum[1] = l;
            declared[0] = true;
        }
        if let Some(l) = a.memory_limit.filter(|l| *l > 0) {
            sum[2] = l;
            declared[1] = true;
        }
        if a.cpu_request > 0 {
            sum[0] = a.cpu_request;
        }
    }
    // Pod overhead (RuntimeClass) adds to requests and limits.
    if let Some(o) = spec.overhead.as_ref() {
        let cpu = o
            .get("cpu")
            .and_then(|q| quantity::milli_value(&q.0).ok())
            .unwrap_or(0);
        let mem = o
            .get("memory")
            .and_then(|q| quantity::value(&q.0).ok())
            .unwrap_or(0);
        sum[0] += cpu;
        sum[1] += if declared[0] { cpu } else { 0 };
        sum[2] += if declared[1] { mem } else { 0 };
    }
    PodAmounts {
        cpu_request: sum[0],
        cpu_limit: sum[1],
        cpu_limit_declared: declared[0],
        memory_limit: sum[2],
        memory_limit_declared: declared[1],
    }
}

/// Limits of the pod-level cgroup (upstream `ResourceConfigForPod`): Guaranteed pods get shares,
/// quota and memory limit; Burstable pods shares, and quota/memory limit only when every
/// container declares one; BestEffort pods the minimum shares.
pub fn pod_resources(pod: &Pod) -> LinuxResources {
    let a = pod_amounts(pod);
    let mut r = LinuxResources::default();
    match qos_class(pod) {
        BEST_EFFORT => r.cpu_shares = MIN_SHARES,
        class => {
            r.cpu_shares = milli_cpu_to_shares(a.cpu_request);
            let guaranteed = class == GUARANTEED;
            if guaranteed || a.cpu_limit_declared {
                let quota = milli_cpu_to_quota(a.cpu_limit, QUOTA_PERIOD);
                if quota > 0 {
                    r.cpu_quota = quota;
                    r.cpu_period = QUOTA_PERIOD;
                }
            }
            if guaranteed || a.memory_limit_declared {
                r.memory_limit_in_bytes = a.memory_limit;
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(spec: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u1"}, "spec": spec}))
            .unwrap()
    }

    fn c(name: &str, req: Value, lim: Value) -> Value {
        json!({"name": name, "resources": {"requests": req, "limits": lim}})
    }

    /// Cases from upstream's `TestComputePodQOS`.
    #[test]
    fn qos_classes() {
        let cases = [
            (
                json!({"containers": [c("a", json!({}), json!({}))]}),
                BEST_EFFORT,
            ),
            (
                json!({"containers": [c("a", json!({"cpu": "100m", "memory": "100Mi"}), json!({"cpu": "100m", "memory": "100Mi"})),
                                      c("b", json!({"cpu": "100m", "memory": "100Mi"}), json!({"cpu": "100m", "memory": "100Mi"}))]}),
                GUARANTEED,
            ),
            // Limits only: requests default to them.
            (
                json!({"containers": [c("a", json!({}), json!({"cpu": "1", "memory": "1Gi"}))]}),
                GUARANTEED,
            ),
            (
                json!({"containers": [c("a", json!({"cpu": "100m", "memory": "100Mi"}), json!({"cpu": "100m", "memory": "100Mi"})),
                                      c("b", json!({}), json!({}))]}),
                BURSTABLE,
            ),
            (
                json!({"containers": [c("a", json!({"cpu": "100m"}), json!({}))]}),
                BURSTABLE,
            ),
            (
                json!({"containers": [c("a", json!({"cpu": "100m", "memory": "100Mi"}), json!({"cpu": "200m", "memory": "100Mi"}))]}),
                BURSTABLE,
            ),
            // Only CPU limited: not Guaranteed.
            (
                json!({"containers": [c("a", json!({"cpu": "1"}), json!({"cpu": "1"}))]}),
                BURSTABLE,
            ),
            // Extended resources do not count.
            (
                json!({"containers": [c("a", json!({"nvidia.com/gpu": "1"}), json!({"nvidia.com/gpu": "1"}))]}),
                BEST_EFFORT,
            ),
            // Init containers count.
            (
                json!({"containers": [c("a", json!({"cpu": "1", "memory": "1Gi"}), json!({"cpu": "1", "memory": "1Gi"}))],
                       "initContainers": [c("i", json!({}), json!({}))]}),
                BURSTABLE,
            ),
            (
                json!({"containers": [c("a", json!({}), json!({}))],
                       "initContainers": [c("i", json!({"memory": "1Gi"}), json!({}))]}),
                BURSTABLE,
            ),
            // Zero amounts are ignored.
            (
                json!({"containers": [c("a", json!({"cpu": "0"}), json!({"memory": "0"}))]}),
                BEST_EFFORT,
            ),
            // Pod-level resources decide.
            (
                json!({"containers": [c("a", json!({}), json!({}))],
                       "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}),
                GUARANTEED,
            ),
        ];
        for (i, (spec, want)) in cases.into_iter().enumerate() {
            assert_eq!(compute_qos_class(&pod(spec)), want, "case {i}");
        }
        let mut p = pod(json!({"containers": [c("a", json!({}), json!({}))]}));
        p.status = Some(serde_json::from_value(json!({"qosClass": "Burstable"})).unwrap());
        assert_eq!(qos_class(&p), BURSTABLE);
    }

    #[test]
    fn cgroup_parents() {
        let g =
            pod(json!({"containers": [c("a", json!({}), json!({"cpu": "1", "memory": "1Gi"}))]}));
        assert_eq!(pod_cgroup_parent(&g), "kubepods/podu1");
        let b = pod(json!({"containers": [c("a", json!({"cpu": "1"}), json!({}))]}));
        assert_eq!(pod_cgroup_parent(&b), "kubepods/burstable/podu1");
        let e = pod(json!({"containers": [{"name": "a"}]}));
        assert_eq!(pod_cgroup_parent(&e), "kubepods/besteffort/podu1");
    }

    /// `TestMilliCPUToQuota` / `TestMilliCPUToShares` values.
    #[test]
    fn shares_and_quota() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(100), 102);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(500_000), MAX_SHARES);
        assert_eq!(milli_cpu_to_quota(0, 100_000), 0);
        assert_eq!(milli_cpu_to_quota(5, 100_000), 1000);
        assert_eq!(milli_cpu_to_quota(9, 100_000), 1000);
        assert_eq!(milli_cpu_to_quota(10, 100_000), 1000);
        assert_eq!(milli_cpu_to_quota(200, 100_000), 20_000);
        assert_eq!(milli_cpu_to_quota(500, 100_000), 50_000);
        assert_eq!(milli_cpu_to_quota(1000, 100_000), 100_000);
        assert_eq!(milli_cpu_to_quota(1500, 100_000), 150_000);
    }

    /// Cases in the spirit of upstream's `TestGetContainerOOMScoreAdjust` (capacity 4000000000).
    #[test]
    fn oom_scores() {
        const CAP: i64 = 4_000_000_000;
        let best = pod(json!({"containers": [{"name": "a"}]}));
        let guaranteed =
            pod(json!({"containers": [c("a", json!({}), json!({"cpu": "1", "memory": "10G"}))]}));
        let burst =
            |mem: &str| pod(json!({"containers": [c("a", json!({"memory": mem}), json!({}))]}));
        let first = |p: &Pod| p.spec.as_ref().unwrap().containers[0].clone();
        assert_eq!(oom_score_adj(&best, &first(&best), CAP), 1000);
        assert_eq!(oom_score_adj(&guaranteed, &first(&guaranteed), CAP), -997);
        let b = burst("2G");
        assert_eq!(oom_score_adj(&b, &first(&b), CAP), 500);
        let b = burst("4G");
        assert_eq!(oom_score_adj(&b, &first(&b), CAP), 3);
        let b = burst("1");
        assert_eq!(oom_score_adj(&b, &first(&b), CAP), 999);
        let b = pod(json!({"containers": [c("a", json!({"cpu": "1"}), json!({}))]}));
        assert_eq!(oom_score_adj(&b, &first(&b), CAP), 999);
        let mut crit = burst("1");
        crit.spec.as_mut().unwrap().priority = Some(2_000_001_000);
        assert_eq!(oom_score_adj(&crit, &first(&crit), CAP), -997);
        // A sidecar never scores above the main containers.
        let side = pod(json!({
            "initContainers": [{"name": "s", "restartPolicy": "Always", "resources": {"requests": {"memory": "1"}}}],
            "containers": [c("a", json!({"memory": "2G"}), json!({}))]}));
        let s = side
            .spec
            .as_ref()
            .unwrap()
            .init_containers
            .as_ref()
            .unwrap()[0]
            .clone();
        assert_eq!(oom_score_adj(&side, &s, CAP), 500);
    }

    #[test]
    fn container_limits() {
        let p = pod(
            json!({"containers": [c("a", json!({"cpu": "250m", "memory": "64Mi"}), json!({"cpu": "500m", "memory": "128Mi"}))]}),
        );
        let r =
            container_resources_with_capacity(&p, &p.spec.as_ref().unwrap().containers[0], 1 << 30);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.memory_limit_in_bytes, 128 << 20);
        assert_eq!(r.oom_score_adj, 1000 - 1000 * (64 << 20) / (1 << 30));
        let p = pod(json!({"containers": [{"name": "a"}]}));
        let r =
            container_resources_with_capacity(&p, &p.spec.as_ref().unwrap().containers[0], 1 << 30);
        assert_eq!(
            r,
            LinuxResources {
                cpu_shares: 2,
                oom_score_adj: 1000,
                ..LinuxResources::default()
            }
        );
        // Limit without request: shares from the limit.
        let p = pod(json!({"containers": [c("a", json!({}), json!({"cpu": "2"}))]}));
        let r =
            container_resources_with_capacity(&p, &p.spec.as_ref().unwrap().containers[0], 1 << 30);
        assert_eq!(r.cpu_shares, 2048);
        assert_eq!(r.cpu_quota, 200_000);
    }

    #[test]
    fn pod_limits() {
        // Guaranteed: sums of the containers, max with the init container.
        let p = pod(json!({
            "initContainers": [c("i", json!({}), json!({"cpu": "3", "memory": "100Mi"}))],
            "containers": [c("a", json!({}), json!({"cpu": "1", "memory": "1Gi"})),
                           c("b", json!({}), json!({"cpu": "1", "memory": "1Gi"}))]}));
        let r = pod_resources(&p);
        assert_eq!(r.cpu_shares, 3072);
        assert_eq!(r.cpu_quota, 300_000);
        assert_eq!(r.memory_limit_in_bytes, 2 << 30);
        // Burstable with one unlimited container: shares only.
        let p = pod(
            json!({"containers": [c("a", json!({"cpu": "100m"}), json!({"cpu": "1"})),
                                          c("b", json!({"cpu": "100m"}), json!({}))]}),
        );
        let r = pod_resources(&p);
        assert_eq!(r.cpu_shares, 204);
        assert_eq!((r.cpu_quota, r.memory_limit_in_bytes), (0, 0));
        // Sidecars add to the regular containers.
        let p = pod(json!({
            "initContainers": [{"name": "s", "restartPolicy": "Always", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
            "containers": [c("a", json!({}), json!({"cpu": "1", "memory": "1Gi"}))]}));
        let r = pod_resources(&p);
        assert_eq!(r.cpu_quota, 200_000);
        assert_eq!(r.memory_limit_in_bytes, 2 << 30);
        // BestEffort: minimum shares.
        let p = pod(json!({"containers": [{"name": "a"}]}));
        assert_eq!(
            pod_resources(&p),
            LinuxResources {
                cpu_shares: 2,
                ..LinuxResources::default()
            }
        );
    }
}
