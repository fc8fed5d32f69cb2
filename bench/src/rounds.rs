//! The MQTT scenarios in rounds: each round starts every system afresh, in a rotated order, and
//! runs every selected scenario against it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client::{self, Way};
use crate::kind::Kind;
use crate::lab::{self, Lab, LabOptions, System};
use crate::report::RunResult;
use crate::scenario::{idle, publish, storm};
use crate::{repo_root, Args};

/// The MQTT scenarios: every system started afresh in each round, in a rotated order.
pub fn run(
    args: &Args,
    systems: &[Kind],
    runtime: &tokio::runtime::Runtime,
    started: Instant,
    results: &mut BTreeMap<Kind, Vec<RunResult>>,
) -> Result<()> {
    let lab = Lab::start(LabOptions {
        haproxy_cfg: args
            .haproxy_cfg
            .clone()
            .unwrap_or_else(|| repo_root().join("../shared/bench/haproxy-mqtt.cfg")),
        streamgate_log: args.streamgate_log.clone(),
        proxy_cpus: args.proxy_cpus.clone(),
        candidate: args.candidate.clone(),
    })?;
    let brokers: Vec<_> = lab.brokers.iter().map(|b| b.addr).collect();
    runtime.block_on(publish::label_brokers(&brokers))?;
    let tls = client::Tls::new(lab::SNI)?;
    for round in 0..args.rounds {
        let mut order = systems.to_vec();
        order.rotate_left(round % systems.len().max(1));
        for kind in order {
            let tag = format!("{}-r{round}", kind.name());
            // Silent clients on a process of their own: the other scenarios would leave it
            // freed memory to reuse.
            let silent = if args.scenarios.iter().any(|s| s == "silent") && kind != Kind::Direct {
                let system = lab.system(kind)?;
                Some(runtime.block_on(run_silent(args, &system, &tls, &tag)))
            } else {
                None
            };
            // The TLS holds likewise, each on a process of its own.
            let mut holds = Vec::new();
            for hold in TlsHold::ALL {
                if args.scenarios.iter().any(|s| s == hold.scenario())
                    && kind != Kind::Direct
                    && !kind.proxied()
                {
                    let system = lab.system(kind)?;
                    let held =
                        runtime.block_on(run_tls_hold(args, &lab, &system, hold, &tls, &tag));
                    holds.push((hold, held));
                }
            }
            let system = lab.system(kind)?;
            if let Some(pid) = system.pid {
                eprintln!("{} pid {pid}", kind.name());
            }
            let mut result = runtime.block_on(run_system(args, &system, &tls, &tag));
            for (hold, held) in holds {
                match (held, hold) {
                    (Ok(bytes), TlsHold::Terminated) => result.idle_tls = Some(bytes),
                    (Ok(bytes), TlsHold::Mtls) => result.idle_mtls = Some(bytes),
                    (Ok(bytes), TlsHold::Upstream) => result.idle_tls_upstream = Some(bytes),
                    (Err(e), _) => result.errors.push(format!("{}: {e:#}", hold.scenario())),
                }
            }
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
    Ok(())
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
                let proxied = system.kind.proxied();
                client::open_plain_as(*addr, &id, proxied)
                    .await
                    .map(|o| drop(o.stream))
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
    let way = Way::Plain {
        proxied: system.kind.proxied(),
    };
    idle::silent(
        &system.plain,
        &way,
        pid,
        args.idle_clients,
        args.idle_warmup,
        args.storm_concurrency,
        &format!("{tag}-silent"),
    )
    .await
}

/// The idle TLS holds, each on a freshly started proxy (after another hold, the freed memory
/// of its connections would be reused).
#[derive(Clone, Copy, Debug)]
enum TlsHold {
    /// TLS ends at the proxy, which speaks plain MQTT to the brokers.
    Terminated,
    /// Clients present a certificate the proxy verifies.
    Mtls,
    /// The proxy speaks TLS to the brokers too.
    Upstream,
}

impl TlsHold {
    const ALL: [TlsHold; 3] = [TlsHold::Terminated, TlsHold::Mtls, TlsHold::Upstream];

    fn scenario(self) -> &'static str {
        match self {
            TlsHold::Terminated => "idle-tls",
            TlsHold::Mtls => "idle-mtls",
            TlsHold::Upstream => "idle-tls-upstream",
        }
    }
}

/// Measures one of [`TlsHold`] on a freshly started proxy.
async fn run_tls_hold(
    args: &Args,
    lab: &Lab,
    system: &System,
    hold: TlsHold,
    tls: &client::Tls,
    tag: &str,
) -> Result<f64> {
    ready(system, tls).await?;
    let pid = system.pid.context("no proxy process")?;
    let (addrs, way) = match hold {
        TlsHold::Terminated => (&system.tls, tls.clone()),
        TlsHold::Mtls => (
            &system.mtls,
            client::Tls::with_certificate(lab::MTLS_SNI, &lab.device)?,
        ),
        TlsHold::Upstream => (&system.tls_upstream, tls.clone()),
    };
    idle::run(
        addrs,
        &Way::Tls(way),
        pid,
        args.idle_tls_clients,
        args.idle_warmup,
        args.tls_concurrency,
        &format!("{tag}-{}", hold.scenario()),
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
        let way = Way::Plain {
            proxied: system.kind.proxied(),
        };
        match idle::run(
            &system.plain,
            &way,
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
    // A PROXY protocol listener is measured on the idle hold only.
    if system.kind.proxied() {
        return result;
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
    if on("tls-resumed") {
        let outcome = async {
            let resuming = client::Tls::resuming(lab::SNI)?;
            storm::run(
                &system.tls,
                Some(&resuming),
                args.tls_clients,
                args.tls_concurrency,
                &format!("{tag}-tls-resumed"),
                system.pid,
            )
            .await
        };
        result.tls_resumed = kept("tls-resumed", outcome.await, &mut result.errors);
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
        let plain = Way::Plain { proxied: false };
        let tag = format!("{tag}-q{qos}");
        let run = publish::run(&system.plain, &plain, system.pid, sizes, &tag).await;
        match (run, qos) {
            (Ok(p), 0) => result.qos0 = Some(p),
            (Ok(p), _) => result.qos1 = Some(p),
            (Err(e), _) => result.errors.push(format!("qos{qos}: {e:#}")),
        }
    }
    if on("qos0-tls") {
        let sizes = publish::Sizes {
            pairs: args.publishers,
            qos: 0,
            payload: args.payload,
            window: args.window.max(1),
            warmup: Duration::from_secs_f64(args.publish_warmup),
            measure: Duration::from_secs_f64(args.publish_secs),
        };
        let way = Way::Tls(tls.clone());
        let tag = format!("{tag}-q0-tls");
        match publish::run(&system.tls, &way, system.pid, sizes, &tag).await {
            Ok(p) => result.qos0_tls = Some(p),
            Err(e) => result.errors.push(format!("qos0-tls: {e:#}")),
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
