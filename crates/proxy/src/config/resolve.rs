//! Node hosts that are domain names: resolved off the connection path into a shared cache,
//! as soon as a snapshot names them and again every [`REFRESH`]; a connection only reads the
//! cache (and resolves a name itself only if it races the first lookup).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::compiler::SnapshotHandle;

/// How often cached names are looked up again.
pub const REFRESH: Duration = Duration::from_secs(30);

/// A cache of name → addresses.
#[derive(Default)]
pub struct Resolver {
    cache: ArcSwap<HashMap<Box<str>, IpAddr>>,
}

async fn lookup(host: &str) -> io::Result<IpAddr> {
    let mut addrs = tokio::net::lookup_host((host, 0)).await?;
    addrs
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
}

impl Resolver {
    /// The address of a node host: an IP literal (IPv6 bracketed or not) as is, a name from the
    /// cache, or looked up now and cached.
    pub async fn resolve(&self, host: &str) -> io::Result<IpAddr> {
        if let Some(ip) = self.cached(host) {
            return Ok(ip);
        }
        let ip = lookup(host).await?;
        self.remember(host, ip);
        Ok(ip)
    }

    /// The address of a node host without waiting: an IP literal, or a name already cached.
    pub fn cached(&self, host: &str) -> Option<IpAddr> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse() {
            return Some(ip);
        }
        self.cache.load().get(host).copied()
    }

    fn remember(&self, host: &str, ip: IpAddr) {
        self.cache.rcu(|cache| {
            let mut next = HashMap::clone(cache);
            next.insert(host.into(), ip);
            next
        });
    }

    /// Resolves the names the cache does not hold yet; failures are logged and retried at the
    /// next refresh or by the connection that needs them.
    pub async fn warm<'a>(&self, hosts: impl Iterator<Item = &'a str>) {
        let missing: Vec<String> = {
            let cache = self.cache.load();
            hosts
                .filter(|h| !cache.contains_key(*h))
                .map(str::to_owned)
                .collect()
        };
        for host in missing {
            match lookup(&host).await {
                Ok(ip) => self.remember(&host, ip),
                Err(e) => tracing::warn!(%host, error = %e, "failed to resolve a node's domain"),
            }
        }
    }

    /// Looks every cached name up again; names that fail keep their last address.
    pub async fn refresh(&self) {
        let names: Vec<Box<str>> = self.cache.load().keys().cloned().collect();
        let mut fresh = HashMap::new();
        for name in names {
            match lookup(&name).await {
                Ok(ip) => {
                    fresh.insert(name, ip);
                }
                Err(e) => {
                    tracing::warn!(host = %name, error = %e, "failed to refresh domain, keeping its last address")
                }
            }
        }
        self.cache.rcu(|cache| {
            let mut next = HashMap::clone(cache);
            next.extend(fresh.iter().map(|(k, v)| (k.clone(), *v)));
            next
        });
    }

    /// Resolves the domains of every published snapshot, and refreshes the cache every
    /// [`REFRESH`], until the returned task is aborted.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        snapshots: SnapshotHandle,
    ) -> tokio::task::JoinHandle<()> {
        let resolver = self.clone();
        let mut published = snapshots.published();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(REFRESH);
            ticks.tick().await;
            loop {
                let snapshot = snapshots.load();
                resolver.warm(snapshot.domains()).await;
                drop(snapshot);
                tokio::select! {
                    _ = ticks.tick() => resolver.refresh().await,
                    changed = published.changed() => if changed.is_err() { return },
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_names_and_failures() {
        let resolver = Resolver::default();
        assert_eq!(
            resolver.resolve("127.0.0.2").await.unwrap(),
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            resolver.resolve("[::1]").await.unwrap(),
            "::1".parse::<IpAddr>().unwrap()
        );
        assert!(resolver.resolve("localhost").await.unwrap().is_loopback());
        assert!(resolver.cache.load().contains_key("localhost"));
        assert!(resolver.resolve("loc.invalid").await.is_err());
        resolver.refresh().await;
        assert!(resolver.cache.load().contains_key("localhost"));
        let fresh = Resolver::default();
        fresh.warm(["localhost", "loc.invalid"].into_iter()).await;
        assert!(fresh.cache.load().contains_key("localhost"));
        assert!(!fresh.cache.load().contains_key("loc.invalid"));
    }
}
