//! Pod status as the kubelet reports it (upstream's `generateAPIPodStatus`, `getPhase` and the
//! condition generators): phase, conditions, container statuses, IPs. Pure: the pod worker
//! gathers the inputs and patches the result to `pods/<name>/status` when it changed.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rkube_cri::ContainerState;

use crate::pods::actions::{
    RestartPolicy, app_containers, init_containers, is_sidecar, restart_policy,
};
use crate::pods::state::{ContainerInfo, PodRuntime};

/// `PodReadyToStartContainers`.
pub const POD_READY_TO_START_CONTAINERS: &str = "PodReadyToStartContainers";
/// `Initialized`.
pub const INITIALIZED: &str = "Initialized";
/// `ContainersReady`.
pub const CONTAINERS_READY: &str = "ContainersReady";
/// `Ready`.
pub const READY: &str = "Ready";

/// Everything the status is computed from.
#[derive(Debug)]
pub struct StatusInput<'a> {
    /// The pod (its current status supplies startTime, foreign conditions and transition times).
    pub pod: &'a Pod,
    /// What the runtime holds.
    pub rt: &'a PodRuntime,
    /// Waiting reasons the last sync set, by container name: (reason, message).
    pub waiting: &'a HashMap<String, (String, String)>,
    /// Container ids whose readiness probe passes.
    pub ready: &'a HashSet<String>,
    /// Container ids whose startup probe passed.
    pub started: &'a HashSet<String>,
    /// Termination messages of exited containers, by container id.
    pub messages: &'a HashMap<String, String>,
    /// `imageID` to show per runtime image id (`docker.io/library/busybox@sha256:…`).
    pub image_ids: &'a HashMap<String, String>,
    /// Prefix of container ids (`rkube` → `rkube://<id>`).
    pub runtime_type: &'a str,
    /// The node's IPs.
    pub host_ips: &'a [IpAddr],
    /// The pod's IPs (the sandbox's; the node's for hostNetwork).
    pub pod_ips: &'a [IpAddr],
    /// The pod's QoS class.
    pub qos_class: &'a str,
    /// A pod-level failure, e.g. (`DeadlineExceeded`, message): phase Failed.
    pub failure: Option<(String, String)>,
    /// The pod is being shut down (deleted, or done): nothing will restart.
    pub terminal: bool,
    /// Now.
    pub now: jiff::Timestamp,
}

fn ts(ns: i64) -> Option<Time> {
    if ns <= 0 {
        return None;
    }
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .ok()
        // The API carries seconds (RFC 3339 without fraction).
        .and_then(|t| jiff::Timestamp::from_second(t.as_second()).ok())
        .map(Time)
}

fn whole_seconds(t: jiff::Timestamp) -> Time {
    Time(jiff::Timestamp::from_second(t.as_second()).unwrap_or(t))
}

fn terminated(c: &ContainerInfo, input: &StatusInput<'_>) -> ContainerStateTerminated {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let message = input
        .messages
        .get(&c.id)
        .cloned()
        .filter(|m| !m.is_empty())
        .or_else(|| Some(c.message.clone()).filter(|m| !m.is_empty()));
    ContainerStateTerminated {
        container_id: Some(format!("{}://{}", input.runtime_type, c.id)),
        exit_code: c.exit_code,
        reason: Some(reason),
        message,
        started_at: ts(c.started_at),
        finished_at: ts(c.finished_at),
        signal: None,
    }
}

