//! Folded stacks: one stack per resource (its trigger path), weighted, added up per path.
//!
//! The per-resource lifecycle tracking here is private and minimal (path, wait start, open
//! callbacks); it does only what weighting needs.
//!
//! Paths are interned as a parent-pointer tree, and kept bounded whatever the trigger chains:
//! - a resource whose frame repeats a frame of its parent's path (an `await` loop, a
//!   `setImmediate` hop chain, a retry loop) takes that ancestor's path: a loop is one frame,
//!   as `tree` folds it into one `(loop)` group;
//! - a path deeper than [`MAX_DEPTH`] frames (the stream's own frame included) keeps its
//!   first `MAX_DEPTH - 1`, then a `...` frame, then the resource's own frame.
//!
//! So the paths, and the length of every folded line, grow with the distinct sites of the app,
//! not with the length of its chains: a consumer looping for minutes is a handful of stacks.

use std::io::{self, Read, Write};

#[path = "cpu_fold.rs"]
mod cpu_fold;

use super::error::ExportError;
use super::filter::Filter;
use super::frames::{FrameId, FrameInfo, Frames};
use super::hash::FxMap;
use super::input::{pump, Handler, Input};
use crate::analysis::waits::settled_wait_explained;
use crate::trace::{Event, EventKind, StreamId, StreamInfo, StringId, TraceReader};

/// What a stack's width measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Weight {
    /// Microseconds inside the resource's callbacks (before -> after), excluding callbacks
    /// nested in them, so that widths add up to the time spent in callbacks.
    #[default]
    Sync,
    /// Microseconds the resource waited: from init, or from the end of a callback, to its
    /// next callback. A wait that no callback ended (a timer still pending at the end) is not
    /// counted, and a promise reaction's wait that lies inside another wait (an await chain,
    /// see `analysis::waits`) is counted once, at the chain's deepest resource.
    Async,
    /// Resources created.
    Count,
    /// Microseconds of CPU samples (samples x interval): the async path of the callback a
    /// sample fell in, continued by its JS stack (see `cpu_fold`).
    Cpu,
}

impl Weight {
    /// The unit of the counts: `µs` or `resources`.
    pub fn unit(self) -> &'static str {
        match self {
            Weight::Sync | Weight::Async | Weight::Cpu => "µs",
            Weight::Count => "resources",
        }
    }

    /// `sync`, `async` or `count`.
    pub fn name(self) -> &'static str {
        match self {
            Weight::Sync => "sync",
            Weight::Async => "async",
            Weight::Count => "count",
            Weight::Cpu => "cpu",
        }
    }
}

/// Options of [`fold`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FoldOptions {
    /// What a stack's width measures.
    pub weight: Weight,
    /// Which processes, threads and time window count. Weights are clipped to the window.
    pub filter: Filter,
    /// Keep stacks in time order, one per stretch of weight (a flame chart), instead of
    /// adding up equal stacks. Memory then grows with the number of callbacks.
    pub time_order: bool,
}

/// Index of a path: a frame under a parent path.
pub type PathId = u32;
/// Frames in a path (the stream's own frame included) before the middle is cut to `...`.
pub const MAX_DEPTH: usize = 128;
/// The frame that stands for the cut middle of a path deeper than [`MAX_DEPTH`].
pub const ELLIPSIS: &str = "...";
/// Callbacks open at once per thread before the oldest is given up as having no recorded end
/// (its `after` was dropped). Real nesting is a few levels deep.
const MAX_OPEN: usize = 256;
const NO_PATH: PathId = PathId::MAX;
const NO_TIME: u64 = u64::MAX;

/// One weighted stack of [`Folded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stack {
    pub stream: StreamId,
    pub path: PathId,
    /// In [`Weight::unit`]s.
    pub weight: u64,
}

