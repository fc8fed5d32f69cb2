//! The standalone provider: `apisix.yaml` beside `config.yaml`, in APISIX's format, polled
//! every second. A change is applied only once the file is complete (it ends with `#END`);
//! items that fail the Admin API's checks are logged and skipped. It is read-only: a data
//! plane in standalone mode has no Admin API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use regex::Regex;
use serde_json::Value;
use sg_model::{check, Keyring, Kind};
use tokio::sync::broadcast;

use crate::{ConfigStore, Entry, Event, Put, Rejected, StoreError};

/// How often the file is looked at (APISIX's interval).
const POLL: Duration = Duration::from_secs(1);

type Objects = BTreeMap<Kind, BTreeMap<String, Entry>>;

/// Items of the file that are not served, and why.
type Refused = BTreeMap<(Kind, String), String>;

/// The objects of the last complete file.
#[derive(Debug, Default)]
struct State {
    revision: u64,
    objects: Objects,
    refused: Refused,
    /// The content last looked at, applied or refused: an unchanged file is not parsed again.
    seen: Option<Vec<u8>>,
}

struct Shared {
    path: PathBuf,
    keyring: Keyring,
    state: RwLock<State>,
    events: broadcast::Sender<Event>,
}

/// Configuration from a standalone `apisix.yaml`.
pub struct YamlStore {
    shared: Arc<Shared>,
    poller: tokio::task::JoinHandle<()>,
}

impl YamlStore {
    /// Reads `path` (it must exist; an incomplete file gives an empty configuration until it is
    /// completed) and starts polling it.
    pub async fn open(path: &Path, keyring: Keyring) -> Result<Self, StoreError> {
        let content = tokio::fs::read(path)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot read {}: {e}", path.display())))?;
        let (events, _) = broadcast::channel(16);
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            keyring,
            state: RwLock::new(State::default()),
            events,
        });
        shared.offer(content);
        let poller = tokio::spawn(poll(shared.clone()));
        Ok(YamlStore { shared, poller })
    }
}

impl Drop for YamlStore {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl Shared {
    /// Applies `content` if it differs from what was seen last and is complete; returns whether
    /// a new configuration was published.
    fn offer(&self, content: Vec<u8>) -> bool {
        if self.state.read().seen.as_ref() == Some(&content) {
            return false;
        }
        let revision = self.state.read().revision + 1;
        let parsed = parse(&self.path, &content, &self.keyring, revision);
        let mut state = self.state.write();
        state.seen = Some(content);
        match parsed {
            Err(reason) => {
                tracing::warn!("{reason}");
                false
            }
            Ok((objects, refused)) => {
                state.revision = revision;
                state.objects = objects;
                state.refused = refused;
                drop(state);
                tracing::info!(path = %self.path.display(), revision, "standalone configuration loaded");
                let _ = self.events.send(Event::Reset { revision });
                true
            }
        }
    }
}

/// Looks at the file every [`POLL`], reading it when its modification time or size changed.
async fn poll(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stamp: Option<(SystemTime, u64)> = None;
    let mut failing = false;
    loop {
        tick.tick().await;
        let read = async {
            let meta = tokio::fs::metadata(&shared.path).await?;
            let now = (meta.modified()?, meta.len());
            if stamp == Some(now) {
                return Ok(None);
            }
            stamp = Some(now);
            tokio::fs::read(&shared.path).await.map(Some)
        };
        match read.await {
            Ok(content) => {
                failing = false;
                if let Some(content) = content {
                    shared.offer(content);
                }
            }
            Err(e) if !failing => {
                failing = true;
                stamp = None;
                tracing::warn!(path = %shared.path.display(), error = %e, "cannot read the standalone configuration; keeping the last one");
            }
            Err(_) => {}
        }
    }
}

/// Why a whole file is refused (the last complete one stays in force).
#[derive(Debug, thiserror::Error)]
enum FileError {
    #[error("{} is not UTF-8: {error}", path.display())]
    NotUtf8 {
        path: PathBuf,
        error: std::str::Utf8Error,
    },
    /// Not written completely yet, or cut short.
    #[error("missing valid end flag in file {}", path.display())]
    NoEndFlag { path: PathBuf },
    #[error("failed to parse {}: {error}", path.display())]
    Yaml {
        path: PathBuf,
        /// Boxed: the parser's error is large, and the other outcomes should not carry it.
        error: Box<serde_saphyr::Error>,
    },
    #[error("failed to handle configuration: can't find environment variable {0}")]
    UnsetVariable(String),
    #[error("{} is not a YAML mapping", path.display())]
    NotMapping { path: PathBuf },
}

/// The file's objects, checked, and the items refused; or why the whole file is refused.
fn parse(
    path: &Path,
    content: &[u8],
    keyring: &Keyring,
    revision: u64,
) -> Result<(Objects, Refused), FileError> {
    let text = std::str::from_utf8(content).map_err(|error| FileError::NotUtf8 {
        path: path.to_owned(),
        error,
    })?;
    if !text.trim_end().ends_with("#END") {
        return Err(FileError::NoEndFlag {
            path: path.to_owned(),
        });
    }
    let mut doc: Value = serde_saphyr::from_str(text).map_err(|error| FileError::Yaml {
        path: path.to_owned(),
        error: Box::new(error),
    })?;
    substitute_env(&mut doc)?;
    if !doc.is_object() && !doc.is_null() {
        return Err(FileError::NotMapping {
            path: path.to_owned(),
        });
    }
    // Items by kind and id, as the file has them: references are looked up among them.
    let mut raw: BTreeMap<Kind, Vec<(String, Value)>> = BTreeMap::new();
    for kind in Kind::ALL {
        let items = match doc.get(kind.dir()) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(items)) => items,
            Some(other) => {
                tracing::warn!(path = %path.display(), "`{}` must be a list, got {other}; skipped", kind.dir());
                continue;
            }
        };
        let ids = items
            .iter()
            .enumerate()
            .map(|(i, item)| match item.get("id") {
                Some(Value::String(id)) => id.clone(),
                Some(Value::Number(id)) => id.to_string(),
                _ => format!("arr_{}", i + 1),
            });
        raw.insert(kind, ids.zip(items.iter().cloned()).collect());
    }
    let lookup = |kind: Kind, id: &str| {
        Ok(raw
            .get(&kind)
            .and_then(|items| items.iter().find(|(i, _)| i == id))
            .map(|(_, value)| value.clone()))
    };
    let (mut objects, mut refused) = (Objects::new(), Refused::new());
    for (kind, items) in &raw {
        for (id, item) in items {
            if let Err(reason) = check::check(*kind, item, keyring, &lookup) {
                tracing::warn!(path = %path.display(), item = %format!("{}/{id}", kind.dir()), %reason, "invalid item skipped");
                refused.insert((*kind, id.clone()), reason);
                continue;
            }
            let mut value = item.clone();
            if let Some(map) = value.as_object_mut() {
                map.insert("id".to_owned(), Value::String(id.clone()));
            }
            let entry = Entry {
                id: id.clone(),
                value,
                create_revision: revision,
                mod_revision: revision,
            };
            objects.entry(*kind).or_default().insert(id.clone(), entry);
        }
    }
    Ok((objects, refused))
}

