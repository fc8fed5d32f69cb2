//! Halt polling: a worker that runs out of work watches its event queue for a few microseconds,
//! at idle priority, before it goes to sleep, as the kernel's `haltpoll` idle governor does for
//! a virtual machine's cores.
//!
//! Why: under load a worker runs out of work thousands of times a second, and new work often
//! arrives microseconds later. Sleeping in between costs the thread that wakes it a wake-up,
//! and on a virtual machine whose idle cores halt (guest halt polling off) a halted core costs
//! an exit to the hypervisor as well. While it polls, the worker has `SCHED_IDLE` priority, so
//! any other thread that wants its core takes it at once, and the scheduler counts the core as
//! idle when it places a thread it wakes. The window adapts as the kernel's does: it grows when
//! a sleep ended soon enough that a longer poll would have caught the wake-up, and shrinks when
//! the sleep was long, so a calm worker stops polling.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

/// The longest poll (measured on 2 shared cores: 50 µs took 0–6% off a connect storm's p99 and
/// 40% off QoS 0's; 200 µs gave QoS 0 a p99 of 4 ms in some rounds).
pub const MAX_WINDOW: Duration = Duration::from_micros(50);

/// The window a poll starts from when it grows from nothing.
const GROW_START: Duration = Duration::from_micros(10);

/// A gap this long between two looks at the queue means another thread had the core: the core
/// is no longer idle, so the poll ends.
const PREEMPTED: Duration = Duration::from_micros(20);

/// No epoll descriptor: polling is off.
const NONE: RawFd = -1;

/// One worker's halt-polling state, used by its runtime's park hooks on the worker's thread.
pub struct HaltPoll {
    /// The runtime's epoll descriptor, or [`NONE`] until [`HaltPoll::attach`] found it.
    epoll: AtomicI32,
    epoch: Instant,
    /// The current window, in nanoseconds.
    window: AtomicU64,
    /// When the last idle stretch began (nanoseconds since `epoch`), or 0 if its poll found work.
    idle_since: AtomicU64,
}

impl HaltPoll {
    pub fn new() -> HaltPoll {
        HaltPoll {
            epoll: AtomicI32::new(NONE),
            epoch: Instant::now(),
            window: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
        }
    }

    /// Finds `runtime`'s epoll descriptor, which tokio does not expose: the one whose interest
    /// list holds a socket just registered with `runtime`. Without it, polling stays off.
    pub fn attach(&self, runtime: &Handle) -> io::Result<()> {
        let _entered = runtime.enter();
        let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
        probe.set_nonblocking(true)?;
        let probe = tokio::net::UdpSocket::from_std(probe)?;
        let epoll = driver_epoll(probe.as_raw_fd())?;
        self.epoll.store(epoll, Ordering::Relaxed);
        Ok(())
    }

    /// Turns polling off.
    pub fn detach(&self) {
        self.epoll.store(NONE, Ordering::Relaxed);
    }

    /// Called as the worker is about to sleep: polls for up to the current window.
    pub fn before_park(&self) {
        let epoll = self.epoll.load(Ordering::Relaxed);
        if epoll == NONE {
            return;
        }
        let start = Instant::now();
        let window = Duration::from_nanos(self.window.load(Ordering::Relaxed));
        if !window.is_zero() {
            match poll(epoll, start + window) {
                Ok(true) => {
                    self.idle_since.store(0, Ordering::Relaxed);
                    return;
                }
                Ok(false) => {}
                Err(error) => {
                    // Should the limits change under a running process: never poll again.
                    tracing::warn!(%error, "worker stops polling before it sleeps");
                    self.detach();
                }
            }
        }
        let since = u64::try_from((start - self.epoch).as_nanos()).unwrap_or(u64::MAX);
        self.idle_since.store(since.max(1), Ordering::Relaxed);
    }

