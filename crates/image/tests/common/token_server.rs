//! A tiny token service for the Docker Registry v2 token-auth spec, on 127.0.0.1, for
//! `docker-registry` configured with `auth: token:`. It signs ES256 JWTs with a key whose
//! self-signed certificate is the registry's `rootcertbundle`, and puts that certificate in
//! the token's `x5c` header, which is how distribution finds the signing key.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;

/// The registry's `service` name (the token's `aud`).
pub const SERVICE: &str = "rkube-test-registry";
/// The token's `iss`, which the registry must trust.
pub const ISSUER: &str = "rkube-test-issuer";

/// Who gets a token.
#[derive(Clone, Debug)]
pub enum Policy {
    /// Anyone, without credentials, gets pull access (Docker Hub's anonymous bearer tokens).
    Anonymous,
    /// Credentials are required: Basic `(user, password, may_pull)` on a GET (a known user
    /// without `may_pull` gets a token that grants nothing, as Docker Hub does for private
    /// repositories), or an OAuth2 refresh token (an identity token) on a POST.
    Credentials {
        /// Users for Basic auth.
        users: Vec<(String, String, bool)>,
        /// Refresh tokens accepted by the OAuth2 POST (they grant pull).
        refresh_tokens: Vec<String>,
    },
}

/// One request the token service answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The POST form's `grant_type`.
    pub grant_type: Option<String>,
    /// The `scope` parameters, in order.
    pub scopes: Vec<String>,
    /// The `service` parameter.
    pub service: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The status answered.
    pub status: u16,
}

struct State {
    policy: Policy,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    cert_der: Vec<u8>,
    calls: Mutex<Vec<TokenRequest>>,
    next_id: AtomicU64,
    stop: AtomicBool,
}

/// The running token service; stopped on drop.
pub struct TokenServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl TokenServer {
    /// Generates a signing key and certificate and starts serving `GET /token`.
    pub fn start(policy: Policy) -> TokenServer {
        let key = rcgen::KeyPair::generate().expect("generating the token signing key");
        let params = rcgen::CertificateParams::new(vec![ISSUER.to_string()]).unwrap();
        let cert = params
            .self_signed(&key)
            .expect("self-signing the token cert");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token-signing-cert.pem"), cert.pem()).unwrap();
        let rng = SystemRandom::new();
        let signing =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng)
                .expect("rcgen's default key is ECDSA P-256");
        let state = Arc::new(State {
            policy,
            key: signing,
            rng,
            cert_der: cert.der().to_vec(),
            calls: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            stop: AtomicBool::new(false),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    // One request per connection (we answer `Connection: close`).
                    let _ = serve(&st, conn);
                }
            }
        });
        TokenServer {
            port,
            state,
            thread: Some(thread),
            dir,
        }
    }

    /// The realm URL the registry's challenge names.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The registry config block that makes it trust this service.
    pub fn registry_auth_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm(),
            self.cert_path().display()
        )
    }

    /// The PEM certificate the registry verifies tokens with.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("token-signing-cert.pem")
    }

    /// The requests answered so far.
    pub fn calls(&self) -> Vec<TokenRequest> {
        self.state.calls.lock().unwrap().clone()
    }

    /// A token granting `actions` on repository `name`, as the service would issue it.
    pub fn token_for(&self, name: &str, actions: &[&str]) -> String {
        let access = vec![json!({"type": "repository", "name": name, "actions": actions})];
        sign(&self.state, "test", access)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(st: &State, conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let method = line.split_whitespace().next().unwrap_or("").to_string();
    let mut authorization = None;
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            } else if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length.min(1 << 16)];
    std::io::Read::read_exact(&mut reader, &mut body)?;
    let url = url::Url::parse(&format!("http://token{target}")).unwrap();
    // GET carries the parameters in the query, the OAuth2 POST in a form body.
    let params: Vec<(String, String)> = if method == "POST" {
        url::form_urlencoded::parse(&body).into_owned().collect()
    } else {
        url.query_pairs().into_owned().collect()
    };
    let mut scopes = Vec::new();
    let mut service = String::new();
    let mut grant_type = None;
    let mut refresh_token = None;
    for (k, v) in params {
        match k.as_str() {
            // The POST form carries several scopes space-separated in one parameter.
            "scope" => scopes.extend(v.split_whitespace().map(str::to_string)),
            "service" => service = v,
            "grant_type" => grant_type = Some(v),
            "refresh_token" => refresh_token = Some(v),
            _ => {}
        }
    }
    let (status, body) = match (method.as_str(), url.path()) {
        ("GET", "/token") => answer(st, &scopes, authorization.as_deref()),
        ("POST", "/token") => {
            answer_oauth(st, &scopes, grant_type.as_deref(), refresh_token.as_deref())
        }
        _ => (404, json!({"details": "not found"})),
    };
    st.calls.lock().unwrap().push(TokenRequest {
        method,
        grant_type,
        scopes,
        service,
        authorization,
        status,
    });
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let challenge = if status == 401 {
        "WWW-Authenticate: Basic realm=\"rkube-test-token\"\r\n"
    } else {
        ""
    };
    let mut conn = reader.into_inner();
    write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{challenge}Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

