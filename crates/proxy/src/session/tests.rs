//! What every connection's task costs: the session future sits in tokio's task cell, whose
//! size goes up in steps of 128 bytes, so a few bytes more can cost every connection a step.

use std::mem::size_of;

use tokio_util::task::task_tracker::TrackedFuture;

use super::Session;

/// tokio's task cell around a future (tokio 1.54, 64-bit): a 32-byte header, the scheduler
/// handle and task id (16), the stage's tag (8), a 48-byte trailer. The cell is aligned to 128
/// bytes, so its size, what the allocator is asked for, is a multiple of 128.
const CELL_OVERHEAD: usize = 32 + 16 + 8 + 48;

fn cell_size(future: usize) -> usize {
    (CELL_OVERHEAD + future).next_multiple_of(128)
}

/// The cell of a session task is 640 bytes: a session future over 528 bytes would cost every
/// connection 128 bytes more, and this fails first. Under 400 bytes, the cell would drop to 512.
#[cfg(target_pointer_width = "64")]
#[test]
fn a_session_task_keeps_its_640_byte_cell() {
    let future = size_of::<TrackedFuture<Session>>();
    println!(
        "session {} bytes, spawned (tracked) {future}, task cell {}",
        size_of::<Session>(),
        cell_size(future)
    );
    assert!(cell_size(future) <= 640, "{future}-byte session future");
}
