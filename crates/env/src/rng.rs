//! The seedable random number generator of every draw in a run: envs,
//! action sampling, initial weights, minibatch shuffles.
//!
//! Xoshiro256++ seeded through SplitMix64, from `rand_xoshiro`, with
//! `rand`'s uniform floats and `rand_distr`'s normal. It is not NumPy's
//! PCG64, so seeds do not reproduce Gymnasium's draws; the distributions are
//! the same and the golden tests set states explicitly.

use rand::{Rng as _, RngExt as _, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// One SplitMix64 step: a bijective mix of 64 bits.
#[inline]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of env number `index` in a set of envs started from `base_seed`.
///
/// Distinct indices give distinct seeds (the map is a bijection for a fixed
/// base), and neighbouring base seeds do not share any env seed the way
/// `base + index` would.
pub fn derive_seed(base_seed: u64, index: u64) -> u64 {
    let mut state = base_seed ^ 0x6A09_E667_F3BC_C909;
    let base_mix = splitmix64(&mut state);
    let mut index_state = index;
    base_mix ^ splitmix64(&mut index_state)
}

/// Xoshiro256++ (`rand_xoshiro`), seeded through SplitMix64, with its
/// position readable and settable for snapshots and checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng(Xoshiro256PlusPlus);

impl Rng {
    /// A generator whose whole stream is fixed by `seed` (SplitMix64 fills
    /// the state, as Xoshiro's authors recommend).
    pub fn from_seed(seed: u64) -> Self {
        Rng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// A generator seeded from the operating system's entropy, for envs
    /// reset without a seed before they were ever seeded (as Gymnasium does).
    pub fn from_entropy() -> Self {
        use std::collections::hash_map::RandomState;
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x5EED);
        Rng::from_seed(hasher.finish())
    }

    /// The generator's position in its stream, for snapshots. (The crate
    /// shows its state only through serde.)
    pub fn state(&self) -> [u64; 4] {
        let words = serde_json::to_value(&self.0)
            .ok()
            .and_then(|v| serde_json::from_value::<State>(v).ok());
        match words {
            Some(State { s }) => s,
            None => unreachable!("Xoshiro256PlusPlus serialises as {{\"s\": [u64; 4]}}"),
        }
    }

    /// A generator at a position taken with [`Rng::state`]; `None` for the
    /// all-zero state, which Xoshiro can never be in.
    pub fn from_state(s: [u64; 4]) -> Option<Self> {
        if s == [0; 4] {
            return None;
        }
        let mut seed = [0u8; 32];
        for (chunk, word) in seed.chunks_exact_mut(8).zip(s) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        Some(Rng(Xoshiro256PlusPlus::from_seed(seed)))
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A float64 uniform in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// A float64 uniform in `[low, high)`, computed as NumPy's `uniform` does.
    #[inline]
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }

    /// A standard normal draw (`rand_distr`'s ziggurat).
    #[inline]
    pub fn standard_normal(&mut self) -> f64 {
        StandardNormal.sample(&mut self.0)
    }
}

/// Xoshiro256PlusPlus's serde form.
#[derive(serde::Deserialize)]
struct State {
    s: [u64; 4],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_stream_and_different_seeds_differ() {
        let mut a = Rng::from_seed(7);
        let mut b = Rng::from_seed(7);
        let mut c = Rng::from_seed(8);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn a_generator_continues_exactly_from_its_state() {
        let mut a = Rng::from_seed(3);
        for _ in 0..5 {
            a.next_u64();
        }
        let mut b = Rng::from_state(a.state()).unwrap();
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_eq!(a, b);
        assert!(Rng::from_state([0; 4]).is_none());
    }

    #[test]
    fn the_stream_is_xoshiro256plusplus_seeded_by_splitmix64() {
        // The reference algorithm, written out: the crate must match it.
        let seed = 42;
        let mut state = seed;
        let mut s = [0u64; 4];
        for word in &mut s {
            *word = splitmix64(&mut state);
        }
        let mut rng = Rng::from_seed(seed);
        assert_eq!(rng.state(), s);
        for _ in 0..100 {
            let expected = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
            let t = s[1] << 17;
            s[2] ^= s[0];
            s[3] ^= s[1];
            s[1] ^= s[2];
            s[0] ^= s[3];
            s[2] ^= t;
            s[3] = s[3].rotate_left(45);
            assert_eq!(rng.next_u64(), expected);
        }
    }

    #[test]
    fn standard_normal_draws_have_mean_0_and_variance_1() {
        let mut rng = Rng::from_seed(9);
        let n = 100_000;
        let draws: Vec<f64> = (0..n).map(|_| rng.standard_normal()).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
    }

    #[test]
    fn uniform_stays_in_its_interval_and_covers_it() {
        let mut rng = Rng::from_seed(1);
        let draws: Vec<f64> = (0..10_000).map(|_| rng.uniform(-0.05, 0.05)).collect();
        assert!(draws.iter().all(|x| (-0.05..0.05).contains(x)));
        let min = draws.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = draws.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert!(min < -0.049 && max > 0.049, "min {min} max {max}");
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.002, "mean {mean}");
    }

    #[test]
    fn derived_seeds_are_distinct_and_deterministic() {
        let seeds: Vec<u64> = (0..1000).map(|i| derive_seed(42, i)).collect();
        let mut sorted = seeds.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), seeds.len());
        assert_eq!(seeds[5], derive_seed(42, 5));
        assert_ne!(derive_seed(42, 1), derive_seed(43, 0));
    }
}
