//! When a promise of a `PROMISES_V8` thread ends, since V8 reports no collection.
//!
//! Every reader keeps a resource until its destroy, so without ends memory would grow with
//! every promise ever made. Ending a promise as soon as it settles would be too early: a
//! settled promise still matters while something reacts to it (`await p` on a settled `p`
//! makes a child whose trigger is `p`; the child's wait is explained by `p`'s settlement, and
//! the child belongs to whatever request `p` belonged to). Under async_hooks such a promise
//! cannot be collected either, since the app still holds it.
//!
//! So a promise ends once it has settled, no callback of it runs, and nothing has used it
//! (its own events, a child or a resource created with it as trigger or context, a
//! settlement it made) for half of [`IDLE_WINDOW`] events of its thread or more (ends come in
//! bursts, once the longest idle one has been for a whole window); or when its thread exits.
//! Counted in events, not time, so the same run gives the same trace. Never-settled promises
//! have no end: they are still found at the end of the run. The cost is bounded: promises
//! idle for less than the window, and one queue entry per use within it.

use std::collections::VecDeque;

use crate::analysis::FxMap;
use crate::trace::{notes, EventKind};

/// Events of its thread an unused settled promise outlives. Why this many: the reactions to a
/// settlement run within the same microtask checkpoint, normally thousands of events at most,
/// and the analyses' caches of ended resources hold about as many.
pub const IDLE_WINDOW: u64 = 1 << 17;

/// Not in the idle queue (pending, or a callback of it running).
const BUSY: u64 = u64::MAX;

#[derive(Debug, Clone, Copy)]
struct LivePromise {
    /// Callbacks of it running now (befores without their after).
    running: u32,
    settled: bool,
    /// The event count at its last use while idle, or [`BUSY`].
    idle_since: u64,
}

/// Recent promises kept by id in a window, beyond it in a map.
const RECENT_MAX: usize = 1 << 20;
/// A jump in ids this far ahead restarts the window.
const GAP_MAX: u64 = 1 << 12;

/// The live promises of a thread by id. The agent numbers a thread's promises one after
/// another, so the recent ones are found by their distance to the window's first id instead
/// of by hashing (the recorder's writer thread does this for every event, and in the v8
/// promise mode the app makes events faster than ever); the few that outlive the window (never
/// settled, or long running) move to a map.
#[derive(Debug, Default)]
struct LiveSet {
    base: u64,
    recent: VecDeque<Option<LivePromise>>,
    old: FxMap<u64, LivePromise>,
}

impl LiveSet {
    fn index(&self, id: u64) -> Option<usize> {
        let i = id.checked_sub(self.base)?;
        (i < self.recent.len() as u64).then_some(i as usize)
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut LivePromise> {
        match self.index(id) {
            Some(i) => self.recent[i].as_mut(),
            None => self.old.get_mut(&id),
        }
    }

    fn get(&self, id: u64) -> Option<&LivePromise> {
        match self.index(id) {
            Some(i) => self.recent[i].as_ref(),
            None => self.old.get(&id),
        }
    }

    fn insert(&mut self, id: u64, p: LivePromise) {
        if self.recent.is_empty() {
            self.base = id;
        }
        if id < self.base {
            self.old.insert(id, p);
            return;
        }
        let end = self.base + self.recent.len() as u64;
        if id >= end && id - end > GAP_MAX {
            for (i, q) in std::mem::take(&mut self.recent).into_iter().enumerate() {
                if let Some(q) = q {
                    self.old.insert(self.base + i as u64, q);
                }
            }
            self.base = id;
        }
        let i = (id - self.base) as usize;
        if i == self.recent.len() {
            self.recent.push_back(Some(p));
        } else {
            if i > self.recent.len() {
                self.recent.resize(i + 1, None);
            }
            self.recent[i] = Some(p);
        }
        while self.recent.len() > RECENT_MAX {
            if let Some(Some(q)) = self.recent.pop_front() {
                self.old.insert(self.base, q);
            }
            self.base += 1;
        }
        self.trim();
    }

    fn remove(&mut self, id: u64) {
        match self.index(id) {
            Some(i) => {
                self.recent[i] = None;
                self.trim();
            }
            None => {
                self.old.remove(&id);
            }
        }
    }

    fn trim(&mut self) {
        while let Some(None) = self.recent.front() {
            self.recent.pop_front();
            self.base += 1;
        }
    }

    /// Keeps the promises for which `keep` says so; the others are handed to `gone`, in id
    /// order.
    fn retain(&mut self, mut keep: impl FnMut(&LivePromise) -> bool, gone: &mut Vec<u64>) {
        let start = gone.len();
        self.old.retain(|&id, p| {
            let k = keep(p);
            if !k {
                gone.push(id);
            }
            k
        });
        for (i, slot) in self.recent.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|p| !keep(p)) {
                *slot = None;
                gone.push(self.base + i as u64);
            }
        }
        self.trim();
        gone[start..].sort_unstable();
    }
}

