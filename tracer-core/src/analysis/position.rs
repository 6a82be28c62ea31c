//! Creation sites for resources whose stack the agent did not take, inferred from where in
//! the program's async structure they were created.
//!
//! A creation stack costs the traced app ~10 µs, so the agent takes one for only a budget of
//! resources per type (DESIGN.md section 4). Under sustained load the budget is spent within
//! a second and most resources arrive without a stack: the very promise a hung request waits
//! on, the socket a helper opens per request. Yet such a resource was created at the same
//! point of the same code path as thousands before it that did get a stack.
//!
//! That point is its *structural position*: a hash of the position of the resource whose
//! callback created it (`executionAsyncId()` at init), of its own type, and of how many
//! resources of that type the same callback had created before it. Every request on a
//! keep-alive connection runs its handler in a callback of the same parser resource, so the
//! n-th promise the handler creates has the same position in every request; a timer armed
//! per connection has the same position for every connection. Nothing about it depends on
//! which resources got a stack, so the resources with stacks vote for the site of their
//! position, and a resource without one takes the site its position voted for, when every
//! vote named the same site. Counting per type (not in one sequence) keeps a timer that Node
//! arms now and then (the Date-header cache) from shifting the positions of the promises
//! around it.
//!
//! What this cannot know: a stackless resource on a code path no stacked resource ever took,
//! whose n-th resource of its type sits where another path's does. Reports therefore say
//! which sites were inferred ([`Context::is_inferred`](super::Context::is_inferred)), and a
//! position whose votes disagree infers only when one site has [`MAJORITY`] of them and at
//! least [`MAJORITY_MIN`] (a rare second path through the same point, such as an export
//! route beside a cache miss, must not hide the common one; an even split infers nothing).
//!
//! Memory: the position of each live resource (~32 bytes), the running callbacks of each
//! stream, and one vote per position that had a stack, at most [`MAX_POSITIONS`].

use super::lifecycle::{FxHasher, FxMap};
use crate::trace::{Event, EventKind, StreamId, StringId};
use std::hash::Hasher;

/// Positions that keep votes, at most. When full, positions only one resource voted for are
/// forgotten (a position that repeats has more); past that, new positions are not learnt
/// (those known keep voting and inferring).
pub const MAX_POSITIONS: usize = 1 << 16;
/// Per callback and type, the resources that get a position: the n-th of a type beyond it (a
/// loop in one callback, the top level of a script) is created at a point no other callback
/// repeats, and so is everything created under it, which then needs no bookkeeping at all.
const ORDINAL_MAX: u32 = 64;
/// Nested callbacks followed per stream; deeper ones (after lost `after` records) push the
/// oldest out.
const MAX_DEPTH: usize = 256;
/// Per callback, the distinct types counted apart; more share counters by type id, which
/// keeps positions deterministic, if coarser.
const TYPE_SLOTS: usize = 6;

/// Share of a position's votes its leading site needs when they disagree, and how many.
pub const MAJORITY: f64 = 0.75;
pub const MAJORITY_MIN: u32 = 3;

/// What the votes of one position said.
#[derive(Debug, Clone, Copy)]
struct Vote {
    /// The stack voted for (the longest of those naming the leading site).
    stack: StringId,
    /// The leading site.
    site: u32,
    /// Its length in bytes.
    len: u32,
    /// Votes for the leading site.
    n: u32,
    /// Votes for any other site (when a runner-up overtakes, the counts swap: a
    /// one-candidate majority count, exact whenever one site has most of the votes).
    other: u32,
}

/// A callback running now, or the top level of a stream (id 0).
#[derive(Debug, Clone)]
struct Frame {
    id: u64,
    pos: u64,
    counts: [(StringId, u32); TYPE_SLOTS],
}

impl Frame {
    fn new(id: u64, pos: u64) -> Self {
        Frame {
            id,
            pos,
            counts: [(StringId::MAX, 0); TYPE_SLOTS],
        }
    }

