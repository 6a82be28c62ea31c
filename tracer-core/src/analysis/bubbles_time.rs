//! Time bookkeeping of the bubble view in bounded memory: interval unions (so that
//! concurrency is not counted twice) and per-bubble time histograms (the page's timeline).

use std::collections::VecDeque;

/// Disjoint intervals kept before the oldest is folded into the total.
const UNION_KEEP: usize = 64;

/// The union of intervals whose ends arrive in nondecreasing order (the ends are event times
/// of one stream). Keeps the last [`UNION_KEEP`] disjoint intervals; older ones are counted
/// and forgotten, and a later interval reaching back before them is clipped there, so the
/// total never counts a moment twice (it may miss a little overlap far in the past).
#[derive(Debug, Clone, Default)]
pub(crate) struct Union {
    live: VecDeque<(u64, u64)>,
    done_ns: u64,
    floor: u64,
}

impl Union {
    pub(crate) fn add(&mut self, start: u64, end: u64) {
        let mut s = start.max(self.floor);
        let mut e = end;
        if e <= s {
            return;
        }
        while let Some(&(ls, le)) = self.live.back() {
            if le < s {
                break;
            }
            // Overlaps or touches the newest kept interval: merge (ends may tie).
            s = s.min(ls);
            e = e.max(le);
            self.live.pop_back();
        }
        // An interval reaching back before an older kept one swallowed it above only if it
        // overlapped; anything between kept intervals stays a gap.
        self.live.push_back((s, e));
        if self.live.len() > UNION_KEEP {
            if let Some((fs, fe)) = self.live.pop_front() {
                self.done_ns += fe - fs;
                self.floor = fe;
            }
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.done_ns + self.live.iter().map(|&(s, e)| e - s).sum::<u64>()
    }
}

/// Bins of a histogram.
pub(crate) const BINS: usize = 120;
/// Width of a bin to start with (ns); doubles when a time falls past the last bin.
const FIRST_WIDTH_NS: u64 = 1_000_000;

/// Nanoseconds of callback time per bin of the run; bins double in width as the run grows,
/// so the size is fixed whatever the trace length.
#[derive(Debug, Clone)]
pub(crate) struct Hist {
    pub(crate) width_ns: u64,
    pub(crate) bins: Vec<u64>,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            width_ns: FIRST_WIDTH_NS,
            bins: vec![0; BINS],
        }
    }
}

impl Hist {
    /// Adds the interval `[start, end)`, split over the bins it covers.
    pub(crate) fn add(&mut self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        self.widen_to(end);
        let mut t = start;
        while t < end {
            let i = (t / self.width_ns) as usize;
            let bin_end = (i as u64 + 1) * self.width_ns;
            let until = bin_end.min(end);
            if let Some(b) = self.bins.get_mut(i) {
                *b += until - t;
            }
            t = until;
        }
    }

    /// Doubles the bin width until `t` falls inside the histogram.
    pub(crate) fn widen_to(&mut self, t: u64) {
        while t >= self.width_ns * BINS as u64 {
            for i in 0..BINS / 2 {
                self.bins[i] = self.bins[2 * i] + self.bins[2 * i + 1];
            }
            for b in &mut self.bins[BINS / 2..] {
                *b = 0;
            }
            self.width_ns *= 2;
        }
    }

    /// Adds another histogram (any width not above this one's, both powers of two of the
    /// first width).
    pub(crate) fn merge(&mut self, other: &Hist) {
        let mut o = other.clone();
        o.widen_to(self.width_ns * BINS as u64 - 1);
        while o.width_ns < self.width_ns {
            o.widen_to(o.width_ns * BINS as u64);
        }
        for (a, b) in self.bins.iter_mut().zip(&o.bins) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_counts_overlap_once() {
        let mut u = Union::default();
        u.add(0, 10);
        u.add(5, 20);
        u.add(30, 40);
        u.add(0, 45); // swallows everything kept
        assert_eq!(u.total(), 45);
        let mut v = Union::default();
        v.add(0, 10);
        v.add(20, 30);
        assert_eq!(v.total(), 20);
    }

    #[test]
    fn union_is_bounded_and_never_double_counts() {
        let mut u = Union::default();
        for i in 0..10_000u64 {
            u.add(i * 10, i * 10 + 5);
        }
        assert!(u.live.len() <= UNION_KEEP);
        assert_eq!(u.total(), 50_000);
        // Reaching back over forgotten intervals is clipped, not double counted.
        u.add(0, 100_000);
        assert!(u.total() <= 100_000);
    }

    #[test]
    fn hist_widens_and_keeps_sums() {
        let mut h = Hist::default();
        h.add(0, 500_000);
        h.add(5_000_000_000, 5_000_100_000);
        assert_eq!(h.bins.iter().sum::<u64>(), 600_000);
        assert!(h.width_ns * BINS as u64 > 5_000_100_000);
        let mut g = Hist::default();
        g.add(1_000, 2_000);
        let mut big = h.clone();
        big.merge(&g);
        assert_eq!(big.bins.iter().sum::<u64>(), 601_000);
    }
}
