//! Controller behaviours beyond the basics, end to end with the real kubectl: DaemonSet
//! `maxSurge`, StatefulSet `maxUnavailable` and claim retention, Job pod failure and success
//! policies and per-index backoff, event correlation, and pod garbage collection.
//!
//! Failures are staged where simulated nodes cannot produce them: Job pods are pinned to a
//! node that does not exist (`nodeName: ghost`) so that nothing runs them, and the test
//! writes their terminal status itself through the `status` subresource.

mod support;

use std::time::{Duration, Instant};

use support::{Agent, Server, eventually};

/// `kubectl get <what> -o jsonpath=<template>`, "" on failure.
fn jp(s: &Server, what: &[&str], template: &str) -> String {
    s.jsonpath_or_empty(what, template)
}

/// Pod names matching a label selector.
fn pod_names(s: &Server, selector: &str) -> Vec<String> {
    jp(
        s,
        &["pods", "-l", selector],
        "{range .items[*]}{.metadata.name}{\"\\n\"}{end}",
    )
    .lines()
    .map(String::from)
    .collect()
}

/// Marks a pod terminated with `phase` and a `main` container that exited with `code`.
fn finish_pod(s: &Server, pod: &str, phase: &str, code: i32) {
    let patch = format!(
        r#"{{"status":{{"phase":"{phase}","containerStatuses":[{{"name":"main","image":"busybox","imageID":"","ready":false,"restartCount":0,"state":{{"terminated":{{"exitCode":{code},"reason":"Error"}}}}}}]}}}}"#
    );
    s.ok(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

const SURGE_DAEMONSET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: surge
spec:
  minReadySeconds: 3
  selector:
    matchLabels:
      app: surge
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: surge
    spec:
      containers:
      - name: main
        image: nginx
";

#[test]
fn daemonset_max_surge_starts_the_new_pod_before_deleting_the_old() {
    let s = Server::start();
    let _agent = Agent::start(&s, 2);
    s.apply(SURGE_DAEMONSET);
    s.ok(&["rollout", "status", "daemonset/surge", "--timeout=60s"]);
    s.ok(&["set", "image", "daemonset/surge", "main=nginx:1.25"]);
    // Throughout the update every node keeps an available daemon, and at some point a node
    // runs both the old and the new pod.
    let mut saw_both = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let available = jp(&s, &["daemonset", "surge"], "{.status.numberAvailable}");
        assert!(
            available == "2" || available.is_empty(),
            "availability dropped during a surge update: {available}\n{}",
            s.ok(&["get", "pods", "-o", "wide"])
        );
        let per_node = jp(
            &s,
            &["pods", "-l", "app=surge"],
            "{range .items[*]}{.spec.nodeName} {.spec.containers[0].image}{\"\\n\"}{end}",
        );
        for node in ["sim-0", "sim-1"] {
            let images: Vec<&str> = per_node
                .lines()
                .filter(|l| l.starts_with(&format!("{node} ")))
                .collect();
            if images.iter().any(|l| l.ends_with(" nginx"))
                && images.iter().any(|l| l.ends_with(" nginx:1.25"))
            {
                saw_both = true;
            }
        }
        let done = jp(
            &s,
            &["daemonset", "surge"],
            "{.status.updatedNumberScheduled}/{.status.numberAvailable}",
        ) == "2/2"
            && per_node.lines().count() == 2
            && per_node.lines().all(|l| l.ends_with(" nginx:1.25"));
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "surge update did not finish:\n{per_node}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        saw_both,
        "no node ever ran the old and the new pod together"
    );
    let status = s.ok(&["rollout", "status", "daemonset/surge", "--timeout=30s"]);
    assert!(status.ends_with("successfully rolled out\n"), "{status}");
}

const PARALLEL_SET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 4
  podManagementPolicy: Parallel
  minReadySeconds: 4
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      partition: 1
      maxUnavailable: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: main
        image: nginx
";

/// Seconds since the epoch of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SSZ`.
fn epoch_seconds(t: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// The creation time (seconds since the epoch) of a pod.
fn created_at(s: &Server, pod: &str) -> i64 {
    let t = jp(s, &["pod", pod], "{.metadata.creationTimestamp}");
    epoch_seconds(&t).unwrap_or_else(|| panic!("pod {pod} creation time {t:?}"))
}

/// A server with two simulated nodes running the StatefulSet `name` of `manifest`, once its
/// `status.<field>` reads `want`.
fn running_set(manifest: &str, name: &str, field: &str, want: &str) -> (Server, Agent) {
    let s = Server::start();
    let agent = Agent::start(&s, 2);
    s.apply(manifest);
    let template = format!("{{.status.{field}}}");
    assert!(
        eventually(Duration::from_secs(60), || jp(
            &s,
            &["statefulset", name],
            &template
        ) == want),
        "statefulset {name} never had {field} {want}:\n{}",
        s.ok(&["get", "pods,pvc", "-o", "wide"])
    );
    (s, agent)
}

#[test]
fn statefulset_max_unavailable_replaces_pods_in_pairs_above_the_partition() {
    let (s, _agent) = running_set(PARALLEL_SET, "web", "availableReplicas", "4");
    s.ok(&["set", "image", "statefulset/web", "main=nginx:1.25"]);
    let update = || jp(&s, &["statefulset", "web"], "{.status.updateRevision}");
    assert!(
        eventually(Duration::from_secs(90), || {
            let rev = update();
            let labels = jp(
                &s,
                &["pods", "-l", "app=web"],
                "{range .items[*]}{.metadata.name}={.metadata.labels.controller-revision-hash}{\"\\n\"}{end}",
            );
            ["web-1", "web-2", "web-3"]
                .iter()
                .all(|p| labels.contains(&format!("{p}={rev}\n")))
                && jp(&s, &["statefulset", "web"], "{.status.availableReplicas}") == "4"
        }),
        "{}",
        s.ok(&["get", "pods", "--show-labels"])
    );
    // web-3 and web-2 went together; web-1 only once they were available (4 s later).
    let (t3, t2, t1) = (
        created_at(&s, "web-3"),
        created_at(&s, "web-2"),
        created_at(&s, "web-1"),
    );
    assert_eq!(epoch_seconds("1970-01-02T00:00:01Z"), Some(86_401));
    assert!(
        (t3 - t2).abs() <= 1,
        "web-3 {t3} and web-2 {t2} were not replaced together"
    );
    assert!(
        t1 - t2 >= 3,
        "web-1 {t1} was replaced before web-2 {t2} was available"
    );
    // The partition keeps web-0 at the old revision.
    let rev0 = jp(
        &s,
        &["pod", "web-0"],
        "{.metadata.labels.controller-revision-hash}",
    );
    assert_ne!(rev0, update());
}

const CLAIMED_SET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 3
  podManagementPolicy: Parallel
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Retain
    whenScaled: Delete
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: main
        image: nginx
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
";

fn claim_owners(s: &Server, claim: &str) -> String {
    jp(
        s,
        &["pvc", claim],
        "{range .metadata.ownerReferences[*]}{.kind}/{.name} {end}",
    )
}

#[test]
fn statefulset_claim_retention_policy_sets_claim_owners() {
    let (s, _agent) = running_set(CLAIMED_SET, "db", "readyReplicas", "3");
    // whenDeleted Retain: the set does not own its claims.
    assert_eq!(claim_owners(&s, "data-db-0"), "");
    // whenScaled Delete: claims of removed pods go with them.
    s.ok(&["scale", "statefulset/db", "--replicas=1"]);
    assert!(
        eventually(Duration::from_secs(60), || {
            let claims = s.ok(&["get", "pvc", "-o", "name"]);
            claims.trim() == "persistentvolumeclaim/data-db-0"
        }),
        "{}",
        s.ok(&["get", "pods,pvc"])
    );
    assert_eq!(claim_owners(&s, "data-db-0"), "");
    // whenDeleted Delete: the set becomes the owner of the claims it keeps, and deleting
    // it deletes them.
    s.ok(&[
        "patch",
        "statefulset",
        "db",
        "--type=merge",
        "-p",
        r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Delete"}}}"#,
    ]);
    assert!(
        eventually(Duration::from_secs(30), || claim_owners(&s, "data-db-0")
            == "StatefulSet/db "),
        "{}",
        claim_owners(&s, "data-db-0")
    );
    s.ok(&["delete", "statefulset", "db"]);
    assert!(
        eventually(Duration::from_secs(60), || s
            .ok(&["get", "pvc", "-o", "name"])
            .trim()
            .is_empty()),
        "{}",
        s.ok(&["get", "pvc"])
    );
}

/// `type=status reason` of every condition of a Job.
fn job_conditions(s: &Server, job: &str) -> String {
    jp(
        s,
        &["job", job],
        "{range .status.conditions[*]}{.type}={.status} {.reason}|{end}",
    )
}

fn job_condition_message(s: &Server, job: &str, type_: &str) -> String {
    jp(
        s,
        &["job", job],
        &format!("{{.status.conditions[?(@.type==\"{type_}\")].message}}"),
    )
}

const FAILURE_POLICY_JOB: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: pfp
spec:
  backoffLimit: 0
  podFailurePolicy:
    rules:
    - action: Ignore
      onExitCodes:
        operator: In
        values: [3]
    - action: FailJob
      onExitCodes:
        containerName: main
        operator: In
        values: [42]
  template:
    spec:
      nodeName: ghost
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
";

#[test]
fn job_pod_failure_policy_ignores_and_fails_the_job() {
    let s = Server::start();
    s.apply(FAILURE_POLICY_JOB);
    assert!(eventually(Duration::from_secs(20), || pod_names(
        &s,
        "job-name=pfp"
    )
    .len()
        == 1));
    let first = pod_names(&s, "job-name=pfp").remove(0);
    // Exit code 3 is ignored: not counted against backoffLimit 0, and replaced.
    finish_pod(&s, &first, "Failed", 3);
    assert!(
        eventually(Duration::from_secs(20), || pod_names(&s, "job-name=pfp")
            .len()
            == 2),
        "{}",
        s.ok(&["get", "pods"])
    );
    assert_eq!(jp(&s, &["job", "pfp"], "{.status.failed}"), "");
    assert!(!job_conditions(&s, "pfp").contains("Failed=True"));
    // Exit code 42 of container main fails the Job at once.
    let second = pod_names(&s, "job-name=pfp")
        .into_iter()
        .find(|p| *p != first)
        .unwrap();
    finish_pod(&s, &second, "Failed", 42);
    assert!(
        eventually(Duration::from_secs(20), || job_conditions(&s, "pfp")
            .contains("Failed=True PodFailurePolicy|")),
        "{}",
        job_conditions(&s, "pfp")
    );
    let conditions = job_conditions(&s, "pfp");
    assert!(
        conditions.contains("FailureTarget=True PodFailurePolicy|"),
        "{conditions}"
    );
    assert_eq!(
        job_condition_message(&s, "pfp", "Failed"),
        format!(
            "Container main for pod default/{second} failed with exit code 42 matching FailJob rule at index 1"
        )
    );
    assert_eq!(jp(&s, &["job", "pfp"], "{.status.failed}"), "1");
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=pfp",
    ]);
    assert!(events.contains("PodFailurePolicy"), "{events}");
}

