//! Pulls from a real `docker-registry` that uses token auth (the Docker Registry v2 token
//! spec, as Docker Hub does): anonymous bearer tokens, and tokens issued for credentials
//! from imagePullSecrets or registries.yaml.

mod common;

use std::path::Path;

use common::token_server::{Policy, SERVICE, TokenServer};
use common::{Registry, raw_get};
use rkube_cri::{AuthConfig, Error, ImageLookup, ImageService};
use rkube_image::{ImageStore, RegistriesConfig, auths_from_dockerconfigjson, testing};

/// A token-auth registry serving `busybox:1.0`, with the token service it trusts.
struct Setup {
    tokens: TokenServer,
    registry: Registry,
    _storage: tempfile::TempDir,
}

/// Pushes the test image to a registry without auth, then serves the same storage from a
/// registry with token auth (skopeo would need a token to push to the latter).
fn setup(policy: Policy, scratch: &Path) -> Setup {
    let storage = tempfile::tempdir().unwrap();
    let archive = scratch.join("busybox.tar");
    testing::busybox_oci_archive(&archive, "busybox:1.0").unwrap();
    {
        let plain = Registry::start_with(storage.path(), "");
        plain.push(&archive, "busybox:1.0", None);
    }
    let tokens = TokenServer::start(policy);
    let registry = Registry::start_with(storage.path(), &tokens.registry_auth_yaml());
    Setup {
        tokens,
        registry,
        _storage: storage,
    }
}

impl Setup {
    fn image(&self) -> String {
        format!("{}/busybox:1.0", self.registry.host())
    }

    /// The error prefix a failed pull of `image` carries (containerd's words).
    fn resolve_failure(&self) -> String {
        let image = self.image();
        format!(
            "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": "
        )
    }

    /// Checks the registry really enforces token auth and accepts this service's tokens,
    /// independently of the client under test (so a client bug cannot hide a setup bug).
    fn check_registry_enforces_tokens(&self) {
        let path = "/v2/busybox/manifests/1.0";
        let (status, text) = raw_get(self.registry.port, path, None);
        assert_eq!(status, 401, "{text}");
        let challenge = format!(
            "Bearer realm=\"{}\",service=\"{SERVICE}\",scope=\"repository:busybox:pull\"",
            self.tokens.realm()
        );
        assert!(
            text.to_ascii_lowercase().contains(&format!(
                "www-authenticate: {}",
                challenge.to_ascii_lowercase()
            )),
            "{text}"
        );
        let good = self.tokens.token_for("busybox", &["pull"]);
        let (status, text) = raw_get(self.registry.port, path, Some(&format!("Bearer {good}")));
        assert_eq!(
            status,
            200,
            "the registry refused a token: {text}\nregistry log:\n{}",
            self.registry.log()
        );
        let other = self.tokens.token_for("other", &["pull"]);
        let (status, _) = raw_get(self.registry.port, path, Some(&format!("Bearer {other}")));
        assert_eq!(status, 401, "a token for another repository must not do");
    }
}

#[tokio::test]
async fn pull_with_anonymous_bearer_token() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(Policy::Anonymous, tmp.path());
    s.check_registry_enforces_tokens();
    let before = s.tokens.calls().len();

    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let image = s.image();
    let id = store
        .pull_image(&image, &[], &|_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}\nregistry log:\n{}", s.registry.log()));
    let resolved = store.resolve(&image).unwrap();
    assert_eq!(resolved.id, id);
    assert!(resolved.layers[0].join("bin/busybox").is_file());

    // One anonymous token, for the scope the registry's challenge named, reused for the
    // manifest, the config and the layer.
    let calls = s.tokens.calls()[before..].to_vec();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].scopes, ["repository:busybox:pull"]);
    assert_eq!(calls[0].service, SERVICE);
    assert_eq!(calls[0].authorization, None);
    assert_eq!(calls[0].status, 200);

    // A missing image is "not found" (the token is granted; the manifest is unknown).
    let missing = format!("{}/nope:latest", s.registry.host());
    let e = store.pull_image(&missing, &[], &|_| {}).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "failed to pull and unpack image \"{missing}\": failed to resolve reference \"{missing}\": {missing}: not found"
        )
    );
    assert_eq!(
        s.tokens.calls().last().unwrap().scopes,
        ["repository:nope:pull"]
    );
}

