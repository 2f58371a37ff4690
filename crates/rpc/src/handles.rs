//! Metric handles made at a series' first use and kept: the hot path then only increments,
//! without the recorder's lookup (hashing the name and labels, taking a lock) on every event,
//! and a labelled series still appears only once it counts.

use std::sync::OnceLock;

/// A fixed set of series of one metric, numbered `0..len` by the caller (a code, a command,
/// a priority, a kind).
pub struct LazyHandles<H> {
    handles: Box<[OnceLock<H>]>,
}

impl<H> LazyHandles<H> {
    pub fn new(len: usize) -> LazyHandles<H> {
        LazyHandles { handles: (0..len).map(|_| OnceLock::new()).collect() }
    }

    /// Series number `index`, made by `make` the first time it is asked for.
    ///
    /// # Panics
    /// When `index` is not below the length given to [`new`](LazyHandles::new).
    pub fn get(&self, index: usize, make: impl FnOnce() -> H) -> &H {
        self.handles[index].get_or_init(make)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_is_made_once_and_only_when_asked_for() {
        let handles = LazyHandles::new(3);
        let mut made = 0;
        for _ in 0..2 {
            handles.get(1, || {
                made += 1;
                "one"
            });
        }
        assert_eq!(made, 1);
        assert_eq!(*handles.get(2, || "two"), "two");
        assert_eq!(*handles.get(1, || "again"), "one");
    }
}
