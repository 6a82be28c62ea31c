//! CPU samples: which code ran inside which callback.
//!
//! The agent samples each thread with V8's profiler and writes the samples in chunks, after
//! the fact (see `trace::notes::CPU_*`): a sample arrives later in the stream than the
//! callback it fell in. [`Cpu`] decodes the notes into [`Sample`]s on the trace's time base,
//! and [`Windows`] keeps the callbacks of each stream whose samples may still come (those
//! that ended after the last chunk's end, a second or so of callbacks), so a sample finds
//! the innermost callback running at its time. Memory: the call-tree nodes (distinct stacks)
//! plus the callbacks of one chunk period per stream.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::context::Context;
use super::lifecycle::FxMap;
use crate::trace::{notes, Event, EventKind, StreamId, StringId};

/// One CPU sample: the top of the stack at `time_ns` (since the trace start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub stream: StreamId,
    pub time_ns: u64,
    /// `time_ns` as the callbacks' times would say it: they come from a clock word the agent
    /// refreshes every tick, so a recorded time stands for anywhere in the tick after it. Half
    /// a tick earlier is where a sample compares best with them.
    pub event_clock_ns: u64,
    /// Call-tree node of the stream (see [`Cpu::frame`], [`Cpu::parent`]).
    pub node: u32,
}

/// What a CPU note did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuStep {
    /// Not a CPU note.
    None,
    Sample(Sample),
    /// Every sample up to `time_ns` on `stream` has been seen.
    ChunkEnd {
        stream: StreamId,
        time_ns: u64,
    },
    /// A note the tracker took in (a call-tree node, line ticks, a chunk's start).
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    parent: u32,
    frame: StringId,
}

#[derive(Debug, Default)]
struct StreamCpu {
    /// Indexed by node id (0: the root, unused).
    nodes: Vec<Option<Node>>,
    /// Time of the last sample of the current chunk, µs on CLOCK_MONOTONIC.
    at_us: u64,
    interval_us: u64,
}

/// Decodes the CPU notes of every stream.
#[derive(Debug, Default)]
pub struct Cpu {
    streams: Vec<StreamCpu>,
    /// (stream, node) -> line -> ticks.
    lines: FxMap<(StreamId, u32), FxMap<u32, u64>>,
    pub samples: u64,
    /// Samples the agent left out (the thread idle, or no room in the ring).
    pub idle: u64,
    /// Largest sampling interval seen, µs.
    pub interval_us: u64,
}

impl Cpu {
    /// Takes in `ev` if it is a CPU note.
    pub fn apply(&mut self, cx: &Context, ev: &Event) -> CpuStep {
        self.apply_at(cx.meta.start_ns, cx.meta.clock_tick_ns, ev)
    }

