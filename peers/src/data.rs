//! The data every store gets: keys `0..n` in a pseudo-random order, and
//! values that say which key and which write they belong to.
//!
//! A value is `key | version << 40`: a read checks the low 40 bits against
//! the key it asked for, whatever write put it there (`n` stays below 2^40).

/// Bits of a value that hold its key.
const KEY_BITS: u32 = 40;

/// The value a write of `version` stores under `key` (version 0: the load).
pub fn value(key: u64, version: u64) -> u64 {
    debug_assert!(key < 1 << KEY_BITS);
    key | (version & ((1 << (64 - KEY_BITS)) - 1)) << KEY_BITS
}

/// Whether `value` may be stored under `key`.
pub fn value_matches(key: u64, value: u64) -> bool {
    value & ((1 << KEY_BITS) - 1) == key
}

/// Aborts the whole run: a store returned a wrong value or lost a key.
pub fn wrong(what: std::fmt::Arguments<'_>) -> ! {
    eprintln!("WRONG: {what}");
    std::process::exit(3)
}

/// Checks a read of `key`; aborts the run on a missing key or a wrong value.
pub fn check(key: u64, got: Option<u64>) {
    match got {
        Some(v) if value_matches(key, v) => {}
        other => wrong(format_args!("get({key}) returned {other:?}")),
    }
}

/// splitmix64: a fast, well-mixed 64-bit generator (one state word).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform enough in `0..n` for a benchmark (`n` far below 2^64).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A permutation of `0..n` computed on demand, so no store's process holds
/// a table of 10M keys: a four-round Feistel network over the smallest even
/// number of bits covering `n`, walking the cycle until it lands below `n`
/// (fewer than four steps on average).
#[derive(Clone)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    seed: u64,
}

impl Permutation {
    pub fn new(n: u64, seed: u64) -> Permutation {
        let bits = 64 - n.max(2).saturating_sub(1).leading_zeros();
        Permutation { n, half_bits: bits.div_ceil(2), seed: mix(seed) }
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    /// The `i`-th key, `i < n`.
    pub fn at(&self, i: u64) -> u64 {
        debug_assert!(i < self.n);
        let mut x = i;
        loop {
            x = self.feistel(x);
            if x < self.n {
                return x;
            }
        }
    }

    fn feistel(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for round in 0..4u64 {
            let f = mix(right ^ self.seed.wrapping_add(round.wrapping_mul(0x9e37_79b9_7f4a_7c15))) & mask;
            (left, right) = (right, left ^ f);
        }
        (left << self.half_bits) | right
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_bijection() {
        for n in [1u64, 2, 3, 7, 1000, 4097] {
            let p = Permutation::new(n, 42);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let k = p.at(i);
                assert!(!seen[k as usize], "n={n}: {k} twice");
                seen[k as usize] = true;
            }
        }
    }

    #[test]
    fn values_carry_their_key() {
        assert!(value_matches(12, value(12, 0)));
        assert!(value_matches(12, value(12, 3)));
        assert!(!value_matches(13, value(12, 3)));
    }
}
