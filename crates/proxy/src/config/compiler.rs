//! Follows the store's watch and publishes a new `Snapshot` after every change (a burst of
//! changes at once), recompiling only what changed; a supervisor keeps it running.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;
use sg_model::Kind;
use sg_store::{ConfigStore, Event, StoreError};
use tokio::sync::{broadcast, watch};

use crate::config::compilation::{Change, Compilation, CompileSettings};
use crate::config::snapshot::Snapshot;
use crate::runtime::deferred::DeferredListeners;

/// Where the current snapshot is published, and a signal of each publication.
#[derive(Clone)]
pub struct SnapshotHandle {
    current: Arc<ArcSwap<Snapshot>>,
    published: watch::Receiver<u64>,
    deferred: Arc<DeferredListeners>,
}

impl SnapshotHandle {
    /// The snapshot a new connection should use.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The plain listeners whose deferred accept follows the published routes.
    pub fn deferred(&self) -> &DeferredListeners {
        &self.deferred
    }

    /// The revision of each publication, for whoever wants to wait on it.
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.clone()
    }

    /// Waits until a snapshot at `revision` or later is published.
    pub async fn wait_for(&self, revision: u64) {
        let mut published = self.published.clone();
        // The sender lives as long as the compiler; if it is gone nothing newer will come.
        let _ = published.wait_for(|r| *r >= revision).await;
    }
}

async fn load_all(
    store: &dyn ConfigStore,
) -> Result<(u64, Vec<(Kind, String, Value)>), StoreError> {
    let revision = store.revision();
    let mut objects = Vec::new();
    for kind in Kind::ALL {
        for entry in store.list(kind.dir()).await? {
            objects.push((kind, entry.id, entry.value));
        }
    }
    Ok((revision, objects))
}

/// Where the compiler publishes.
struct Publisher {
    current: Arc<ArcSwap<Snapshot>>,
    published: watch::Sender<u64>,
    deferred: Arc<DeferredListeners>,
}

impl Publisher {
    fn publish(&self, next: Snapshot) {
        let revision = next.revision;
        // Before publishing: a route whose server speaks first must not meet a listener that
        // waits for the client.
        self.deferred.apply(next.routes.clients_speak_first());
        self.current.store(Arc::new(next));
        self.published.send_replace(revision);
        tracing::debug!(revision, "published a new snapshot");
    }
}

/// Loads the store, publishes the first snapshot, and spawns the task that keeps it current.
/// Objects the compiler cannot use are left out and listed in the snapshot's errors; start-up
/// fails only when the store itself cannot be read.
pub async fn run_compiler(
    store: Arc<dyn ConfigStore>,
    settings: impl Into<CompileSettings>,
) -> Result<SnapshotHandle, StoreError> {
    let settings = settings.into();
    let events = store.watch();
    let (revision, objects) = load_all(store.as_ref()).await?;
    let mut compilation = Compilation::new(settings.clone());
    compilation.reload(objects);
    compilation.set_store_rejected(store.rejected());
    let first = compilation.snapshot(revision);
    let deferred = Arc::new(DeferredListeners::new(first.routes.clients_speak_first()));
    let current = Arc::new(ArcSwap::from_pointee(first));
    let (publish, published) = watch::channel(revision);
    let handle = SnapshotHandle {
        current: current.clone(),
        published,
        deferred: deferred.clone(),
    };
    let publisher = Arc::new(Publisher {
        current,
        published: publish,
        deferred,
    });
    tokio::spawn(supervise(store, settings, publisher, compilation, events));
    Ok(handle)
}

/// Keeps a compiler following the store: if one ever stops short (a panic no object's guard
/// caught), a new one starts from a full reload, and the last snapshot stays in force meanwhile.
async fn supervise(
    store: Arc<dyn ConfigStore>,
    settings: CompileSettings,
    publisher: Arc<Publisher>,
    compilation: Compilation,
    events: broadcast::Receiver<Event>,
) {
    let mut task = tokio::spawn(follow(
        store.clone(),
        publisher.clone(),
        compilation,
        events,
        false,
    ));
    loop {
        match task.await {
            // The store's watch closed: nothing more will change.
            Ok(()) => return,
            Err(error) => {
                tracing::error!(%error, "the configuration compiler stopped; restarting it from a full reload");
            }
        }
        let events = store.watch();
        task = tokio::spawn(follow(
            store.clone(),
            publisher.clone(),
            Compilation::new(settings.clone()),
            events,
            true,
        ));
    }
}

