//! The Job controller: runs pods from a Job's template until `completions` of them have
//! succeeded (NonIndexed), or one pod per completion index has (Indexed), keeping at most
//! `parallelism` active; fails the Job past `backoffLimit` failed pods or
//! `activeDeadlineSeconds`; honours `suspend`; deletes finished Jobs after
//! `ttlSecondsAfterFinished`. A `podFailurePolicy` decides what a failed pod means (FailJob,
//! FailIndex, Ignore, Count, by exit codes or pod conditions); Indexed Jobs may have a
//! `successPolicy` (succeededIndexes / succeededCount) and `backoffLimitPerIndex` /
//! `maxFailedIndexes` (`status.failedIndexes`).
//!
//! Status counts come from the Job's pods, which stay until the Job itself is deleted (the
//! garbage collector removes them with it), so a LIST per reconcile sees every finished pod.
//! Counts never go down, so a finished pod deleted by hand is not forgotten (upstream gets
//! the same guarantee from its tracking finalizer). The terminal conditions follow 1.31+:
//! `SuccessCriteriaMet` / `FailureTarget` first, then `Complete` / `Failed` once no pod of the
//! Job is still running or terminating.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, PodFailurePolicy, SuccessPolicy};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rkube_apimachinery::labels::Selector;
use serde_json::{Value, json};

use crate::events::Recorder;
use crate::pods::{self, is_ready};

/// Annotation and label carrying an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Annotation with the failures of a pod's index so far that count towards
/// `backoffLimitPerIndex`.
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// Annotation with the failures of a pod's index so far that the pod failure policy ignored.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// First delay before re-creating a pod after a failure; doubles per failure.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// Longest delay between failures (upstream's `MaxJobBackOff`).
const BACKOFF_MAX: Duration = Duration::from_secs(360);
/// Pods created per reconcile at most.
const BURST: i64 = 500;

pub use crate::Error;

/// The spec fields the controller acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Pods running at once at most.
    pub parallelism: i64,
    /// Successful pods needed; None means "any one pod succeeding".
    pub completions: Option<i64>,
    /// Completion mode `Indexed`.
    pub indexed: bool,
    /// Failed pods tolerated.
    pub backoff_limit: i64,
    /// Seconds the Job may run from its start time.
    pub active_deadline: Option<i64>,
    /// Whether the Job is suspended.
    pub suspend: bool,
    /// Seconds a finished Job is kept.
    pub ttl_after_finished: Option<i64>,
    /// Rules deciding what a failed pod means.
    pub pod_failure_policy: Option<PodFailurePolicy>,
    /// Rules declaring an Indexed Job successful before all indexes succeeded.
    pub success_policy: Option<SuccessPolicy>,
    /// Failures tolerated per index (Indexed Jobs).
    pub backoff_limit_per_index: Option<i64>,
    /// Failed indexes tolerated before the Job fails.
    pub max_failed_indexes: Option<i64>,
    /// podReplacementPolicy `Failed`: replacements wait until terminating pods are gone.
    pub replace_only_failed: bool,
}

impl Spec {
    /// Reads the spec (defaults as the apiserver sets them, should they be missing).
    pub fn from_job(job: &Job) -> Spec {
        let s = job.spec.as_ref();
        Spec {
            parallelism: s.and_then(|s| s.parallelism).unwrap_or(1).max(0) as i64,
            completions: s.and_then(|s| s.completions).map(i64::from),
            indexed: s.and_then(|s| s.completion_mode.as_deref()) == Some("Indexed"),
            backoff_limit: s.and_then(|s| s.backoff_limit).unwrap_or(6) as i64,
            active_deadline: s.and_then(|s| s.active_deadline_seconds),
            suspend: s.and_then(|s| s.suspend).unwrap_or(false),
            ttl_after_finished: s.and_then(|s| s.ttl_seconds_after_finished).map(i64::from),
            pod_failure_policy: s.and_then(|s| s.pod_failure_policy.clone()),
            success_policy: s.and_then(|s| s.success_policy.clone()),
            backoff_limit_per_index: s.and_then(|s| s.backoff_limit_per_index).map(i64::from),
            max_failed_indexes: s.and_then(|s| s.max_failed_indexes).map(i64::from),
            replace_only_failed: s.and_then(|s| s.pod_replacement_policy.as_deref())
                == Some("Failed"),
        }
    }
}

/// What the Job's pods add up to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    /// Pods neither finished nor terminating.
    pub active: i64,
    /// Active pods that are Ready.
    pub ready: i64,
    /// Pods being deleted that have not finished.
    pub terminating: i64,
    /// Pods in phase Succeeded.
    pub succeeded: i64,
    /// Pods in phase Failed.
    pub failed: i64,
    /// Indexes (Indexed mode) with a succeeded pod.
    pub completed_indexes: BTreeSet<i64>,
    /// Indexes (Indexed mode) with an active pod, and how many.
    pub active_indexes: BTreeMap<i64, i64>,
    /// When the last failed pod finished.
    pub last_failure: Option<jiff::Timestamp>,
    /// Failed pods the pod failure policy said to ignore (not in `failed`).
    pub ignored: i64,
    /// The message of the first failed pod matching a FailJob rule.
    pub fail_job: Option<String>,
    /// Per index (Indexed mode): counted failures and when the last one finished.
    pub index_failures: BTreeMap<i64, (i64, Option<jiff::Timestamp>)>,
    /// Per index: failures the policy ignored.
    pub index_ignored: BTreeMap<i64, i64>,
    /// Indexes failed for good: past `backoffLimitPerIndex`, or by a FailIndex rule.
    pub failed_indexes: BTreeSet<i64>,
}

/// What a pod failure policy rule says to do with a failed pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Fail the whole Job at once.
    FailJob,
    /// Fail the pod's index (with backoffLimitPerIndex).
    FailIndex,
    /// Do not count the failure; replace the pod.
    Ignore,
    /// Count the failure as usual.
    Count,
}

