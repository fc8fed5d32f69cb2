//! The etcd provider: objects under APISIX's key layout (`<prefix>/stream_routes/<id>` …) as
//! APISIX's JSON, spoken through etcd's v3 JSON gateway as APISIX does. Writes go to etcd and
//! return once etcd acknowledged them; the data plane reads a view that one watch keeps current
//! and that holds only objects that pass the Admin API's checks.

mod auth;
mod client;
mod codec;
mod error;
mod transport;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{json, Value};
use sg_model::settings::EtcdSettings;
use sg_model::{Keyring, Kind};
use tokio::sync::broadcast;

pub use self::error::{EtcdError, EtcdStartError};

use self::client::Client;
use self::codec::{b64, header_revision, num, KeyValue, Layout, ObjectError};
use crate::{ConfigStore, Entry, Event, Put, Rejected, StoreError};

/// The pause between two start-up attempts.
const STARTUP_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// The served objects and the etcd revision they reflect.
#[derive(Debug, Default)]
struct View {
    revision: u64,
    /// The etcd cluster they come from.
    cluster: String,
    objects: BTreeMap<Kind, BTreeMap<String, Entry>>,
    /// Objects in etcd that are not served, and why.
    rejected: BTreeMap<(Kind, String), String>,
}

impl View {
    fn insert(&mut self, kind: Kind, entry: Entry) {
        self.rejected.remove(&(kind, entry.id.clone()));
        self.objects
            .entry(kind)
            .or_default()
            .insert(entry.id.clone(), entry);
    }

    fn remove(&mut self, kind: Kind, id: &str) {
        self.rejected.remove(&(kind, id.to_owned()));
        if let Some(objects) = self.objects.get_mut(&kind) {
            objects.remove(id);
        }
    }

    /// Records an object that etcd holds and that is not served; the listing keeps the reason
    /// as text.
    fn reject(&mut self, kind: Kind, id: &str, reason: &ObjectError) {
        self.remove(kind, id);
        self.rejected
            .insert((kind, id.to_owned()), reason.to_string());
    }
}

/// What the store and its watcher share.
struct Shared {
    client: Client,
    /// A watch silent this long is created again (`watch_timeout`).
    watch_timeout: std::time::Duration,
    layout: Layout,
    keyring: Keyring,
    view: RwLock<View>,
    events: broadcast::Sender<Event>,
}

/// A store in etcd, shared with other streamgate and APISIX nodes.
pub struct EtcdStore {
    shared: Arc<Shared>,
    watcher: tokio::task::JoinHandle<()>,
}

