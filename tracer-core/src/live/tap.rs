//! A copy of what a recording writes, for a live view: the trace writer hands every item to
//! a [`Tap`], which sends them in batches over a bounded channel. When the view lags and the
//! channel is full, the batch's events are skipped and counted (the trace file still gets
//! every one of them); strings, thread starts and ends are kept for the next batch, so the
//! view never loses a name or a thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::LiveState;
use crate::trace::{Event, Item};

/// Items per batch.
const BATCH: usize = 8192;

/// The writer's side.
#[derive(Debug)]
pub struct Tap {
    tx: Sender<Vec<Item>>,
    buf: Vec<Item>,
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
            if self.buf.len() >= BATCH {
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
            Ok(()) => {}
            Err(TrySendError::Full(mut batch)) => {
                let before = batch.len();
                batch.retain(|i| !matches!(i, Item::Event(_)));
                self.skipped.fetch_add((before - batch.len()) as u64, Ordering::Relaxed);
                self.buf = batch;
            }
            Err(TrySendError::Disconnected(_)) => self.closed = true,
        }
    }
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
