//! Follows etcd: a full load, then one watch on the prefix from the next revision. Each change
//! updates the view and becomes an `Event`. A lost watch resumes where it stopped once etcd is
//! back (the view, and so the data plane, keeps the last good state meanwhile); when it cannot
//! resume (compacted revision, another etcd cluster) everything is loaded again and an
//! `Event::Reset` is sent.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::{json, Value};
use sg_model::{Keyring, Kind};

use super::client::Client;
use super::codec::{b64, decode_object, header_revision, num, KeyValue, Layout};
use super::error::EtcdError;
use super::{Shared, View};
use crate::{Entry, Event};

/// The first pause before reconnecting, doubled after each failure up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// How a watch ended without an error.
#[derive(Debug)]
enum End {
    /// Silent for `watch_timeout` (so a connection lost without a FIN cannot freeze a node):
    /// resume from the next revision.
    Renew,
    /// The watch cannot resume (the reason says why): load everything again.
    Reload(String),
}

/// Every object of the three directories at one revision, checked.
pub(super) async fn load(
    client: &Client,
    layout: &Layout,
    keyring: &Keyring,
) -> Result<View, EtcdError> {
    let mut view = View::default();
    for kind in Kind::ALL {
        let (start, end) = layout.dir_range(kind.dir());
        let mut request = json!({"key": b64(start), "range_end": b64(end)});
        if view.revision != 0 {
            // The other directories at the revision of the first one: one consistent state.
            request["revision"] = json!(view.revision.to_string());
        }
        let answer = client.call("/v3/kv/range", &request).await?;
        if view.revision == 0 {
            view.revision = header_revision(&answer)?;
            view.cluster = cluster_id(&answer);
        }
        for kv in answer["kvs"].as_array().into_iter().flatten() {
            let kv = KeyValue::parse(kv)?;
            let Some((_, id)) = layout.split(&kv.key) else {
                continue;
            };
            match decode_object(kind, &kv.value, keyring) {
                Ok(value) => view.insert(
                    kind,
                    Entry {
                        id: id.to_owned(),
                        value,
                        create_revision: kv.create_revision,
                        mod_revision: kv.mod_revision,
                    },
                ),
                Err(reason) => {
                    tracing::warn!(key = %kv.key, %reason, "invalid object in etcd skipped");
                    view.reject(kind, id, &reason);
                }
            }
        }
    }
    Ok(view)
}

/// The id of the cluster that answered (a restored or replaced etcd has another one).
fn cluster_id(answer: &Value) -> String {
    num(answer.pointer("/header/cluster_id")).to_string()
}

/// The watcher task: runs until the store is dropped.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut backoff = BACKOFF_START;
    let mut reload = false;
    loop {
        if reload {
            match load(&shared.client, &shared.layout, &shared.keyring).await {
                Ok(view) => {
                    let revision = view.revision;
                    *shared.view.write() = view;
                    let _ = shared.events.send(Event::Reset { revision });
                    tracing::info!(revision, "configuration reloaded from etcd");
                    reload = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot reload from etcd");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                    continue;
                }
            }
        }
        let from = shared.view.read().revision + 1;
        match follow(&shared, from, &mut backoff).await {
            Ok(End::Renew) => {}
            Ok(End::Reload(reason)) => {
                tracing::warn!(from, %reason, "cannot resume the etcd watch; reloading everything");
                reload = true;
            }
            Err(e) => {
                if e.is_invalid_token() {
                    // Resumes from the same revision once authenticated again.
                    shared.client.forget_token();
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "lost the etcd watch");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
        }
    }
}