const PER_INDEX_JOB: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: per-index
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 3
  backoffLimit: 100
  backoffLimitPerIndex: 0
  template:
    spec:
      nodeName: ghost
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
";

fn index_pod(s: &Server, job: &str, index: i32) -> Option<String> {
    pod_names(
        s,
        &format!("job-name={job},batch.kubernetes.io/job-completion-index={index}"),
    )
    .into_iter()
    .find(|p| {
        jp(s, &["pod", p], "{.status.phase}") != "Failed"
            && jp(s, &["pod", p], "{.status.phase}") != "Succeeded"
    })
}

#[test]
fn job_backoff_limit_per_index_fails_indexes() {
    let s = Server::start();
    s.apply(PER_INDEX_JOB);
    assert!(eventually(Duration::from_secs(20), || pod_names(
        &s,
        "job-name=per-index"
    )
    .len()
        == 3));
    let p0 = index_pod(&s, "per-index", 0).unwrap();
    assert_eq!(
        jp(
            &s,
            &["pod", &p0],
            "{.metadata.annotations.batch\\.kubernetes\\.io/job-index-failure-count}"
        ),
        "0"
    );
    finish_pod(&s, &p0, "Failed", 1);
    assert!(
        eventually(Duration::from_secs(20), || jp(
            &s,
            &["job", "per-index"],
            "{.status.failedIndexes}"
        ) == "0"),
        "{}",
        jp(&s, &["job", "per-index"], "{.status}")
    );
    // A failed index is not retried.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pod_names(&s, "job-name=per-index").len(), 3);
    for i in [1, 2] {
        let p = index_pod(&s, "per-index", i).unwrap();
        finish_pod(&s, &p, "Succeeded", 0);
    }
    assert!(
        eventually(Duration::from_secs(20), || job_conditions(&s, "per-index")
            .contains("Failed=True FailedIndexes|")),
        "{}",
        job_conditions(&s, "per-index")
    );
    assert_eq!(
        job_condition_message(&s, "per-index", "Failed"),
        "Job has failed indexes"
    );
    assert_eq!(
        jp(
            &s,
            &["job", "per-index"],
            "{.status.completedIndexes}/{.status.failedIndexes}"
        ),
        "1-2/0"
    );
}