/// The promises of one thread between their init and their end.
#[derive(Debug, Default)]
pub struct PromiseEnds {
    live: LiveSet,
    /// (promise, event count at its use); an entry is stale once the promise was used again.
    idle: VecDeque<(u64, u64)>,
    seq: u64,
}

fn is_promise(id: u64) -> bool {
    id >= notes::PROMISE_ID_BASE
}

impl PromiseEnds {
    /// Feeds one event of the thread (resource `id`); pushes onto `ended` the promises whose
    /// end falls here (their destroys belong right after this event).
    pub fn event(&mut self, id: u64, kind: &EventKind, ended: &mut Vec<u64>) {
        self.seq += 1;
        match *kind {
            EventKind::Init { trigger, exec, .. } => {
                self.used(trigger);
                self.used(exec);
                if is_promise(id) {
                    self.live.insert(
                        id,
                        LivePromise {
                            running: 0,
                            settled: false,
                            idle_since: BUSY,
                        },
                    );
                }
            }
            EventKind::Before => {
                if let Some(p) = self.live.get_mut(id) {
                    p.running += 1;
                    p.idle_since = BUSY;
                }
            }
            EventKind::After => {
                if let Some(p) = self.live.get_mut(id) {
                    p.running = p.running.saturating_sub(1);
                }
                self.maybe_idle(id);
            }
            EventKind::PromiseResolve { by } => {
                self.used(by);
                if let Some(p) = self.live.get_mut(id) {
                    p.settled = true;
                }
                self.maybe_idle(id);
            }
            EventKind::Destroy => self.live.remove(id),
            EventKind::Label { .. } | EventKind::Note { .. } => self.used(id),
        }
        // Ends come in bursts, down to half the window: a destroy far from its neighbours' ids
        // costs the trace bytes for the jump there and back, and ids of a burst are close.
        if self.idle.front().is_some_and(|&(_, at)| at + IDLE_WINDOW <= self.seq) {
            self.end_idle_since(self.seq - IDLE_WINDOW / 2, ended);
        }
    }

    /// Ends the promises idle since `seq` or earlier.
    fn end_idle_since(&mut self, seq: u64, ended: &mut Vec<u64>) {
        while let Some(&(p, at)) = self.idle.front() {
            if at > seq {
                break;
            }
            self.idle.pop_front();
            if self.live.get(p).is_some_and(|l| l.idle_since == at) {
                self.live.remove(p);
                ended.push(p);
            }
        }
    }

    /// The thread exits: every settled promise with no callback running ends now (in id
    /// order).
    pub fn exit(&mut self, ended: &mut Vec<u64>) {
        self.live.retain(|p| p.idle_since == BUSY, ended);
        self.idle.clear();
    }

    fn maybe_idle(&mut self, id: u64) {
        if let Some(p) = self.live.get_mut(id) {
            if p.settled && p.running == 0 {
                p.idle_since = self.seq;
                self.idle.push_back((id, self.seq));
            }
        }
    }

