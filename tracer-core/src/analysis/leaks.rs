//! `leaks`: what was still alive at the end, by leak class (DESIGN.md section 3), type and
//! creation site, plus the sites that kept growing (see [`super::growth`]).
//!
//! What each class holds, decided per resource alive at the end of its stream:
//! - a resource *inside its callback* at the end is what ran `process.exit`: not a leak;
//! - a handle or timer the agent watched, when a complete snapshot of what Node still held was
//!   taken after its creation (at exit, or at a stopping signal; `notes::SNAPSHOT`): open only if
//!   listed there. Not listed, it was closed and only its `destroy` was pending (Node delivers it
//!   later, and `process.exit` skips it): counted as `closed_at_exit`. Listed, the snapshot says
//!   whether it holds the process open (ref'd), the timer's period, the socket's endpoints;
//!   Node's own timers (the Date-header cache, the server's connection check) are not the app's
//!   leaks, and an unref'd one-shot timer holds nothing and runs at most once more;
//! - without such a snapshot (a SIGKILL, an older trace), the trace decides: a timer whose
//!   callback ran and that does not repeat is done;
//! - `PROMISE` without promiseResolve: never-settled promise; with one: settled, not yet
//!   collected (only counted: promise destroy waits for GC);
//! - `Timeout`, `Immediate`: pending timer (also unref'd ones: they leak memory and work even
//!   when they do not hold the process open);
//! - [`HANDLE_TYPES`]: open handle, except stdio (a `PIPEWRAP`/`TTYWRAP` that never ran a
//!   callback is how Node's lazily created `process.stdout`/`stderr` look) and `SIGNALWRAP`
//!   (a signal listener never holds the loop open: Node unrefs it);
//! - anything else (one-shot requests such as `TickObject`, `FSREQCALLBACK`, `Microtask`,
//!   HTTP parser resources, `DNSCHANNEL`, GC-collected `FILEHANDLE`) is work cut short by the
//!   exit or internal state, not a leak: counted per type in `other_alive`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::alive::{AliveGroup, StreamEndInfo, WarningGroup};
use super::context::{Context, Pass, SiteId};
use super::growth::{Growth, GrowthRule};
use super::lifecycle::{ChainLink, FxMap, Key, Lifecycle, Resource, Step};
use crate::trace::{notes, Event, EventKind, StreamId, StringId};

/// Resource types that are handles: alive means something keeps a socket, server, pipe,
/// watcher, process or port open.
pub const HANDLE_TYPES: &[&str] = &[
    "TCPWRAP",
    "TCPSERVERWRAP",
    "PIPEWRAP",
    "PIPESERVERWRAP",
    "TTYWRAP",
    "UDPWRAP",
    "PROCESSWRAP",
    "SIGNALWRAP",
    "FSEVENTWRAP",
    "STATWATCHER",
    "MESSAGEPORT",
    "WORKER",
];

/// A leak class, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeakClass {
    OpenHandle,
    PendingTimer,
    NeverSettledPromise,
    Growth,
}

impl LeakClass {
    pub fn name(self) -> &'static str {
        match self {
            LeakClass::OpenHandle => "open handle",
            LeakClass::PendingTimer => "pending timer",
            LeakClass::NeverSettledPromise => "never-settled promise",
            LeakClass::Growth => "growth",
        }
    }
}

#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LeakOptions {
    /// What counts as growth.
    pub growth: GrowthRule,
}

/// One link of an example's trigger chain.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeakLink {
    pub id: u64,
    /// `null` when the ancestor is no longer known (destroyed long before).
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    pub site: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeakExample {
    pub id: u64,
    pub pid: u32,
    pub thread: u32,
    /// Its trigger chain, its trigger first, up to a root.
    pub chain: Vec<LeakLink>,
}

