//! The streaming server's view of this kubelet's pods ([`rkube_streaming::PodResolver`]),
//! answered from what the pod workers last saw.

use std::sync::Arc;

use rkube_streaming::{PodResolver, ResolveError, StreamTarget};

use crate::pods::{PodRegistry, RegisteredPod};

/// Resolves `namespace/pod/container` to runtime ids.
pub struct Resolver {
    shared: Arc<crate::pods::Shared>,
}

impl Resolver {
    /// A resolver over the pod workers' registry.
    pub fn new(shared: Arc<crate::pods::Shared>) -> Resolver {
        Resolver { shared }
    }
}

/// Resolution against one registry (separate for tests).
pub fn resolve_in(
    registry: &PodRegistry,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<StreamTarget, ResolveError> {
    let p: RegisteredPod = registry
        .find(namespace, pod)
        .ok_or(ResolveError::PodNotFound)?;
    let sandbox_id = p.sandbox_id.clone().unwrap_or_default();
    if container.is_empty() {
        if sandbox_id.is_empty() {
            return Err(ResolveError::NotRunning(format!(
                "pod {pod} has no sandbox yet"
            )));
        }
        return Ok(StreamTarget {
            sandbox_id,
            container_id: None,
            container_name: String::new(),
            log_dir: p.log_dir,
            pod_uid: p.uid,
        });
    }
    if !p.spec_containers.iter().any(|c| c == container) {
        return Err(ResolveError::ContainerNotFound(format!(
            "container {container} is not valid for pod {pod}"
        )));
    }
    let container_id = p
        .containers
        .iter()
        .find(|(name, _, _)| name == container)
        .map(|(_, id, _)| id.clone());
    Ok(StreamTarget {
        sandbox_id,
        container_id,
        container_name: container.to_string(),
        log_dir: p.log_dir,
        pod_uid: p.uid,
    })
}

#[async_trait::async_trait]
impl PodResolver for Resolver {
    async fn resolve(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<StreamTarget, ResolveError> {
        resolve_in(&self.shared.registry, namespace, pod, container)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::state::{ContainerInfo, PodRuntime, SandboxInfo};
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;
    use std::path::Path;

    #[test]
    fn resolves_containers_and_sandbox() {
        let reg = PodRegistry::default();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "web"}, {"name": "side"}]}}))
        .unwrap();
        let rt = PodRuntime {
            sandboxes: vec![SandboxInfo {
                id: "sb1".into(),
                attempt: 0,
                ready: true,
                created_at: 1,
                ips: vec![],
            }],
            containers: vec![ContainerInfo {
                id: "c2".into(),
                sandbox_id: "sb1".into(),
                name: "web".into(),
                attempt: 1,
                state: rkube_cri::ContainerState::Running,
                created_at: 2,
                started_at: 2,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                image: String::new(),
                image_ref: String::new(),
                log_path: Default::default(),
            }],
        };
        reg.update("u1", &pod, &rt, Path::new("/logs"));
        let t = resolve_in(&reg, "default", "web", "web").unwrap();
        assert_eq!(
            (t.sandbox_id.as_str(), t.container_id.as_deref()),
            ("sb1", Some("c2"))
        );
        assert_eq!(t.log_dir, Path::new("/logs/default_web_u1"));
        assert_eq!(
            resolve_in(&reg, "default", "web", "side")
                .unwrap()
                .container_id,
            None
        );
        assert!(matches!(
            resolve_in(&reg, "default", "web", "nope"),
            Err(ResolveError::ContainerNotFound(_))
        ));
        assert_eq!(
            resolve_in(&reg, "default", "other", "web"),
            Err(ResolveError::PodNotFound)
        );
        assert_eq!(
            resolve_in(&reg, "default", "web", "").unwrap().sandbox_id,
            "sb1"
        );
    }
}
