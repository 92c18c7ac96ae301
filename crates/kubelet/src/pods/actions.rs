//! What a sync must do for a pod (upstream's `computePodActions`): create the sandbox, start
//! the next init container or the app containers, restart exited ones per the restart policy
//! and back-off, kill unhealthy ones. Pure: it reads the pod, what the runtime holds and probe
//! verdicts, and only touches the back-off table, so every decision is unit-tested.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::state::{ContainerInfo, PodRuntime};
use crate::backoff::{Backoff, go_duration};

/// `spec.restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart whatever exits (the default).
    Always,
    /// Restart what fails.
    OnFailure,
    /// Restart nothing.
    Never,
}

/// A pod's restart policy (default `Always`).
pub fn restart_policy(pod: &Pod) -> RestartPolicy {
    match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
        Some("Never") => RestartPolicy::Never,
        Some("OnFailure") => RestartPolicy::OnFailure,
        _ => RestartPolicy::Always,
    }
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's init containers.
pub fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
}

/// The pod's app containers.
pub fn app_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
}

/// Any container of the pod by name (init or app).
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    init_containers(pod)
        .iter()
        .chain(app_containers(pod))
        .find(|c| c.name == name)
}

/// Upstream's `format.Pod`: `name_namespace(uid)`.
pub fn pod_desc(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// Which list a container to start comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerKind {
    /// A regular init container (runs to completion).
    Init,
    /// A sidecar (init container with `restartPolicy: Always`).
    Sidecar,
    /// An app container.
    App,
}

/// A container to create and start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartContainer {
    /// Its name.
    pub name: String,
    /// Which list it is from.
    pub kind: ContainerKind,
    /// The attempt (restart count) it gets.
    pub attempt: u32,
}

/// A running container to kill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillContainer {
    /// Runtime id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Why (the `Killing` event's message).
    pub message: String,
}

/// A container held back, with the waiting reason its status reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Container name.
    pub name: String,
    /// `CrashLoopBackOff`.
    pub reason: String,
    /// `back-off 10s restarting failed container=web pod=web_default(uid)`.
    pub message: String,
}

/// Everything one sync does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Create a new sandbox (none exists, or the newest is not ready).
    pub create_sandbox: bool,
    /// Attempt of the sandbox to create.
    pub sandbox_attempt: u32,
    /// Kill everything of the old sandbox first.
    pub kill_pod: bool,
    /// Containers to start, in order.
    pub start: Vec<StartContainer>,
    /// Containers to kill.
    pub kill: Vec<KillContainer>,
    /// Containers in back-off.
    pub waiting: Vec<Waiting>,
    /// The pod is done (nothing runs or will run again): stop its sandbox.
    pub terminal: bool,
}

/// Probe verdicts the decisions need, by container id.
#[derive(Clone, Debug, Default)]
pub struct ProbeView {
    /// Containers whose liveness or startup probe failed, with the kill message.
    pub unhealthy: HashMap<String, String>,
    /// Containers whose startup probe has succeeded (containers without one count as started
    /// as soon as they run).
    pub started: HashSet<String>,
}

impl ProbeView {
    fn started(&self, spec: &Container, c: &ContainerInfo) -> bool {
        c.running() && (spec.startup_probe.is_none() || self.started.contains(&c.id))
    }
}

/// The back-off key of a pod's container.
pub fn backoff_key(pod: &Pod, container: &str) -> String {
    format!(
        "{}/{}",
        pod.metadata.uid.as_deref().unwrap_or_default(),
        container
    )
}

struct Ctx<'a> {
    pod: &'a Pod,
    rt: &'a PodRuntime,
    sandbox: Option<&'a str>,
    fresh: bool,
    backoff: &'a Backoff,
    now: i64,
    out: PodActions,
}

impl Ctx<'_> {
    fn lookup(&self, name: &str) -> Option<&ContainerInfo> {
        if self.fresh {
            None
        } else {
            self.rt.latest(name, self.sandbox)
        }
    }

    fn next_attempt(&self, name: &str) -> u32 {
        self.rt
            .containers
            .iter()
            .filter(|c| c.name == name)
            .map(|c| c.attempt + 1)
            .max()
            .unwrap_or(0)
    }

    fn start(&mut self, name: &str, kind: ContainerKind) {
        let attempt = self.next_attempt(name);
        self.out.start.push(StartContainer {
            name: name.to_string(),
            kind,
            attempt,
        });
    }

    /// Restarts an exited container unless it is in back-off (then it waits).
    fn restart(&mut self, name: &str, last: &ContainerInfo, kind: ContainerKind) {
        let key = backoff_key(self.pod, name);
        let finished = if last.finished_at > 0 {
            last.finished_at
        } else {
            last.created_at
        };
        if self.backoff.in_backoff_since(&key, finished, self.now) {
            self.out.waiting.push(Waiting {
                name: name.to_string(),
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {} restarting failed container={} pod={}",
                    go_duration(self.backoff.get(&key)),
                    name,
                    pod_desc(self.pod)
                ),
            });
            return;
        }
        self.backoff.next(&key, finished);
        self.start(name, kind);
    }
}

