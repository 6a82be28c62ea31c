//! The wait model: what ended each wait, shared by `requests`, `tree` and `flame --weight
//! async` so that they blame the same thing (DESIGN.md "Wait cause").
//!
//! A callback's async wait (from the init or the previous after to its before) is explained
//! by what ended it:
//! - a promise reaction (a PROMISE made by `await p` or `p.then`) waited for `p` to settle:
//!   the cause is the resource whose callback settled `p` (`executionAsyncId()` at its
//!   promiseResolve). The wait is *explained* (counted elsewhere) when the settler is itself
//!   a promise reaction (the wait goes on in that reaction's chain) or was already waiting
//!   when this wait began (it lies inside the settler's): an await chain (`await sleep()`
//!   inside `await handler()`) is one wait, at its deepest resource (the timer), not one
//!   per enclosing promise;
//! - a timer that fired after it was due (its delay comes in a [`notes::TIMER`] note) waited
//!   for the callbacks that blocked the loop in between: the one that overlapped the late
//!   stretch most is named;
//! - an outgoing call (`http.request`, `fetch`) is named by the label of its
//!   [`notes::OUTGOING_START`] note once a resource on the settler's trigger chain received
//!   its response.
//!
//! Memory: one entry per live Timeout and per resource that received a response, and a
//! bounded ring of recent long callbacks per thread.

use std::collections::VecDeque;

use super::lifecycle::{FxMap, Key, Lifecycle, Resource};
use crate::trace::{notes, Event, EventKind, StreamId, StringId};

/// Callbacks at least this long are remembered as possible blockers of late timers.
const BLOCKER_MIN_NS: u64 = 1_000_000;
/// Recent long callbacks kept per thread.
const BLOCKERS: usize = 512;
/// A timer is late when it fired this much after it was due (the clock word ticks every
/// 100 µs and Node's timer wheel has 1 ms steps).
const LATE_MIN_NS: u64 = 2_000_000;
/// Trigger links walked up from a settler looking for an outgoing call.
const OUTGOING_DEPTH: usize = 6;

/// Which request a resource works for: its number in its thread and its label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// 0: none.
    pub number: u64,
    pub label: Option<StringId>,
}

/// A callback that kept the event loop busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocker {
    pub id: u64,
    /// `None`: a resource created before the hook was enabled (a worker's `parentPort`).
    pub type_name: Option<StringId>,
    pub stack: Option<StringId>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub owner: Owner,
}

/// What ended one wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing more is known than the resource itself (I/O, a timer that fired on time).
    Own,
    /// A promise reaction: `awaited` was settled by `by` (0: unknown). `explained`: `by` was
    /// already waiting when this wait began, so this wait lies inside `by`'s.
    Settled {
        awaited: u64,
        by: u64,
        explained: bool,
        /// An outgoing call that `by` (or one of its triggers) received the response of.
        outgoing: Option<StringId>,
    },
    /// A timer that fired `late_ns` after it was due `delay_ns` after its wait began.
    LateTimer {
        delay_ns: u64,
        late_ns: u64,
        blocker: Option<Blocker>,
    },
    /// The resource received the response of an outgoing call.
    Outgoing(StringId),
}

impl Cause {
    /// A wait counted inside another one: left out where each wait counts once.
    pub fn explained(&self) -> bool {
        matches!(self, Cause::Settled { explained: true, .. })
    }
}

/// The rule of [`Cause::Settled`]'s `explained`, for passes that keep their own state: a
/// promise reaction whose wait began at `own_wait_from_ns` awaited a promise settled at
/// `settled_ns` by a resource with `settler_callbacks` callbacks, the latest of which waited
/// from `settler_wait_from_ns`. Already settled when the wait began: the reaction only
/// queued behind other callbacks, nothing to blame beyond them.
pub fn settled_wait_explained(
    settled_ns: Option<u64>,
    settler_is_promise: bool,
    settler_callbacks: u32,
    settler_wait_from_ns: u64,
    own_wait_from_ns: u64,
) -> bool {
    settled_ns.is_some_and(|t| t <= own_wait_from_ns)
        || settler_callbacks > 0 && (settler_is_promise || settler_wait_from_ns <= own_wait_from_ns)
}

/// What [`Waits::cause`] needs of the resource whose callback starts now (copied out of the
/// lifecycle, which the caller still borrows).
#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    pub key: Key,
    pub type_name: StringId,
    pub trigger: u64,
    /// Start of the wait that ends now.
    pub wait_from_ns: u64,
    /// Now (the before).
    pub at_ns: u64,
    /// Its own first promiseResolve: when, and by whom.
    pub resolve_ns: Option<u64>,
    pub resolved_by: u64,
}

