//! Configuration scale: streamgate alone with N stream routes on its embedded store. How the
//! cost of an Admin API write, the delay before a write takes effect and the start time grow
//! with N (issue 20: they should not).

mod gateway;
mod probe;
mod table;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use tokio::runtime::Runtime;

use crate::admin::Admin;
use crate::placement::CpuList;
use gateway::Gateway;
use probe::{Probe, PROBE_ROUTE};

/// Timed writes of the probe route at N routes, after one warm-up write.
pub const EFFECT_WRITES: usize = 20;

/// How long one write may take to reach a client.
const EFFECT_PATIENCE: Duration = Duration::from_secs(10);

/// How long a restarted gateway may take to serve the probe route.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// The PUTs whose latency is compared: the first ones and the last ones.
pub const WINDOW: usize = 200;

/// Sizes and placement of the scenario.
pub struct Options {
    /// Stream routes to fill in.
    pub routes: usize,
    /// The fill stops here, and the rest is measured at the size reached.
    pub fill_limit: Duration,
    pub proxy_cpus: Option<CpuList>,
    pub streamgate_log: Option<String>,
}

/// What the scenario measured; what it could not measure is in `errors`.
#[derive(Debug, Default)]
pub struct ConfigScale {
    /// Routes asked for.
    pub routes: usize,
    /// Every fill PUT's latency, in order (nanoseconds); its length is the routes reached.
    pub put_ns: Vec<u64>,
    pub fill_time: Duration,
    /// The fill met its time limit before `routes`.
    pub fill_cut: Option<Duration>,
    /// From a probe route PUT's answer to the first connection it routed (nanoseconds).
    pub effect_ns: Vec<u64>,
    /// From SIGTERM to the exit, at the routes reached.
    pub stop: Option<Duration>,
    /// From spawn to the probe route serving, at the routes reached.
    pub start: Option<Duration>,
    pub errors: Vec<String>,
}

/// Runs the scenario; a step that fails ends it with what was measured so far, and the end of
/// the gateway's log.
pub fn run(options: &Options, runtime: &Runtime) -> ConfigScale {
    let mut figures = ConfigScale {
        routes: options.routes,
        ..ConfigScale::default()
    };
    match Gateway::new(options.proxy_cpus.clone(), options.streamgate_log.clone()) {
        Ok(mut gateway) => {
            if let Err(e) = measure(&mut gateway, options, runtime, &mut figures) {
                figures
                    .errors
                    .push(format!("{e:#}\n{}", gateway.log_tail()));
            }
        }
        Err(e) => figures.errors.push(format!("{e:#}")),
    }
    figures
}

fn measure(
    gateway: &mut Gateway,
    options: &Options,
    runtime: &Runtime,
    figures: &mut ConfigScale,
) -> Result<()> {
    gateway.spawn()?;
    let admin = Admin::new(gateway.admin_port);
    admin.wait_ready()?;
    fill(&admin, options, figures)?;
    let probe = runtime.block_on(Probe::bind(gateway.plain))?;
    let target = write_to_effect(&admin, &probe, runtime, figures)?;

    figures.stop = Some(gateway.stop()?);
    let spawned = Instant::now();
    gateway.spawn()?;
    let served = runtime
        .block_on(probe.until_served(target, START_PATIENCE))
        .context("after a restart")?;
    figures.start = Some(served - spawned);
    Ok(())
}

/// Route `i` (from 1): a source address of its own in 10.0.0.0/8, so that no two routes
/// match the same clients and none matches the probe's, the mqtt-proxy plugin, and an inline
/// chash upstream over three nodes of its own (nothing listens there; nothing connects).
fn route(i: usize) -> serde_json::Value {
    let remote = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    let node = |k: usize| format!("127.0.0.1:{}", 1024 + (3 * i + k) % 64_000);
    json!({
        "remote_addr": remote,
        "plugins": {"mqtt-proxy": {"protocol_level": 4}},
        "upstream": {
            "type": "chash",
            "key": "mqtt_client_id",
            "nodes": {node(0): 1, node(1): 1, node(2): 1}
        }
    })
}

/// PUTs the routes one after another on one connection, timing each.
fn fill(admin: &Admin, options: &Options, figures: &mut ConfigScale) -> Result<()> {
    let start = Instant::now();
    let every = (options.routes / 10).max(1);
    for i in 1..=options.routes {
        let body = route(i);
        let put = Instant::now();
        admin.put(&format!("stream_routes/scale-{i:06}"), body)?;
        figures.put_ns.push(put.elapsed().as_nanos() as u64);
        figures.fill_time = start.elapsed();
        if i % every == 0 {
            eprintln!(
                "config-scale: {i} routes in {:.1} s",
                figures.fill_time.as_secs_f64()
            );
        }
        if figures.fill_time > options.fill_limit && i < options.routes {
            figures.fill_cut = Some(options.fill_limit);
            eprintln!(
                "config-scale: fill stopped at {i} routes (limit {:?})",
                options.fill_limit
            );
            break;
        }
    }
    Ok(())
}

/// Rewrites the probe route, alternating its upstream between the two listeners, and times
/// each write until a client lands on the listener it names; returns the last one named.
fn write_to_effect(
    admin: &Admin,
    probe: &Probe,
    runtime: &Runtime,
    figures: &mut ConfigScale,
) -> Result<usize> {
    let mut target = 0;
    // Write 0 is not timed: it adds the only route without mqtt-proxy, which turns deferred
    // accept off on the plain listener (see crates/proxy/src/deferred.rs).
    for write in 0..=EFFECT_WRITES {
        target = write % 2;
        admin.put(PROBE_ROUTE, probe.route(target)?)?;
        let answered = Instant::now();
        let served = runtime.block_on(probe.until_served(target, EFFECT_PATIENCE))?;
        if write > 0 {
            let took = served.saturating_duration_since(answered);
            figures.effect_ns.push(took.as_nanos() as u64);
        }
    }
    Ok(target)
}