fn failed(c: &ContainerInfo) -> bool {
    !(c.state == rkube_cri::ContainerState::Exited && c.exit_code == 0)
}

/// Computes the actions of one sync.
pub fn compute_pod_actions(
    pod: &Pod,
    rt: &PodRuntime,
    probes: &ProbeView,
    backoff: &Backoff,
    now: i64,
) -> PodActions {
    let policy = restart_policy(pod);
    let sandbox = rt.sandbox();
    let fresh = sandbox.is_none_or(|s| !s.ready);
    let mut ctx = Ctx {
        pod,
        rt,
        sandbox: sandbox.map(|s| s.id.as_str()),
        fresh,
        backoff,
        now,
        out: PodActions::default(),
    };
    if fresh {
        if let Some(sb) = sandbox {
            // The sandbox died: a pod that may not restart is over once anything ran.
            if policy == RestartPolicy::Never && !rt.containers.is_empty() {
                ctx.out.terminal = true;
                ctx.out.kill_pod = rt.any_running();
                return ctx.out;
            }
            ctx.out.kill_pod = true;
            ctx.out.sandbox_attempt = sb.attempt + 1;
        }
        ctx.out.create_sandbox = true;
    }

    if !init_actions(&mut ctx, policy, probes) {
        return ctx.out;
    }

    let mut all_done = true;
    for c in app_containers(pod) {
        match ctx.lookup(&c.name).cloned() {
            None => {
                // After a sandbox change, OnFailure does not re-run containers that succeeded.
                let succeeded_before = policy == RestartPolicy::OnFailure
                    && rt.latest(&c.name, None).is_some_and(|l| !failed(l));
                if !succeeded_before {
                    ctx.start(&c.name, ContainerKind::App);
                    all_done = false;
                }
            }
            Some(ci) if ci.running() => {
                all_done = false;
                if let Some(msg) = probes.unhealthy.get(&ci.id) {
                    ctx.out.kill.push(KillContainer {
                        id: ci.id.clone(),
                        name: c.name.clone(),
                        message: msg.clone(),
                    });
                }
            }
            Some(ci) => {
                let restart = match policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => failed(&ci),
                    RestartPolicy::Never => false,
                };
                if restart {
                    all_done = false;
                    ctx.restart(&c.name, &ci, ContainerKind::App);
                }
            }
        }
    }
    if all_done && policy != RestartPolicy::Always && !app_containers(pod).is_empty() {
        ctx.out.terminal = true;
    }
    ctx.out
}

