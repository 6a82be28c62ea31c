//! The driver of a streaming pass and the trace-wide context it keeps: strings, streams,
//! creation sites.

use std::collections::HashMap;
use std::io::Read;

use super::lifecycle::FxMap;
use super::position::Positions;
use super::strings::{Strings, SITE_NONE, SITE_UNKNOWN};
use crate::trace::{notes, Batch, Event, EventKind, Item, StreamId, StringId, TraceError, TraceMeta, TraceReader};

/// Index of a distinct creation site (`path:line:col`) in [`Context::site_text`].
pub type SiteId = u32;

/// String ids from here on stand for an inferred stack: `ALIAS_BASE + i` reads as the stack
/// `aliases[i]`. A trace's own string ids are dense from 0, far below it.
const ALIAS_BASE: StringId = 0xC000_0000;

/// One analysis over the events of a trace, driven by [`run`].
pub trait Pass {
    /// Every hook event and label, in file order (per stream: the order they happened).
    fn event(&mut self, cx: &mut Context, ev: &Event);
    /// The stream ended (or the trace did) at `end_ns`, the time of its last event. What is
    /// still alive in it is "alive at the end".
    fn stream_end(&mut self, cx: &mut Context, stream: StreamId, end_ns: u64);
}

/// A writer thread, as far as the analyses care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamDesc {
    pub pid: u32,
    /// `worker_threads.threadId`; 0 for the main thread.
    pub thread: u32,
    /// Time of the stream's last event, ns since the trace start.
    pub last_ns: u64,
    /// Events the agent dropped in this stream (known once it ended).
    pub dropped: u64,
    pub ended: bool,
}

/// What every pass may look up: the string table, streams and creation sites.
#[derive(Debug, Default)]
pub struct Context {
    pub meta: TraceMeta,
    /// Indexed by [`StreamId`].
    pub streams: Vec<StreamDesc>,
    /// The input ended without its end marker; the analysis covers the complete prefix.
    pub truncated: bool,
    /// Events dropped by the agents, over all streams.
    pub dropped: u64,
    /// Hook events skipped because the app gave them invalid async ids, over all streams
    /// (the recorder notes them in a stream's metadata).
    pub invalid_ids: u64,
    strings: Strings,
    sites: Vec<String>,
    site_ids: HashMap<String, SiteId>,
    /// Where resources were created in the program's structure, and the sites each position
    /// had (see [`Context::observe`]).
    positions: Positions,
    /// Inferred stacks: the recorded stack each alias stands for.
    aliases: Vec<StringId>,
    alias_of: FxMap<StringId, StringId>,
    /// Inits that took their stack from their position.
    pub inferred_stacks: u64,
}

impl Context {
    pub fn new(meta: TraceMeta) -> Self {
        Context {
            meta,
            ..Default::default()
        }
    }

    /// The text of a string id; `?` for an id the trace never defined (the reader rejects
    /// such traces, but a pass must not panic on one).
    pub fn string(&self, id: StringId) -> &str {
        self.strings.get(self.resolve(id)).unwrap_or("?")
    }

    /// The recorded string an inferred stack stands for; any other id as it is.
    fn resolve(&self, id: StringId) -> StringId {
        if id >= ALIAS_BASE {
            self.aliases.get((id - ALIAS_BASE) as usize).copied().unwrap_or(id)
        } else {
            id
        }
    }

    /// Was this stack inferred from where the resource was created, rather than taken by the
    /// agent?
    pub fn is_inferred(&self, stack: Option<StringId>) -> bool {
        stack.is_some_and(|s| s >= ALIAS_BASE)
    }

