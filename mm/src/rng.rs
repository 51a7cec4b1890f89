//! The one pseudo-random generator of the project (xorshift64*): failure
//! injection, the in-kernel stress test and the benchmarks' workloads all
//! draw from it, so a printed seed repeats a run exactly.
#![forbid(unsafe_code)]

/// xorshift64* (Marsaglia's xorshift with Vigna's multiplier): fast, no
/// allocation, good enough for workloads; not for anything secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XorShift {
    state: u64,
}

impl XorShift {
    /// A generator started from `seed` (0, which xorshift cannot leave,
    /// is replaced by a fixed odd constant).
    pub const fn new(seed: u64) -> Self {
        Self {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (`bound` > 0), from the well-mixed high bits.
    pub fn below(&mut self, bound: u64) -> u64 {
        (self.next_u64() >> 33) % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_from_a_seed_and_covers_the_range() {
        let draw = |seed| {
            let mut rng = XorShift::new(seed);
            (0..1000).map(|_| rng.below(10)).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
        let mut counts = [0; 10];
        for value in draw(9) {
            counts[value as usize] += 1;
        }
        assert!(
            counts.iter().all(|&count| (60..140).contains(&count)),
            "{counts:?}"
        );
        assert_ne!(XorShift::new(0).next_u64(), 0);
    }
}
