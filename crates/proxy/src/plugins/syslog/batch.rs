//! A sender task, with APISIX's batch-processor rules: entries gather into a batch that leaves
//! when it holds `batch_max_size` entries, when no entry came for `inactive_timeout`, or when
//! its first entry is `buffer_duration` old. A batch whose send fails is tried again after
//! `retry_delay`, `max_retry_count` times, then dropped. Batches leave in order, one at a time:
//! those formed while one waits for its retry wait behind it (within the queue's byte bound).
//! Before the process exits, and when its routes are gone, a sender tries once to send all it
//! holds.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use sg_model::resource::SyslogConf;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, timeout_at, Instant};
use tracing::warn;

use super::queue::{Budget, Entry};
use crate::metrics::logs::{self, LogKind};

/// The shortest wait before a retry, whatever `retry_delay` says (APISIX allows 0): a server
/// that refuses at once must not spin the control plane's thread.
pub(super) const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);

/// How long a sender whose routes are all gone keeps trying to send what it holds: one
/// attempt per batch, within this time.
pub(super) const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// The batch-processor settings of a sender.
#[derive(Clone, Debug)]
pub(super) struct Batching {
    pub max_size: usize,
    pub inactive_timeout: Duration,
    pub buffer_duration: Duration,
    pub max_retry_count: u64,
    pub retry_delay: Duration,
    /// The processor's name and its server, for log lines.
    pub name: String,
    pub server: String,
}

impl From<&SyslogConf> for Batching {
    fn from(conf: &SyslogConf) -> Batching {
        Batching {
            max_size: usize::try_from(conf.batch_max_size).unwrap_or(usize::MAX),
            inactive_timeout: conf.inactive_timeout,
            buffer_duration: conf.buffer_duration,
            max_retry_count: conf.max_retry_count,
            retry_delay: conf.retry_delay.max(MIN_RETRY_DELAY),
            name: conf.name.clone(),
            server: format!("{}:{}", conf.host, conf.port),
        }
    }
}

/// A failed send: the error, and how many entries of the batch went out before it.
#[derive(Debug)]
pub(super) struct SendError {
    pub sent: usize,
    pub error: io::Error,
}

/// What a sender task reads: the entries, and requests to send at once everything it holds
/// (answered once it tried).
pub(super) struct Inbox {
    pub entries: UnboundedReceiver<Entry>,
    pub flushes: UnboundedReceiver<oneshot::Sender<()>>,
}

/// Where batches go.
pub(super) trait Transport: Send {
    fn send(&mut self, entries: &[Entry]) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// The batch being filled.
#[derive(Default)]
struct Buffer {
    entries: Vec<Entry>,
    /// When its first and its latest entry came.
    first_last: Option<(Instant, Instant)>,
}

impl Buffer {
    fn push(&mut self, entry: Entry, now: Instant) {
        let first = self.first_last.map_or(now, |(first, _)| first);
        self.first_last = Some((first, now));
        self.entries.push(entry);
    }

    /// When the batch must leave, if it holds anything.
    fn due(&self, batching: &Batching) -> Option<Instant> {
        let (first, last) = self.first_last?;
        Some((last + batching.inactive_timeout).min(first + batching.buffer_duration))
    }