    /// Called as the worker wakes up: adapts the window to how long it was idle.
    pub fn after_unpark(&self) {
        let since = self.idle_since.swap(0, Ordering::Relaxed);
        if since == 0 {
            return;
        }
        let idle = self
            .epoch
            .elapsed()
            .saturating_sub(Duration::from_nanos(since));
        let window = Duration::from_nanos(self.window.load(Ordering::Relaxed));
        let next = adapt(window, idle);
        self.window.store(
            u64::try_from(next.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// The next window after an idle stretch of `idle` that the poll did not end.
fn adapt(window: Duration, idle: Duration) -> Duration {
    if idle > MAX_WINDOW {
        // A longer poll would not have caught it either.
        window / 2
    } else if idle > window {
        (window * 2).clamp(GROW_START, MAX_WINDOW)
    } else {
        window
    }
}

/// Looks at `epoll` at idle priority until it has an event (true), `deadline` passes or another
/// thread takes the core (false). An error: the thread could not return to normal priority.
fn poll(epoll: RawFd, deadline: Instant) -> io::Result<bool> {
    if set_idle_priority(true).is_err() {
        return Ok(false);
    }
    let mut last = Instant::now();
    let found = loop {
        if ready(epoll) {
            break true;
        }
        let now = Instant::now();
        if now >= deadline || now - last >= PREEMPTED {
            break false;
        }
        last = now;
        std::hint::spin_loop();
    };
    set_idle_priority(false)?;
    Ok(found)
}

/// Whether `epoll` has an event waiting (an error or an invalid descriptor counts as ready, so
/// that the worker goes on to the driver, which reports it).
fn ready(epoll: RawFd) -> bool {
    let mut entry = libc::pollfd {
        fd: epoll,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `entry` is a valid `pollfd` for the call's duration and the count is 1. poll(2)
    // only reads the descriptor's readiness; a stale one yields POLLNVAL, not undefined behaviour.
    #[allow(unsafe_code)]
    let result = unsafe { libc::poll(&mut entry, 1, 0) };
    result != 0
}

/// Moves the calling thread between `SCHED_IDLE` and `SCHED_OTHER` (its nice value is kept).
fn set_idle_priority(idle: bool) -> io::Result<()> {
    let policy = if idle {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` for the call's duration; pid 0 is this thread.
    #[allow(unsafe_code)]
    let result = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Fails unless a thread may go to idle priority and back: leaving `SCHED_IDLE` takes an
/// `RLIMIT_NICE` that allows the thread's nice value, or `CAP_SYS_NICE`. Tried once, on a thread
/// of its own, which ends either way; a worker must not poll without it.
pub fn check_priority_round_trip() -> io::Result<()> {
    std::thread::spawn(|| set_idle_priority(true).and_then(|()| set_idle_priority(false)))
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the priority check's thread panicked")))
        .map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("a thread may not return from idle priority (RLIMIT_NICE, CAP_SYS_NICE): {error}"),
            )
        })
}

/// The epoll descriptor of this process whose interest list holds `registered`
/// (`/proc/self/fdinfo` lists each watched descriptor as a `tfd:` line).
fn driver_epoll(registered: RawFd) -> io::Result<RawFd> {
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let is_epoll = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str() == "anon_inode:[eventpoll]");
        // A descriptor that another thread closed meanwhile is skipped.
        let watching = is_epoll
            && std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
                .is_ok_and(|fdinfo| watches(&fdinfo, registered));
        if watching {
            return Ok(fd);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no epoll descriptor watches the probe socket",
    ))
}

/// Whether an epoll descriptor's `fdinfo` text lists `fd` among the descriptors it watches.
fn watches(fdinfo: &str, fd: RawFd) -> bool {
    fdinfo.lines().any(|line| {
        line.strip_prefix("tfd:")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse::<RawFd>().ok())
            == Some(fd)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn the_window_grows_while_wake_ups_come_soon_and_shrinks_when_they_do_not() {
        assert_eq!(adapt(Duration::ZERO, 5 * US), GROW_START);
        assert_eq!(adapt(GROW_START, 15 * US), 2 * GROW_START);
        assert_eq!(adapt(40 * US, 45 * US), MAX_WINDOW);
        // Woken within the window: the poll gave up early (another thread took the core).
        assert_eq!(adapt(40 * US, 30 * US), 40 * US);
        assert_eq!(adapt(MAX_WINDOW, 2 * MAX_WINDOW), MAX_WINDOW / 2);
        let mut window = MAX_WINDOW;
        for _ in 0..40 {
            window = adapt(window, Duration::from_millis(5));
        }
        assert_eq!(window, Duration::ZERO, "a calm worker stops polling");
    }

    #[test]
    fn fdinfo_lists_watched_descriptors() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n\
                      tfd:        8 events: 80002019 data:                1  pos:0 ino:19faa178 sdev:9\n\
                      tfd:       14 events: 80002019 data:                0  pos:0 ino:40e sdev:10\n";
        assert!(watches(fdinfo, 8));
        assert!(watches(fdinfo, 14));
        assert!(!watches(fdinfo, 1));
        assert!(!watches(fdinfo, 4));
    }

    /// A runtime with halt polling attached.
    fn attached() -> (tokio::runtime::Runtime, HaltPoll) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let halt = HaltPoll::new();
        halt.attach(runtime.handle()).unwrap();
        (runtime, halt)
    }

    #[test]
    fn finds_the_runtime_epoll_and_sees_its_events() {
        let (runtime, halt) = attached();
        let epoll = halt.epoll.load(Ordering::Relaxed);
        assert_ne!(epoll, NONE);
        let (listener, address) = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            (listener, address)
        });
        // Registered, nothing pending: the poll runs to its deadline.
        let start = Instant::now();
        assert!(!poll(epoll, start + MAX_WINDOW).unwrap());
        let _client = std::net::TcpStream::connect(address).unwrap();
        assert!(poll(epoll, Instant::now() + Duration::from_secs(5)).unwrap());
        drop(listener);
    }

    #[test]
    fn polling_leaves_the_thread_at_normal_priority() {
        let (_runtime, halt) = attached();
        halt.window.store(10_000, Ordering::Relaxed);
        halt.before_park();
        // SAFETY: pid 0 is this thread; the call takes no pointers.
        #[allow(unsafe_code)]
        let policy = unsafe { libc::sched_getscheduler(0) };
        assert_eq!(policy, libc::SCHED_OTHER);
    }
}