fn state_of(c: &ContainerInfo, input: &StatusInput<'_>) -> ApiState {
    match c.state {
        ContainerState::Running => ApiState {
            running: Some(ContainerStateRunning {
                started_at: ts(c.started_at),
            }),
            ..Default::default()
        },
        ContainerState::Created => ApiState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..Default::default()
        },
        ContainerState::Exited => ApiState {
            terminated: Some(terminated(c, input)),
            ..Default::default()
        },
        ContainerState::Unknown => ApiState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(format!("{}://{}", input.runtime_type, c.id)),
                exit_code: 137,
                reason: Some("ContainerStatusUnknown".into()),
                message: Some(
                    "The container could not be located when the pod was terminated".into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

fn last_state(prev: Option<&ContainerInfo>, input: &StatusInput<'_>) -> Option<ApiState> {
    let p = prev.filter(|p| p.finished())?;
    Some(ApiState {
        terminated: Some(terminated(p, input)),
        ..Default::default()
    })
}

fn container_status(
    spec: &Container,
    default_waiting: &str,
    init: bool,
    input: &StatusInput<'_>,
) -> ContainerStatus {
    let latest = input.rt.latest(&spec.name, None);
    let mut st = ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        ..Default::default()
    };
    let override_ = input.waiting.get(&spec.name);
    match (latest, override_) {
        (Some(c), Some((reason, message))) if !c.running() => {
            st.state = Some(ApiState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: Some(message.clone()).filter(|m| !m.is_empty()),
                }),
                ..Default::default()
            });
            st.last_state = last_state(Some(c), input);
            st.restart_count = c.attempt as i32;
            st.image_id = image_id(c, input);
            st.started = Some(false);
        }
        (Some(c), _) => {
            st.state = Some(state_of(c, input));
            st.last_state = last_state(input.rt.previous(&spec.name), input);
            st.restart_count = c.attempt as i32;
            st.container_id = Some(format!("{}://{}", input.runtime_type, c.id));
            st.image_id = image_id(c, input);
            let started =
                c.running() && (spec.startup_probe.is_none() || input.started.contains(&c.id));
            st.started = Some(started);
            st.ready = if init && !is_sidecar(spec) {
                c.state == ContainerState::Exited && c.exit_code == 0
            } else {
                started && (spec.readiness_probe.is_none() || input.ready.contains(&c.id))
            };
        }
        (None, Some((reason, message))) => {
            st.state = Some(waiting(
                reason,
                Some(message.clone()).filter(|m| !m.is_empty()),
            ));
            st.started = Some(false);
        }
        (None, None) => {
            st.state = Some(waiting(default_waiting, None));
            st.started = Some(false);
        }
    }
    st
}

fn waiting(reason: &str, message: Option<String>) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    }
}

fn image_id(c: &ContainerInfo, input: &StatusInput<'_>) -> String {
    input
        .image_ids
        .get(&c.image_ref)
        .cloned()
        .unwrap_or_else(|| c.image_ref.clone())
}

fn is_running(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|s| s.running.is_some())
}

fn terminated_state(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.state.as_ref().and_then(|s| s.terminated.as_ref())
}

fn last_terminated(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.last_state.as_ref().and_then(|s| s.terminated.as_ref())
}

fn is_waiting(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|s| s.waiting.is_some())
}