/// Resources of one class, type and site.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeakGroup {
    pub class: LeakClass,
    #[serde(rename = "type")]
    pub type_name: String,
    pub site: Option<String>,
    /// Alive at the end; for growth, the peak pending count.
    pub count: u64,
    /// Age of the oldest at the end of its stream; for growth, time from the site's first
    /// resource to the end.
    pub oldest_age_ms: f64,
    pub example: LeakExample,
    pub stack: Vec<String>,
    /// From the snapshot at the end: how many of them were ref'd (held the process open).
    /// Absent when no snapshot covers them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refd: Option<u64>,
    /// How many of them had no creation stack (the agent's budget skipped them) and take
    /// their site from siblings: resources created at the same structural position (see
    /// [`Context::observe`]), else leaked resources of the same class and type, created by the
    /// same parent or by parents of the same type and site, whose recorded stacks all name
    /// this one site.
    #[serde(skip_serializing_if = "super::is_zero")]
    pub inferred: u64,
    /// The example timer's period in ms, when it repeats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_ms: Option<u64>,
    /// The example's endpoints (`local -> remote`) or listen address, from the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Growth only: peak pending count in each tenth of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<Vec<u32>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeakReport {
    pub leaks: Vec<LeakGroup>,
    /// What Node still held at the end (from the agent's snapshots), ref'd (holding the
    /// process open) first.
    pub alive_at_end: Vec<AliveGroup>,
    /// How and when each stream ended.
    pub ends: Vec<StreamEndInfo>,
    /// Process warnings the app emitted, by text and site.
    pub warnings: Vec<WarningGroup>,
    /// Handles and timers closed before the end whose `destroy` never arrived (the snapshot
    /// did not list them): not leaks.
    pub closed_at_exit: u64,
    pub settled_not_collected: u64,
    /// Alive at the end but not a leak class (see the module docs), per type.
    pub other_alive: BTreeMap<String, u64>,
    /// Inside their callback when the stream ended (the exit happened there).
    pub running_at_exit: u64,
    pub dropped: u64,
    /// Hook events skipped because the app gave them invalid async ids.
    #[serde(skip_serializing_if = "super::is_zero")]
    pub invalid_ids: u64,
    pub truncated: bool,
}

/// Per resource: its growth series and whether it counts as pending there, and what the
/// agent's notes said of it.
#[derive(Debug, Clone, Copy)]
pub struct LeakData {
    series: u32,
    pending: bool,
    /// Snapshots of its stream completed before its init.
    born_seq: u32,
    /// The snapshot (its sequence number, from 1) that last listed it as open; 0: none.
    alive_seq: u32,
    alive_flags: u8,
    /// Repeat period in ms (0: a one-shot timer, or not a timer).
    period_ms: u32,
    endpoint: Option<StringId>,
    /// Its trigger's type and stack, read at its init (the trigger may be long gone at the
    /// end): who its siblings are when its own stack was not taken.
    parent: Option<(StringId, Option<StringId>)>,
}

impl Default for LeakData {
    fn default() -> Self {
        LeakData {
            series: u32::MAX,
            pending: false,
            born_seq: 0,
            alive_seq: 0,
            alive_flags: 0,
            period_ms: 0,
            endpoint: None,
            parent: None,
        }
    }
}

impl super::alive::AliveData for LeakData {
    fn period_ms(&self) -> u32 {
        self.period_ms
    }
    fn endpoint(&self) -> Option<StringId> {
        self.endpoint
    }
}

/// Per stream: the agent's snapshots so far.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshots {
    /// Snapshots ended (complete or not).
    seq: u32,
    /// The last complete one (0: none).
    complete: u32,
    /// `ALIVE` notes since the last snapshot ended.
    listed: u64,
    /// Why the last complete one was taken (0: exit; else a signal number).
    why: u64,
}

#[derive(Debug)]
struct GroupAcc {
    count: u64,
    oldest_age_ns: u64,
    example: (Key, u64),
    chain: Vec<ChainLink>,
    stack: Option<StringId>,
    samples: Option<Vec<u32>>,
    refd: Option<u64>,
    period_ms: u32,
    endpoint: Option<StringId>,
    inferred: u64,
}

/// The pass.
#[derive(Debug, Default)]
pub struct Leaks {
    opts: LeakOptions,
    life: Lifecycle<LeakData>,
    growth: Growth,
    groups: BTreeMap<(LeakClass, StringId, Option<SiteId>), GroupAcc>,
    settled: u64,
    other: BTreeMap<StringId, u64>,
    running: u64,
    /// Per string id: is it a handle type name / PROMISE / a timer type (lazily filled).
    kinds: Vec<Option<Kind>>,
    /// Indexed by stream.
    snaps: Vec<Snapshots>,
    closed: u64,
    alive: super::alive::AliveAcc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Promise,
    Timer,
    Handle,
    Stdio,
    Signal,
    /// HTTP messages: many callbacks over a life (keep-alive).
    Message,
    Other,
}

