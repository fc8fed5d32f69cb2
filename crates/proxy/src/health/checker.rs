//! The active checker of one upstream: every node probed on its own timer (`healthy.interval`
//! while healthy, `unhealthy.interval` while not), at most `concurrency` probes at once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tracing::debug;

use super::{Outcome, Source, UpstreamHealth};
use crate::config::resolve::Resolver;

/// A TCP connect to `host:port` within `limit`: lua-resty-healthcheck's `tcp` probe.
pub(crate) async fn tcp_probe(
    resolver: &Resolver,
    host: &str,
    port: u16,
    limit: Duration,
) -> Outcome {
    let ip = match resolver.resolve(host).await {
        Ok(ip) => ip,
        Err(error) => {
            debug!(%host, %error, "health check cannot resolve the node");
            return Outcome::TcpFailure;
        }
    };
    match timeout(limit, TcpStream::connect(SocketAddr::new(ip, port))).await {
        Ok(Ok(_stream)) => Outcome::Success,
        Ok(Err(error)) => {
            debug!(%ip, port, %error, "health check connect failed");
            Outcome::TcpFailure
        }
        Err(_) => Outcome::Timeout,
    }
}

/// Runs the active checks of `health` until the returned future is dropped. `probe(index)`
/// probes node `index`; the first probe of a node comes one interval after the start, as
/// lua-resty-healthcheck schedules them.
pub(crate) async fn run<P, F>(health: Arc<UpstreamHealth>, probe: P)
where
    P: Fn(usize) -> F + Clone + Send + 'static,
    F: Future<Output = Outcome> + Send,
{
    let Some(active) = health.checks.active.clone() else {
        return;
    };
    let permits = Arc::new(Semaphore::new(active.concurrency));
    let mut nodes = JoinSet::new();
    for index in 0..health.targets.len() {
        let (health, active, permits, probe) = (
            health.clone(),
            active.clone(),
            permits.clone(),
            probe.clone(),
        );
        nodes.spawn(async move {
            loop {
                let interval = if health.is_healthy(index) {
                    active.healthy_interval.get()
                } else {
                    active.unhealthy_interval.get()
                };
                sleep(interval).await;
                let Ok(_permit) = permits.acquire().await else {
                    return;
                };
                let outcome = probe(index).await;
                health.record(index, outcome, Source::Active);
            }
        });
    }
    // The node loops never end; dropping `nodes` (when this future is dropped) aborts them.
    while nodes.join_next().await.is_some() {}
}