/// The result of [`fold`]: distinct paths and their weights.
#[derive(Debug, Clone)]
pub struct Folded {
    pub weight: Weight,
    pub frames: Vec<FrameInfo>,
    /// `(parent, frame)` per path; roots (a stream's frame) have no parent.
    paths: Vec<(PathId, FrameId)>,
    /// Non-zero stacks, sorted by their folded text, or in time order.
    pub stacks: Vec<Stack>,
    /// The selected streams, in order of appearance.
    pub streams: Vec<StreamInfo>,
    /// Events read from the selected streams.
    pub events: u64,
    /// Callbacks with no recorded end (their `after` was dropped): their time is unknown and
    /// weighs nothing.
    pub unended: u64,
    /// The trace ended without its end marker; this is its complete prefix.
    pub truncated: bool,
}

impl Folded {
    /// The frames of a path, root (the stream) first.
    pub fn frames_of(&self, path: PathId) -> Vec<FrameId> {
        let mut out = Vec::new();
        let mut p = path;
        while let Some(&(parent, frame)) = self.paths.get(p as usize) {
            out.push(frame);
            p = parent;
        }
        out.reverse();
        out
    }

    /// Folded lines, `a;b;c <weight>`. The stream's frame (`pid N`) leads each stack only
    /// when more than one stream was selected.
    pub fn lines(&self) -> Vec<String> {
        let mut line = String::new();
        self.stacks
            .iter()
            .map(|s| {
                self.line_into(&mut line, s);
                line.clone()
            })
            .collect()
    }

    fn line_into(&self, line: &mut String, s: &Stack) {
        let skip = usize::from(self.streams.len() <= 1);
        line.clear();
        for (i, f) in self.frames_of(s.path).into_iter().skip(skip).enumerate() {
            if i > 0 {
                line.push(';');
            }
            line.push_str(self.frames.get(f as usize).map_or("", |i| i.name.as_str()));
        }
        line.push(' ');
        line.push_str(&s.weight.to_string());
    }

    /// Writes [`lines`](Self::lines), one per line, one at a time (a flame chart of millions
    /// of callbacks is gigabytes of text; it is never held whole).
    pub fn write_lines(&self, mut out: impl Write) -> io::Result<()> {
        let mut line = String::new();
        for s in &self.stacks {
            self.line_into(&mut line, s);
            writeln!(out, "{line}")?;
        }
        out.flush()
    }

    /// Sum of the weights.
    pub fn total(&self) -> u64 {
        self.stacks.iter().map(|s| s.weight).sum()
    }
}