    /// Follows the program's structure through one event, before any pass sees it, and
    /// returns the event the passes see: the same, except that an init the agent took no
    /// stack for gets the stack that every resource created at the same structural position
    /// had (marked as inferred, see [`Context::is_inferred`]). The driver [`run`] calls it;
    /// a caller feeding passes itself must too.
    pub fn observe(&mut self, ev: &Event) -> Event {
        self.note_use(ev);
        let Some(pos) = self.positions.observe(ev) else {
            return *ev;
        };
        let EventKind::Init {
            type_name,
            trigger,
            exec,
            stack,
        } = ev.kind
        else {
            return *ev;
        };
        match stack {
            Some(s) => {
                if let Some(site) = self.site(Some(s)) {
                    let len = self.strings.get(s).map_or(0, str::len);
                    self.positions.vote(pos, s, site, len);
                }
                *ev
            }
            None => {
                let Some(found) = self.positions.inferred(pos) else {
                    return *ev;
                };
                self.inferred_stacks += 1;
                let alias = match self.alias_of.get(&found.stack) {
                    Some(&a) => a,
                    None => {
                        let a = ALIAS_BASE.saturating_add(u32::try_from(self.aliases.len()).unwrap_or(u32::MAX));
                        self.aliases.push(found.stack);
                        self.alias_of.insert(found.stack, a);
                        a
                    }
                };
                Event {
                    kind: EventKind::Init {
                        type_name,
                        trigger,
                        exec,
                        stack: Some(alias),
                    },
                    ..*ev
                }
            }
        }
    }

    /// Tells the string table how an event uses its strings, for [`Context::forget_strings`].
    #[inline]
    fn note_use(&mut self, ev: &Event) {
        match ev.kind {
            EventKind::Init { type_name, stack, .. } => {
                self.strings.keep(type_name);
                if let Some(s) = stack {
                    self.strings.keep(s);
                }
            }
            EventKind::Label { text } => self.strings.pass(text),
            EventKind::Note {
                code, text: Some(t), ..
            } => match code {
                notes::REQUEST_START | notes::OUTGOING_START | notes::ALIVE | notes::WARNING => self.strings.pass(t),
                // Frames and type names: later notes refer to them by id.
                _ => self.strings.keep(t),
            },
            _ => {}
        }
    }

    /// Defines a string (the driver does this for every string item).
    pub fn define_string(&mut self, id: StringId, text: String) {
        self.strings.define(id, text);
    }

    /// From now on (call before the first string), forget texts that only a moment used (a
    /// request's label, a note's) once no event can use them again, so that a view over a
    /// long run keeps flat memory; see [`Context::forget_strings`].
    pub fn forgetting_strings(mut self) -> Self {
        self.strings.forget();
        self
    }

    /// Forgets what [`Context::forgetting_strings`] allows, except the strings `held` (a
    /// pass's open requests' labels, asked for only when a sweep is due); cheap to call
    /// after every batch.
    pub fn forget_strings<F: Fn(StringId) -> bool>(&mut self, held: impl FnOnce() -> F) {
        if self.strings.sweep_due() {
            self.strings.sweep(held());
        }
    }

    /// Strings held now (all of the trace's unless forgetting).
    pub fn strings_held(&self) -> usize {
        self.strings.len()
    }

    /// The creation site of a resource with this stack: the location of its first frame.
    pub fn site(&mut self, stack: Option<StringId>) -> Option<SiteId> {
        let stack = self.resolve(stack?);
        let cached = self.strings.site(stack)?;
        match cached {
            SITE_NONE => None,
            SITE_UNKNOWN => {
                let site = site_of_stack(self.string(stack)).map(str::to_owned);
                let id = match site {
                    None => SITE_NONE,
                    Some(text) => self.intern_site(text),
                };
                self.strings.set_site(stack, id);
                (id != SITE_NONE).then_some(id)
            }
            id => Some(id),
        }
    }

    fn intern_site(&mut self, text: String) -> SiteId {
        if let Some(&id) = self.site_ids.get(&text) {
            return id;
        }
        // Why saturate: 4 billion distinct sites cannot happen in a trace that fits a disk;
        // if it did, the last id is shared rather than colliding with the markers.
        let id = u32::try_from(self.sites.len())
            .unwrap_or(SITE_NONE - 1)
            .min(SITE_NONE - 1);
        self.sites.push(text.clone());
        self.site_ids.insert(text, id);
        id
    }

    /// `path:line:col` of a site id.
    pub fn site_text(&self, site: SiteId) -> &str {
        self.sites.get(site as usize).map_or("?", String::as_str)
    }

    /// The site as text, or `None`.
    pub fn site_string(&self, site: Option<SiteId>) -> Option<String> {
        site.map(|s| self.site_text(s).to_owned())
    }

