//! Follows the store's watch and republishes a freshly compiled `Snapshot` after every change.

use std::sync::Arc;

use arc_swap::ArcSwap;
use sg_model::{Keyring, Kind};
use sg_store::{ConfigStore, Event, StoreError};
use tokio::sync::{broadcast, watch};

use crate::deferred::DeferredListeners;
use crate::snapshot::{ObjectSet, Snapshot};

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

async fn load_all(store: &dyn ConfigStore) -> Result<(u64, ObjectSet), StoreError> {
    let revision = store.revision();
    let mut objects = ObjectSet::default();
    for kind in Kind::ALL {
        for entry in store.list(kind.dir()).await? {
            objects.insert(kind, entry.id, entry.value);
        }
    }
    Ok((revision, objects))
}

/// Loads the store, publishes the first snapshot, and spawns the task that keeps it current.
pub async fn run_compiler(
    store: Arc<dyn ConfigStore>,
    keyring: Keyring,
) -> Result<SnapshotHandle, StoreError> {
    let mut events = store.watch();
    let (revision, mut objects) = load_all(store.as_ref()).await?;
    let first = Snapshot::compile(revision, &objects, None, &keyring);
    let deferred = Arc::new(DeferredListeners::new(first.routes.clients_speak_first()));
    let current = Arc::new(ArcSwap::from_pointee(first));
    let (publish, published) = watch::channel(revision);
    let handle = SnapshotHandle {
        current: current.clone(),
        published,
        deferred: deferred.clone(),
    };
    tokio::spawn(async move {
        loop {
            let received = events.recv().await;
            let revision = match received {
                Ok(Event::Reset { .. }) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Err(broadcast::error::RecvError::Lagged(missed)) = received {
                        tracing::warn!(missed, "config watch lagged, reloading the whole store");
                    }
                    match load_all(store.as_ref()).await {
                        Ok((revision, all)) => {
                            objects = all;
                            revision
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot reload the store; keeping the current snapshot");
                            continue;
                        }
                    }
                }
                Ok(event) => {
                    apply(&mut objects, &event);
                    event.revision()
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let previous = current.load();
            let next = Snapshot::compile(revision, &objects, Some(&previous), &keyring);
            // Before publishing: a route whose server speaks first must not meet a listener
            // that waits for the client.
            deferred.apply(next.routes.clients_speak_first());
            current.store(Arc::new(next));
            publish.send_replace(revision);
            tracing::debug!(revision, "published a new snapshot");
        }
    });
    Ok(handle)
}

fn apply(objects: &mut ObjectSet, event: &Event) {
    match event {
        Event::Put { dir, entry } => {
            if let Some(kind) = Kind::from_dir(dir) {
                objects.insert(kind, entry.id.clone(), entry.value.clone());
            }
        }
        Event::Delete { dir, id, .. } => {
            if let Some(kind) = Kind::from_dir(dir) {
                objects.remove(kind, id);
            }
        }
        // Handled by the caller with a full reload.
        Event::Reset { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use serde_json::json;
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
