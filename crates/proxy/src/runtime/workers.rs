//! Worker threads, each driving a single-threaded runtime whose park hooks record how long it
//! has been busy, and [`Workers::place`], which picks the worker a new session starts on
//! (home, or another one on a hand-off; see the layer's doc for the terms).

use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::runtime::{Builder, Handle, Runtime};
use tokio_util::sync::CancellationToken;

/// How long a worker may run tasks without parking before it counts as saturated. Short: a
/// storm of new connections is better spread early (measured: 1 ms cost a connect storm 5%),
/// while long-lived connections made at a calm moment still land on home together.
pub const SATURATED: Duration = Duration::from_micros(100);

/// Marks a parked worker in [`Load::busy_since`].
const PARKED: u64 = 0;

/// Nanoseconds since `epoch`, plus one so that no stamp is [`PARKED`].
fn stamp(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

/// When a worker last woke up to run tasks, fed by its runtime's park hooks.
struct Load {
    epoch: Instant,
    /// Nanoseconds since `epoch` (plus one) at the last wake-up, or [`PARKED`].
    busy_since: AtomicU64,
}

impl Load {
    fn new(epoch: Instant) -> Arc<Load> {
        Arc::new(Load {
            epoch,
            busy_since: AtomicU64::new(PARKED),
        })
    }

    /// How long the worker has been running tasks without a pause, as of `now`.
    fn streak(&self, now: u64) -> u64 {
        match self.busy_since.load(Ordering::Relaxed) {
            PARKED => 0,
            since => now.saturating_sub(since),
        }
    }
}

/// A worker thread's runtime and its load.
#[derive(Clone)]
pub struct Worker {
    handle: Handle,
    load: Arc<Load>,
}

impl Worker {
    /// The runtime that runs this worker's sessions.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Moves a connection registered with `accepted_on`'s I/O driver to this worker's (two
    /// `epoll_ctl`s); a session that starts where it was accepted keeps its registration.
    pub fn adopt(&self, stream: TcpStream, accepted_on: &Worker) -> io::Result<TcpStream> {
        if self.is(accepted_on) {
            return Ok(stream);
        }
        let stream = stream.into_std()?;
        let _entered = self.handle.enter();
        TcpStream::from_std(stream)
    }

    fn is(&self, other: &Worker) -> bool {
        Arc::ptr_eq(&self.load, &other.load)
    }
}

/// The data plane's workers; the first is home, the thread that calls `block_on`.
pub struct Workers {
    workers: Vec<Worker>,
    /// Home's busy stretch (its `busy_since` stamp) when it last placed a session.
    last_placed_in: AtomicU64,
    epoch: Instant,
    /// [`SATURATED`] in nanoseconds.
    saturated: u64,
    stop: CancellationToken,
}

impl Workers {
    /// Builds the home runtime, to be driven by the caller, and starts `count` - 1 more worker
    /// threads (`None`: one per core).
    pub fn build(count: Option<NonZeroUsize>) -> io::Result<(Runtime, Workers)> {
        Workers::build_with(count, SATURATED)
    }

    pub(crate) fn build_with(
        count: Option<NonZeroUsize>,
        saturated: Duration,
    ) -> io::Result<(Runtime, Workers)> {
        let count = count
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get);
        let epoch = Instant::now();
        let stop = CancellationToken::new();
        let home_load = Load::new(epoch);
        let home = runtime(&home_load)?;
        let mut workers = vec![Worker {
            handle: home.handle().clone(),
            load: home_load,
        }];
        for index in 1..count {
            workers.push(spawn_worker(index, epoch, stop.clone())?);
        }
        Ok((
            home,
            Workers {
                workers,
                last_placed_in: AtomicU64::new(PARKED),
                epoch,
                saturated: u64::try_from(saturated.as_nanos()).unwrap_or(u64::MAX),
                stop,
            },
        ))
    }

    /// The worker a new session accepted on home should start on.
    ///
    /// A saturated home hands away only the second and later sessions of one busy stretch:
    /// a storm brings many, while a lone connection that arrives as home serves steady
    /// traffic stays with the connections it will likely talk to (measured: one publisher of
    /// four pairs placed on the other worker cost 50% more CPU per message).
    pub fn place(&self) -> &Worker {
        let stretch = self.home().load.busy_since.load(Ordering::Relaxed);
        if self.last_placed_in.swap(stretch, Ordering::Relaxed) != stretch {
            return self.home();
        }
        let now = stamp(self.epoch);
        let streaks = self.workers.iter().map(|worker| worker.load.streak(now));
        &self.workers[choose(streaks, self.saturated)]
    }

    /// The worker that runs the accept loops.
    pub fn home(&self) -> &Worker {
        &self.workers[0]
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Home (index 0) unless it has been busy for `saturated` nanoseconds; then the worker busy
/// for the shortest time, home winning ties.
fn choose(streaks: impl Iterator<Item = u64>, saturated: u64) -> usize {
    let mut best = (0, u64::MAX);
    for (index, streak) in streaks.enumerate() {
        if index == 0 && streak < saturated {
            return 0;
        }
        if streak < best.1 {
            best = (index, streak);
        }
    }
    best.0
}

/// A single-threaded runtime whose park hooks keep `load`.
fn runtime(load: &Arc<Load>) -> io::Result<Runtime> {
    let (parked, unparked) = (load.clone(), load.clone());
    unparked
        .busy_since
        .store(stamp(unparked.epoch), Ordering::Relaxed);
    Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || parked.busy_since.store(PARKED, Ordering::Relaxed))
        .on_thread_unpark(move || {
            unparked
                .busy_since
                .store(stamp(unparked.epoch), Ordering::Relaxed)
        })
        .build()
}

/// Starts a worker thread that drives its runtime until `stop`.
fn spawn_worker(index: usize, epoch: Instant, stop: CancellationToken) -> io::Result<Worker> {
    let load = Load::new(epoch);
    let runtime = runtime(&load)?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(format!("streamgate-worker-{index}"))
        .spawn(move || {
            runtime.block_on(stop.cancelled());
            // Sessions still open are cut, as at the end of the home runtime.
            runtime.shutdown_background();
        })?;
    Ok(Worker { handle, load })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 200_000;

    #[test]
    fn home_takes_sessions_until_saturated() {
        assert_eq!(choose([0, 0].into_iter(), LIMIT), 0);
        assert_eq!(choose([LIMIT / 4, 0].into_iter(), LIMIT), 0);
        assert_eq!(choose([LIMIT, 0].into_iter(), LIMIT), 1);
        assert_eq!(choose([LIMIT, LIMIT * 2, 10].into_iter(), LIMIT), 2);
        // Every worker saturated: the one that paused last.
        assert_eq!(choose([LIMIT * 3, LIMIT * 2].into_iter(), LIMIT), 1);
        assert_eq!(choose([LIMIT, LIMIT].into_iter(), LIMIT), 0);
        assert_eq!(choose([LIMIT].into_iter(), LIMIT), 0);
    }

    #[test]
    fn a_busy_home_sends_sessions_to_another_worker() {
        // Generous, so that a preempted test thread does not look saturated.
        let saturated = Duration::from_millis(50);
        let (home, workers) = Workers::build_with(NonZeroUsize::new(2), saturated).unwrap();
        assert_eq!(workers.workers.len(), 2);
        let (idle, busy) = home.block_on(async {
            // Parks home between its tasks, as an idle gateway does.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let idle = workers.place().clone();
            // Runs for longer than `saturated` without parking.
            std::thread::sleep(saturated * 2);
            (idle, workers.place().clone())
        });
        assert!(idle.is(&workers.workers[0]));
        assert!(busy.is(&workers.workers[1]));
        // The other worker runs what is placed on it, on its own thread.
        let (tx, rx) = std::sync::mpsc::channel();
        busy.handle().spawn(async move {
            let name = std::thread::current().name().map(str::to_owned);
            let _ = tx.send(name);
        });
        let name = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(name.as_deref(), Some("streamgate-worker-1"));
    }

    #[test]
    fn a_lone_session_stays_home_through_a_busy_stretch() {
        let saturated = Duration::from_millis(50);
        let (home, workers) = Workers::build_with(NonZeroUsize::new(2), saturated).unwrap();
        let placed = home.block_on(async {
            let mut placed = Vec::new();
            for _ in 0..2 {
                // A new busy stretch, longer than `saturated`, as steady traffic keeps home.
                tokio::time::sleep(Duration::from_millis(1)).await;
                std::thread::sleep(saturated * 2);
                // The first session of the stretch stays; the next one is handed away.
                placed.push(workers.place().clone());
                placed.push(workers.place().clone());
            }
            placed
        });
        let on_home: Vec<bool> = placed
            .iter()
            .map(|worker| worker.is(&workers.workers[0]))
            .collect();
        assert_eq!(on_home, [true, false, true, false]);
    }

    #[test]
    fn an_adopted_connection_is_served_by_its_worker() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (home, workers) = Workers::build(NonZeroUsize::new(2)).unwrap();
        let other = workers.workers[1].clone();
        let echoed = home.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            let mut adopted = other.adopt(accepted, workers.home()).unwrap();
            // Home only waits from here: the echo runs on the other worker's driver.
            let echo = other.handle().spawn(async move {
                let mut byte = [0; 1];
                adopted.read_exact(&mut byte).await.unwrap();
                adopted.write_all(&byte).await.unwrap();
                std::thread::current().name().map(str::to_owned)
            });
            client.write_all(b"x").await.unwrap();
            let mut byte = [0; 1];
            client.read_exact(&mut byte).await.unwrap();
            (byte, echo.await.unwrap())
        });
        assert_eq!(echoed, (*b"x", Some("streamgate-worker-1".to_owned())));
    }
}