impl EtcdStore {
    /// Loads every object from etcd and starts following its watch. `keyring` decrypts SSL
    /// keys for the checks (APISIX nodes sharing the etcd must use the same keyring). Tries
    /// `startup_retry` times (each over every member), except when the configuration is at
    /// fault (certificates, CA, user or password): that stops at once.
    pub async fn connect(
        settings: &EtcdSettings,
        keyring: Keyring,
    ) -> Result<Self, EtcdStartError> {
        let client = Client::new(settings).map_err(EtcdStartError::Misconfigured)?;
        let layout = Layout::new(&settings.prefix);
        let attempts = settings.startup_retry.max(1);
        let mut attempt = 1;
        let view = loop {
            match watch::load(&client, &layout, &keyring).await {
                Ok(view) => break view,
                Err(e) if e.is_misconfiguration() => return Err(EtcdStartError::Misconfigured(e)),
                Err(e) if attempt < attempts => {
                    tracing::warn!(error = %e, attempt, "cannot load the configuration from etcd, retrying");
                    tokio::time::sleep(STARTUP_PAUSE).await;
                    attempt += 1;
                }
                Err(last) => return Err(EtcdStartError::Unavailable { attempts, last }),
            }
        };
        let user = settings.auth.as_ref().map(|a| a.user.as_str());
        tracing::info!(hosts = ?settings.hosts, prefix = %settings.prefix, ?user, revision = view.revision, "etcd config store connected");
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            client,
            watch_timeout: settings.watch_timeout,
            layout,
            keyring,
            view: RwLock::new(view),
            events,
        });
        let watcher = tokio::spawn(watch::run(shared.clone()));
        Ok(EtcdStore { shared, watcher })
    }

    async fn call(&self, path: &str, body: &Value) -> Result<Value, StoreError> {
        Ok(self.shared.client.call(path, body).await?)
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

#[async_trait::async_trait]
impl ConfigStore for EtcdStore {
    /// Reads etcd itself (not the view), so the Admin API sees writes of other nodes at once;
    /// a value that is not JSON comes back as a string, so it can be inspected and replaced.
    async fn get(&self, dir: &str, id: &str) -> Result<Option<Entry>, StoreError> {
        let key = self.shared.layout.key(dir, id);
        let answer = self
            .call("/v3/kv/range", &json!({"key": b64(&key)}))
            .await?;
        let Some(kv) = answer.pointer("/kvs/0") else {
            return Ok(None);
        };
        let kv = KeyValue::parse(kv)?;
        let value = serde_json::from_slice(&kv.value)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&kv.value).into_owned()));
        Ok(Some(Entry {
            id: id.to_owned(),
            value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        }))
    }

    /// The served objects of a directory, from the view (invalid values are left out).
    async fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError> {
        let view = self.shared.view.read();
        Ok(Kind::from_dir(dir)
            .and_then(|kind| view.objects.get(&kind))
            .map(|objects| objects.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn put(
        &self,
        dir: &str,
        id: &str,
        value: Value,
        expect_mod_revision: Option<u64>,
    ) -> Result<Put, StoreError> {
        let key = b64(self.shared.layout.key(dir, id));
        let bytes = serde_json::to_vec(&value).map_err(|e| StoreError::Backend(e.to_string()))?;
        let request = json!({"key": key, "value": b64(bytes), "prev_kv": true});
        let (answer, previous) = match expect_mod_revision {
            None => {
                let answer = self.call("/v3/kv/put", &request).await?;
                let previous = answer.get("prev_kv").cloned();
                (answer, previous)
            }
            Some(expected) => {
                let txn = json!({
                    "compare": [{"key": key, "target": "MOD", "result": "EQUAL",
                                 "mod_revision": expected.to_string()}],
                    "success": [{"request_put": request}],
                });
                let answer = self.call("/v3/kv/txn", &txn).await?;
                if answer.get("succeeded") != Some(&Value::Bool(true)) {
                    return Err(StoreError::Conflict);
                }
                let previous = answer.pointer("/responses/0/response_put/prev_kv").cloned();
                (answer, previous)
            }
        };
        let revision = header_revision(&answer)?;
        let previous = previous.map(|kv| KeyValue::parse(&kv)).transpose()?;
        Ok(Put {
            created: previous.is_none(),
            entry: Entry {
                id: id.to_owned(),
                value,
                create_revision: previous.map_or(revision, |p| p.create_revision),
                mod_revision: revision,
            },
        })
    }

    async fn delete(&self, dir: &str, id: &str) -> Result<Option<u64>, StoreError> {
        let key = self.shared.layout.key(dir, id);
        let answer = self
            .call("/v3/kv/deleterange", &json!({"key": b64(key)}))
            .await?;
        if num(answer.get("deleted")) == 0 {
            return Ok(None);
        }
        Ok(Some(header_revision(&answer)?))
    }

    /// APISIX's way: put `<prefix>/gen_id` and take the revision of that write.
    async fn next_id(&self) -> Result<u64, StoreError> {
        let key = self.shared.layout.gen_id();
        let answer = self
            .call("/v3/kv/put", &json!({"key": b64(key), "value": b64("1")}))
            .await?;
        Ok(header_revision(&answer)?)
    }

    fn revision(&self) -> u64 {
        self.shared.view.read().revision
    }

    fn watch(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    fn rejected(&self) -> Vec<Rejected> {
        Rejected::list(&self.shared.view.read().rejected)
    }
}

#[cfg(test)]
mod fake_tests;
#[cfg(test)]
mod tests;
