//! `tree`: the triggerAsyncId tree (or the executionAsyncId one), aggregated as it streams.
//!
//! Resources with the same parent group, type and creation site fold into one group
//! (`x2000 PROMISE app.js:12:9`), as Bubbleprof's aggregate nodes do. A group whose type
//! and site repeat an ancestor group's within [`LOOP_DEPTH`] levels folds into that
//! ancestor (marked recursive): an `await` loop or a `setImmediate` hop chain is one group,
//! not a million nested ones. Memory grows with the groups (distinct parent/type/site
//! paths, capped at [`MAX_GROUPS`]) and the live resources, not with events.
//!
//! The parent of a resource whose parent is neither live nor recently destroyed (or below
//! id 2) is its stream's root.

use serde::Serialize;

use super::blame::Blame;
use super::context::{Context, Pass, SiteId};
use super::lifecycle::{FxMap, Lifecycle, Step};
use super::requests::WaitCause;
use super::waits::{Cause, Owner, Waiting, Waits};
use crate::trace::{Event, EventKind, StreamId, StringId};

/// How far up a repeated type and site fold into an ancestor group.
pub const LOOP_DEPTH: usize = 8;
/// Groups beyond this fold into their parent group.
pub const MAX_GROUPS: usize = 1 << 20;
const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TreeOptions {
    /// Show only the subtree of this resource (in the first selected stream).
    pub root: Option<u64>,
    pub pid: Option<u32>,
    pub thread: Option<u32>,
    /// Parent = executionAsyncId at init instead of triggerAsyncId.
    pub exec: bool,
    /// Levels below a stream root (or `root`) to show (default 10).
    pub depth: usize,
    /// Child groups shown per group, the earliest first (default 20).
    pub children: usize,
    /// Groups shown in all (default 400); what is cut is summarised.
    pub lines: usize,
}

impl Default for TreeOptions {
    fn default() -> Self {
        TreeOptions {
            root: None,
            pid: None,
            thread: None,
            exec: false,
            depth: 10,
            children: 20,
            lines: 400,
        }
    }
}

/// A group's longest explained wait.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LongestWait {
    pub wait_ms: f64,
    pub cause: WaitCause,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero_ms(v: &f64) -> bool {
    *v == 0.0
}

