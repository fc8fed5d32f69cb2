//! The embedded provider: a redb file. Each write is one ACID transaction committed with
//! immediate durability (fsync) before the caller is answered.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::{ConfigStore, Entry, Event, Put, StoreError};

/// `"<dir>/<id>"` → `{"create_revision", "mod_revision", "value"}` as JSON bytes.
const OBJECTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("objects");
/// Counters: `revision` (every write) and `gen_id` (POST ids).
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// A redb-backed store.
pub struct EmbeddedStore {
    db: Arc<Database>,
    revision: Arc<AtomicU64>,
    events: broadcast::Sender<Event>,
    /// Held from a write's commit to its publication, so watchers see revision order.
    write_order: tokio::sync::Mutex<()>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the database file, creating its directory if needed.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| backend(format!("cannot create {}: {e}", parent.display())))?;
        }
        let db = Database::create(path)
            .map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(backend)?;
        let revision = {
            txn.open_table(OBJECTS).map_err(backend)?;
            let meta = txn.open_table(META).map_err(backend)?;
            let revision = meta
                .get("revision")
                .map_err(backend)?
                .map_or(0, |v| v.value());
            revision
        };
        txn.commit().map_err(backend)?;
        let (events, _) = broadcast::channel(1024);
        Ok(EmbeddedStore {
            db: Arc::new(db),
            revision: Arc::new(AtomicU64::new(revision)),
            events,
            write_order: tokio::sync::Mutex::new(()),
        })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(backend)?
    }

    fn publish(&self, event: Event) {
        self.revision.store(event.revision(), Ordering::Release);
        // No receiver is fine: nobody is watching yet.
        let _ = self.events.send(event);
    }
}

fn object_key(dir: &str, id: &str) -> String {
    format!("{dir}/{id}")
}

fn decode(key: &str, bytes: &[u8]) -> Result<Entry, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_owned(),
        reason,
    };
    let mut record: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let revision = |name: &str| {
        record
            .get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| corrupt(format!("missing {name}")))
    };
    let (create_revision, mod_revision) = (revision("create_revision")?, revision("mod_revision")?);
    Ok(Entry {
        id: decode_id(key),
        value: record["value"].take(),
        create_revision,
        mod_revision,
    })
}

fn encode(entry: &Entry) -> Vec<u8> {
    json!({
        "create_revision": entry.create_revision,
        "mod_revision": entry.mod_revision,
        "value": entry.value,
    })
    .to_string()
    .into_bytes()
}

/// Increments a counter inside a write transaction and returns the new value.
fn bump(txn: &redb::WriteTransaction, name: &str) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META).map_err(backend)?;
    let next = meta.get(name).map_err(backend)?.map_or(0, |v| v.value()) + 1;
    meta.insert(name, next).map_err(backend)?;
    Ok(next)
}

#[async_trait::async_trait]
impl ConfigStore for EmbeddedStore {
    async fn get(&self, dir: &str, id: &str) -> Result<Option<Entry>, StoreError> {
        let key = object_key(dir, id);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(OBJECTS).map_err(backend)?;
            let found = table.get(key.as_str()).map_err(backend)?;
            found.map(|v| decode(&key, v.value())).transpose()
        })
        .await
    }

    async fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError> {
        let (start, end) = (format!("{dir}/"), format!("{dir}0"));
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(OBJECTS).map_err(backend)?;
            let mut entries = Vec::new();
            for item in table.range(start.as_str()..end.as_str()).map_err(backend)? {
                let (key, value) = item.map_err(backend)?;
                entries.push(decode(key.value(), value.value())?);
            }
            Ok(entries)
        })
        .await
    }

    async fn put(
        &self,
        dir: &str,
        id: &str,
        value: Value,
        expect_mod_revision: Option<u64>,
    ) -> Result<Put, StoreError> {
        let key = object_key(dir, id);
        let _order = self.write_order.lock().await;
        let put = self
            .blocking(move |db| {
                let txn = db.begin_write().map_err(backend)?;
                let put = {
                    let mut table = txn.open_table(OBJECTS).map_err(backend)?;
                    let previous = table
                        .get(key.as_str())
                        .map_err(backend)?
                        .map(|v| decode(&key, v.value()))
                        .transpose()?;
                    if let Some(expected) = expect_mod_revision {
                        if previous.as_ref().map(|p| p.mod_revision) != Some(expected) {
                            return Err(StoreError::Conflict);
                        }
                    }
                    let revision = bump(&txn, "revision")?;
                    let entry = Entry {
                        id: decode_id(&key),
                        value,
                        create_revision: previous.as_ref().map_or(revision, |p| p.create_revision),
                        mod_revision: revision,
                    };
                    table
                        .insert(key.as_str(), encode(&entry).as_slice())
                        .map_err(backend)?;
                    Put {
                        created: previous.is_none(),
                        entry,
                    }
                };
                txn.commit().map_err(backend)?;
                Ok(put)
            })
            .await?;
        self.publish(Event::Put {
            dir: dir.to_owned(),
            entry: put.entry.clone(),
        });
        Ok(put)
    }

    async fn delete(&self, dir: &str, id: &str) -> Result<Option<u64>, StoreError> {
        let key = object_key(dir, id);
        let _order = self.write_order.lock().await;
        let revision = self
            .blocking(move |db| {
                let txn = db.begin_write().map_err(backend)?;
                let existed = {
                    let mut table = txn.open_table(OBJECTS).map_err(backend)?;
                    let removed = table.remove(key.as_str()).map_err(backend)?;
                    removed.is_some()
                };
                if !existed {
                    return Ok(None);
                }
                let revision = bump(&txn, "revision")?;
                txn.commit().map_err(backend)?;
                Ok(Some(revision))
            })
            .await?;
        if let Some(revision) = revision {
            self.publish(Event::Delete {
                dir: dir.to_owned(),
                id: id.to_owned(),
                revision,
            });
        }
        Ok(revision)
    }

    async fn next_id(&self) -> Result<u64, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_write().map_err(backend)?;
            let id = bump(&txn, "gen_id")?;
            txn.commit().map_err(backend)?;
            Ok(id)
        })
        .await
    }

    fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    fn watch(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

fn decode_id(key: &str) -> String {
    key.split_once('/').map_or(key, |(_, id)| id).to_owned()
}

#[cfg(test)]
mod tests;
