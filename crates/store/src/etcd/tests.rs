//! The provider against a real `etcd` (Debian's `etcd-server`) on free loopback ports.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tokio::time::{timeout, Instant};

use super::*;

const PATIENCE: Duration = Duration::from_secs(20);
/// A valid upstream as APISIX stores it.
const UP: &str = r#"{"nodes":{"127.0.0.1:1883":1},"type":"roundrobin"}"#;

/// One etcd member in a scratch directory.
struct TestEtcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

/// Settings for one plain `http://` member.
fn plain(url: String, timeout: Duration) -> EtcdSettings {
    EtcdSettings {
        hosts: vec![url],
        timeout,
        ..EtcdSettings::default()
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl TestEtcd {
    async fn start() -> TestEtcd {
        let mut etcd = TestEtcd {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.spawn().await;
        etcd
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn settings(&self) -> EtcdSettings {
        plain(self.url(), Duration::from_secs(5))
    }

    async fn spawn(&mut self) {
        let (client, peer) = (self.url(), format!("http://127.0.0.1:{}", self.peer_port));
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server) must be installed");
        self.child = Some(child);
        let client = Client::new(&plain(self.url(), Duration::from_secs(1))).unwrap();
        let deadline = Instant::now() + PATIENCE;
        while client
            .call("/v3/kv/range", &json!({"key": b64("ready")}))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "etcd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes `raw` at `key` as another etcd client would.
    async fn put_raw(&self, key: &str, raw: &str) -> u64 {
        let client = Client::new(&plain(self.url(), Duration::from_secs(5))).unwrap();
        let answer = client
            .call("/v3/kv/put", &json!({"key": b64(key), "value": b64(raw)}))
            .await
            .unwrap();
        header_revision(&answer).unwrap()
    }

    async fn compact(&self, revision: u64) {
        let client = Client::new(&plain(self.url(), Duration::from_secs(5))).unwrap();
        let request = json!({"revision": revision.to_string(), "physical": true});
        client.call("/v3/kv/compaction", &request).await.unwrap();
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Receives events until one at `revision` or later; returns them all.
async fn events_until(events: &mut broadcast::Receiver<Event>, revision: u64) -> Vec<Event> {
    let mut seen = Vec::new();
    timeout(PATIENCE, async {
        loop {
            let event = events.recv().await.unwrap();
            let done = event.revision() >= revision;
            seen.push(event);
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event at revision {revision}: {seen:?}"));
    seen
}

fn ids(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

#[tokio::test]
async fn writes_reads_and_revisions() {
    let etcd = TestEtcd::start().await;
    let store = EtcdStore::connect(&etcd.settings(), Keyring::default())
        .await
        .unwrap();
    let up = json!({"nodes": {"127.0.0.1:1883": 1}});
    let first = store.put("upstreams", "1", up.clone(), None).await.unwrap();
    assert!(first.created);
    assert_eq!(first.entry.create_revision, first.entry.mod_revision);
    let second = store.put("upstreams", "1", up.clone(), None).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.entry.create_revision, first.entry.create_revision);
    assert!(second.entry.mod_revision > first.entry.mod_revision);

    let stale = Some(first.entry.mod_revision);
    assert!(matches!(
        store.put("upstreams", "1", up.clone(), stale).await,
        Err(StoreError::Conflict)
    ));
    let fresh = Some(second.entry.mod_revision);
    let third = store
        .put("upstreams", "1", up.clone(), fresh)
        .await
        .unwrap();
    assert!(matches!(
        store.put("upstreams", "9", up.clone(), Some(1)).await,
        Err(StoreError::Conflict)
    ));

    let got = store.get("upstreams", "1").await.unwrap().unwrap();
    assert_eq!(got.value, up);
    assert_eq!(got.mod_revision, third.entry.mod_revision);
    assert!(store.get("upstreams", "2").await.unwrap().is_none());

    let id = store.next_id().await.unwrap();
    assert!(id > third.entry.mod_revision);
    assert!(store.next_id().await.unwrap() > id);

    let deleted = store.delete("upstreams", "1").await.unwrap().unwrap();
    assert!(deleted > id);
    assert_eq!(store.delete("upstreams", "1").await.unwrap(), None);
}

#[tokio::test]
async fn the_view_follows_etcd_and_skips_invalid_objects() {
    let etcd = TestEtcd::start().await;
    etcd.put_raw("/apisix/stream_routes/", "init_dir").await;
    etcd.put_raw("/apisix/upstreams/broken", "{not json").await;
    etcd.put_raw("/apisix/upstreams/1", r#"{"nodes":{"127.0.0.1:1":1}}"#)
        .await;
    let store = EtcdStore::connect(&etcd.settings(), Keyring::default())
        .await
        .unwrap();
    assert_eq!(ids(&store.list("upstreams").await.unwrap()), ["1"]);
    assert!(store.list("stream_routes").await.unwrap().is_empty());
    let mut events = store.watch();

    // Written by someone else, including values that must never reach the data plane.
    etcd.put_raw("/apisix/routes/1", "{}").await;
    etcd.put_raw("/apisix/stream_routes/bad", r#"{"remote_addr":"x"}"#)
        .await;
    etcd.put_raw("/apisix/stream_routes/a", r#"{"upstream_id":"1"}"#)
        .await;
    let revision = etcd.put_raw("/apisix/upstreams/1", "[1]").await;
    let seen = events_until(&mut events, revision).await;
    assert!(
        matches!(&seen[0], Event::Delete { id, .. } if id == "bad"),
        "{seen:?}"
    );
    assert!(matches!(&seen[1], Event::Put { entry, .. } if entry.id == "a"));
    assert!(matches!(&seen[2], Event::Delete { dir, id, .. } if dir == "upstreams" && id == "1"));
    assert_eq!(ids(&store.list("stream_routes").await.unwrap()), ["a"]);
    assert!(store.list("upstreams").await.unwrap().is_empty());
    assert_eq!(store.revision(), revision);
    // The Admin API still sees what is stored, so it can be replaced.
    let broken = store.get("upstreams", "broken").await.unwrap().unwrap();
    assert_eq!(broken.value, json!("{not json"));

    let deleted = store.delete("stream_routes", "a").await.unwrap().unwrap();
    let seen = events_until(&mut events, deleted).await;
    assert!(matches!(seen.last(), Some(Event::Delete { id, .. }) if id == "a"));
    assert!(store.list("stream_routes").await.unwrap().is_empty());
}

#[tokio::test]
async fn outage_keeps_the_view_and_fails_writes_fast() {
    let mut etcd = TestEtcd::start().await;
    etcd.put_raw("/apisix/upstreams/1", UP).await;
    let store = EtcdStore::connect(&etcd.settings(), Keyring::default())
        .await
        .unwrap();
    let mut events = store.watch();
    etcd.kill();

    let started = Instant::now();
    let err = store
        .put("upstreams", "2", serde_json::from_str(UP).unwrap(), None)
        .await;
    assert!(
        matches!(err, Err(StoreError::Backend(ref m)) if m.contains("unreachable")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(ids(&store.list("upstreams").await.unwrap()), ["1"]);

    etcd.spawn().await;
    let put = store
        .put("upstreams", "2", serde_json::from_str(UP).unwrap(), None)
        .await
        .unwrap();
    let seen = events_until(&mut events, put.entry.mod_revision).await;
    assert!(matches!(seen.last(), Some(Event::Put { entry, .. }) if entry.id == "2"));
    assert_eq!(ids(&store.list("upstreams").await.unwrap()), ["1", "2"]);
}

/// A TCP relay between a store and etcd that the test can cut: while cut, every connection
/// is closed at once.
struct Relay {
    addr: String,
    target: Arc<parking_lot::Mutex<String>>,
    open: tokio::sync::watch::Sender<bool>,
    live: Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let (open, open_rx) = tokio::sync::watch::channel(true);
        let target = Arc::new(parking_lot::Mutex::new(target));
        let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (to, count) = (target.clone(), live.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*open_rx.borrow() {
                    continue;
                }
                let to = to.lock().trim_start_matches("http://").to_owned();
                let (mut open, count) = (open_rx.clone(), count.clone());
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = open.wait_for(|open| !*open) => {}
                        }
                    }
                    count.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Relay {
            addr,
            target,
            open,
            live,
        }
    }

    /// Closes every connection; returns once none is left.
    async fn cut(&self) {
        self.open.send_replace(false);
        let deadline = Instant::now() + PATIENCE;
        while self.live.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "relay connections did not close");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn restore(&self, target: String) {
        *self.target.lock() = target;
        self.open.send_replace(true);
    }

    fn settings(&self) -> EtcdSettings {
        plain(self.addr.clone(), Duration::from_secs(5))
    }
}

#[tokio::test]
async fn a_compacted_history_reloads_everything() {
    let etcd = TestEtcd::start().await;
    etcd.put_raw("/apisix/upstreams/gone", UP).await;
    let relay = Relay::start(etcd.url()).await;
    let store = EtcdStore::connect(&relay.settings(), Keyring::default())
        .await
        .unwrap();
    let mut events = store.watch();
    // While this store cannot watch, etcd moves on and forgets its history.
    relay.cut().await;
    let client = Client::new(&plain(etcd.url(), Duration::from_secs(5))).unwrap();
    let gone = json!({"key": b64("/apisix/upstreams/gone")});
    client.call("/v3/kv/deleterange", &gone).await.unwrap();
    etcd.put_raw("/apisix/upstreams/a", UP).await;
    let last = etcd.put_raw("/apisix/upstreams/b", UP).await;
    etcd.compact(last).await;
    relay.restore(etcd.url());

    let seen = events_until(&mut events, last).await;
    assert_eq!(seen, [Event::Reset { revision: last }]);
    assert_eq!(ids(&store.list("upstreams").await.unwrap()), ["a", "b"]);
}

#[tokio::test]
async fn another_etcd_cluster_reloads_everything() {
    let first = TestEtcd::start().await;
    first.put_raw("/apisix/upstreams/old", UP).await;
    for _ in 0..5 {
        first.put_raw("/apisix/gen_id", "1").await;
    }
    let relay = Relay::start(first.url()).await;
    let store = EtcdStore::connect(&relay.settings(), Keyring::default())
        .await
        .unwrap();
    let mut events = store.watch();
    relay.cut().await;
    // A new, empty cluster whose revisions start again from 1.
    let second = TestEtcd::start().await;
    let revision = second.put_raw("/apisix/upstreams/new", UP).await;
    assert!(revision < store.revision());
    relay.restore(second.url());

    let seen = events_until(&mut events, revision).await;
    assert_eq!(seen, [Event::Reset { revision }]);
    assert_eq!(ids(&store.list("upstreams").await.unwrap()), ["new"]);
}
