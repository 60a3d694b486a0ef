//! A multiset of 64-bit values held in about a byte or two each, for exact
//! medians and percentiles of a whole day.
//!
//! `device_health` needs every transit time of a device's day (exact p50/p95)
//! and, for a device with no history, every interval (exact median). At plant
//! scale that was 43 M values a day of each, 4 bytes apiece (173 MB), grown
//! hour by hour and held to the date's end. Here values wait in a small buffer;
//! every [`RUN`] of them is sorted and kept as the first value and the
//! differences between neighbours, each a LEB128 varint (`integer-encoding`):
//! neighbours in a sorted run of intervals or transit times are microseconds
//! apart, so most differences take one or two bytes. [`SortedRuns::sorted`]
//! decodes every run and merges them (a stable sort finds the runs);
//! [`SortedRuns::values`] decodes them for a selection (a median);
//! [`SortedRuns::prefix_medians`] gives the median of the first runs at several
//! marks (a device's intervals known at each hour's end).

use integer_encoding::VarInt;

/// Values sorted and encoded together: big enough that neighbours are close,
/// small enough that the buffer of 500 devices stays a few MB.
const RUN: usize = 4096;

/// Values in sorted, delta-encoded runs, plus those not yet in one.
#[derive(Debug, Clone, Default)]
pub struct SortedRuns {
    runs: Vec<Box<[u8]>>,
    /// Values in `runs`.
    encoded: usize,
    pending: Vec<i64>,
}

impl SortedRuns {
    pub fn push(&mut self, value: i64) {
        self.pending.push(value);
        if self.pending.len() == RUN {
            self.seal();
        }
    }

    /// Encodes the values waiting, if any, as one run.
    pub fn seal(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut values = std::mem::take(&mut self.pending);
        values.sort_unstable();
        self.encoded += values.len();
        self.runs.push(encode(&values));
    }

    pub fn len(&self) -> usize {
        self.encoded + self.pending.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> Vec<i64> {
        let mut all = Vec::with_capacity(self.len());
        for run in &self.runs {
            decode_into(run, &mut all);
        }
        all.extend(&self.pending);
        all
    }

    /// Every value, ascending.
    pub fn sorted(&self) -> Vec<i64> {
        let mut all = self.values();
        // Stable sort: it finds the sorted runs and merges them.
        all.sort();
        all
    }

    /// Runs sealed so far (after [`SortedRuns::seal`], every value is in one).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// The median of the values in the first `n` runs, for each `n` of `ends`.
    /// Each run is decoded once; a median is then selected across the sorted runs
    /// by bisecting on the value (a count per run by binary search), so it costs
    /// about 64 counts per run, not a pass over every value before it.
    pub fn prefix_medians(&self, ends: &[usize]) -> Vec<Option<f64>> {
        let last = ends.iter().copied().max().unwrap_or(0).min(self.runs.len());
        let decoded: Vec<Vec<i64>> = self.runs[..last]
            .iter()
            .map(|r| {
                let mut run = Vec::new();
                decode_into(r, &mut run);
                run
            })
            .collect();
        ends.iter()
            .map(|&end| {
                let runs = &decoded[..end.min(last)];
                let n: usize = runs.iter().map(Vec::len).sum();
                if n == 0 {
                    return None;
                }
                let hi = nth_of_sorted_runs(runs, n / 2) as f64;
                if n % 2 == 1 {
                    return Some(hi);
                }
                Some((nth_of_sorted_runs(runs, n / 2 - 1) as f64 + hi) / 2.0)
            })
            .collect()
    }

    /// Bytes held (the runs, and the buffer at its capacity).
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.runs.iter().map(|r| r.len()).sum::<usize>() + self.pending.capacity() * 8
    }
}

