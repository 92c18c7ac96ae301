//! Container start latency: create + start of a container running `true` until it has
//! exited, with the embedded runtime and (when installed) with `runc run` on the same rootfs.
//! Run as root: `cargo bench -p rkube-runtime --bench start`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, container_config};
use rkube_cri::{ContainerState, RuntimeService};

const RUNS: usize = 50;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

async fn bench_rkube(env: &Env) -> Vec<Duration> {
    let (sid, scfg) = env.run_sandbox("bench").await;
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..RUNS + 3 {
        let cfg = container_config(&format!("c{i}"), &["true"]);
        let start = Instant::now();
        let id = env
            .runtime
            .create_container(&sid, &cfg, &scfg)
            .await
            .unwrap();
        env.runtime.start_container(&id).await.unwrap();
        loop {
            let st = env.runtime.container_status(&id).await.unwrap();
            if st.container.state == ContainerState::Exited {
                assert_eq!(st.exit_code, 0);
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let took = start.elapsed();
        // The first runs warm the page cache.
        if i >= 3 {
            times.push(took);
        }
        env.runtime.remove_container(&id).await.unwrap();
    }
    times
}

fn bench_runc(layer: &Path, dir: &Path) -> Result<Vec<Duration>, String> {
    let which = Command::new("sh")
        .args(["-c", "command -v runc"])
        .output()
        .map_err(|e| e.to_string())?;
    if !which.status.success() {
        return Err(
            "runc is not installed (Debian package `runc`, see scripts/install-test-deps.sh)"
                .into(),
        );
    }
    let bundle = dir.join("runc-bundle");
    std::fs::create_dir_all(&bundle).map_err(|e| e.to_string())?;
    let ok = Command::new("cp")
        .arg("-a")
        .arg(layer)
        .arg(bundle.join("rootfs"))
        .status()
        .map_err(|e| e.to_string())?;
    if !ok.success() {
        return Err("copying the rootfs failed".into());
    }
    let ok = Command::new("runc")
        .arg("spec")
        .current_dir(&bundle)
        .status()
        .map_err(|e| e.to_string())?;
    if !ok.success() {
        return Err("runc spec failed".into());
    }
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["true"]);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).map_err(|e| e.to_string())?;
    let state_root = dir.join("runc-state");
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..RUNS + 3 {
        let start = Instant::now();
        let out = Command::new("runc")
            .arg("--root")
            .arg(&state_root)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("rkube-bench-{}-{i}", std::process::id()))
            .output()
            .map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if !out.status.success() {
            return Err(format!(
                "runc run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if i >= 3 {
            times.push(took);
        }
    }
    Ok(times)
}

fn main() {
    rkube_runtime::run_shim_if_requested();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = Env::new();
    let rkube = rt.block_on(bench_rkube(&env));
    rt.block_on(env.cleanup());
    let runc = bench_runc(&env.layer, env.tmp.path());
    let (p50, p99) = summary(rkube);
    println!("container start (create + start + exit of `true`), {RUNS} runs");
    println!("{:<28} {:>10} {:>10}", "", "p50", "p99");
    println!(
        "{:<28} {:>10.1?} {:>10.1?}",
        "rkube embedded runtime", p50, p99
    );
    match runc {
        Ok(v) => {
            let (p50, p99) = summary(v);
            println!(
                "{:<28} {:>10.1?} {:>10.1?}",
                "runc run (same rootfs)", p50, p99
            );
            println!(
                "(runc also creates a network namespace per run; rkube's is the sandbox's, made once)"
            );
        }
        Err(e) => println!("{:<28} skipped: {e}", "runc run"),
    }
}
