//! The behaviour every caller relies on: seeding, autoreset, time limits,
//! errors on bad input, and the registry.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use rl_env::classic::{Acrobot, CartPole, MountainCar, MountainCarContinuous, Pendulum};
use rl_env::rng::derive_seed;
use rl_env::{Action, Actions, Env, EnvError, Registry, Space};

const BUILTIN_IDS: [&str; 5] = [
    CartPole::ID,
    Pendulum::ID,
    MountainCar::ID,
    MountainCarContinuous::ID,
    Acrobot::ID,
];

/// A fixed, env-independent action sequence: step `t` of env `i`.
fn action_values(space: &Space, t: usize, i: usize) -> (i64, Vec<f32>) {
    let k = (t * 7 + i * 3) % 11;
    match space {
        Space::Discrete { n } => ((k % n) as i64, Vec::new()),
        Space::Box(b) => (
            0,
            vec![(k as f32 / 5.0 - 1.0) * b.high[0] * 1.2; b.flat_dim()],
        ),
    }
}

fn rollout(id: &str, seed: u64, steps: usize) -> Vec<u32> {
    let registry = Registry::with_builtins();
    let mut env = registry.make(id).unwrap();
    let mut trace = Vec::new();
    let mut obs = env.reset(Some(seed)).unwrap();
    trace.extend(obs.iter().map(|v| v.to_bits()));
    for t in 0..steps {
        let (d, c) = action_values(env.action_space(), t, 0);
        let action = if c.is_empty() {
            Action::Discrete(d)
        } else {
            Action::Continuous(&c)
        };
        let step = env.step(action).unwrap();
        trace.extend(step.obs.iter().map(|v| v.to_bits()));
        trace.push((step.reward as f32).to_bits());
        if step.terminated || step.truncated {
            obs = env.reset(None).unwrap();
            trace.extend(obs.iter().map(|v| v.to_bits()));
        }
    }
    trace
}

#[test]
fn same_seed_gives_bit_identical_trajectories_and_other_seeds_differ() {
    for id in BUILTIN_IDS {
        let a = rollout(id, 17, 1200);
        let b = rollout(id, 17, 1200);
        let c = rollout(id, 18, 1200);
        assert_eq!(a, b, "{id}: same seed, different trajectory");
        assert_ne!(a, c, "{id}: different seeds, same trajectory");
    }
}

#[test]
fn reset_distributions_match_gymnasium_ranges() {
    let registry = Registry::with_builtins();
    for seed in 0..200 {
        let cart = registry.make(CartPole::ID).unwrap();
        let mut cart = cart;
        let obs = cart.reset(Some(seed)).unwrap();
        assert!(obs.iter().all(|v| v.abs() <= 0.05), "{obs:?}");

        let mut car = registry.make(MountainCar::ID).unwrap();
        let obs = car.reset(Some(seed)).unwrap();
        assert!((-0.6..=-0.4).contains(&obs[0]) && obs[1] == 0.0, "{obs:?}");

        let mut pendulum = registry.make(Pendulum::ID).unwrap();
        pendulum.reset(Some(seed)).unwrap();
        let state = pendulum.state().unwrap();
        assert!(state[0].abs() <= std::f64::consts::PI && state[1].abs() <= 1.0);

        let mut acrobot = registry.make(Acrobot::ID).unwrap();
        acrobot.reset(Some(seed)).unwrap();
        let state = acrobot.state().unwrap();
        assert!(state
            .iter()
            .all(|v| v.abs() <= 0.1 && (*v as f32) as f64 == *v));
    }
}

#[test]
fn time_limits_truncate_at_gymnasium_step_counts() {
    let registry = Registry::with_builtins();
    for (id, limit) in [(Pendulum::ID, 200), (MountainCarContinuous::ID, 999)] {
        let mut env = registry.make(id).unwrap();
        env.reset(Some(1)).unwrap();
        for t in 1..=limit {
            let step = env.step(Action::Continuous(&[0.0])).unwrap();
            assert_eq!(step.truncated, t == limit, "{id} step {t}");
            assert!(!step.terminated);
        }
    }
    assert_eq!(registry.max_episode_steps(CartPole::ID).unwrap(), Some(500));
    assert_eq!(
        registry.max_episode_steps(MountainCar::ID).unwrap(),
        Some(200)
    );
    assert_eq!(registry.max_episode_steps(Acrobot::ID).unwrap(), Some(500));
}

#[test]
fn discrete_action_out_of_range_is_an_error_naming_env_value_and_range() {
    let registry = Registry::with_builtins();
    let mut env = registry.make(CartPole::ID).unwrap();
    env.reset(Some(0)).unwrap();
    let err = env.step(Action::Discrete(2)).unwrap_err();
    assert!(matches!(
        err,
        EnvError::ActionOutOfRange {
            action: 2,
            n: 2,
            ..
        }
    ));
    let message = err.to_string();
    assert!(message.contains("CartPole-v1") && message.contains('2') && message.contains("0..=1"));
    // The env was not moved by the rejected action and still steps.
    assert!(env.step(Action::Discrete(1)).is_ok());
    // The unwrapped env rejects it too, without panicking.
    let mut raw = CartPole::new();
    raw.reset(Some(0)).unwrap();
    assert!(raw.step(Action::Discrete(-3)).is_err());
    assert!(raw.step(Action::Continuous(&[1.0])).is_err());
}

