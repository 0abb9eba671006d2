//! The whole update, end to end on a real rollout: both gradient backends
//! agree, and the same seed gives the same weights.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use rl_algo::ppo::{Backend, PpoConfig, PpoLearner};
use rl_env::{Env, Registry};
use rl_policy::{ActionHead, Activation, Policy, PolicySpec, RolloutCollector};
use tch::Device;

fn spec(env: &str) -> (PolicySpec, PpoConfig) {
    let registry = Registry::with_builtins();
    let e = registry.make(env).unwrap();
    let head = match e.action_space() {
        rl_env::Space::Discrete { n } => ActionHead::Categorical { n: *n },
        rl_env::Space::Box(b) => ActionHead::Gaussian { dim: b.flat_dim() },
    };
    let spec = PolicySpec {
        obs_dim: e.observation_space().flat_dim(),
        head,
        actor_hidden: vec![32, 32],
        critic_hidden: vec![32, 32],
        activation: Activation::Tanh,
    };
    let config = PpoConfig {
        num_steps: 64,
        num_minibatches: 4,
        update_epochs: 3,
        normalize_obs: true,
        normalize_reward: true,
        total_timesteps: 4 * 64 * 3,
        ..PpoConfig::default()
    };
    (spec, config)
}

/// Three updates on rollouts collected with the learner's own weights.
fn train(env: &str, backend: Backend, seed: u64) -> Vec<f32> {
    let (spec, config) = spec(env);
    let registry = Registry::with_builtins();
    let envs = registry.make_vec(env, 4).unwrap();
    let mut learner = PpoLearner::new(spec.clone(), config.clone(), 4, seed, backend);
    let mut collector = RolloutCollector::new(envs, Policy::new(spec).unwrap(), seed, 0).unwrap();
    for _ in 0..3 {
        collector
            .set_policy(&learner.policy_weights(), learner.obs_norm.clone())
            .unwrap();
        let rollout = collector.collect(config.num_steps).unwrap();
        let stats = learner.update(&rollout);
        assert!(stats.policy_loss.is_finite() && stats.value_loss.is_finite());
    }
    learner.policy_weights()
}

#[test]
fn host_and_libtorch_backends_compute_the_same_update() {
    // One update on one rollout: after that, different float rounding can
    // flip a sampled action and the runs rightly go separate ways.
    for env in ["CartPole-v1", "Pendulum-v1"] {
        let (spec, config) = spec(env);
        let registry = Registry::with_builtins();
        let envs = registry.make_vec(env, 4).unwrap();
        let mut collector =
            RolloutCollector::new(envs, Policy::new(spec.clone()).unwrap(), 3, 0).unwrap();
        let mut host = PpoLearner::new(spec.clone(), config.clone(), 4, 3, Backend::Host);
        let mut torch = PpoLearner::new(spec, config.clone(), 4, 3, Backend::Torch(Device::Cpu));
        assert_eq!(
            host.policy_weights(),
            torch.policy_weights(),
            "{env}: same initial weights"
        );
        collector.set_policy(&host.policy_weights(), None).unwrap();
        let rollout = collector.collect(config.num_steps).unwrap();
        let (h, t) = (host.update(&rollout), torch.update(&rollout));
        assert!(
            (h.policy_loss - t.policy_loss).abs() < 1e-4,
            "{env}: {h:?} vs {t:?}"
        );
        assert!(
            (h.value_loss - t.value_loss).abs() < 1e-3 * t.value_loss.abs().max(1.0),
            "{env}: {h:?} vs {t:?}"
        );
        let max_diff = host
            .policy_weights()
            .iter()
            .zip(&torch.policy_weights())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0_f32, f32::max);
        assert!(max_diff < 1e-4, "{env}: weights differ by up to {max_diff}");
    }
}

#[test]
fn the_same_seed_gives_bit_identical_weights_and_another_seed_does_not() {
    let a = train("Acrobot-v1", Backend::Host, 9);
    assert_eq!(a, train("Acrobot-v1", Backend::Host, 9));
    assert_ne!(a, train("Acrobot-v1", Backend::Host, 10));
}
