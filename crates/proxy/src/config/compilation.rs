//! The compiler's incremental state: every stored object decoded into its typed form and
//! compiled on its own, so that a change recompiles only that object and what depends on it
//! (the routes naming a changed upstream; the TLS upstreams after an SSL change). An object
//! that cannot be decoded or compiled, even one whose compilation panics, is reported and
//! left out; everything else keeps serving.

mod compile;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;
use sg_model::resource::{self, Ssl, StreamRoute};
use sg_model::{decode, Keyring, Kind};
use sg_store::Rejected;

use crate::config::error::CompileError;
use crate::config::route::{Route, RouteTable};
use crate::config::snapshot::{Snapshot, Upstreams};
use crate::config::tls::TlsTable;
use crate::config::upstream::Upstream;
use crate::metrics::{ResourceLabels, METRICS};
use compile::guarded;

/// A stored object the data plane cannot use as it is, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: Kind,
    pub id: String,
    pub reason: String,
}

/// One change of the store.
#[derive(Clone, Debug)]
pub enum Change {
    Put(Kind, String, Value),
    Delete(Kind, String),
}

/// A stored object with its typed form (`None` when it could not be decoded).
struct Entry<T> {
    source: Value,
    decoded: Option<T>,
}

struct RouteEntry {
    object: Entry<StreamRoute>,
    compiled: Option<Arc<Route>>,
    /// The inline upstream, compiled; kept to lend its state to the next compilation.
    inline: Option<Arc<Upstream>>,
}

struct UpstreamEntry {
    object: Entry<resource::Upstream>,
    compiled: Option<Arc<Upstream>>,
}

/// What compiling needs beyond the stored objects.
#[derive(Clone, Debug, Default)]
pub struct CompileSettings {
    /// Decrypts stored private keys (`apisix.data_encryption.keyring`).
    pub keyring: Keyring,
    /// Stateless TLS session tickets (`apisix.ssl.ssl_session_tickets`).
    pub session_tickets: bool,
}

impl From<Keyring> for CompileSettings {
    fn from(keyring: Keyring) -> CompileSettings {
        CompileSettings {
            keyring,
            session_tickets: false,
        }
    }
}

/// Every stored object, decoded and compiled.
pub struct Compilation {
    keyring: Keyring,
    session_tickets: bool,
    ssls: BTreeMap<String, Entry<Ssl>>,
    tls: Arc<TlsTable>,
    upstreams: BTreeMap<String, UpstreamEntry>,
    /// In store (id) order, which is APISIX's matching order among routes without `sni`.
    routes: BTreeMap<String, RouteEntry>,
    /// Every compiled upstream, named and inline, as snapshots share them.
    index: Upstreams,
    /// Every compiled route, in matching order, as snapshots share them.
    table: RouteTable,
    errors: BTreeMap<(Kind, String), String>,
    /// Objects the store holds but does not hand over (see `ConfigStore::rejected`).
    store_errors: BTreeMap<(Kind, String), String>,
}

fn named_key(id: &str) -> String {
    format!("upstreams/{id}")
}

fn inline_key(route_id: &str) -> String {
    format!("stream_routes/{route_id}")
}

/// What a batch of changes touched.
#[derive(Default)]
struct Dirty {
    ssls: bool,
    upstreams: BTreeSet<String>,
    routes: BTreeSet<String>,
}

impl Compilation {
    pub fn new(settings: impl Into<CompileSettings>) -> Compilation {
        let settings = settings.into();
        Compilation {
            keyring: settings.keyring,
            session_tickets: settings.session_tickets,
            ssls: BTreeMap::new(),
            tls: Arc::default(),
            upstreams: BTreeMap::new(),
            routes: BTreeMap::new(),
            index: Upstreams::default(),
            table: RouteTable::default(),
            errors: BTreeMap::new(),
            store_errors: BTreeMap::new(),
        }
    }

    /// Makes the state equal to `objects` (the whole store): unchanged objects keep their
    /// compilations, the others are compiled or dropped.
    pub fn reload(&mut self, objects: Vec<(Kind, String, Value)>) {
        let present: BTreeSet<(Kind, &str)> = objects
            .iter()
            .map(|(kind, id, _)| (*kind, id.as_str()))
            .collect();
        let gone: Vec<Change> = self
            .ssls
            .keys()
            .map(|id| (Kind::Ssl, id))
            .chain(self.upstreams.keys().map(|id| (Kind::Upstream, id)))
            .chain(self.routes.keys().map(|id| (Kind::StreamRoute, id)))
            .filter(|(kind, id)| !present.contains(&(*kind, id.as_str())))
            .map(|(kind, id)| Change::Delete(kind, id.clone()))
            .collect();
        let puts = objects
            .into_iter()
            .map(|(kind, id, value)| Change::Put(kind, id, value));
        self.apply(gone.into_iter().chain(puts).collect());
    }