    /// [`Self::apply`] for readers without a [`Context`]: the trace's start and clock tick.
    pub fn apply_at(&mut self, start_ns: u64, tick_ns: u64, ev: &Event) -> CpuStep {
        let EventKind::Note { code, a, b, text } = ev.kind else {
            return CpuStep::None;
        };
        if !(notes::CPU_FRAME..=notes::CPU_CHUNK_END).contains(&code) || code == notes::UNSEEN_TYPE {
            return CpuStep::None;
        }
        let i = ev.stream as usize;
        if self.streams.len() <= i {
            self.streams.resize_with(i + 1, StreamCpu::default);
        }
        let s = &mut self.streams[i];
        match code {
            notes::CPU_FRAME => {
                let (Some(frame), Ok(id)) = (text, usize::try_from(a)) else {
                    return CpuStep::Other;
                };
                // Node ids count up from 1 per thread; a wild id is ignored, not allocated.
                if id == 0 || id > s.nodes.len() + 1_000_000 {
                    return CpuStep::Other;
                }
                if s.nodes.len() <= id {
                    s.nodes.resize(id + 1, None);
                }
                s.nodes[id] = Some(Node {
                    parent: u32::try_from(b).unwrap_or(0),
                    frame,
                });
                CpuStep::Other
            }
            notes::CPU_CHUNK => {
                s.at_us = a;
                s.interval_us = b;
                self.interval_us = self.interval_us.max(b);
                CpuStep::Other
            }
            notes::CPU_SAMPLE => {
                s.at_us = s.at_us.saturating_add(b);
                self.samples += 1;
                let time_ns = us_to_trace(start_ns, s.at_us);
                CpuStep::Sample(Sample {
                    stream: ev.stream,
                    time_ns,
                    event_clock_ns: time_ns.saturating_sub(tick_ns / 2),
                    node: u32::try_from(a).unwrap_or(0),
                })
            }
            notes::CPU_LINES => {
                let node = u32::try_from(a).unwrap_or(0);
                let (line, ticks) = ((b >> 20) as u32, b & 0xf_ffff);
                *self
                    .lines
                    .entry((ev.stream, node))
                    .or_default()
                    .entry(line)
                    .or_default() += ticks;
                CpuStep::Other
            }
            notes::CPU_CHUNK_END => {
                self.idle += b;
                CpuStep::ChunkEnd {
                    stream: ev.stream,
                    time_ns: us_to_trace(start_ns, a),
                }
            }
            _ => CpuStep::Other,
        }
    }

    /// The frame of a node: `function\tfile:line:col`, or a bare name.
    pub fn frame<'c>(&self, cx: &'c Context, stream: StreamId, node: u32) -> Option<&'c str> {
        let n = self.node(stream, node)?;
        Some(cx.string(n.frame))
    }

    pub fn frame_id(&self, stream: StreamId, node: u32) -> Option<StringId> {
        self.node(stream, node).map(|n| n.frame)
    }

    /// The caller's node (0: none).
    pub fn parent(&self, stream: StreamId, node: u32) -> u32 {
        self.node(stream, node).map_or(0, |n| n.parent)
    }

    fn node(&self, stream: StreamId, node: u32) -> Option<Node> {
        *self.streams.get(stream as usize)?.nodes.get(node as usize)?
    }

    /// The stack of a node, innermost first (bounded, in case of a cycle in a bad trace).
    pub fn stack(&self, stream: StreamId, node: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut n = node;
        while n != 0 && out.len() < 512 {
            out.push(n);
            n = self.parent(stream, n);
        }
        out
    }

    /// The line of a user-code node that had most ticks, and its share of them.
    pub fn hottest_line(&self, stream: StreamId, node: u32) -> Option<(u32, f64)> {
        let lines = self.lines.get(&(stream, node))?;
        let total: u64 = lines.values().sum();
        let (&line, &ticks) = lines.iter().max_by_key(|(l, t)| (**t, std::cmp::Reverse(**l)))?;
        (total > 0).then(|| (line, ticks as f64 / total as f64))
    }

    /// The sampling interval of a stream, µs (0: no samples).
    pub fn stream_interval_us(&self, stream: StreamId) -> u64 {
        self.streams.get(stream as usize).map_or(0, |s| s.interval_us)
    }
}

fn us_to_trace(start_ns: u64, us: u64) -> u64 {
    us.saturating_mul(1000).saturating_sub(start_ns)
}

/// App code: a frame with a file that is not Node's own nor a dependency's.
pub fn is_user(frame: &str) -> bool {
    match frame.split_once('\t') {
        Some((_, loc)) => !loc.starts_with("node:") && !loc.starts_with("internal/") && !loc.contains("node_modules/"),
        None => false,
    }
}

/// A frame without its column: `fn file:line`.
pub fn short_frame(frame: &str) -> String {
    match frame.split_once('\t') {
        Some((f, loc)) => {
            let loc = match loc.rsplit_once(':') {
                Some((fl, col)) if col.bytes().all(|b| b.is_ascii_digit()) => fl,
                _ => loc,
            };
            format!("{f} {loc}")
        }
        None => frame.to_owned(),
    }
}

