//! The pod worker's calls into volumes and environment building, kept in one place (they need
//! the API client; unit tests run without one).

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod, Service};
use kube::Api;
use kube::api::ListParams;
use rkube_cri::Mount;

use super::Shared;

/// Sets up the pod's volumes; `Err` is the `FailedMount` event message.
pub async fn setup_volumes(
    shared: &Shared,
    pod: &Pod,
) -> Result<BTreeMap<String, PathBuf>, String> {
    match &shared.volumes {
        Some(vm) => vm.setup(pod).await.map_err(|e| e.message()),
        None => Ok(BTreeMap::new()),
    }
}

/// Refreshes API-backed volume contents (configMap, secret, projected tokens).
pub async fn refresh_volumes(shared: &Shared, pod: &Pod) {
    if let Some(vm) = &shared.volumes
        && let Err(e) = vm.refresh(pod).await
    {
        shared
            .recorder
            .pod_event(pod, None, crate::events::WARNING, e.reason(), e.message());
    }
}

/// Tears down the volumes of pod `uid`.
pub async fn teardown_volumes(shared: &Shared, uid: &str) {
    if let Some(vm) = &shared.volumes
        && let Err(e) = vm.teardown(uid).await
    {
        tracing::warn!(uid = %uid, error = %e.message(), "volume teardown failed");
    }
}

/// The container's environment; `Err` is the `CreateContainerConfigError` message.
pub async fn container_env(
    shared: &Shared,
    pod: &Pod,
    c: &Container,
) -> Result<Vec<(String, String)>, String> {
    let Some(client) = &shared.client else {
        // Without the API only literal values can be resolved.
        return Ok(c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect());
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut services: Vec<Service> = Api::<Service>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    if ns != "default"
        && let Ok(Some(k)) = Api::<Service>::namespaced(client.clone(), "default")
            .get_opt("kubernetes")
            .await
    {
        services.push(k);
    }
    crate::envvars::container_env(client, pod, c, &services)
        .await
        .map_err(|e| e.message().to_string())
}

/// The container's volume mounts; `Err` is the `CreateContainerConfigError` message.
pub fn container_mounts(
    pod: &Pod,
    c: &Container,
    volumes: &BTreeMap<String, PathBuf>,
    envs: &[(String, String)],
) -> Result<Vec<Mount>, String> {
    crate::volumes::container_mounts(pod, c, volumes, envs).map_err(|e| e.message())
}
