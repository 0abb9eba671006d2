//! Golden tests: traces recorded from Gymnasium itself (scripts/golden.py)
//! replayed through our envs, step by step.
//!
//! `GOLDEN_DIR=/some/dir cargo test -p rl-env golden` checks traces from
//! anywhere; the default is the project's `tests/golden`.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rl_env::{Action, Env, Registry};
use serde_json::Value;

const OBS_TOLERANCE: f64 = 1e-5; // times max(1, |expected|)
const REWARD_TOLERANCE: f64 = 1e-6;

fn golden_dir() -> PathBuf {
    match std::env::var_os("GOLDEN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden"),
    }
}

fn trace_files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read golden directory {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn floats(value: &Value, what: &str) -> Result<Vec<f64>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("{what} is not an array"))?
        .iter()
        .map(|v| {
            v.as_f64()
                .ok_or_else(|| format!("{what} holds a non-number: {v}"))
        })
        .collect()
}

fn compare_obs(got: &[f32], expected: &[f64], at: &str) -> Result<(), String> {
    if got.len() != expected.len() {
        return Err(format!(
            "{at}: field 'obs' has {} values, expected {}",
            got.len(),
            expected.len()
        ));
    }
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let error = (*g as f64 - e).abs();
        if error.is_nan() || error > OBS_TOLERANCE * e.abs().max(1.0) {
            return Err(format!(
                "{at}: field 'obs[{i}]' is {g}, expected {e} (abs error {error:.3e})"
            ));
        }
    }
    Ok(())
}

/// Replays one trace; the error names the file, the step and the field.
fn check_trace(path: &Path, registry: &Registry) -> Result<usize, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let trace: Value =
        serde_json::from_str(&text).map_err(|e| format!("{name}: not valid JSON: {e}"))?;
    let env_id = trace["env_id"]
        .as_str()
        .ok_or_else(|| format!("{name}: field 'env_id' is missing"))?;
    let mut env = registry.make(env_id).map_err(|e| format!("{name}: {e}"))?;
    let seed = trace["seed"].as_u64().unwrap_or(0);
    let state = floats(&trace["state"], &format!("{name}: field 'state'"))?;
    let mut obs = env
        .reset(Some(seed))
        .map_err(|e| format!("{name}: reset: {e}"))?;
    env.set_state(&state, &mut obs)
        .map_err(|e| format!("{name}: set_state: {e}"))?;
    let reset_obs = floats(&trace["obs"], &format!("{name}: field 'obs'"))?;
    compare_obs(&obs, &reset_obs, &format!("{name}: reset"))?;

    let steps = trace["steps"]
        .as_array()
        .ok_or_else(|| format!("{name}: field 'steps' is missing"))?;
    let discrete = env.action_space().is_discrete();
    for (t, step) in steps.iter().enumerate() {
        let at = format!("{name}: step {t}");
        let continuous_action: Vec<f32>;
        let action = if discrete {
            Action::Discrete(
                step["action"]
                    .as_i64()
                    .ok_or_else(|| format!("{at}: field 'action' is not an integer"))?,
            )
        } else {
            continuous_action = floats(&step["action"], &format!("{at}: field 'action'"))?
                .into_iter()
                .map(|v| v as f32)
                .collect();
            Action::Continuous(&continuous_action)
        };
        let got = env.step(action).map_err(|e| format!("{at}: {e}"))?;
        let expected_obs = floats(&step["obs"], &format!("{at}: field 'obs'"))?;
        compare_obs(&got.obs, &expected_obs, &at)?;
        let reward = step["reward"]
            .as_f64()
            .ok_or_else(|| format!("{at}: field 'reward' is missing"))?;
        if (got.reward - reward).abs() > REWARD_TOLERANCE || got.reward.is_nan() {
            return Err(format!(
                "{at}: field 'reward' is {}, expected {reward}",
                got.reward
            ));
        }
        for (field, value) in [("terminated", got.terminated), ("truncated", got.truncated)] {
            let expected = step[field]
                .as_bool()
                .ok_or_else(|| format!("{at}: field '{field}' is missing"))?;
            if value != expected {
                return Err(format!(
                    "{at}: field '{field}' is {value}, expected {expected}"
                ));
            }
        }
    }
    Ok(steps.len())
}

#[test]
fn golden_traces_from_gymnasium_replay_exactly() {
    let dir = golden_dir();
    let files = trace_files(&dir);
    assert!(
        !files.is_empty(),
        "no *.json golden traces found in {} (set GOLDEN_DIR or run scripts/golden.py)",
        dir.display()
    );
    let registry = Registry::with_builtins();
    let mut failures = String::new();
    let mut total_steps = 0;
    for file in &files {
        match check_trace(file, &registry) {
            Ok(steps) => total_steps += steps,
            Err(message) => writeln!(failures, "{message}").unwrap(),
        }
    }
    assert!(
        failures.is_empty(),
        "golden traces that do not replay:\n{failures}"
    );
    eprintln!(
        "{} golden traces, {total_steps} steps, all match",
        files.len()
    );
}

#[test]
fn altered_trace_is_rejected_naming_file_step_and_field() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
    let original = trace_files(&source)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("CartPole"))
        .expect("the project ships CartPole golden traces");
    let mut trace: Value =
        serde_json::from_str(&std::fs::read_to_string(&original).unwrap()).unwrap();
    let x = trace["steps"][7]["obs"][2].as_f64().unwrap();
    trace["steps"][7]["obs"][2] = Value::from(x + 1e-3);
    let dir = std::env::temp_dir().join(format!("rl-env-altered-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let altered = dir.join("altered.json");
    std::fs::write(&altered, serde_json::to_string(&trace).unwrap()).unwrap();

    let registry = Registry::with_builtins();
    let result = check_trace(&altered, &registry);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(check_trace(&original, &registry).is_ok());
    let message = result.expect_err("a trace altered by 1e-3 must fail");
    assert!(
        message.contains("altered.json")
            && message.contains("step 7")
            && message.contains("obs[2]"),
        "{message}"
    );
}
