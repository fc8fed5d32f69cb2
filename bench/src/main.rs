//! `make bench`: MQTT load against mosquitto directly, through streamgate and through HAProxy,
//! in one run with the systems alternating, written to docs/benchmarks.md.
//!
//! Scenarios: idle hold (proxy RSS per idle connection), connect storm, TLS connect storm,
//! QoS 0 and QoS 1 publish; then configuration scale and UDP idle sessions, on streamgate
//! alone. Every load stays on
//! 127.0.0.0/8 and is bounded by the sizes below.

mod admin;
mod client;
mod kind;
mod lab;
mod metrics;
mod mqtt;
mod placement;
mod report;
mod result;
mod rounds;
mod scenario;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Parser;

use kind::Kind;
use placement::CpuList;
use report::RunResult;
use scenario::{config_scale, udp_idle};

/// The scenarios run against every system, in rounds.
const MQTT_SCENARIOS: [&str; 11] = [
    "idle",
    "silent",
    "idle-tls",
    "idle-mtls",
    "idle-tls-upstream",
    "storm",
    "tls",
    "tls-resumed",
    "qos0",
    "qos1",
    "qos0-tls",
];
/// The scenarios run once, on streamgate alone.
const CONFIG_SCALE: &str = "config-scale";
const UDP_IDLE: &str = "udp-idle";