/// Applies the store's changes as they come: a burst of them is compiled and published once.
async fn follow(
    store: Arc<dyn ConfigStore>,
    publisher: Arc<Publisher>,
    mut compilation: Compilation,
    mut events: broadcast::Receiver<Event>,
    mut reload: bool,
) {
    loop {
        let mut revision = 0;
        let mut changes = Vec::new();
        if !reload {
            match events.recv().await {
                Ok(event) => collect(event, &mut changes, &mut revision, &mut reload),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "config watch lagged, reloading the whole store");
                    reload = true;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
            loop {
                match events.try_recv() {
                    Ok(event) => collect(event, &mut changes, &mut revision, &mut reload),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => reload = true,
                    Err(_) => break,
                }
            }
        }
        if reload {
            match load_all(store.as_ref()).await {
                Ok((at, objects)) => {
                    compilation.reload(objects);
                    revision = revision.max(at);
                    reload = false;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot reload the store; keeping the current snapshot");
                    continue;
                }
            }
        } else {
            compilation.apply(changes);
        }
        compilation.set_store_rejected(store.rejected());
        publisher.publish(compilation.snapshot(revision));
    }
}

/// Adds one watch event to a batch.
fn collect(event: Event, changes: &mut Vec<Change>, revision: &mut u64, reload: &mut bool) {
    *revision = (*revision).max(event.revision());
    match event {
        Event::Put { dir, entry } => {
            if let Some(kind) = Kind::from_dir(&dir) {
                changes.push(Change::Put(kind, entry.id, entry.value));
            }
        }
        Event::Delete { dir, id, .. } => {
            if let Some(kind) = Kind::from_dir(&dir) {
                changes.push(Change::Delete(kind, id));
            }
        }
        Event::Reset { .. } => *reload = true,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use serde_json::json;
    use sg_model::Keyring;
    use sg_store::EmbeddedStore;

    use super::*;

    fn route_for(handle: &SnapshotHandle, remote: &str) -> Option<String> {
        let remote: SocketAddr = remote.parse().unwrap();
        let server: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        handle
            .load()
            .routes
            .find(None, remote, server)
            .map(|r| r.id.clone())
    }

    #[tokio::test]
    async fn snapshot_follows_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ConfigStore> =
            Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
        store
            .put(
                "upstreams",
                "1",
                json!({"nodes": {"127.0.0.1:1883": 1}}),
                None,
            )
            .await
            .unwrap();
        store
            .put(
                "stream_routes",
                "a",
                json!({"remote_addr": "127.0.0.2", "upstream_id": "1"}),
                None,
            )
            .await
            .unwrap();
        let handle = run_compiler(store.clone(), Keyring::default())
            .await
            .unwrap();
        assert_eq!(route_for(&handle, "127.0.0.2:1").as_deref(), Some("a"));
        assert!(handle
            .load()
            .routes
            .find(
                None,
                "127.0.0.2:1".parse().unwrap(),
                "127.0.0.1:9100".parse().unwrap()
            )
            .unwrap()
            .upstream
            .is_some());

        let before = handle.load();
        let put = store
            .put("stream_routes", "b", json!({"upstream_id": "1"}), None)
            .await
            .unwrap();
        handle.wait_for(put.entry.mod_revision).await;
        assert_eq!(route_for(&handle, "127.0.0.3:1").as_deref(), Some("b"));
        // The old snapshot is immutable: a connection holding it is not disturbed.
        assert_eq!(before.routes.len(), 1);

        let revision = store.delete("upstreams", "1").await.unwrap().unwrap();
        handle.wait_for(revision).await;
        let now = handle.load();
        assert_eq!(now.revision, revision);
        let dangling = now
            .routes
            .find(
                None,
                "127.0.0.3:1".parse().unwrap(),
                "127.0.0.1:9100".parse().unwrap(),
            )
            .unwrap();
        assert!(dangling.upstream.is_none());
    }

    #[tokio::test]
    async fn listeners_defer_only_while_every_route_waits_for_its_client() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ConfigStore> =
            Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
        let mqtt = json!({"plugins": {"mqtt-proxy": {"protocol_level": 4}}});
        store
            .put("stream_routes", "mqtt", mqtt, None)
            .await
            .unwrap();
        let handle = run_compiler(store.clone(), Keyring::default())
            .await
            .unwrap();
        assert!(handle.deferred().on());

        // A route whose server may speak first: set before it is published.
        let put = store
            .put("stream_routes", "plain", json!({}), None)
            .await
            .unwrap();
        handle.wait_for(put.entry.mod_revision).await;
        assert!(!handle.deferred().on());

        let revision = store
            .delete("stream_routes", "plain")
            .await
            .unwrap()
            .unwrap();
        handle.wait_for(revision).await;
        assert!(handle.deferred().on());
    }
}
