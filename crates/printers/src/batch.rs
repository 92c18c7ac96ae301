//! Job and CronJob (group `batch`).

use jiff::Timestamp;
use serde_json::Value;

use crate::duration::human_duration;
use crate::util::{
    age, arr_at, condition_true, containers_and_images, int_at, name, opt_int, opt_str, present,
    selector_cell, since, str_at, time_at,
};
use crate::{AGE, CONTAINERS, Column, IMAGES, NAME, Printer, col, wide};

pub(crate) const PRINTERS: &[Printer] = &[
    Printer {
        group: "batch",
        kind: "Job",
        columns: JOB,
        cells: job,
    },
    Printer {
        group: "batch",
        kind: "CronJob",
        columns: CRON_JOB,
        cells: cron_job,
    },
];

const SELECTOR: Column = wide(
    "Selector",
    "string",
    "A label query over pods that should match the pod count.",
);

const JOB: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn job(obj: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int_at(obj, "/status/succeeded");
    let completions = match opt_int(obj, "/spec/completions") {
        Some(c) => format!("{succeeded}/{c}"),
        None => match opt_int(obj, "/spec/parallelism").unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        time_at(obj, "/status/startTime"),
        time_at(obj, "/status/completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(done)) => human_duration(done.duration_since(start)),
    };
    let conditions = arr_at(obj, "/status/conditions");
    let status = if condition_true(conditions, "Complete") {
        "Complete"
    } else if condition_true(conditions, "Failed") {
        "Failed"
    } else if present(obj, "/metadata/deletionTimestamp") {
        "Terminating"
    } else if condition_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else if condition_true(conditions, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let [containers, images] = containers_and_images(obj, "/spec/template/spec/containers");
    vec![
        name(obj),
        Value::from(status),
        Value::from(completions),
        Value::from(duration),
        age(obj, now),
        containers,
        images,
        selector_cell(obj, "/spec/selector"),
    ]
}

const CRON_JOB: &[Column] = &[
    NAME,
    col(
        "Schedule",
        "string",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    col(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    col(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
    ),
    col(
        "Active",
        "integer",
        "A list of pointers to currently running jobs.",
    ),
    col(
        "Last Schedule",
        "string",
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn cron_job(obj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = if present(obj, "/status/lastScheduleTime") {
        since(obj, "/status/lastScheduleTime", now)
    } else {
        "<none>".to_string()
    };
    let suspend = match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
        Some(b) => b.to_string(),
        None => "<unset>".to_string(),
    };
    let [containers, images] =
        containers_and_images(obj, "/spec/jobTemplate/spec/template/spec/containers");
    vec![
        name(obj),
        Value::from(str_at(obj, "/spec/schedule")),
        Value::from(opt_str(obj, "/spec/timeZone").unwrap_or("<none>")),
        Value::from(suspend),
        Value::from(arr_at(obj, "/status/active").len()),
        Value::from(last_schedule),
        age(obj, now),
        containers,
        images,
        selector_cell(obj, "/spec/jobTemplate/spec/selector"),
    ]
}

#[cfg(test)]
mod tests {
    use crate::testing::{ago, check};
    use serde_json::{Value, json};

    fn job(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "pi", "creationTimestamp": ago(600)}, "spec": spec, "status": status})
    }

    #[test]
    fn jobs() {
        let tmpl = json!({"spec": {"containers": [{"name": "pi", "image": "perl"}]}});
        let sel = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}});
        for (obj, expect) in [
            (
                job(
                    json!({"completions": 1, "template": tmpl, "selector": sel}),
                    json!({"succeeded": 1, "startTime": ago(590), "completionTime": ago(545),
                        "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
                ),
                json!([
                    "pi",
                    "Complete",
                    "1/1",
                    "45s",
                    "10m",
                    "pi",
                    "perl",
                    "batch.kubernetes.io/controller-uid=u1"
                ]),
            ),
            (
                job(
                    json!({"completions": 3}),
                    json!({"succeeded": 1, "startTime": ago(200)}),
                ),
                json!(["pi", "Running", "1/3", "3m20s", "10m", "", "", ""]),
            ),
            (
                job(
                    json!({"parallelism": 2}),
                    json!({"conditions": [{"type": "Failed", "status": "True"}]}),
                ),
                json!(["pi", "Failed", "0/1 of 2", "", "10m", "", "", ""]),
            ),
            (
                job(
                    json!({"suspend": true}),
                    json!({"conditions": [{"type": "Suspended", "status": "True"}, {"type": "Complete", "status": "False"}]}),
                ),
                json!(["pi", "Suspended", "0/1", "", "10m", "", "", ""]),
            ),
            (
                json!({"metadata": {"name": "pi", "deletionTimestamp": ago(1)}}),
                json!(["pi", "Terminating", "0/1", "", "<unknown>", "", "", ""]),
            ),
        ] {
            check("batch", "Job", obj, expect);
        }
    }

    #[test]
    fn cron_jobs() {
        for (obj, expect) in [
            (
                json!({"metadata": {"name": "hello", "creationTimestamp": ago(86400 * 3)},
                    "spec": {"schedule": "*/5 * * * *", "timeZone": "Etc/UTC", "suspend": false,
                        "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
                    "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(120)}}),
                json!([
                    "hello",
                    "*/5 * * * *",
                    "Etc/UTC",
                    "false",
                    1,
                    "2m",
                    "3d",
                    "c",
                    "busybox",
                    ""
                ]),
            ),
            (
                json!({"metadata": {"name": "hello"}, "spec": {"schedule": "@daily"}}),
                json!([
                    "hello",
                    "@daily",
                    "<none>",
                    "<unset>",
                    0,
                    "<none>",
                    "<unknown>",
                    "",
                    "",
                    ""
                ]),
            ),
        ] {
            check("batch", "CronJob", obj, expect);
        }
    }
}
