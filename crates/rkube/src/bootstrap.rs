//! The objects every cluster starts with, created through the API like any client would:
//! the four system namespaces, the two system PriorityClasses, and the `kubernetes` Service
//! with its Endpoints and EndpointSlice pointing at this apiserver. Safe to run on every start.

use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use rkube_apiserver::Config;
use rkube_apiserver::strategy::SYSTEM_PRIORITY_CLASSES;

/// Namespaces that exist in every cluster.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates (or refreshes) the built-in objects.
pub async fn run(client: &Client, config: &Config, service_ip: &str) -> Result<(), kube::Error> {
    for ns in SYSTEM_NAMESPACES {
        ensure(
            client,
            "",
            "v1",
            "Namespace",
            "namespaces",
            None,
            json!({"metadata": {"name": ns}}),
        )
        .await?;
    }
    // Upstream's apiserver creates the built-in PriorityClasses at start
    // (`scheduling/bootstrap-system-priority-classes`).
    for (name, value, description) in SYSTEM_PRIORITY_CLASSES {
        ensure(
            client,
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            None,
            json!({"metadata": {"name": name}, "value": value, "description": description}),
        )
        .await?;
    }
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    ensure(
        client,
        "",
        "v1",
        "Service",
        "services",
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": service_ip,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": config.port}],
                "sessionAffinity": "None",
            },
        }),
    )
    .await?;
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{
            "addresses": [{"ip": config.advertise_address}],
            "ports": [{"name": "https", "port": config.port, "protocol": "TCP"}],
        }],
    });
    upsert(
        client,
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "default",
        endpoints,
    )
    .await?;
    let slice = json!({
        "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [config.advertise_address], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": config.port, "protocol": "TCP"}],
    });
    upsert(
        client,
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "default",
        slice,
    )
    .await?;
    Ok(())
}

fn api(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

fn with_type(
    group: &str,
    version: &str,
    kind: &str,
    mut obj: Value,
) -> Result<DynamicObject, kube::Error> {
    obj["apiVersion"] = json!(if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    });
    obj["kind"] = json!(kind);
    serde_json::from_value(obj).map_err(kube::Error::SerdeError)
}

/// Creates the object unless it exists.
async fn ensure(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
    obj: Value,
) -> Result<(), kube::Error> {
    let obj = with_type(group, version, kind, obj)?;
    match api(client, group, version, kind, plural, ns)
        .create(&PostParams::default(), &obj)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the object, or replaces its content when it exists (the address may have changed).
async fn upsert(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    ns: &str,
    obj: Value,
) -> Result<(), kube::Error> {
    let api = api(client, group, version, kind, plural, Some(ns));
    let mut obj = with_type(group, version, kind, obj)?;
    let name = obj.metadata.name.clone().unwrap_or_default();
    match api.get_opt(&name).await? {
        None => api.create(&PostParams::default(), &obj).await.map(|_| ()),
        Some(existing) => {
            obj.metadata.resource_version = existing.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &obj)
                .await
                .map(|_| ())
        }
    }
}
