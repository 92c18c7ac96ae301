//! PriorityClasses and upstream's `Priority` admission plugin
//! (`plugin/pkg/admission/priority`): the class strategy (defaults, the reserved `system-`
//! names, the highest user-definable value, immutable value and preemption policy), the
//! one-global-default rule, and the pod side: on create, `spec.priorityClassName` resolved to
//! `spec.priority` and `spec.preemptionPolicy`.

use std::sync::Arc;

use futures::future::BoxFuture;
use rkube_core::status::ApiError;
use rkube_core::validation::FieldError;
use serde_json::{Value, json};

use super::Strategy;
use super::defaults::set_default;
use crate::{ApiServer, codec};

/// The PriorityClass strategy.
pub struct PriorityClass;

/// Where PriorityClasses are stored (the registry row's `key_prefix`).
const KEY_PREFIX: &str = "/registry/scheduling.k8s.io/priorityclasses/";
/// Names with this prefix are reserved for the built-in classes.
const SYSTEM_PREFIX: &str = "system-";
/// The highest value a user-defined class may have (upstream's `HighestUserDefinablePriority`).
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
/// A pod's priority when it names no class and no class is the global default.
const DEFAULT_PRIORITY: i64 = 0;
/// A pod's preemption policy when no class gives one.
const DEFAULT_PREEMPTION_POLICY: &str = "PreemptLowerPriority";

/// The built-in classes every cluster has (upstream's `SystemPriorityClasses()`): name, value
/// and description. The apiserver's bootstrap creates them.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// Whether `name` is a built-in class with exactly this value and no global default
/// (upstream's `IsKnownSystemPriorityClass`); the error says what differs.
fn known_system_class(name: &str, value: i64, global_default: bool) -> Result<(), String> {
    let Some((n, v, _)) = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _, _)| *n == name) else {
        return Err(format!("{name} is not a known system priority class"));
    };
    if *v != value {
        return Err(format!("value of {n} PriorityClass must be {v}"));
    }
    if global_default {
        return Err(format!("globalDefault of {n} PriorityClass must be false"));
    }
    Ok(())
}

fn value_of(pc: &Value) -> i64 {
    pc.get("value").and_then(Value::as_i64).unwrap_or(0)
}

fn is_global_default(pc: &Value) -> bool {
    pc.get("globalDefault").and_then(Value::as_bool) == Some(true)
}

fn name_of(obj: &Value) -> &str {
    rkube_core::meta::name(obj)
}

impl Strategy for PriorityClass {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            set_default(m, "preemptionPolicy", json!(DEFAULT_PREEMPTION_POLICY));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = name_of(obj);
        let value = value_of(obj);
        if name.starts_with(SYSTEM_PREFIX) {
            if let Err(why) = known_system_class(name, value, is_global_default(obj)) {
                errs.push(FieldError::forbidden(
                    "metadata.name",
                    &format!(
                        "priority class names with '{SYSTEM_PREFIX}' prefix are reserved for system use only. error: {why}"
                    ),
                ));
            }
        } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
            errs.push(FieldError::forbidden(
                "value",
                &format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
                ),
            ));
        }
        if let Some(policy) = obj.get("preemptionPolicy")
            && !matches!(policy.as_str(), Some("PreemptLowerPriority" | "Never"))
        {
            errs.push(FieldError::not_supported(
                "preemptionPolicy",
                policy.clone(),
                &["Never", "PreemptLowerPriority"],
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if new.get("value") != old.get("value") {
            errs.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        errs.extend(super::immutable(
            new,
            old,
            "/preemptionPolicy",
            "preemptionPolicy",
        ));
        errs
    }

    fn admit<'a>(
        &'a self,
        srv: &'a Arc<ApiServer>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if !is_global_default(obj) {
                return Ok(());
            }
            // Only one class may be the global default: creating a second one, or marking
            // another class as default, is refused.
            let Some(dpc) = default_class(srv).await? else {
                return Ok(());
            };
            if old.is_none() || name_of(&dpc) != name_of(obj) {
                return Err(ApiError::forbidden(
                    "scheduling.k8s.io",
                    "priorityclasses",
                    name,
                    &format!(
                        "PriorityClass {} is already marked as default. Only one default can exist",
                        name_of(&dpc)
                    ),
                ));
            }
            Ok(())
        })
    }
}

/// The stored class named `name`.
async fn get_class(srv: &ApiServer, name: &str) -> Result<Option<Value>, ApiError> {
    let kv = srv
        .store
        .get(&format!("{KEY_PREFIX}{name}"))
        .await
        .map_err(ApiError::internal)?;
    Ok(kv.map(|kv| codec::decode(&kv.value, kv.mod_revision)))
}

/// The global default class; when a race left several, the one with the lowest value, as
/// upstream picks.
async fn default_class(srv: &ApiServer) -> Result<Option<Value>, ApiError> {
    let (kvs, _) = srv
        .store
        .list(KEY_PREFIX)
        .await
        .map_err(ApiError::internal)?;
    Ok(kvs
        .iter()
        .map(|kv| codec::decode(&kv.value, kv.mod_revision))
        .filter(is_global_default)
        .min_by_key(value_of))
}