/// How long after a callback its samples may still come (the agent's chunk period is 1 s).
const MAX_LATE_NS: u64 = 5_000_000_000;
/// Callback windows kept per thread at most, whatever the callback rate (32 MiB).
const MAX_WINDOWS: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ns: u64,
    /// `None` while the callback runs.
    end_ns: Option<u64>,
    id: u64,
    token: u64,
}

/// The recent callbacks of each stream, for finding the one a sample fell in. See the module
/// docs.
#[derive(Debug, Default)]
pub struct Windows {
    streams: Vec<VecDeque<Window>>,
}

impl Windows {
    fn of(&mut self, stream: StreamId) -> &mut VecDeque<Window> {
        let i = stream as usize;
        if self.streams.len() <= i {
            self.streams.resize_with(i + 1, VecDeque::new);
        }
        &mut self.streams[i]
    }

    /// A callback of resource `id` started; `token` is the caller's.
    pub fn open(&mut self, stream: StreamId, id: u64, start_ns: u64, token: u64) {
        let q = self.of(stream);
        // The agent writes a chunk at the first callback end a second after the last one, so
        // a callback that ended seconds before this one has all its samples (or none come).
        // A window still open seconds after it started, while another callback starts now,
        // lost its `after` (dropped records, or a live view that skipped events): it would
        // keep every later window, so it goes too (its samples, if any come, go unattributed).
        while let Some(w) = q.front() {
            let done = match w.end_ns {
                Some(e) => e + MAX_LATE_NS < start_ns,
                None => w.start_ns + MAX_LATE_NS < start_ns,
            };
            if !done {
                break;
            }
            q.pop_front();
        }
        if q.len() >= MAX_WINDOWS {
            q.pop_front();
        }
        q.push_back(Window {
            start_ns,
            end_ns: None,
            id,
            token,
        });
    }

    /// The running callback of `id` ended; `token` replaces its token (what the caller
    /// learned at its end). Returns false when no callback of `id` was running.
    pub fn close(&mut self, stream: StreamId, id: u64, end_ns: u64, token: u64) -> bool {
        let q = self.of(stream);
        match q.iter_mut().rev().find(|w| w.id == id && w.end_ns.is_none()) {
            Some(w) => {
                w.end_ns = Some(end_ns);
                w.token = token;
                true
            }
            None => false,
        }
    }

    /// The running callback of `id` ended, keeping its token.
    pub fn end(&mut self, stream: StreamId, id: u64, end_ns: u64) {
        if let Some(w) = self
            .of(stream)
            .iter_mut()
            .rev()
            .find(|w| w.id == id && w.end_ns.is_none())
        {
            w.end_ns = Some(end_ns);
        }
    }

    /// The token of the innermost callback running at `time_ns`.
    pub fn find(&mut self, stream: StreamId, time_ns: u64) -> Option<u64> {
        let q = self.of(stream);
        let upto = q.partition_point(|w| w.start_ns <= time_ns);
        // Callbacks nest only a few deep: a sample between callbacks stops the walk soon.
        q.range(..upto)
            .rev()
            .take(64)
            .find(|w| w.end_ns.is_none_or(|e| e >= time_ns))
            .map(|w| w.token)
    }

    /// Every sample up to `time_ns` has been seen: forget the callbacks that ended before.
    pub fn prune(&mut self, stream: StreamId, time_ns: u64) {
        let q = self.of(stream);
        while q.front().is_some_and(|w| w.end_ns.is_some_and(|e| e < time_ns)) {
            q.pop_front();
        }
        // An early callback that never ended (a lost `after`) must not pin the rest.
        if q.len() > 1 << 20 {
            q.retain(|w| w.end_ns.is_none_or(|e| e >= time_ns));
        }
    }

    /// The stream ended: no sample can come for it any more.
    pub fn clear(&mut self, stream: StreamId) {
        self.of(stream).clear();
    }
}

/// The samples of one callback (or request): counts per top-of-stack node.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    pub stream: StreamId,
    pub samples: u64,
    pub leaves: HashMap<u32, u64>,
}

