//! Job and CronJob controllers end to end, with simulated nodes (`rkube agent --simulate`)
//! on which a Job's pods succeed about a second after they are bound.

mod support;

use std::time::Duration;

use support::{Agent, Server, eventually};

const PARALLEL_JOB: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: three
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: busybox
        command: [echo, hi]
";

const INDEXED_JOB: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: indexed
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  ttlSecondsAfterFinished: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: busybox
";

const SUSPENDED_JOB: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: later
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: busybox
";

fn wait_complete(s: &Server, job: &str) {
    let out = s.run(
        &[
            "wait",
            "--for=condition=complete",
            &format!("job/{job}"),
            "--timeout=60s",
        ],
        None,
    );
    assert_eq!(
        out.code,
        0,
        "{job} did not complete: {}\n{}",
        out.stderr,
        s.ok(&["get", "jobs,pods", "-o", "wide"])
    );
}

#[test]
fn jobs_run_to_completion() {
    let s = Server::start();
    let _agent = Agent::start(&s, 2);

    // The seeds' style: a one-pod Job from the command line.
    s.ok(&["create", "job", "pi", "--image=busybox", "--", "echo", "hi"]);
    s.apply(PARALLEL_JOB);
    wait_complete(&s, "pi");
    wait_complete(&s, "three");

    let table = s.ok(&["get", "jobs"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("three "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("Complete") && row.contains("3/3"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("pi ") && l.contains("1/1")),
        "{table}"
    );

    let status = s.jsonpath(
        &["job", "three"],
        "{.status.succeeded}/{.status.active}/{.status.startTime}/{.status.completionTime}",
    );
    let parts: Vec<&str> = status.split('/').collect();
    assert_eq!(parts[0], "3", "{status}");
    assert!(parts[1].is_empty() || parts[1] == "0", "{status}");
    assert!(!parts[2].is_empty() && !parts[3].is_empty(), "{status}");
    let conds = s.jsonpath(&["job", "three"], "{.status.conditions[*].type}");
    assert_eq!(conds, "SuccessCriteriaMet Complete");

    // Pods are named after the Job, stay after finishing, and are owned by it.
    let pods = s.ok(&["get", "pods", "-l", "job-name=three", "-o", "name"]);
    assert_eq!(pods.lines().count(), 3, "{pods}");
    assert!(pods.lines().all(|p| p.starts_with("pod/three-")), "{pods}");
    let owner = s.jsonpath(
        &["pods", "-l", "job-name=three"],
        "{.items[0].metadata.ownerReferences[0].kind}",
    );
    assert_eq!(owner, "Job");

    let describe = s.ok(&["describe", "job", "three"]);
    assert!(describe.contains("Created pod: three-"), "{describe}");
    assert!(describe.contains("Job completed"), "{describe}");
}

#[test]
fn indexed_job_completes_every_index_then_expires() {
    let s = Server::start();
    let _agent = Agent::start(&s, 2);
    s.apply(INDEXED_JOB);
    wait_complete(&s, "indexed");
    // The pods are gone with the Job once it is over: read them first.
    let hostnames = s.jsonpath(
        &["pods", "-l", "job-name=indexed"],
        "{.items[*].spec.hostname}",
    );
    let mut hosts: Vec<&str> = hostnames.split_whitespace().collect();
    hosts.sort();
    // A TTL of 2 s may already have removed the Job; then the pods go too.
    if !hosts.is_empty() {
        assert_eq!(
            hosts,
            ["indexed-0", "indexed-1", "indexed-2"],
            "{hostnames}"
        );
    }
    assert!(
        eventually(Duration::from_secs(30), || {
            s.run(&["get", "job", "indexed"], None).code != 0
        }),
        "ttlSecondsAfterFinished did not delete the Job"
    );
}

#[test]
fn indexed_job_reports_completed_indexes() {
    let s = Server::start();
    let _agent = Agent::start(&s, 2);
    s.apply(&INDEXED_JOB.replace("  ttlSecondsAfterFinished: 2\n", ""));
    wait_complete(&s, "indexed");
    let idx = s.jsonpath(&["job", "indexed"], "{.status.completedIndexes}");
    assert_eq!(idx, "0-2");
    let hostnames = s.jsonpath(
        &["pods", "-l", "job-name=indexed"],
        "{.items[*].spec.hostname}",
    );
    let mut hosts: Vec<&str> = hostnames.split_whitespace().collect();
    hosts.sort();
    assert_eq!(hosts, ["indexed-0", "indexed-1", "indexed-2"]);
    let label = s.jsonpath(
        &["pods", "-l", "batch.kubernetes.io/job-completion-index=1"],
        "{.items[0].metadata.annotations.batch\\.kubernetes\\.io/job-completion-index}",
    );
    assert_eq!(label, "1");
}

#[test]
fn suspended_job_waits_until_resumed() {
    let s = Server::start();
    let _agent = Agent::start(&s, 1);
    s.apply(SUSPENDED_JOB);
    assert!(eventually(Duration::from_secs(15), || {
        s.jsonpath(&["job", "later"], "{.status.conditions[0].type}") == "Suspended"
    }));
    assert_eq!(
        s.ok(&["get", "pods", "-l", "job-name=later", "-o", "name"]),
        ""
    );
    s.ok(&[
        "patch",
        "job",
        "later",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    wait_complete(&s, "later");
    let suspended = s.jsonpath(
        &["job", "later"],
        "{.status.conditions[?(@.type==\"Suspended\")].status}",
    );
    assert_eq!(suspended, "False");
}

const CRONJOB: &str = "apiVersion: batch/v1
kind: CronJob
metadata:
  name: NAME
spec:
  schedule: '0 0 1 1 *'
  timeZone: UTC
  DEADLINE
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: hello
            image: busybox
";

fn cronjob(name: &str, deadline: Option<u32>) -> String {
    let d = deadline.map_or(String::new(), |d| format!("startingDeadlineSeconds: {d}"));
    CRONJOB.replace("NAME", name).replace("DEADLINE", &d)
}

/// The current UTC year and the epoch second its 1 January began.
fn this_new_year() -> (i64, i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let (mut year, mut start) = (1970, 0);
    loop {
        let next = start + if leap(year) { 366 } else { 365 } * 86_400;
        if next > now {
            return (year, start);
        }
        (year, start) = (year + 1, next);
    }
}

/// Pretends the CronJob last ran long ago, so that a missed schedule is due now.
fn last_ran_in_2020(s: &Server, name: &str) {
    s.ok(&[
        "patch",
        "cronjob",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"lastScheduleTime":"2020-01-01T00:00:00Z"}}"#,
    ]);
}

#[test]
fn cronjob_runs_missed_schedule_and_manual_jobs() {
    let s = Server::start();
    let _agent = Agent::start(&s, 1);
    s.apply(&cronjob("yearly", None));
    s.apply(&cronjob("strict", Some(60)));
    let table = s.ok(&["get", "cronjobs"]);
    assert!(
        table.contains("0 0 1 1 *") && table.contains("UTC"),
        "{table}"
    );

    // A manual run from the template works as any Job.
    s.ok(&["create", "job", "by-hand", "--from=cronjob/yearly"]);
    wait_complete(&s, "by-hand");
    let manual = s.jsonpath(
        &["job", "by-hand"],
        "{.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate}",
    );
    assert_eq!(manual, "manual");

    // The most recent missed New Year runs, named by its minute since the epoch.
    last_ran_in_2020(&s, "yearly");
    last_ran_in_2020(&s, "strict");
    let (year, new_year) = this_new_year();
    let expected = format!("yearly-{}", new_year / 60);
    assert!(
        eventually(Duration::from_secs(30), || {
            s.run(&["get", "job", &expected], None).code == 0
        }),
        "{}",
        s.ok(&["get", "jobs,cronjobs", "-o", "wide"])
    );
    wait_complete(&s, &expected);
    let stamp = s.jsonpath(
        &["job", &expected],
        "{.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}",
    );
    assert_eq!(stamp, format!("{year}-01-01T00:00:00Z"));
    assert!(eventually(Duration::from_secs(20), || {
        let st = s.jsonpath(
            &["cronjob", "yearly"],
            "{.status.lastScheduleTime}|{.status.lastSuccessfulTime}|{.status.active}",
        );
        st.starts_with(&format!("{year}-01-01T00:00:00Z|")) && st.ends_with('|') && st.len() > 30
    }));

    // With a one-minute starting deadline, a New Year long past is not started at all: the
    // controller only looks back that far, as upstream.
    let jobs = s.ok(&["get", "jobs", "-o", "name"]);
    assert!(!jobs.contains("strict-"), "{jobs}");
    let last = s.jsonpath(&["cronjob", "strict"], "{.status.lastScheduleTime}");
    assert_eq!(last, "2020-01-01T00:00:00Z");
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector=involvedObject.name=yearly",
    ]);
    assert!(events.contains("Created job yearly-"), "{events}");
    assert!(events.contains("UnexpectedJob"), "{events}");
}
