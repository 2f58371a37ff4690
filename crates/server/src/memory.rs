//! Memory given back to the system after a surge.
//!
//! The server's own allocations go through mimalloc (the binary's global allocator). Each
//! thread has its own heap, and a page freed by the connections that closed is given back
//! to the system only when its thread next looks after its heap, which a thread does while it
//! allocates. After a surge of connections the runtime's threads sit idle, so they would keep
//! the surge's pages: instead each runtime thread, when it runs out of work, collects its
//! heap (`mi_collect`), at most once a second ([`on_idle_worker`]).
//!
//! SQLite allocates through glibc's malloc, which keeps freed pages inside its arenas for
//! reuse, so after a surge of reads and writes the process would hold that peak for good.
//! Every few seconds the free pages of every glibc arena are handed back (`malloc_trim`),
//! which costs a walk over the arenas' free lists.

use std::cell::Cell;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often an idle runtime thread collects its heap at most.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// For the runtime's `on_thread_park`: collects this thread's mimalloc heap, at most once a
/// second, so that the pages it freed go back to the system.
pub fn on_idle_worker() {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    if LAST.get().is_some_and(|last| now - last < COLLECT_EVERY) {
        return;
    }
    LAST.set(Some(now));
    // SAFETY: mi_collect only looks after the calling thread's own heap (and segments no
    // thread owns), under mimalloc's own locks; it may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(false) };
}

const EVERY: Duration = Duration::from_secs(10);

/// Hands freed memory back every [`EVERY`] until `shutdown`.
pub async fn return_freed_memory(shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes each arena's lock itself and only releases pages that hold
    // no live allocation; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