/// A group in the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TreeNode {
    #[serde(rename = "type")]
    pub type_name: String,
    pub site: Option<String>,
    /// Resources in the group.
    pub count: u64,
    /// The first resource's id.
    pub first_id: u64,
    pub callbacks: u64,
    pub sync_ms: f64,
    /// Waits of its callbacks, each counted once: a promise's wait that lies inside a deeper
    /// one (an await chain) is in `explained_wait_ms` instead.
    pub wait_ms: f64,
    #[serde(skip_serializing_if = "is_zero_ms")]
    pub explained_wait_ms: f64,
    /// Its longest wait whose cause is known, and the cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longest_wait: Option<LongestWait>,
    /// Mean lifetime of those destroyed before the end.
    pub avg_life_ms: Option<f64>,
    /// Still alive at the end.
    pub alive: u64,
    /// Holds descendants that repeat its type and site (a loop).
    pub recursive: bool,
    pub children: Vec<TreeNode>,
    /// Child groups not shown (depth, width or line limit), and the resources under them.
    pub hidden_groups: u64,
    pub hidden_resources: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TreeStream {
    pub pid: u32,
    pub thread: u32,
    pub resources: u64,
    pub groups: u64,
    /// Resources whose parent was unknown (not live and not recently destroyed).
    pub orphans: u64,
    pub roots: Vec<TreeNode>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TreeReport {
    /// `trigger` or `exec`.
    pub view: &'static str,
    pub root: Option<u64>,
    pub streams: Vec<TreeStream>,
    pub dropped: u64,
    /// Hook events skipped because the app gave them invalid async ids.
    #[serde(skip_serializing_if = "super::is_zero")]
    pub invalid_ids: u64,
    pub truncated: bool,
}

#[derive(Debug, Clone)]
struct Group {
    parent: u32,
    type_name: StringId,
    site: Option<SiteId>,
    count: u64,
    first_id: u64,
    callbacks: u64,
    sync_ns: u64,
    wait_ns: u64,
    /// Waits that lie inside deeper ones (see `waits`), left out of `wait_ns`.
    explained_ns: u64,
    /// The longest wait with a known cause, and its stream.
    longest: Option<(u64, StreamId, Blame)>,
    life_ns: u64,
    destroyed: u64,
    alive_at_end: u64,
    recursive: bool,
    children: Vec<u32>,
}

/// The pass.
#[derive(Debug, Default)]
pub struct Tree {
    opts: TreeOptions,
    life: Lifecycle<u32>,
    groups: Vec<Group>,
    index: FxMap<(u32, StringId, Option<SiteId>), u32>,
    /// Per stream: its root group, or NONE when the stream is not selected.
    roots: Vec<u32>,
    orphans: Vec<u64>,
    /// The stream `root` refers to, and the pinned group once seen.
    root_stream: Option<StreamId>,
    pinned: u32,
    tombs: Vec<Option<((StreamId, u64), u32)>>,
    /// The shared wait model: what each wait waited for.
    waits: Waits,
}

impl Tree {
    pub fn new(opts: TreeOptions) -> Self {
        Tree {
            opts,
            life: Lifecycle::with_tombstones(0),
            pinned: NONE,
            tombs: vec![None; 1 << 16],
            ..Default::default()
        }
    }

    fn tomb_slot(key: (StreamId, u64)) -> usize {
        use std::hash::Hasher;
        let mut h = super::lifecycle::FxHasher::default();
        h.write_u32(key.0);
        h.write_u64(key.1);
        (h.finish() >> 32) as usize & ((1 << 16) - 1)
    }

    fn new_group(&mut self, parent: u32, type_name: StringId, site: Option<SiteId>, id: u64) -> u32 {
        let g = self.groups.len() as u32;
        self.groups.push(Group {
            parent,
            type_name,
            site,
            count: 0,
            first_id: id,
            callbacks: 0,
            sync_ns: 0,
            wait_ns: 0,
            explained_ns: 0,
            longest: None,
            life_ns: 0,
            destroyed: 0,
            alive_at_end: 0,
            recursive: false,
            children: Vec::new(),
        });
        if let Some(p) = self.groups.get_mut(parent as usize) {
            p.children.push(g);
        }
        g
    }

    /// The root group of a stream, created on its first event; NONE if not selected.
    fn stream_root(&mut self, cx: &Context, stream: StreamId) -> u32 {
        let s = stream as usize;
        if let Some(&r) = self.roots.get(s) {
            if r != NONE - 1 {
                return r;
            }
        }
        if self.roots.len() <= s {
            self.roots.resize(s + 1, NONE - 1);
            self.orphans.resize(s + 1, 0);
        }
        let d = cx.stream(stream);
        let selected = self.opts.pid.is_none_or(|p| p == d.pid) && self.opts.thread.is_none_or(|t| t == d.thread);
        let selected = selected && self.root_stream.is_none_or(|r| r == stream);
        let r = if selected {
            if self.opts.root.is_some() {
                self.root_stream = Some(stream);
            }
            self.new_group(NONE, 0, None, 0)
        } else {
            NONE
        };
        self.roots[s] = r;
        r
    }

    fn group_for(&mut self, parent: u32, type_name: StringId, site: Option<SiteId>, id: u64) -> u32 {
        if let Some(&g) = self.index.get(&(parent, type_name, site)) {
            return g;
        }
        let mut anc = parent;
        for _ in 0..LOOP_DEPTH {
            let Some(a) = self.groups.get(anc as usize) else {
                break;
            };
            if a.parent == NONE {
                break;
            }
            if a.type_name == type_name && a.site == site {
                self.groups[anc as usize].recursive = true;
                self.index.insert((parent, type_name, site), anc);
                return anc;
            }
            // Why stop at the pinned root: folding above it would leave its subtree.
            if anc == self.pinned {
                break;
            }
            anc = a.parent;
        }
        if self.groups.len() >= MAX_GROUPS {
            return parent;
        }
        let g = self.new_group(parent, type_name, site, id);
        self.index.insert((parent, type_name, site), g);
        g
    }

    fn finish_group(&mut self, g: u32, life_ns: Option<u64>) {
        if let Some(gr) = self.groups.get_mut(g as usize) {
            match life_ns {
                Some(l) => {
                    gr.life_ns += l;
                    gr.destroyed += 1;
                }
                None => gr.alive_at_end += 1,
            }
        }
    }

    pub fn finish(self, cx: &mut Context) -> TreeReport {
        // Subtree totals: children always come after their parent in `groups`.
        let n = self.groups.len();
        let mut sub_res: Vec<u64> = self.groups.iter().map(|g| g.count).collect();
        let mut sub_groups: Vec<u64> = vec![1; n];
        for i in (0..n).rev() {
            let p = self.groups[i].parent;
            if (p as usize) < n && (p as usize) < i {
                sub_res[p as usize] += sub_res[i];
                sub_groups[p as usize] += sub_groups[i];
            }
        }
        let mut r = Render {
            tree: &self,
            cx,
            sub_res: &sub_res,
            sub_groups: &sub_groups,
            lines: 0,
        };
        let mut streams = Vec::new();
        for (s, &root) in self.roots.iter().enumerate() {
            if root >= NONE - 1 {
                continue;
            }
            let top = if self.opts.root.is_some() {
                if self.root_stream != Some(s as StreamId) || self.pinned == NONE {
                    continue;
                }
                self.pinned
            } else {
                root
            };
            let d = r.cx.stream(s as StreamId);
            let roots = if self.opts.root.is_some() {
                vec![r.node(top, 0)]
            } else {
                r.node(top, 0).children
            };
            streams.push(TreeStream {
                pid: d.pid,
                thread: d.thread,
                resources: sub_res[root as usize],
                groups: sub_groups[root as usize] - 1,
                orphans: self.orphans.get(s).copied().unwrap_or(0),
                roots,
            });
        }
        TreeReport {
            view: if self.opts.exec { "exec" } else { "trigger" },
            root: self.opts.root,
            streams,
            dropped: cx.dropped,
            invalid_ids: cx.invalid_ids,
            truncated: cx.truncated,
        }
    }
}

struct Render<'a> {
    tree: &'a Tree,
    cx: &'a mut Context,
    sub_res: &'a [u64],
    sub_groups: &'a [u64],
    lines: usize,
}