/// The `j`-th smallest (from 0) of the values of `runs`, each ascending (`j` below
/// their count): the smallest value that more than `j` of them are at most.
fn nth_of_sorted_runs(runs: &[Vec<i64>], j: usize) -> i64 {
    let non_empty = || runs.iter().filter(|r| !r.is_empty());
    let mut lo = non_empty().map(|r| r[0]).min().unwrap_or(0);
    let mut hi = non_empty().map(|r| r[r.len() - 1]).max().unwrap_or(0);
    while lo < hi {
        // The floor of the midpoint, in i128: lo and hi may be i64's extremes.
        let mid = ((i128::from(lo) + i128::from(hi)).div_euclid(2)) as i64;
        let at_most: usize = runs.iter().map(|r| r.partition_point(|&x| x <= mid)).sum();
        if at_most > j {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// The first value (zigzag), then each difference to the one before (non-negative).
fn encode(sorted: &[i64]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(sorted.len() * 2);
    let mut buf = [0u8; 10];
    let mut previous = None;
    for &v in sorted {
        let n = match previous {
            None => v.encode_var(&mut buf),
            // Sorted, so `v - previous` is in 0..=u64::MAX even when it overflows i64.
            Some(p) => (v as u64).wrapping_sub(p as u64).encode_var(&mut buf),
        };
        out.extend_from_slice(&buf[..n]);
        previous = Some(v);
    }
    out.into_boxed_slice()
}

fn decode_into(mut run: &[u8], out: &mut Vec<i64>) {
    let Some((first, n)) = i64::decode_var(run) else {
        return;
    };
    out.push(first);
    run = &run[n..];
    let mut previous = first;
    while let Some((delta, n)) = u64::decode_var(run) {
        previous = (previous as u64).wrapping_add(delta) as i64;
        out.push(previous);
        run = &run[n..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so the test needs no crate.
    fn values(seed: u64, n: usize, spread: i64) -> Vec<i64> {
        let mut x = seed;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match i % 97 {
                    // The extremes, and far outliers, now and then.
                    0 => i64::MIN,
                    1 => i64::MAX,
                    2 => -(x as i64 >> 8),
                    _ => (x % spread as u64) as i64 - spread / 3,
                }
            })
            .collect()
    }

    #[test]
    fn prefix_medians_are_the_medians_of_the_first_runs() {
        let all = values(7, 20_000, 5_000);
        let mut runs = SortedRuns::default();
        let mut ends = Vec::new();
        let mut pushed = Vec::new();
        // Sealed at uneven points (an hour's end), a run holding at most RUN values.
        for (k, chunk) in all.chunks(5_001).enumerate() {
            for &v in chunk {
                runs.push(v);
            }
            runs.seal();
            pushed.push(chunk.len());
            if k % 2 == 0 {
                ends.push(runs.run_count());
            }
        }
        ends.push(runs.run_count());
        // By the definition: the median of every value pushed before that seal, sorted afresh.
        let mut counted = Vec::new();
        let mut total = 0;
        for (k, n) in pushed.iter().enumerate() {
            total += n;
            if k % 2 == 0 {
                counted.push(total);
            }
        }
        counted.push(total);
        let want: Vec<Option<f64>> = counted
            .iter()
            .map(|&n| {
                let mut xs = all[..n].to_vec();
                xs.sort();
                let m = xs.len();
                Some(if m % 2 == 1 {
                    xs[m / 2] as f64
                } else {
                    (xs[m / 2 - 1] as f64 + xs[m / 2] as f64) / 2.0
                })
            })
            .collect();
        assert_eq!(runs.prefix_medians(&ends), want);
        assert_eq!(runs.prefix_medians(&[0]), [None]);
    }

    #[test]
    fn every_value_comes_back_sorted_whatever_the_runs() {
        for (seed, n) in [
            (1, 0),
            (2, 1),
            (3, RUN - 1),
            (4, RUN),
            (5, RUN + 1),
            (6, 3 * RUN + 17),
        ] {
            let input = values(seed, n, 4_000_000);
            let mut runs = SortedRuns::default();
            for (i, &v) in input.iter().enumerate() {
                runs.push(v);
                if i % 1000 == 999 {
                    runs.seal(); // the runs need not be of one length
                }
            }
            let mut want = input.clone();
            want.sort_unstable();
            assert_eq!(runs.len(), n);
            let mut unordered = runs.values();
            unordered.sort_unstable();
            assert_eq!(unordered, want, "seed {seed}, {n} values");
            assert_eq!(runs.sorted(), want, "seed {seed}, {n} values");
        }
    }

    #[test]
    fn close_values_take_about_a_byte_or_two() {
        // Transit times of a day: about 2 s, give or take a second, in µs.
        let spread = 2_000_000;
        let input: Vec<i64> = values(9, 40 * RUN, spread)
            .into_iter()
            .filter(|v| (-spread..spread).contains(v))
            .collect();
        let mut runs = SortedRuns::default();
        input.iter().for_each(|&v| runs.push(v));
        runs.seal();
        let per_value = runs.held_bytes() as f64 / input.len() as f64;
        assert!(per_value < 2.1, "{per_value} bytes a value");
    }
}