    /// Applies a batch of store changes and recompiles what they touched.
    pub fn apply(&mut self, changes: Vec<Change>) {
        let mut dirty = Dirty::default();
        for change in changes {
            self.record(change, &mut dirty);
        }
        if dirty.ssls {
            self.compile_tls();
            for (id, entry) in &self.upstreams {
                if entry.object.decoded.as_ref().is_some_and(|u| u.is_tls()) {
                    dirty.upstreams.insert(id.clone());
                }
            }
            for (id, entry) in &self.routes {
                let inline = entry
                    .object
                    .decoded
                    .as_ref()
                    .and_then(|r| r.upstream.as_ref());
                if inline.is_some_and(|u| u.is_tls()) {
                    dirty.routes.insert(id.clone());
                }
            }
        }
        for id in &dirty.upstreams {
            self.compile_upstream(id);
        }
        if !dirty.upstreams.is_empty() {
            // One pass over the routes, whatever the number of changed upstreams: a reload of
            // 10,000 named upstreams must not cost 10,000 passes.
            for (route_id, entry) in &self.routes {
                let named = entry
                    .object
                    .decoded
                    .as_ref()
                    .and_then(|r| r.upstream_id.as_ref());
                if named.is_some_and(|named| dirty.upstreams.contains(&named.0)) {
                    dirty.routes.insert(route_id.clone());
                }
            }
        }
        for id in &dirty.routes {
            self.compile_route(id);
        }
    }

    /// Stores one change and decodes the new object; unchanged puts are ignored.
    fn record(&mut self, change: Change, dirty: &mut Dirty) {
        match change {
            Change::Put(kind, id, value) => match kind {
                Kind::Ssl => {
                    if self.ssls.get(&id).is_some_and(|e| e.source == value) {
                        return;
                    }
                    let object = self.decode(kind, &id, value);
                    self.ssls.insert(id, object);
                    dirty.ssls = true;
                }
                Kind::Upstream => {
                    if let Some(entry) = self.upstreams.get_mut(&id) {
                        if entry.object.source == value {
                            return;
                        }
                    }
                    let object = self.decode(kind, &id, value);
                    let compiled = self.upstreams.remove(&id).and_then(|e| e.compiled);
                    self.upstreams
                        .insert(id.clone(), UpstreamEntry { object, compiled });
                    dirty.upstreams.insert(id);
                }
                Kind::StreamRoute => {
                    if self
                        .routes
                        .get(&id)
                        .is_some_and(|e| e.object.source == value)
                    {
                        return;
                    }
                    let object = self.decode(kind, &id, value);
                    let previous = self.routes.remove(&id);
                    let (compiled, inline) =
                        previous.map_or((None, None), |e| (e.compiled, e.inline));
                    let entry = RouteEntry {
                        object,
                        compiled,
                        inline,
                    };
                    self.routes.insert(id.clone(), entry);
                    dirty.routes.insert(id);
                }
            },
            Change::Delete(kind, id) => {
                self.errors.remove(&(kind, id.clone()));
                match kind {
                    Kind::Ssl => dirty.ssls |= self.ssls.remove(&id).is_some(),
                    Kind::Upstream => {
                        if self.upstreams.remove(&id).is_some() {
                            self.index.set(&named_key(&id), None);
                            dirty.upstreams.insert(id);
                        }
                    }
                    Kind::StreamRoute => {
                        if let Some(entry) = self.routes.remove(&id) {
                            self.index.set(&inline_key(&id), None);
                            self.table.replace(entry.compiled.as_deref(), None);
                            METRICS.forget_route(&id);
                        }
                    }
                }
            }
        }
    }

    fn decode<T: for<'a> serde::Deserialize<'a>>(
        &mut self,
        kind: Kind,
        id: &str,
        source: Value,
    ) -> Entry<T> {
        let decoded = guarded(|| Ok(decode(&source)?));
        let decoded = self.settle(kind, id, decoded);
        Entry { source, decoded }
    }

    /// Records the outcome of compiling one object: an error is logged, counted and listed (by
    /// its text, as operators read it) until the object compiles or goes away.
    fn settle<T>(&mut self, kind: Kind, id: &str, outcome: Result<T, CompileError>) -> Option<T> {
        match outcome {
            Ok(value) => {
                self.errors.remove(&(kind, id.to_owned()));
                Some(value)
            }
            Err(reason) => {
                tracing::error!(resource = kind.dir(), id, %reason, "stored object rejected: the data plane leaves it out");
                METRICS
                    .config_rejected
                    .get_or_create(&ResourceLabels {
                        resource: kind.dir(),
                    })
                    .inc();
                self.errors
                    .insert((kind, id.to_owned()), reason.to_string());
                None
            }
        }
    }

    /// Lists the objects the store holds but does not serve; the store logged them, the new
    /// ones are counted here.
    pub fn set_store_rejected(&mut self, rejected: Vec<Rejected>) {
        let listed = rejected
            .into_iter()
            .map(|r| ((r.kind, r.id), r.reason))
            .collect::<BTreeMap<_, _>>();
        for (kind, _) in listed
            .keys()
            .filter(|key| !self.store_errors.contains_key(*key))
        {
            METRICS
                .config_rejected
                .get_or_create(&ResourceLabels {
                    resource: kind.dir(),
                })
                .inc();
        }
        self.store_errors = listed;
    }

    /// The snapshot of the current state.
    pub fn snapshot(&self, revision: u64) -> Snapshot {
        let errors = self
            .store_errors
            .iter()
            .filter(|(key, _)| !self.errors.contains_key(*key))
            .chain(&self.errors)
            .map(|((kind, id), reason)| ConfigError {
                kind: *kind,
                id: id.clone(),
                reason: reason.clone(),
            })
            .collect();
        Snapshot::new(
            revision,
            self.table.clone(),
            self.tls.clone(),
            self.index.clone(),
            errors,
        )
    }
}

#[cfg(test)]
mod tests;
