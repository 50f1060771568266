//! What a run is done with, left for the kernel to take back when the
//! process exits right after it (as the generator's does) instead of freed
//! a piece at a time: every unit file read, the units, the reference graph,
//! the database connection. A speed device, kept while the generation
//! benchmark shows what it buys (see benches/README.md). Only the program
//! turns it on: the library's other users (the tests, the fuzz targets) run
//! the generator many times in one process and free everything as usual.

use std::sync::atomic::{AtomicBool, Ordering};

static EXIT_FOLLOWS: AtomicBool = AtomicBool::new(false);

/// Says that the process exits as soon as its mode has run (the program
/// calls this; nothing else should).
pub fn exit_follows() {
    EXIT_FOLLOWS.store(true, Ordering::Relaxed);
}

/// Drops `value`, unless the process exits right after: then its memory
/// and descriptors go back at the exit, at once.
pub fn done_with<T>(value: T) {
    if EXIT_FOLLOWS.load(Ordering::Relaxed) {
        std::mem::forget(value);
    } else {
        drop(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn what_a_run_is_done_with_is_dropped_unless_the_process_exits_after() {
        // A test process goes on: dropped, as any value.
        let value = Rc::new(());
        done_with(Rc::clone(&value));
        assert_eq!(Rc::strong_count(&value), 1);
    }
}