#[test]
fn nan_or_wrong_length_continuous_action_is_an_error_never_a_clamp() {
    let registry = Registry::with_builtins();
    for id in [Pendulum::ID, MountainCarContinuous::ID] {
        let mut env = registry.make(id).unwrap();
        env.reset(Some(0)).unwrap();
        let before = env.state().unwrap();
        let err = env
            .step(Action::Continuous(&[f32::NAN]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(id) && err.contains("NaN"), "{err}");
        let err = env
            .step(Action::Continuous(&[f32::INFINITY]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("inf"), "{err}");
        let err = env
            .step(Action::Continuous(&[0.5, 0.5]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2 value(s)") && err.contains("exactly 1"),
            "{err}"
        );
        let err = env.step(Action::Continuous(&[])).unwrap_err().to_string();
        assert!(err.contains("0 value(s)"), "{err}");
        assert!(env.step(Action::Discrete(0)).is_err());
        assert_eq!(
            env.state().unwrap(),
            before,
            "{id}: a rejected action moved the env"
        );
        // Out-of-bounds but finite actions are clipped by the env, as in Gymnasium.
        assert!(env.step(Action::Continuous(&[50.0])).is_ok());
        let mut raw = Pendulum::new();
        raw.reset(Some(0)).unwrap();
        assert!(raw.step(Action::Continuous(&[f32::NAN])).is_err());
        assert!(raw.step(Action::Continuous(&[])).is_err());
    }
}

#[test]
fn stepping_before_reset_or_after_the_episode_ended_is_an_error() {
    let registry = Registry::with_builtins();
    let mut env = registry.make(CartPole::ID).unwrap();
    let err = env.step(Action::Discrete(0)).unwrap_err();
    assert!(matches!(err, EnvError::StepBeforeReset { .. }), "{err}");

    env.reset(Some(0)).unwrap();
    let mut steps = 0;
    loop {
        steps += 1;
        let step = env.step(Action::Discrete(1)).unwrap();
        if step.terminated || step.truncated {
            break;
        }
    }
    assert!(steps < 500);
    let message = env.step(Action::Discrete(1)).unwrap_err().to_string();
    assert!(
        message.contains("CartPole-v1")
            && message.contains("terminated")
            && message.contains("reset"),
        "{message}"
    );
    env.reset(None).unwrap();
    assert!(env.step(Action::Discrete(1)).is_ok());

    let mut pendulum = registry.make(Pendulum::ID).unwrap();
    pendulum.reset(Some(0)).unwrap();
    for _ in 0..200 {
        pendulum.step(Action::Continuous(&[0.0])).unwrap();
    }
    let message = pendulum
        .step(Action::Continuous(&[0.0]))
        .unwrap_err()
        .to_string();
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn wrong_buffer_and_state_lengths_are_errors() {
    let registry = Registry::with_builtins();
    let mut env = registry.make(Acrobot::ID).unwrap();
    let mut short = [0.0_f32; 4];
    let err = env.reset_into(Some(0), &mut short).unwrap_err().to_string();
    assert!(
        err.contains("observation buffer holds 4") && err.contains("6 are needed"),
        "{err}"
    );
    let mut obs = env.reset(Some(0)).unwrap();
    let err = env.set_state(&[0.0; 3], &mut obs).unwrap_err().to_string();
    assert!(err.contains("4 values, got 3"), "{err}");
}

#[test]
fn unknown_id_lists_the_known_ids() {
    let registry = Registry::with_builtins();
    let message = registry.make("CartPole-v9").err().unwrap().to_string();
    assert!(message.contains("'CartPole-v9'"), "{message}");
    for id in BUILTIN_IDS {
        assert!(message.contains(id), "{message} lacks {id}");
    }
    assert!(registry.make_vec("Nope-v0", 4).is_err());
    assert!(matches!(
        registry.make_vec(CartPole::ID, 0).err().unwrap(),
        EnvError::NoEnvs { .. }
    ));
}

#[test]
fn vec_env_autoresets_in_the_same_step_and_keeps_the_final_observation() {
    let registry = Registry::with_builtins();
    let mut envs = registry.make_vec(CartPole::ID, 4).unwrap();
    envs.reset(5).unwrap();
    // A lone env with the seed that the vectorised env gives env 2.
    let mut single = registry.make(CartPole::ID).unwrap();
    let mut single_obs = single.reset(Some(derive_seed(5, 2))).unwrap();
    assert_eq!(&envs.obs()[8..12], &single_obs[..]);

    let actions = [1_i64; 4]; // Always right: episodes end in ~10 steps.
    let mut episodes = 0;
    for _ in 0..100 {
        envs.step(Actions::Discrete(&actions)).unwrap();
        let step = single.step(Action::Discrete(1)).unwrap();
        assert_eq!(envs.rewards()[2], step.reward as f32);
        assert_eq!(envs.terminated()[2], step.terminated);
        if step.terminated || step.truncated {
            // The final observation is kept; obs already holds the next episode's first.
            assert_eq!(&envs.final_obs()[8..12], &step.obs[..]);
            single_obs = single.reset(None).unwrap();
            let finished = envs
                .finished_episodes()
                .iter()
                .find(|e| e.env_index == 2)
                .expect("env 2's episode is reported as finished");
            assert!(finished.terminated && finished.length > 0);
            assert_eq!(finished.episode_return, finished.length as f64);
            episodes += 1;
        } else {
            single_obs = step.obs;
        }
        assert_eq!(&envs.obs()[8..12], &single_obs[..]);
        for e in envs.finished_episodes() {
            assert!(envs.terminated()[e.env_index] || envs.truncated()[e.env_index]);
        }
    }
    assert!(episodes >= 5, "only {episodes} episodes ended");
}

#[test]
fn vec_env_rejects_a_bad_batch_before_moving_any_env() {
    let registry = Registry::with_builtins();
    let mut envs = registry.make_vec(MountainCar::ID, 3).unwrap();
    let err = envs.step(Actions::Discrete(&[0, 1, 2])).unwrap_err();
    assert!(matches!(err, EnvError::StepBeforeReset { .. }));
    envs.reset(0).unwrap();
    let before = envs.obs().to_vec();
    let err = envs
        .step(Actions::Discrete(&[0, 1, 3]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("action 3") && err.contains("MountainCar-v0"),
        "{err}"
    );
    let err = envs
        .step(Actions::Discrete(&[0, 1]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("action buffer holds 2") && err.contains("3 are needed"),
        "{err}"
    );
    let err = envs
        .step(Actions::Continuous(&[0.0, 1.0, 0.0]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("continuous action") && err.contains("Discrete(3)"),
        "{err}"
    );
    assert_eq!(envs.obs(), &before[..]);
    assert!(envs.step(Actions::Discrete(&[0, 1, 2])).is_ok());

    let mut pendulums = registry.make_vec(Pendulum::ID, 2).unwrap();
    pendulums.reset(0).unwrap();
    let err = pendulums
        .step(Actions::Continuous(&[0.0, f32::NAN]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("NaN"), "{err}");
}

#[test]
fn split_vec_envs_with_sliced_seeds_reproduce_one_big_vec_env() {
    let registry = Registry::with_builtins();
    let seeds: Vec<u64> = (0..6).map(|i| derive_seed(99, i)).collect();
    let mut whole = registry.make_vec(Acrobot::ID, 6).unwrap();
    whole.reset_with_seeds(&seeds).unwrap();
    let mut halves = [
        registry.make_vec(Acrobot::ID, 3).unwrap(),
        registry.make_vec(Acrobot::ID, 3).unwrap(),
    ];
    halves[0].reset_with_seeds(&seeds[..3]).unwrap();
    halves[1].reset_with_seeds(&seeds[3..]).unwrap();
    for t in 0..700 {
        let actions: Vec<i64> = (0..6)
            .map(|i| action_values(whole.action_space(), t, i).0)
            .collect();
        whole.step(Actions::Discrete(&actions)).unwrap();
        halves[0].step(Actions::Discrete(&actions[..3])).unwrap();
        halves[1].step(Actions::Discrete(&actions[3..])).unwrap();
        let joined: Vec<f32> = [halves[0].obs(), halves[1].obs()].concat();
        assert_eq!(whole.obs(), &joined[..], "step {t}");
    }
}

#[test]
fn registering_an_id_twice_is_an_error() {
    let mut registry = Registry::with_builtins();
    let err = registry
        .register(CartPole::ID, None, CartPole::new)
        .unwrap_err();
    assert!(err.to_string().contains("already registered"));
}

#[test]
fn builtin_observations_stay_inside_their_observation_space_before_termination() {
    let registry = Registry::with_builtins();
    for id in BUILTIN_IDS {
        let mut envs = registry.make_vec(id, 8).unwrap();
        envs.reset(3).unwrap();
        let Space::Box(bounds) = envs.observation_space().clone() else {
            panic!("{id}: observation space is not a Box");
        };
        let dim = envs.obs_dim();
        for t in 0..600 {
            let (discrete, continuous): (Vec<i64>, Vec<Vec<f32>>) = (0..8)
                .map(|i| action_values(envs.action_space(), t, i))
                .unzip();
            if envs.action_space().is_discrete() {
                envs.step(Actions::Discrete(&discrete)).unwrap();
            } else {
                envs.step(Actions::Continuous(&continuous.concat()))
                    .unwrap();
            }
            for i in 0..8 {
                let row = &envs.obs()[i * dim..(i + 1) * dim];
                assert!(
                    bounds.contains(row),
                    "{id} step {t} env {i}: {row:?} outside {bounds:?}"
                );
            }
        }
    }
}
