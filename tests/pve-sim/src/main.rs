//! `pve-sim --scenario FILE [--port N] [--bind ADDR] [--time-scale X] [--ca-out PATH] [--no-schema]
//! [--csrf-key-out PATH]`

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "pve-sim", about = "Simulated Proxmox VE API over HTTPS on loopback")]
struct Args {
    /// Scenario YAML (default: the bundled demo).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Loopback address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Simulated seconds per real second for task durations.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Simulated clock rate: 1 = real time, 600 = a week in ~17 minutes, 0 = stepped (`/_sim/clock`).
    #[arg(long, default_value_t = 1.0)]
    clock_rate: f64,
    /// Write the CA certificate (PEM) here.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Copy the simulator's `pve-www.key` (its CSRF tokens are signed from it as PVE signs them)
    /// here, for `pve-rebalancer serve --csrf-key`.
    #[arg(long)]
    csrf_key_out: Option<PathBuf>,
    /// Generate a large cluster instead of reading a scenario: SEED,NODES,GUESTS.
    #[arg(long)]
    generate: Option<String>,
    /// Serve without validating requests against the bundled PVE API schema.
    #[arg(long)]
    no_schema: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PVE_SIM_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let scenario = match (&args.generate, &args.scenario) {
        (Some(g), _) => {
            let p: Vec<u64> = g
                .split(',')
                .map(|x| x.trim().parse())
                .collect::<Result<_, _>>()
                .context("--generate SEED,NODES,GUESTS")?;
            anyhow::ensure!(p.len() == 3, "--generate SEED,NODES,GUESTS");
            pve_sim::generate(p[0], p[1] as usize, p[2] as usize)
        }
        (None, Some(p)) => pve_sim::Scenario::from_file(p)?,
        (None, None) => pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path())?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let cfg = pve_sim::SimConfig {
            scenario,
            bind: SocketAddr::new(args.bind, args.port),
            time_scale: args.time_scale,
            clock_rate: args.clock_rate,
            no_schema: args.no_schema,
        };
        let sim = pve_sim::start(cfg).await?;
        if let Some(p) = &args.ca_out {
            std::fs::write(p, &sim.ca_pem).with_context(|| format!("writing {}", p.display()))?;
        }
        if let Some(p) = &args.csrf_key_out {
            std::fs::copy(&sim.csrf_key, p).with_context(|| format!("writing {}", p.display()))?;
        }
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "pve-sim listening on {}", sim.base_url)?;
            out.flush()?;
        }
        wait_for_signal().await;
        sim.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
