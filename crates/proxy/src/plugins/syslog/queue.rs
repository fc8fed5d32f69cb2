//! The hand-off from sessions to senders: one sender task per distinct server conf, shared by
//! every route (and every snapshot's compilation of a route) that logs to it, fed through a
//! queue bounded in bytes. A push never waits and takes no lock; the task ends once the last
//! route holding its queue is gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use sg_model::resource::SyslogConf;
use tokio::sync::{mpsc, oneshot};

use super::batch::{self, Batching, Inbox, CLOSE_DEADLINE};
use super::transport::Connector;

/// The most bytes of entries one sender holds, whatever `drop_limit` says: a server down for
/// days must not exhaust the gateway's memory.
pub(super) const MAX_QUEUED_BYTES: u64 = 64 << 20;

/// One session's entry on its way to the server.
pub(super) struct Entry {
    /// The framed entry, `\n`-terminated.
    pub bytes: Vec<u8>,
    /// Its route's `send_failed` drop counter.
    pub failed: Counter,
}

/// Bytes of entries held by a sender (queued, batched or awaiting a retry), shared between the
/// pushing sessions and the task that releases them.
#[derive(Debug, Default)]
pub(super) struct Budget(AtomicU64);

impl Budget {
    /// Reserves `len` bytes if the total stays within `limit`.
    pub fn take(&self, len: u64, limit: u64) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(len).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    /// Gives back the bytes of entries that were sent or dropped.
    pub fn release(&self, entries: &[Entry]) {
        let len = entries.iter().map(|e| e.bytes.len() as u64).sum();
        self.0.fetch_sub(len, Ordering::AcqRel);
    }

    #[cfg(test)]
    pub fn held(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The sending end of a sender task.
pub(super) struct Queue {
    tx: mpsc::UnboundedSender<Entry>,
    flush: mpsc::UnboundedSender<oneshot::Sender<()>>,
    budget: Arc<Budget>,
    limit: u64,
    /// `host:port`, for log lines.
    pub server: String,
}

impl Queue {
    /// Hands `entry` to the sender; gives it back when the buffer is full (or the sender is
    /// gone, which only a runtime shutting down causes).
    pub fn push(&self, entry: Entry) -> Result<(), Entry> {
        let len = entry.bytes.len() as u64;
        if !self.budget.take(len, self.limit) {
            return Err(entry);
        }
        self.tx.send(entry).map_err(|refused| {
            self.budget.release(std::slice::from_ref(&refused.0));
            refused.0
        })
    }

    /// A queue and the receiving ends its task reads.
    fn new(conf: &SyslogConf) -> (Queue, Inbox) {
        let (tx, entries) = mpsc::unbounded_channel();
        let (flush, flushes) = mpsc::unbounded_channel();
        let queue = Queue {
            tx,
            flush,
            budget: Arc::default(),
            limit: conf.drop_limit.min(MAX_QUEUED_BYTES),
            server: format!("{}:{}", conf.host, conf.port),
        };
        (queue, Inbox { entries, flushes })
    }
}

/// Running senders by their conf (its `log_format` aside: entries are rendered before they are
/// queued). Weak: a sender lives as long as a route holds it.
static SENDERS: LazyLock<Mutex<HashMap<String, Weak<Queue>>>> = LazyLock::new(Default::default);

fn sender_key(conf: &SyslogConf) -> String {
    let mut key = conf.clone();
    key.log_format = None;
    format!("{key:?}")
}

/// The queue of the sender for `conf`, started on the current runtime (the control plane's,
/// where routes are compiled) unless one is running.
pub(super) fn shared(conf: &SyslogConf) -> Arc<Queue> {
    let key = sender_key(conf);
    let mut senders = SENDERS.lock();
    if let Some(queue) = senders.get(&key).and_then(Weak::upgrade) {
        return queue;
    }
    senders.retain(|_, queue| queue.strong_count() > 0);
    let (queue, inbox) = Queue::new(conf);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let budget = queue.budget.clone();
            let connector = Connector::new(conf);
            let batching = Batching::from(conf);
            runtime.spawn(batch::run(inbox, connector, batching, budget));
        }
        // Routes are compiled on the control plane's runtime; without one, nothing could send
        // and every entry is counted as dropped.
        Err(_) => tracing::error!(server = %queue.server, "no runtime for the syslog sender"),
    }
    let queue = Arc::new(queue);
    senders.insert(key, Arc::downgrade(&queue));
    queue
}

/// Has every sender send what it holds now, one attempt per batch, and waits until each
/// tried: for a process about to exit, once its sessions ended. Bounded in time even with a
/// sender stuck in a send.
pub async fn flush_all() {
    let answers: Vec<oneshot::Receiver<()>> = {
        let senders = SENDERS.lock();
        senders
            .values()
            .filter_map(Weak::upgrade)
            .filter_map(|queue| {
                let (done, answer) = oneshot::channel();
                queue.flush.send(done).ok().map(|()| answer)
            })
            .collect()
    };
    let all = async {
        for answer in answers {
            let _ = answer.await;
        }
    };
    let _ = tokio::time::timeout(CLOSE_DEADLINE + Duration::from_secs(1), all).await;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn conf(extra: serde_json::Value) -> SyslogConf {
        let mut value = json!({"host": "127.0.0.1", "port": 9});
        value
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        sg_model::decode(&value).unwrap()
    }

    fn entry(len: usize) -> Entry {
        Entry {
            bytes: vec![b'x'; len],
            failed: Counter::default(),
        }
    }

    #[test]
    fn pushes_beyond_drop_limit_come_back_until_bytes_are_released() {
        let (queue, mut inbox) = Queue::new(&conf(json!({"drop_limit": 100})));
        assert!(queue.push(entry(60)).is_ok());
        assert!(queue.push(entry(41)).is_err(), "101 bytes > drop_limit");
        assert!(queue.push(entry(40)).is_ok());
        assert_eq!(queue.budget.held(), 100);
        let first = inbox.entries.try_recv().unwrap();
        queue.budget.release(&[first]);
        assert!(queue.push(entry(60)).is_ok());
        let (zero, _rx) = Queue::new(&conf(json!({"drop_limit": 0})));
        assert!(zero.push(entry(1)).is_err());
        let (huge, _rx) = Queue::new(&conf(json!({"drop_limit": 1e300})));
        assert_eq!(huge.limit, MAX_QUEUED_BYTES);
    }

    #[test]
    fn a_push_to_a_gone_sender_comes_back_and_holds_nothing() {
        let (queue, inbox) = Queue::new(&conf(json!({})));
        drop(inbox);
        assert!(queue.push(entry(10)).is_err());
        assert_eq!(queue.budget.held(), 0);
    }

    #[tokio::test]
    async fn routes_with_one_server_conf_share_a_sender_until_the_last_goes() {
        let a = shared(&conf(json!({"log_format": {"a": "$remote_addr"}})));
        let b = shared(&conf(json!({"log_format": {"b": "$remote_port"}})));
        assert!(Arc::ptr_eq(&a, &b), "log_format is not part of the sender");
        let other = shared(&conf(json!({"batch_max_size": 7})));
        assert!(!Arc::ptr_eq(&a, &other));
        let gone = Arc::downgrade(&a);
        drop((a, b));
        assert!(
            gone.upgrade().is_none(),
            "the registry holds no sender alive"
        );
        let again = shared(&conf(json!({"log_format": {}})));
        assert!(!Arc::ptr_eq(&again, &other));
        assert_eq!(again.server, "127.0.0.1:9");
    }
}
