//! The immutable, compiled view of the configuration that connections read, and the object set
//! it is compiled from.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;
use sg_model::{Keyring, Kind};

use crate::route::{Route, RouteTable};
use crate::tls::TlsTable;
use crate::upstream::Upstream;

/// Every stored object by kind and id, in store (id) order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectSet {
    objects: BTreeMap<Kind, BTreeMap<String, Value>>,
}

impl ObjectSet {
    pub fn insert(&mut self, kind: Kind, id: String, value: Value) {
        self.objects.entry(kind).or_default().insert(id, value);
    }

    pub fn remove(&mut self, kind: Kind, id: &str) {
        if let Some(objects) = self.objects.get_mut(&kind) {
            objects.remove(id);
        }
    }

    /// The objects of one kind, ordered by id.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = (&str, &Value)> {
        self.objects
            .get(&kind)
            .into_iter()
            .flatten()
            .map(|(id, value)| (id.as_str(), value))
    }
}

/// One published configuration: what every new connection sees.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The store revision this snapshot reflects.
    pub revision: u64,
    pub routes: RouteTable,
    /// Server SSL objects by SNI and client SSL objects by id.
    pub tls: TlsTable,
    /// Compiled upstreams by key (`upstreams/<id>`, `stream_routes/<id>` for inline ones), kept
    /// so the next compilation can carry balancer state over.
    upstreams: HashMap<String, Arc<Upstream>>,
}

impl Snapshot {
    /// Compiles the full object set. Objects that cannot be compiled are logged and left out;
    /// `previous` lends its balancer state (least_conn counts) to unchanged nodes.
    pub fn compile(
        revision: u64,
        objects: &ObjectSet,
        previous: Option<&Snapshot>,
        keyring: &Keyring,
    ) -> Snapshot {
        let tls = TlsTable::compile(objects.of(Kind::Ssl), keyring, previous.map(|p| &p.tls));
        let mut upstreams = HashMap::new();
        let mut compile_upstream = |key: String, conf: &Value| -> Option<Arc<Upstream>> {
            let before = previous
                .and_then(|p| p.upstreams.get(&key))
                .map(Arc::as_ref);
            match Upstream::compile(key.clone(), conf, before, &tls, keyring) {
                Ok(upstream) => {
                    let upstream = Arc::new(upstream);
                    upstreams.insert(key, upstream.clone());
                    Some(upstream)
                }
                Err(reason) => {
                    tracing::warn!(upstream = %key, %reason, "upstream left out of the snapshot");
                    None
                }
            }
        };
        let by_id: HashMap<&str, Option<Arc<Upstream>>> = objects
            .of(Kind::Upstream)
            .map(|(id, conf)| (id, compile_upstream(format!("upstreams/{id}"), conf)))
            .collect();
        let mut routes = Vec::new();
        for (id, conf) in objects.of(Kind::StreamRoute) {
            let upstream = match (conf.get("upstream_id"), conf.get("upstream")) {
                (Some(up_id), _) => {
                    let up_id = match up_id {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    by_id.get(up_id.as_str()).cloned().flatten()
                }
                (None, Some(inline)) => compile_upstream(format!("stream_routes/{id}"), inline),
                (None, None) => None,
            };
            match Route::compile(id, conf, upstream) {
                Ok(route) => routes.push(route),
                Err(reason) => {
                    tracing::warn!(route = %id, %reason, "stream route left out of the snapshot")
                }
            }
        }
        Snapshot {
            revision,
            routes: RouteTable::new(routes),
            tls,
            upstreams,
        }
    }

    /// Every compiled upstream (named and inline), in no particular order.
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }

    /// Every (upstream key, node `host:port`) the snapshot can send sessions to.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, String)> {
        self.upstreams.iter().flat_map(|(key, u)| {
            u.balancer
                .nodes()
                .iter()
                .map(move |n| (key.as_str(), n.address()))
        })
    }

    /// Node hosts that are domain names, to be resolved before a connection needs them.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.upstreams
            .values()
            .flat_map(|u| u.balancer.nodes())
            .map(|node| node.host.as_str())
            .filter(|host| !host.starts_with('[') && host.parse::<std::net::IpAddr>().is_err())
    }
}