#[tokio::test]
async fn pull_with_token_for_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let (user, pass) = ("rkube", "s3cret");
    let s = setup(
        Policy::Credentials {
            users: vec![
                (user.into(), pass.into(), true),
                ("guest".into(), "guest".into(), false),
            ],
            refresh_tokens: vec![],
        },
        tmp.path(),
    );
    s.check_registry_enforces_tokens();
    let image = s.image();
    let host = s.registry.host();
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let token_url = format!(
        "{}?scope=repository%3Abusybox%3Apull&service={SERVICE}",
        s.tokens.realm()
    );

    // No credentials: the token service refuses an anonymous token.
    let e = store.pull_image(&image, &[], &|_| {}).await.unwrap_err();
    assert!(matches!(e, Error::ImagePull(_)), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}failed to authorize: failed to fetch anonymous token: unexpected status from GET request to {token_url}: 401 Unauthorized (unauthorized: authentication required)",
            s.resolve_failure()
        )
    );

    // Wrong password: the token service's reason surfaces.
    let auth = |u: &str, p: &str| {
        [AuthConfig {
            server_address: host.clone(),
            username: u.into(),
            password: p.into(),
            ..Default::default()
        }]
    };
    let e = store
        .pull_image(&image, &auth(user, "nope"), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ImagePull(_)), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}failed to authorize: failed to fetch token: unexpected status from GET request to {token_url}: 401 Unauthorized (incorrect username or password)",
            s.resolve_failure()
        )
    );

    // Valid credentials without pull rights: the token grants nothing and the registry's
    // own refusal surfaces.
    let e = store
        .pull_image(&image, &auth("guest", "guest"), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ImagePull(_)), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}pull access denied, repository does not exist or may require authorization: server message: unauthorized: authentication required (401 Unauthorized)",
            s.resolve_failure()
        )
    );

    // imagePullSecrets (a kubernetes.io/dockerconfigjson secret).
    let secret = serde_json::json!({"auths": {host.clone(): {"username": user, "password": pass}}});
    let pull_auth = auths_from_dockerconfigjson(secret.to_string().as_bytes()).unwrap();
    let before = s.tokens.calls().len();
    let id = store
        .pull_image(&image, &pull_auth, &|_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}\nregistry log:\n{}", s.registry.log()));
    assert!(
        store.resolve(&id).unwrap().layers[0]
            .join("bin/busybox")
            .is_file()
    );
    let calls = s.tokens.calls()[before..].to_vec();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some("Basic cmt1YmU6czNjcmV0"),
        "basic auth of rkube:s3cret"
    );

    // registries.yaml (k3s format) credentials.
    let yaml = format!(
        "configs:\n  \"{host}\":\n    auth:\n      username: {user}\n      password: {pass}\n"
    );
    let other = ImageStore::open_with(
        tmp.path().join("store2"),
        RegistriesConfig::parse(&yaml).unwrap(),
    )
    .unwrap();
    assert_eq!(other.pull_image(&image, &[], &|_| {}).await.unwrap(), id);
    let last = s.tokens.calls().last().unwrap().clone();
    assert_eq!(last.status, 200, "{last:?}");
}

#[tokio::test]
async fn pull_with_identity_token() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(
        Policy::Credentials {
            users: vec![],
            refresh_tokens: vec!["refresh-me".into()],
        },
        tmp.path(),
    );
    let image = s.image();
    let host = s.registry.host();
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let auth = |t: &str| {
        [AuthConfig {
            server_address: host.clone(),
            identity_token: t.into(),
            ..Default::default()
        }]
    };

    // A refresh token the service does not know: its OAuth2 error surfaces.
    let e = store
        .pull_image(&image, &auth("stale"), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ImagePull(_)), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}failed to authorize: failed to fetch oauth token: unexpected status from POST request to {}: 400 Bad Request (invalid_grant: refresh token is not valid)",
            s.resolve_failure(),
            s.tokens.realm()
        )
    );

    // The identity token is exchanged (OAuth2 refresh_token grant) for an access token.
    let before = s.tokens.calls().len();
    let id = store
        .pull_image(&image, &auth("refresh-me"), &|_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}\nregistry log:\n{}", s.registry.log()));
    assert!(id.starts_with("sha256:"));
    let calls = s.tokens.calls()[before..].to_vec();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(calls[0].scopes, ["repository:busybox:pull"]);
    assert_eq!(calls[0].service, SERVICE);
    assert_eq!(
        calls[0].authorization, None,
        "no Basic auth beside the form"
    );

    // registries.yaml (k3s format) `identity_token`.
    let yaml = format!("configs:\n  \"{host}\":\n    auth:\n      identity_token: refresh-me\n");
    let other = ImageStore::open_with(
        tmp.path().join("store2"),
        RegistriesConfig::parse(&yaml).unwrap(),
    )
    .unwrap();
    assert_eq!(other.pull_image(&image, &[], &|_| {}).await.unwrap(), id);
}
