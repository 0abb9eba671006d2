//! Data-parallel PPO (`rl_algo::exchange`) on both gradient engines: one
//! rank changes nothing, ranks hold identical weights after every update,
//! and two ranks with the same experience take exactly one rank's steps.
//! The ranks here are threads exchanging through memory; the same code
//! runs over MPI in `crates/cli/tests/mpi.rs`.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use std::sync::{Arc, Barrier, Mutex};

use rl_algo::algorithm::{Algorithm, RunSpec};
use rl_algo::engine::gradient::{Backend, Device};
use rl_algo::exchange::{Exchange, ExchangeError, SingleRank};
use rl_algo::ppo::config::PpoConfig;
use rl_algo::ppo::learner::PpoLearner;
use rl_env::Registry;
use rl_policy::{ActionHead, Activation, Policy, PolicySpec, RolloutCollector};

const ENVS: usize = 2;
const UPDATES: u64 = 3;
const TARGET_KL: f64 = 1e-7;

fn spec() -> (PolicySpec, PpoConfig) {
    let spec = PolicySpec {
        obs_dim: 3,
        head: ActionHead::Gaussian { dim: 1 },
        actor_hidden: vec![16, 16],
        critic_hidden: vec![16, 16],
        activation: Activation::Tanh,
    };
    let config = PpoConfig {
        num_steps: 32,
        num_minibatches: 4,
        update_epochs: 2,
        // Small enough to end some updates after their first epoch: the
        // ranks' mean approx_kl decides, on every rank alike.
        target_kl: Some(TARGET_KL),
        ..PpoConfig::default()
    };
    (spec, config)
}

fn run(ranks: usize, normalise: bool) -> RunSpec {
    RunSpec {
        obs_norm_clip: normalise.then_some(10.0),
        reward_scale_clip: normalise.then_some(10.0),
        ..RunSpec::new(ENVS, (ranks * ENVS) as u64 * 32 * UPDATES, 11)
    }
}

/// Trains rank `rank` (envs from global index `first_env`) for `UPDATES`
/// updates; returns the weights after each update (and, last, the epochs
/// each update ran, as two floats per update in one more entry).
fn train(
    backend: Backend,
    exchange: Option<Box<dyn Exchange>>,
    ranks: usize,
    first_env: usize,
    normalise: bool,
) -> Vec<Vec<f32>> {
    let (spec, config) = spec();
    let envs = Registry::with_builtins()
        .make_vec("Pendulum-v1", ENVS)
        .unwrap();
    let mut learner = PpoLearner::new(
        spec.clone(),
        config.clone(),
        &run(ranks, normalise),
        backend,
    )
    .unwrap();
    if let Some(x) = exchange {
        learner.set_exchange(x).unwrap();
    }
    assert_eq!(Algorithm::num_updates(&learner), UPDATES);
    let mut collector =
        RolloutCollector::new(envs, Policy::new(spec).unwrap(), 11, first_env as u64).unwrap();
    let mut after = Vec::new();
    let mut epochs = Vec::new();
    for _ in 0..UPDATES {
        collector
            .set_policy(&learner.policy_weights(), learner.obs_norm.clone())
            .unwrap();
        let rollout = collector.collect(config.num_steps).unwrap();
        let stats = learner.update(&rollout, &|| false).unwrap();
        epochs.push(stats.epochs as f32);
        after.push(learner.policy_weights().into_owned());
    }
    after.push(epochs);
    after
}

/// Ranks as threads: each collective puts this rank's values in its slot,
/// waits for every rank, and reads all slots in rank order.
struct ThreadRank {
    rank: usize,
    slots: Arc<Mutex<Vec<Vec<f64>>>>,
    barrier: Arc<Barrier>,
}

impl ThreadRank {
    fn all(ranks: usize) -> Vec<ThreadRank> {
        let slots = Arc::new(Mutex::new(vec![Vec::new(); ranks]));
        let barrier = Arc::new(Barrier::new(ranks));
        (0..ranks)
            .map(|rank| ThreadRank {
                rank,
                slots: slots.clone(),
                barrier: barrier.clone(),
            })
            .collect()
    }