/// `${{VAR}}` and `${{VAR:=default}}` in string values, as APISIX resolves them: a value that
/// used a variable and reads as a number or a boolean becomes one.
fn substitute_env(value: &mut Value) -> Result<(), FileError> {
    static VAR: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\$\{\{\s*(\w+)\s*(?::=(.*?))?\s*\}\}").expect("the variable pattern compiles")
    });
    match value {
        Value::Array(items) => items.iter_mut().try_for_each(substitute_env),
        Value::Object(map) => map.values_mut().try_for_each(substitute_env),
        Value::String(text) if VAR.is_match(text) => {
            let mut missing = None;
            let replaced = VAR.replace_all(text, |caps: &regex::Captures<'_>| {
                let name = &caps[1];
                let default = caps.get(2).map(|d| d.as_str().trim().to_owned());
                std::env::var(name).ok().or(default).unwrap_or_else(|| {
                    missing = Some(name.to_owned());
                    String::new()
                })
            });
            if let Some(name) = missing {
                return Err(FileError::UnsetVariable(name));
            }
            *value = typed(&replaced);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn typed(text: &str) -> Value {
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    if let Some(n) = text
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
    {
        return Value::Number(n);
    }
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(text.to_owned()),
    }
}

fn read_only() -> StoreError {
    StoreError::Backend("the standalone apisix.yaml is read-only".to_owned())
}

#[async_trait::async_trait]
impl ConfigStore for YamlStore {
    async fn get(&self, dir: &str, id: &str) -> Result<Option<Entry>, StoreError> {
        let state = self.shared.state.read();
        Ok(Kind::from_dir(dir)
            .and_then(|kind| state.objects.get(&kind))
            .and_then(|objects| objects.get(id).cloned()))
    }

    async fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError> {
        let state = self.shared.state.read();
        Ok(Kind::from_dir(dir)
            .and_then(|kind| state.objects.get(&kind))
            .map(|objects| objects.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn put(&self, _: &str, _: &str, _: Value, _: Option<u64>) -> Result<Put, StoreError> {
        Err(read_only())
    }

    async fn delete(&self, _: &str, _: &str) -> Result<Option<u64>, StoreError> {
        Err(read_only())
    }

    async fn next_id(&self) -> Result<u64, StoreError> {
        Err(read_only())
    }

    fn revision(&self) -> u64 {
        self.shared.state.read().revision
    }

    fn watch(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    fn rejected(&self) -> Vec<Rejected> {
        Rejected::list(&self.shared.state.read().refused)
    }
}

#[cfg(test)]
mod tests;