/// The token response for a request, or the refusal.
fn answer(st: &State, scopes: &[String], authorization: Option<&str>) -> (u16, serde_json::Value) {
    let (subject, may_pull) = match &st.policy {
        Policy::Anonymous => (String::new(), true),
        Policy::Credentials { users, .. } => {
            let Some(basic) = authorization.and_then(|a| a.strip_prefix("Basic ")) else {
                return (
                    401,
                    json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}),
                );
            };
            let decoded = STANDARD
                .decode(basic.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let Some((user, pass)) = decoded.split_once(':') else {
                return (401, json!({"details": "malformed basic credentials"}));
            };
            match users.iter().find(|(u, p, _)| u == user && p == pass) {
                Some((u, _, may_pull)) => (u.clone(), *may_pull),
                // Docker Hub's words.
                None => return (401, json!({"details": "incorrect username or password"})),
            }
        }
    };
    let access = if may_pull {
        pull_access(scopes)
    } else {
        Vec::new()
    };
    let token = sign(st, &subject, access);
    let body = match st.policy {
        // Docker Hub answers both fields; an OAuth2-style server only `access_token`.
        Policy::Anonymous => json!({"token": token, "access_token": token, "expires_in": 300}),
        Policy::Credentials { .. } => json!({"access_token": token, "expires_in": 300}),
    };
    (200, body)
}

/// The OAuth2 answer to a `grant_type=refresh_token` POST (RFC 6749 section 5).
fn answer_oauth(
    st: &State,
    scopes: &[String],
    grant_type: Option<&str>,
    refresh_token: Option<&str>,
) -> (u16, serde_json::Value) {
    let known = match &st.policy {
        Policy::Credentials { refresh_tokens, .. } => refresh_tokens,
        Policy::Anonymous => &Vec::new(),
    };
    if grant_type != Some("refresh_token") {
        return (400, json!({"error": "unsupported_grant_type"}));
    }
    match refresh_token {
        Some(t) if known.iter().any(|k| k == t) => {
            let token = sign(st, "identity-token-user", pull_access(scopes));
            (
                200,
                json!({"access_token": token, "expires_in": 300, "scope": scopes.join(" ")}),
            )
        }
        _ => (
            400,
            json!({"error": "invalid_grant", "error_description": "refresh token is not valid"}),
        ),
    }
}

/// The `access` claim granting pull (only) on each `type:name:actions` scope.
fn pull_access(scopes: &[String]) -> Vec<serde_json::Value> {
    scopes
        .iter()
        .filter_map(|s| {
            // Only the name may contain ':' (a registry port).
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let granted: Vec<&str> = actions.split(',').filter(|a| *a == "pull").collect();
            Some(json!({"type": kind, "name": name, "actions": granted}))
        })
        .collect()
}

/// A compact ES256 JWT with the claims distribution checks.
fn sign(st: &State, subject: &str, access: Vec<serde_json::Value>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(&st.cert_der)]});
    let claims = json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 1,
        "iat": now,
        "jti": format!("rkube-test-{}", st.next_id.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = st.key.sign(&st.rng, input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}
