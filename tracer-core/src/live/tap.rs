//! A copy of what a recording writes, for a live view: the trace writer hands every item to
//! a [`Tap`], which sends them in batches over a bounded channel. When the view lags and the
//! channel is full, the batch's callbacks are skipped and counted (the trace file still gets
//! every one of them); strings, thread starts and ends, and the events that change what is
//! alive (inits, destroys, settles, the agent's notes) are kept for the next batch, so the
//! view never loses a name or a thread, nor shows a resource alive forever because its
//! destroy was skipped. When the view lags by more than [`KEEP_MAX`] of those, inits are
//! skipped next (a resource the view never saw is missing from it, not stuck in it), and
//! only then the rest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::LiveState;
use crate::trace::{Event, EventKind, Item};

/// Items per batch.
const BATCH: usize = 8192;
/// Items kept back for a lagging view at most (2 MiB).
pub const KEEP_MAX: usize = 1 << 16;

/// The writer's side.
#[derive(Debug)]
pub struct Tap {
    tx: Sender<Vec<Item>>,
    buf: Vec<Item>,
    /// Items kept back from a batch the view had no room for; the next batch is sent this
    /// many items later.
    kept: usize,
    skipped: Arc<AtomicU64>,
    /// The view went away: stop copying.
    closed: bool,
}

/// The view's side.
#[derive(Debug)]
pub struct TapReceiver {
    pub rx: Receiver<Vec<Item>>,
    skipped: Arc<AtomicU64>,
}

impl Tap {
    /// A tap and its receiver; at most `batches` batches wait for the view.
    pub fn new(batches: usize) -> (Tap, TapReceiver) {
        let (tx, rx) = crossbeam_channel::bounded(batches.max(1));
        let skipped = Arc::new(AtomicU64::new(0));
        (
            Tap {
                tx,
                buf: Vec::with_capacity(BATCH),
                kept: 0,
                skipped: skipped.clone(),
                closed: false,
            },
            TapReceiver { rx, skipped },
        )
    }

    #[inline]
    pub fn event(&mut self, ev: &Event) {
        if !self.closed {
            self.buf.push(Item::Event(*ev));
            if self.buf.len() >= self.kept + BATCH {
                self.send();
            }
        }
    }

    pub fn item(&mut self, item: Item) {
        if !self.closed {
            self.buf.push(item);
        }
    }

    /// Sends what is buffered (the writer calls this on each flush, about every 100 ms).
    pub fn send(&mut self) {
        if self.closed || self.buf.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH));
        match self.tx.try_send(batch) {
            Ok(()) => self.kept = 0,
            Err(TrySendError::Full(mut batch)) => {
                let before = batch.len();
                batch.retain(|i| !matches!(i, Item::Event(ev) if skippable(ev)));
                if batch.len() > KEEP_MAX {
                    // Why inits go before destroys: a resource the view never saw created is
                    // merely missing, while one whose destroy it missed stays alive in it for
                    // ever, and a view full of those is slower, and so lags further.
                    batch.retain(|i| !matches!(i, Item::Event(ev) if matches!(ev.kind, EventKind::Init { .. })));
                }
                if batch.len() > KEEP_MAX {
                    batch.retain(|i| !matches!(i, Item::Event(_)));
                }
                self.skipped.fetch_add((before - batch.len()) as u64, Ordering::Relaxed);
                self.kept = batch.len();
                self.buf = batch;
            }
            Err(TrySendError::Disconnected(_)) => self.closed = true,
        }
    }
}

/// Callbacks (and labels) a lagging view can do without: what is alive stays right.
fn skippable(ev: &Event) -> bool {
    matches!(ev.kind, EventKind::Before | EventKind::After | EventKind::Label { .. })
}

impl TapReceiver {
    /// Events the view skipped because it lagged.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

impl LiveState {
    /// Takes a batch from a [`Tap`], in order.
    pub fn apply_items(&mut self, items: Vec<Item>) {
        let mut run: Vec<Event> = Vec::new();
        for item in items {
            match item {
                Item::Event(ev) => {
                    if run.last().is_some_and(|l| l.stream != ev.stream) {
                        self.events(&run);
                        run.clear();
                    }
                    run.push(ev);
                }
                other => {
                    if !run.is_empty() {
                        self.events(&run);
                        run.clear();
                    }
                    self.item(other);
                }
            }
        }
        if !run.is_empty() {
            self.events(&run);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64, kind: EventKind) -> Event {
        Event {
            stream: 0,
            time_ns: id,
            id,
            kind,
        }
    }

    const INIT: EventKind = EventKind::Init {
        type_name: 1,
        trigger: 1,
        exec: 1,
        stack: None,
    };

    #[test]
    fn a_lagging_view_skips_callbacks_but_never_a_destroy() {
        let (mut tap, rx) = Tap::new(1);
        // 3 batches' worth while the view reads nothing: the first fills the channel.
        for id in 0..(3 * BATCH as u64 / 4) {
            for kind in [INIT, EventKind::Before, EventKind::After, EventKind::Destroy] {
                tap.event(&ev(id, kind));
            }
        }
        tap.send();
        let first = rx.rx.try_recv().unwrap();
        assert_eq!(first.len(), BATCH);
        tap.send();
        let rest = rx.rx.try_recv().unwrap();
        let destroys = |b: &[Item]| {
            b.iter()
                .filter(|i| matches!(i, Item::Event(e) if e.kind == EventKind::Destroy))
                .count()
        };
        assert_eq!(destroys(&first) + destroys(&rest), 3 * BATCH / 4);
        assert!(rest.iter().all(|i| matches!(i, Item::Event(e) if !skippable(e))));
        assert_eq!(rx.skipped() as usize, (3 * BATCH - BATCH) / 2);
    }

    #[test]
    fn a_view_lagging_far_loses_inits_before_destroys() {
        let (mut tap, rx) = Tap::new(1);
        tap.event(&ev(0, EventKind::Before));
        // The channel full, then more inits and destroys than are kept back, while the
        // view reads nothing.
        tap.send();
        let n = 3 * KEEP_MAX / 4;
        for id in 1..=n as u64 {
            tap.event(&ev(id, INIT));
            tap.event(&ev(id, EventKind::Destroy));
        }
        let _ = rx.rx.try_recv().unwrap();
        tap.send();
        let kept = rx.rx.try_recv().unwrap();
        let count = |pred: fn(&EventKind) -> bool| {
            kept.iter()
                .filter(|i| matches!(i, Item::Event(e) if pred(&e.kind)))
                .count()
        };
        assert_eq!(count(|k| *k == EventKind::Destroy), n, "every destroy");
        assert!(count(|k| matches!(k, EventKind::Init { .. })) < n, "some inits skipped");
        assert!(kept.len() <= KEEP_MAX + BATCH);
    }

    #[test]
    fn what_is_kept_back_stays_bounded() {
        let (mut tap, rx) = Tap::new(1);
        for id in 0..(4 * KEEP_MAX as u64) {
            tap.event(&ev(id, EventKind::Destroy));
        }
        assert!(tap.buf.len() <= KEEP_MAX + BATCH, "{}", tap.buf.len());
        assert!(rx.skipped() > 0);
    }
}
