//! Checks that `Balancer::pick` and `pick_where` (first picks, retries over up to 64 nodes,
//! skipping unhealthy nodes, and dropping least_conn picks) never allocate, by counting this
//! thread's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sg_balancer::{Algorithm, Balancer, NodeSpec, Tried};

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// Counts allocations per thread so that the test harness's other threads do not interfere.
struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only a
// const-initialised thread-local `Cell`, which needs no allocation and has no destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`, via `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn picks_do_not_allocate() {
    let probe = allocations_during(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(8))));
    assert_eq!(probe, 1, "the counting allocator must see allocations");
    let nodes: Vec<NodeSpec> = (0..40)
        .map(|i| NodeSpec {
            host: format!("10.0.0.{i}"),
            port: 1883,
            weight: i % 4 + 1,
            priority: i as i32 % 3,
        })
        .collect();
    for algorithm in [
        Algorithm::RoundRobin,
        Algorithm::Chash,
        Algorithm::LeastConn,
    ] {
        let balancer = Balancer::new(algorithm, nodes.clone(), None);
        let mut tried = Tried::default();
        let mut picked = 0;
        let count = allocations_during(|| {
            while let Some(pick) = balancer.pick(b"mqtt-client-7", &tried) {
                tried.insert(pick.index);
                picked += 1;
            }
        });
        assert_eq!(picked, nodes.len(), "{algorithm:?}");
        assert_eq!(count, 0, "{algorithm:?} allocated");

        let mut tried = Tried::default();
        let healthy = |i: usize| i % 3 != 1;
        let mut picked = 0;
        let count = allocations_during(|| {
            while let Some(pick) = balancer.pick_where(b"mqtt-client-7", &tried, healthy) {
                tried.insert(pick.index);
                picked += 1;
            }
        });
        assert_eq!(picked, (0..nodes.len()).filter(|&i| healthy(i)).count());
        assert_eq!(count, 0, "{algorithm:?} allocated skipping unhealthy nodes");
    }
}