/// Reads the trace once and folds it into weighted stacks.
pub fn fold<R: Read>(mut reader: TraceReader<R>, opts: &FoldOptions) -> Result<Folded, ExportError> {
    let mut f = Folder {
        opts: opts.clone(),
        paths: Vec::new(),
        depths: Vec::new(),
        ellipsis: None,
        path_ids: FxMap::default(),
        weights: Vec::new(),
        timeline: Vec::new(),
        streams: Vec::new(),
        cpu: matches!(opts.weight, Weight::Cpu | Weight::Sync)
            .then(|| cpu_fold::CpuFold::new(reader.meta().start_ns, reader.meta().clock_tick_ns)),
        promise_type: None,
    };
    let mut input = Input::default();
    let truncated = pump(&mut reader, &opts.filter, &mut input, &mut f)?;
    // Callbacks still running when their stream ended: process.exit inside a callback, or,
    // where the agent dropped events, callbacks whose `after` was lost. Only in the first
    // case is the time up to the stream's end known to be theirs.
    let mut unended = 0;
    for stream in 0..f.streams.len() {
        let Some(mut st) = f.streams[stream].take() else {
            continue;
        };
        let slot = input.slot(stream as StreamId);
        let end = slot.map_or(input.last_ns, |s| s.last_ns);
        if slot.is_some_and(|s| s.dropped > 0) {
            st.unended += st.open.len() as u64;
            st.open.clear();
        }
        while !st.open.is_empty() {
            f.close_top(&mut st, stream as StreamId, end);
        }
        unended += st.unended;
    }
    // Callbacks still waiting for samples: none will come now.
    f.release_all(&mut input);
    let unit = |ns: u64| match opts.weight {
        Weight::Count => ns,
        Weight::Sync | Weight::Async | Weight::Cpu => (ns + 500) / 1000,
    };
    let stream_of = |p: PathId| {
        let root = f.root_of(p);
        input
            .streams
            .iter()
            .position(|s| s.root == root && s.selected)
            .unwrap_or(0) as StreamId
    };
    let mut stacks: Vec<Stack> = if opts.time_order {
        let mut t = std::mem::take(&mut f.timeline);
        t.sort_by_key(|e| e.time);
        t.into_iter()
            .map(|e| Stack {
                stream: e.stream,
                path: e.path,
                weight: unit(e.weight),
            })
            .filter(|s| s.weight > 0)
            .collect()
    } else {
        f.weights
            .iter()
            .enumerate()
            .filter(|(_, &w)| unit(w) > 0)
            .map(|(p, &w)| Stack {
                stream: stream_of(p as PathId),
                path: p as PathId,
                weight: unit(w),
            })
            .collect()
    };
    let mut folded = Folded {
        weight: opts.weight,
        frames: input.frames.list,
        paths: f.paths,
        stacks: Vec::new(),
        streams: input
            .streams
            .iter()
            .filter(|s| s.selected)
            .map(|s| s.info.clone())
            .collect(),
        events: input.events,
        unended,
        truncated,
    };
    if !opts.time_order {
        // Deterministic: by the folded text (what inferno sorts by, too).
        let mut keyed: Vec<(String, Stack)> = Vec::with_capacity(stacks.len());
        folded.stacks = std::mem::take(&mut stacks);
        for (line, s) in folded.lines().into_iter().zip(folded.stacks.iter()) {
            keyed.push((line, *s));
        }
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        stacks = keyed.into_iter().map(|(_, s)| s).collect();
    }
    folded.stacks = stacks;
    Ok(folded)
}

struct Res {
    path: PathId,
    /// Start of the current wait, or NO_TIME during a callback.
    wait_from: u64,
    /// For the async weight's wait model (`analysis::waits`): trigger, PROMISE or not, who
    /// settled it, where its latest wait began, callbacks so far.
    trigger: u64,
    promise: bool,
    resolved_by: u64,
    resolved_at: u64,
    last_wait_from: u64,
    callbacks: u32,
}

struct Open {
    id: u64,
    path: PathId,
    start: u64,
    /// Windowed time of callbacks nested in this one.
    nested: u64,
}

struct StreamState {
    live: FxMap<u64, Res>,
    open: Vec<Open>,
    /// Callbacks given up as having no recorded end.
    unended: u64,
    root: PathId,
    no_init: PathId,
}

struct Stretch {
    time: u64,
    stream: StreamId,
    path: PathId,
    weight: u64,
}

struct Folder {
    opts: FoldOptions,
    paths: Vec<(PathId, FrameId)>,
    /// Per path: its frames, the stream's own included.
    depths: Vec<u32>,
    /// The `...` frame, once a path needed it.
    ellipsis: Option<FrameId>,
    path_ids: FxMap<(PathId, FrameId), PathId>,
    /// Per path, in ns (count: resources).
    weights: Vec<u64>,
    timeline: Vec<Stretch>,
    streams: Vec<Option<StreamState>>,
    /// With [`Weight::Cpu`]: the samples and the recent callbacks they may fall in.
    cpu: Option<cpu_fold::CpuFold>,
    promise_type: Option<StringId>,
}

