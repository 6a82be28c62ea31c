//! The lifecycle of every live resource: the state machine each analysis builds on.
//!
//! [`Lifecycle::apply`] takes the events of a trace in file order and keeps one [`Resource`]
//! per live `(stream, id)`: created at its init, updated by its callbacks and promiseResolve,
//! handed back (and forgotten) at its destroy. Memory is proportional to the live resources
//! plus a fixed-size cache of recently destroyed ones (for trigger chains).
//!
//! Times follow DESIGN.md "Time per callback": for callback k, the async wait runs from the
//! init (k = 0) or the previous after to before_k, the sync time from before_k to after_k.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::resource_table::Table;
use super::FIRST_RESOURCE_ID;
use crate::trace::{Event, EventKind, StreamId, StringId};

/// A resource: its stream and async id.
pub type Key = (StreamId, u64);

/// One live resource. `X` is the data a pass attaches (default: none).
///
/// Kept small: a trace can hold millions of these at once (see `resource_table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource<X = ()> {
    pub type_name: StringId,
    pub trigger: u64,
    /// Its creation stack, [`NONE`] for none (see [`Resource::stack`]).
    pub(crate) stack_id: StringId,
    pub init_ns: u64,
    /// Outside a callback: where the next async wait starts (the init, or the last after).
    /// In one ([`RUNNING`] set): when it started; the next wait then starts where the wait
    /// before it did (`wait_from_ns`), so one field holds both.
    pub(crate) mark: u64,
    /// Callbacks started (befores).
    pub callbacks: u32,
    /// Sum of the sync times of its finished callbacks.
    pub sync_ns: u64,
    /// Sum of the async waits before its callbacks.
    pub wait_ns: u64,
    /// Where the wait before its latest callback started (the wait model compares waits).
    pub wait_from_ns: u64,
    /// `NOT_RESOLVED` until its first promiseResolve.
    pub(crate) resolve: u64,
    /// The resource whose callback settled this promise (`executionAsyncId()` at its first
    /// promiseResolve); 0 when not recorded or settled outside any callback.
    pub resolved_by: u64,
    /// The last label the agent attached (e.g. `GET /users/7`), [`NONE`] for none.
    pub(crate) label_id: StringId,
    pub data: X,
}

/// The bit of `Resource::mark` set while a callback runs. Times are clamped below it (2^63 ns
/// is 292 years: only a damaged trace reaches it).
const RUNNING: u64 = 1 << 63;
const NOT_RESOLVED: u64 = u64::MAX;
/// No string: a trace's own ids are dense from 0, and inferred stacks' aliases stay far
/// below it.
const NONE: StringId = u32::MAX;

impl<X: Default> Default for Resource<X> {
    fn default() -> Self {
        Resource {
            type_name: 0,
            trigger: 0,
            stack_id: NONE,
            init_ns: 0,
            mark: 0,
            callbacks: 0,
            sync_ns: 0,
            wait_ns: 0,
            wait_from_ns: 0,
            resolve: NOT_RESOLVED,
            resolved_by: 0,
            label_id: NONE,
            data: X::default(),
        }
    }
}

impl<X> Resource<X> {
    /// When the callback running now started, if one is.
    pub fn before_ns(&self) -> Option<u64> {
        (self.mark & RUNNING != 0).then_some(self.mark & !RUNNING)
    }

    /// Where the next async wait starts: the init, or the last after.
    pub fn idle_since_ns(&self) -> u64 {
        if self.mark & RUNNING != 0 {
            self.wait_from_ns
        } else {
            self.mark
        }
    }

    /// Its creation stack, if the agent took one (or one was inferred).
    pub fn stack(&self) -> Option<StringId> {
        (self.stack_id != NONE).then_some(self.stack_id)
    }

    /// The last label the agent attached (e.g. `GET /users/7`).
    pub fn label(&self) -> Option<StringId> {
        (self.label_id != NONE).then_some(self.label_id)
    }

    /// When it was first resolved (promises).
    pub fn resolve_ns(&self) -> Option<u64> {
        (self.resolve != NOT_RESOLVED).then_some(self.resolve)
    }
}