/// The Priority admission plugin on pod create: `spec.priorityClassName` (or the global
/// default class, or none) decides `spec.priority` and `spec.preemptionPolicy`. A pod that sets
/// either itself to something else is refused, as upstream. `name` is the name errors show.
pub async fn admit_pod(srv: &ApiServer, pod: &mut Value, name: &str) -> Result<(), ApiError> {
    let class_name = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(String::from);
    let forbidden = |why: String| ApiError::forbidden("", "pods", name, &why);
    let class = match &class_name {
        Some(n) => Some(
            get_class(srv, n)
                .await?
                .ok_or_else(|| forbidden(format!("no PriorityClass with name {n} was found")))?,
        ),
        None => default_class(srv).await?,
    };
    let (priority, policy) = match &class {
        Some(c) => (
            value_of(c),
            c.get("preemptionPolicy").and_then(Value::as_str),
        ),
        None => (DEFAULT_PRIORITY, Some(DEFAULT_PREEMPTION_POLICY)),
    };
    resolve(pod, class.as_ref().map(name_of), priority, policy).map_err(forbidden)
}

/// Writes the resolved priority into the pod, or says why the pod's own values conflict.
fn resolve(
    pod: &mut Value,
    class: Option<&str>,
    priority: i64,
    policy: Option<&str>,
) -> Result<(), String> {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if let Some(given) = spec.get("priority").filter(|p| !p.is_null())
        && given.as_i64() != Some(priority)
    {
        return Err(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
        ));
    }
    if let Some(policy) = policy
        && let Some(given) = spec.get("preemptionPolicy").filter(|p| !p.is_null())
        && given.as_str() != Some(policy)
    {
        let given = given
            .as_str()
            .map_or_else(|| given.to_string(), String::from);
        return Err(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
        ));
    }
    if let Some(c) = class
        && spec
            .get("priorityClassName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        spec.insert("priorityClassName".into(), json!(c));
    }
    spec.insert("priority".into(), json!(priority));
    if let Some(policy) = policy {
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefix_matches_the_registry() {
        let reg = rkube_core::registry::Registry::builtin();
        let rt = reg
            .lookup("scheduling.k8s.io", "v1", "priorityclasses")
            .expect("priorityclasses are registered");
        assert_eq!(rt.key_prefix(), KEY_PREFIX);
    }

    #[test]
    fn system_names_are_reserved() {
        let pc = |name: &str, value: i64| json!({"metadata": {"name": name}, "value": value});
        assert!(
            PriorityClass
                .validate(&pc("system-node-critical", 2_000_001_000))
                .is_empty()
        );
        let errs = PriorityClass.validate(&pc("system-node-critical", 5));
        assert_eq!(
            errs[0].to_string(),
            "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-node-critical PriorityClass must be 2000001000"
        );
        let errs = PriorityClass.validate(&pc("system-mine", 5));
        assert!(
            errs[0]
                .to_string()
                .ends_with("system-mine is not a known system priority class")
        );
        let errs = PriorityClass.validate(&pc("huge", 1_000_000_001));
        assert_eq!(
            errs[0].to_string(),
            "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
        );
        assert!(PriorityClass.validate(&pc("max", 1_000_000_000)).is_empty());
    }

    #[test]
    fn value_and_policy_are_immutable() {
        let old = json!({"metadata": {"name": "a"}, "value": 5, "preemptionPolicy": "Never"});
        let mut new = json!({"metadata": {"name": "a"}, "value": 6});
        PriorityClass.prepare_for_update(&mut new, &old);
        let errs: Vec<String> = PriorityClass
            .validate_update(&new, &old)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                "value: Forbidden: may not be changed in an update.",
                "preemptionPolicy: Invalid value: \"PreemptLowerPriority\": field is immutable"
            ]
        );
    }

    #[test]
    fn resolve_fills_and_checks() {
        let mut pod = json!({"spec": {"containers": []}});
        resolve(&mut pod, None, 0, Some("PreemptLowerPriority")).unwrap();
        assert_eq!(pod["spec"]["priority"], 0);
        assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");

        let mut pod = json!({"spec": {}});
        resolve(&mut pod, Some("dflt"), 7, Some("Never")).unwrap();
        assert_eq!(pod["spec"]["priorityClassName"], "dflt");
        assert_eq!(pod["spec"]["preemptionPolicy"], "Never");

        let mut pod = json!({"spec": {"priority": 3}});
        assert_eq!(
            resolve(&mut pod, None, 1000, Some("PreemptLowerPriority")).unwrap_err(),
            "the integer value of priority (3) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
        );
        let mut pod = json!({"spec": {"preemptionPolicy": "Never"}});
        assert_eq!(
            resolve(&mut pod, None, 0, Some("PreemptLowerPriority")).unwrap_err(),
            "the string value of PreemptionPolicy (Never) must not be provided in pod spec; priority admission controller computed PreemptLowerPriority from the given PriorityClass name"
        );
        // Agreeing values are fine.
        let mut pod = json!({"spec": {"priority": 1000, "preemptionPolicy": "Never"}});
        assert!(resolve(&mut pod, None, 1000, Some("Never")).is_ok());
    }
}