impl Waiting {
    pub fn of<X>(key: Key, res: &Resource<X>, at_ns: u64) -> Self {
        Waiting {
            key,
            type_name: res.type_name,
            trigger: res.trigger,
            wait_from_ns: res.wait_from_ns,
            at_ns,
            resolve_ns: res.resolve_ns(),
            resolved_by: res.resolved_by,
        }
    }
}

#[derive(Debug, Default)]
struct StreamWaits {
    /// Callbacks running now: id and start (nested when more than one).
    open: Vec<(u64, u64)>,
    blockers: VecDeque<Blocker>,
}

/// The wait model's state; feed it every event (see [`Waits::event`]) alongside a
/// [`Lifecycle`], and ask [`Waits::cause`] at each callback's before.
#[derive(Debug, Default)]
pub struct Waits {
    delays: FxMap<Key, u64>,
    outgoing_open: FxMap<Key, StringId>,
    outgoing: FxMap<Key, StringId>,
    /// Types of resources created before the hook (a worker's first MessagePort), from the
    /// agent's note at their first callback: a blocker without an init still has a type.
    unseen: FxMap<Key, StringId>,
    streams: Vec<StreamWaits>,
    promise: Option<StringId>,
    timeout: Option<StringId>,
}

impl Waits {
    fn stream(&mut self, stream: StreamId) -> &mut StreamWaits {
        let s = stream as usize;
        if self.streams.len() <= s {
            self.streams.resize_with(s + 1, StreamWaits::default);
        }
        &mut self.streams[s]
    }

    /// The type ids of PROMISE and Timeout, once the trace defines them.
    pub fn learn_type(&mut self, type_name: StringId, text: &str) {
        match text {
            "PROMISE" if self.promise.is_none() => self.promise = Some(type_name),
            "Timeout" if self.timeout.is_none() => self.timeout = Some(type_name),
            _ => {}
        }
    }

    /// Both type ids are known.
    pub fn knows_types(&self) -> bool {
        self.promise.is_some() && self.timeout.is_some()
    }

    pub fn is_promise(&self, type_name: StringId) -> bool {
        Some(type_name) == self.promise
    }

    /// Notes, destroys and callback nesting. Call for every event, before the pass's own
    /// handling of a before (nesting counts from there) and after its handling of an after.
    pub fn event(&mut self, ev: &Event) {
        let key = (ev.stream, ev.id);
        match ev.kind {
            EventKind::Note { code, a, text, .. } => match code {
                notes::TIMER => {
                    self.delays.insert(key, a.saturating_mul(1000));
                }
                notes::OUTGOING_START => {
                    if let Some(text) = text {
                        self.outgoing_open.insert((ev.stream, a), text);
                    }
                }
                notes::OUTGOING_FINISH => {
                    if let Some(text) = self.outgoing_open.remove(&(ev.stream, a)) {
                        self.outgoing.insert(key, text);
                    }
                }
                // The agent notes at most 4,096 of them per thread.
                notes::UNSEEN_TYPE => {
                    if let Some(text) = text {
                        self.unseen.insert(key, text);
                    }
                }
                _ => {}
            },
            EventKind::Destroy => {
                self.delays.remove(&key);
                self.outgoing.remove(&key);
                self.unseen.remove(&key);
            }
            EventKind::Before => {
                let st = self.stream(ev.stream);
                if st.open.len() >= 256 {
                    // The oldest never ended (its `after` was dropped).
                    st.open.remove(0);
                }
                st.open.push((ev.id, ev.time_ns));
            }
            _ => {}
        }
    }

    /// A callback ended (call for every `after`, with the resource when the lifecycle knows
    /// it); an outermost one that ran long is remembered as a possible blocker.
    pub fn after<X>(&mut self, ev: &Event, res: Option<&Resource<X>>, owner: Owner) {
        let unseen = self.unseen.get(&(ev.stream, ev.id)).copied();
        let st = self.stream(ev.stream);
        let Some(pos) = st.open.iter().rposition(|&(id, _)| id == ev.id) else {
            return;
        };
        let start_ns = st.open[pos].1;
        st.open.truncate(pos);
        if st.open.is_empty() && ev.time_ns.saturating_sub(start_ns) >= BLOCKER_MIN_NS {
            if st.blockers.len() >= BLOCKERS {
                st.blockers.pop_front();
            }
            st.blockers.push_back(Blocker {
                id: ev.id,
                type_name: res.map(|r| r.type_name).or(unseen),
                stack: res.and_then(|r| r.stack()),
                start_ns,
                end_ns: ev.time_ns,
                owner,
            });
        }
    }

