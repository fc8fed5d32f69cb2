//! The batch timers on tokio's paused clock, against a transport that records what it is
//! given and fails as scripted.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use sg_model::resource::SyslogConf;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, Instant};

use super::{run, Batching, Inbox, SendError, Transport, CLOSE_DEADLINE, MIN_RETRY_DELAY};
use crate::plugins::syslog::queue::{Budget, Entry};

/// What the scripted transport does with its next batch.
#[derive(Clone, Copy)]
enum Outcome {
    Fail {
        sent: usize,
    },
    /// Never completes (a server that accepts nothing).
    Hang,
}

/// A delivered batch: when it arrived (since the test started) and what it held.
type Delivered = (Duration, Vec<String>);

#[derive(Clone, Default)]
struct Script {
    delivered: Arc<Mutex<Vec<Delivered>>>,
    outcomes: Arc<Mutex<VecDeque<Outcome>>>,
    start: Option<Instant>,
}

impl Transport for Script {
    async fn send(&mut self, entries: &[Entry]) -> Result<(), SendError> {
        let next = self.outcomes.lock().pop_front();
        match next {
            Some(Outcome::Fail { sent }) => {
                let texts = entries[..sent].iter().map(text).collect();
                self.record(texts);
                Err(SendError {
                    sent,
                    error: io::Error::from(io::ErrorKind::ConnectionRefused),
                })
            }
            Some(Outcome::Hang) => std::future::pending().await,
            None => {
                self.record(entries.iter().map(text).collect());
                Ok(())
            }
        }
    }
}

impl Script {
    fn record(&self, texts: Vec<String>) {
        if !texts.is_empty() {
            let at = self.start.map(|s| s.elapsed()).unwrap_or_default();
            self.delivered.lock().push((at, texts));
        }
    }

    fn delivered(&self) -> Vec<Delivered> {
        self.delivered.lock().clone()
    }
}

fn text(entry: &Entry) -> String {
    String::from_utf8_lossy(&entry.bytes).into_owned()
}

fn batching(max_size: usize, max_retry_count: u64) -> Batching {
    Batching {
        max_size,
        inactive_timeout: Duration::from_secs(5),
        buffer_duration: Duration::from_secs(60),
        max_retry_count,
        retry_delay: Duration::from_secs(1),
        name: "test".to_owned(),
        server: "nowhere".to_owned(),
    }
}

/// A running sender: push entries with `send`, close by dropping `tx`.
struct Harness {
    tx: Option<mpsc::UnboundedSender<Entry>>,
    flush: mpsc::UnboundedSender<oneshot::Sender<()>>,
    script: Script,
    failed: Counter,
    budget: Arc<Budget>,
    task: tokio::task::JoinHandle<()>,
}

fn start(batching: Batching, outcomes: &[Outcome]) -> Harness {
    let (tx, entries) = mpsc::unbounded_channel();
    let (flush, flushes) = mpsc::unbounded_channel();
    let script = Script {
        outcomes: Arc::new(Mutex::new(outcomes.iter().copied().collect())),
        start: Some(Instant::now()),
        ..Script::default()
    };
    let budget = Arc::new(Budget::default());
    let inbox = Inbox { entries, flushes };
    let task = tokio::spawn(run(inbox, script.clone(), batching, budget.clone()));
    Harness {
        tx: Some(tx),
        flush,
        script,
        failed: Counter::default(),
        budget,
        task,
    }
}

impl Harness {
    fn send(&self, text: &str) {
        let entry = Entry {
            bytes: text.as_bytes().to_vec(),
            failed: self.failed.clone(),
        };
        assert!(self.budget.take(text.len() as u64, u64::MAX));
        assert!(self.tx.as_ref().unwrap().send(entry).is_ok());
    }

    /// Asks for a flush and waits for its answer.
    async fn flush(&self) {
        let (done, answer) = oneshot::channel();
        assert!(self.flush.send(done).is_ok());
        answer.await.unwrap();
    }