const SUCCESS_POLICY_JOB: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: leader
spec:
  completionMode: Indexed
  completions: 5
  parallelism: 1
  successPolicy:
    rules:
    - succeededCount: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
";

#[test]
fn job_success_policy_completes_early() {
    let s = Server::start();
    let _agent = Agent::start(&s, 1);
    s.apply(SUCCESS_POLICY_JOB);
    assert!(
        eventually(Duration::from_secs(60), || job_conditions(&s, "leader")
            .contains("Complete=True SuccessPolicy|")),
        "{}\n{}",
        job_conditions(&s, "leader"),
        s.ok(&["get", "pods"])
    );
    let conditions = job_conditions(&s, "leader");
    assert!(
        conditions.starts_with("SuccessCriteriaMet=True SuccessPolicy|"),
        "{conditions}"
    );
    assert_eq!(
        job_condition_message(&s, "leader", "SuccessCriteriaMet"),
        "Matched rules at index 0"
    );
    assert_eq!(
        jp(
            &s,
            &["job", "leader"],
            "{.status.succeeded} {.status.completedIndexes}"
        ),
        "2 0-1"
    );
}

#[test]
fn events_are_counted_and_combined() {
    let s = Server::start();
    // Twelve pods created by one ReplicaSet: twelve SuccessfulCreate events with different
    // messages, of which the tenth and later are combined into one.
    s.apply(
        "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: many
spec:
  replicas: 12
  selector:
    matchLabels:
      app: many
  template:
    metadata:
      labels:
        app: many
    spec:
      containers:
      - name: main
        image: nginx
",
    );
    let combined = || {
        jp(
            &s,
            &["events", "--field-selector", "involvedObject.name=many"],
            "{range .items[*]}{.count} {.message}{\"\\n\"}{end}",
        )
    };
    assert!(
        eventually(Duration::from_secs(30), || combined()
            .lines()
            .any(|l| l.starts_with(
                "3 (combined from similar events): Created pod: many-"
            ))),
        "{}",
        combined()
    );
    assert_eq!(
        combined()
            .lines()
            .filter(|l| l.starts_with("1 Created pod: many-"))
            .count(),
        9,
        "{}",
        combined()
    );

    // The same event again patches the first: a Deployment scaled up, down and up again
    // says "Scaled up replica set … from 1 to 2" twice.
    s.ok(&["create", "deployment", "web", "--image=nginx"]);
    for n in ["2", "1", "2"] {
        s.ok(&["scale", "deployment/web", &format!("--replicas={n}")]);
        assert!(eventually(Duration::from_secs(20), || {
            let rs = jp(&s, &["rs", "-l", "app=web"], "{.items[0].metadata.name}");
            !rs.is_empty() && jp(&s, &["rs", &rs], "{.spec.replicas}") == n
        }));
    }
    let scaled = || {
        jp(
            &s,
            &[
                "events",
                "--field-selector",
                "involvedObject.name=web,reason=ScalingReplicaSet",
            ],
            "{range .items[*]}{.count} {.message}{\"\\n\"}{end}",
        )
    };
    assert!(
        eventually(Duration::from_secs(20), || scaled().lines().any(|l| l
            .starts_with("2 Scaled up replica set web-")
            && l.ends_with(" from 1 to 2"))),
        "{}",
        scaled()
    );
}

