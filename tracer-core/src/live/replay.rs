//! Replaying a trace file into a [`LiveState`]: forward to a time in bounded batches; back
//! by reading again from the start (the reader streams, so seeking back costs time, never
//! memory).
//!
//! Events are fed in file order, which is time order within a thread; blocks of different
//! threads interleave as the recorder drained them, so with several threads the state at `T`
//! may lack a few events of one thread just before `T` (at most one drained block).

use std::io::Read;

use super::LiveState;
use crate::trace::{Batch, Event, TraceError, TraceReader};

/// How far a call to [`Replay::advance`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every event up to the target time was fed.
    Reached,
    /// The batch limit was hit first: call again.
    More,
    /// The trace has no more events.
    End,
}

/// A trace being replayed.
#[derive(Debug)]
pub struct Replay<R: Read> {
    reader: TraceReader<R>,
    /// Events of the current block not fed yet.
    held: Vec<Event>,
    next: usize,
    ended: bool,
}

impl<R: Read> Replay<R> {
    pub fn new(reader: TraceReader<R>) -> Self {
        Replay {
            reader,
            held: Vec::new(),
            next: 0,
            ended: false,
        }
    }

    /// A fresh state for this trace (its metadata in the context).
    pub fn state(&self, opts: super::LiveOptions) -> LiveState {
        let mut s = LiveState::new(opts);
        s.cx.meta = self.reader.meta().clone();
        s
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Feeds `state` every event up to `until_ns` (inclusive), at most about `max_events`
    /// of them per call.
    pub fn advance(&mut self, state: &mut LiveState, until_ns: u64, max_events: usize) -> Result<Progress, TraceError> {
        let mut fed = 0usize;
        loop {
            if self.next < self.held.len() {
                let rest = &self.held[self.next..];
                let n = rest.iter().take_while(|e| e.time_ns <= until_ns).count();
                let n = n.min(max_events.saturating_sub(fed).max(1));
                state.events(&rest[..n]);
                self.next += n;
                fed += n;
                if self.next < self.held.len() {
                    return Ok(if rest[n..].first().is_some_and(|e| e.time_ns > until_ns) {
                        Progress::Reached
                    } else {
                        Progress::More
                    });
                }
            }
            if fed >= max_events {
                return Ok(Progress::More);
            }
            if self.ended {
                return Ok(Progress::End);
            }
            match self.reader.next_batch()? {
                None => {
                    self.ended = true;
                    state.cx.truncated = self.reader.truncated();
                    return Ok(Progress::End);
                }
                Some(Batch::Events(events)) => {
                    self.held.clear();
                    self.held.extend_from_slice(events);
                    self.next = 0;
                }
                Some(Batch::Item(crate::trace::Item::Event(ev))) => {
                    self.held.clear();
                    self.held.push(ev);
                    self.next = 0;
                }
                Some(Batch::Item(item)) => state.item(item),
            }
        }
    }

    /// Time of the next event not fed yet, if one is buffered.
    pub fn next_ns(&self) -> Option<u64> {
        self.held.get(self.next).map(|e| e.time_ns)
    }
}

/// Feeds a whole trace (for tests and benchmarks).
pub fn feed_all<R: Read>(replay: &mut Replay<R>, state: &mut LiveState) -> Result<(), TraceError> {
    while replay.advance(state, u64::MAX, 1 << 16)? != Progress::End {}
    Ok(())
}
