//! `rkube server`: PKI, datastore, apiserver, bootstrap objects and controllers, with progress
//! on stderr and the admin kubeconfig written for the user.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use rkube_apiserver::authn::{Authenticator, UserInfo};
use rkube_apiserver::local::LocalService;
use rkube_apiserver::pki::{Pki, PkiOptions};
use rkube_apiserver::{ApiServer, Config};
use rkube_store::Store;

/// Flags of `rkube server`, named as k3s names them.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Folder for state: certificates, the embedded datastore, the kubeconfig.
    #[arg(long, default_value = "/var/lib/rkube")]
    pub data_dir: PathBuf,
    /// HTTPS port of the API.
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Name of this node (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Run only the control plane, no node agent.
    #[arg(long)]
    pub disable_agent: bool,
    /// External datastore, e.g. `etcd://127.0.0.1:2379` (default: embedded, under --data-dir).
    #[arg(long)]
    pub datastore_endpoint: Option<String>,
    /// Shared secret agents join with (default: generated, in <data-dir>/node-token).
    #[arg(long, env = "RKUBE_TOKEN")]
    pub token: Option<String>,
    /// Pod network range.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// Service ClusterIP range.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// Cluster DNS service IP.
    #[arg(long, default_value = "10.43.0.10")]
    pub cluster_dns: String,
    /// NodePort range.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// Also write the admin kubeconfig here.
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// Do not run the scheduler in this process (run `rkube scheduler` elsewhere).
    #[arg(long)]
    pub disable_scheduler: bool,
    /// Do not run the controllers in this process (run `rkube controller-manager` elsewhere).
    #[arg(long)]
    pub disable_controller_manager: bool,
    /// Controller settings.
    #[command(flatten)]
    pub controllers: crate::agent::ControllerFlags,
    /// Extra names or IPs for the serving certificate.
    #[arg(long)]
    pub tls_san: Vec<String>,
    /// HTTPS port of this node's kubelet (logs, exec, port-forward).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// This node's InternalIP (default: the address the API is advertised on).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
}

fn progress(start: Instant, msg: &str) {
    eprintln!("[{:>6.3}s] {msg}", start.elapsed().as_secs_f64());
}