impl Render<'_> {
    fn node(&mut self, g: u32, depth: usize) -> TreeNode {
        let gr = &self.tree.groups[g as usize];
        let o = &self.tree.opts;
        let site = self.cx.site_string(gr.site);
        let type_name = if gr.parent == NONE {
            "(root)".to_owned()
        } else {
            self.cx.string(gr.type_name).to_owned()
        };
        let mut node = TreeNode {
            type_name,
            site,
            count: gr.count,
            first_id: gr.first_id,
            callbacks: gr.callbacks,
            sync_ms: super::ms(gr.sync_ns),
            wait_ms: super::ms(gr.wait_ns),
            explained_wait_ms: super::ms(gr.explained_ns),
            longest_wait: gr.longest.and_then(|(ns, stream, b)| {
                let cause = b.render(self.cx, &self.tree.waits, stream)?;
                Some(LongestWait {
                    wait_ms: super::ms(ns),
                    cause,
                })
            }),
            avg_life_ms: (gr.destroyed > 0).then(|| super::ms(gr.life_ns / gr.destroyed)),
            alive: gr.alive_at_end,
            recursive: gr.recursive,
            children: Vec::new(),
            hidden_groups: 0,
            hidden_resources: 0,
        };
        for (i, &c) in gr.children.iter().enumerate() {
            if depth < o.depth && i < o.children && self.lines < o.lines {
                self.lines += 1;
                let child = self.node(c, depth + 1);
                node.children.push(child);
            } else {
                node.hidden_groups += self.sub_groups[c as usize];
                node.hidden_resources += self.sub_res[c as usize];
            }
        }
        node
    }
}