/// Watches the prefix from revision `from` until the watch ends.
async fn follow(shared: &Shared, from: u64, backoff: &mut Duration) -> Result<End, EtcdError> {
    let (start, end) = shared.layout.all_range();
    let request = json!({"create_request": {
        "key": b64(start), "range_end": b64(end), "start_revision": from.to_string(),
    }});
    let mut body = shared.client.stream("/v3/watch", &request).await?;
    let mut lines = Lines::default();
    loop {
        let frame = match tokio::time::timeout(shared.watch_timeout, body.frame()).await {
            Err(_) => return Ok(End::Renew),
            Ok(None) => return Err(EtcdError::Unreachable("etcd closed the watch".to_owned())),
            Ok(Some(Err(e))) => return Err(EtcdError::Unreachable(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        lines.push(&data)?;
        while let Some(line) = lines.next_line() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let message: Value = serde_json::from_slice(&line)
                .map_err(|e| EtcdError::Protocol(format!("watch message: {e}")))?;
            if let Some(end) = handle(shared, from, &message, backoff)? {
                return Ok(end);
            }
        }
    }
}

/// The longest watch message taken (etcd's own messages stay far below: one value is at most
/// 1.5 MiB by default). A longer one ends the watch, which then resumes, rather than growing
/// the buffer without end.
const MAX_WATCH_LINE: usize = 64 << 20;

/// The watch stream cut into lines: the gateway writes one JSON object per line.
#[derive(Default)]
struct Lines {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already known to hold no newline.
    scanned: usize,
    /// Bytes after the last newline received.
    unfinished: usize,
}

impl Lines {
    fn push(&mut self, data: &[u8]) -> Result<(), EtcdError> {
        self.buffer.extend_from_slice(data);
        self.unfinished = match data.iter().rposition(|b| *b == b'\n') {
            Some(at) => data.len() - at - 1,
            None => self.unfinished + data.len(),
        };
        if self.unfinished > MAX_WATCH_LINE {
            return Err(EtcdError::Protocol(format!(
                "a watch message longer than {MAX_WATCH_LINE} bytes"
            )));
        }
        Ok(())
    }

    /// The next complete line, newline included.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        let found = self.buffer[self.scanned..].iter().position(|b| *b == b'\n');
        match found {
            Some(at) => {
                let line = self.buffer.drain(..=self.scanned + at).collect();
                self.scanned = 0;
                Some(line)
            }
            None => {
                self.scanned = self.buffer.len();
                None
            }
        }
    }
}

/// Applies one watch message; `Some` when the watch is over.
fn handle(
    shared: &Shared,
    from: u64,
    message: &Value,
    backoff: &mut Duration,
) -> Result<Option<End>, EtcdError> {
    if let Some(error) = message.get("error") {
        let text = |field: &str| error.get(field).and_then(Value::as_str).map(str::to_owned);
        return Err(EtcdError::Server {
            code: error.get("grpc_code").and_then(Value::as_i64).unwrap_or(0),
            message: text("message").unwrap_or_else(|| error.to_string()),
        });
    }
    let result = &message["result"];
    if result.get("created") == Some(&Value::Bool(true)) {
        let cluster = cluster_id(result);
        if cluster != shared.view.read().cluster {
            return Ok(Some(End::Reload(format!("etcd is now cluster {cluster}"))));
        }
        tracing::debug!(from, "watching etcd");
        *backoff = BACKOFF_START;
    }
    if result.get("canceled") == Some(&Value::Bool(true)) {
        return match num(result.get("compact_revision")) {
            // A watch created with a token etcd no longer accepts is canceled at once, with
            // the reason in text ("… etcdserver: invalid auth token").
            0 => Err(EtcdError::Server {
                code: 0,
                message: result
                    .get("cancel_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("etcd canceled the watch")
                    .to_owned(),
            }),
            compacted => Ok(Some(End::Reload(format!(
                "etcd compacted the history up to revision {compacted}"
            )))),
        };
    }
    for event in result["events"].as_array().into_iter().flatten() {
        apply(shared, event)?;
    }
    Ok(None)
}

/// Applies one etcd event to the view and tells the watchers. A value that fails the checks
/// removes the object: what a node serves depends only on what etcd holds.
fn apply(shared: &Shared, event: &Value) -> Result<(), EtcdError> {
    let kv = KeyValue::parse(&event["kv"])?;
    let deleted = event.get("type").and_then(Value::as_str) == Some("DELETE");
    let Some((kind, id)) = shared.layout.split(&kv.key) else {
        let mut view = shared.view.write();
        view.revision = view.revision.max(kv.mod_revision);
        return Ok(());
    };
    let checked = (!deleted).then(|| decode_object(kind, &kv.value, &shared.keyring));
    let (dir, revision) = (kind.dir().to_owned(), kv.mod_revision);
    let change = match checked {
        Some(Ok(value)) => Event::Put {
            dir,
            entry: Entry {
                id: id.to_owned(),
                value,
                create_revision: kv.create_revision,
                mod_revision: revision,
            },
        },
        Some(Err(reason)) => {
            tracing::warn!(key = %kv.key, %reason, "invalid object in etcd skipped");
            shared.view.write().reject(kind, id, &reason);
            Event::Delete {
                dir,
                id: id.to_owned(),
                revision,
            }
        }
        None => Event::Delete {
            dir,
            id: id.to_owned(),
            revision,
        },
    };
    {
        let mut view = shared.view.write();
        view.revision = view.revision.max(revision);
        match (&change, deleted) {
            (Event::Put { entry, .. }, _) => view.insert(kind, entry.clone()),
            (_, true) => view.remove(kind, id),
            // Refused above: kept as rejected.
            (_, false) => {}
        }
    }
    let _ = shared.events.send(change);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_frames_and_a_bound() {
        let mut lines = Lines::default();
        lines.push(b"{\"a\":").unwrap();
        assert_eq!(lines.next_line(), None);
        lines.push(b"1}\n{\"b\":2}\n{\"c").unwrap();
        assert_eq!(lines.next_line().as_deref(), Some(&b"{\"a\":1}\n"[..]));
        assert_eq!(lines.next_line().as_deref(), Some(&b"{\"b\":2}\n"[..]));
        assert_eq!(lines.next_line(), None);
        lines.push(b"\":3}\n").unwrap();
        assert_eq!(lines.next_line().as_deref(), Some(&b"{\"c\":3}\n"[..]));

        let mut endless = Lines::default();
        let chunk = vec![b'x'; 1 << 20];
        let pushed = (0..=64)
            .map(|_| endless.push(&chunk))
            .position(|r| r.is_err());
        assert_eq!(
            pushed,
            Some(64),
            "refused once past 64 MiB without a newline"
        );
    }
}
