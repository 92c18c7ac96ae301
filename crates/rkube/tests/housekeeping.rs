//! Events expire after the event TTL (`--event-ttl`; one hour by default, as upstream).

mod support;

use std::time::Duration;

use support::{Server, eventually};

#[test]
fn events_expire_after_the_event_ttl() {
    let s = Server::start_with(&["--event-ttl", "2"]);
    s.apply(
        "apiVersion: v1
kind: Event
metadata:
  name: short-lived.1
involvedObject:
  kind: Pod
  name: short-lived
  namespace: default
reason: Testing
message: gone soon
type: Normal
",
    );
    assert!(s.ok(&["get", "events"]).contains("gone soon"));
    assert!(
        eventually(Duration::from_secs(30), || !s
            .ok(&["get", "events", "-o", "name"])
            .contains("short-lived.1")),
        "{}",
        s.ok(&["get", "events"])
    );
}