    fn take(&mut self) -> Batch {
        self.first_last = None;
        Batch {
            entries: std::mem::take(&mut self.entries),
            failures: 0,
        }
    }
}

/// A batch ready to leave.
struct Batch {
    entries: Vec<Entry>,
    failures: u64,
}

/// The sender's state between events.
struct Sender<T> {
    transport: T,
    batching: Batching,
    budget: Arc<Budget>,
    ready: VecDeque<Batch>,
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs a sender until every handle of its queue is gone, then sends what it holds (bounded by
/// [`CLOSE_DEADLINE`]) and returns.
pub(super) async fn run<T: Transport>(
    mut inbox: Inbox,
    transport: T,
    batching: Batching,
    budget: Arc<Budget>,
) {
    let mut sender = Sender {
        transport,
        batching,
        budget,
        ready: VecDeque::new(),
    };
    let mut buffer = Buffer::default();
    let mut retry_at = None;
    loop {
        if retry_at.is_none() {
            retry_at = sender.send_ready().await;
        }
        let due = buffer.due(&sender.batching);
        tokio::select! {
            received = inbox.entries.recv() => match received {
                Some(entry) => {
                    buffer.push(entry, Instant::now());
                    if buffer.entries.len() >= sender.batching.max_size {
                        sender.ready.push_back(buffer.take());
                    }
                }
                None => break,
            },
            () = sleep_until_some(due) => sender.ready.push_back(buffer.take()),
            () = sleep_until_some(retry_at) => retry_at = None,
            Some(done) = inbox.flushes.recv() => {
                // Entries pushed before the request may still be in the other channel.
                while let Ok(entry) = inbox.entries.try_recv() {
                    buffer.push(entry, Instant::now());
                }
                if !buffer.entries.is_empty() {
                    sender.ready.push_back(buffer.take());
                }
                sender.flush().await;
                let _ = done.send(());
            }
        }
    }
    if !buffer.entries.is_empty() {
        sender.ready.push_back(buffer.take());
    }
    sender.flush().await;
}

impl<T: Transport> Sender<T> {
    /// Sends the ready batches in order until one fails; returns when to try it again.
    async fn send_ready(&mut self) -> Option<Instant> {
        while let Some(batch) = self.ready.front_mut() {
            let Err(failed) = self.transport.send(&batch.entries).await else {
                self.budget.release(&batch.entries);
                self.ready.pop_front();
                continue;
            };
            // Entries that went out before the failure are not sent again.
            let sent: Vec<Entry> = batch
                .entries
                .drain(..failed.sent.min(batch.entries.len()))
                .collect();
            self.budget.release(&sent);
            batch.failures += 1;
            if batch.entries.is_empty() {
                self.ready.pop_front();
                continue;
            }
            if batch.failures > self.batching.max_retry_count {
                let entries = self
                    .ready
                    .pop_front()
                    .map(|b| b.entries)
                    .unwrap_or_default();
                self.drop_entries(entries, &failed.error, "after their retries");
                continue;
            }
            if logs::allow(LogKind::Syslog) {
                warn!(
                    name = %self.batching.name,
                    server = %self.batching.server,
                    entries = batch.entries.len(),
                    error = %failed.error,
                    "failed to send a syslog batch, retrying in {:?}",
                    self.batching.retry_delay
                );
            }
            return Some(Instant::now() + self.batching.retry_delay);
        }
        None
    }

    /// One attempt per batch held, within [`CLOSE_DEADLINE`]; what is not sent is dropped.
    async fn flush(&mut self) {
        let deadline = Instant::now() + CLOSE_DEADLINE;
        let attempts = timeout_at(deadline, async {
            while let Some(batch) = self.ready.front() {
                let sent = self.transport.send(&batch.entries).await;
                let Some(mut batch) = self.ready.pop_front() else {
                    break;
                };
                match sent {
                    Ok(()) => self.budget.release(&batch.entries),
                    Err(failed) => {
                        let sent: Vec<Entry> = batch
                            .entries
                            .drain(..failed.sent.min(batch.entries.len()))
                            .collect();
                        self.budget.release(&sent);
                        self.drop_entries(batch.entries, &failed.error, "after a last attempt");
                    }
                }
            }
        })
        .await;
        if attempts.is_err() {
            let error = io::Error::new(io::ErrorKind::TimedOut, "the last attempt took too long");
            let left: Vec<Entry> = self.ready.drain(..).flat_map(|b| b.entries).collect();
            self.drop_entries(left, &error, "after a last attempt");
        }
    }

    /// Counts entries that will never be sent, and says so at a bounded rate.
    fn drop_entries(&self, entries: Vec<Entry>, error: &io::Error, when: &str) {
        for entry in &entries {
            entry.failed.inc();
        }
        self.budget.release(&entries);
        if logs::allow(LogKind::Syslog) {
            warn!(
                name = %self.batching.name,
                server = %self.batching.server,
                entries = entries.len(),
                %error,
                "syslog entries dropped {when}"
            );
        }
    }
}

#[cfg(test)]
mod tests;