impl Folder {
    /// The path of `frame` under `parent` (see the module docs for loops and depth).
    #[inline]
    fn path(&mut self, frames: &mut Frames, parent: PathId, frame: FrameId) -> PathId {
        if let Some(&id) = self.path_ids.get(&(parent, frame)) {
            return id;
        }
        let id = self.new_path(frames, parent, frame);
        // Why cache folded results too: the ancestor walk then runs once per distinct
        // (parent, frame), not once per resource.
        self.path_ids.insert((parent, frame), id);
        id
    }

    fn new_path(&mut self, frames: &mut Frames, parent: PathId, frame: FrameId) -> PathId {
        // A loop: the frame already on the path (below the stream's own frame).
        let mut p = parent;
        while let Some(&(up, f)) = self.paths.get(p as usize) {
            if up == NO_PATH {
                break;
            }
            if f == frame {
                return p;
            }
            p = up;
        }
        let depth = self.depths.get(parent as usize).map_or(1, |d| d + 1) as usize;
        if depth >= MAX_DEPTH {
            let ellipsis = *self.ellipsis.get_or_insert_with(|| frames.named(ELLIPSIS));
            if frame != ellipsis && depth != MAX_DEPTH + 1 {
                let cut = if depth == MAX_DEPTH {
                    self.path(frames, parent, ellipsis)
                } else {
                    // `parent` is the last frame under the `...`: this frame replaces it.
                    self.paths.get(parent as usize).map_or(parent, |&(up, _)| up)
                };
                return self.path(frames, cut, frame);
            }
        }
        let id = self.paths.len() as PathId;
        self.paths.push((parent, frame));
        self.depths.push(depth as u32);
        self.weights.push(0);
        id
    }

    fn root_of(&self, mut p: PathId) -> FrameId {
        while let Some(&(parent, frame)) = self.paths.get(p as usize) {
            if parent == NO_PATH {
                return frame;
            }
            p = parent;
        }
        FrameId::MAX
    }

    #[inline]
    fn add(&mut self, stream: StreamId, path: PathId, weight: u64, time: u64) {
        if weight == 0 {
            return;
        }
        if self.opts.time_order {
            match self.timeline.last_mut() {
                Some(last) if last.stream == stream && last.path == path => last.weight += weight,
                _ => self.timeline.push(Stretch {
                    time,
                    stream,
                    path,
                    weight,
                }),
            }
        } else if let Some(w) = self.weights.get_mut(path as usize) {
            *w += weight;
        }
    }

    fn close_top(&mut self, st: &mut StreamState, stream: StreamId, t: u64) {
        let Some(o) = st.open.pop() else { return };
        let dur = self.opts.filter.clip(o.start, t);
        if let Some(parent) = st.open.last_mut() {
            parent.nested += dur;
        }
        if self.opts.weight == Weight::Sync {
            self.add_sync(stream, o.id, o.path, dur.saturating_sub(o.nested), o.start, t);
        }
        if let Some(r) = st.live.get_mut(&o.id) {
            r.wait_from = t;
        }
    }

