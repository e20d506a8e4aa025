//! `herald-bench`: Herald's load generator. It starts a local cluster
//! (etcd, a control plane, agents) through the integration-test harness,
//! points endpoints at a built-in receiver, publishes events over gRPC and
//! reports throughput, publish-to-arrival latency, duplicates, order
//! violations and each process's CPU and memory, next to a bare HTTP client
//! posting to the same receiver (the ceiling). See BENCHMARKS.md.
//!
//! The Herald binaries are found next to this one: build them in the same
//! profile (`cargo build --release --workspace --bins`).

mod analysis;
mod backlog;
mod ceiling;
mod chaos;
mod cluster;
mod idle;
mod load;
mod params;
mod procstat;
mod publish;
mod rebalance;
mod receiver;
mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use params::{Opts, Params};

/// Herald load generator.
#[derive(Debug, Parser)]
#[command(name = "herald-bench", about)]
struct Cli {
    /// Print the report as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Start the control plane with `--insecure-no-auth`, to measure what
    /// access control costs (publishers send the admin key either way).
    #[arg(long, global = true)]
    insecure_no_auth: bool,
    /// Run with cluster mutual TLS and a TLS API (certificates made for the
    /// run), as a deployment would.
    #[arg(long, global = true)]
    tls: bool,
    /// Publish through the control plane's JSON API (HTTP/1.1, JSON bodies)
    /// instead of gRPC, as a publisher without a gRPC stack would.
    #[arg(long, global = true)]
    http: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

/// One command per scenario; flags override its defaults.
#[derive(Debug, Subcommand)]
enum Scenario {
    /// 300 events over 10 endpoints; fails unless each arrives once, in
    /// order (the test script's pass).
    Smoke(Opts),
    /// 2,000 events to one endpoint (one publisher: its order must be defined).
    OneEndpoint(Opts),
    /// 20,000 events over 1,000 endpoints, 32 publishers.
    ManyEndpoints(Opts),
    /// 20,000 events over 10,000 endpoints behind a receiver that answers
    /// after 50 ms; the bare client runs 512 concurrent requests (the
    /// agent's --max-concurrency).
    SlowReceiver(Opts),
    /// 100,000 endpoints that get no event: memory per endpoint in the
    /// agent and the control plane.
    IdleEndpoints(Opts),
    /// 1,000,000 events queued over 100 endpoints while they cannot take
    /// them, then drained: drain rate, agent RSS over the drain, disk.
    /// `--restart-agent` kills -9 and restarts the agent before the drain.
    Backlog(Opts),
    /// 100,000 events queued on one agent, then a second agent joins: the
    /// time for half the slots and their queues to move; then the drain.
    Handoff(Opts),
    /// 100,000 events queued over 1,000 endpoints on 3 agents; a fourth
    /// joins, then is drained: the share of slots and queued events that
    /// move each time (bound: 1/4 + 2 %).
    Rebalance(Opts),
    /// Any mix of the flags (defaults: 1,000 events, 1 endpoint).
    Run(Opts),
    /// The failure run: agents killed -9 and restarted, a leader and an
    /// etcd member killed, a drain, a flaky receiver; fails on a lost or
    /// reordered event. Minutes long.
    Chaos(chaos::ChaosOpts),
}

/// The load flags of a scenario that has none.
static NO_OPTS: std::sync::LazyLock<Opts> = std::sync::LazyLock::new(Opts::default);

impl Scenario {
    /// The name, the flags given, and the scenario's defaults.
    fn resolve(&self) -> (&'static str, &Opts, Params) {
        let d = Params::default();
        match self {
            Scenario::Smoke(o) => (
                "smoke",
                o,
                Params {
                    events: 300,
                    endpoints: 10,
                    concurrency: 4,
                    stall_secs: 10,
                    ..d
                },
            ),
            Scenario::OneEndpoint(o) => (
                "one-endpoint",
                o,
                Params {
                    events: 2_000,
                    endpoints: 1,
                    ..d
                },
            ),
            Scenario::ManyEndpoints(o) => (
                "many-endpoints",
                o,
                Params {
                    events: 20_000,
                    endpoints: 1_000,
                    concurrency: 32,
                    ..d
                },
            ),
            Scenario::SlowReceiver(o) => (
                "slow-receiver",
                o,
                Params {
                    events: 20_000,
                    endpoints: 10_000,
                    concurrency: 32,
                    receiver_delay_ms: 50,
                    ceiling_concurrency: Some(512),
                    ..d
                },
            ),
            Scenario::IdleEndpoints(o) => (
                "idle-endpoints",
                o,
                Params {
                    endpoints: 100_000,
                    setup_concurrency: 32,
                    ..d
                },
            ),
            Scenario::Backlog(o) => (
                "backlog",
                o,
                Params {
                    events: 1_000_000,
                    endpoints: 100,
                    concurrency: 8,
                    batch_size: 100,
                    stall_secs: 60,
                    ..d
                },
            ),
            Scenario::Handoff(o) => (
                "handoff",
                o,
                Params {
                    events: 100_000,
                    endpoints: 1_000,
                    concurrency: 8,
                    batch_size: 100,
                    stall_secs: 60,
                    ..d
                },
            ),
            Scenario::Rebalance(o) => (
                "rebalance",
                o,
                Params {
                    events: 100_000,
                    endpoints: 1_000,
                    agents: 3,
                    concurrency: 8,
                    batch_size: 100,
                    ..d
                },
            ),
            Scenario::Run(o) => ("run", o, d),
            // Its own flags (`chaos::ChaosOpts`); `run` takes it first.
            Scenario::Chaos(_) => ("chaos", &NO_OPTS, d),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cluster::AUTH_OFF.store(cli.insecure_no_auth, std::sync::atomic::Ordering::Relaxed);
    cluster::TLS.store(cli.tls, std::sync::atomic::Ordering::Relaxed);
    cluster::HTTP.store(cli.http, std::sync::atomic::Ordering::Relaxed);
    // reqwest is built without a default TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // On Ctrl-C or SIGTERM the run is dropped, which kills every process it
    // started.
    tokio::select! {
        code = run(&cli) => code,
        _ = stop_signal() => {
            eprintln!("herald-bench: interrupted");
            ExitCode::from(130)
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run(cli: &Cli) -> ExitCode {
    if let Scenario::Chaos(o) = &cli.scenario {
        return match chaos::run(o).await {
            Ok(r) => match show(cli.json, &r, r.text()) {
                Ok(()) if r.missing == 0 => ExitCode::SUCCESS,
                Ok(()) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("herald-bench: error: {e:#}");
                    ExitCode::from(2)
                }
            },
            Err(e) => {
                eprintln!("herald-bench: error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let (name, opts, defaults) = cli.scenario.resolve();
    let p = opts.over(defaults);
    cluster::AGENT_MAX_CONCURRENCY.store(
        p.agent_max_concurrency.unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
    let printed = if matches!(cli.scenario, Scenario::IdleEndpoints(_)) {
        idle::run(name, &p)
            .await
            .and_then(|r| Ok((show(cli.json, &r, r.text())?, true)))
    } else if matches!(cli.scenario, Scenario::Rebalance(_)) {
        rebalance::run(name, &p)
            .await
            .and_then(|r| Ok((show(cli.json, &r, r.text())?, r.within_bound())))
    } else if let Scenario::Backlog(_) | Scenario::Handoff(_) = cli.scenario {
        let handoff = matches!(cli.scenario, Scenario::Handoff(_));
        backlog::run(name, &p, handoff)
            .await
            .and_then(|r| Ok((show(cli.json, &r, r.text())?, r.analysis.is_clean())))
    } else {
        load::run(name, &p)
            .await
            .and_then(|r| Ok((show(cli.json, &r, r.text())?, r.is_clean())))
    };
    match printed {
        Ok(((), true)) => ExitCode::SUCCESS,
        Ok(((), false)) => {
            eprintln!(
                "herald-bench: FAILED: events missing, duplicated, out of order or misrouted, or a bound missed"
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("herald-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Prints the report as JSON or as `text`.
fn show<T: serde::Serialize>(json: bool, report: &T, text: String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{text}");
    }
    Ok(())
}
