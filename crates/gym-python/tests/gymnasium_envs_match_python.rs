//! Golden test of the Gymnasium bridge: the same seed and actions through
//! the bridge (VecEnv with same-step autoreset) and through Gymnasium in
//! plain Python (scripts/gymnasium_trace.py, run by the project's Python)
//! give identical observations (as f32), rewards and flags, on CartPole-v1
//! and on the MuJoCo env HalfCheetah-v5, including Gymnasium's TimeLimit
//! truncation (set short through `max_episode_steps` in the kwargs); and on
//! the Box2D and Atari envs `scripts/setup` installs (LunarLander-v3 with
//! continuous actions, ALE/Pong-v5 with RAM observations, sticky actions
//! included).

use std::path::Path;
use std::process::Command;

use rl_env::{Actions, Kwargs, Registry};
use serde_json::{json, Value};

fn registry() -> Registry {
    let mut registry = Registry::with_builtins();
    rl_gym::register(&mut registry);
    registry
}

fn python() -> String {
    rl_gym::python_executable()
        .expect("a Python with gymnasium (scripts/setup makes .venv)")
        .display()
        .to_string()
}

/// The reference: one JSON value per line (first the reset).
fn reference(id: &str, kwargs: &Kwargs, seed: u64, actions: &[Value]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/gymnasium_trace.py");
    let request = json!({"id": id, "kwargs": kwargs, "seed": seed, "actions": actions});
    let out = Command::new(python())
        .arg(&script)
        .arg(request.to_string())
        .output()
        .expect("run the reference script");
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn as_f32(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// Deterministic pseudo-random actions without a dependency.
fn lcg(state: &mut u64) -> f64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

fn check(id: &str, kwargs: Kwargs, seed: u64, steps: usize) -> (usize, usize, usize) {
    let registry = registry();
    let mut envs = registry
        .make_vec_with(&format!("gymnasium:{id}"), 1, &kwargs)
        .expect("make the env through the bridge");
    let discrete = matches!(envs.action_space(), rl_env::Space::Discrete { .. });
    let dim = envs.action_dim();
    let mut state = seed ^ 0x9e37_79b9;
    let actions: Vec<Value> = (0..steps)
        .map(|_| {
            if discrete {
                let n = match envs.action_space() {
                    rl_env::Space::Discrete { n } => *n as f64,
                    _ => 2.0,
                };
                json!((lcg(&mut state) * n) as i64)
            } else {
                json!((0..dim)
                    .map(|_| (lcg(&mut state) * 2.0 - 1.0) as f32)
                    .collect::<Vec<_>>())
            }
        })
        .collect();
    let expected = reference(id, &kwargs, seed, &actions);
    assert_eq!(expected.len(), steps + 1);

    envs.reset_with_seeds(&[seed]).expect("reset");
    assert_eq!(
        envs.obs(),
        as_f32(&expected[0]["reset"]).as_slice(),
        "{id}: reset observation"
    );
    let (mut terminated, mut truncated) = (0, 0);
    for (t, (action, want)) in actions.iter().zip(&expected[1..]).enumerate() {
        if discrete {
            envs.step(Actions::Discrete(&[action.as_i64().expect("int")]))
                .expect("step");
        } else {
            envs.step(Actions::Continuous(&as_f32(action)))
                .expect("step");
        }
        let ended = envs.terminated()[0] || envs.truncated()[0];
        assert_eq!(
            envs.rewards()[0],
            want["reward"].as_f64().expect("reward") as f32,
            "{id} step {t}: reward"
        );
        assert_eq!(
            envs.terminated()[0],
            want["terminated"] == true,
            "{id} step {t}: terminated"
        );
        assert_eq!(
            envs.truncated()[0],
            want["truncated"] == true,
            "{id} step {t}: truncated"
        );
        if ended {
            assert_eq!(
                envs.final_obs(),
                as_f32(&want["obs"]).as_slice(),
                "{id} step {t}: final observation"
            );
            assert_eq!(
                envs.obs(),
                as_f32(&want["next"]).as_slice(),
                "{id} step {t}: first observation after the reset"
            );
            terminated += usize::from(envs.terminated()[0]);
            truncated += usize::from(envs.truncated()[0]);
        } else {
            assert_eq!(
                envs.obs(),
                as_f32(&want["obs"]).as_slice(),
                "{id} step {t}: observation"
            );
        }
    }
    (steps, terminated, truncated)
}

#[test]
fn cartpole_matches_gymnasium_step_for_step() {
    let mut kwargs = Kwargs::new();
    kwargs.insert("max_episode_steps".into(), json!(30));
    let (_, terminated, truncated) = check("CartPole-v1", kwargs, 7, 400);
    // Random actions end CartPole episodes both ways within 30 steps.
    assert!(
        terminated > 0 && truncated > 0,
        "{terminated} terminated, {truncated} truncated"
    );
}

#[test]
fn halfcheetah_matches_gymnasium_step_for_step() {
    let mut kwargs = Kwargs::new();
    kwargs.insert("max_episode_steps".into(), json!(40));
    let (_, _, truncated) = check("HalfCheetah-v5", kwargs, 3, 130);
    assert_eq!(truncated, 3);
}

#[test]
fn box2d_lunar_lander_matches_gymnasium_step_for_step() {
    let mut kwargs = Kwargs::new();
    kwargs.insert("continuous".into(), json!(true));
    kwargs.insert("max_episode_steps".into(), json!(60));
    let (_, terminated, truncated) = check("LunarLander-v3", kwargs, 11, 200);
    assert!(terminated + truncated > 0);
}

#[test]
fn atari_pong_matches_gymnasium_step_for_step() {
    let mut kwargs = Kwargs::new();
    kwargs.insert("obs_type".into(), json!("ram"));
    kwargs.insert("max_episode_steps".into(), json!(50));
    let (_, _, truncated) = check("ALE/Pong-v5", kwargs, 5, 120);
    assert_eq!(truncated, 2);
}
