//! The accept loop of a worker other than home: idle until a surge, then taking connections
//! from the listener alongside home, but only while home is saturated.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::error;

use super::{stopping, Admit, ACCEPT_BACKOFF};
use crate::runtime::workers::{Worker, Workers};

/// Waits for a surge, then accepts for `here` until it ends, when the loop gives up its
/// registration of the listener.
///
/// A connection is taken only while home is saturated. Otherwise home, woken by the same
/// readiness, takes it: the other workers relieve a home that cannot keep up, and a
/// connection made just after a storm, while the lease still runs, stays with home's sessions
/// (measured: a QoS 0 round whose first subscriber a surge worker took that way cost 15–28%
/// more CPU per message).
pub(super) async fn surge_loop(
    listener: std::net::TcpListener,
    accepting: Arc<impl Admit>,
    workers: Arc<Workers>,
    here: Worker,
    mut stop: watch::Receiver<bool>,
) {
    let surge = workers.surge();
    loop {
        tokio::select! {
            () = surge.started() => {}
            () = stopping(&mut stop) => return,
        }
        let watched = match watch_readiness(&listener) {
            Ok(watched) => watched,
            Err(e) => {
                error!(error = %e, "cannot watch the stream listener from another worker");
                return;
            }
        };
        let mut lease = std::pin::pin!(tokio::time::sleep(surge.remaining()));
        loop {
            tokio::select! {
                ready = watched.readable() => {
                    let mut ready = match ready {
                        Ok(ready) => ready,
                        Err(e) => {
                            error!(error = %e, "cannot watch the stream listener from another worker");
                            return;
                        }
                    };
                    if !workers.home_saturated() {
                        ready.clear_ready();
                        continue;
                    }
                    let Ok(accepted) = ready.try_io(|watched| accept(watched.get_ref())) else {
                        // Taken by home meanwhile.
                        continue;
                    };
                    match accepted.and_then(register) {
                        Ok((client, remote)) if accepting.refuses(&client, remote) => {}
                        Ok((client, remote)) => accepting.start(client, remote, here.handle()),
                        Err(e) => {
                            error!(error = %e, "accept failed");
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                        }
                    }
                },
                () = lease.as_mut() => {
                    let left = surge.remaining();
                    if left.is_zero() {
                        break;
                    }
                    lease.as_mut().reset(tokio::time::Instant::now() + left);
                }
                () = stopping(&mut stop) => return,
            }
        }
    }
}

/// Registers a copy of `listener` with this worker's I/O driver, for readiness only: whether a
/// connection is taken is decided once one is there.
fn watch_readiness(listener: &std::net::TcpListener) -> io::Result<AsyncFd<Socket>> {
    let socket = Socket::from(listener.try_clone()?);
    // Home may take a connection first: the accept must then fail rather than wait.
    socket.set_nonblocking(true)?;
    // SAFETY: the `AsyncFd` owns the socket, so its descriptor stays open, and the same, until
    // the `AsyncFd` is dropped.
    #[allow(unsafe_code)]
    let watched = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
    Ok(watched)
}

/// Accepts a connection that is already non-blocking, as tokio's listener does.
fn accept(listener: &Socket) -> io::Result<(Socket, socket2::SockAddr)> {
    listener.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
}

/// Hands an accepted connection to this worker's I/O driver.
fn register((client, remote): (Socket, socket2::SockAddr)) -> io::Result<(TcpStream, SocketAddr)> {
    let remote = remote
        .as_socket()
        .ok_or_else(|| io::Error::other("a stream client without an IP address"))?;
    Ok((TcpStream::from_std(client.into())?, remote))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;
    use crate::runtime::listener::accept_loop;

    /// Records which thread accepted each connection.
    struct Record(std::sync::mpsc::Sender<Option<String>>);

    impl Admit for Record {
        fn refuses(&self, _: &TcpStream, _: SocketAddr) -> bool {
            false
        }

        fn start(&self, _: TcpStream, _: SocketAddr, _: &tokio::runtime::Handle) {
            let acceptor = std::thread::current().name().map(str::to_owned);
            let _ = self.0.send(acceptor);
        }
    }

    const OTHER: Option<&str> = Some("streamgate-worker-1");
    const WAIT: Duration = Duration::from_secs(10);

    /// Two workers accepting from one listener, home with a saturation threshold of
    /// `saturated` and the surge, once started, outlasting the test. `test` runs on home.
    fn accepting<F: std::future::Future>(
        saturated: Duration,
        test: impl FnOnce(SocketAddr, Arc<Workers>, std::sync::mpsc::Receiver<Option<String>>) -> F,
    ) -> F::Output {
        let (home, workers) = Workers::build_with(
            std::num::NonZeroUsize::new(2),
            saturated,
            Duration::from_secs(3600),
        )
        .unwrap();
        let workers = Arc::new(workers);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, acceptors) = std::sync::mpsc::channel();
        let record = Arc::new(Record(accepted));
        let (_stop, stopped) = watch::channel(false);
        let other = workers.others().next().unwrap().clone();
        home.block_on(async {
            other.handle().spawn(surge_loop(
                listener.try_clone().unwrap(),
                record.clone(),
                workers.clone(),
                other.clone(),
                stopped.clone(),
            ));
            let listener = Arc::new(TcpListener::from_std(listener).unwrap());
            tokio::spawn(accept_loop(listener, record, workers.clone(), stopped));
            test(addr, workers, acceptors).await
        })
    }

    #[test]
    fn a_surge_lets_the_other_workers_accept_while_home_is_saturated() {
        // Home counts as saturated whenever it runs.
        accepting(Duration::ZERO, |addr, workers, acceptors| async move {
            let mut clients = vec![std::net::TcpStream::connect(addr).unwrap()];
            // Without a surge, home accepts.
            let first =
                tokio::task::spawn_blocking(move || (acceptors.recv_timeout(WAIT), acceptors));
            let (first, acceptors) = first.await.unwrap();
            assert_ne!(first.unwrap().as_deref(), OTHER);
            // As when home hands a session away (see the workers' tests).
            workers.surge().renew();
            // Home now blocks; only the other worker can take the next connections.
            for _ in 0..3 {
                clients.push(std::net::TcpStream::connect(addr).unwrap());
                assert_eq!(acceptors.recv_timeout(WAIT).unwrap().as_deref(), OTHER);
            }
        });
    }

    #[test]
    fn during_a_surge_home_keeps_the_connections_while_it_keeps_up() {
        // Home never counts as saturated.
        accepting(
            Duration::from_secs(3600),
            |addr, workers, mut acceptors| async move {
                workers.surge().renew();
                let mut clients = Vec::new();
                for _ in 0..8 {
                    clients.push(std::net::TcpStream::connect(addr).unwrap());
                    // Home runs (and accepts) while the answer is awaited.
                    let next = tokio::task::spawn_blocking(move || {
                        (acceptors.recv_timeout(WAIT), acceptors)
                    });
                    let acceptor;
                    (acceptor, acceptors) = next.await.unwrap();
                    assert_ne!(acceptor.unwrap().as_deref(), OTHER);
                }
            },
        );
    }
}
