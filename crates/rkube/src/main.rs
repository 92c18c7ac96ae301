//! `rkube`: the one binary. It parses flags and composes the crates; behaviour lives in them.

mod agent;
mod bootstrap;
mod node;
mod server;

use clap::{Parser, Subcommand};

// glibc's allocator showed as the top cost of API writes in profiles (many small JSON
// allocations across threads); mimalloc handles that pattern far better.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kubernetes, in one small binary.
#[derive(Parser)]
#[command(name = "rkube", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (apiserver, controllers, datastore).
    Server(server::ServerArgs),
    /// Join a server as a node agent (today: simulated nodes only, --simulate N).
    Agent(agent::AgentArgs),
    /// Run the scheduler against a cluster.
    Scheduler(agent::SchedulerArgs),
    /// Run the controllers against a cluster.
    ControllerManager(agent::ControllerManagerArgs),
    /// Manage the node's images: import archives, list, remove, pull.
    Image {
        /// The node's data dir (its image store is `<data-dir>/agent/image-store`).
        #[arg(long, global = true, default_value = "/var/lib/rkube")]
        data_dir: std::path::PathBuf,
        #[command(subcommand)]
        command: rkube_image::cli::ImageCommand,
    },
    /// Stop every pod of the node under --data-dir and remove its containers, mounts and
    /// cgroups (the agent leaves pods running when it stops, on purpose).
    Killall {
        /// The node's data dir.
        #[arg(long, default_value = "/var/lib/rkube")]
        data_dir: std::path::PathBuf,
    },
}

/// mimalloc keeps freed memory committed for reuse; for a long-running control plane a small
/// resident size matters more, so freed memory goes back to the OS at once (`purge_delay` =
/// 15 in mimalloc's option enum, which libmimalloc-sys does not name). Arenas committed as they
/// are used is a compile-time default (`.cargo/config.toml`): the first arena exists before
/// `main` runs.
fn tune_allocator() {
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: setting mimalloc options is thread-safe and takes plain integers.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

fn main() -> anyhow::Result<()> {
    // A pod's supervisor is this binary re-executed: it must take over before any thread starts.
    rkube_runtime::run_shim_if_requested();
    tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RKUBE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // One TLS crypto provider for the whole process (rustls refuses to guess between two).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server::run(args)),
        Command::Agent(args) => runtime.block_on(agent::run(args)),
        Command::Scheduler(args) => runtime.block_on(agent::run_scheduler(args)),
        Command::ControllerManager(args) => runtime.block_on(agent::run_controller_manager(args)),
        Command::Image { data_dir, command } => {
            runtime.block_on(rkube_image::cli::run(command, &data_dir))
        }
        Command::Killall { data_dir } => runtime.block_on(node::killall(&data_dir)),
    }
}