/// Links kept per example chain: enough for a long await loop, which the text folds.
const CHAIN_MAX: usize = 64;

/// What the end-of-run snapshot says of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// No complete snapshot covers it: the trace decides.
    Unknown,
    Closed,
    Open {
        refd: bool,
        node: bool,
    },
}

impl Leaks {
    pub fn new(opts: LeakOptions) -> Self {
        Leaks {
            opts,
            ..Default::default()
        }
    }

    fn kind(&mut self, cx: &Context, type_name: StringId) -> Kind {
        kind_of(&mut self.kinds, cx, type_name)
    }

    fn snaps(&mut self, stream: StreamId) -> &mut Snapshots {
        let i = stream as usize;
        if self.snaps.len() <= i {
            self.snaps.resize(i + 1, Snapshots::default());
        }
        &mut self.snaps[i]
    }

    fn verdict(&self, stream: StreamId, res: &Resource<LeakData>) -> Verdict {
        let Some(s) = self.snaps.get(stream as usize) else {
            return Verdict::Unknown;
        };
        if s.complete == 0 || res.data.born_seq >= s.complete {
            return Verdict::Unknown;
        }
        if res.data.alive_seq != s.complete {
            return Verdict::Closed;
        }
        Verdict::Open {
            refd: u64::from(res.data.alive_flags) & notes::ALIVE_REF != 0,
            node: u64::from(res.data.alive_flags) & notes::ALIVE_NODE != 0,
        }
    }

    fn classify(&mut self, cx: &mut Context, key: Key, res: &Resource<LeakData>) -> Option<LeakClass> {
        if res.before_ns().is_some() {
            self.running += 1;
            return None;
        }
        let kind = self.kind(cx, res.type_name);
        let verdict = match kind {
            Kind::Timer | Kind::Handle | Kind::Stdio => self.verdict(key.0, res),
            _ => Verdict::Unknown,
        };
        if verdict == Verdict::Closed {
            self.closed += 1;
            return None;
        }
        let class = match (kind, verdict) {
            (Kind::Promise, _) if res.resolve_ns().is_some() => {
                self.settled += 1;
                return None;
            }
            (Kind::Promise, _) => LeakClass::NeverSettledPromise,
            // Node's own timers, and an unref'd one-shot timer (it holds nothing and runs at
            // most once more): alive, not leaks.
            (Kind::Timer, Verdict::Open { node: true, .. }) => return self.other(res),
            (Kind::Timer, Verdict::Open { refd: false, .. }) if res.data.period_ms == 0 => return self.other(res),
            // Without a snapshot: a timer that ran and does not repeat is done.
            (Kind::Timer, Verdict::Unknown) if res.callbacks > 0 && res.callbacks < 2 && res.data.period_ms == 0 => {
                return self.other(res)
            }
            (Kind::Timer, _) => LeakClass::PendingTimer,
            (Kind::Handle, _) => LeakClass::OpenHandle,
            (Kind::Stdio, Verdict::Open { .. }) if res.callbacks > 0 => LeakClass::OpenHandle,
            (Kind::Stdio, Verdict::Unknown) if res.callbacks > 0 => LeakClass::OpenHandle,
            (Kind::Stdio | Kind::Signal | Kind::Message | Kind::Other, _) => return self.other(res),
        };
        Some(class)
    }

    fn other(&mut self, res: &Resource<LeakData>) -> Option<LeakClass> {
        *self.other.entry(res.type_name).or_default() += 1;
        None
    }

