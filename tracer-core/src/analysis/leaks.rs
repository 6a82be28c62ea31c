//! `leaks`: what was still alive at the end, by leak class (DESIGN.md section 3), type and
//! creation site, plus the sites that kept growing (see [`super::growth`]).
//!
//! What each class holds, decided per resource alive at the end of its stream:
//! - a resource *inside its callback* at the end is what ran `process.exit`: not a leak;
//! - `PROMISE` without promiseResolve: never-settled promise; with one: settled, not yet
//!   collected (only counted: promise destroy waits for GC);
//! - `Timeout`, `Immediate`: pending timer (also unref'd ones: they leak memory and work even
//!   when they do not hold the process open);
//! - [`HANDLE_TYPES`]: open handle, except stdio (a `PIPEWRAP`/`TTYWRAP` that never ran a
//!   callback is how Node's lazily created `process.stdout`/`stderr` look) and a
//!   `SIGNALWRAP` without a user frame (Node's own SIGWINCH watcher on a terminal);
//! - anything else (one-shot requests such as `TickObject`, `FSREQCALLBACK`, `Microtask`,
//!   HTTP parser resources, `DNSCHANNEL`, GC-collected `FILEHANDLE`) is work cut short by the
//!   exit or internal state, not a leak: counted per type in `other_alive`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::context::{Context, Pass, SiteId};
use super::growth::{Growth, GrowthRule};
use super::lifecycle::{ChainLink, Key, Lifecycle, Resource, Step};
use crate::trace::{Event, EventKind, StreamId, StringId};

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
    /// Growth only: peak pending count in each tenth of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<Vec<u32>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeakReport {
    pub leaks: Vec<LeakGroup>,
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

/// Per resource: its growth series and whether it counts as pending there.
#[derive(Debug, Clone, Copy)]
pub struct LeakData {
    series: u32,
    pending: bool,
}

impl Default for LeakData {
    fn default() -> Self {
        LeakData {
            series: u32::MAX,
            pending: false,
        }
    }
}

#[derive(Debug)]
struct GroupAcc {
    count: u64,
    oldest_age_ns: u64,
    example: (Key, u64),
    chain: Vec<ChainLink>,
    stack: Option<StringId>,
    samples: Option<Vec<u32>>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Promise,
    Timer,
    Handle,
    Stdio,
    Signal,
    Other,
}

const CHAIN_MAX: usize = 16;

impl Leaks {
    pub fn new(opts: LeakOptions) -> Self {
        Leaks {
            opts,
            ..Default::default()
        }
    }

    fn kind(&mut self, cx: &Context, type_name: StringId) -> Kind {
        let i = type_name as usize;
        if self.kinds.len() <= i {
            self.kinds.resize(i + 1, None);
        }
        *self.kinds[i].get_or_insert_with(|| match cx.string(type_name) {
            "PROMISE" => Kind::Promise,
            "Timeout" | "Immediate" => Kind::Timer,
            "PIPEWRAP" | "TTYWRAP" => Kind::Stdio,
            "SIGNALWRAP" => Kind::Signal,
            t if HANDLE_TYPES.contains(&t) => Kind::Handle,
            _ => Kind::Other,
        })
    }

    fn classify(&mut self, cx: &mut Context, res: &Resource<LeakData>) -> Option<LeakClass> {
        if res.before_ns.is_some() {
            self.running += 1;
            return None;
        }
        let class = match self.kind(cx, res.type_name) {
            Kind::Promise if res.resolve_ns.is_some() => {
                self.settled += 1;
                return None;
            }
            Kind::Promise => LeakClass::NeverSettledPromise,
            Kind::Timer => LeakClass::PendingTimer,
            Kind::Handle => LeakClass::OpenHandle,
            Kind::Stdio if res.callbacks > 0 => LeakClass::OpenHandle,
            Kind::Signal if cx.site(res.stack).is_some() => LeakClass::OpenHandle,
            Kind::Stdio | Kind::Signal | Kind::Other => {
                *self.other.entry(res.type_name).or_default() += 1;
                return None;
            }
        };
        Some(class)
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
            });
        }
        leaks.sort_by(|a, b| {
            a.class
                .cmp(&b.class)
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
        LeakReport {
            leaks,
            settled_not_collected: self.settled,
            other_alive,
            running_at_exit: self.running,
            dropped: cx.dropped,
            invalid_ids: cx.invalid_ids,
            truncated: cx.truncated,
        }
    }
}

impl Pass for Leaks {
    #[inline]
    fn event(&mut self, cx: &mut Context, ev: &Event) {
        self.growth.tick(ev.stream, ev.time_ns);
        if let EventKind::Init { type_name, stack, .. } = ev.kind {
            let site = cx.site(stack);
            let Step::Init(_) = self.life.apply(ev) else {
                return;
            };
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
                res.data = LeakData { series, pending: true };
            }
            return;
        }
        match self.life.apply(ev) {
            Step::Resolve(res) if res.data.pending => {
                res.data.pending = false;
                self.growth.remove(res.data.series);
            }
            Step::Destroy(res) if res.data.pending => self.growth.remove(res.data.series),
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
                });
            acc.count += u64::from(peak);
            acc.oldest_age_ns = acc.oldest_age_ns.max(end_ns.saturating_sub(s.first_init_ns));
        }
        let mut found: Vec<(Key, LeakClass)> = Vec::new();
        let alive: Vec<(Key, Resource<LeakData>)> =
            self.life.iter_stream(stream).map(|(k, r)| (k, r.clone())).collect();
        for (key, res) in &alive {
            if let Some(class) = self.classify(cx, res) {
                found.push((*key, class));
            }
        }
        for (key, class) in found {
            let Some(res) = self.life.get(key) else {
                continue;
            };
            let site = cx.site(res.stack);
            let age = end_ns.saturating_sub(res.init_ns);
            let (type_name, stack, init_ns) = (res.type_name, res.stack, res.init_ns);
            let life = &self.life;
            let acc = self.groups.entry((class, type_name, site)).or_insert_with(|| GroupAcc {
                count: 0,
                oldest_age_ns: 0,
                example: (key, u64::MAX),
                chain: Vec::new(),
                stack,
                samples: None,
            });
            acc.count += 1;
            acc.oldest_age_ns = acc.oldest_age_ns.max(age);
            // The oldest is the example (ties: the lowest id, as ids grow with time).
            if (init_ns, key) < (acc.example.1, acc.example.0) {
                acc.example = (key, init_ns);
                acc.chain = life.chain(key, CHAIN_MAX);
                acc.stack = stack;
            }
        }
        self.life.drain_stream(stream, |_, _| {});
    }
}