impl Pass for Tree {
    #[inline]
    fn event(&mut self, cx: &mut Context, ev: &Event) {
        let key = (ev.stream, ev.id);
        if let EventKind::Init {
            type_name,
            trigger,
            exec,
            stack,
        } = ev.kind
        {
            let root = self.stream_root(cx, ev.stream);
            if root == NONE {
                return;
            }
            let parent_id = if self.opts.exec { exec } else { trigger };
            let parent = if parent_id < super::FIRST_RESOURCE_ID {
                root
            } else if let Some(r) = self.life.get((ev.stream, parent_id)) {
                r.data
            } else {
                match self.tombs[Self::tomb_slot((ev.stream, parent_id))] {
                    Some((k, g)) if k == (ev.stream, parent_id) => g,
                    _ => {
                        if let Some(o) = self.orphans.get_mut(ev.stream as usize) {
                            *o += 1;
                        }
                        root
                    }
                }
            };
            if !self.waits.knows_types() {
                self.waits.learn_type(type_name, cx.string(type_name));
            }
            let site = cx.site(stack);
            let g = if self.opts.root == Some(ev.id) && self.root_stream == Some(ev.stream) && self.pinned == NONE {
                self.pinned = self.new_group(parent, type_name, site, ev.id);
                self.pinned
            } else {
                self.group_for(parent, type_name, site, ev.id)
            };
            if let Some(gr) = self.groups.get_mut(g as usize) {
                gr.count += 1;
            }
            if let Step::Init(res) = self.life.apply(ev) {
                res.data = g;
            }
            return;
        }
        self.waits.event(ev);
        match self.life.apply(ev) {
            Step::Before { res, wait_ns } => {
                let g = res.data as usize;
                let w = Waiting::of(key, res, ev.time_ns);
                let blame = Blame::capture(&self.waits, &self.life, &w, |_| Owner::default());
                if let Some(gr) = self.groups.get_mut(g) {
                    gr.callbacks += 1;
                    if blame.cause.explained() {
                        gr.explained_ns += wait_ns;
                    } else {
                        gr.wait_ns += wait_ns;
                        if wait_ns > 0 && blame.cause != Cause::Own && gr.longest.is_none_or(|(l, ..)| wait_ns > l) {
                            gr.longest = Some((wait_ns, ev.stream, blame));
                        }
                    }
                }
            }
            Step::After { res, sync_ns, .. } => {
                self.waits.after(ev, Some(&*res), Owner::default());
                if let Some(gr) = self.groups.get_mut(res.data as usize) {
                    gr.sync_ns += sync_ns;
                }
            }
            Step::Unknown if ev.kind == EventKind::After => {
                self.waits.after::<u32>(ev, None, Owner::default());
            }
            Step::Destroy(res) => {
                self.tombs[Self::tomb_slot(key)] = Some((key, res.data));
                self.finish_group(res.data, Some(ev.time_ns.saturating_sub(res.init_ns)));
            }
            _ => {}
        }
    }

    fn stream_end(&mut self, _cx: &mut Context, stream: StreamId, _end_ns: u64) {
        self.waits.stream_end(stream);
        let mut alive = Vec::new();
        self.life.drain_stream(stream, |_, res| alive.push(res.data));
        for g in alive {
            self.finish_group(g, None);
        }
    }
}