/// Runs the server until interrupted.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create --data-dir {}: choose a writable folder",
            args.data_dir.display()
        )
    })?;
    let ports = parse_port_range(&args.service_node_port_range)?;

    progress(start, "loading certificates");
    let service_ip = first_service_ip(&args.service_cidr)?;
    let mut sans = vec![service_ip.clone()];
    sans.extend(host_addresses());
    sans.extend(args.tls_san.iter().cloned());
    if let Ok(h) = hostname() {
        sans.push(h);
    }
    let pki = Pki::load_or_create(&PkiOptions {
        dir: &args.data_dir.join("server/tls"),
        extra_sans: &sans,
        token: args.token.as_deref(),
    })?;
    rkube_apiserver::pki::write(
        &args.data_dir.join("node-token"),
        &format!("{}\n", pki.node_token),
    )?;

    let store: Arc<dyn Store> = match &args.datastore_endpoint {
        None => {
            progress(start, "opening embedded datastore");
            rkube_store::embedded::EmbeddedStore::open(&args.data_dir.join("server/db"))
                .context("opening the embedded datastore")?
        }
        Some(ep) => {
            progress(start, &format!("connecting to datastore {ep}"));
            rkube_store::etcd::EtcdStore::connect(std::slice::from_ref(ep))
                .await
                .with_context(|| {
                    format!("connecting to --datastore-endpoint {ep}: is etcd running there?")
                })?
        }
    };

    let config = Config {
        service_cidr: args.service_cidr.clone(),
        node_port_range: ports,
        advertise_address: advertise_address(args.bind_address),
        port: args.https_listen_port,
    };
    let authn = Authenticator {
        node_token_secret: pki.token_secret().to_string(),
        service_accounts: Some(std::sync::Arc::new(
            rkube_apiserver::satoken::TokenIssuer::from_pem(&pki.service_account_key_pem)
                .map_err(anyhow::Error::msg)?,
        )),
    };
    let srv = ApiServer::new(store, authn, config.clone())
        .await
        .context("starting the apiserver")?;
    // The apiserver's client certificate towards kubelets (logs, exec, port-forward).
    srv.set_kubelet_client(&pki).map_err(anyhow::Error::msg)?;

    let addr = SocketAddr::new(args.bind_address, args.https_listen_port);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}: is another server running? choose --https-listen-port")
    })?;
    let tls = rkube_apiserver::server::tls_config(&pki)?;
    tokio::spawn(rkube_apiserver::server::serve(srv.clone(), listener, tls));

    let client = kube::Client::new(
        LocalService::new(
            srv.clone(),
            UserInfo::component("system:kube-controller-manager"),
        ),
        "default",
    );
    crate::bootstrap::run(&client, &config, &service_ip)
        .await
        .context("creating the cluster's built-in objects")?;
    srv.set_ready();

    let server_url = format!(
        "https://{}:{}",
        kubeconfig_host(args.bind_address),
        args.https_listen_port
    );
    let kubeconfig = pki.admin_kubeconfig(&server_url);
    let kc_path = args.data_dir.join("kubeconfig.yaml");
    rkube_apiserver::pki::write(&kc_path, &kubeconfig)?;
    if let Some(extra) = &args.write_kubeconfig {
        rkube_apiserver::pki::write(extra, &kubeconfig)?;
    }
    if !args.disable_scheduler {
        tokio::spawn(rkube_scheduler::run(client.clone()));
    }
    let cluster_cidr = rkube_controllers::nodeipam::ClusterCidr::parse(&args.cluster_cidr)
        .map_err(anyhow::Error::msg)?;
    if !args.disable_controller_manager {
        tokio::spawn(rkube_controllers::run_all(
            client,
            args.controllers
                .options(pki.ca_cert_pem.clone(), Some(cluster_cidr)),
        ));
    }
    progress(
        start,
        &format!(
            "ready: API at {server_url}; export KUBECONFIG={}",
            args.write_kubeconfig.as_ref().unwrap_or(&kc_path).display()
        ),
    );
    if !args.disable_agent {
        let node_name = match &args.node_name {
            Some(n) => n.clone(),
            None => hostname().context("reading the host name (or pass --node-name)")?,
        };
        let node_ip = match args.node_ip {
            Some(ip) => ip,
            None => config
                .advertise_address
                .parse()
                .context("the advertise address")?,
        };
        let options = crate::node::NodeOptions {
            data_dir: args.data_dir.clone(),
            node_name,
            node_ip,
            kubelet_port: args.kubelet_port,
            control_plane: true,
            cluster_dns: args.cluster_dns.parse().context("--cluster-dns")?,
            cluster_ca_pem: pki.ca_cert_pem.clone(),
        };
        // In-process, the kubelet calls the apiserver's router directly, as a node user.
        let node_client = kube::Client::new(
            LocalService::new(srv.clone(), UserInfo::component("system:node")),
            "default",
        );
        tokio::spawn(async move {
            if let Err(e) = crate::node::run(node_client, options).await {
                eprintln!("node agent stopped: {e:#}");
            }
        });
    }
    tokio::signal::ctrl_c().await?;
    progress(start, "shutting down");
    Ok(())
}

fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("--service-node-port-range {s:?}: expected FIRST-LAST"))?;
    Ok((a.trim().parse()?, b.trim().parse()?))
}

/// The first usable address of the service CIDR: the `kubernetes` Service's ClusterIP.
fn first_service_ip(cidr: &str) -> anyhow::Result<String> {
    let (ip, _) = cidr
        .split_once('/')
        .with_context(|| format!("--service-cidr {cidr:?} is not a CIDR"))?;
    let ip: std::net::Ipv4Addr = ip
        .parse()
        .with_context(|| format!("--service-cidr {cidr:?}: only IPv4 is supported"))?;
    Ok(std::net::Ipv4Addr::from(u32::from(ip) + 1).to_string())
}

fn advertise_address(bind: IpAddr) -> String {
    if bind.is_unspecified() {
        host_addresses()
            .into_iter()
            .find(|a| a != "127.0.0.1")
            .unwrap_or_else(|| "127.0.0.1".into())
    } else {
        bind.to_string()
    }
}

fn kubeconfig_host(bind: IpAddr) -> String {
    if bind.is_unspecified() {
        "127.0.0.1".into()
    } else {
        bind.to_string()
    }
}

/// The host's IPv4 addresses, read from the kernel's routing table view.
fn host_addresses() -> Vec<String> {
    let mut out = vec!["127.0.0.1".to_string()];
    if let Ok(fib) = std::fs::read_to_string("/proc/net/fib_trie") {
        let lines: Vec<&str> = fib.lines().collect();
        for w in lines.windows(2) {
            if w[1].contains("/32 host LOCAL")
                && let Some(ip) = w[0].split_whitespace().last()
                && !out.iter().any(|o| o == ip)
            {
                out.push(ip.to_string());
            }
        }
    }
    out
}

pub(crate) fn hostname() -> std::io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_string())
}