impl Profile {
    pub fn add(&mut self, s: &Sample) {
        self.stream = s.stream;
        self.samples += 1;
        *self.leaves.entry(s.node).or_default() += 1;
    }
}

/// One function by self time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FunctionTime {
    /// `function file:line` (the function's definition), or a bare name.
    pub function: String,
    /// The nearest app frame that called it, when the function is not the app's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub samples: u64,
    pub percent: f64,
    pub ms: f64,
}

/// Where the CPU time of a callback (or request) went.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuSummary {
    pub samples: u64,
    pub interval_us: u64,
    /// By self time, most first.
    pub functions: Vec<FunctionTime>,
    /// The app line that ran most: `function file:line` (the line where the time went when
    /// V8 knows it, else the function's start), with its share of the samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hottest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hottest_percent: Option<f64>,
}

/// Sums `profile` by function, with the app frame each was called from; the `limit` most.
pub fn summarize(cpu: &Cpu, cx: &Context, profile: &Profile, limit: usize) -> Option<CpuSummary> {
    if profile.samples == 0 {
        return None;
    }
    let stream = profile.stream;
    let interval_us = cpu.stream_interval_us(stream).max(1);
    let mut by_fn: HashMap<(String, Option<String>), u64> = HashMap::new();
    let mut by_user: HashMap<u32, u64> = HashMap::new();
    for (&leaf, &n) in &profile.leaves {
        let Some(frame) = cpu.frame(cx, stream, leaf) else {
            continue;
        };
        let user = cpu
            .stack(stream, leaf)
            .into_iter()
            .find(|&k| cpu.frame(cx, stream, k).is_some_and(is_user));
        let via = match user {
            Some(u) if u != leaf => cpu.frame(cx, stream, u).map(short_frame),
            _ => None,
        };
        if let Some(u) = user {
            *by_user.entry(u).or_default() += n;
        }
        *by_fn.entry((short_frame(frame), via)).or_default() += n;
    }
    let total = profile.samples as f64;
    let pct = |n: u64| (n as f64 * 1000.0 / total).round() / 10.0;
    let mut functions: Vec<FunctionTime> = by_fn
        .into_iter()
        .map(|((function, via), samples)| FunctionTime {
            function,
            via,
            samples,
            percent: pct(samples),
            ms: super::ms(samples * interval_us * 1000),
        })
        .collect();
    functions.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.function.cmp(&b.function)));
    functions.truncate(limit);
    // The hottest app line: group the app frames by function, then take that function's
    // line with most ticks (V8 counts lines where the function itself was on top).
    let mut hottest = None;
    let mut by_user_fn: HashMap<String, (u64, Vec<u32>)> = HashMap::new();
    for (node, n) in by_user {
        if let Some(f) = cpu.frame(cx, stream, node) {
            let e = by_user_fn.entry(f.to_owned()).or_default();
            e.0 += n;
            e.1.push(node);
        }
    }
    if let Some((frame, (n, nodes))) = by_user_fn
        .into_iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then_with(|| b.0.cmp(&a.0)))
    {
        let line = nodes
            .iter()
            .filter_map(|&k| cpu.hottest_line(stream, k))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(l, _)| l);
        let (name, loc) = frame.split_once('\t').unwrap_or(("", &frame));
        let file = loc.split(':').next().unwrap_or(loc);
        let def_line = loc.split(':').nth(1).unwrap_or("");
        // A line before the function's start is code V8 inlined into it: the line is right,
        // the function is another one.
        let text = match line {
            Some(l) if def_line.parse::<u32>().is_ok_and(|d| l < d) => format!("{file}:{l} (inlined into {name})"),
            Some(l) => format!("{name} {file}:{l}"),
            None => format!("{name} {file}:{def_line}"),
        };
        hottest = Some((text, pct(n)));
    }
    Some(CpuSummary {
        samples: profile.samples,
        interval_us,
        functions,
        hottest_percent: hottest.as_ref().map(|h| h.1),
        hottest: hottest.map(|h| h.0),
    })
}

