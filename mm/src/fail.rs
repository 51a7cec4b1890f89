//! Failure injection: make an allocation that can fail fail, on purpose,
//! at a chosen call, so every error path can be proven to report the
//! failure and leave nothing behind (SQLite's out-of-memory testing and
//! Linux's `fail_page_alloc` are the models).
//!
//! A [`FailPoint`] sits in front of an allocator (the PMM's frame
//! allocator has one; [`FailingGrow`] puts one in front of any heap growth
//! hook; host tests put one in their fake RAM). Disarmed it costs one
//! predictable branch. Armed with a [`FailPlan`] it counts calls and says
//! which to fail: the Nth, every Nth, or one in N at random from a seed.
#![forbid(unsafe_code)]

use core::fmt;

use crate::heap::Grow;
use crate::rng::XorShift;

/// Which calls of a [`FailPoint`] fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailPlan {
    /// None (the default).
    #[default]
    Off,
    /// Only the Nth call after arming (1-based).
    Nth(u64),
    /// Every Nth call (N > 0).
    Every(u64),
    /// Each call with probability 1/N, from a seeded generator.
    Random {
        /// One failure in `one_in` calls on average (> 0).
        one_in: u64,
        /// Seed of the generator (printed, so a run can be repeated).
        seed: u64,
    },
}

impl FailPlan {
    /// Parses `nth=N`, `every=N` or `random=N` with an optional `,seed=S`
    /// (the part after `pmm:` in the kernel's `fail=pmm:every=97`).
    pub fn parse(text: &str) -> Option<FailPlan> {
        let (rule, seed) = match text.split_once(",seed=") {
            Some((rule, seed)) => (rule, Some(seed.parse::<u64>().ok()?)),
            None => (text, None),
        };
        let (kind, count) = rule.split_once('=')?;
        let count = count.parse::<u64>().ok().filter(|&count| count > 0)?;
        match (kind, seed) {
            ("nth", None) => Some(FailPlan::Nth(count)),
            ("every", None) => Some(FailPlan::Every(count)),
            ("random", seed) => Some(FailPlan::Random {
                one_in: count,
                seed: seed.unwrap_or(1),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for FailPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailPlan::Off => f.write_str("off"),
            FailPlan::Nth(n) => write!(f, "nth={n}"),
            FailPlan::Every(n) => write!(f, "every={n}"),
            FailPlan::Random { one_in, seed } => write!(f, "random={one_in},seed={seed}"),
        }
    }
}

/// A place where allocations can be made to fail (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct FailPoint {
    plan: FailPlan,
    calls: u64,
    injected: u64,
    rng: XorShift,
}

impl Default for FailPoint {
    fn default() -> Self {
        Self::off()
    }
}

impl FailPoint {
    /// A disarmed point.
    pub const fn off() -> Self {
        Self {
            plan: FailPlan::Off,
            calls: 0,
            injected: 0,
            rng: XorShift::new(0),
        }
    }

    /// Arms the point with `plan`, counting calls from zero again.
    pub fn arm(&mut self, plan: FailPlan) {
        let seed = match plan {
            FailPlan::Random { seed, .. } => seed,
            _ => 0,
        };
        *self = Self {
            plan,
            calls: 0,
            injected: 0,
            rng: XorShift::new(seed),
        };
    }

    /// Called once per allocation attempt: whether this one must fail.
    #[inline]
    pub fn hit(&mut self) -> bool {
        if self.plan == FailPlan::Off {
            return false;
        }
        self.hit_armed()
    }

    #[cold]
    fn hit_armed(&mut self) -> bool {
        self.calls += 1;
        let fail = match self.plan {
            FailPlan::Off => false,
            FailPlan::Nth(n) => self.calls == n,
            FailPlan::Every(n) => self.calls.is_multiple_of(n),
            FailPlan::Random { one_in, .. } => self.rng.below(one_in) == 0,
        };
        self.injected += u64::from(fail);
        fail
    }

    /// The plan armed.
    pub fn plan(&self) -> FailPlan {
        self.plan
    }

    /// Calls counted since arming.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Failures injected since arming.
    pub fn injected(&self) -> u64 {
        self.injected
    }
}

/// A heap growth hook with a [`FailPoint`] in front.
pub struct FailingGrow<G: Grow> {
    /// The hook that does the growing.
    pub inner: G,
    /// When to refuse instead.
    pub point: FailPoint,
}

impl<G: Grow> Grow for FailingGrow<G> {
    fn grow(&mut self, current_end: usize, bytes: usize) -> bool {
        !self.point.hit() && self.inner.grow(current_end, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(plan: FailPlan, calls: usize) -> Vec<usize> {
        let mut point = FailPoint::off();
        point.arm(plan);
        (1..=calls).filter(|_| point.hit()).collect()
    }

    #[test]
    fn plans_fail_the_calls_they_name() {
        assert_eq!(failures(FailPlan::Off, 50), Vec::<usize>::new());
        assert_eq!(failures(FailPlan::Nth(7), 50), vec![7]);
        assert_eq!(failures(FailPlan::Every(20), 50), vec![20, 40]);
        let random = failures(
            FailPlan::Random {
                one_in: 10,
                seed: 42,
            },
            10_000,
        );
        assert!((800..1200).contains(&random.len()), "{}", random.len());
        assert_eq!(
            random,
            failures(
                FailPlan::Random {
                    one_in: 10,
                    seed: 42
                },
                10_000
            )
        );
        assert_ne!(
            random,
            failures(
                FailPlan::Random {
                    one_in: 10,
                    seed: 43
                },
                10_000
            )
        );
    }

    #[test]
    fn counts_calls_and_injections() {
        let mut point = FailPoint::off();
        assert!(!point.hit());
        assert_eq!(point.calls(), 0, "a disarmed point counts nothing");
        point.arm(FailPlan::Every(3));
        for _ in 0..9 {
            point.hit();
        }
        assert_eq!((point.calls(), point.injected()), (9, 3));
    }

    #[test]
    fn parses_the_command_line_forms() {
        assert_eq!(FailPlan::parse("nth=5"), Some(FailPlan::Nth(5)));
        assert_eq!(FailPlan::parse("every=97"), Some(FailPlan::Every(97)));
        assert_eq!(
            FailPlan::parse("random=1000,seed=7"),
            Some(FailPlan::Random {
                one_in: 1000,
                seed: 7
            })
        );
        assert_eq!(
            FailPlan::parse("random=3"),
            Some(FailPlan::Random { one_in: 3, seed: 1 })
        );
        for bad in [
            "every=0",
            "nth",
            "sometimes=3",
            "every=x",
            "nth=2,seed=1",
            "",
        ] {
            assert_eq!(FailPlan::parse(bad), None, "{bad}");
        }
        for plan in [
            FailPlan::Nth(5),
            FailPlan::Every(97),
            FailPlan::Random { one_in: 9, seed: 4 },
        ] {
            assert_eq!(FailPlan::parse(&plan.to_string()), Some(plan));
        }
    }
}
