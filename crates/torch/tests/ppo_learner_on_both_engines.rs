//! The whole update, end to end on a real rollout: both gradient backends
//! agree, and the same seed gives the same weights.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use std::cell::Cell;

use rl_algo::algorithm::RunSpec;
use rl_algo::algorithm::UpdateError;
use rl_algo::divergence::Stage;
use rl_algo::engine::gradient::Backend;
use rl_algo::engine::gradient::Device;
use rl_algo::ppo::config::PpoConfig;
use rl_algo::ppo::learner::PpoLearner;
use rl_env::{Env, Registry};
use rl_policy::{ActionHead, Activation, Policy, PolicySpec, RolloutCollector};

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
        ..PpoConfig::default()
    };
    (spec, config)
}

/// 4 envs for `updates` updates of 64 steps, observations and rewards
/// normalised.
fn run(seed: u64, updates: u64) -> RunSpec {
    RunSpec {
        obs_norm_clip: Some(10.0),
        reward_scale_clip: Some(10.0),
        ..RunSpec::new(4, 4 * 64 * updates, seed)
    }
}

/// Three updates on rollouts collected with the learner's own weights.
fn train(env: &str, backend: Backend, seed: u64) -> Vec<f32> {
    let (spec, config) = spec(env);
    let registry = Registry::with_builtins();
    let envs = registry.make_vec(env, 4).unwrap();
    let mut learner =
        PpoLearner::new(spec.clone(), config.clone(), &run(seed, 3), backend).unwrap();
    let mut collector = RolloutCollector::new(envs, Policy::new(spec).unwrap(), seed, 0).unwrap();
    for _ in 0..3 {
        collector
            .set_policy(&learner.policy_weights(), learner.obs_norm.clone())
            .unwrap();
        let rollout = collector.collect(config.num_steps).unwrap();
        let stats = learner.update(&rollout, &|| false).unwrap();
        assert!(stats.policy_loss.is_finite() && stats.value_loss.is_finite());
    }
    learner.policy_weights().into_owned()
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
        let mut host =
            PpoLearner::new(spec.clone(), config.clone(), &run(3, 3), Backend::Host).unwrap();
        let mut torch = PpoLearner::new(
            spec,
            config.clone(),
            &run(3, 3),
            Backend::Torch(Device::Cpu),
        )
        .unwrap();
        assert_eq!(
            host.policy_weights(),
            torch.policy_weights(),
            "{env}: same initial weights"
        );
        collector.set_policy(&host.policy_weights(), None).unwrap();
        let rollout = collector.collect(config.num_steps).unwrap();
        let (h, t) = (
            host.update(&rollout, &|| false).unwrap(),
            torch.update(&rollout, &|| false).unwrap(),
        );
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
            .zip(torch.policy_weights().iter())
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

#[test]
fn learning_rate_and_clip_anneal_linearly_and_target_kl_stops_epochs_early() {
    let (spec, mut config) = spec("CartPole-v1");
    config.anneal_lr = true;
    config.anneal_clip = true;
    config.update_epochs = 10;
    config.target_kl = Some(1e-9);
    let registry = Registry::with_builtins();
    let envs = registry.make_vec("CartPole-v1", 4).unwrap();
    let mut learner =
        PpoLearner::new(spec.clone(), config.clone(), &run(1, 4), Backend::Host).unwrap();
    let mut collector = RolloutCollector::new(envs, Policy::new(spec).unwrap(), 1, 0).unwrap();
    for k in 0..4 {
        collector
            .set_policy(&learner.policy_weights(), learner.obs_norm.clone())
            .unwrap();
        let rollout = collector.collect(config.num_steps).unwrap();
        let stats = learner.update(&rollout, &|| false).unwrap();
        let remaining = 1.0 - k as f64 / 4.0;
        assert!((stats.learning_rate - config.learning_rate * remaining).abs() < 1e-15);
        assert!((stats.clip_coef - config.clip_coef * remaining).abs() < 1e-15);
        // Any positive KL exceeds 1e-9 after the first epoch's steps.
        assert_eq!(stats.epochs, 1, "target_kl should stop after one epoch");
    }
}

#[test]
fn reward_scaling_divides_by_the_running_std_of_discounted_returns() {
    use rl_algo::ppo::reward_scaler::RewardScaler;
    // One env, reward 1 every step, no episode end: returns 1, 1.9, 2.71, ...
    let mut scaler = RewardScaler::new(1, 0.9, 1e9);
    let mut rewards = vec![1.0_f32; 5];
    scaler.scale(&mut rewards, &[false; 5]);
    let returns: Vec<f64> = (1..=5).map(|n| (1.0 - 0.9_f64.powi(n)) / 0.1).collect();
    // After step k the statistics hold returns[0..=k] (and the prior of
    // mean 0, variance 1, count 1e-4).
    for k in 0..5 {
        let seen = &returns[..=k];
        let n = seen.len() as f64 + 1e-4;
        let mean = seen.iter().sum::<f64>() / n;
        let var =
            (1e-4 * (1.0 + mean * mean) + seen.iter().map(|r| (r - mean).powi(2)).sum::<f64>()) / n;
        let expected = 1.0 / (var + 1e-8).sqrt();
        assert!(
            (rewards[k] as f64 - expected).abs() < 1e-3 * expected,
            "step {k}: {} vs {expected}",
            rewards[k]
        );
    }
    // Scaled rewards are clipped, and the running return restarts after an episode ends.
    let mut clipped = RewardScaler::new(1, 0.9, 10.0);
    let mut rewards = vec![1.0_f32, 1.0];
    clipped.scale(&mut rewards, &[true, false]);
    assert_eq!(rewards[0], 10.0);
    assert_eq!(clipped.returns, vec![1.0]);
}

/// A learner restored from another's state (on a different seed) continues
/// exactly as the original: same weights, moments, statistics, schedules
/// and shuffles, on either backend.
#[test]
fn a_restored_learner_continues_exactly_as_the_original() {
    for backend in [Backend::Host, Backend::Torch(Device::Cpu)] {
        let env = "Pendulum-v1";
        let (spec, config) = spec(env);
        let registry = Registry::with_builtins();
        let mut collector = RolloutCollector::new(
            registry.make_vec(env, 4).unwrap(),
            Policy::new(spec.clone()).unwrap(),
            5,
            0,
        )
        .unwrap();
        let mut original =
            PpoLearner::new(spec.clone(), config.clone(), &run(5, 6), backend).unwrap();
        let mut rollouts = Vec::new();
        for i in 0..6 {
            collector
                .set_policy(&original.policy_weights(), original.obs_norm.clone())
                .unwrap();
            let rollout = collector.collect(config.num_steps).unwrap();
            if i == 3 {
                break;
            }
            original.update(&rollout, &|| false).unwrap();
            rollouts.push(rollout);
        }
        let state = original.state();
        let mut restored =
            PpoLearner::new(spec.clone(), config.clone(), &run(77, 6), backend).unwrap();
        assert_ne!(restored.policy_weights(), original.policy_weights());
        restored.restore(&state).unwrap();
        assert_eq!(restored.state(), state, "{backend:?}");
        for rollout in &rollouts {
            let (a, b) = (
                original.update(rollout, &|| false),
                restored.update(rollout, &|| false),
            );
            assert_eq!(a, b, "{backend:?}");
        }
        assert_eq!(restored.state(), original.state(), "{backend:?}");

        // A state that does not fit is refused with a reason.
        let mut other = PpoLearner::new(
            spec.clone(),
            config.clone(),
            &RunSpec {
                obs_norm_clip: None,
                ..run(5, 6)
            },
            backend,
        )
        .unwrap();
        assert!(other.restore(&state).unwrap_err().contains("normalisation"));
        let mut short = state.clone();
        short.adam_exp_avg.pop();
        assert!(restored.restore(&short).unwrap_err().contains("Adam"));
    }
}

/// One rollout of `env` collected with a fresh learner's weights, and that
/// learner.
fn learner_and_rollout(
    env: &str,
    config: PpoConfig,
    run_spec: RunSpec,
    backend: Backend,
) -> (PpoLearner, rl_policy::Rollout) {
    let (spec, _) = spec(env);
    let registry = Registry::with_builtins();
    let mut collector = RolloutCollector::new(
        registry.make_vec(env, 4).unwrap(),
        Policy::new(spec.clone()).unwrap(),
        7,
        0,
    )
    .unwrap();
    let learner = PpoLearner::new(spec, config.clone(), &run_spec, backend).unwrap();
    collector
        .set_policy(&learner.policy_weights(), learner.obs_norm.clone())
        .unwrap();
    let rollout = collector.collect(config.num_steps).unwrap();
    (learner, rollout)
}

/// An update is all or nothing: abandoned between two minibatches, it
/// leaves the learner exactly as it was, and the next update is the one an
/// uninterrupted learner makes.
#[test]
fn an_abandoned_update_leaves_the_learner_as_it_was() {
    for backend in [Backend::Host, Backend::Torch(Device::Cpu)] {
        let (_, config) = spec("Pendulum-v1");
        let (mut learner, rollout) =
            learner_and_rollout("Pendulum-v1", config.clone(), run(7, 3), backend);
        let (mut twin, _) = learner_and_rollout("Pendulum-v1", config, run(7, 3), backend);
        let before = learner.state();
        let asked = Cell::new(0);
        // Yes on the fifth question: four minibatches were applied.
        let abandon = || {
            asked.set(asked.get() + 1);
            asked.get() == 5
        };
        assert_eq!(
            learner.update(&rollout, &abandon),
            Err(UpdateError::Abandoned)
        );
        assert_eq!(asked.get(), 5);
        assert_eq!(learner.state(), before, "{backend:?}");
        let (a, b) = (
            learner.update(&rollout, &|| false).unwrap(),
            twin.update(&rollout, &|| false).unwrap(),
        );
        assert_eq!(a, b, "{backend:?}");
        assert_eq!(learner.state(), twin.state(), "{backend:?}");
    }
}

/// Settings that blow an update up: the update is refused with what went
/// non-finite, where, and the setting to blame, and nothing non-finite is
/// left in the learner.
#[test]
fn a_diverging_update_is_refused_naming_the_quantity_and_the_setting() {
    let (_, base) = spec("CartPole-v1");
    let cases: [(PpoConfig, &str, &str); 3] = [
        (
            PpoConfig {
                ent_coef: 1e300,
                ..base.clone()
            },
            "the gradient",
            "ppo.ent_coef",
        ),
        (
            PpoConfig {
                learning_rate: 1e39,
                max_grad_norm: 1e30,
                ..base.clone()
            },
            "the weights",
            "ppo.learning_rate",
        ),
        (
            PpoConfig {
                vf_coef: 1e300,
                ..base.clone()
            },
            "",
            "ppo.vf_coef",
        ),
    ];
    for backend in [Backend::Host, Backend::Torch(Device::Cpu)] {
        for (config, quantity, setting) in &cases {
            let (mut learner, rollout) =
                learner_and_rollout("CartPole-v1", config.clone(), run(7, 3), backend);
            let before = learner.state();
            let Err(UpdateError::Diverged(d)) = learner.update(&rollout, &|| false) else {
                panic!("{backend:?} {setting}: the update went through");
            };
            assert!(d.quantity.contains(quantity), "{backend:?}: {d}");
            assert_eq!(d.suspects[0].0, *setting, "{backend:?}: {d}");
            assert!(!d.value.is_finite() && d.update == 1, "{d}");
            assert_eq!(learner.state(), before, "{backend:?} {setting}");
            assert_eq!(learner.updates_done, 0);
        }
    }
    // Rewards too large for float32 returns: found before any minibatch.
    let plain = RunSpec {
        reward_scale_clip: None,
        ..run(7, 3)
    };
    let (mut learner, mut rollout) = learner_and_rollout("CartPole-v1", base, plain, Backend::Host);
    rollout.rewards.iter_mut().for_each(|r| *r = 3e38);
    let Err(UpdateError::Diverged(d)) = learner.update(&rollout, &|| false) else {
        panic!("huge rewards went through");
    };
    assert_eq!(d.stage, Stage::BeforeMinibatches, "{d}");
    assert!(d.quantity.contains("returns"), "{d}");
    assert_eq!(d.suspects[0].0, "env.normalize_reward", "{d}");
    assert!(
        d.to_string().contains("rewards range from 3e38 to 3e38"),
        "{d}"
    );
    assert!(d.suspects[0].1.contains("rewards reach 3e38"), "{d}");
}
