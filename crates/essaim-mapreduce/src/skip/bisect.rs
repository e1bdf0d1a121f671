//! Bisection: which records of a failing task make it fail.
//!
//! The search knows nothing of files, mappers or processes: it asks a *probe* whether a
//! range of record indexes runs without failing, and narrows the failing ranges down to
//! single records. The task's shell (`crate::map_task`) probes by running a fresh mapper
//! over the range, its output thrown away; the tests here probe a pure function.
//!
//! The search, from a range the caller has seen fail as a whole:
//!
//! ```text
//!  [0, n) fails ──▶ probe [0, n/2) and [n/2, n) ──▶ each half that fails is searched
//!                                                   the same way, left half first
//!  a failing range of one record is a culprit; a failing range whose two halves both
//!  pass is *not separable*: no single record can be skipped to avoid its failure
//! ```
//!
//! **Deterministic.** The ranges probed depend only on the answers: halves are cut at
//! `start + len / 2` and searched depth first, left first, so the culprits come out in
//! record order and two attempts over the same input probe the same ranges.
//!
//! **Bounded.** A range is probed only as a half of a failing range that was split, and
//! every split range holds a culprit (one of its halves fails, down to a single record),
//! so the split ranges are ancestors of culprits: at most `k·⌈log2 n⌉` of them for `k`
//! culprits among `n` records, hence at most `2·k·⌈log2 n⌉` probes (one more when the
//! task has a single record). The ranges probed at one depth are disjoint and at most
//! `2k`, so the mapper sees at most about `n·(log2 k + 3)` records in all. The search
//! stops as soon as it finds one culprit more than [`Limits::max_culprits`] (the job's
//! budget), which bounds `k`, and after [`Limits::max_probes`] probes whatever it found.

use std::ops::Range;

/// What a probe of a range of records found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe<F> {
    /// Every record of the range ran without failure.
    Passed,
    /// The range failed, with what the failure said.
    Failed(F),
}

/// A record that fails on its own: its index among the task's records, and the
/// failure of the probe that ran it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Culprit<F> {
    /// Index of the record in the task (0-based, across the task's files).
    pub index: u64,
    /// What the probe of this record alone reported.
    pub failure: F,
}

/// How far a search may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Culprits accepted: the search stops at the next one.
    pub max_culprits: u64,
    /// Probes allowed in one search.
    pub max_probes: u32,
}

/// A search that ended with every culprit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolated<F> {
    /// The culprits, in record order.
    pub culprits: Vec<Culprit<F>>,
    /// Probes made.
    pub probes: u32,
}

/// Why a search ended without isolating the failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsolationError<F, A> {
    /// More records fail on their own than [`Limits::max_culprits`]: the first
    /// `max_culprits + 1` found, in record order.
    OverBudget {
        /// The culprits found.
        culprits: Vec<Culprit<F>>,
        /// Probes made.
        probes: u32,
    },
    /// [`Limits::max_probes`] probes were made before the search ended.
    OutOfProbes {
        /// The culprits found so far.
        culprits: Vec<Culprit<F>>,
        /// Probes made.
        probes: u32,
    },
    /// A range fails while each of its halves passes (or a single failing record
    /// passes alone): the failure needs records of both halves together, or is not
    /// reproducible, and skipping single records cannot avoid it.
    NotSeparable {
        /// The range that fails.
        range: Range<u64>,
        /// Probes made.
        probes: u32,
    },
    /// A probe could not tell (the input could not be read, the attempt was
    /// cancelled): the search stops with its reason.
    Aborted(A),
}

/// A range known to fail, with the failure its probe reported (`None` for the range
/// the caller saw fail, which was not probed here).
type Failing<F> = (Range<u64>, Option<F>);

