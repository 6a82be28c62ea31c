//! The trace's string table, as a pass reads it: by id, with each string's creation site
//! cached. A report keeps every string; a live view, which runs for as long as the app does,
//! forgets the strings only one moment used (a label per request, a note's text), so that
//! its memory stays flat on a service with a distinct URL per request.
//!
//! Why forgetting is safe: the recorder gives such a text the same id again only while it
//! is among its recent ones ([`crate::trace::ONCE_HORIZON`] texts). So a text first used by
//! a label or note, then unused for longer than that (with a margin: [`KEEP_PASSING`]), is
//! never used by an event again; only what a pass still holds (an open request's label) is
//! kept past it, on the pass's word.

use super::lifecycle::FxMap;
use crate::trace::{StringId, ONCE_HORIZON};

/// Not yet computed / no user frame, in the per-string site cache.
pub(super) const SITE_UNKNOWN: u32 = u32::MAX;
pub(super) const SITE_NONE: u32 = u32::MAX - 1;

/// Passing strings kept after their last use, counted in first uses of passing strings.
/// Why twice the recorder's horizon: that one counts from a string's definition, this one
/// from its first use, and strings defined before it but used after it (a quiet thread's
/// block written late) count here too; the margin covers them.
const KEEP_PASSING: u64 = 2 * ONCE_HORIZON;

/// How a string has been used, for forgetting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Use {
    /// Not yet: kept (a trace may define a string well before its first use).
    #[default]
    Fresh,
    /// As a label or note text: forgettable.
    Passing,
    /// As a type name, a stack, or a text a later event refers to by id: kept.
    Kept,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    text: Box<str>,
    /// The site of the text read as a stack.
    site: u32,
    used: Use,
    /// `passing` when it was defined or last used.
    last: u64,
}

/// Strings by id, kept all (dense) or forgetting the passing ones (sparse).
#[derive(Debug, Default)]
pub(super) struct Strings {
    dense: Vec<Slot>,
    sparse: FxMap<StringId, Slot>,
    forgetting: bool,
    /// Strings used as a label or note text, over the run: the clock of forgetting.
    passing: u64,
    /// `passing` at the last sweep.
    swept_at: u64,
}

impl Strings {
    /// From now on, forget passing strings (call before the first string).
    pub fn forget(&mut self) {
        self.forgetting = true;
    }

    pub fn define(&mut self, id: StringId, text: String) {
        let slot = Slot {
            text: text.into_boxed_str(),
            site: SITE_UNKNOWN,
            used: Use::Fresh,
            last: self.passing,
        };
        if self.forgetting {
            self.sparse.insert(id, slot);
            return;
        }
        let i = id as usize;
        if self.dense.len() <= i {
            self.dense.resize(i + 1, Slot::default());
        }
        self.dense[i] = slot;
    }

    fn slot(&self, id: StringId) -> Option<&Slot> {
        if self.forgetting {
            self.sparse.get(&id)
        } else {
            self.dense.get(id as usize)
        }
    }

    fn slot_mut(&mut self, id: StringId) -> Option<&mut Slot> {
        if self.forgetting {
            self.sparse.get_mut(&id)
        } else {
            self.dense.get_mut(id as usize)
        }
    }

    /// The text of `id`, if defined (and not forgotten).
    pub fn get(&self, id: StringId) -> Option<&str> {
        self.slot(id).map(|s| &*s.text)
    }

    /// The cached site of `id` read as a stack ([`SITE_UNKNOWN`]: not computed yet); `None`
    /// for an undefined id.
    pub fn site(&self, id: StringId) -> Option<u32> {
        self.slot(id).map(|s| s.site)
    }

    pub fn set_site(&mut self, id: StringId, site: u32) {
        if let Some(s) = self.slot_mut(id) {
            s.site = site;
        }
    }

    /// `id` names a type or a stack, or a later event may refer to it: never forgotten.
    #[inline]
    pub fn keep(&mut self, id: StringId) {
        if self.forgetting {
            if let Some(s) = self.sparse.get_mut(&id) {
                s.used = Use::Kept;
            }
        }
    }

    /// An event uses `id` as a label or note text now.
    #[inline]
    pub fn pass(&mut self, id: StringId) {
        if self.forgetting {
            if let Some(s) = self.sparse.get_mut(&id) {
                match s.used {
                    Use::Kept => {}
                    // Why count first uses only: each is a text the recorder defined anew, and
                    // its horizon is counted in those.
                    Use::Fresh => {
                        self.passing += 1;
                        s.used = Use::Passing;
                        s.last = self.passing;
                    }
                    Use::Passing => s.last = self.passing,
                }
            }
        }
    }

    /// Enough new passing strings came to make a sweep worth its scan.
    pub fn sweep_due(&self) -> bool {
        self.forgetting && self.passing - self.swept_at >= ONCE_HORIZON / 4
    }

    /// Forgets the passing strings no event can use any more, except those `held`.
    pub fn sweep(&mut self, held: impl Fn(StringId) -> bool) {
        if !self.forgetting {
            return;
        }
        self.swept_at = self.passing;
        let now = self.passing;
        self.sparse
            .retain(|&id, s| s.used != Use::Passing || now - s.last <= KEEP_PASSING || held(id));
        self.sparse.shrink_to(self.sparse.len() * 2);
    }

    /// Strings held now.
    pub fn len(&self) -> usize {
        if self.forgetting {
            self.sparse.len()
        } else {
            self.dense.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgetting_table_drops_old_passing_strings_and_keeps_the_rest() {
        let mut t = Strings::default();
        t.forget();
        t.define(0, "PROMISE".into());
        t.keep(0);
        t.define(1, "GET /held".into());
        t.pass(1);
        t.define(2, "unused".into());
        let n = KEEP_PASSING as u32 * 2;
        for i in 0..n {
            t.define(10 + i, format!("GET /user/{i}"));
            t.pass(10 + i);
            if t.sweep_due() {
                t.sweep(|id| id == 1);
            }
        }
        assert_eq!(t.get(0), Some("PROMISE"));
        assert_eq!(t.get(1), Some("GET /held"), "held by a pass");
        assert_eq!(t.get(2), Some("unused"), "not used yet");
        assert_eq!(t.get(10), None, "old and passing");
        assert_eq!(t.get(10 + n - 1), Some(&*format!("GET /user/{}", n - 1)));
        // Every string of the last horizon is still there, so a reused id still reads.
        assert!(t.get(10 + n - KEEP_PASSING as u32).is_some());
        assert!(
            t.len() <= 3 + KEEP_PASSING as usize + ONCE_HORIZON as usize / 4 + 1,
            "{}",
            t.len()
        );
    }

    #[test]
    fn a_passing_string_used_again_lives_on() {
        let mut t = Strings::default();
        t.forget();
        t.define(1, "GET /".into());
        t.pass(1);
        for i in 0..KEEP_PASSING as u32 * 3 {
            t.define(10 + i, "x".into());
            t.pass(10 + i);
            t.pass(1);
            if t.sweep_due() {
                t.sweep(|_| false);
            }
        }
        assert_eq!(t.get(1), Some("GET /"), "each use renews it");
        assert_eq!(t.get(10), None);
    }
}
