//! A fixed-size log2 histogram of durations: constant memory however many values it counts,
//! which is what a view that runs for hours needs. Percentiles are read to within a factor
//! of two (the bucket's upper bound), which is what a bar chart of durations can show anyway.

/// Buckets: [0, 1 µs), [1, 2) µs, [2, 4) µs, ... up to about 2^38 µs (three days).
pub const BUCKETS: usize = 40;

/// Counts of durations by power-of-two bucket of microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u64; BUCKETS],
    pub total: u64,
    pub max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
            total: 0,
            max_ns: 0,
        }
    }
}

impl Histogram {
    pub fn bucket_of(ns: u64) -> usize {
        let us = ns / 1000;
        if us == 0 {
            0
        } else {
            ((64 - us.leading_zeros()) as usize).min(BUCKETS - 1)
        }
    }

    /// Upper bound of a bucket, ns.
    pub fn upper_ns(bucket: usize) -> u64 {
        if bucket == 0 {
            1000
        } else {
            (1u64 << bucket).saturating_mul(1000)
        }
    }

    pub fn add(&mut self, ns: u64) {
        self.counts[Self::bucket_of(ns)] += 1;
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// The `p`-th percentile (0..=100) as the upper bound of its bucket, capped at the
    /// largest value seen; `None` when empty.
    pub fn percentile_ns(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let want = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(Self::upper_ns(i).min(self.max_ns));
            }
        }
        Some(self.max_ns)
    }

    /// The non-empty range of buckets (for drawing).
    pub fn used(&self) -> std::ops::Range<usize> {
        let first = self.counts.iter().position(|&c| c > 0).unwrap_or(0);
        let last = self.counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
        first..last.max(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_bucket_holding_them() {
        let mut h = Histogram::default();
        for _ in 0..90 {
            h.add(1_500); // 1.5 µs: bucket [1, 2) µs
        }
        for _ in 0..10 {
            h.add(40_000_000); // 40 ms
        }
        assert_eq!(h.percentile_ns(50.0), Some(2_000));
        assert_eq!(h.percentile_ns(99.0), Some(40_000_000));
        assert_eq!(h.used(), 1..17);
        assert_eq!(Histogram::default().percentile_ns(50.0), None);
    }
}
