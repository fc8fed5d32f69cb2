//! The `ConfigStore` trait: the single source of truth for stream routes, upstreams and SSL
//! objects, with etcd-like revisions and a watch, and its providers: embedded (redb), etcd
//! (APISIX's key layout) and the standalone `apisix.yaml` file.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod embedded;
mod etcd;
mod yaml;

use std::collections::BTreeMap;

use serde_json::Value;
use sg_model::Kind;
use tokio::sync::broadcast;

pub use embedded::EmbeddedStore;
pub use etcd::{EtcdError, EtcdStartError, EtcdStore};
pub use yaml::YamlStore;

/// A stored object with its etcd-style revisions.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The object's id inside its directory.
    pub id: String,
    pub value: Value,
    /// The store revision that created the object (`createdIndex`).
    pub create_revision: u64,
    /// The store revision of its last change (`modifiedIndex`).
    pub mod_revision: u64,
}

/// A change, as seen by watchers, in revision order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Put {
        dir: String,
        entry: Entry,
    },
    Delete {
        dir: String,
        id: String,
        revision: u64,
    },
    /// The provider resynchronised (a compacted etcd watch, a reloaded `apisix.yaml`): the
    /// objects may have changed in any way, `list` them all again.
    Reset {
        revision: u64,
    },
}

impl Event {
    /// The store revision this change produced.
    pub fn revision(&self) -> u64 {
        match self {
            Event::Put { entry, .. } => entry.mod_revision,
            Event::Delete { revision, .. } | Event::Reset { revision } => *revision,
        }
    }
}

/// The result of a successful put.
#[derive(Clone, Debug, PartialEq)]
pub struct Put {
    /// True when the object did not exist before.
    pub created: bool,
    pub entry: Entry,
}

/// A stored object a provider does not serve (not JSON, or refused by the Admin API's checks),
/// and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub kind: Kind,
    pub id: String,
    pub reason: String,
}

impl Rejected {
    /// The listing of a provider's rejected objects, by kind and id.
    pub(crate) fn list(objects: &BTreeMap<(Kind, String), String>) -> Vec<Rejected> {
        objects
            .iter()
            .map(|((kind, id), reason)| Rejected {
                kind: *kind,
                id: id.clone(),
                reason: reason.clone(),
            })
            .collect()
    }
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Backend(String),
    #[error("stored value of {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    /// A compare-and-swap saw another revision.
    #[error("value changed before overwritten")]
    Conflict,
}

/// Where configuration objects live. Every write is durable before it returns.
#[async_trait::async_trait]
pub trait ConfigStore: Send + Sync + 'static {
    /// One object, or `None`.
    async fn get(&self, dir: &str, id: &str) -> Result<Option<Entry>, StoreError>;

    /// Every object of a directory, ordered by id (etcd's key order).
    async fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError>;

    /// Creates or replaces an object. With `expect_mod_revision`, fails with `Conflict` unless
    /// the stored object still has that revision.
    async fn put(
        &self,
        dir: &str,
        id: &str,
        value: Value,
        expect_mod_revision: Option<u64>,
    ) -> Result<Put, StoreError>;

    /// Deletes an object; `None` when it did not exist.
    async fn delete(&self, dir: &str, id: &str) -> Result<Option<u64>, StoreError>;

    /// A fresh, strictly increasing number for POST ids.
    async fn next_id(&self) -> Result<u64, StoreError>;

    /// The current store revision.
    fn revision(&self) -> u64;

    /// Changes made after this call.
    fn watch(&self) -> broadcast::Receiver<Event>;

    /// The objects the provider holds but does not serve, as of its last change (the Admin API
    /// never stores one; etcd and `apisix.yaml` may hold them).
    fn rejected(&self) -> Vec<Rejected> {
        Vec::new()
    }
}
