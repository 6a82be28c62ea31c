//! Growth: creation sites whose live count keeps rising over the run.
//!
//! For each `(stream, type, site)` the pass counts the *pending* resources (live; for a
//! PROMISE, live and not yet resolved, because a settled promise waits for GC however healthy
//! the app is) and records the peak of that count in every time slice of the stream. Slices
//! start at 1 ms; when a stream has [`MAX_SLICES`] of them, neighbours merge (peak of both)
//! and the slice doubles, so memory is fixed per site and the series always spans the run.
//!
//! At the end of the stream the series is cut into [`BUCKETS`] equal parts and the site
//! grew when the bucket peaks are non-decreasing (each at least the previous one), the last
//! is at least [`GrowthRule::min_ratio`] times the first (an empty first bucket counts as
//! one) and at least [`GrowthRule::min_rise`] above it, and the rise is spread over the run:
//! the peak goes up in at least [`GrowthRule::min_steps`] buckets. A burst of creations late in
//! the run (a start-up that schedules a hundred timers at once) rises in one or two buckets and
//! is not growth. Because peaks are taken during the
//! run, a cache freed at the very end still shows as growth. Streams shorter than
//! `BUCKETS` slices (10 ms) are too short to judge and never report growth.

use super::lifecycle::{ChainLink, FxMap};
use super::SiteId;
use crate::trace::{StreamId, StringId};

/// Slices kept per stream before neighbours merge.
pub const MAX_SLICES: usize = 128;
/// Parts the run is cut into when judging growth.
pub const BUCKETS: usize = 10;
const FIRST_SLICE_NS: u64 = 1_000_000;

/// When a series counts as growth.
#[derive(Debug, Clone, Copy)]
pub struct GrowthRule {
    /// Last bucket peak / first bucket peak (default 2).
    pub min_ratio: f64,
    /// Last bucket peak - first bucket peak (default 10).
    pub min_rise: u32,
    /// Buckets in which the peak rises (default 4 of 10).
    pub min_steps: usize,
}

impl Default for GrowthRule {
    fn default() -> Self {
        GrowthRule {
            min_ratio: 2.0,
            min_rise: 10,
            min_steps: 4,
        }
    }
}

/// One tracked site.
#[derive(Debug, Clone)]
pub struct SiteSeries {
    pub stream: StreamId,
    pub type_name: StringId,
    pub site: SiteId,
    pub stack: Option<StringId>,
    pub pending: u32,
    peak: u32,
    samples: Vec<u32>,
    pub first_init_ns: u64,
    /// The first resource of the site, with its trigger chain taken at its init.
    pub example: u64,
    pub chain: Vec<ChainLink>,
}

#[derive(Debug)]
struct StreamClock {
    slice_ns: u64,
    next_ns: u64,
    slices: usize,
    sites: Vec<u32>,
}

impl Default for StreamClock {
    // Why not derived: a clock with a zero slice never reaches `now`. Every clock, also one
    // created for a lower stream while resizing for a higher one, starts with a real slice.
    fn default() -> Self {
        StreamClock {
            slice_ns: FIRST_SLICE_NS,
            next_ns: FIRST_SLICE_NS,
            slices: 0,
            sites: Vec::new(),
        }
    }
}

/// The per-site series of all streams.
#[derive(Debug, Default)]
pub struct Growth {
    pub sites: Vec<SiteSeries>,
    index: FxMap<(StreamId, StringId, SiteId), u32>,
    clocks: Vec<StreamClock>,
}

impl Growth {
    /// The series of a site, created on first use (`chain` is called only then).
    pub fn site(
        &mut self,
        key: (StreamId, StringId, SiteId),
        stack: Option<StringId>,
        now: u64,
        example: u64,
        chain: impl FnOnce() -> Vec<ChainLink>,
    ) -> u32 {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = u32::try_from(self.sites.len()).unwrap_or(u32::MAX);
        let clock = self.clock(key.0);
        let slices = clock.slices;
        clock.sites.push(i);
        self.sites.push(SiteSeries {
            stream: key.0,
            type_name: key.1,
            site: key.2,
            stack,
            pending: 0,
            peak: 0,
            samples: vec![0; slices],
            first_init_ns: now,
            example,
            chain: chain(),
        });
        self.index.insert(key, i);
        i
    }

    fn clock(&mut self, stream: StreamId) -> &mut StreamClock {
        let s = stream as usize;
        if self.clocks.len() <= s {
            self.clocks.resize_with(s + 1, StreamClock::default);
        }
        &mut self.clocks[s]
    }

    /// Closes the slices of `stream` that ended before `now`.
    #[inline]
    pub fn tick(&mut self, stream: StreamId, now: u64) {
        match self.clocks.get(stream as usize) {
            Some(c) if now < c.next_ns => {}
            Some(_) => self.close_slices(stream, now),
            None => {}
        }
    }