    fn exchange(&mut self, mine: Vec<f64>) -> Vec<Vec<f64>> {
        self.slots.lock().unwrap()[self.rank] = mine;
        self.barrier.wait();
        let all = self.slots.lock().unwrap().clone();
        self.barrier.wait();
        all
    }
}

impl Exchange for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn ranks(&self) -> usize {
        self.slots.lock().unwrap().len()
    }
    fn sum_f32(&mut self, values: &mut [f32]) -> Result<(), ExchangeError> {
        let all = self.exchange(values.iter().map(|v| f64::from(*v)).collect());
        for (i, v) in values.iter_mut().enumerate() {
            // f32 sums in rank order, as an MPI sum of floats.
            *v = all.iter().map(|r| r[i] as f32).fold(0.0, |a, b| a + b);
        }
        Ok(())
    }
    fn sum_f64(&mut self, values: &mut [f64]) -> Result<(), ExchangeError> {
        let all = self.exchange(values.to_vec());
        for (i, v) in values.iter_mut().enumerate() {
            *v = all.iter().map(|r| r[i]).fold(0.0, |a, b| a + b);
        }
        Ok(())
    }
    fn gather_f64(&mut self, values: &[f64]) -> Result<Vec<f64>, ExchangeError> {
        Ok(self.exchange(values.to_vec()).concat())
    }
    fn gather_u64(&mut self, values: &[u64]) -> Result<Vec<u64>, ExchangeError> {
        // u64 through f64 would round: split into halves.
        let halves: Vec<f64> = values
            .iter()
            .flat_map(|v| [(v >> 32) as f64, (v & 0xffff_ffff) as f64])
            .collect();
        Ok(self
            .exchange(halves)
            .concat()
            .chunks_exact(2)
            .map(|h| ((h[0] as u64) << 32) | h[1] as u64)
            .collect())
    }
}

fn backends() -> [Backend; 2] {
    [Backend::Host, Backend::Torch(Device::Cpu)]
}

#[test]
fn one_rank_is_bit_identical_to_no_exchange() {
    for backend in backends() {
        let plain = train(backend, None, 1, 0, true);
        let one = train(backend, Some(Box::new(SingleRank)), 1, 0, true);
        assert_eq!(plain, one, "{backend:?}");
        // target_kl ended an update early (its check ran on exchanged
        // terms): the path is exercised.
        let epochs = plain.last().unwrap();
        assert!(epochs.contains(&1.0), "{backend:?}: epochs {epochs:?}");
    }
}

/// K threads as K ranks, rank r with envs r*E..; the weights of each update.
fn ranks_in_threads(
    backend: Backend,
    ranks: usize,
    same_experience: bool,
    normalise: bool,
) -> Vec<Vec<Vec<f32>>> {
    let handles: Vec<_> = ThreadRank::all(ranks)
        .into_iter()
        .map(|x| {
            let first_env = if same_experience { 0 } else { x.rank * ENVS };
            std::thread::spawn(move || {
                train(backend, Some(Box::new(x)), ranks, first_env, normalise)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn ranks_hold_identical_weights_after_every_update() {
    for backend in backends() {
        let per_rank = ranks_in_threads(backend, 3, false, true);
        for (r, weights) in per_rank.iter().enumerate() {
            assert_eq!(
                weights, &per_rank[0],
                "{backend:?}: rank {r} differs from rank 0"
            );
        }
        // Their envs differ, so the run is not one rank's.
        let alone = train(backend, None, 1, 0, true);
        assert_ne!(per_rank[0][0], alone[0], "{backend:?}");
    }
}

#[test]
fn two_ranks_with_the_same_experience_take_one_ranks_steps() {
    // (g + g) / 2 = g exactly: the same rollouts on both ranks must give the
    // single rank's weights bit for bit (no normalisation, whose statistics
    // rightly count both ranks' observations).
    for backend in backends() {
        let two = ranks_in_threads(backend, 2, true, false);
        let one = train(backend, None, 1, 0, false);
        // Two ranks count 2 * E envs: the same run length in updates needs
        // the same number of updates, which `run(2, ..)` gives.
        assert_eq!(two[0], one, "{backend:?}");
        assert_eq!(two[1], one, "{backend:?}");
    }
}