/// What an event did, as [`Lifecycle::apply`] reports it.
#[derive(Debug)]
pub enum Step<'a, X> {
    /// A resource was created (a repeated init of a live id replaces it).
    Init(&'a mut Resource<X>),
    /// A callback started after waiting `wait_ns`.
    Before {
        res: &'a mut Resource<X>,
        wait_ns: u64,
    },
    /// A callback that started at `start_ns` ended after `sync_ns`.
    After {
        res: &'a mut Resource<X>,
        start_ns: u64,
        sync_ns: u64,
    },
    Resolve(&'a mut Resource<X>),
    Label(&'a mut Resource<X>),
    /// A note of the agent's (see `trace::notes`): the pass reads it from the event.
    Note,
    /// The resource was destroyed; it is no longer tracked.
    Destroy(Resource<X>),
    /// An event of an id whose init is not in the trace (created before the hook was
    /// enabled, or its init was dropped), or an after without a before. Skipped.
    Unknown,
}

/// One link of a trigger chain, from a resource towards its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub id: u64,
    /// `None` when the resource is neither live nor among the recently destroyed (or its
    /// init is not in the trace): the chain stops there.
    pub type_name: Option<StringId>,
    pub stack: Option<StringId>,
}

/// Enough of a destroyed resource to continue a trigger chain through it.
#[derive(Debug, Clone, Copy)]
struct Tomb {
    key: Key,
    type_name: StringId,
    trigger: u64,
    stack: Option<StringId>,
}

/// FxHash: keys are small integers from our own reader, so no HashDoS concern, and SipHash
/// would cost a third of the per-event budget.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
pub(crate) type FxSet<K> = std::collections::HashSet<K, BuildHasherDefault<FxHasher>>;

/// Default size of the recently-destroyed cache (entries): ~2.5 MB.
const DEFAULT_TOMBS: usize = 1 << 16;

/// Tracks the live resources of every stream. See the module docs.
#[derive(Debug)]
pub struct Lifecycle<X = ()> {
    /// Indexed by stream (the reader numbers them densely from 0).
    live: Vec<Table<X>>,
    /// Direct-mapped by key hash: a destroyed resource stays findable until another one
    /// lands in its slot.
    tombs: Vec<Option<Tomb>>,
    unended: u64,
}

impl<X: Default> Default for Lifecycle<X> {
    fn default() -> Self {
        Self::with_tombstones(DEFAULT_TOMBS)
    }
}

impl<X: Default> Lifecycle<X> {
    /// A tracker remembering about `tombs` recently destroyed resources (rounded up to a
    /// power of two; 0 disables it).
    pub fn with_tombstones(tombs: usize) -> Self {
        let n = if tombs == 0 { 0 } else { tombs.next_power_of_two() };
        Lifecycle {
            live: Vec::new(),
            tombs: vec![None; n],
            unended: 0,
        }
    }

    fn table(&self, stream: StreamId) -> Option<&Table<X>> {
        self.live.get(stream as usize)
    }

    fn table_mut(&mut self, stream: StreamId) -> Option<&mut Table<X>> {
        self.live.get_mut(stream as usize)
    }

    /// Applies one event. Labels of unknown ids and events of unknown ids are
    /// [`Step::Unknown`].
    #[inline]
    pub fn apply(&mut self, ev: &Event) -> Step<'_, X> {
        let key = (ev.stream, ev.id);
        let t = ev.time_ns.min(RUNNING - 1);
        if let EventKind::Init {
            type_name,
            trigger,
            stack,
            ..
        } = ev.kind
        {
            let res = Resource {
                type_name,
                trigger,
                stack_id: stack.unwrap_or(NONE),
                init_ns: t,
                mark: t,
                ..Default::default()
            };
            let s = ev.stream as usize;
            if s >= self.live.len() {
                self.live.resize_with(s + 1, Table::default);
            }
            return Step::Init(self.live[s].insert(ev.id, res));
        }
        if let EventKind::Note { .. } = ev.kind {
            return Step::Note;
        }
        if let EventKind::Destroy = ev.kind {
            return match self.table_mut(ev.stream).and_then(|tb| tb.remove(ev.id)) {
                Some(res) => {
                    self.bury(key, &res);
                    Step::Destroy(res)
                }
                None => Step::Unknown,
            };
        }
        let unended = &mut self.unended;
        let Some(res) = self.live.get_mut(ev.stream as usize).and_then(|tb| tb.get_mut(ev.id)) else {
            return Step::Unknown;
        };
        match ev.kind {
            EventKind::Before => {
                // A callback of a resource already in one: the previous one's `after` was
                // lost (dropped), so neither its sync time nor this wait is known.
                let wait_ns = if res.mark & RUNNING != 0 {
                    *unended += 1;
                    0
                } else {
                    res.wait_from_ns = res.mark;
                    t.saturating_sub(res.mark)
                };
                res.wait_ns += wait_ns;
                res.callbacks += 1;
                res.mark = t | RUNNING;
                Step::Before { res, wait_ns }
            }
            EventKind::After => match res.before_ns() {
                Some(start_ns) => {
                    let sync_ns = t.saturating_sub(start_ns);
                    res.sync_ns += sync_ns;
                    res.mark = t;
                    Step::After { res, start_ns, sync_ns }
                }
                None => Step::Unknown,
            },
            EventKind::PromiseResolve { by } => {
                if res.resolve == NOT_RESOLVED {
                    res.resolve = t;
                    res.resolved_by = by;
                }
                Step::Resolve(res)
            }
            EventKind::Label { text } => {
                res.label_id = text;
                Step::Label(res)
            }
            EventKind::Init { .. } | EventKind::Note { .. } | EventKind::Destroy => Step::Unknown,
        }
    }

    fn bury(&mut self, key: Key, res: &Resource<X>) {
        if let Some(i) = self.tomb_slot(key) {
            self.tombs[i] = Some(Tomb {
                key,
                type_name: res.type_name,
                trigger: res.trigger,
                stack: res.stack(),
            });
        }
    }

    fn tomb_slot(&self, key: Key) -> Option<usize> {
        if self.tombs.is_empty() {
            return None;
        }
        let mut h = FxHasher::default();
        h.write_u32(key.0);
        h.write_u64(key.1);
        // Why the high bits: the multiply mixes upwards.
        Some((h.finish() >> 32) as usize & (self.tombs.len() - 1))
    }

    pub fn get(&self, key: Key) -> Option<&Resource<X>> {
        self.table(key.0)?.get(key.1)
    }

    pub fn get_mut(&mut self, key: Key) -> Option<&mut Resource<X>> {
        self.table_mut(key.0)?.get_mut(key.1)
    }

    /// Callbacks with no recorded end: a resource started another callback while one was
    /// still open (its `after` was dropped). Their sync time is unknown and counted nowhere.
    pub fn unended(&self) -> u64 {
        self.unended
    }

    /// Number of live resources.
    pub fn len(&self) -> usize {
        self.live.iter().map(Table::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live resource, in no particular order.
    pub fn iter_all(&self) -> impl Iterator<Item = (Key, &Resource<X>)> {
        (0..self.live.len() as StreamId).flat_map(move |s| self.iter_stream(s))
    }

    /// The live resources of one stream, in no particular order.
    pub fn iter_stream(&self, stream: StreamId) -> impl Iterator<Item = (Key, &Resource<X>)> {
        self.table(stream)
            .into_iter()
            .flat_map(move |tb| tb.iter().map(move |(id, r)| ((stream, id), r)))
    }

    /// Removes the live resources of a stream (it ended), handing each to `f`, in id order.
    pub fn drain_stream(&mut self, stream: StreamId, mut f: impl FnMut(Key, Resource<X>)) {
        if let Some(tb) = self.table_mut(stream) {
            tb.drain_sorted(|id, res| f((stream, id), res));
        }
    }

    /// Forgets the live resources of a stream (it ended), memory included.
    pub fn clear_stream(&mut self, stream: StreamId) {
        if let Some(tb) = self.table_mut(stream) {
            *tb = Table::default();
        }
    }

    /// The trigger chain above `key` (its trigger first), at most `max` links, through live
    /// and recently destroyed resources. Ends at a root (trigger below
    /// [`FIRST_RESOURCE_ID`]) or at a link whose `type_name` is `None` (not known).
    pub fn chain(&self, key: Key, max: usize) -> Vec<ChainLink> {
        let mut out = Vec::new();
        let Some(mut cur) = self.trigger_of(key) else {
            return out;
        };
        while cur >= FIRST_RESOURCE_ID && out.len() < max {
            let k = (key.0, cur);
            match self.describe(k) {
                Some((type_name, trigger, stack)) => {
                    out.push(ChainLink {
                        id: cur,
                        type_name: Some(type_name),
                        stack,
                    });
                    // Why: a damaged trace could hold a trigger cycle.
                    if trigger == cur {
                        break;
                    }
                    cur = trigger;
                }
                None => {
                    out.push(ChainLink {
                        id: cur,
                        type_name: None,
                        stack: None,
                    });
                    break;
                }
            }
        }
        out
    }

    fn trigger_of(&self, key: Key) -> Option<u64> {
        self.describe(key).map(|d| d.1)
    }

    /// Type, trigger and stack of a live or recently destroyed resource.
    pub fn describe(&self, key: Key) -> Option<(StringId, u64, Option<StringId>)> {
        if let Some(r) = self.get(key) {
            return Some((r.type_name, r.trigger, r.stack()));
        }
        let t = self.tombs.get(self.tomb_slot(key)?)?.as_ref()?;
        (t.key == key).then_some((t.type_name, t.trigger, t.stack))
    }
}
