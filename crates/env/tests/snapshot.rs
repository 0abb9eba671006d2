//! Snapshots continue an env exactly: restored into fresh envs, the same
//! actions give the same observations, rewards and flags, through resets.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use rl_env::rng::Rng;
use rl_env::{Actions, Registry, Space, VecEnv};

fn random_step(envs: &mut VecEnv, rng: &mut Rng) {
    match envs.action_space().clone() {
        Space::Discrete { n } => {
            let a: Vec<i64> = (0..envs.num_envs())
                .map(|_| (rng.next_u64() % n as u64) as i64)
                .collect();
            envs.step(Actions::Discrete(&a)).unwrap();
        }
        Space::Box(b) => {
            let a: Vec<f32> = (0..envs.num_envs() * b.flat_dim())
                .map(|_| rng.uniform(-3.0, 3.0) as f32)
                .collect();
            envs.step(Actions::Continuous(&a)).unwrap();
        }
    }
}

type Trace = Vec<(Vec<f32>, Vec<f32>, Vec<bool>, Vec<bool>, usize)>;

fn run(envs: &mut VecEnv, steps: usize, seed: u64) -> Trace {
    let mut rng = Rng::from_seed(seed);
    (0..steps)
        .map(|_| {
            random_step(envs, &mut rng);
            (
                envs.obs().to_vec(),
                envs.rewards().to_vec(),
                envs.terminated().to_vec(),
                envs.truncated().to_vec(),
                envs.finished_episodes().len(),
            )
        })
        .collect()
}

#[test]
fn a_restored_snapshot_continues_every_builtin_env_exactly() {
    let registry = Registry::with_builtins();
    for id in registry.ids().map(str::to_string).collect::<Vec<_>>() {
        let mut envs = registry.make_vec(&id, 5).unwrap();
        envs.reset(3).unwrap();
        // Far enough for episodes to end and envs to reset themselves.
        run(&mut envs, 700, 1);
        let snapshot = envs.snapshot().unwrap();
        let expected = run(&mut envs, 600, 2);
        assert!(
            expected.iter().any(|step| step.4 > 0),
            "{id}: no episode ended after the snapshot"
        );
        let mut restored = registry.make_vec(&id, 5).unwrap();
        restored.reset(99).unwrap();
        restored.restore(&snapshot).unwrap();
        assert_eq!(run(&mut restored, 600, 2), expected, "{id}");
    }
}

#[test]
fn snapshots_that_do_not_fit_are_errors() {
    let registry = Registry::with_builtins();
    let mut cartpole = registry.make_vec("CartPole-v1", 2).unwrap();
    cartpole.reset(0).unwrap();
    let snapshot = cartpole.snapshot().unwrap();
    let mut pendulum = registry.make_vec("Pendulum-v1", 2).unwrap();
    assert!(pendulum.restore(&snapshot).is_err(), "another env kind");
    let mut three = registry.make_vec("CartPole-v1", 3).unwrap();
    assert!(three.restore(&snapshot).is_err(), "another env count");
    let mut same = registry.make_vec("CartPole-v1", 2).unwrap();
    let err = same.restore(&snapshot[..snapshot.len() - 3]).unwrap_err();
    assert!(err.to_string().contains("cannot restore"), "{err}");
    let mut longer = snapshot.clone();
    longer.push(0);
    assert!(same.restore(&longer).is_err(), "bytes left over");
    same.restore(&snapshot).unwrap();
}