/// Upstream's `getPhase`.
pub fn pod_phase(
    pod: &Pod,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    terminal: bool,
    initialized: bool,
) -> &'static str {
    let policy = restart_policy(pod);
    let find =
        |list: &'_ [ContainerStatus], name: &str| list.iter().find(|s| s.name == name).cloned();
    let (mut pending_init, mut pending_sidecar, mut failed_init) = (0, 0, 0);
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in init_containers(pod) {
        let Some(s) = find(init_statuses, &c.name) else {
            if is_sidecar(c) {
                pending_sidecar += 1;
                unknown += 1;
            } else {
                pending_init += 1;
            }
            continue;
        };
        if is_sidecar(c) {
            if is_running(&s) {
                if s.started != Some(true) {
                    pending_sidecar += 1;
                }
                running += 1;
            } else if is_waiting(&s) && last_terminated(&s).is_none() {
                pending_sidecar += 1;
                waiting += 1;
            }
            continue;
        }
        if is_running(&s) {
            pending_init += 1;
        } else if let Some(t) = terminated_state(&s) {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if is_waiting(&s) {
            match last_terminated(&s) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    for c in app_containers(pod) {
        let Some(s) = find(statuses, &c.name) else {
            unknown += 1;
            continue;
        };
        if is_running(&s) {
            running += 1;
        } else if let Some(t) = terminated_state(&s) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if is_waiting(&s) {
            if last_terminated(&s).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if failed_init > 0 && policy == RestartPolicy::Never {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecar > 0 && !initialized) {
        return "Pending";
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if policy == RestartPolicy::Always && !terminal {
            // All are in the process of restarting.
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == RestartPolicy::OnFailure && !terminal {
            return "Running";
        }
        return "Failed";
    }
    "Pending"
}

fn condition(
    pod: &Pod,
    type_: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
    now: jiff::Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let old = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    let last_transition_time = match old {
        Some(o) if o.status == status => o.last_transition_time.clone(),
        _ => Some(whole_seconds(now)),
    };
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason,
        message,
        last_transition_time,
        last_probe_time: None,
        observed_generation: None,
    }
}

/// Go's `%s` of a string slice: `[a b]`.
fn go_list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

/// Computes the pod's status.
pub fn compute_pod_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let old = pod.status.clone().unwrap_or_default();
    let has_app_record = app_containers(pod)
        .iter()
        .any(|c| input.rt.latest(&c.name, None).is_some());
    let init_done = init_containers(pod)
        .iter()
        .filter(|c| !is_sidecar(c))
        .all(|c| {
            input
                .rt
                .latest(&c.name, None)
                .is_some_and(|ci| ci.state == ContainerState::Exited && ci.exit_code == 0)
        });
    let init_statuses: Vec<ContainerStatus> = init_containers(pod)
        .iter()
        .map(|c| container_status(c, "PodInitializing", true, input))
        .collect();
    let sidecars_started = init_containers(pod)
        .iter()
        .filter(|c| is_sidecar(c))
        .all(|c| {
            init_statuses
                .iter()
                .any(|s| s.name == c.name && s.started == Some(true))
        });
    let initialized = has_app_record || (init_done && sidecars_started);
    let app_waiting = if initialized {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let statuses: Vec<ContainerStatus> = app_containers(pod)
        .iter()
        .map(|c| container_status(c, app_waiting, false, input))
        .collect();

    let mut phase = pod_phase(pod, &init_statuses, &statuses, input.terminal, initialized);
    let old_phase = old.phase.as_deref().unwrap_or("Pending");
    if matches!(old_phase, "Succeeded" | "Failed") {
        // A terminal phase never goes back.
        phase = if old_phase == "Succeeded" {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let (mut reason, mut message) = (old.reason.clone(), old.message.clone());
    if let Some((r, m)) = &input.failure {
        phase = "Failed";
        reason = Some(r.clone());
        message = Some(m.clone());
    }

    // Conditions, in upstream's order; foreign ones (PodScheduled, DisruptionTarget, gates) kept.
    let now = input.now;
    let sandbox_ready = !input.terminal
        && input.rt.sandbox().is_some_and(|s| s.ready)
        && !matches!(phase, "Succeeded" | "Failed");
    let mut conditions = vec![condition(
        pod,
        POD_READY_TO_START_CONTAINERS,
        sandbox_ready,
        None,
        None,
        now,
    )];
    let incomplete: Vec<String> = init_statuses
        .iter()
        .filter(|s| {
            let spec = init_containers(pod).iter().find(|c| c.name == s.name);
            match spec {
                Some(c) if is_sidecar(c) => s.started != Some(true),
                _ => !s.ready,
            }
        })
        .map(|s| s.name.clone())
        .collect();
    conditions.push(if initialized || incomplete.is_empty() {
        condition(pod, INITIALIZED, true, None, None, now)
    } else {
        condition(
            pod,
            INITIALIZED,
            false,
            Some("ContainersNotInitialized".into()),
            Some(format!(
                "containers with incomplete status: {}",
                go_list(&incomplete)
            )),
            now,
        )
    });
    let mut unready: Vec<String> = init_statuses
        .iter()
        .filter(|s| {
            init_containers(pod)
                .iter()
                .any(|c| c.name == s.name && is_sidecar(c))
                && !s.ready
        })
        .map(|s| s.name.clone())
        .collect();
    unready.extend(statuses.iter().filter(|s| !s.ready).map(|s| s.name.clone()));
    let (cr_ok, cr_reason, cr_message) = if phase == "Succeeded" {
        (false, Some("PodCompleted".to_string()), None)
    } else if !initialized {
        (
            false,
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with incomplete status: {}",
                go_list(&incomplete)
            )),
        )
    } else if unready.is_empty() && phase != "Failed" {
        (true, None, None)
    } else {
        let names = if unready.is_empty() {
            statuses.iter().map(|s| s.name.clone()).collect()
        } else {
            unready
        };
        (
            false,
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: {}",
                go_list(&names)
            )),
        )
    };
    // Ready also needs every readiness gate's condition to be True.
    let mut ready_ok = cr_ok;
    let (mut ready_reason, mut ready_message) = (cr_reason.clone(), cr_message.clone());
    if cr_ok {
        let gates = pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.as_ref())
            .map(|g| {
                g.iter()
                    .map(|g| g.condition_type.clone())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut missing = Vec::new();
        for g in gates {
            let ok = old
                .conditions
                .as_ref()
                .and_then(|cs| cs.iter().find(|c| c.type_ == g))
                .is_some_and(|c| c.status == "True");
            if !ok {
                missing.push(g);
            }
        }
        if !missing.is_empty() {
            ready_ok = false;
            ready_reason = Some("ReadinessGatesNotReady".into());
            ready_message = Some(
                missing
                    .iter()
                    .map(|g| {
                        format!(
                            "corresponding condition of pod readiness gate \"{g}\" does not exist."
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
    }
    conditions.push(condition(
        pod,
        READY,
        ready_ok,
        ready_reason,
        ready_message,
        now,
    ));
    conditions.push(condition(
        pod,
        CONTAINERS_READY,
        cr_ok,
        cr_reason,
        cr_message,
        now,
    ));
    for c in old.conditions.iter().flatten() {
        if ![
            POD_READY_TO_START_CONTAINERS,
            INITIALIZED,
            READY,
            CONTAINERS_READY,
        ]
        .contains(&c.type_.as_str())
        {
            conditions.push(c.clone());
        }
    }

    let pod_ip = input.pod_ips.first().map(|ip| ip.to_string());
    PodStatus {
        phase: Some(phase.to_string()),
        reason,
        message,
        conditions: Some(conditions),
        host_ip: input.host_ips.first().map(|ip| ip.to_string()),
        host_ips: Some(
            input
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.to_string() })
                .collect(),
        )
        .filter(|v: &Vec<HostIP>| !v.is_empty()),
        pod_ip: pod_ip.or(old.pod_ip.clone()),
        pod_ips: if input.pod_ips.is_empty() {
            old.pod_ips.clone()
        } else {
            Some(
                input
                    .pod_ips
                    .iter()
                    .map(|ip| PodIP { ip: ip.to_string() })
                    .collect(),
            )
        },
        start_time: old.start_time.clone().or_else(|| Some(whole_seconds(now))),
        qos_class: Some(input.qos_class.to_string()).filter(|q| !q.is_empty()),
        init_container_statuses: Some(init_statuses).filter(|v| !v.is_empty()),
        container_statuses: Some(statuses),
        nominated_node_name: old.nominated_node_name.clone(),
        observed_generation: pod.metadata.generation,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::state::SandboxInfo;
    use serde_json::json;

    fn pod(policy: &str, inits: &[&str], apps: &[&str]) -> Pod {
        let c = |n: &&str| json!({"name": n, "image": "busybox"});
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy,
                     "initContainers": inits.iter().map(c).collect::<Vec<_>>(),
                     "containers": apps.iter().map(c).collect::<Vec<_>>()},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]},
        }))
        .unwrap()
    }

    fn ctr(name: &str, attempt: u32, state: ContainerState, exit: i32) -> ContainerInfo {
        ContainerInfo {
            id: format!("{name}-{attempt}"),
            sandbox_id: "sb".into(),
            name: name.into(),
            attempt,
            state,
            created_at: 100 + attempt as i64,
            started_at: 1_700_000_000_000_000_000,
            finished_at: if state == ContainerState::Exited {
                1_700_000_005_000_000_000
            } else {
                0
            },
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            image: "busybox".into(),
            image_ref: "sha256:abc".into(),
            log_path: Default::default(),
        }
    }

    fn status(
        pod: &Pod,
        containers: Vec<ContainerInfo>,
        waiting: &[(&str, &str)],
        terminal: bool,
    ) -> PodStatus {
        let rt = PodRuntime {
            sandboxes: vec![SandboxInfo {
                id: "sb".into(),
                attempt: 0,
                ready: true,
                created_at: 1,
                ips: vec!["10.42.0.5".parse().unwrap()],
            }],
            containers,
        };
        let waiting: HashMap<String, (String, String)> = waiting
            .iter()
            .map(|(n, r)| (n.to_string(), (r.to_string(), String::new())))
            .collect();
        let empty = HashSet::new();
        let none = HashMap::new();
        let ips: Vec<IpAddr> = vec!["10.42.0.5".parse().unwrap()];
        let host: Vec<IpAddr> = vec!["192.168.0.2".parse().unwrap()];
        compute_pod_status(&StatusInput {
            pod,
            rt: &rt,
            waiting: &waiting,
            ready: &empty,
            started: &empty,
            messages: &none,
            image_ids: &none,
            runtime_type: "rkube",
            host_ips: &host,
            pod_ips: &ips,
            qos_class: "BestEffort",
            failure: None,
            terminal,
            now: jiff::Timestamp::now(),
        })
    }

    /// The condition of type `t`.
    fn condition_of<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
            .unwrap_or_else(|| panic!("no {t} condition in {:?}", s.conditions))
    }

    fn cond(s: &PodStatus, t: &str) -> (String, Option<String>) {
        let c = condition_of(s, t);
        (c.status.clone(), c.reason.clone())
    }

    /// Why a container waits, `None` when it does not.
    fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
        c.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
    }

    type Case<'a> = (
        &'a str,
        Vec<&'a str>,
        Vec<ContainerInfo>,
        Vec<(&'a str, &'a str)>,
        bool,
        &'a str,
    );

    #[test]
    fn phases() {
        use ContainerState::*;
        let cases: Vec<Case> = vec![
            ("Always", vec![], vec![], vec![], false, "Pending"),
            (
                "Always",
                vec![],
                vec![ctr("a", 0, Running, 0)],
                vec![],
                false,
                "Running",
            ),
            (
                "Always",
                vec![],
                vec![ctr("a", 0, Exited, 1)],
                vec![],
                false,
                "Running",
            ),
            (
                "Always",
                vec![],
                vec![ctr("a", 0, Exited, 0)],
                vec![],
                true,
                "Succeeded",
            ),
            (
                "Never",
                vec![],
                vec![ctr("a", 0, Exited, 0)],
                vec![],
                false,
                "Succeeded",
            ),
            (
                "Never",
                vec![],
                vec![ctr("a", 0, Exited, 2)],
                vec![],
                false,
                "Failed",
            ),
            (
                "OnFailure",
                vec![],
                vec![ctr("a", 0, Exited, 2)],
                vec![],
                false,
                "Running",
            ),
            (
                "Always",
                vec![],
                vec![],
                vec![("a", "ErrImagePull")],
                false,
                "Pending",
            ),
            (
                "Always",
                vec!["i"],
                vec![ctr("i", 0, Running, 0)],
                vec![],
                false,
                "Pending",
            ),
            (
                "Never",
                vec!["i"],
                vec![ctr("i", 0, Exited, 1)],
                vec![],
                false,
                "Failed",
            ),
            (
                "Always",
                vec!["i"],
                vec![ctr("a", 0, Running, 0), ctr("i", 0, Exited, 0)],
                vec![],
                false,
                "Running",
            ),
        ];
        for (i, (policy, inits, cs, waiting, terminal, want)) in cases.into_iter().enumerate() {
            let p = pod(policy, &inits, &["a"]);
            let s = status(&p, cs, &waiting, terminal);
            assert_eq!(s.phase.as_deref(), Some(want), "case {i}");
        }
    }

    #[test]
    fn conditions_and_container_fields() {
        use ContainerState::*;
        let p = pod("Always", &["init"], &["web", "side"]);
        let s = status(&p, vec![ctr("init", 0, Running, 0)], &[], false);
        assert_eq!(
            cond(&s, INITIALIZED),
            ("False".into(), Some("ContainersNotInitialized".into()))
        );
        let init = condition_of(&s, INITIALIZED);
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [init]")
        );
        assert_eq!(
            waiting_reason(&s.container_statuses.as_ref().unwrap()[0]),
            Some("PodInitializing")
        );
        assert_eq!(cond(&s, "PodScheduled").0, "True");

        let cs = vec![
            ctr("web", 0, Running, 0),
            ctr("side", 1, Exited, 1),
            ctr("side", 0, Exited, 1),
            ctr("init", 0, Exited, 0),
        ];
        let s = status(&p, cs, &[("side", "CrashLoopBackOff")], false);
        assert_eq!(cond(&s, INITIALIZED).0, "True");
        assert_eq!(cond(&s, POD_READY_TO_START_CONTAINERS).0, "True");
        let ready = condition_of(&s, READY);
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [side]")
        );
        let web = &s.container_statuses.as_ref().unwrap()[0];
        assert!(web.ready);
        assert_eq!(web.container_id.as_deref(), Some("rkube://web-0"));
        assert_eq!(
            web.state
                .as_ref()
                .unwrap()
                .running
                .as_ref()
                .unwrap()
                .started_at
                .as_ref()
                .unwrap()
                .0
                .as_second(),
            1_700_000_000
        );
        let side = &s.container_statuses.as_ref().unwrap()[1];
        assert_eq!(side.restart_count, 1);
        assert_eq!(waiting_reason(side), Some("CrashLoopBackOff"));
        let last = side
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        let init = &s.init_container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            init.state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("Completed")
        );
        assert!(init.ready);
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.5"));
        assert_eq!(s.host_ip.as_deref(), Some("192.168.0.2"));
        assert!(s.start_time.is_some());
    }

    #[test]
    fn completed_pod_and_deadline() {
        let p = pod("Never", &[], &["a"]);
        let s = status(&p, vec![ctr("a", 0, ContainerState::Exited, 0)], &[], false);
        assert_eq!(
            cond(&s, READY),
            ("False".into(), Some("PodCompleted".into()))
        );
        let mut p2 = p.clone();
        p2.status.as_mut().unwrap().phase = Some("Failed".into());
        // A terminal phase never goes back.
        let s = status(
            &p2,
            vec![ctr("a", 0, ContainerState::Running, 0)],
            &[],
            false,
        );
        assert_eq!(s.phase.as_deref(), Some("Failed"));
    }
}