    /// How many resources of this type this callback created before (and counts this one).
    fn ordinal(&mut self, type_name: StringId) -> u32 {
        let slot = self
            .counts
            .iter()
            .position(|&(t, _)| t == type_name)
            .or_else(|| self.counts.iter().position(|&(t, _)| t == StringId::MAX))
            .unwrap_or(type_name as usize % TYPE_SLOTS);
        let c = &mut self.counts[slot];
        if c.0 == StringId::MAX {
            c.0 = type_name;
        }
        c.1 += 1;
        c.1 - 1
    }
}

/// Per stream: its running callbacks, innermost last, above its top level.
#[derive(Debug, Clone, Default)]
struct Callbacks {
    frames: Vec<Frame>,
    top: Option<Frame>,
}

/// The structural positions of a trace's resources and the sites they voted for. See the
/// module docs.
#[derive(Debug, Default)]
pub struct Positions {
    live: FxMap<(StreamId, u64), u64>,
    streams: Vec<Callbacks>,
    votes: FxMap<u64, Vote>,
    /// The vote table was pruned and stayed over half full: no more pruning.
    pruned: bool,
}

/// Distinguishes the positions of a stream's top level from any callback's. Positions that
/// may repeat have their low bit set.
const TOP: u64 = 0x9e37_79b9_7f4a_7c15;
/// The position of a callback whose resource has none: what it creates has none either.
const UNIQUE: u64 = 0;

fn repeats(pos: u64) -> bool {
    pos & 1 == 1
}

fn mix(parent: u64, type_name: StringId, ordinal: u32) -> u64 {
    let mut h = FxHasher::default();
    h.write_u64(parent);
    h.write_u32(type_name);
    h.write_u32(ordinal);
    h.finish()
}

/// What [`Positions::observe`] found for an init without a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inferred {
    pub stack: StringId,
    /// How many resources with a stack voted for it.
    pub votes: u32,
}

impl Positions {
    /// Follows one event. For an init, returns its position; the caller votes with
    /// [`Positions::vote`] or asks with [`Positions::inferred`].
    pub fn observe(&mut self, ev: &Event) -> Option<u64> {
        let key = (ev.stream, ev.id);
        match ev.kind {
            EventKind::Init {
                type_name,
                exec,
                trigger,
                ..
            } => {
                let cbs = self.stream(ev.stream);
                // The creating callback is nearly always the innermost one running; a stream
                // whose before/after records were lost may have it deeper.
                let frame = match cbs.frames.iter_mut().rev().find(|f| f.id == exec) {
                    Some(f) => f,
                    None => cbs.top.get_or_insert_with(|| Frame::new(0, TOP)),
                };
                // Counted apart: resources chained to another (a promise from `.then` or
                // `await`) and those that start a chain (`new Promise`, a timer). A code path
                // taken now and then that starts a promise (a cache miss) then does not shift
                // the positions of the awaits around it, nor take theirs.
                let kind = type_name ^ (u32::from(trigger != exec) << 31);
                let ordinal = frame.ordinal(kind);
                if !repeats(frame.pos) || ordinal >= ORDINAL_MAX {
                    return None;
                }
                let pos = mix(frame.pos, kind, ordinal) | 1;
                self.live.insert(key, pos);
                Some(pos)
            }
            EventKind::Before => {
                // A resource with no position (its init is not in the trace, or it was
                // created at a point that does not repeat): nor have its callback's children.
                let pos = self.live.get(&key).copied().unwrap_or(UNIQUE);
                let cbs = self.stream(ev.stream);
                if cbs.frames.len() >= MAX_DEPTH {
                    cbs.frames.remove(0);
                }
                cbs.frames.push(Frame::new(ev.id, pos));
                None
            }
            EventKind::After => {
                let cbs = self.stream(ev.stream);
                if let Some(i) = cbs.frames.iter().rposition(|f| f.id == ev.id) {
                    // Callbacks above it whose after was lost end with it.
                    cbs.frames.truncate(i);
                }
                None
            }
            EventKind::Destroy => {
                self.live.remove(&key);
                None
            }
            _ => None,
        }
    }