#[test]
fn pod_gc_removes_orphans_after_quarantine_and_terminated_pods_beyond_the_threshold() {
    let s = Server::start_with(&["--terminated-pod-gc-threshold", "2"]);
    let _agent = Agent::start(&s, 1);
    let started = Instant::now();
    s.ok(&[
        "run",
        "orphan",
        "--image=nginx",
        "--overrides",
        r#"{"spec":{"nodeName":"ghost"}}"#,
    ]);
    for name in ["done-1", "done-2", "done-3", "done-4"] {
        s.ok(&["run", name, "--image=busybox", "--restart=Never"]);
        // Distinct creation seconds, so that "oldest" is well defined.
        std::thread::sleep(Duration::from_millis(1100));
    }
    // The two oldest terminated pods go; the two newest stay.
    assert!(
        eventually(Duration::from_secs(30), || {
            let names = s.ok(&["get", "pods", "-o", "name"]);
            !names.contains("pod/done-1") && !names.contains("pod/done-2")
        }),
        "{}",
        s.ok(&["get", "pods"])
    );
    assert!(
        eventually(Duration::from_secs(10), || s
            .ok(&["get", "pods", "-o", "name"])
            .contains("pod/done-4")),
        "{}",
        s.ok(&["get", "pods"])
    );
    let names = s.ok(&["get", "pods", "-o", "name"]);
    assert!(
        names.contains("pod/done-3") && names.contains("pod/done-4"),
        "{names}"
    );
    // The orphan is quarantined for 40 s, then deleted.
    if started.elapsed() < Duration::from_secs(35) {
        assert!(
            s.ok(&["get", "pods", "-o", "name"]).contains("pod/orphan"),
            "orphan deleted before its quarantine ended"
        );
    }
    assert!(
        eventually(Duration::from_secs(60), || !s
            .ok(&["get", "pods", "-o", "name"])
            .contains("pod/orphan")),
        "{}",
        s.ok(&["get", "pods"])
    );
    assert!(started.elapsed() >= Duration::from_secs(40));
}