    fn used(&mut self, id: u64) {
        if !is_promise(id) {
            return;
        }
        if let Some(p) = self.live.get_mut(id) {
            if p.idle_since != BUSY {
                p.idle_since = self.seq;
                self.idle.push_back((id, self.seq));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = notes::PROMISE_ID_BASE;

    fn init(trigger: u64) -> EventKind {
        EventKind::Init {
            type_name: 1,
            trigger,
            exec: 1,
            stack: None,
        }
    }

    /// Feeds (id, kind) pairs, then `filler` unrelated events; returns what ended, and when
    /// (the index of the event it followed).
    fn run(events: &[(u64, EventKind)], filler: u64) -> Vec<(u64, usize)> {
        let mut ends = PromiseEnds::default();
        let mut out = Vec::new();
        let mut ended = Vec::new();
        let filler_ev = (7, EventKind::Before);
        let all = events.iter().cloned().chain((0..filler).map(|_| filler_ev));
        for (i, (id, kind)) in all.enumerate() {
            ends.event(id, &kind, &mut ended);
            out.extend(ended.drain(..).map(|p| (p, i)));
        }
        out
    }

    #[test]
    fn a_settled_promise_ends_a_window_after_its_last_use() {
        let evs = [
            (P, init(1)),
            (P, EventKind::PromiseResolve { by: 1 }),
            (P + 1, init(P)),
            (P + 1, EventKind::Before),
            (P + 1, EventKind::PromiseResolve { by: P + 1 }),
            (P + 1, EventKind::After),
        ];
        let ends = run(&evs, IDLE_WINDOW + 10);
        // P was last used by its child's init (event 2), P + 1 by its after (event 5); they
        // end in one burst, each idle for between half a window and a window.
        assert_eq!(ends.iter().map(|e| e.0).collect::<Vec<_>>(), vec![P, P + 1]);
        let (w, at) = (IDLE_WINDOW as usize, ends[0].1);
        assert!(ends[1].1 == at && at >= 5 + w / 2 && at <= 2 + w, "{ends:?}");
    }

    #[test]
    fn pending_and_running_promises_never_end() {
        let evs = [(P, init(1)), (P + 1, init(1)), (P + 1, EventKind::Before)];
        assert!(run(&evs, 3 * IDLE_WINDOW).is_empty());
    }

    #[test]
    fn exit_ends_the_settled_ones_only() {
        let mut ends = PromiseEnds::default();
        let mut ended = Vec::new();
        ends.event(P + 2, &init(1), &mut ended);
        ends.event(P + 2, &EventKind::PromiseResolve { by: 0 }, &mut ended);
        ends.event(P, &init(1), &mut ended);
        ends.event(P, &EventKind::PromiseResolve { by: 0 }, &mut ended);
        ends.event(P + 1, &init(1), &mut ended);
        assert!(ended.is_empty());
        ends.exit(&mut ended);
        assert_eq!(ended, vec![P, P + 2]);
    }
}

#[cfg(test)]
mod live_set_tests {
    use super::*;

    fn p(running: u32) -> LivePromise {
        LivePromise {
            running,
            settled: false,
            idle_since: BUSY,
        }
    }

    #[test]
    fn promises_are_found_in_the_window_past_it_and_after_a_jump() {
        let mut s = LiveSet::default();
        // The first never goes: the window slides past it and it moves to the map.
        s.insert(100, p(7));
        for id in 101..101 + RECENT_MAX as u64 + 10 {
            s.insert(id, p(1));
            s.remove(id - 1 + u64::from(id == 101));
        }
        assert!(s.recent.len() <= RECENT_MAX);
        assert_eq!(
            s.get(100).map(|q| q.running),
            Some(7),
            "moved out of the window, still found"
        );
        let last = 100 + RECENT_MAX as u64 + 10;
        assert!(s.get(last).is_some() && s.get(last - 1).is_none());
        // A jump far ahead restarts the window; what was in it stays found.
        s.insert(last + 10 * GAP_MAX, p(2));
        assert_eq!(s.get(last).map(|q| q.running), Some(1));
        assert_eq!(s.get(last + 10 * GAP_MAX).map(|q| q.running), Some(2));
        // An id below the window goes to the map.
        s.insert(50, p(3));
        assert_eq!(s.get_mut(50).map(|q| q.running), Some(3));
        let mut gone = Vec::new();
        s.retain(|q| q.running == 7, &mut gone);
        assert_eq!(gone, vec![50, last, last + 10 * GAP_MAX]);
        assert!(s.get(100).is_some() && s.get(50).is_none());
    }
}