    /// Closes the queue and waits for the task to end.
    async fn close(mut self) -> Self {
        self.tx = None;
        (&mut self.task).await.unwrap();
        self
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn batch(at: Duration, texts: &[&str]) -> Delivered {
    (at, texts.iter().map(|t| (*t).to_owned()).collect())
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_leaves_at_once_and_the_rest_after_inactive_timeout() {
    let sender = start(batching(3, 0), &[]);
    for text in ["a", "b", "c", "d"] {
        sender.send(text);
    }
    sleep(secs(3)).await;
    sender.send("e");
    sleep(secs(60)).await;
    assert_eq!(
        sender.script.delivered(),
        [
            batch(secs(0), &["a", "b", "c"]),
            batch(secs(8), &["d", "e"])
        ],
        "d waited for e, then 5 s of silence"
    );
    assert_eq!(sender.budget.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_steady_trickle_leaves_after_buffer_duration() {
    let mut settings = batching(1000, 0);
    settings.buffer_duration = secs(7);
    let sender = start(settings, &[]);
    for text in ["a", "b", "c", "d", "e"] {
        sender.send(text);
        sleep(secs(2)).await;
    }
    sleep(secs(30)).await;
    assert_eq!(
        sender.script.delivered(),
        [
            batch(secs(7), &["a", "b", "c", "d"]),
            batch(secs(13), &["e"])
        ],
        "never 5 s of silence: the first entry's age sends the batch"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_is_retried_after_retry_delay_and_arrives() {
    let fail = Outcome::Fail { sent: 0 };
    let sender = start(batching(1, 2), &[fail, fail]);
    sender.send("a");
    sleep(secs(1) / 2).await;
    sender.send("b");
    sleep(secs(10)).await;
    assert_eq!(
        sender.script.delivered(),
        [batch(secs(2), &["a"]), batch(secs(2), &["b"])],
        "two failures one second apart, then a and b behind it, in order"
    );
    assert_eq!(sender.failed.get(), 0);
    assert_eq!(sender.budget.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_batch_past_its_retries_is_dropped_and_counted() {
    let fail = Outcome::Fail { sent: 0 };
    let sender = start(batching(2, 1), &[fail, fail]);
    for text in ["a", "b", "c", "d"] {
        sender.send(text);
    }
    sleep(secs(10)).await;
    assert_eq!(sender.script.delivered(), [batch(secs(1), &["c", "d"])]);
    assert_eq!(sender.failed.get(), 2, "a and b");
    assert_eq!(sender.budget.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn datagrams_sent_before_a_failure_are_not_sent_again() {
    let sender = start(batching(3, 1), &[Outcome::Fail { sent: 1 }]);
    for text in ["a", "b", "c"] {
        sender.send(text);
    }
    sleep(secs(10)).await;
    assert_eq!(
        sender.script.delivered(),
        [batch(secs(0), &["a"]), batch(secs(1), &["b", "c"])]
    );
}

#[tokio::test(start_paused = true)]
async fn a_zero_retry_delay_still_waits_a_little() {
    let conf: SyslogConf = sg_model::decode(&serde_json::json!({"host": "h", "port": 514,
        "batch_max_size": 1, "max_retry_count": 1e300, "retry_delay": 0}))
    .unwrap();
    let settings = Batching::from(&conf);
    assert_eq!(settings.retry_delay, MIN_RETRY_DELAY);
    let fails = vec![Outcome::Fail { sent: 0 }; 20];
    let sender = start(settings, &fails);
    sender.send("a");
    sleep(secs(60)).await;
    assert_eq!(
        sender.script.delivered(),
        [batch(MIN_RETRY_DELAY * 20, &["a"])]
    );
}

#[tokio::test(start_paused = true)]
async fn closing_sends_what_is_held_then_ends() {
    let sender = start(batching(1000, 0), &[]);
    sender.send("a");
    sender.send("b");
    let started = Instant::now();
    let sender = sender.close().await;
    assert_eq!(sender.script.delivered(), [batch(secs(0), &["a", "b"])]);
    assert!(started.elapsed() < secs(1), "no timer waited for");
}

#[tokio::test(start_paused = true)]
async fn closing_against_a_hung_server_ends_within_its_deadline() {
    let fail = Outcome::Fail { sent: 0 };
    let sender = start(batching(1, 100), &[fail, Outcome::Hang]);
    sender.send("a");
    sender.send("b");
    sleep(secs(1) / 2).await;
    let started = Instant::now();
    let sender = sender.close().await;
    assert_eq!(started.elapsed(), CLOSE_DEADLINE);
    assert!(sender.script.delivered().is_empty());
    assert_eq!(sender.failed.get(), 2, "both counted as dropped");
    assert_eq!(sender.budget.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_flush_sends_what_is_held_at_once_and_the_sender_goes_on() {
    let fail = Outcome::Fail { sent: 0 };
    let sender = start(batching(2, 100), &[fail]);
    for text in ["a", "b", "c"] {
        sender.send(text);
    }
    sleep(secs(1) / 2).await;
    sender.flush().await;
    assert_eq!(
        sender.script.delivered(),
        [batch(secs(1) / 2, &["a", "b"]), batch(secs(1) / 2, &["c"])],
        "the batch awaiting its retry and the one being filled, without their timers"
    );
    sender.send("d");
    sleep(secs(6)).await;
    assert_eq!(
        sender.script.delivered().last(),
        Some(&batch(secs(11) / 2, &["d"])),
        "its timers as before"
    );
    assert_eq!(sender.budget.held(), 0);
}
