//! The real kubectl against core `v1` Events and `events.k8s.io/v1` Events: one stored
//! resource seen through two groups, with upstream's columns and field selectors.

mod support;

use support::Server;

/// One event written the old way (core v1, as the kubelet does) and one the new way
/// (events.k8s.io/v1, as client-go's new recorder does). `EVENT_TIME` is replaced by the
/// current time: the event TTL would otherwise expire an old event before the test reads it.
const EVENTS: &str = "apiVersion: v1
kind: Event
metadata:
  name: web.1
involvedObject:
  apiVersion: v1
  kind: Pod
  name: web
  namespace: default
reason: Started
message: started from core
type: Normal
source:
  component: kubelet
---
apiVersion: events.k8s.io/v1
kind: Event
metadata:
  name: api.1
eventTime: \"EVENT_TIME\"
reportingController: example.com/operator
reportingInstance: operator-0
action: Reconcile
reason: Synced
type: Warning
regarding:
  apiVersion: apps/v1
  kind: Deployment
  name: api
  namespace: default
note: written through events.k8s.io
";

/// [`EVENTS`] with the current time as the new-style event's eventTime.
fn events() -> String {
    EVENTS.replace("EVENT_TIME", &now_micro())
}

/// The current UTC time as a `MicroTime` (`2026-11-01T10:00:00.000000Z`).
fn now_micro() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The rows of a table for the given event names, any order.
fn row<'a>(table: &'a str, needle: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no row with {needle:?} in:\n{table}"))
}

#[test]
fn both_groups_show_the_same_events() {
    let s = Server::start();
    s.apply(&events());
    for resource in ["events", "events.events.k8s.io", "events.v1.events.k8s.io"] {
        let table = s.ok(&["get", resource]);
        assert_eq!(
            table
                .lines()
                .next()
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            "{resource}"
        );
        let web = row(&table, "started from core");
        assert!(web.contains("Normal") && web.contains("pod/web"), "{table}");
        let api = row(&table, "written through events.k8s.io");
        assert!(
            api.contains("Warning") && api.contains("deployment/api"),
            "{table}"
        );
    }
    // Each group shows its own field names for the same object.
    assert_eq!(
        s.jsonpath(
            &["events.events.k8s.io", "web.1"],
            "{.apiVersion} {.regarding.name} {.note} {.deprecatedSource.component}"
        ),
        "events.k8s.io/v1 web started from core kubelet"
    );
    assert_eq!(
        s.jsonpath(
            &["events", "api.1"],
            "{.apiVersion} {.involvedObject.name} {.message} {.reportingComponent}"
        ),
        "v1 api written through events.k8s.io example.com/operator"
    );
}

#[test]
fn field_selectors_and_deletes_across_groups() {
    let s = Server::start();
    s.apply(&events());
    let core = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=api",
    ]);
    assert_eq!(core.lines().count(), 2, "{core}");
    assert!(core.contains("deployment/api"), "{core}");
    let events = s.ok(&[
        "get",
        "events.events.k8s.io",
        "--field-selector",
        "regarding.name=web,type=Normal",
    ]);
    assert_eq!(events.lines().count(), 2, "{events}");
    assert!(events.contains("pod/web"), "{events}");
    // As upstream, the core spelling is not a field label of events.k8s.io.
    let err = s.fails(&[
        "get",
        "events.events.k8s.io",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert!(
        err.contains("field label not supported: involvedObject.name"),
        "{err}"
    );
    // Deleted through one group, gone from the other.
    s.ok(&["delete", "events.events.k8s.io", "web.1"]);
    let err = s.fails(&["get", "events", "web.1"]);
    assert!(err.contains("\"web.1\" not found"), "{err}");
    s.ok(&["delete", "events", "api.1"]);
    let err = s.fails(&["get", "events.events.k8s.io", "api.1"]);
    assert!(
        err.contains("events.events.k8s.io \"api.1\" not found"),
        "{err}"
    );
}

#[test]
fn events_k8s_io_create_is_validated_as_upstream() {
    let s = Server::start();
    let err = s.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: events.k8s.io/v1
kind: Event
metadata:
  name: incomplete
reason: Synced
type: Normal
regarding:
  kind: Pod
  name: web
  namespace: default
",
    );
    assert!(err.contains("eventTime: Required value"), "{err}");
}
