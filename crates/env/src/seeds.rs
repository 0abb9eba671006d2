//! Every seed of a run, derived from the run's one `[run] seed` in this one
//! place, each stream with its own salt so that no two share draws.
//!
//! ```text
//! run seed ─┬─ env_seed(run, i)              env i's reset seed (global index i)
//!           ├─ sampling_seed(run, i)         env i's action-sampling stream
//!           ├─ init_seed(run)                the network's initial weights
//!           ├─ shuffle_seed(run)             the learner's minibatch shuffles
//!           ├─ eval_seed(run) ── episode_seed(eval, k)   evaluation episode k
//!           ├─ replacement_seed(run, g)      a replaced worker's envs (generation g >= 1)
//!           └─ resume_seed(run, u)           envs of a run resumed after u updates
//!                                            without a snapshot
//! ```
//!
//! The global env index makes a run with its envs split over worker
//! processes step exactly the envs of the single-process run.

use crate::rng::derive_seed;

const SAMPLING_SALT: u64 = 0xA5A5_5A5A_C3C3_3C3C;
const INIT_SALT: u64 = 0x1A17_1A17_0000_0001;
const SHUFFLE_SALT: u64 = 0x5EED_0F5A;
const EVAL_SALT: u64 = 0xE7A1_0000_0000_0001;
const RESTART_SALT: u64 = 0x5E57_A27E_0000_0001;
const RESUME_SALT: u64 = 0x2E5E_3E00_0000_0001;

/// The reset seed of env `index` (its global index in the run) of envs
/// started from `base`.
pub fn env_seed(base: u64, index: u64) -> u64 {
    derive_seed(base, index)
}

/// The seed of env `index`'s action-sampling generator.
pub fn sampling_seed(base: u64, index: u64) -> u64 {
    derive_seed(base ^ SAMPLING_SALT, index)
}

/// The seed of the network's initial weights.
pub fn init_seed(run_seed: u64) -> u64 {
    run_seed ^ INIT_SALT
}

/// The seed of the learner's minibatch shuffles.
pub fn shuffle_seed(run_seed: u64) -> u64 {
    run_seed ^ SHUFFLE_SALT
}

/// The base seed of evaluation episodes, apart from every training env.
pub fn eval_seed(run_seed: u64) -> u64 {
    derive_seed(run_seed, EVAL_SALT)
}

/// The reset seed of evaluation episode `k`.
pub fn episode_seed(eval_base: u64, k: u64) -> u64 {
    derive_seed(eval_base, k)
}

/// The base seed a worker process of `generation` starts its envs with: the
/// run seed for the first process (so a split run reproduces a
/// single-process one), fresh streams for each replacement.
pub fn replacement_seed(run_seed: u64, generation: u32) -> u64 {
    if generation == 0 {
        run_seed
    } else {
        derive_seed(run_seed ^ RESTART_SALT, u64::from(generation))
    }
}

/// The base seed of envs resumed after `updates` updates when they had no
/// snapshot: fresh episodes, reproducible from the checkpoint.
pub fn resume_seed(run_seed: u64, updates: u64) -> u64 {
    derive_seed(run_seed ^ RESUME_SALT, updates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_of_one_run_do_not_collide() {
        let run = 7;
        let mut seen = std::collections::HashSet::new();
        for i in 0..64 {
            assert!(seen.insert(env_seed(run, i)));
            assert!(seen.insert(sampling_seed(run, i)));
            assert!(seen.insert(episode_seed(eval_seed(run), i)));
            assert!(seen.insert(resume_seed(run, i)));
        }
        for g in 1..64 {
            assert!(seen.insert(replacement_seed(run, g)));
        }
        assert_eq!(replacement_seed(run, 0), run);
        assert_ne!(init_seed(run), shuffle_seed(run));
    }
}