    pub fn finish(self, cx: &mut Context) -> LeakReport {
        let mut leaks: Vec<LeakGroup> = Vec::with_capacity(self.groups.len());
        for ((class, type_name, site), g) in self.groups {
            let s = cx.stream(g.example.0 .0);
            let chain = g
                .chain
                .iter()
                .map(|l| {
                    let site = cx.site(l.stack);
                    LeakLink {
                        id: l.id,
                        type_name: l.type_name.map(|t| cx.string(t).to_owned()),
                        site: cx.site_string(site),
                    }
                })
                .collect();
            leaks.push(LeakGroup {
                class,
                type_name: cx.string(type_name).to_owned(),
                site: cx.site_string(site),
                count: g.count,
                oldest_age_ms: super::ms(g.oldest_age_ns),
                example: LeakExample {
                    id: g.example.0 .1,
                    pid: s.pid,
                    thread: s.thread,
                    chain,
                },
                stack: cx.stack_frames(g.stack),
                samples: g.samples,
                refd: g.refd,
                inferred: g.inferred,
                period_ms: (g.period_ms > 0).then_some(u64::from(g.period_ms)),
                endpoint: g.endpoint.map(|t| cx.string(t).to_owned()),
            });
        }
        // Growth at a site whose resources are reported alive at the end says nothing more.
        let alive_sites: std::collections::HashSet<(String, Option<String>)> = leaks
            .iter()
            .filter(|g| g.class != LeakClass::Growth && g.site.is_some())
            .map(|g| (g.type_name.clone(), g.site.clone()))
            .collect();
        leaks.retain(|g| g.class != LeakClass::Growth || !alive_sites.contains(&(g.type_name.clone(), g.site.clone())));
        // Within a class, what holds the process open first.
        leaks.sort_by(|a, b| {
            a.class
                .cmp(&b.class)
                .then(b.refd.unwrap_or(0).min(1).cmp(&a.refd.unwrap_or(0).min(1)))
                // A group with a site is one a person can act on.
                .then(b.site.is_some().cmp(&a.site.is_some()))
                .then(b.count.cmp(&a.count))
                .then_with(|| a.type_name.cmp(&b.type_name))
                .then_with(|| a.site.cmp(&b.site))
        });
        let other_alive =
            self.other
                .into_iter()
                .map(|(t, n)| (cx.string(t).to_owned(), n))
                .fold(BTreeMap::new(), |mut m, (t, n)| {
                    *m.entry(t).or_default() += n;
                    m
                });
        let (alive_at_end, ends, warnings) = self.alive.finish(cx);
        LeakReport {
            leaks,
            alive_at_end,
            ends,
            warnings,
            closed_at_exit: self.closed,
            settled_not_collected: self.settled,
            other_alive,
            running_at_exit: self.running,
            dropped: cx.dropped,
            invalid_ids: cx.invalid_ids,
            truncated: cx.truncated,
        }
    }
}

/// Sites for leaked handles and timers that have no stack, from their siblings: the leaked
/// resources of the same class and type with the same trigger (a per-connection timer: what one
/// parent fans out at one line), else with a trigger of the same type and site (a socket per
/// request: each request is a different parent of the same kind). Only when every sibling with a
/// stack names the same site: a parent (or kind of parent) that creates such resources at two
/// lines infers nothing.
fn infer_sites(cx: &mut Context, life: &Lifecycle<LeakData>, found: &[(Key, LeakClass)]) -> FxMap<Key, SiteId> {
    // Per sibling key: the one site seen, or None once two differ.
    let mut votes: FxMap<Sibling, Option<SiteId>> = FxMap::default();
    let mut missing = Vec::new();
    for &(key, class) in found {
        // Not promises: one parent creates its promises at many lines (every await), and
        // which of them got a stack is a matter of the budget.
        if class == LeakClass::NeverSettledPromise {
            continue;
        }
        let Some(res) = life.get(key) else { continue };
        if res.trigger < super::FIRST_RESOURCE_ID {
            continue;
        }
        let kinds = sibling_keys(cx, life, key, class, res);
        match cx.site(res.stack()) {
            Some(site) => {
                for k in kinds.into_iter().flatten() {
                    let v = votes.entry(k).or_insert(Some(site));
                    if *v != Some(site) {
                        *v = None;
                    }
                }
            }
            None if res.stack().is_none() => missing.push((key, kinds)),
            None => {}
        }
    }
    let mut out = FxMap::default();
    for (key, kinds) in missing {
        if let Some(site) = kinds
            .into_iter()
            .flatten()
            .find_map(|k| votes.get(&k).copied().flatten())
        {
            out.insert(key, site);
        }
    }
    out
}

/// Who a resource's siblings are: by parent, then by kind of parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Sibling {
    Parent(LeakClass, StringId, u64),
    ParentKind(LeakClass, StringId, StringId, Option<SiteId>),
}

