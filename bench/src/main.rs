//! `make bench`: MQTT load against mosquitto directly, through streamgate and through HAProxy,
//! in one run with the systems alternating, written to docs/benchmarks.md.
//!
//! Scenarios: idle hold (proxy RSS per idle connection), connect storm, TLS connect storm,
//! QoS 0 and QoS 1 publish. Every load stays on 127.0.0.0/8 and is bounded by the sizes below.

mod client;
mod kind;
mod lab;
mod metrics;
mod mqtt;
mod placement;
mod report;
mod scenario;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use kind::Kind;
use lab::{Lab, LabOptions, System};
use placement::CpuList;
use report::RunResult;
use scenario::{idle, publish, storm};

/// Side-by-side MQTT benchmarks of direct-to-broker, streamgate and HAProxy.
#[derive(Parser, Debug, Clone)]
#[command(name = "mqtt-bench")]
pub struct Args {
    /// Rounds; each round runs every system once, in a rotated order. Figures are medians.
    #[arg(long, default_value_t = 6)]
    pub rounds: usize,
    /// Systems to compare (direct, streamgate, haproxy; also streamgate-info, streamgate-1w with
    /// one worker thread, haproxy-1t with `nbthread 1`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,streamgate,haproxy"
    )]
    pub systems: Vec<String>,
    /// Scenarios to run (idle, silent, storm, tls, qos0, qos1).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "idle,silent,storm,tls,qos0,qos1"
    )]
    pub scenarios: Vec<String>,
    /// Idle hold: clients held open.
    #[arg(long, default_value_t = 5000)]
    pub idle_clients: usize,
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
        if !["idle", "silent", "storm", "tls", "qos0", "qos1"].contains(&s.as_str()) {
            bail!("unknown scenario {s:?}");
        }
    }
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
    let lab = Lab::start(LabOptions {
        haproxy_cfg: args
            .haproxy_cfg
            .clone()
            .unwrap_or_else(|| repo_root().join("../shared/bench/haproxy-mqtt.cfg")),
        streamgate_log: args.streamgate_log.clone(),
        proxy_cpus: args.proxy_cpus.clone(),
    })?;
    let brokers: Vec<_> = lab.brokers.iter().map(|b| b.addr).collect();
    runtime.block_on(publish::label_brokers(&brokers))?;
    let tls = client::Tls::new(lab::SNI)?;

    let mut results: BTreeMap<Kind, Vec<RunResult>> = BTreeMap::new();
    for round in 0..args.rounds {
        let mut order = systems.clone();
        order.rotate_left(round % systems.len().max(1));
        for kind in order {
            let tag = format!("{}-r{round}", kind.name());
            // Silent clients on a process of their own: the other scenarios would leave it
            // freed memory to reuse.
            let silent = if args.scenarios.iter().any(|s| s == "silent") && kind != Kind::Direct {
                let system = lab.system(kind)?;
                Some(runtime.block_on(run_silent(&args, &system, &tls, &tag)))
            } else {
                None
            };
            let system = lab.system(kind)?;
            if let Some(pid) = system.pid {
                eprintln!("{} pid {pid}", kind.name());
            }
            let mut result = runtime.block_on(run_system(&args, &system, &tls, &tag));
            match silent {
                Some(Ok(bytes)) => result.silent = Some(bytes),
                Some(Err(e)) => result.errors.push(format!("silent: {e:#}")),
                None => {}
            }
            eprintln!(
                "[{:>5.0}s] {tag}: {}",
                started.elapsed().as_secs_f64(),
                result.line()
            );
            results.entry(kind).or_default().push(result);
        }
    }

    let conditions = report::Conditions {
        busy_before: quiet.0,
        waited: quiet.1,
        load_before: quiet.2,
        load_after: stats::load_average(),
        took: started.elapsed(),
        cores,
    };
    let report = report::render(&args, &systems, &results, &conditions)?;
    match args.out.as_deref() {
        Some(p) if p == Path::new("-") => print!("{report}"),
        out => {
            let path = out
                .map(Path::to_path_buf)
                .unwrap_or_else(|| repo_root().join("docs/benchmarks.md"));
            let intro = report::intro(&path);
            std::fs::write(&path, format!("{intro}{report}"))?;
            eprintln!("wrote {}", path.display());
            print!("{}", report::summary(&systems, &results));
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

/// Waits until the system answers MQTT on every plain and TLS address.
async fn ready(system: &System, tls: &client::Tls) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, addr) in system.plain.iter().chain(&system.tls).enumerate() {
        let is_tls = i >= system.plain.len();
        loop {
            let id = format!("probe-{}-{i}", system.kind.name());
            let ok = if is_tls {
                client::open_tls(*addr, tls, &id)
                    .await
                    .map(|o| drop(o.stream))
            } else {
                client::open_plain(*addr, &id).await.map(|o| drop(o.stream))
            };
            match ok {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    bail!("{} never answered on {addr}: {e}", system.kind.name())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    Ok(())
}

/// Measures silent clients on a freshly started proxy.
async fn run_silent(args: &Args, system: &System, tls: &client::Tls, tag: &str) -> Result<f64> {
    ready(system, tls).await?;
    let pid = system.pid.context("no proxy process")?;
    idle::silent(
        &system.plain,
        pid,
        args.idle_clients,
        args.idle_warmup,
        args.storm_concurrency,
        &format!("{tag}-silent"),
    )
    .await
}

/// Runs every selected scenario against one freshly started system.
async fn run_system(args: &Args, system: &System, tls: &client::Tls, tag: &str) -> RunResult {
    let mut result = RunResult::default();
    if let Err(e) = ready(system, tls).await {
        result.errors.push(format!("start: {e:#}"));
        return result;
    }
    let on = |s: &str| args.scenarios.iter().any(|x| x == s);
    // Idle first, on a fresh process: later scenarios would leave freed memory to reuse.
    if let (true, Some(pid)) = (on("idle"), system.pid) {
        match idle::run(
            &system.plain,
            pid,
            args.idle_clients,
            args.idle_warmup,
            args.storm_concurrency,
            &format!("{tag}-idle"),
        )
        .await
        {
            Ok(bytes) => result.idle = Some(bytes),
            Err(e) => result.errors.push(format!("idle: {e:#}")),
        }
    }
    if on("storm") {
        let outcome = storm::run(
            &system.plain,
            None,
            args.storm_clients,
            args.storm_concurrency,
            &format!("{tag}-storm"),
            system.pid,
        )
        .await;
        result.storm = kept("storm", outcome, &mut result.errors);
    }
    if on("tls") {
        let outcome = storm::run(
            &system.tls,
            Some(tls),
            args.tls_clients,
            args.tls_concurrency,
            &format!("{tag}-tls"),
            system.pid,
        )
        .await;
        result.tls = kept("tls", outcome, &mut result.errors);
    }
    for qos in [0u8, 1] {
        if !on(&format!("qos{qos}")) {
            continue;
        }
        let sizes = publish::Sizes {
            pairs: args.publishers,
            qos,
            payload: args.payload,
            window: args.window.max(1),
            warmup: Duration::from_secs_f64(args.publish_warmup),
            measure: Duration::from_secs_f64(args.publish_secs),
        };
        let run = publish::run(&system.plain, system.pid, sizes, &format!("{tag}-q{qos}")).await;
        match (run, qos) {
            (Ok(p), 0) => result.qos0 = Some(p),
            (Ok(p), _) => result.qos1 = Some(p),
            (Err(e), _) => result.errors.push(format!("qos{qos}: {e:#}")),
        }
    }
    result
}

/// Keeps a storm's figures, noting the clients that failed, or the error that stopped it.
fn kept(
    name: &str,
    outcome: Result<storm::Storm>,
    errors: &mut Vec<String>,
) -> Option<storm::Storm> {
    match outcome {
        Ok(storm) => {
            if storm.errors > 0 {
                errors.push(format!("{name}: {} clients failed", storm.errors));
            }
            Some(storm)
        }
        Err(e) => {
            errors.push(format!("{name}: {e:#}"));
            None
        }
    }
}