/// The lines of `slow` and `requests` under a callback: its hottest app line, then the
/// functions by self time.
pub fn write_summary_text(out: &mut impl std::io::Write, c: &CpuSummary, indent: &str) -> std::io::Result<()> {
    if let (Some(h), Some(p)) = (&c.hottest, c.hottest_percent) {
        writeln!(out, "{indent}hottest app code: {h} ({p:.0}% of {} samples)", c.samples)?;
    }
    for f in &c.functions {
        write!(out, "{indent}  {:>5.1}%  {}", f.percent, f.function)?;
        if let Some(v) = &f.via {
            write!(out, "  <- {v}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// CPU samples grouped by a caller's token (a request, say): the callbacks it opens with
/// [`CpuByToken::before`] and ends with [`CpuByToken::after`] collect the samples that fall in
/// them (samples come after their callbacks; see the module docs). Memory: one small profile
/// per token that got samples.
#[derive(Debug, Default)]
pub struct CpuByToken {
    cpu: Cpu,
    windows: Windows,
    profiles: FxMap<u64, Profile>,
}

impl CpuByToken {
    /// Takes in a CPU note; false when `ev` is something else.
    pub fn note(&mut self, cx: &Context, ev: &Event) -> bool {
        if !matches!(ev.kind, EventKind::Note { .. }) {
            return false;
        }
        match self.cpu.apply(cx, ev) {
            CpuStep::None => false,
            CpuStep::Sample(s) => {
                if let Some(t) = self.windows.find(s.stream, s.event_clock_ns) {
                    self.profiles.entry(t).or_default().add(&s);
                }
                true
            }
            CpuStep::ChunkEnd { stream, time_ns } => {
                self.windows.prune(stream, time_ns);
                true
            }
            CpuStep::Other => true,
        }
    }

    /// A callback of `token` started.
    pub fn before(&mut self, stream: StreamId, id: u64, time_ns: u64, token: u64) {
        self.windows.open(stream, id, time_ns, token);
    }

    /// The callback of `id` that [`Self::before`] opened ended; `token`, when given, replaces
    /// the one it started with.
    pub fn after(&mut self, stream: StreamId, id: u64, time_ns: u64, token: Option<u64>) {
        match token {
            Some(t) => {
                self.windows.close(stream, id, time_ns, t);
            }
            None => self.windows.end(stream, id, time_ns),
        }
    }

    /// Where the CPU time of `token` went: the `limit` top functions by self time.
    pub fn summary(&self, cx: &Context, token: u64, limit: usize) -> Option<CpuSummary> {
        summarize(&self.cpu, cx, self.profiles.get(&token)?, limit)
    }

    /// A token for `(stream, id, ns)`, e.g. a request's resource and start.
    pub fn token(stream: StreamId, id: u64, ns: u64) -> u64 {
        use std::hash::Hasher;
        let mut h = super::lifecycle::FxHasher::default();
        h.write_u32(stream);
        h.write_u64(id);
        h.write_u64(ns);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(stream: StreamId, code: u32, a: u64, b: u64, text: Option<StringId>) -> Event {
        Event {
            stream,
            time_ns: 0,
            id: 0,
            kind: EventKind::Note { code, a, b, text },
        }
    }

    #[test]
    fn samples_land_in_the_innermost_callback_running_at_their_time() {
        let mut w = Windows::default();
        w.open(0, 10, 1_000, 0);
        w.open(0, 11, 1_500, 0); // nested in 10
        w.close(0, 11, 2_000, 11);
        w.close(0, 10, 3_000, 10);
        w.open(0, 12, 5_000, 12);
        assert_eq!(w.find(0, 1_200), Some(10));
        assert_eq!(w.find(0, 1_700), Some(11));
        assert_eq!(w.find(0, 2_500), Some(10));
        assert_eq!(w.find(0, 4_000), None, "between callbacks");
        assert_eq!(w.find(0, 9_000), Some(12), "still running");
        assert_eq!(w.find(1, 1_200), None, "another thread");
        w.prune(0, 3_500);
        assert_eq!(w.find(0, 2_500), None, "ended before the chunk's end: forgotten");
        assert_eq!(w.find(0, 9_000), Some(12));
    }

    #[test]
    fn notes_decode_into_samples_on_the_trace_clock() {
        let mut cpu = Cpu::default();
        let start_ns = 5_000_000;
        // A chunk from 6 ms (CLOCK_MONOTONIC µs), two nodes, two samples 1 ms apart.
        assert_eq!(
            cpu.apply_at(start_ns, 100_000, &note(0, notes::CPU_CHUNK, 6_000, 1_000, None)),
            CpuStep::Other
        );
        cpu.apply_at(start_ns, 100_000, &note(0, notes::CPU_FRAME, 1, 0, Some(7)));
        cpu.apply_at(start_ns, 100_000, &note(0, notes::CPU_FRAME, 2, 1, Some(8)));
        let s1 = cpu.apply_at(start_ns, 100_000, &note(0, notes::CPU_SAMPLE, 2, 500, None));
        let s2 = cpu.apply_at(start_ns, 100_000, &note(0, notes::CPU_SAMPLE, 1, 1_000, None));
        let CpuStep::Sample(s1) = s1 else { panic!("{s1:?}") };
        let CpuStep::Sample(s2) = s2 else { panic!("{s2:?}") };
        assert_eq!((s1.node, s1.time_ns, s1.event_clock_ns), (2, 1_500_000, 1_450_000));
        assert_eq!((s2.node, s2.time_ns), (1, 2_500_000));
        assert_eq!(cpu.stack(0, 2), vec![2, 1]);
        assert_eq!(cpu.frame_id(0, 2), Some(8));
        assert_eq!(cpu.stream_interval_us(0), 1_000);
        let end = cpu.apply_at(start_ns, 100_000, &note(0, notes::CPU_CHUNK_END, 8_000, 3, None));
        assert_eq!(
            end,
            CpuStep::ChunkEnd {
                stream: 0,
                time_ns: 3_000_000
            }
        );
        assert_eq!((cpu.samples, cpu.idle), (2, 3));
        // Not a CPU note, and a wild node id: ignored.
        assert_eq!(
            cpu.apply_at(start_ns, 100_000, &note(0, notes::UNSEEN_TYPE, 1, 0, Some(9))),
            CpuStep::None
        );
        cpu.apply_at(start_ns, 100_000, &note(0, notes::CPU_FRAME, u64::MAX, 0, Some(9)));
        assert_eq!(cpu.frame_id(0, 3), None);
    }

    #[test]
    fn frames_read_as_app_code_or_not() {
        assert!(is_user("verifyPassword\tlib/auth.js:9:10"));
        assert!(!is_user("pbkdf2Sync\tnode:internal/crypto/pbkdf2:62:1"));
        assert!(!is_user("get\tnode_modules/express/lib/router.js:1:1"));
        assert!(!is_user("(garbage collector)"));
        assert_eq!(short_frame("blur\tlib/blur.js:5:10"), "blur lib/blur.js:5");
        assert_eq!(short_frame("(program)"), "(program)");
    }

    #[test]
    fn a_callback_whose_end_was_lost_does_not_keep_every_later_window() {
        let mut w = Windows::default();
        w.open(0, 10, 0, 0); // its after never comes
        let ms = 1_000_000;
        for i in 0..20_000u64 {
            w.open(0, 100 + i, i * ms, 0);
            w.close(0, 100 + i, i * ms + 10, 0);
        }
        // About the last 5 s of windows, not all 20 s.
        let kept = w.streams[0].len();
        assert!((5_000..=5_100).contains(&kept), "{kept}");
        assert!(w.streams[0].iter().all(|x| x.id != 10));
    }
}