/// Finds the records of `records` that fail on their own, by bisection (see the module
/// doc). The caller has seen the whole of `records` fail; `probe` runs a range and says
/// whether it fails. Returns the culprits in record order.
pub fn isolate<F, A>(
    records: Range<u64>,
    limits: Limits,
    mut probe: impl FnMut(Range<u64>) -> Result<Probe<F>, A>,
) -> Result<Isolated<F>, IsolationError<F, A>> {
    let mut search = Search {
        culprits: Vec::new(),
        probes: 0,
        limits,
    };
    if records.is_empty() {
        // Nothing to skip: the failure is not in any record.
        return Err(IsolationError::NotSeparable {
            range: records,
            probes: 0,
        });
    }
    // Depth first, left first: the stack holds failing ranges, the leftmost on top.
    let mut failing: Vec<Failing<F>> = vec![(records, None)];
    while let Some((range, known_failure)) = failing.pop() {
        if range.end - range.start == 1 {
            let failure = match known_failure {
                Some(failure) => failure,
                // Only the caller's range arrives here unprobed: confirm it alone.
                None => match search.probe(&mut probe, range.clone())? {
                    Probe::Failed(failure) => failure,
                    Probe::Passed => return Err(search.not_separable(range)),
                },
            };
            search.add_culprit(range.start, failure)?;
            continue;
        }
        let middle = range.start + (range.end - range.start) / 2;
        let left = range.start..middle;
        let right = middle..range.end;
        let left_probe = search.probe(&mut probe, left.clone())?;
        let right_probe = search.probe(&mut probe, right.clone())?;
        let mut halves_failing = 0;
        // Pushed right first, so that the left half is searched first.
        for (half, outcome) in [(right, right_probe), (left, left_probe)] {
            if let Probe::Failed(failure) = outcome {
                failing.push((half, Some(failure)));
                halves_failing += 1;
            }
        }
        if halves_failing == 0 {
            return Err(search.not_separable(range));
        }
    }
    Ok(Isolated {
        culprits: search.culprits,
        probes: search.probes,
    })
}

/// The state of one search: what it found and what it spent.
struct Search<F> {
    culprits: Vec<Culprit<F>>,
    probes: u32,
    limits: Limits,
}

impl<F> Search<F> {
    /// Probes `range`, unless the probes are spent.
    fn probe<A>(
        &mut self,
        probe: &mut impl FnMut(Range<u64>) -> Result<Probe<F>, A>,
        range: Range<u64>,
    ) -> Result<Probe<F>, IsolationError<F, A>> {
        if self.probes >= self.limits.max_probes {
            return Err(IsolationError::OutOfProbes {
                culprits: std::mem::take(&mut self.culprits),
                probes: self.probes,
            });
        }
        self.probes += 1;
        probe(range).map_err(IsolationError::Aborted)
    }

    /// Records a culprit; stops the search when it is one too many.
    fn add_culprit<A>(&mut self, index: u64, failure: F) -> Result<(), IsolationError<F, A>> {
        self.culprits.push(Culprit { index, failure });
        if self.culprits.len() as u64 > self.limits.max_culprits {
            return Err(IsolationError::OverBudget {
                culprits: std::mem::take(&mut self.culprits),
                probes: self.probes,
            });
        }
        Ok(())
    }