fn sibling_keys(
    cx: &mut Context,
    life: &Lifecycle<LeakData>,
    key: Key,
    class: LeakClass,
    res: &Resource<LeakData>,
) -> [Option<Sibling>; 2] {
    let _ = (life, key);
    let parent = Sibling::Parent(class, res.type_name, res.trigger);
    let kind = res
        .data
        .parent
        .map(|(t, stack)| Sibling::ParentKind(class, res.type_name, t, cx.site(stack)));
    [Some(parent), kind]
}

/// What a type name is, cached per string id.
fn kind_of(kinds: &mut Vec<Option<Kind>>, cx: &Context, type_name: StringId) -> Kind {
    let i = type_name as usize;
    if kinds.len() <= i {
        kinds.resize(i + 1, None);
    }
    *kinds[i].get_or_insert_with(|| match cx.string(type_name) {
        "PROMISE" => Kind::Promise,
        "Timeout" | "Immediate" => Kind::Timer,
        "PIPEWRAP" | "TTYWRAP" => Kind::Stdio,
        "SIGNALWRAP" => Kind::Signal,
        t if HANDLE_TYPES.contains(&t) => Kind::Handle,
        t if t.starts_with("HTTP") => Kind::Message,
        _ => Kind::Other,
    })
}

/// Is this type one whose callback ends its work (not a handle, timer, promise or HTTP
/// message)?
fn one_shot(kinds: &mut Vec<Option<Kind>>, cx: &Context, type_name: StringId) -> bool {
    kind_of(kinds, cx, type_name) == Kind::Other
}

impl Leaks {
    fn note(&mut self, cx: &mut Context, ev: &Event, code: u32, a: u64, b: u64, text: Option<StringId>) {
        match code {
            notes::ALIVE => {
                let s = self.snaps(ev.stream);
                s.listed += 1;
                let next = s.seq + 1;
                if let Some(res) = self.life.get_mut((ev.stream, ev.id)) {
                    res.data.alive_seq = next;
                    res.data.alive_flags = (a & 0xff) as u8;
                    if b > 0 {
                        res.data.period_ms = u32::try_from(b).unwrap_or(u32::MAX);
                    }
                    if text.is_some() {
                        res.data.endpoint = text;
                    }
                }
            }
            notes::SNAPSHOT => {
                let s = self.snaps(ev.stream);
                s.seq += 1;
                if s.listed == b {
                    s.complete = s.seq;
                    s.why = a;
                }
                s.listed = 0;
            }
            notes::INTERVAL => {
                if let Some(res) = self.life.get_mut((ev.stream, ev.id)) {
                    res.data.period_ms = u32::try_from(a).unwrap_or(u32::MAX).max(1);
                }
            }
            notes::WARNING => self.alive.warning(cx, ev, text),
            notes::ENDED => self.alive.ended(ev.stream, ev.time_ns, a, b),
            _ => {}
        }
    }
}

impl Pass for Leaks {
    #[inline]
    fn event(&mut self, cx: &mut Context, ev: &Event) {
        self.growth.tick(ev.stream, ev.time_ns);
        if let EventKind::Init { type_name, stack, .. } = ev.kind {
            let site = cx.site(stack);
            let born_seq = self.snaps(ev.stream).seq;
            let parent = match ev.kind {
                EventKind::Init { trigger, .. } if stack.is_none() || site.is_some() => {
                    self.life.describe((ev.stream, trigger)).map(|(t, _, st)| (t, st))
                }
                _ => None,
            };
            let Step::Init(res) = self.life.apply(ev) else {
                return;
            };
            res.data.born_seq = born_seq;
            res.data.parent = parent;
            let Some(site) = site else { return };
            let life = &self.life;
            let key = (ev.stream, ev.id);
            let series = self
                .growth
                .site((ev.stream, type_name, site), stack, ev.time_ns, ev.id, || {
                    life.chain(key, CHAIN_MAX)
                });
            self.growth.add(series);
            if let Some(res) = self.life.get_mut(key) {
                res.data.series = series;
                res.data.pending = true;
            }
            return;
        }
        if let EventKind::Note { code, a, b, text } = ev.kind {
            self.note(cx, ev, code, a, b, text);
            return;
        }
        match self.life.apply(ev) {
            Step::Resolve(res) if res.data.pending => {
                res.data.pending = false;
                self.growth.remove(res.data.series);
            }
            Step::Destroy(res) if res.data.pending => self.growth.remove(res.data.series),
            // A one-shot resource whose callback ran (an `AsyncResource` of a library, whose
            // destroy waits for GC) is done: its missing destroy is no growth.
            Step::After { res, .. } if res.data.pending && one_shot(&mut self.kinds, cx, res.type_name) => {
                res.data.pending = false;
                self.growth.remove(res.data.series);
            }
            _ => {}
        }
    }

