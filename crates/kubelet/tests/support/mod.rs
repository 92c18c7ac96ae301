//! Test fixture shared by the kubelet's integration tests (`mod support;`) and its unit tests
//! (`#[path = "../tests/support/mod.rs"] mod support;` in `src/run_tests.rs`): one place that
//! knows how to stand up an in-process apiserver, so both kinds of test build it the same way.

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use rkube_apiserver::authn::{Authenticator, UserInfo};
use rkube_apiserver::local::LocalService;
use rkube_apiserver::{ApiServer, Config};
use serde_json::json;

/// A `kube::Client` for node `n1` talking to a real `ApiServer` in this process (no TCP), its
/// store under `dir/db`, with service-account tokens enabled and `namespaces` created.
pub async fn apiserver(dir: &Path, namespaces: &[&str]) -> kube::Client {
    let store = rkube_store::embedded::EmbeddedStore::open(&dir.join("db")).expect("open store");
    let key = rcgen::KeyPair::generate().expect("a P-256 key");
    let issuer =
        rkube_apiserver::satoken::TokenIssuer::from_pem(&key.serialize_pem()).expect("issuer");
    let authn = Authenticator {
        node_token_secret: String::new(),
        service_accounts: Some(Arc::new(issuer)),
    };
    let srv = ApiServer::new(store, authn, Config::default())
        .await
        .expect("apiserver");
    let client = kube::Client::new(
        LocalService::new(srv, UserInfo::component("system:node:n1")),
        "default",
    );
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces {
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        // Creating is idempotent for the tests: an existing namespace is as good as a new one.
        let _ = api.create(&PostParams::default(), &n).await;
    }
    client
}