/// Side-by-side MQTT benchmarks of direct-to-broker, streamgate and HAProxy.
#[derive(Parser, Debug, Clone)]
#[command(name = "mqtt-bench")]
pub struct Args {
    /// Rounds; each round runs every system once, in a rotated order. Figures are medians.
    #[arg(long, default_value_t = 6)]
    pub rounds: usize,
    /// Systems to compare (direct, streamgate, the same build again as streamgate-aa for the
    /// noise floor, streamgate-pp with a PROXY protocol listener (idle hold only), haproxy;
    /// also streamgate-info, streamgate-1w with one worker thread, haproxy-1t with
    /// `nbthread 1`, streamgate-b with `--candidate`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,streamgate,streamgate-aa,streamgate-pp,haproxy"
    )]
    pub systems: Vec<String>,
    /// Scenarios to run (idle, silent, idle-tls, idle-mtls, idle-tls-upstream, storm, tls,
    /// tls-resumed, qos0, qos1, qos0-tls, config-scale, udp-idle). Only `config-scale` and
    /// `udp-idle` start no broker and run no rounds.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "idle,silent,idle-tls,idle-mtls,idle-tls-upstream,storm,tls,tls-resumed,qos0,qos1,qos0-tls,config-scale,udp-idle"
    )]
    pub scenarios: Vec<String>,
    /// UDP idle sessions: sessions held open.
    #[arg(long, default_value_t = 5000)]
    pub udp_sessions: usize,
    /// Configuration scale: stream routes written through the Admin API (0: not run).
    #[arg(long, default_value_t = 10_000)]
    pub config_routes: usize,
    /// Configuration scale: seconds the fill may take; it stops there and the rest is measured
    /// at the routes reached.
    #[arg(long, default_value_t = 1200)]
    pub config_fill_limit: u64,
    /// Idle hold: clients held open.
    #[arg(long, default_value_t = 5000)]
    pub idle_clients: usize,
    /// Idle TLS holds (plain TLS, mTLS, TLS to the brokers): clients held open over TLS.
    #[arg(long, default_value_t = 2000)]
    pub idle_tls_clients: usize,
    /// Idle hold: clients opened and closed before the first reading.
    #[arg(long, default_value_t = 200)]
    pub idle_warmup: usize,
    /// Connect storm: clients.
    #[arg(long, default_value_t = 20000)]
    pub storm_clients: usize,
    /// Connect storm: clients connecting at once.
    #[arg(long, default_value_t = 32)]
    pub storm_concurrency: usize,
    /// TLS connect storm: clients.
    #[arg(long, default_value_t = 4000)]
    pub tls_clients: usize,
    /// TLS connect storm: clients connecting at once.
    #[arg(long, default_value_t = 16)]
    pub tls_concurrency: usize,
    /// Publish: publisher → subscriber pairs.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Publish: payload bytes (at least 8: the send time).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Publish: messages in flight per pair.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Publish: seconds of warm-up before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub publish_warmup: f64,
    /// Publish: seconds measured.
    #[arg(long, default_value_t = 5.0)]
    pub publish_secs: f64,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// HAProxy configuration to fill in (default: ../shared/bench/haproxy-mqtt.cfg beside the
    /// repository).
    #[arg(long)]
    pub haproxy_cfg: Option<PathBuf>,
    /// RUST_LOG for the `streamgate` system (default: unset, i.e. the configured level).
    #[arg(long)]
    pub streamgate_log: Option<String>,
    /// Runs the proxies on these CPUs only (a `taskset` list such as `0`), to compare them on
    /// cores of their own; HAProxy then gets one thread per CPU listed (`nbthread`), as
    /// streamgate's `worker_processes: auto` does. Pair it with `--others-cpus`.
    #[arg(long)]
    pub proxy_cpus: Option<CpuList>,
    /// Another streamgate binary, run as the system `streamgate-b` and compared with
    /// `streamgate` beside the A/A floor (add `streamgate-b` to `--systems`).
    #[arg(long)]
    pub candidate: Option<PathBuf>,
    /// Runs the load generator and the brokers on these CPUs only.
    #[arg(long)]
    pub others_cpus: Option<CpuList>,
    /// Criterion outputs (`--output-format bencher`) to include as micro-benchmarks.
    #[arg(long)]
    pub micro: Vec<PathBuf>,
    /// Before starting, wait until the machine is less busy than this fraction (other
    /// processes' CPU use over 3 consecutive seconds), for at most `--max-wait` seconds.
    #[arg(long, default_value_t = 0.25)]
    pub max_busy: f64,
    /// Seconds to wait at most for a quiet machine.
    #[arg(long, default_value_t = 90)]
    pub max_wait: u64,
    /// Report to write (default docs/benchmarks.md); `-` prints it only.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let systems = args
        .systems
        .iter()
        .map(|s| Kind::parse(s))
        .collect::<Result<Vec<_>>>()?;
    for s in &args.scenarios {
        if !MQTT_SCENARIOS.contains(&s.as_str()) && s != CONFIG_SCALE && s != UDP_IDLE {
            bail!("unknown scenario {s:?}");
        }
    }
    let mqtt = args
        .scenarios
        .iter()
        .any(|s| MQTT_SCENARIOS.contains(&s.as_str()));
    // Counted before the load generator may be pinned to fewer of them.
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if let Some(cpus) = &args.others_cpus {
        cpus.pin_main_thread()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let quiet = wait_quiet(args.max_busy, Duration::from_secs(args.max_wait));
    let started = Instant::now();
    let mut results: BTreeMap<Kind, Vec<RunResult>> = BTreeMap::new();
    if mqtt {
        rounds::run(&args, &systems, &runtime, started, &mut results)?;
    }
    let scale =
        (args.scenarios.iter().any(|s| s == CONFIG_SCALE) && args.config_routes > 0).then(|| {
            let options = config_scale::Options {
                routes: args.config_routes,
                fill_limit: Duration::from_secs(args.config_fill_limit),
                proxy_cpus: args.proxy_cpus.clone(),
                streamgate_log: args.streamgate_log.clone(),
            };
            config_scale::run(&options, &runtime)
        });
    let udp = args
        .scenarios
        .iter()
        .any(|s| s == UDP_IDLE)
        .then(|| udp_idle::run(args.udp_sessions));

    let conditions = report::Conditions {
        busy_before: quiet.0,
        waited: quiet.1,
        load_before: quiet.2,
        load_after: stats::load_average(),
        took: started.elapsed(),
        cores,
    };
    let alone = report::Alone {
        scale: scale.as_ref(),
        udp: udp.as_ref(),
    };
    let report = report::render(&args, &systems, &results, &alone, &conditions)?;
    match args.out.as_deref() {
        Some(p) if p == Path::new("-") => print!("{report}"),
        out => {
            let path = out
                .map(Path::to_path_buf)
                .unwrap_or_else(|| repo_root().join("docs/benchmarks.md"));
            let intro = report::intro(&path);
            std::fs::write(&path, format!("{intro}{report}"))?;
            eprintln!("wrote {}", path.display());
            if mqtt {
                print!("{}", report::summary(&systems, &results));
            }
            if let Some(scale) = &scale {
                print!("\nConfiguration scale:\n{}", scale.table());
            }
            if let Some(udp) = &udp {
                print!("\n{}", udp.section());
            }
        }
    }
    Ok(())
}

/// Waits (bounded) for 3 consecutive seconds in which the machine is less than `max_busy`
/// busy; returns the last busy fraction seen, the time waited and the load average then.
fn wait_quiet(max_busy: f64, max_wait: Duration) -> (f64, Duration, String) {
    let start = Instant::now();
    let mut quiet_seconds = 0;
    let mut busy = stats::machine_busy(Duration::from_secs(1));
    while start.elapsed() < max_wait {
        if busy < max_busy {
            quiet_seconds += 1;
            if quiet_seconds >= 3 {
                break;
            }
        } else {
            quiet_seconds = 0;
            eprintln!("waiting for a quieter machine: {:.0}% busy", busy * 100.0);
        }
        busy = stats::machine_busy(Duration::from_secs(1));
    }
    (busy, start.elapsed(), stats::load_average())
}
