//! The immutable view of the configuration that connections read.

use std::collections::BTreeMap;

use serde_json::Value;
use sg_model::Kind;

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

    pub fn get(&self, kind: Kind, id: &str) -> Option<&Value> {
        self.objects.get(&kind)?.get(id)
    }
}

/// One published configuration: what every new connection sees.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The store revision this snapshot reflects.
    pub revision: u64,
    pub objects: ObjectSet,
}

impl Snapshot {
    /// Compiles a snapshot from the full object set.
    pub fn compile(revision: u64, objects: ObjectSet) -> Snapshot {
        Snapshot { revision, objects }
    }
}