    /// The stream ended: its state goes.
    pub fn stream_end(&mut self, stream: StreamId) {
        // Its blockers stay (bounded): a message it posted may be looked up later.
        if let Some(st) = self.streams.get_mut(stream as usize) {
            st.open.clear();
        }
        self.delays.retain(|k, _| k.0 != stream);
        self.outgoing.retain(|k, _| k.0 != stream);
        self.outgoing_open.retain(|k, _| k.0 != stream);
        self.unseen.retain(|k, _| k.0 != stream);
    }

    /// What ended the wait of `w`, whose callback starts now.
    pub fn cause<X: Default>(&self, life: &Lifecycle<X>, w: &Waiting) -> Cause {
        if let Some(&text) = self.outgoing.get(&w.key) {
            return Cause::Outgoing(text);
        }
        if self.is_promise(w.type_name) {
            // What it waited for: the promise it reacts to (its trigger), or, for a promise
            // that is not a reaction to another, its own settlement.
            let (awaited, settled_ns, by) =
                match life.get((w.key.0, w.trigger)).filter(|p| self.is_promise(p.type_name)) {
                    Some(p) => (w.trigger, p.resolve_ns(), p.resolved_by),
                    None if w.resolve_ns.is_some() => (w.key.1, w.resolve_ns, w.resolved_by),
                    None => return Cause::Own,
                };
            let settler = (by >= super::FIRST_RESOURCE_ID && by != w.key.1)
                .then(|| life.get((w.key.0, by)))
                .flatten();
            // Settled before it began to wait: it only queued behind other callbacks.
            let settled_early = settled_ns.is_some_and(|t| t <= w.wait_from_ns) && awaited != w.key.1;
            // Settled from a promise reaction: the wait continues in that reaction's own
            // chain, down to the timers, sockets and ports that carry it. Settled from any
            // other callback: explained when that callback's wait covers this one's start.
            let explained = settler.is_some_and(|r| {
                settled_wait_explained(
                    settled_ns,
                    self.is_promise(r.type_name),
                    r.callbacks,
                    r.wait_from_ns,
                    w.wait_from_ns,
                )
            });
            return Cause::Settled {
                awaited,
                by,
                explained: explained || settled_early,
                outgoing: settler.and_then(|_| self.outgoing_above(life, (w.key.0, by))),
            };
        }
        if Some(w.type_name) == self.timeout {
            if let Some(&delay_ns) = self.delays.get(&w.key) {
                let due = w.wait_from_ns.saturating_add(delay_ns);
                let late_ns = w.at_ns.saturating_sub(due);
                if late_ns >= LATE_MIN_NS {
                    return Cause::LateTimer {
                        delay_ns,
                        late_ns,
                        blocker: self.blocker(w.key.0, due, w.at_ns),
                    };
                }
            }
        }
        Cause::Own
    }

    /// The outgoing call whose response `key` or a trigger above it received.
    fn outgoing_above<X: Default>(&self, life: &Lifecycle<X>, key: Key) -> Option<StringId> {
        if let Some(&t) = self.outgoing.get(&key) {
            return Some(t);
        }
        if self.outgoing.is_empty() {
            return None;
        }
        life.chain(key, OUTGOING_DEPTH)
            .iter()
            .find_map(|l| self.outgoing.get(&(key.0, l.id)).copied())
    }

    /// The long callback that started last, at or before `at_ns`, on one of `streams`: for
    /// a message from another thread, the job that posted it. Looked up once the trace is
    /// read (threads' events reach the trace in batches, not in one time order); only the
    /// last [`BLOCKERS`] long callbacks of each thread are remembered.
    pub fn last_job(&self, streams: impl Iterator<Item = StreamId>, at_ns: u64) -> Option<(StreamId, Blocker)> {
        streams
            .filter_map(|s| {
                let st = self.streams.get(s as usize)?;
                // Started before the message was taken: the message is posted inside the
                // job's callback, which may end after the other thread took it.
                st.blockers.iter().rev().find(|b| b.start_ns <= at_ns).map(|b| (s, *b))
            })
            .max_by_key(|(_, b)| b.start_ns)
    }

    /// The remembered callback that overlapped `[from, to]` most.
    fn blocker(&self, stream: StreamId, from: u64, to: u64) -> Option<Blocker> {
        let st = self.streams.get(stream as usize)?;
        st.blockers
            .iter()
            .rev()
            .take_while(|b| b.end_ns > from)
            .map(|b| (b.end_ns.min(to).saturating_sub(b.start_ns.max(from)), b))
            .filter(|(o, _)| *o > 0)
            .max_by_key(|(o, b)| (*o, std::cmp::Reverse(b.start_ns)))
            .map(|(_, b)| *b)
    }
}