    fn stream(&mut self, stream: StreamId) -> &mut Callbacks {
        let i = stream as usize;
        if self.streams.len() <= i {
            self.streams.resize(i + 1, Callbacks::default());
        }
        &mut self.streams[i]
    }

    /// A resource at `pos` was created with `stack`, whose site is `site` and whose text is
    /// `len` bytes long.
    pub fn vote(&mut self, pos: u64, stack: StringId, site: u32, len: usize) {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        if let Some(v) = self.votes.get_mut(&pos) {
            if v.site != site {
                v.other = v.other.saturating_add(1);
                if v.other > v.n {
                    std::mem::swap(&mut v.n, &mut v.other);
                    v.site = site;
                    v.stack = stack;
                    v.len = len;
                }
                return;
            }
            // The agent takes fewer frames once it learnt a type's depth: keep the stack
            // that shows more of the path.
            if len > v.len {
                v.stack = stack;
                v.len = len;
            }
            v.n = v.n.saturating_add(1);
        } else {
            if self.votes.len() >= MAX_POSITIONS && !self.pruned {
                self.votes.retain(|_, v| v.n + v.other != 1);
                // Once pruning frees little, positions that repeat fill the table: keep them.
                self.pruned = self.votes.len() >= MAX_POSITIONS / 2;
            }
            if self.votes.len() < MAX_POSITIONS {
                self.votes.insert(
                    pos,
                    Vote {
                        stack,
                        site,
                        len,
                        n: 1,
                        other: 0,
                    },
                );
            }
        }
    }

