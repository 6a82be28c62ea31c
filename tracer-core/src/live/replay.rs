//! Replaying a trace file into a [`LiveState`]: forward to a time in bounded batches; back
//! by reading again from the start (the reader streams, so seeking back costs time, never
//! memory).
//!
//! A trace holds blocks of one thread's events in the order the recorder drained them, so
//! the events of thread B up to `T` may come after events of thread A beyond `T`. Each
//! thread's events wait in their own queue until the replay's clock reaches them; reading
//! ahead stops once every thread has an event beyond `T` (or ended), or when
//! [`READ_AHEAD`] events wait (then a thread that stayed idle for that long may show a
//! moment late).

use std::collections::VecDeque;
use std::io::Read;

use super::LiveState;
use crate::trace::{Batch, Event, Item, StreamEnd, StreamId, TraceError, TraceReader};

/// Events read ahead of the clock at most, over all threads.
pub const READ_AHEAD: usize = 1 << 18;

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

#[derive(Debug)]
enum Queued {
    Event(Event),
    End(StreamEnd),
}

/// A trace being replayed.
#[derive(Debug)]
pub struct Replay<R: Read> {
    reader: TraceReader<R>,
    /// Per stream: what was read and not fed yet.
    queues: Vec<VecDeque<Queued>>,
    /// Per stream: its end was read.
    ended: Vec<bool>,
    queued: usize,
    eof: bool,
}

impl<R: Read> Replay<R> {
    pub fn new(reader: TraceReader<R>) -> Self {
        Replay {
            reader,
            queues: Vec::new(),
            ended: Vec::new(),
            queued: 0,
            eof: false,
        }
    }

    /// A fresh state for this trace (its metadata in the context).
    pub fn state(&self, opts: super::LiveOptions) -> LiveState {
        let mut s = LiveState::new(opts);
        s.cx.meta = self.reader.meta().clone();
        s
    }

    fn queue(&mut self, stream: StreamId) -> &mut VecDeque<Queued> {
        queue_of(&mut self.queues, &mut self.ended, stream)
    }

    /// Feeds the queued events up to `until_ns`, at most `budget`; returns how many.
    fn feed(&mut self, state: &mut LiveState, until_ns: u64, budget: usize) -> usize {
        let mut fed = 0;
        let mut buf: Vec<Event> = Vec::new();
        for q in &mut self.queues {
            while fed < budget {
                match q.front() {
                    Some(Queued::Event(e)) if e.time_ns <= until_ns => {
                        buf.push(*e);
                        q.pop_front();
                        fed += 1;
                    }
                    Some(Queued::End(_)) => {
                        if !buf.is_empty() {
                            state.events(&buf);
                            buf.clear();
                        }
                        if let Some(Queued::End(end)) = q.pop_front() {
                            state.item(Item::StreamEnd(end));
                        }
                    }
                    _ => break,
                }
            }
            if !buf.is_empty() {
                state.events(&buf);
                buf.clear();
            }
        }
        self.queued -= fed;
        fed
    }

    /// Items read and not fed yet.
    fn waiting(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Does every stream have something beyond `until_ns` queued, or has it ended, and one
    /// at least has an event queued? When every stream ended and nothing is queued, reading
    /// must go on: to a thread that starts later, or to the end of the file (stopping there
    /// instead reported "reached" forever at the end of a trace).
    fn all_ahead(&self, until_ns: u64) -> bool {
        let mut any = false;
        let all = self.queues.iter().zip(&self.ended).all(|(q, &ended)| match q.front() {
            Some(Queued::Event(e)) => {
                any = true;
                e.time_ns > until_ns
            }
            Some(Queued::End(_)) => false,
            None => ended,
        });
        all && any
    }

    /// Feeds `state` every event up to `until_ns` (inclusive), about `max_events` per call.
    pub fn advance(&mut self, state: &mut LiveState, until_ns: u64, max_events: usize) -> Result<Progress, TraceError> {
        let mut fed = 0usize;
        loop {
            let now = self.feed(state, until_ns, max_events.saturating_sub(fed));
            fed += now;
            if fed >= max_events {
                return Ok(Progress::More);
            }
            if self.eof {
                // Why look at the queues too: what is left must be beyond `until_ns`.
                let left = self
                    .queues
                    .iter()
                    .any(|q| q.iter().any(|i| matches!(i, Queued::Event(e) if e.time_ns <= until_ns)));
                return Ok(if self.waiting() == 0 || (!left || now == 0) && until_ns == u64::MAX {
                    Progress::End
                } else {
                    state.advance_clock(until_ns);
                    Progress::Reached
                });
            }
            if self.all_ahead(until_ns) || self.waiting() >= READ_AHEAD {
                state.advance_clock(until_ns);
                return Ok(Progress::Reached);
            }
            match self.reader.next_batch()? {
                None => {
                    self.eof = true;
                    state.cx.truncated = self.reader.truncated();
                }
                Some(Batch::Events(events)) => {
                    let Some(first) = events.first() else { continue };
                    let stream = first.stream;
                    let n = events.len();
                    let q = queue_of(&mut self.queues, &mut self.ended, stream);
                    q.extend(events.iter().copied().map(Queued::Event));
                    self.queued += n;
                }
                Some(Batch::Item(Item::Event(ev))) => {
                    self.queue(ev.stream).push_back(Queued::Event(ev));
                    self.queued += 1;
                }
                Some(Batch::Item(Item::StreamEnd(end))) => {
                    let s = end.stream;
                    self.queue(s).push_back(Queued::End(end));
                    self.ended[s as usize] = true;
                }
                Some(Batch::Item(Item::StreamStart(info))) => {
                    self.queue(info.stream);
                    state.item(Item::StreamStart(info));
                }
                Some(Batch::Item(item)) => state.item(item),
            }
        }
    }
}

fn queue_of<'a>(
    queues: &'a mut Vec<VecDeque<Queued>>,
    ended: &mut Vec<bool>,
    stream: StreamId,
) -> &'a mut VecDeque<Queued> {
    let i = stream as usize;
    if queues.len() <= i {
        queues.resize_with(i + 1, VecDeque::new);
        ended.resize(i + 1, false);
    }
    &mut queues[i]
}

/// Feeds a whole trace (for tests and benchmarks).
pub fn feed_all<R: Read>(replay: &mut Replay<R>, state: &mut LiveState) -> Result<(), TraceError> {
    while replay.advance(state, u64::MAX, 1 << 16)? != Progress::End {}
    Ok(())
}