/// Matches a failed pod against the pod failure policy as upstream's
/// `matchPodFailurePolicy`: the first rule whose `onExitCodes` match a terminated container
/// (regular containers first, then init containers; exit code 0 never matches) or whose
/// `onPodConditions` match a pod condition decides. Returns the action and, for FailJob,
/// the Job condition's message. None when no rule matches (the failure counts).
pub fn match_pod_failure_policy(
    policy: &PodFailurePolicy,
    pod: &Pod,
) -> Option<(FailureAction, Option<String>)> {
    let status = pod.status.as_ref();
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let action = match rule.action.as_str() {
            "FailJob" => FailureAction::FailJob,
            "FailIndex" => FailureAction::FailIndex,
            "Ignore" => FailureAction::Ignore,
            "Count" => FailureAction::Count,
            // An action this controller does not know: upstream skips the rule.
            _ => continue,
        };
        let matched = if let Some(req) = &rule.on_exit_codes {
            let lists = status.into_iter().flat_map(|s| {
                let regular = s.container_statuses.iter().flatten();
                regular.chain(s.init_container_statuses.iter().flatten())
            });
            lists
                .filter(|c| req.container_name.as_ref().is_none_or(|n| *n == c.name))
                .find_map(|c| {
                    let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
                    let listed = req.values.contains(&code);
                    let hit = code != 0
                        && match req.operator.as_str() {
                            "In" => listed,
                            "NotIn" => !listed,
                            _ => false,
                        };
                    hit.then(|| {
                        format!(
                            "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                            c.name, rule.action
                        )
                    })
                })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conds = status.and_then(|s| s.conditions.as_ref());
            conds.into_iter().flatten().find_map(|c| {
                let hit = patterns.iter().any(|p| {
                    p.type_ == c.type_ && p.status.as_deref().unwrap_or("True") == c.status
                });
                hit.then(|| {
                    format!(
                        "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                        c.type_, rule.action
                    )
                })
            })
        } else {
            None
        };
        if let Some(message) = matched {
            let message = (action == FailureAction::FailJob).then_some(message);
            return Some((action, message));
        }
    }
    None
}

