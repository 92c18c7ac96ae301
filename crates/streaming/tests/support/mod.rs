//! Test doubles: an in-process `RuntimeService` (exec/attach as in-process programs,
//! port-forward to a loopback echo server), a resolver, certificates and a TLS client.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rkube_cri::*;
use rkube_streaming::{PodResolver, ResolveError, StreamTarget};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fake runtime: one pod `default/web` with container `app` (id `cid-app`).
pub struct FakeRuntime {
    /// Port of the loopback echo server that pod port 80 leads to.
    pub echo_port: u16,
    /// Set to make `cid-app` report Exited.
    pub exited: AtomicBool,
}

fn unimplemented<T>() -> Result<T> {
    Err(Error::Internal(
        "not implemented by the fake runtime".into(),
    ))
}

impl FakeRuntime {
    /// Starts the echo server and returns the runtime.
    pub async fn start() -> Arc<FakeRuntime> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Arc::new(FakeRuntime {
            echo_port,
            exited: AtomicBool::new(false),
        })
    }
}

/// An in-process "process": `cat` echoes stdin, `exit N` exits N, `stderr TEXT` writes TEXT
/// to stderr, `yes N` writes N bytes of `y` and exits.
fn program(cmd: &[String], opts: &StreamOptions) -> StreamingSession {
    let (stdin_w, mut stdin_r) = tokio::io::duplex(64 * 1024);
    let (mut out_w, out_r) = tokio::io::duplex(64 * 1024);
    let (mut err_w, err_r) = tokio::io::duplex(64 * 1024);
    let (tx, rx) = tokio::sync::oneshot::channel::<i32>();
    let (rtx, mut rrx) = tokio::sync::mpsc::channel::<TerminalSize>(4);
    let cmd = cmd.to_vec();
    let tty = opts.tty;
    tokio::spawn(async move {
        let code = match cmd.first().map(String::as_str) {
            Some("cat") => {
                let _ = tokio::io::copy(&mut stdin_r, &mut out_w).await;
                0
            }
            Some("exit") => cmd.get(1).and_then(|c| c.parse().ok()).unwrap_or(1),
            Some("stderr") => {
                let _ = err_w.write_all(cmd[1..].join(" ").as_bytes()).await;
                0
            }
            Some("size") => {
                // Reports the first terminal size it is given.
                if let Some(s) = rrx.recv().await {
                    let _ = out_w
                        .write_all(format!("{}x{} tty={tty}\n", s.width, s.height).as_bytes())
                        .await;
                }
                0
            }
            _ => 127,
        };
        drop(out_w);
        drop(err_w);
        let _ = tx.send(code);
    });
    StreamingSession {
        stdin: opts.stdin.then(|| Box::pin(stdin_w) as Writer),
        stdout: opts.stdout.then(|| Box::pin(out_r) as Reader),
        stderr: (opts.stderr && !opts.tty).then(|| Box::pin(err_r) as Reader),
        resize: opts.tty.then_some(rtx),
        exit: Box::pin(async move {
            rx.await
                .map_err(|_| Error::Internal("program vanished".into()))
        }),
    }
}

#[async_trait::async_trait]
impl RuntimeService for FakeRuntime {
    fn version(&self) -> String {
        "fake://0".into()
    }
    async fn run_pod_sandbox(&self, _: &PodSandboxConfig) -> Result<String> {
        unimplemented()
    }
    async fn stop_pod_sandbox(&self, _: &str) -> Result<()> {
        unimplemented()
    }
    async fn remove_pod_sandbox(&self, _: &str) -> Result<()> {
        unimplemented()
    }
    async fn pod_sandbox_status(&self, _: &str) -> Result<PodSandboxStatus> {
        unimplemented()
    }
    async fn list_pod_sandbox(&self) -> Result<Vec<PodSandbox>> {
        unimplemented()
    }
    async fn create_container(
        &self,
        _: &str,
        _: &ContainerConfig,
        _: &PodSandboxConfig,
    ) -> Result<String> {
        unimplemented()
    }
    async fn start_container(&self, _: &str) -> Result<()> {
        unimplemented()
    }
    async fn stop_container(&self, _: &str, _: Duration) -> Result<()> {
        unimplemented()
    }
    async fn remove_container(&self, _: &str) -> Result<()> {
        unimplemented()
    }
    async fn list_containers(&self, _: Option<&str>) -> Result<Vec<Container>> {
        unimplemented()
    }
    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        if id != "cid-app" {
            return Err(Error::NotFound(format!("container {id}")));
        }
        let state = if self.exited.load(Ordering::SeqCst) {
            ContainerState::Exited
        } else {
            ContainerState::Running
        };
        Ok(ContainerStatus {
            container: Container {
                id: id.into(),
                pod_sandbox_id: "sandbox-web".into(),
                name: "app".into(),
                attempt: 0,
                image: "busybox".into(),
                image_ref: "sha256:0".into(),
                state,
                created_at: 0,
                labels: Default::default(),
                annotations: Default::default(),
            },
            started_at: 1,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            log_path: PathBuf::new(),
            pid: None,
        })
    }
    async fn reopen_container_log(&self, _: &str) -> Result<()> {
        unimplemented()
    }
    async fn exec_sync(&self, _: &str, _: &[String], _: Duration) -> Result<ExecSyncResponse> {
        unimplemented()
    }
    async fn exec(
        &self,
        _: &str,
        cmd: &[String],
        opts: &StreamOptions,
    ) -> Result<StreamingSession> {
        if cmd.first().map(String::as_str) == Some("missing") {
            return Err(Error::Container(
                "exec: \"missing\": executable file not found in $PATH".into(),
            ));
        }
        Ok(program(cmd, opts))
    }
    async fn attach(&self, _: &str, opts: &StreamOptions) -> Result<StreamingSession> {
        Ok(program(&["cat".to_string()], opts))
    }
    async fn port_forward(&self, sandbox: &str, port: u16) -> Result<tokio::net::TcpStream> {
        if port != 80 {
            return Err(Error::Internal(format!(
                "failed to connect to localhost:{port} inside namespace \"{sandbox}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused"
            )));
        }
        Ok(tokio::net::TcpStream::connect(("127.0.0.1", self.echo_port)).await?)
    }
}

