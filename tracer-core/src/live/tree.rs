//! The trigger tree of the live resources, folded as `asynctrace tree` folds it: siblings
//! of the same type and site are one node with a count, and their children are merged.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::LiveState;
use crate::analysis::{Key, FIRST_RESOURCE_ID};
use crate::trace::StreamId;

/// One line of the tree view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLine {
    pub depth: usize,
    /// The node's first resource (lowest id): what expanding it toggles.
    pub key: Key,
    pub type_name: String,
    pub site: Option<String>,
    /// Resources folded into this node.
    pub count: u64,
    /// Live resources below it (all depths).
    pub below: u64,
    pub open: bool,
}

/// The last tree built, for reuse on huge live sets.
#[derive(Debug)]
pub(super) struct TreeCache {
    stream: Option<StreamId>,
    toggled: HashSet<Key>,
    max_lines: usize,
    lines: Vec<TreeLine>,
    when: super::view::ScanTime,
}

/// Levels open unless toggled.
const OPEN_DEPTH: usize = 2;
const MAX_DEPTH: usize = 64;

impl LiveState {
    /// The folded tree of live resources (one thread or all), at most `max_lines` lines.
    /// A node is open when its depth is below 2, unless its key is in `toggled` (and the
    /// other way round deeper down).
    ///
    /// On millions of live resources a tree is reused as the live scan is (see
    /// [`super::view::SCAN_CACHED_FROM`]), unless the thread, the toggles or the size changed.
    pub fn tree(&self, stream: Option<StreamId>, toggled: &HashSet<Key>, max_lines: usize) -> Vec<TreeLine> {
        if let Some(c) = self.tree_cache.borrow().as_ref() {
            if c.stream == stream && c.max_lines == max_lines && &c.toggled == toggled && self.reuse_scan(&c.when) {
                return c.lines.clone();
            }
        }
        let when = super::view::ScanTime::start();
        let lines = self.build_tree(stream, toggled, max_lines);
        *self.tree_cache.borrow_mut() = Some(TreeCache {
            stream,
            toggled: toggled.clone(),
            max_lines,
            lines: lines.clone(),
            when: when.done(),
        });
        lines
    }

    fn build_tree(&self, stream: Option<StreamId>, toggled: &HashSet<Key>, max_lines: usize) -> Vec<TreeLine> {
        let mut kids: HashMap<Key, Vec<Key>> = HashMap::new();
        let mut roots: Vec<Key> = Vec::new();
        for (k, r) in self.life.iter_all() {
            if stream.is_some_and(|s| s != k.0) {
                continue;
            }
            let parent = (k.0, r.trigger);
            if r.trigger >= FIRST_RESOURCE_ID && parent != k && self.life.get(parent).is_some() {
                kids.entry(parent).or_default().push(k);
            } else {
                roots.push(k);
            }
        }
        let mut out = Vec::new();
        self.emit(&roots, 0, &kids, toggled, max_lines, &mut out);
        out
    }

    fn emit(
        &self,
        members: &[Key],
        depth: usize,
        kids: &HashMap<Key, Vec<Key>>,
        toggled: &HashSet<Key>,
        max_lines: usize,
        out: &mut Vec<TreeLine>,
    ) {
        let mut groups: BTreeMap<(String, Option<String>), Vec<Key>> = BTreeMap::new();
        for &k in members {
            let Some(r) = self.life.get(k) else { continue };
            let row = &self.rows[r.data as usize];
            let site = row.site.map(|s| self.cx.site_text(s).to_owned());
            groups
                .entry((self.cx.string(r.type_name).to_owned(), site))
                .or_default()
                .push(k);
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        // Biggest groups first; ties by name.
        groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
        for ((type_name, site), mut keys) in groups {
            if out.len() >= max_lines {
                return;
            }
            keys.sort_unstable();
            let below_keys: Vec<Key> = keys
                .iter()
                .flat_map(|k| kids.get(k).into_iter().flatten().copied())
                .collect();
            let key = keys[0];
            let open = (depth < OPEN_DEPTH) != toggled.contains(&key);
            out.push(TreeLine {
                depth,
                key,
                type_name,
                site,
                count: keys.len() as u64,
                below: count_below(&below_keys, kids),
                open: open && !below_keys.is_empty(),
            });
            if open && !below_keys.is_empty() && depth < MAX_DEPTH {
                self.emit(&below_keys, depth + 1, kids, toggled, max_lines, out);
            }
        }
    }
}

fn count_below(keys: &[Key], kids: &HashMap<Key, Vec<Key>>) -> u64 {
    let mut n = 0;
    let mut stack: Vec<Key> = keys.to_vec();
    while let Some(k) = stack.pop() {
        n += 1;
        if let Some(c) = kids.get(&k) {
            stack.extend_from_slice(c);
        }
    }
    n
}