/// Whether a success policy rule is met by the succeeded indexes (upstream's
/// `matchSuccessPolicy`): all of `succeededIndexes`, or `succeededCount` of them, or
/// `succeededCount` indexes at all. Returns the SuccessCriteriaMet message.
pub fn match_success_policy(
    policy: &SuccessPolicy,
    completions: i64,
    succeeded: &BTreeSet<i64>,
) -> Option<String> {
    if succeeded.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let count = rule.succeeded_count.map(i64::from);
        let met = match &rule.succeeded_indexes {
            Some(text) => {
                let required: BTreeSet<i64> = parse_indexes(text)
                    .into_iter()
                    .filter(|i| *i < completions)
                    .collect();
                let have = required.intersection(succeeded).count() as i64;
                !required.is_empty()
                    && match count {
                        Some(n) => have >= n,
                        None => have == required.len() as i64,
                    }
            }
            None => count.is_some_and(|n| succeeded.len() as i64 >= n),
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// The completion index of an Indexed Job's pod.
pub fn pod_index(p: &Pod) -> Option<i64> {
    let from = |m: &Option<BTreeMap<String, String>>| {
        m.as_ref()?.get(COMPLETION_INDEX)?.parse::<i64>().ok()
    };
    from(&p.metadata.annotations).or_else(|| from(&p.metadata.labels))
}

/// When a finished pod's last container terminated (its creation time if unknown).
fn finished_at(p: &Pod) -> Option<jiff::Timestamp> {
    let terminated = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    terminated.or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Counts the Job's pods. Succeeded pods of an Indexed Job only count once per index in
/// `[0, completions)`, as upstream counts them.
pub fn count_pods(pods: &[Pod], spec: &Spec) -> Counts {
    let mut c = Counts::default();
    let in_range = |i: i64| spec.completions.is_some_and(|n| i >= 0 && i < n);
    for p in pods {
        let index = pod_index(p).filter(|i| in_range(*i));
        match phase(p) {
            "Succeeded" if spec.indexed => {
                c.completed_indexes.extend(index);
            }
            "Succeeded" => c.succeeded += 1,
            "Failed" => {
                let verdict = spec
                    .pod_failure_policy
                    .as_ref()
                    .and_then(|policy| match_pod_failure_policy(policy, p));
                match verdict {
                    Some((FailureAction::Ignore, _)) => {
                        c.ignored += 1;
                        if let Some(i) = index {
                            *c.index_ignored.entry(i).or_default() += 1;
                        }
                        continue;
                    }
                    Some((FailureAction::FailJob, message)) => {
                        c.fail_job = c.fail_job.take().or(message);
                    }
                    Some((FailureAction::FailIndex, _))
                        if spec.backoff_limit_per_index.is_some() =>
                    {
                        c.failed_indexes.extend(index);
                    }
                    _ => {}
                }
                c.failed += 1;
                let at = finished_at(p);
                c.last_failure = c.last_failure.max(at);
                if let Some(i) = index {
                    let e = c.index_failures.entry(i).or_insert((0, None));
                    e.0 += 1;
                    e.1 = e.1.max(at);
                }
            }
            _ if p.metadata.deletion_timestamp.is_some() => c.terminating += 1,
            _ => {
                c.active += 1;
                c.ready += i64::from(is_ready(p));
                if let Some(i) = index {
                    *c.active_indexes.entry(i).or_default() += 1;
                }
            }
        }
    }
    if spec.indexed {
        if let Some(limit) = spec.backoff_limit_per_index {
            let over = c.index_failures.iter().filter(|(_, (n, _))| *n > limit);
            c.failed_indexes.extend(over.map(|(i, _)| *i));
        }
        // An index that succeeded after all is not failed.
        let done = c.completed_indexes.clone();
        c.failed_indexes.retain(|i| !done.contains(i));
        c.succeeded = c.completed_indexes.len() as i64;
    }
    c
}

/// How the Job stands once its pods are counted.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Still has work to do.
    Running,
    /// Succeeded, with the condition's reason and message.
    Succeeded(&'static str, String),
    /// Failed, with the condition's reason and message.
    Failed(&'static str, String),
}

/// Decides success or failure in upstream's order: a FailJob rule, the backoff limit, the
/// active deadline, failed indexes, then the success policy and completions.
pub fn outcome(
    spec: &Spec,
    c: &Counts,
    start: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Outcome {
    let failed = |r: &'static str, m: &str| Outcome::Failed(r, m.to_string());
    if let Some(message) = &c.fail_job {
        return failed("PodFailurePolicy", message);
    }
    if c.failed > spec.backoff_limit {
        return failed(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        );
    }
    if let (Some(deadline), Some(start)) = (spec.active_deadline, start)
        && now.duration_since(start).as_secs() >= deadline
    {
        return failed(
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        );
    }
    if spec.indexed && spec.backoff_limit_per_index.is_some() {
        let n = c.failed_indexes.len() as i64;
        if spec.max_failed_indexes.is_some_and(|max| n > max) {
            return failed(
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes",
            );
        }
        if n > 0 && n + c.succeeded >= spec.completions.unwrap_or(0) {
            return failed("FailedIndexes", "Job has failed indexes");
        }
    }
    if spec.indexed
        && let (Some(policy), Some(n)) = (&spec.success_policy, spec.completions)
        && let Some(message) = match_success_policy(policy, n, &c.completed_indexes)
    {
        return Outcome::Succeeded("SuccessPolicy", message);
    }
    let done = match spec.completions {
        Some(n) => c.succeeded >= n,
        // Without completions (a work queue), one success ends the Job once the other
        // pods have stopped by themselves; they are not killed.
        None => c.succeeded > 0 && c.active == 0,
    };
    if done {
        Outcome::Succeeded(
            "CompletionsReached",
            "Reached expected number of succeeded pods".into(),
        )
    } else {
        Outcome::Running
    }
}

/// How many pods should be active now.
pub fn wanted_active(spec: &Spec, c: &Counts) -> i64 {
    if spec.suspend {
        return 0;
    }
    match spec.completions {
        Some(n) => {
            let left = n - c.succeeded - c.failed_indexes.len() as i64;
            spec.parallelism.min(left).max(0)
        }
        // A work queue with a success: create no more, but let the running pods finish.
        None if c.succeeded > 0 => c.active,
        None => spec.parallelism,
    }
}

/// The lowest indexes of an Indexed Job that neither succeeded, failed for good nor run,
/// at most `n`.
pub fn pending_indexes(spec: &Spec, c: &Counts, n: i64) -> Vec<i64> {
    (0..spec.completions.unwrap_or(0))
        .filter(|i| {
            !c.completed_indexes.contains(i)
                && !c.failed_indexes.contains(i)
                && !c.active_indexes.contains_key(i)
        })
        .take(n.max(0) as usize)
        .collect()
}

/// How long index `i` must wait before its pod is re-created (per-index backoff: 10 s
/// doubling per failure of that index, from its last failure).
pub fn index_backoff_remaining(c: &Counts, i: i64, now: jiff::Timestamp) -> Option<Duration> {
    let (failed, last) = c.index_failures.get(&i)?;
    delay_after(*failed, (*last)?, now)
}

fn delay_after(failed: i64, last: jiff::Timestamp, now: jiff::Timestamp) -> Option<Duration> {
    if failed <= 0 {
        return None;
    }
    let shift = (failed - 1).clamp(0, 16) as u32;
    let delay = BACKOFF_BASE.saturating_mul(1 << shift).min(BACKOFF_MAX);
    let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or_default();
    delay.checked_sub(elapsed).filter(|d| !d.is_zero())
}

/// How long to wait before creating pods again after failures: 10 s doubling per failed pod
/// up to 6 min, counted from the last failure; None when no wait is due.
pub fn backoff_remaining(c: &Counts, now: jiff::Timestamp) -> Option<Duration> {
    delay_after(c.failed, c.last_failure?, now)
}

/// Renders indexes as upstream's `completedIndexes`: ascending, runs as `a-b`, comma-joined.
pub fn format_indexes(indexes: &BTreeSet<i64>) -> String {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &i in indexes {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => runs.push((i, i)),
        }
    }
    runs.iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `completedIndexes`; malformed parts are skipped, never fatal.
pub fn parse_indexes(s: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
            // Bounded so that a hostile "0-999999999999" cannot exhaust memory.
            out.extend(a..=b.min(a.saturating_add(100_000)));
        }
    }
    out
}

/// Sets a condition of `type_` to True with a reason and message, keeping its transition
/// time if it already was True; returns whether it changed.
pub fn set_condition(
    conds: &mut Vec<Value>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) -> bool {
    let fresh = json!({"type": type_, "status": status, "reason": reason, "message": message,
                       "lastProbeTime": now, "lastTransitionTime": now});
    match conds.iter_mut().find(|c| c["type"] == type_) {
        Some(c) if c["status"] == status => false,
        Some(c) => {
            *c = fresh;
            true
        }
        None => {
            conds.push(fresh);
            true
        }
    }
}

/// Whether the condition `type_` is True.
pub fn condition_true(conds: &[Value], type_: &str) -> bool {
    conds
        .iter()
        .any(|c| c["type"] == type_ && c["status"] == "True")
}

/// A pod for the Job from its template; `index` for Indexed Jobs, with the index's failures
/// so far (counted, ignored) when the Job has `backoffLimitPerIndex`.
pub fn new_pod(job: &Job, index: Option<i64>, failures: Option<(i64, i64)>) -> Value {
    let name = job.name_any();
    let template = job
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.template).ok())
        .unwrap_or(json!({}));
    let mut metadata = json!({
        "generateName": format!("{name}-"),
        "namespace": job.namespace(),
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
            "uid": job.uid(), "controller": true, "blockOwnerDeletion": true}],
    });
    for key in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template.pointer(&format!("/metadata/{key}")) {
            metadata[key] = v.clone();
        }
    }
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    if let Some(i) = index {
        metadata["generateName"] = json!(format!("{name}-{i}-"));
        for key in ["labels", "annotations"] {
            if !metadata[key].is_object() {
                metadata[key] = json!({});
            }
            metadata[key][COMPLETION_INDEX] = json!(i.to_string());
        }
        spec["hostname"] = json!(format!("{name}-{i}"));
        add_index_env(&mut spec);
        if let Some((counted, ignored)) = failures {
            metadata["annotations"][INDEX_FAILURE_COUNT] = json!(counted.to_string());
            if ignored > 0 {
                metadata["annotations"][INDEX_IGNORED_FAILURE_COUNT] = json!(ignored.to_string());
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// Gives every container `JOB_COMPLETION_INDEX` from the index annotation, as upstream does.
fn add_index_env(spec: &mut Value) {
    let var = json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": format!("metadata.annotations['{COMPLETION_INDEX}']")}}});
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers {
            if !c["env"].is_array() {
                c["env"] = json!([]);
            }
            if let Some(env) = c["env"].as_array_mut()
                && !env.iter().any(|e| e["name"] == "JOB_COMPLETION_INDEX")
            {
                env.push(var.clone());
            }
        }
    }
}

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let jobs: Api<Job> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), "job-controller"),
        client,
    });
    Controller::new(jobs, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_job: Arc<Job>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!("job controller: {err}");
    Action::requeue(Duration::from_secs(2))
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn parse_time(v: &Value) -> Option<jiff::Timestamp> {
    v.as_str()?.parse().ok()
}

/// The Job's status as JSON (empty object when it has none).
fn status_of(job: &Job) -> Value {
    job.status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(json!({}))
}

fn conditions_of(status: &Value) -> Vec<Value> {
    status["conditions"].as_array().cloned().unwrap_or_default()
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = Spec::from_job(&job);
    let status = status_of(&job);
    let conds = conditions_of(&status);
    if condition_true(&conds, "Complete") || condition_true(&conds, "Failed") {
        return expire_finished(&job, &spec, &status, &ctx).await;
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let owned = owned_pods(&api, &job).await?;
    let mut counts = count_pods(&owned, &spec);
    keep_monotonic(&mut counts, &status, &spec);
    let mut sync = Sync {
        job: &job,
        spec: &spec,
        api: &api,
        ctx: &ctx,
        now: jiff::Timestamp::now(),
        status: status.clone(),
        conds,
        requeue: None,
    };
    sync.run(&owned, &mut counts).await?;
    sync.write_status(&counts).await?;
    Ok(match sync.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Never lets `succeeded`, `failed` or `completedIndexes` go below what status already says.
fn keep_monotonic(c: &mut Counts, status: &Value, spec: &Spec) {
    let prev = |k: &str| status[k].as_i64().unwrap_or(0);
    c.failed = c.failed.max(prev("failed"));
    if spec.indexed {
        let n = spec.completions.unwrap_or(0);
        let before = parse_indexes(status["completedIndexes"].as_str().unwrap_or(""));
        c.completed_indexes
            .extend(before.into_iter().filter(|i| *i < n));
        c.succeeded = c.completed_indexes.len() as i64;
        if spec.backoff_limit_per_index.is_some() {
            let failed = parse_indexes(status["failedIndexes"].as_str().unwrap_or(""));
            c.failed_indexes.extend(
                failed
                    .into_iter()
                    .filter(|i| *i < n && !c.completed_indexes.contains(i)),
            );
        }
    } else {
        c.succeeded = c.succeeded.max(prev("succeeded"));
    }
}

/// The pods matching the Job's selector that it controls.
async fn owned_pods(api: &Api<Pod>, job: &Job) -> Result<Vec<Pod>, Error> {
    let raw = job
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .ok_or_else(|| Error::Selector("missing".into()))?;
    let selector = Selector::from_label_selector(&raw).map_err(|e| Error::Selector(e.0))?;
    if selector.is_empty() {
        return Err(Error::Selector("empty selector".into()));
    }
    let uid = job.uid().unwrap_or_default();
    let list = api
        .list(&ListParams::default().labels(&selector.to_string()))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| pods::controller_of(p) == Some(uid.as_str()))
        .collect())
}

/// Deletes a finished Job once its `ttlSecondsAfterFinished` has passed.
async fn expire_finished(
    job: &Job,
    spec: &Spec,
    status: &Value,
    ctx: &Ctx,
) -> Result<Action, Error> {
    let Some(ttl) = spec.ttl_after_finished else {
        return Ok(Action::await_change());
    };
    let finished = parse_time(&status["completionTime"]).or_else(|| {
        conditions_of(status)
            .iter()
            .filter(|c| c["type"] == "Complete" || c["type"] == "Failed")
            .find_map(|c| parse_time(&c["lastTransitionTime"]))
    });
    let now = jiff::Timestamp::now();
    let finished = finished.unwrap_or(now);
    let expires = finished.saturating_add(jiff::SignedDuration::from_secs(ttl.max(0)));
    if let Ok(expires) = expires
        && expires > now
    {
        let wait = Duration::try_from(expires.duration_since(now)).unwrap_or_default();
        return Ok(Action::requeue(wait + Duration::from_millis(100)));
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: job.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&job.name_any(), &dp).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// One reconcile of a Job that has not finished.
struct Sync<'a> {
    job: &'a Job,
    spec: &'a Spec,
    api: &'a Api<Pod>,
    ctx: &'a Ctx,
    now: jiff::Timestamp,
    status: Value,
    conds: Vec<Value>,
    requeue: Option<Duration>,
}

impl Sync<'_> {
    fn now_str(&self) -> String {
        rfc3339(self.now)
    }

    fn start_time(&self) -> Option<jiff::Timestamp> {
        parse_time(&self.status["startTime"])
    }

    fn wake_in(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    async fn event(&self, type_: &str, reason: &str, message: &str) {
        self.ctx
            .recorder
            .record(&crate::events::reference(self.job), type_, reason, message)
            .await;
    }

    async fn run(&mut self, pods: &[Pod], c: &mut Counts) -> Result<(), Error> {
        if self.spec.suspend {
            return self.suspend(pods, c).await;
        }
        self.resume().await;
        // Once reached, an interim condition decides the end, whatever the pods do while
        // they are being terminated (upstream never re-evaluates it).
        let interim = self.conds.iter().find_map(|cond| {
            let t = cond["type"].as_str()?;
            let text = |k: &str| cond[k].as_str().unwrap_or_default().to_string();
            (cond["status"] == "True" && (t == "FailureTarget" || t == "SuccessCriteriaMet"))
                .then(|| (t == "FailureTarget", text("reason"), text("message")))
        });
        if let Some((failed, reason, message)) = interim {
            return if failed {
                self.fail(pods, c, &reason, &message).await
            } else {
                self.succeed(pods, c, &reason, &message).await
            };
        }
        match outcome(self.spec, c, self.start_time(), self.now) {
            Outcome::Failed(reason, message) => self.fail(pods, c, reason, &message).await,
            Outcome::Succeeded(reason, message) => self.succeed(pods, c, reason, &message).await,
            Outcome::Running => self.keep_running(pods, c).await,
        }
    }

    async fn suspend(&mut self, pods: &[Pod], c: &mut Counts) -> Result<(), Error> {
        self.delete_active(pods, c).await?;
        let now = self.now_str();
        if set_condition(
            &mut self.conds,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            &now,
        ) {
            self.event("Normal", "Suspended", "Job suspended").await;
        }
        Ok(())
    }

    /// Un-suspends: the Suspended condition turns False and the deadline timer restarts.
    async fn resume(&mut self) {
        let now = self.now_str();
        if condition_true(&self.conds, "Suspended") {
            set_condition(
                &mut self.conds,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                &now,
            );
            self.status["startTime"] = json!(now);
            self.event("Normal", "Resumed", "Job resumed").await;
        } else if self.status["startTime"].is_null() {
            self.status["startTime"] = json!(now);
        }
    }

    async fn fail(
        &mut self,
        pods: &[Pod],
        c: &mut Counts,
        reason: &str,
        message: &str,
    ) -> Result<(), Error> {
        self.delete_active(pods, c).await?;
        let now = self.now_str();
        set_condition(
            &mut self.conds,
            "FailureTarget",
            "True",
            reason,
            message,
            &now,
        );
        if c.active + c.terminating == 0
            && set_condition(&mut self.conds, "Failed", "True", reason, message, &now)
        {
            self.event("Warning", reason, message).await;
        }
        Ok(())
    }

    async fn succeed(
        &mut self,
        pods: &[Pod],
        c: &mut Counts,
        reason: &str,
        message: &str,
    ) -> Result<(), Error> {
        self.delete_active(pods, c).await?;
        let now = self.now_str();
        set_condition(
            &mut self.conds,
            "SuccessCriteriaMet",
            "True",
            reason,
            message,
            &now,
        );
        if c.active + c.terminating == 0
            && set_condition(&mut self.conds, "Complete", "True", reason, message, &now)
        {
            self.status["completionTime"] = json!(now);
            self.event("Normal", "Completed", "Job completed").await;
        }
        Ok(())
    }

    async fn keep_running(&mut self, pods: &[Pod], c: &mut Counts) -> Result<(), Error> {
        if let (Some(deadline), Some(start)) = (self.spec.active_deadline, self.start_time()) {
            let left = deadline - self.now.duration_since(start).as_secs();
            self.wake_in(Duration::from_secs(left.max(1) as u64));
        }
        let want = wanted_active(self.spec, c);
        if c.active > want {
            let mut surplus: Vec<&Pod> = pods.iter().filter(|p| pods::is_active(p)).collect();
            surplus.sort_by_key(|p| pods::deletion_rank(p));
            surplus.truncate((c.active - want) as usize);
            return self.delete_pods(&surplus, c).await;
        }
        // With podReplacementPolicy Failed, a terminating pod still holds its place.
        let busy = c.active
            + if self.spec.replace_only_failed {
                c.terminating
            } else {
                0
            };
        if busy >= want {
            return Ok(());
        }
        let per_index = self.spec.indexed && self.spec.backoff_limit_per_index.is_some();
        if !per_index && let Some(wait) = backoff_remaining(c, self.now) {
            self.wake_in(wait);
            return Ok(());
        }
        let n = (want - busy).min(BURST);
        let indexes: Vec<Option<i64>> = if per_index {
            // Each index backs off on its own failures only.
            let mut ready = Vec::new();
            for i in pending_indexes(self.spec, c, i64::MAX) {
                match index_backoff_remaining(c, i, self.now) {
                    Some(wait) => self.wake_in(wait),
                    None if (ready.len() as i64) < n => ready.push(Some(i)),
                    None => {}
                }
            }
            ready
        } else if self.spec.indexed {
            pending_indexes(self.spec, c, n)
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None; n as usize]
        };
        self.create_pods(&indexes, c).await
    }

    async fn create_pods(&mut self, indexes: &[Option<i64>], c: &mut Counts) -> Result<(), Error> {
        for index in indexes {
            let failures = index
                .filter(|_| self.spec.backoff_limit_per_index.is_some())
                .map(|i| {
                    let counted = c.index_failures.get(&i).map_or(0, |f| f.0);
                    (counted, c.index_ignored.get(&i).copied().unwrap_or(0))
                });
            let pod: Pod = serde_json::from_value(new_pod(self.job, *index, failures))
                .map_err(kube::Error::SerdeError)?;
            let created = self.api.create(&PostParams::default(), &pod).await?;
            c.active += 1;
            let msg = format!("Created pod: {}", created.name_any());
            self.event("Normal", "SuccessfulCreate", &msg).await;
        }
        Ok(())
    }

    async fn delete_active(&mut self, pods: &[Pod], c: &mut Counts) -> Result<(), Error> {
        let active: Vec<&Pod> = pods.iter().filter(|p| pods::is_active(p)).collect();
        self.delete_pods(&active, c).await
    }

    async fn delete_pods(&mut self, victims: &[&Pod], c: &mut Counts) -> Result<(), Error> {
        for p in victims {
            let name = p.name_any();
            match self.api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            c.active -= 1;
            c.ready -= i64::from(is_ready(p));
            c.terminating += 1;
            let msg = format!("Deleted pod: {name}");
            self.event("Normal", "SuccessfulDelete", &msg).await;
        }
        Ok(())
    }

    async fn write_status(&mut self, c: &Counts) -> Result<(), Error> {
        let mut next = self.status.clone();
        let set = |next: &mut Value, k: &str, v: i64| {
            // Upstream leaves zero counts out (omitempty), except where it wrote them before.
            next[k] = if v == 0 && next.get(k).is_none() {
                Value::Null
            } else {
                json!(v)
            };
        };
        set(&mut next, "active", c.active);
        set(&mut next, "succeeded", c.succeeded);
        set(&mut next, "failed", c.failed);
        next["ready"] = json!(c.ready.max(0));
        next["terminating"] = json!(c.terminating);
        next["uncountedTerminatedPods"] = json!({});
        if self.spec.indexed && !c.completed_indexes.is_empty() {
            next["completedIndexes"] = json!(format_indexes(&c.completed_indexes));
        }
        if self.spec.indexed && self.spec.backoff_limit_per_index.is_some() {
            // Upstream always reports it for such Jobs, empty when none failed.
            next["failedIndexes"] = json!(format_indexes(&c.failed_indexes));
        }
        next["conditions"] = if self.conds.is_empty() {
            Value::Null
        } else {
            json!(self.conds)
        };
        let next = drop_nulls(next);
        if next == drop_nulls(status_of(self.job)) {
            return Ok(());
        }
        let api: Api<Job> = Api::namespaced(
            self.ctx.client.clone(),
            &self.job.namespace().unwrap_or_default(),
        );
        // Replacing the whole status object keeps the patch independent of what was there.
        let mut patch = json!({"status": next});
        patch["metadata"] = json!({"resourceVersion": self.job.resource_version()});
        match api
            .patch_status(
                &self.job.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Someone changed the Job meanwhile: the watch brings us back with the new one.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Removes null members of an object (merge-patch deletions) for comparison and sending.
fn drop_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(parallelism: i64, completions: Option<i64>, indexed: bool) -> Spec {
        Spec {
            parallelism,
            completions,
            indexed,
            backoff_limit: 6,
            active_deadline: None,
            suspend: false,
            ttl_after_finished: None,
            pod_failure_policy: None,
            success_policy: None,
            backoff_limit_per_index: None,
            max_failed_indexes: None,
            replace_only_failed: false,
        }
    }

    fn pod(phase: &str, index: Option<i64>) -> Pod {
        let mut v = json!({"metadata": {"name": "p"}, "status": {"phase": phase}});
        if let Some(i) = index {
            v["metadata"]["annotations"] = json!({COMPLETION_INDEX: i.to_string()});
        }
        serde_json::from_value(v).unwrap()
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn wanted_active_arithmetic() {
        // (parallelism, completions, succeeded, want)
        let cases = [
            (2, Some(3), 0, 2),
            (2, Some(3), 2, 1),
            (2, Some(3), 3, 0),
            (5, Some(3), 1, 2),
            (0, Some(3), 0, 0),
            (3, None, 0, 3),
            (3, None, 1, 0),
        ];
        for (p, n, succeeded, want) in cases {
            let c = Counts {
                succeeded,
                ..Counts::default()
            };
            assert_eq!(
                wanted_active(&spec(p, n, false), &c),
                want,
                "{p} {n:?} {succeeded}"
            );
        }
        let mut suspended = spec(2, Some(3), false);
        suspended.suspend = true;
        assert_eq!(wanted_active(&suspended, &Counts::default()), 0);
    }

    #[test]
    fn counts_pods_by_phase_and_index() {
        let s = spec(2, Some(3), false);
        let pods = [
            pod("Succeeded", None),
            pod("Running", None),
            pod("Failed", None),
        ];
        let c = count_pods(&pods, &s);
        assert_eq!((c.active, c.succeeded, c.failed), (1, 1, 1));

        // Indexed: one success per index in range counts once.
        let s = spec(2, Some(3), true);
        let pods = [
            pod("Succeeded", Some(0)),
            pod("Succeeded", Some(0)),
            pod("Succeeded", Some(7)),
            pod("Running", Some(2)),
        ];
        let c = count_pods(&pods, &s);
        assert_eq!(c.succeeded, 1);
        assert_eq!(c.active, 1);
        assert_eq!(pending_indexes(&s, &c, 5), vec![1]);
    }

    fn completions_reached() -> Outcome {
        Outcome::Succeeded(
            "CompletionsReached",
            "Reached expected number of succeeded pods".into(),
        )
    }

    /// A failed pod with one terminated container and the given conditions.
    fn failed_pod(name: &str, index: Option<i64>, container: &str, code: i32, conds: Value) -> Pod {
        let mut v = json!({"metadata": {"name": name, "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conds, "containerStatuses": [{
                "name": container, "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": code}}}]}});
        if let Some(i) = index {
            v["metadata"]["annotations"] = json!({COMPLETION_INDEX: i.to_string()});
        }
        serde_json::from_value(v).unwrap()
    }

    fn policy(rules: Value) -> PodFailurePolicy {
        serde_json::from_value(json!({"rules": rules})).unwrap()
    }

    #[test]
    fn pod_failure_policy_rules_match_in_order() {
        let p = policy(json!([
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}},
        ]));
        let fail = failed_pod("a", None, "main", 42, json!([]));
        assert_eq!(
            match_pod_failure_policy(&p, &fail),
            Some((
                FailureAction::FailJob,
                Some("Container main for pod ns/a failed with exit code 42 matching FailJob rule at index 0".into())
            ))
        );
        // containerName must match.
        let side = failed_pod("b", None, "side", 42, json!([]));
        assert_eq!(
            match_pod_failure_policy(&p, &side),
            Some((FailureAction::Count, None))
        );
        let disrupted = failed_pod(
            "c",
            None,
            "main",
            137,
            json!([{"type": "DisruptionTarget", "status": "True"}]),
        );
        assert_eq!(
            match_pod_failure_policy(&p, &disrupted),
            Some((FailureAction::Ignore, None))
        );
        let not_disrupted = failed_pod(
            "c",
            None,
            "main",
            1,
            json!([{"type": "DisruptionTarget", "status": "False"}]),
        );
        assert_eq!(
            match_pod_failure_policy(&p, &not_disrupted),
            Some((FailureAction::FailIndex, None))
        );
        assert_eq!(
            match_pod_failure_policy(&p, &failed_pod("d", None, "main", 2, json!([]))),
            None
        );
        // Exit code 0 never matches, even NotIn.
        let zero = policy(
            json!([{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}}]),
        );
        assert_eq!(
            match_pod_failure_policy(&zero, &failed_pod("e", None, "main", 0, json!([]))),
            None
        );
        let cond = policy(
            json!([{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]),
        );
        assert_eq!(
            match_pod_failure_policy(&cond, &disrupted).and_then(|m| m.1),
            Some("Pod ns/c has condition DisruptionTarget matching FailJob rule at index 0".into())
        );
    }

    #[test]
    fn pod_failure_policy_decides_counts_and_outcome() {
        let now = ts("2024-01-01T00:10:00Z");
        let mut s = spec(1, Some(1), false);
        s.backoff_limit = 0;
        s.pod_failure_policy = Some(policy(json!([
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
        ])));
        // Ignored failures do not count against backoffLimit 0.
        let ignored = [failed_pod("a", None, "c", 3, json!([]))];
        let c = count_pods(&ignored, &s);
        assert_eq!((c.failed, c.ignored), (0, 1));
        assert_eq!(outcome(&s, &c, None, now), Outcome::Running);
        assert_eq!(wanted_active(&s, &c), 1);
        let fatal = [failed_pod("b", None, "c", 42, json!([]))];
        let c = count_pods(&fatal, &s);
        assert_eq!(
            outcome(&s, &c, None, now),
            Outcome::Failed(
                "PodFailurePolicy",
                "Container c for pod ns/b failed with exit code 42 matching FailJob rule at index 1".into()
            )
        );
        let counted = [failed_pod("c", None, "c", 5, json!([]))];
        let c = count_pods(&counted, &s);
        assert!(matches!(
            outcome(&s, &c, None, now),
            Outcome::Failed("BackoffLimitExceeded", _)
        ));
    }

    #[test]
    fn backoff_limit_per_index_and_max_failed_indexes() {
        let now = ts("2024-01-01T00:10:00Z");
        let mut s = spec(3, Some(3), true);
        s.backoff_limit = i64::from(i32::MAX);
        s.backoff_limit_per_index = Some(1);
        s.pod_failure_policy = Some(policy(json!([
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [7]}},
        ])));
        // One failure of index 0 is within its limit; the index is retried.
        let one = [failed_pod("a", Some(0), "c", 1, json!([]))];
        let c = count_pods(&one, &s);
        assert!(c.failed_indexes.is_empty());
        assert_eq!(pending_indexes(&s, &c, 5), vec![0, 1, 2]);
        assert_eq!(
            index_backoff_remaining(&c, 0, now),
            None,
            "no finish time: no wait"
        );
        // A second failure fails index 0 for good; FailIndex fails index 1 at once.
        let two = [
            failed_pod("a", Some(0), "c", 1, json!([])),
            failed_pod("b", Some(0), "c", 1, json!([])),
            failed_pod("c", Some(1), "c", 7, json!([])),
            pod("Succeeded", Some(2)),
        ];
        let c = count_pods(&two, &s);
        assert_eq!(c.failed_indexes, BTreeSet::from([0, 1]));
        assert_eq!(pending_indexes(&s, &c, 5), Vec::<i64>::new());
        assert_eq!(
            outcome(&s, &c, None, now),
            Outcome::Failed("FailedIndexes", "Job has failed indexes".into())
        );
        s.max_failed_indexes = Some(1);
        assert_eq!(
            outcome(&s, &c, None, now),
            Outcome::Failed(
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes".into()
            )
        );
        // Pods carry their index's failure count.
        let job: Job = serde_json::from_value(json!({"metadata": {"name": "j"},
            "spec": {"template": {"spec": {"containers": []}}}}))
        .unwrap();
        let p = new_pod(&job, Some(0), Some((1, 2)));
        assert_eq!(p["metadata"]["annotations"][INDEX_FAILURE_COUNT], "1");
        assert_eq!(
            p["metadata"]["annotations"][INDEX_IGNORED_FAILURE_COUNT],
            "2"
        );
    }

    #[test]
    fn success_policy_rules() {
        let sp = |rules: Value| -> SuccessPolicy {
            serde_json::from_value(json!({"rules": rules})).unwrap()
        };
        let done = |v: &[i64]| v.iter().copied().collect::<BTreeSet<i64>>();
        let by_indexes = sp(json!([{"succeededIndexes": "0,2-3"}]));
        assert_eq!(match_success_policy(&by_indexes, 5, &done(&[0, 2])), None);
        assert_eq!(
            match_success_policy(&by_indexes, 5, &done(&[0, 2, 3])),
            Some("Matched rules at index 0".into())
        );
        let both = sp(
            json!([{"succeededIndexes": "9"}, {"succeededIndexes": "0-3", "succeededCount": 2}]),
        );
        assert_eq!(match_success_policy(&both, 5, &done(&[1, 4])), None);
        assert_eq!(
            match_success_policy(&both, 5, &done(&[1, 3])),
            Some("Matched rules at index 1".into())
        );
        let count = sp(json!([{"succeededCount": 2}]));
        assert_eq!(
            match_success_policy(&count, 5, &done(&[4, 0])),
            Some("Matched rules at index 0".into())
        );
        let mut s = spec(5, Some(5), true);
        s.success_policy = Some(count);
        let c = count_pods(&[pod("Succeeded", Some(1)), pod("Succeeded", Some(2))], &s);
        assert_eq!(
            outcome(&s, &c, None, ts("2024-01-01T00:00:00Z")),
            Outcome::Succeeded("SuccessPolicy", "Matched rules at index 0".into())
        );
    }

    #[test]
    fn outcomes() {
        let now = ts("2024-01-01T00:10:00Z");
        let mut s = spec(1, Some(2), false);
        s.backoff_limit = 1;
        let counts = |succeeded, failed| Counts {
            succeeded,
            failed,
            ..Counts::default()
        };
        assert_eq!(outcome(&s, &counts(1, 1), None, now), Outcome::Running);
        assert_eq!(outcome(&s, &counts(2, 0), None, now), completions_reached());
        assert_eq!(
            outcome(&s, &counts(0, 2), None, now),
            Outcome::Failed(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".into()
            )
        );
        s.active_deadline = Some(60);
        let start = Some(ts("2024-01-01T00:00:00Z"));
        assert_eq!(
            outcome(&s, &counts(0, 0), start, now),
            Outcome::Failed(
                "DeadlineExceeded",
                "Job was active longer than specified deadline".into()
            )
        );
        // Without completions, one success is enough once the other pods stopped.
        let s = spec(3, None, false);
        assert_eq!(outcome(&s, &counts(1, 0), None, now), completions_reached());
        let running = Counts {
            active: 2,
            ..counts(1, 0)
        };
        assert_eq!(outcome(&s, &running, None, now), Outcome::Running);
        assert_eq!(wanted_active(&s, &running), 2);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let now = ts("2024-01-01T01:00:00Z");
        let at = |failed, secs_ago: i64| Counts {
            failed,
            last_failure: Some(now - jiff::SignedDuration::from_secs(secs_ago)),
            ..Counts::default()
        };
        assert_eq!(
            backoff_remaining(&at(1, 4), now),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            backoff_remaining(&at(2, 4), now),
            Some(Duration::from_secs(16))
        );
        assert_eq!(backoff_remaining(&at(1, 10), now), None);
        assert_eq!(backoff_remaining(&at(30, 0), now), Some(BACKOFF_MAX));
        assert_eq!(backoff_remaining(&Counts::default(), now), None);
    }

    #[test]
    fn completed_indexes_round_trip() {
        for (text, set) in [
            ("", vec![]),
            ("0", vec![0]),
            ("0-2", vec![0, 1, 2]),
            ("0,2-4,7", vec![0, 2, 3, 4, 7]),
        ] {
            let set: BTreeSet<i64> = set.into_iter().collect();
            assert_eq!(format_indexes(&set), text);
            assert_eq!(parse_indexes(text), set);
        }
        assert_eq!(parse_indexes("x,1-,3"), BTreeSet::from([3]));
    }

    #[test]
    fn conditions_keep_transition_time() {
        let mut conds = Vec::new();
        assert!(set_condition(
            &mut conds, "Complete", "True", "R", "M", "t1"
        ));
        assert!(!set_condition(
            &mut conds, "Complete", "True", "R", "M", "t2"
        ));
        assert_eq!(conds[0]["lastTransitionTime"], "t1");
        assert!(condition_true(&conds, "Complete"));
        assert!(set_condition(
            &mut conds, "Complete", "False", "R", "M", "t3"
        ));
        assert!(!condition_true(&conds, "Complete"));
    }

    #[test]
    fn indexed_pod_from_template() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u1"},
            "spec": {"completionMode": "Indexed", "template": {
                "metadata": {"labels": {"job-name": "pi"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .unwrap();
        let pod = new_pod(&job, Some(2), None);
        assert_eq!(pod["metadata"]["generateName"], "pi-2-");
        assert_eq!(pod["metadata"]["labels"][COMPLETION_INDEX], "2");
        assert_eq!(pod["metadata"]["labels"]["job-name"], "pi");
        assert_eq!(pod["metadata"]["annotations"][COMPLETION_INDEX], "2");
        assert_eq!(pod["spec"]["hostname"], "pi-2");
        assert_eq!(
            pod["spec"]["containers"][0]["env"][0]["name"],
            "JOB_COMPLETION_INDEX"
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Job");
        let plain = new_pod(&job, None, None);
        assert_eq!(plain["metadata"]["generateName"], "pi-");
        assert!(plain["spec"].get("hostname").is_none());
    }
}
