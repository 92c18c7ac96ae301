//! `rkube`: the one binary. It parses flags and composes the crates; behaviour lives in them.

mod agent;
mod bootstrap;
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
}

fn main() -> anyhow::Result<()> {
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
    }
}