    /// The frames of a stack, formatted for people (`fn (path:line:col)` or `path:line:col`).
    pub fn stack_frames(&self, stack: Option<StringId>) -> Vec<String> {
        match stack {
            None => Vec::new(),
            Some(s) => self
                .string(s)
                .lines()
                .filter(|l| !l.is_empty())
                .map(format_frame)
                .collect(),
        }
    }

    /// pid and thread of a stream (zeros for an unknown stream).
    pub fn stream(&self, stream: StreamId) -> StreamDesc {
        self.streams.get(stream as usize).cloned().unwrap_or_default()
    }

    /// Time of the last event over all streams.
    pub fn end_ns(&self) -> u64 {
        self.streams.iter().map(|s| s.last_ns).max().unwrap_or(0)
    }
}

/// The location of a stack's first frame (`"fn\tpath:line:col\n..."`, innermost first).
pub fn site_of_stack(stack: &str) -> Option<&str> {
    let first = stack.lines().next()?;
    let loc = first.rsplit_once('\t').map_or(first, |(_, loc)| loc).trim();
    (!loc.is_empty()).then_some(loc)
}

/// `"fn\tloc"` as `fn (loc)`, `"\tloc"` as `loc`.
pub fn format_frame(frame: &str) -> String {
    match frame.split_once('\t') {
        Some((f, loc)) if !f.is_empty() => format!("{f} ({loc})"),
        Some((_, loc)) => loc.to_owned(),
        None => frame.to_owned(),
    }
}

/// Reads the whole trace once, feeding `pass`; returns the context (strings, streams, sites)
/// for rendering the pass's report.
pub fn run<R: Read, P: Pass>(reader: &mut TraceReader<R>, pass: &mut P) -> Result<Context, TraceError> {
    let mut cx = Context::new(reader.meta().clone());
    while let Some(batch) = reader.next_batch()? {
        match batch {
            Batch::Events(events) => {
                let Some(first) = events.first() else {
                    continue;
                };
                let stream = first.stream;
                for ev in events {
                    let ev = cx.observe(ev);
                    pass.event(&mut cx, &ev);
                }
                // Why once per batch: a batch is one stream, in time order.
                if let (Some(last), Some(desc)) = (events.last(), cx.streams.get_mut(stream as usize)) {
                    desc.last_ns = desc.last_ns.max(last.time_ns);
                }
            }
            Batch::Item(Item::String { id, text }) => cx.define_string(id, text),
            Batch::Item(Item::StreamStart(info)) => {
                let i = info.stream as usize;
                if cx.streams.len() <= i {
                    cx.streams.resize(i + 1, StreamDesc::default());
                }
                cx.streams[i] = StreamDesc {
                    pid: info.pid,
                    thread: info.thread,
                    ..Default::default()
                };
            }
            Batch::Item(Item::Event(ev)) => {
                let ev = cx.observe(&ev);
                pass.event(&mut cx, &ev);
                if let Some(desc) = cx.streams.get_mut(ev.stream as usize) {
                    desc.last_ns = desc.last_ns.max(ev.time_ns);
                }
            }
            Batch::Item(Item::StreamMeta { json, .. }) => {
                if json.contains("invalid_ids") {
                    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(&json) {
                        cx.invalid_ids += m.get("invalid_ids").and_then(serde_json::Value::as_u64).unwrap_or(0);
                    }
                }
            }
            Batch::Item(Item::StreamEnd(end)) => {
                cx.dropped += end.dropped;
                let Some(desc) = cx.streams.get_mut(end.stream as usize) else {
                    continue;
                };
                desc.dropped = end.dropped;
                desc.ended = true;
                let last = desc.last_ns;
                pass.stream_end(&mut cx, end.stream, last);
            }
        }
    }
    cx.truncated = reader.truncated();
    // Streams the trace never ended (cut off, or still running) end with it.
    for s in 0..cx.streams.len() {
        if !cx.streams[s].ended {
            cx.streams[s].ended = true;
            let last = cx.streams[s].last_ns;
            pass.stream_end(&mut cx, s as StreamId, last);
        }
    }
    Ok(cx)
}