/// Resolves `default/web` (containers `app`, `idle`) with logs under `log_dir`.
pub struct FakePods {
    /// The pod's log directory.
    pub log_dir: PathBuf,
}

#[async_trait::async_trait]
impl PodResolver for FakePods {
    async fn resolve(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> std::result::Result<StreamTarget, ResolveError> {
        if (namespace, pod) != ("default", "web") {
            return Err(ResolveError::PodNotFound);
        }
        let container_id = match container {
            "app" => Some("cid-app".to_string()),
            "idle" | "" => None,
            other => {
                return Err(ResolveError::ContainerNotFound(format!(
                    "container {other} is not valid for pod web"
                )));
            }
        };
        Ok(StreamTarget {
            sandbox_id: "sandbox-web".into(),
            container_id,
            container_name: container.into(),
            log_dir: self.log_dir.clone(),
            pod_uid: "uid-web".into(),
        })
    }
}

/// A CA and a client certificate it signed (PEM): (ca, client cert, client key).
pub fn client_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "test-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "kube-apiserver-kubelet-client");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// A TLS client config that trusts any server and presents `cert` (if given).
pub fn client_tls(cert: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let b = rkube_tls::insecure_client_builder().unwrap();
    let mut cfg = match cert {
        Some((c, k)) => {
            let certs = rustls_pemfile::certs(&mut c.as_bytes())
                .collect::<std::result::Result<Vec<_>, _>>()
                .unwrap();
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut k.as_bytes())
                .unwrap()
                .unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A running streaming server on loopback.
pub struct Kubelet {
    /// Its port.
    pub port: u16,
    /// The runtime behind it.
    pub runtime: Arc<FakeRuntime>,
    /// The pod's log dir (`<tmp>/default_web_uid`).
    pub log_dir: PathBuf,
    /// CA PEM that signs accepted client certificates.
    pub ca_pem: String,
    /// A client certificate and key the server accepts.
    pub client: (String, String),
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Kubelet {
    /// Starts the server on 127.0.0.1.
    pub async fn start() -> Kubelet {
        Self::start_with_ca(None).await
    }

    /// Starts the server on 127.0.0.1, accepting client certificates of `ca` (PEM) instead
    /// of a CA of its own.
    pub async fn start_with_ca(ca: Option<&str>) -> Kubelet {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("default_web_uid");
        std::fs::create_dir_all(log_dir.join("app")).unwrap();
        let (mut ca_pem, cert, key) = client_pki();
        if let Some(c) = ca {
            ca_pem = c.to_string();
        }
        let ca = ca_pem;
        let tls = rkube_streaming::kubelet_tls_config(
            "node-a",
            &["127.0.0.1".parse::<IpAddr>().unwrap()],
            &ca,
        )
        .unwrap();
        let runtime = FakeRuntime::start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(rkube_streaming::serve(
            listener,
            Arc::new(tls),
            runtime.clone(),
            Arc::new(FakePods {
                log_dir: log_dir.clone(),
            }),
        ));
        Kubelet {
            port,
            runtime,
            log_dir,
            ca_pem: ca,
            client: (cert, key),
            _dir: dir,
            task,
        }
    }

    /// A TLS connection to it, with the client certificate or without.
    pub async fn connect(
        &self,
        with_cert: bool,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let cfg = client_tls(with_cert.then_some((self.client.0.as_str(), self.client.1.as_str())));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap()
    }
}

/// Reads everything from `r` (test helper).
pub async fn read_all<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v).await;
    v
}
