//! ControllerRevisions shared by the DaemonSet and StatefulSet controllers: each distinct pod
//! template of a workload is kept as a `ControllerRevision` named `<owner>-<hash>` whose data
//! is the patch that restores it (`{"spec":{"template":{…,"$patch":"replace"}}}`, the shape
//! `kubectl rollout history/undo` reads), numbered by `revision`, and trimmed to
//! `revisionHistoryLimit` once no pod uses it any more.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rkube_apimachinery::labels::Selector;
use serde_json::{Value, json};

use crate::deployment::template_hash;

/// The label carrying a pod's (and a revision's) template hash.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";

/// The workload owning the revisions.
pub struct Owner {
    /// `DaemonSet` or `StatefulSet`.
    pub kind: &'static str,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID.
    pub uid: String,
}

impl Owner {
    /// The controller owner reference pointing at this workload.
    pub fn owner_reference(&self) -> Value {
        json!({"apiVersion": "apps/v1", "kind": self.kind, "name": self.name,
               "uid": self.uid, "controller": true, "blockOwnerDeletion": true})
    }
}

/// What a revision stores for `template`.
pub fn revision_data(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template stored in a revision's data.
pub fn template_of(data: &Value) -> Value {
    let mut t = data.pointer("/spec/template").cloned().unwrap_or(json!({}));
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    t
}

/// The hash naming a revision of `template`; `collision_count` moves it off a name taken by
/// a revision with other contents.
pub fn hash(template: &Value, collision_count: i32) -> String {
    template_hash(&revision_data(template), collision_count)
}

/// `<owner>-<hash>`, with the owner part shortened so the name stays a valid object name.
pub fn revision_name(owner: &str, hash: &str) -> String {
    let keep = 252usize.saturating_sub(hash.len() + 1);
    let prefix: String = owner.chars().take(keep).collect();
    format!("{prefix}-{hash}")
}

/// The `revision` number of a ControllerRevision.
pub fn number(r: &ControllerRevision) -> i64 {
    r.revision
}

/// The hash a revision was created under (its label, else the end of its name).
pub fn hash_of(r: &ControllerRevision) -> String {
    r.labels()
        .get(CONTROLLER_REVISION_HASH)
        .cloned()
        .unwrap_or_else(|| {
            let name = r.name_any();
            name.rsplit('-').next().unwrap_or_default().to_string()
        })
}

/// Outcome of [`sync`].
pub enum Synced {
    /// The revision of the current template and every revision the owner controls.
    Ready(Box<ControllerRevision>, Vec<ControllerRevision>),
    /// The name for the current template is held by other contents: the caller bumps
    /// `status.collisionCount` and tries again.
    Collision,
}

/// Finds or creates the revision of `template`, making it the newest.
pub async fn sync(
    api: &Api<ControllerRevision>,
    owner: &Owner,
    selector: &Selector,
    template: &Value,
    collision_count: i32,
) -> Result<Synced, kube::Error> {
    let mut owned = list_owned(api, owner, selector).await?;
    owned.sort_by_key(number);
    let data = revision_data(template);
    let max = owned.last().map(number).unwrap_or(0);
    if let Some(pos) = owned.iter().position(|r| raw(r) == &data) {
        let mut current = owned[pos].clone();
        if number(&current) < max {
            // A template seen before became current again (a rollback): renumber it.
            let patch = json!({"revision": max + 1});
            current = api
                .patch(
                    &current.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            owned[pos] = current.clone();
        }
        return Ok(Synced::Ready(Box::new(current), owned));
    }
    let h = hash(template, collision_count);
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    labels[CONTROLLER_REVISION_HASH] = json!(h);
    let rev = json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": revision_name(&owner.name, &h),
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner.owner_reference()],
        },
        "data": data,
        "revision": max + 1,
    });
    let rev: ControllerRevision = serde_json::from_value(rev).map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &rev).await {
        Ok(created) => {
            owned.push(created.clone());
            Ok(Synced::Ready(Box::new(created), owned))
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Synced::Collision),
        Err(e) => Err(e),
    }
}

fn raw(r: &ControllerRevision) -> &Value {
    static NULL: Value = Value::Null;
    r.data.as_ref().map(|RawExtension(v)| v).unwrap_or(&NULL)
}

async fn list_owned(
    api: &Api<ControllerRevision>,
    owner: &Owner,
    selector: &Selector,
) -> Result<Vec<ControllerRevision>, kube::Error> {
    let list = api
        .list(&ListParams::default().labels(&selector.to_string()))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|r| {
            r.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == owner.uid)
        })
        .collect())
}

/// Deletes the oldest revisions beyond `limit` that neither `keep` (by name) nor a live pod
/// (by hash in `live_hashes`) still uses.
pub async fn cleanup(
    api: &Api<ControllerRevision>,
    revisions: &[ControllerRevision],
    keep: &BTreeSet<String>,
    live_hashes: &BTreeSet<String>,
    limit: i32,
) -> Result<(), kube::Error> {
    let doomed = expendable(revisions, keep, live_hashes, limit);
    for name in doomed {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Names of the revisions [`cleanup`] deletes, oldest first.
fn expendable(
    revisions: &[ControllerRevision],
    keep: &BTreeSet<String>,
    live_hashes: &BTreeSet<String>,
    limit: i32,
) -> Vec<String> {
    let mut unused: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !keep.contains(&r.name_any()))
        .filter(|r| !live_hashes.contains(&hash_of(r)) && !live_hashes.contains(&r.name_any()))
        .collect();
    unused.sort_by_key(|r| number(r));
    let excess = unused.len().saturating_sub(limit.max(0) as usize);
    unused
        .into_iter()
        .take(excess)
        .map(|r| r.name_any())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(name: &str, n: i64) -> ControllerRevision {
        serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {CONTROLLER_REVISION_HASH: name.rsplit('-').next()}}, "revision": n}))
        .unwrap()
    }

    #[test]
    fn data_round_trips_the_template() {
        let t = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}});
        let d = revision_data(&t);
        assert_eq!(d["spec"]["template"]["$patch"], "replace");
        assert_eq!(template_of(&d), t);
    }

    #[test]
    fn hashes_are_stable_and_move_with_collisions() {
        let t = json!({"spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        assert_eq!(hash(&t, 0), hash(&t, 0));
        assert_ne!(hash(&t, 0), hash(&t, 1));
        let other = json!({"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}});
        assert_ne!(hash(&t, 0), hash(&other, 0));
    }

    #[test]
    fn names_stay_short() {
        assert_eq!(revision_name("web", "abc"), "web-abc");
        assert!(revision_name(&"x".repeat(300), "abc").len() <= 253);
    }

    #[test]
    fn cleanup_keeps_limit_live_and_current() {
        let revs = vec![
            rev("ds-a", 1),
            rev("ds-b", 2),
            rev("ds-c", 3),
            rev("ds-d", 4),
        ];
        let keep = BTreeSet::from(["ds-d".to_string()]);
        let live = BTreeSet::from(["a".to_string()]);
        assert_eq!(expendable(&revs, &keep, &live, 1), vec!["ds-b"]);
        assert_eq!(expendable(&revs, &keep, &live, 0), vec!["ds-b", "ds-c"]);
        assert!(expendable(&revs, &keep, &live, 10).is_empty());
    }
}