    fn not_separable<A>(&self, range: Range<u64>) -> IsolationError<F, A> {
        IsolationError::NotSeparable {
            range,
            probes: self.probes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use essaim_core::rng::SeededRng;

    use super::*;

    const GENEROUS: Limits = Limits {
        max_culprits: 1_000,
        max_probes: 100_000,
    };

    /// A pure "task": it fails on any of `bad` records, naming the first it meets.
    fn fails_on(bad: &BTreeSet<u64>) -> impl FnMut(Range<u64>) -> Result<Probe<u64>, ()> + '_ {
        move |range| {
            Ok(match bad.range(range).next() {
                Some(first) => Probe::Failed(*first),
                None => Probe::Passed,
            })
        }
    }

    fn ceil_log2(n: u64) -> u32 {
        if n <= 1 {
            0
        } else {
            64 - (n - 1).leading_zeros()
        }
    }

    #[test]
    fn every_bad_record_is_found_in_order_within_two_k_log_n_probes() {
        for seed in 0..2_000u64 {
            let mut rng = SeededRng::new(seed);
            let n = 1 + rng.below(5_000);
            let k = rng.below(7).min(n);
            let mut bad = BTreeSet::new();
            while (bad.len() as u64) < k {
                bad.insert(rng.below(n));
            }
            if bad.is_empty() {
                continue;
            }
            let isolated = isolate(0..n, GENEROUS, fails_on(&bad))
                .unwrap_or_else(|error| panic!("seed {seed}, n {n}, bad {bad:?}: {error:?}"));
            let found: Vec<u64> = isolated.culprits.iter().map(|c| c.index).collect();
            assert_eq!(
                found,
                bad.iter().copied().collect::<Vec<_>>(),
                "seed {seed}"
            );
            for culprit in &isolated.culprits {
                assert_eq!(culprit.failure, culprit.index, "its own probe's failure");
            }
            let bound = 2 * k as u32 * ceil_log2(n) + u32::from(n == 1);
            assert!(
                isolated.probes <= bound,
                "seed {seed}: {} probes for k = {k}, n = {n} (bound {bound})",
                isolated.probes
            );
        }
    }

    #[test]
    fn the_search_probes_the_same_ranges_every_time() {
        let bad: BTreeSet<u64> = [3, 700, 701, 999].into();
        let trace = || {
            let mut probed = Vec::new();
            let mut inner = fails_on(&bad);
            let isolated = isolate(0..1_000, GENEROUS, |range: Range<u64>| {
                probed.push(range.clone());
                inner(range)
            })
            .unwrap();
            (probed, isolated)
        };
        let (first_ranges, first) = trace();
        let (second_ranges, second) = trace();
        assert_eq!(first_ranges, second_ranges);
        assert_eq!(first, second);
        assert_eq!(
            first_ranges[..2],
            [0..500, 500..1_000],
            "halves, left first"
        );
    }

    #[test]
    fn one_culprit_over_the_budget_stops_the_search_with_the_first_ones() {
        let bad: BTreeSet<u64> = [10, 20, 30, 40, 50].into();
        let limits = Limits {
            max_culprits: 2,
            max_probes: 100_000,
        };
        let Err(IsolationError::OverBudget { culprits, probes }) =
            isolate(0..64, limits, fails_on(&bad))
        else {
            panic!("the budget of 2 was not enforced");
        };
        let found: Vec<u64> = culprits.iter().map(|c| c.index).collect();
        assert_eq!(found, [10, 20, 30]);
        assert!(probes <= 2 * 3 * 6, "{probes} probes");
    }

    #[test]
    fn a_budget_of_zero_stops_at_the_first_culprit() {
        let bad: BTreeSet<u64> = [5].into();
        let limits = Limits {
            max_culprits: 0,
            max_probes: 100,
        };
        let result = isolate(0..8, limits, fails_on(&bad));
        assert!(
            matches!(&result, Err(IsolationError::OverBudget { culprits, .. }) if culprits.len() == 1),
            "{result:?}"
        );
    }

    #[test]
    fn a_failure_that_needs_two_records_together_is_not_separable() {
        // Fails only when records 3 and 12 run in the same probe.
        let pair = |range: Range<u64>| -> Result<Probe<&str>, ()> {
            Ok(if range.contains(&3) && range.contains(&12) {
                Probe::Failed("both")
            } else {
                Probe::Passed
            })
        };
        let result = isolate(0..16, GENEROUS, pair);
        assert_eq!(
            result,
            Err(IsolationError::NotSeparable {
                range: 0..16,
                probes: 2
            })
        );
    }

    #[test]
    fn a_single_record_task_is_confirmed_alone_and_a_passing_one_is_not_separable() {
        let bad: BTreeSet<u64> = [0].into();
        let isolated = isolate(0..1, GENEROUS, fails_on(&bad)).unwrap();
        assert_eq!(
            isolated.culprits,
            [Culprit {
                index: 0,
                failure: 0
            }]
        );
        assert_eq!(isolated.probes, 1);
        let none = BTreeSet::new();
        assert!(matches!(
            isolate(0..1, GENEROUS, fails_on(&none)),
            Err(IsolationError::NotSeparable { .. })
        ));
        assert!(matches!(
            isolate(0..0, GENEROUS, fails_on(&none)),
            Err(IsolationError::NotSeparable { .. })
        ));
    }

    #[test]
    fn the_probe_cap_ends_the_search_with_what_it_found() {
        let bad: BTreeSet<u64> = (0..100).map(|index| index * 10).collect();
        let limits = Limits {
            max_culprits: 1_000,
            max_probes: 40,
        };
        let Err(IsolationError::OutOfProbes { culprits, probes }) =
            isolate(0..1_000, limits, fails_on(&bad))
        else {
            panic!("the probe cap was not enforced");
        };
        assert_eq!(probes, 40);
        assert!(!culprits.is_empty() && culprits.len() < 100);
        assert_eq!(culprits[0].index, 0);
    }

    #[test]
    fn a_probe_that_cannot_run_stops_the_search_with_its_reason() {
        let result: Result<Isolated<()>, _> =
            isolate(0..100, GENEROUS, |_range| Err("input unreadable"));
        assert_eq!(result, Err(IsolationError::Aborted("input unreadable")));
    }
}