    fn stream_end(&mut self, cx: &mut Context, stream: StreamId, end_ns: u64) {
        // Growth first: it is judged on the series, whatever the end state.
        for (i, samples) in self.growth.finish_stream(stream, self.opts.growth) {
            let Some(s) = self.growth.sites.get(i as usize) else {
                continue;
            };
            let peak = samples.iter().copied().max().unwrap_or(0);
            let acc = self
                .groups
                .entry((LeakClass::Growth, s.type_name, Some(s.site)))
                .or_insert_with(|| GroupAcc {
                    count: 0,
                    oldest_age_ns: 0,
                    example: ((s.stream, s.example), s.first_init_ns),
                    chain: s.chain.clone(),
                    stack: s.stack,
                    samples: Some(samples.clone()),
                    refd: None,
                    period_ms: 0,
                    endpoint: None,
                    inferred: 0,
                });
            acc.count += u64::from(peak);
            acc.oldest_age_ns = acc.oldest_age_ns.max(end_ns.saturating_sub(s.first_init_ns));
        }
        let mut found: Vec<(Key, LeakClass)> = Vec::new();
        // Taken out while its resources are read, so that the pass can update itself meanwhile
        // (a copy of them would double the memory of a trace with millions alive).
        let life = std::mem::replace(&mut self.life, Lifecycle::with_tombstones(0));
        let why = self.snaps.get(stream as usize).map_or(0, |s| s.why);
        for (key, res) in life.iter_stream(stream) {
            if let Some(class) = self.classify(cx, key, res) {
                found.push((key, class));
            }
        }
        let inferred = infer_sites(cx, &life, &found);
        for (key, res) in life.iter_stream(stream) {
            if let Verdict::Open { refd, node } = self.verdict(key.0, res) {
                let node = node || (self.kind(cx, res.type_name) == Kind::Stdio && res.callbacks == 0);
                let site = cx.site(res.stack()).or_else(|| inferred.get(&key).copied());
                self.alive.add(cx, key, res, site, refd, node, end_ns, why);
            }
        }
        for (key, class) in found {
            let Some(res) = life.get(key) else {
                continue;
            };
            let own = cx.site(res.stack());
            let guess = if own.is_none() {
                inferred.get(&key).copied()
            } else {
                None
            };
            let site = own.or(guess);
            let age = end_ns.saturating_sub(res.init_ns);
            let (type_name, stack, init_ns) = (res.type_name, res.stack(), res.init_ns);
            let refd = match self.verdict(key.0, res) {
                Verdict::Open { refd, .. } => Some(u64::from(refd)),
                _ => None,
            };
            let (period_ms, endpoint) = (res.data.period_ms, res.data.endpoint);
            let acc = self.groups.entry((class, type_name, site)).or_insert_with(|| GroupAcc {
                count: 0,
                oldest_age_ns: 0,
                example: (key, u64::MAX),
                chain: Vec::new(),
                stack,
                samples: None,
                refd: None,
                period_ms: 0,
                endpoint: None,
                inferred: 0,
            });
            if let Some(r) = refd {
                *acc.refd.get_or_insert(0) += r;
            }
            acc.inferred += u64::from(guess.is_some() || cx.is_inferred(stack));
            acc.count += 1;
            acc.oldest_age_ns = acc.oldest_age_ns.max(age);
            // The oldest is the example (ties: the lowest id, as ids grow with time).
            if (init_ns, key) < (acc.example.1, acc.example.0) {
                acc.example = (key, init_ns);
                acc.chain = life.chain(key, CHAIN_MAX);
                acc.stack = stack;
                acc.period_ms = period_ms;
                acc.endpoint = endpoint;
            }
        }
        self.life = life;
        self.life.clear_stream(stream);
    }
}