    /// Loops at most `MAX_SLICES` times per doubling of the slice, so at most about
    /// 64 * `MAX_SLICES` times per call, whatever `now` is.
    fn close_slices(&mut self, stream: StreamId, now: u64) {
        let Some(c) = self.clocks.get_mut(stream as usize) else {
            return;
        };
        while now >= c.next_ns {
            for &i in &c.sites {
                if let Some(s) = self.sites.get_mut(i as usize) {
                    s.samples.push(s.peak);
                    s.peak = s.pending;
                }
            }
            c.slices += 1;
            c.next_ns = c.next_ns.saturating_add(c.slice_ns);
            if c.slices >= MAX_SLICES {
                for &i in &c.sites {
                    if let Some(s) = self.sites.get_mut(i as usize) {
                        let merged: Vec<u32> = s
                            .samples
                            .chunks(2)
                            .map(|p| p.iter().copied().max().unwrap_or(0))
                            .collect();
                        s.samples = merged;
                    }
                }
                c.slices = c.slices.div_ceil(2);
                // Why realign: the merged slices span twice the time from the stream's start.
                c.slice_ns = c.slice_ns.saturating_mul(2);
                c.next_ns = c.slice_ns.saturating_mul(c.slices as u64);
            }
            // Why: the slices only double, so `now` is reached within 64 doublings of 128
            // slices; at the end of the clock's range the last slice holds the rest.
            if c.next_ns == u64::MAX {
                break;
            }
        }
    }

    pub fn add(&mut self, i: u32) {
        if let Some(s) = self.sites.get_mut(i as usize) {
            s.pending += 1;
            s.peak = s.peak.max(s.pending);
        }
    }

    pub fn remove(&mut self, i: u32) {
        if let Some(s) = self.sites.get_mut(i as usize) {
            s.pending = s.pending.saturating_sub(1);
        }
    }

    /// Closes the stream's last slice and returns its sites that grew, with their bucket
    /// peaks.
    pub fn finish_stream(&mut self, stream: StreamId, rule: GrowthRule) -> Vec<(u32, Vec<u32>)> {
        let Some(c) = self.clocks.get_mut(stream as usize) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &i in &c.sites {
            let Some(s) = self.sites.get_mut(i as usize) else {
                continue;
            };
            s.samples.push(s.peak);
            if let Some(b) = buckets(&s.samples) {
                if grew(&b, rule) {
                    out.push((i, b));
                }
            }
        }
        out
    }
}

/// The series cut into [`BUCKETS`] parts, peak of each; `None` when too short.
fn buckets(samples: &[u32]) -> Option<Vec<u32>> {
    let n = samples.len();
    if n < BUCKETS {
        return None;
    }
    Some(
        (0..BUCKETS)
            .map(|b| {
                samples[b * n / BUCKETS..(b + 1) * n / BUCKETS]
                    .iter()
                    .copied()
                    .max()
                    .unwrap_or(0)
            })
            .collect(),
    )
}

fn grew(b: &[u32], rule: GrowthRule) -> bool {
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    b.windows(2).all(|w| w[1] >= w[0])
        && f64::from(last) >= rule.min_ratio * f64::from(first.max(1))
        && last.saturating_sub(first) >= rule.min_rise
        && b.windows(2).filter(|w| w[1] > w[0]).count() >= rule.min_steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rise_is_growth_and_a_plateau_is_not() {
        let rule = GrowthRule::default();
        let rise: Vec<u32> = (0..100).collect();
        assert!(grew(&buckets(&rise).unwrap(), rule));
        let flat = vec![50u32; 100];
        assert!(!grew(&buckets(&flat).unwrap(), rule));
        let mut dip = rise.clone();
        dip[55] = 0;
        dip[50..60].iter_mut().for_each(|x| *x = 3);
        assert!(!grew(&buckets(&dip).unwrap(), rule));
        let small: Vec<u32> = (0..100).map(|i| i / 20).collect();
        assert!(!grew(&buckets(&small).unwrap(), rule), "a rise of 4 is below min_rise");
        assert!(buckets(&[1, 2, 3]).is_none());
        let burst_at_the_end = [1, 1, 1, 1, 1, 1, 1, 1, 44, 100];
        assert!(!grew(&burst_at_the_end, rule), "a late burst rises in two buckets only");
    }

    /// Runs `f` on a thread and fails if it has not returned after a minute: a hang guard, so
    /// that a regression fails instead of blocking the test run (not a speed check).
    fn finishes<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("did not finish: the slice clock spins")
    }

    // See: "leaks never finishes" (a node --test run, a parent with two forked children).
    #[test]
    fn r10_a_clock_created_by_resizing_for_a_later_stream_advances() {
        let g = finishes(|| {
            let mut g = Growth::default();
            // A site in stream 2 first: clocks 0 and 1 are created by the resize.
            let i = g.site((2, 1, 0), None, 0, 5, Vec::new);
            g.add(i);
            g.tick(0, 5_500_000);
            g.tick(1, 3_000_000);
            g.tick(2, 20_000_000);
            g
        });
        assert_eq!(g.clocks[0].slices, 5);
        assert_eq!(g.clocks[1].slices, 3);
        assert_eq!(g.clocks[2].slices, 20);
        assert_eq!(g.sites[0].samples.len(), 20);
    }

    #[test]
    fn a_clock_reaches_any_timestamp_in_bounded_steps() {
        let g = finishes(|| {
            let mut g = Growth::default();
            let i = g.site((0, 1, 0), None, 0, 5, Vec::new);
            g.add(i);
            g.tick(0, 1 << 62);
            g.tick(0, u64::MAX);
            g
        });
        assert!(g.sites[0].samples.len() <= MAX_SLICES);
    }
}