    #[inline]
    fn event(&mut self, input: &mut Input, st: &mut StreamState, stream: StreamId, ev: &Event) {
        if self.cpu.is_some() {
            self.cpu_event(input, st, stream, ev);
        }
        let t = ev.time_ns;
        match ev.kind {
            EventKind::Init {
                type_name,
                trigger,
                stack,
                ..
            } => {
                let frame = input.frames.resource(&input.strings, type_name, stack);
                let parent = st.live.get(&trigger).map_or(st.root, |r| r.path);
                let path = self.path(&mut input.frames, parent, frame);
                if self.promise_type.is_none() && input.strings.get(type_name as usize).is_some_and(|s| s == "PROMISE")
                {
                    self.promise_type = Some(type_name);
                }
                st.live.insert(
                    ev.id,
                    Res {
                        path,
                        wait_from: t,
                        trigger,
                        promise: Some(type_name) == self.promise_type,
                        resolved_by: 0,
                        resolved_at: NO_TIME,
                        last_wait_from: t,
                        callbacks: 0,
                    },
                );
                if self.opts.weight == Weight::Count && self.opts.filter.contains(t) {
                    self.add(stream, path, 1, t);
                }
            }
            EventKind::Before => {
                let r = st.live.entry(ev.id).or_insert(Res {
                    path: st.no_init,
                    wait_from: NO_TIME,
                    trigger: 0,
                    promise: false,
                    resolved_by: 0,
                    resolved_at: NO_TIME,
                    last_wait_from: t,
                    callbacks: 0,
                });
                let (path, from) = (r.path, std::mem::replace(&mut r.wait_from, NO_TIME));
                r.callbacks += 1;
                if from != NO_TIME {
                    r.last_wait_from = from;
                }
                let (promise, trigger) = (r.promise, r.trigger);
                if self.opts.weight == Weight::Async
                    && from != NO_TIME
                    && !(promise && explained(st, trigger, ev.id, from))
                {
                    let w = self.opts.filter.clip(from, t);
                    self.add(stream, path, w, from);
                }
                if st.open.len() >= MAX_OPEN {
                    // The oldest never ended; its time is unknown, so it weighs nothing.
                    st.open.remove(0);
                    st.unended += 1;
                }
                st.open.push(Open {
                    id: ev.id,
                    path,
                    start: t,
                    nested: 0,
                });
            }
            EventKind::After => {
                // Why search: an `after` whose `before` was dropped must not close another.
                if let Some(pos) = st.open.iter().rposition(|o| o.id == ev.id) {
                    while st.open.len() > pos {
                        self.close_top(st, stream, t);
                    }
                }
            }
            EventKind::Destroy => {
                st.live.remove(&ev.id);
            }
            EventKind::PromiseResolve { by } => {
                if let Some(r) = st.live.get_mut(&ev.id).filter(|r| r.resolved_at == NO_TIME) {
                    r.resolved_by = by;
                    r.resolved_at = t;
                }
            }
            EventKind::Label { .. } | EventKind::Note { .. } => {}
        }
    }
}

/// A promise reaction's wait lies inside another one (see `analysis::waits`): counted once,
/// at the deepest resource of the chain.
fn explained(st: &StreamState, awaited: u64, own: u64, from: u64) -> bool {
    let Some(p) = st.live.get(&awaited).filter(|p| p.promise) else {
        return false;
    };
    let (by, at) = (p.resolved_by, (p.resolved_at != NO_TIME).then_some(p.resolved_at));
    if by < crate::analysis::FIRST_RESOURCE_ID || by == own {
        return false;
    }
    st.live
        .get(&by)
        .is_some_and(|r| settled_wait_explained(at, r.promise, r.callbacks, r.last_wait_from, from))
}

impl Handler for Folder {
    fn events(&mut self, input: &mut Input, stream: StreamId, events: &[Event]) -> Result<(), ExportError> {
        let Some(mut st) = self.streams.get_mut(stream as usize).and_then(Option::take) else {
            return Ok(());
        };
        for ev in events {
            self.event(input, &mut st, stream, ev);
        }
        self.streams[stream as usize] = Some(st);
        Ok(())
    }

    fn stream_start(&mut self, input: &mut Input, stream: StreamId) -> Result<(), ExportError> {
        let Some(root_frame) = input.slot(stream).map(|s| s.root) else {
            return Ok(());
        };
        let root = self.path(&mut input.frames, NO_PATH, root_frame);
        let no_init_frame = input.frames.named("(no init)");
        let no_init = self.path(&mut input.frames, root, no_init_frame);
        let i = stream as usize;
        if self.streams.len() <= i {
            self.streams.resize_with(i + 1, || None);
        }
        self.streams[i] = Some(StreamState {
            live: FxMap::default(),
            open: Vec::new(),
            unended: 0,
            root,
            no_init,
        });
        Ok(())
    }
}