/// Init container decisions; returns whether the app containers may be looked at.
fn init_actions(ctx: &mut Ctx<'_>, policy: RestartPolicy, probes: &ProbeView) -> bool {
    let pod = ctx.pod;
    // Once an app container exists the pod has initialized: init containers never run again
    // (even if their records were removed).
    let initialized = app_containers(pod)
        .iter()
        .any(|c| ctx.lookup(&c.name).is_some())
        || init_containers(pod)
            .iter()
            .filter(|c| !is_sidecar(c))
            .all(|c| ctx.lookup(&c.name).is_some_and(|ci| !failed(ci)));
    for c in init_containers(pod) {
        let last = ctx.lookup(&c.name).cloned();
        if is_sidecar(c) {
            match last {
                None => {
                    ctx.start(&c.name, ContainerKind::Sidecar);
                    if !initialized {
                        return false;
                    }
                }
                Some(ci) if ci.running() => {
                    if let Some(msg) = probes.unhealthy.get(&ci.id) {
                        ctx.out.kill.push(KillContainer {
                            id: ci.id.clone(),
                            name: c.name.clone(),
                            message: msg.clone(),
                        });
                    } else if !initialized && !probes.started(c, &ci) {
                        return false;
                    }
                }
                Some(ci) => {
                    ctx.restart(&c.name, &ci, ContainerKind::Sidecar);
                    if !initialized {
                        return false;
                    }
                }
            }
            continue;
        }
        if initialized {
            continue;
        }
        match last {
            None => {
                ctx.start(&c.name, ContainerKind::Init);
                return false;
            }
            Some(ci) if ci.running() => return false,
            Some(ci) if !failed(&ci) => continue,
            Some(ci) => {
                if policy == RestartPolicy::Never {
                    // A failed init container fails a pod that may not restart.
                    ctx.out.terminal = true;
                    ctx.out.start.clear();
                    return false;
                }
                ctx.restart(&c.name, &ci, ContainerKind::Init);
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::state::SandboxInfo;
    use rkube_cri::ContainerState;
    use serde_json::json;

    const S: i64 = 1_000_000_000;

    fn pod(policy: &str, inits: &[(&str, bool)], apps: &[&str]) -> Pod {
        let inits: Vec<_> = inits
            .iter()
            .map(|(n, sidecar)| {
                if *sidecar {
                    json!({"name": n, "image": "busybox", "restartPolicy": "Always"})
                } else {
                    json!({"name": n, "image": "busybox"})
                }
            })
            .collect();
        let apps: Vec<_> = apps
            .iter()
            .map(|n| json!({"name": n, "image": "busybox"}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "initContainers": inits, "containers": apps},
        }))
        .unwrap()
    }

    fn sandbox(ready: bool) -> SandboxInfo {
        SandboxInfo {
            id: "sb".into(),
            attempt: 0,
            ready,
            created_at: 1,
            ips: vec![],
        }
    }

    fn ctr(
        name: &str,
        attempt: u32,
        state: ContainerState,
        exit: i32,
        finished: i64,
    ) -> ContainerInfo {
        ContainerInfo {
            id: format!("{name}-{attempt}"),
            sandbox_id: "sb".into(),
            name: name.into(),
            attempt,
            state,
            created_at: 10 + attempt as i64,
            started_at: 10,
            finished_at: finished,
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            image: "busybox".into(),
            image_ref: "sha256:x".into(),
            log_path: Default::default(),
        }
    }

    fn rt(containers: Vec<ContainerInfo>) -> PodRuntime {
        PodRuntime {
            sandboxes: vec![sandbox(true)],
            containers,
        }
    }

    fn names(a: &PodActions) -> Vec<(&str, u32)> {
        a.start
            .iter()
            .map(|s| (s.name.as_str(), s.attempt))
            .collect()
    }

    #[test]
    fn new_pod_creates_sandbox_and_starts_all_apps() {
        let p = pod("Always", &[], &["a", "b"]);
        let a = compute_pod_actions(
            &p,
            &PodRuntime::default(),
            &ProbeView::default(),
            &Backoff::default(),
            0,
        );
        assert!(a.create_sandbox && !a.kill_pod);
        assert_eq!(names(&a), vec![("a", 0), ("b", 0)]);
    }

    #[test]
    fn init_containers_run_one_by_one() {
        let p = pod("Always", &[("i1", false), ("i2", false)], &["a"]);
        let b = Backoff::default();
        let v = ProbeView::default();
        let a = compute_pod_actions(&p, &PodRuntime::default(), &v, &b, 0);
        assert_eq!(names(&a), vec![("i1", 0)]);
        let a = compute_pod_actions(
            &p,
            &rt(vec![ctr("i1", 0, ContainerState::Running, 0, 0)]),
            &v,
            &b,
            0,
        );
        assert!(a.start.is_empty() && !a.create_sandbox);
        let a = compute_pod_actions(
            &p,
            &rt(vec![ctr("i1", 0, ContainerState::Exited, 0, S)]),
            &v,
            &b,
            2 * S,
        );
        assert_eq!(names(&a), vec![("i2", 0)]);
        let done = vec![
            ctr("i2", 0, ContainerState::Exited, 0, S),
            ctr("i1", 0, ContainerState::Exited, 0, S),
        ];
        let a = compute_pod_actions(&p, &rt(done), &v, &b, 2 * S);
        assert_eq!(names(&a), vec![("a", 0)]);
    }

    #[test]
    fn failed_init_restarts_with_backoff_or_fails_pod_with_never() {
        let b = Backoff::default();
        let v = ProbeView::default();
        let failed_init = vec![ctr("i1", 0, ContainerState::Exited, 1, S)];
        let p = pod("Always", &[("i1", false)], &["a"]);
        let a = compute_pod_actions(&p, &rt(failed_init.clone()), &v, &b, 2 * S);
        assert_eq!(names(&a), vec![("i1", 1)]);
        // The next failure, right away: back-off.
        let again = vec![ctr("i1", 1, ContainerState::Exited, 1, 3 * S)];
        let a = compute_pod_actions(&p, &rt(again), &v, &b, 4 * S);
        assert!(a.start.is_empty());
        assert_eq!(a.waiting[0].reason, "CrashLoopBackOff");
        assert_eq!(
            a.waiting[0].message,
            "back-off 10s restarting failed container=i1 pod=web_default(u1)"
        );
        let p = pod("Never", &[("i1", false)], &["a"]);
        let a = compute_pod_actions(&p, &rt(failed_init), &v, &Backoff::default(), 2 * S);
        assert!(a.terminal && a.start.is_empty());
    }

    #[test]
    fn sidecar_starts_before_regular_init_and_apps_wait_for_it() {
        let p = pod("Always", &[("side", true), ("i1", false)], &["a"]);
        let b = Backoff::default();
        let v = ProbeView::default();
        let a = compute_pod_actions(&p, &PodRuntime::default(), &v, &b, 0);
        assert_eq!(names(&a), vec![("side", 0)]);
        let a = compute_pod_actions(
            &p,
            &rt(vec![ctr("side", 0, ContainerState::Running, 0, 0)]),
            &v,
            &b,
            0,
        );
        assert_eq!(names(&a), vec![("i1", 0)]);
        let cs = vec![
            ctr("i1", 0, ContainerState::Exited, 0, S),
            ctr("side", 0, ContainerState::Running, 0, 0),
        ];
        let a = compute_pod_actions(&p, &rt(cs), &v, &b, 2 * S);
        assert_eq!(names(&a), vec![("a", 0)]);
    }

    #[test]
    fn restart_policies_for_exited_app_containers() {
        let v = ProbeView::default();
        for (policy, exit, restart, terminal) in [
            ("Always", 0, true, false),
            ("Always", 1, true, false),
            ("OnFailure", 0, false, true),
            ("OnFailure", 1, true, false),
            ("Never", 0, false, true),
            ("Never", 1, false, true),
        ] {
            let p = pod(policy, &[], &["a"]);
            let a = compute_pod_actions(
                &p,
                &rt(vec![ctr("a", 0, ContainerState::Exited, exit, S)]),
                &v,
                &Backoff::default(),
                2 * S,
            );
            assert_eq!(!a.start.is_empty(), restart, "{policy} exit {exit}");
            assert_eq!(a.terminal, terminal, "{policy} exit {exit}");
        }
    }

    #[test]
    fn crash_loop_backs_off_doubling() {
        let p = pod("Always", &[], &["a"]);
        let b = Backoff::default();
        let v = ProbeView::default();
        // First exit: restart at once (and arm 10 s).
        let a = compute_pod_actions(
            &p,
            &rt(vec![ctr("a", 0, ContainerState::Exited, 1, S)]),
            &v,
            &b,
            S,
        );
        assert_eq!(names(&a), vec![("a", 1)]);
        // Second exit 1 s later: wait 10 s.
        let second = rt(vec![ctr("a", 1, ContainerState::Exited, 1, 2 * S)]);
        let a = compute_pod_actions(&p, &second, &v, &b, 3 * S);
        assert!(a.start.is_empty());
        let a = compute_pod_actions(&p, &second, &v, &b, 13 * S);
        assert_eq!(names(&a), vec![("a", 2)]);
        let third = rt(vec![ctr("a", 2, ContainerState::Exited, 1, 14 * S)]);
        let a = compute_pod_actions(&p, &third, &v, &b, 15 * S);
        assert!(a.waiting[0].message.starts_with("back-off 20s"));
    }

    #[test]
    fn unhealthy_container_is_killed() {
        let p = pod("Always", &[], &["a"]);
        let mut v = ProbeView::default();
        v.unhealthy.insert(
            "a-0".into(),
            "Container a failed liveness probe, will be restarted".into(),
        );
        let a = compute_pod_actions(
            &p,
            &rt(vec![ctr("a", 0, ContainerState::Running, 0, 0)]),
            &v,
            &Backoff::default(),
            S,
        );
        assert_eq!(a.kill.len(), 1);
        assert!(a.start.is_empty());
    }

    #[test]
    fn dead_sandbox_is_recreated_unless_never() {
        let p = pod("Always", &[], &["a"]);
        let mut r = rt(vec![ctr("a", 0, ContainerState::Exited, 137, S)]);
        r.sandboxes[0].ready = false;
        let a = compute_pod_actions(&p, &r, &ProbeView::default(), &Backoff::default(), 2 * S);
        assert!(a.create_sandbox && a.kill_pod);
        assert_eq!(a.sandbox_attempt, 1);
        assert_eq!(names(&a), vec![("a", 1)]);
        let p = pod("Never", &[], &["a"]);
        let a = compute_pod_actions(&p, &r, &ProbeView::default(), &Backoff::default(), 2 * S);
        assert!(a.terminal && !a.create_sandbox);
    }
}
