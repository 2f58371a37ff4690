//! Memory given back to the system after a surge. The server's own allocations go through
//! mimalloc (the binary's global allocator), which returns the pages it freed by itself;
//! SQLite allocates through glibc's malloc, which keeps freed pages inside its arenas for
//! reuse, so after a surge of reads and writes the process would hold that peak for good.
//! Every few seconds the free pages of every glibc arena are handed back (`malloc_trim`),
//! which costs a walk over the arenas' free lists.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