    /// The stack the resources with a stack at `pos` so far agreed on: all of them, or a
    /// clear majority (see the module docs).
    pub fn inferred(&self, pos: u64) -> Option<Inferred> {
        let v = self.votes.get(&pos)?;
        let total = f64::from(v.n) + f64::from(v.other);
        let agreed = v.other == 0 || v.n >= MAJORITY_MIN && f64::from(v.n) >= MAJORITY * total;
        agreed.then_some(Inferred {
            stack: v.stack,
            votes: v.n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Context;
    use crate::trace::{Event, EventKind, StringId};

    const PROMISE: StringId = 0;
    const TCP: StringId = 1;
    const TIMEOUT: StringId = 2;
    const AT_12: StringId = 3;
    const AT_13: StringId = 4;
    const AT_12_SHORT: StringId = 5;

    fn cx() -> Context {
        let mut cx = Context::default();
        for (id, text) in [
            (PROMISE, "PROMISE"),
            (TCP, "TCPWRAP"),
            (TIMEOUT, "Timeout"),
            (AT_12, "handle\tapp.js:12:9\nserve\tapp.js:40:3"),
            (AT_13, "handle\tapp.js:13:3"),
            (AT_12_SHORT, "handle\tapp.js:12:9"),
        ] {
            cx.define_string(id, text.to_owned());
        }
        cx
    }

    fn ev(id: u64, kind: EventKind) -> Event {
        Event {
            stream: 0,
            time_ns: 0,
            id,
            kind,
        }
    }

    fn init(id: u64, type_name: StringId, exec: u64, stack: Option<StringId>) -> Event {
        ev(
            id,
            EventKind::Init {
                type_name,
                trigger: exec,
                exec,
                stack,
            },
        )
    }

    fn stack_of(e: &Event) -> Option<StringId> {
        match e.kind {
            EventKind::Init { stack, .. } => stack,
            _ => None,
        }
    }

    /// One connection accepted by server #5, whose callback creates two promises (and, in
    /// some connections, a timer between them, as Node's Date-header cache does).
    fn connection(cx: &mut Context, conn: u64, stacks: [Option<StringId>; 2], timer: bool) -> [Event; 2] {
        cx.observe(&ev(5, EventKind::Before));
        cx.observe(&init(conn, TCP, 5, None));
        cx.observe(&ev(5, EventKind::After));
        cx.observe(&ev(conn, EventKind::Before));
        let first = cx.observe(&init(conn + 1, PROMISE, conn, stacks[0]));
        if timer {
            cx.observe(&init(conn + 3, TIMEOUT, conn, None));
        }
        let second = cx.observe(&init(conn + 2, PROMISE, conn, stacks[1]));
        cx.observe(&ev(conn, EventKind::After));
        [first, second]
    }

    #[test]
    fn a_resource_without_a_stack_takes_the_site_of_its_position() {
        let mut cx = cx();
        cx.observe(&init(5, TCP, 1, None));
        for c in 0..3 {
            connection(&mut cx, 10 + c * 10, [Some(AT_12_SHORT), Some(AT_13)], false);
        }
        // A stack of more frames for the same site is the one inferred.
        connection(&mut cx, 40, [Some(AT_12), Some(AT_13)], false);
        let [a, b] = connection(&mut cx, 50, [None, None], true);
        assert!(cx.is_inferred(stack_of(&a)) && cx.is_inferred(stack_of(&b)));
        let site = cx.site(stack_of(&a));
        assert_eq!(cx.site_string(site).as_deref(), Some("app.js:12:9"));
        assert_eq!(cx.stack_frames(stack_of(&a)).len(), 2);
        let site = cx.site(stack_of(&b));
        assert_eq!(cx.site_string(site).as_deref(), Some("app.js:13:3"));
        assert_eq!(cx.inferred_stacks, 2);
        // Recorded stacks are left as they are.
        let [c, _] = connection(&mut cx, 60, [Some(AT_12), None], false);
        assert_eq!(stack_of(&c), Some(AT_12));
        assert!(!cx.is_inferred(stack_of(&c)));
    }

    #[test]
    fn a_position_whose_stacks_name_two_sites_infers_nothing() {
        let mut cx = cx();
        cx.observe(&init(5, TCP, 1, None));
        connection(&mut cx, 10, [Some(AT_12), Some(AT_13)], false);
        connection(&mut cx, 20, [Some(AT_13), Some(AT_13)], false);
        let [a, b] = connection(&mut cx, 30, [None, None], false);
        assert_eq!(stack_of(&a), None);
        assert!(cx.is_inferred(stack_of(&b)));
    }

    #[test]
    fn a_rare_second_path_through_a_position_does_not_hide_the_common_one() {
        let mut cx = cx();
        cx.observe(&init(5, TCP, 1, None));
        for c in 0..6 {
            connection(&mut cx, 10 + c * 10, [Some(AT_12), None], false);
        }
        // Another path through the same point, once.
        connection(&mut cx, 100, [Some(AT_13), None], false);
        let [a, _] = connection(&mut cx, 110, [None, None], false);
        let site = cx.site(stack_of(&a));
        assert_eq!(cx.site_string(site).as_deref(), Some("app.js:12:9"));
        // As many votes for the other site: no majority, nothing inferred.
        for c in 0..6 {
            connection(&mut cx, 200 + c * 10, [Some(AT_13), None], false);
        }
        let [b, _] = connection(&mut cx, 400, [None, None], false);
        assert_eq!(stack_of(&b), None);
    }

    #[test]
    fn a_path_no_stacked_resource_took_infers_nothing() {
        let mut cx = cx();
        cx.observe(&init(5, TCP, 1, None));
        let [a, _] = connection(&mut cx, 10, [None, None], false);
        assert_eq!(stack_of(&a), None);
        // Created at the top level, not in a connection's callback: another position.
        connection(&mut cx, 20, [Some(AT_12), Some(AT_13)], false);
        let top = cx.observe(&init(99, PROMISE, 0, None));
        assert_eq!(stack_of(&top), None);
        assert!(!cx.is_inferred(None));
    }
}
