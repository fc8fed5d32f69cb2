//! An idle TLS session holds no copy buffer: the heap a TLS relay keeps once traffic has passed
//! and the session is idle, counted by this thread's allocator, stays far below one buffer.
//! The test also lists every block the session still holds (`--nocapture` prints them), which
//! is what docs/benchmarks.md reports as the cost of an idle TLS connection, and checks that
//! none is a record buffer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use std::net::{SocketAddr, TcpListener};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sg_proxy::{accept_tls, client_hello_sni, StreamRelay, TlsIo};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

/// How many live blocks the test thread can list; later ones are counted but not listed.
const LISTED: usize = 256;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    /// Whether this thread's new blocks are listed in `LIVE`.
    static LISTING: Cell<bool> = const { Cell::new(false) };
    /// This thread's listed blocks still held: (address, size), 0 for a free slot.
    static LIVE: RefCell<[(usize, usize); LISTED]> = const { RefCell::new([(0, 0); LISTED]) };
}

/// Counts the bytes this thread holds, so that the harness's other threads do not interfere,
/// and lists the blocks it allocates while `LISTING` is on.
struct Counting;

fn listed(find: usize, replace: (usize, usize)) {
    LIVE.with(|live| {
        if let Some(slot) = live.borrow_mut().iter_mut().find(|slot| slot.0 == find) {
            *slot = replace;
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping touches
// only const-initialised thread-locals (a `Cell`, a `RefCell` over an array), which need no
// allocation and have no destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.with(|n| n.set(n.get() + layout.size() as isize));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        let block = unsafe { System.alloc(layout) };
        if LISTING.with(Cell::get) {
            listed(0, (block as usize, layout.size()));
        }
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.with(|n| n.set(n.get() - layout.size() as isize));
        listed(ptr as usize, (0, 0));
        // SAFETY: `ptr` came from `System.alloc` with this `layout`, via `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The sizes of the listed blocks still held, largest first.
fn live_blocks() -> Vec<usize> {
    // A copy, so that collecting (which allocates) does not meet the borrow.
    let live = LIVE.with(|live| *live.borrow());
    let mut sizes: Vec<usize> = live
        .iter()
        .filter(|slot| slot.0 != 0)
        .map(|slot| slot.1)
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes
}

fn held() -> isize {
    HELD.with(Cell::get)
}

/// One copy buffer of tokio's `copy_bidirectional`, which a relay must not keep while idle.
const ONE_BUFFER: isize = 4096;

/// Runs the client and the upstream on a thread of their own, so that only the gateway's side
/// allocates on the test's thread: a TLS client sends and receives `bursts` of 256 KiB
/// through the gateway's listener, and the upstream echoes the other way.
fn peers(gateway: SocketAddr, upstream: TcpListener, done: oneshot::Sender<()>) {
    let der = CERT.with(|c| c.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(der).unwrap();
            let client = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let connector = TlsConnector::from(Arc::new(client));
            let name = ServerName::try_from("relay.test").unwrap();
            // A first session warms the gateway thread up (its scratch buffers), unmeasured.
            let tcp = TcpStream::connect(gateway).await.unwrap();
            let mut first = connector.connect(name.clone(), tcp).await.unwrap();
            first.shutdown().await.unwrap();
            let tcp = TcpStream::connect(gateway).await.unwrap();
            let mut client = connector.connect(name, tcp).await.unwrap();
            upstream.set_nonblocking(true).unwrap();
            let upstream = tokio::net::TcpListener::from_std(upstream).unwrap();
            let (mut upstream, _) = upstream.accept().await.unwrap();
            let burst = vec![7u8; 256 * 1024];
            let mut got = vec![0u8; burst.len()];
            for _ in 0..2 {
                let (sent, received) =
                    tokio::join!(client.write_all(&burst), upstream.read_exact(&mut got));
                sent.unwrap();
                received.unwrap();
                let (sent, received) =
                    tokio::join!(upstream.write_all(&burst), client.read_exact(&mut got));
                sent.unwrap();
                received.unwrap();
            }
            done.send(()).unwrap();
            // Holds both connections open (idle) until the test ends.
            std::future::pending::<()>().await;
        });
    });
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

thread_local! {
    static CERT: CertificateDer<'static> = CertificateDer::from(KEYS.cert.der().to_vec());
}

static KEYS: std::sync::LazyLock<rcgen::CertifiedKey> = std::sync::LazyLock::new(|| {
    rcgen::generate_simple_self_signed(vec!["relay.test".to_owned()]).unwrap()
});

/// The gateway's side of a TLS session: the ClientHello read, then the handshake.
async fn tls(mut tcp: TcpStream, server: &Arc<rustls::ServerConfig>) -> TlsIo {
    let hello = client_hello_sni(&mut tcp).await.unwrap();
    assert_eq!(hello.sni.as_deref(), Some("relay.test"));
    accept_tls(tcp, server.clone(), hello.bytes).await.unwrap()
}

#[tokio::test]
async fn an_idle_tls_session_holds_no_buffer() {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(KEYS.key_pair.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CERT.with(|c| c.clone())], key)
        .unwrap();
    let server = Arc::new(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let (done, finished) = oneshot::channel();
    peers(listener.local_addr().unwrap(), upstream, done);

    // The worker's scratch buffer, allocated once per thread by its first relay.
    let (client_end, gateway_end) = duplex(64);
    let (upstream_end, mut far_end) = duplex(64);
    let warm_up = tokio::spawn(StreamRelay::new(
        gateway_end,
        upstream_end,
        Duration::from_secs(60),
    ));
    let mut client_end = client_end;
    client_end.write_all(b"x").await.unwrap();
    far_end.read_exact(&mut [0]).await.unwrap();
    drop((client_end, far_end));
    warm_up.await.unwrap();

    let (tcp, _) = listener.accept().await.unwrap();
    let mut first = tls(tcp, &server).await;
    let mut end = [0u8; 1];
    assert_eq!(first.read(&mut end).await.unwrap(), 0);
    drop(first);

    let (tcp, _) = listener.accept().await.unwrap();
    LISTING.with(|on| on.set(true));
    let gateway_tls = tls(tcp, &server).await;
    let gateway_upstream = TcpStream::connect(upstream_addr).await.unwrap();
    let before = held();
    let relay = tokio::spawn(StreamRelay::new(
        gateway_tls,
        gateway_upstream,
        Duration::from_secs(60),
    ));
    finished.await.unwrap();
    tokio::task::yield_now().await;
    let idle = held() - before;
    LISTING.with(|on| on.set(false));
    let blocks = live_blocks();
    println!(
        "an idle TLS session holds {} bytes in {} blocks: {blocks:?}",
        blocks.iter().sum::<usize>(),
        blocks.len()
    );
    assert!(
        idle < ONE_BUFFER,
        "an idle TLS session holds {idle} bytes beyond its streams"
    );
    // No buffer of records: rustls's buffered connection would keep one of 4 KiB for life.
    assert!(blocks.iter().all(|&size| size < 4096), "{blocks:?}");
    relay.abort();
}
