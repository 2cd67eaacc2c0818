//! Helpers the store's test files share.

use vinfra_store::{WatchEvent, Watcher};

/// The events a watcher has received so far.
pub fn drain(w: &mut Watcher) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    while let Ok(ev) = w.try_recv() {
        out.push(ev);
    }
    out
}

/// `(revision, key, "put" or "delete")` of each event.
pub fn summary(events: &[WatchEvent]) -> Vec<(i64, String, &'static str)> {
    events
        .iter()
        .map(|e| {
            let kind = if matches!(e, WatchEvent::Put(_)) {
                "put"
            } else {
                "delete"
            };
            (e.revision(), e.key().to_owned(), kind)
        })
        .collect()
}
