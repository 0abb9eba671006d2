//! Our PPO maths against PyTorch: fixtures written by
//! `scripts/ppo_fixtures.py` with torch itself (weights, batch, loss terms,
//! gradients, one clipped Adam step; GAE with terminated and truncated
//! episodes).

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use std::path::PathBuf;

use rl_algo::gae::gae;
use rl_algo::ppo::config::PpoConfig;
use rl_policy::{ActionHead, Activation, PolicySpec};
use rl_torch::adam::{clip_grad_norm, Adam};
use rl_torch::engine::{ppo_loss, Minibatch};
use rl_torch::net::ActorCritic;
use serde_json::Value;
use tch::{Device, Tensor};

const LOSS_TOLERANCE: f64 = 1e-5;
const GAE_TOLERANCE: f64 = 1e-6;

fn fixture(name: &str) -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/fixtures/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn close(what: &str, got: f64, expected: f64, tolerance: f64) {
    let error = (got - expected).abs();
    assert!(
        error <= tolerance * expected.abs().max(1.0),
        "{what}: got {got}, PyTorch {expected} (error {error:.2e})"
    );
}

fn tensor(v: &Value, shape: &[i64]) -> Tensor {
    Tensor::from_slice(&floats(v)).reshape(shape)
}

/// The architecture a loss fixture was written for.
fn fixture_spec(fx: &Value) -> PolicySpec {
    let continuous = fx["continuous"].as_bool().unwrap();
    let outputs = fx["outputs"].as_u64().unwrap() as usize;
    let hidden: Vec<usize> = fx["hidden"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_u64().unwrap() as usize)
        .collect();
    PolicySpec {
        obs_dim: fx["obs_dim"].as_u64().unwrap() as usize,
        head: if continuous {
            ActionHead::Gaussian { dim: outputs }
        } else {
            ActionHead::Categorical { n: outputs }
        },
        actor_hidden: hidden.clone(),
        critic_hidden: hidden,
        activation: Activation::Tanh,
    }
}

/// The loss settings a fixture was written with.
fn fixture_config(fx: &Value) -> PpoConfig {
    let cfg = &fx["config"];
    PpoConfig {
        clip_coef: cfg["clip_coef"].as_f64().unwrap(),
        norm_adv: cfg["norm_adv"].as_bool().unwrap(),
        clip_vloss: cfg["clip_vloss"].as_bool().unwrap(),
        ent_coef: cfg["ent_coef"].as_f64().unwrap(),
        vf_coef: cfg["vf_coef"].as_f64().unwrap(),
        ..PpoConfig::default()
    }
}

fn check_loss_fixture(name: &str) {
    let fx = fixture(name);
    let continuous = fx["continuous"].as_bool().unwrap();
    let obs_dim = fx["obs_dim"].as_u64().unwrap() as usize;
    let outputs = fx["outputs"].as_u64().unwrap() as usize;
    let spec = fixture_spec(&fx);
    let layout = spec.layout();
    let names: Vec<&str> = layout.entries.iter().map(|e| e.name.as_str()).collect();
    let torch_names: Vec<&str> = fx["param_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(
        names, torch_names,
        "{name}: parameter names and order differ from PyTorch's"
    );

    let mut net = ActorCritic::new(spec, 0, 0.0, Device::Cpu);
    net.load_flat(&floats(&fx["weights"])).unwrap();
    let config = fixture_config(&fx);
    let b = &fx["batch"];
    let n = floats(&b["advantages"]).len() as i64;
    let action_dim = if continuous { outputs as i64 } else { 1 };
    let (obs, actions) = (
        tensor(&b["obs"], &[n, obs_dim as i64]),
        tensor(&b["actions"], &[n, action_dim]),
    );
    let (old_lp, adv) = (
        tensor(&b["old_log_probs"], &[n]),
        tensor(&b["advantages"], &[n]),
    );
    let (ret, old_v) = (tensor(&b["returns"], &[n]), tensor(&b["old_values"], &[n]));
    let mb = Minibatch {
        obs: &obs,
        actions: &actions,
        old_log_probs: &old_lp,
        advantages: &adv,
        returns: &ret,
        old_values: &old_v,
    };
    let out = ppo_loss(&net, &mb, &config, config.clip_coef);
    let terms = &fx["terms"];
    for (field, got) in [
        ("policy_loss", out.policy_loss),
        ("value_loss", out.value_loss),
        ("entropy", out.entropy),
        ("approx_kl", out.approx_kl),
        ("old_approx_kl", out.old_approx_kl),
        ("clip_frac", out.clip_frac),
        ("loss", out.loss.double_value(&[])),
    ] {
        close(
            &format!("{name}: {field}"),
            got,
            terms[field].as_f64().unwrap(),
            LOSS_TOLERANCE,
        );
    }
    assert!(
        terms["clip_frac"].as_f64().unwrap() > 0.0,
        "{name}: the fixture should exercise clipping"
    );

    net.zero_grad();
    out.loss.backward();
    for pname in &torch_names {
        let grad = net.grad_of(pname).unwrap();
        let expected = floats(&fx["grads"][*pname]);
        assert_eq!(grad.len(), expected.len(), "{name}: gradient of {pname}");
        for (i, (g, e)) in grad.iter().zip(&expected).enumerate() {
            close(
                &format!("{name}: d loss / d {pname}[{i}]"),
                *g as f64,
                *e as f64,
                LOSS_TOLERANCE,
            );
        }
    }

    let norm = clip_grad_norm(net.flat(), fx["max_grad_norm"].as_f64().unwrap());
    close(
        &format!("{name}: gradient norm"),
        norm,
        fx["grad_norm"].as_f64().unwrap(),
        LOSS_TOLERANCE,
    );
    let mut adam = Adam::new(net.flat(), 0.9, 0.999, fx["adam"]["eps"].as_f64().unwrap());
    let mut flat = net.flat().shallow_clone();
    adam.step(&mut flat, fx["adam"]["lr"].as_f64().unwrap());
    let after = floats(&fx["weights_after_step"]);
    for (i, (got, e)) in net.to_flat().iter().zip(&after).enumerate() {
        close(
            &format!("{name}: weight {i} after one Adam step"),
            *got as f64,
            *e as f64,
            LOSS_TOLERANCE,
        );
    }
    assert_eq!(adam.step, 1);
}

#[test]
fn ppo_loss_and_gradients_match_pytorch_for_a_categorical_policy() {
    check_loss_fixture("ppo_loss_categorical");
}

#[test]
fn ppo_loss_and_gradients_match_pytorch_for_a_gaussian_policy() {
    check_loss_fixture("ppo_loss_gaussian");
}

#[test]
fn unclipped_value_loss_without_advantage_normalisation_matches_pytorch() {
    check_loss_fixture("ppo_loss_gaussian_plain");
}

#[test]
fn gae_with_terminated_and_truncated_episodes_matches_pytorch() {
    let fx = fixture("gae");
    let num_envs = fx["num_envs"].as_u64().unwrap() as usize;
    let gamma = fx["gamma"].as_f64().unwrap() as f32;
    let bools = |v: &Value| -> Vec<bool> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect()
    };
    let terminated = bools(&fx["terminated"]);
    let truncated = bools(&fx["truncated"]);
    let dones: Vec<bool> = terminated
        .iter()
        .zip(&truncated)
        .map(|(a, b)| *a || *b)
        .collect();
    let mut rewards = floats(&fx["rewards"]);
    for (r, v) in rewards.iter_mut().zip(floats(&fx["final_values"])) {
        *r += gamma * v;
    }
    let (adv, ret) = gae(
        &rewards,
        &floats(&fx["values"]),
        &dones,
        &floats(&fx["last_values"]),
        num_envs,
        gamma,
        fx["gae_lambda"].as_f64().unwrap() as f32,
    );
    for (i, (got, e)) in adv.iter().zip(floats(&fx["advantages"])).enumerate() {
        close(
            &format!("advantage {i}"),
            *got as f64,
            e as f64,
            GAE_TOLERANCE,
        );
    }
    for (i, (got, e)) in ret.iter().zip(floats(&fx["returns"])).enumerate() {
        close(&format!("return {i}"), *got as f64, e as f64, GAE_TOLERANCE);
    }
}

/// The host (libtorch-free) gradient against the same PyTorch fixtures.
fn check_host_fixture(name: &str) {
    use rl_algo::host::{clip_grad_norm_host, HostAdam, HostGradient, HostMinibatch};
    let fx = fixture(name);
    let spec = fixture_spec(&fx);
    let layout = spec.layout();
    let config = fixture_config(&fx);
    let b = &fx["batch"];
    let (obs, actions, old_lp) = (
        floats(&b["obs"]),
        floats(&b["actions"]),
        floats(&b["old_log_probs"]),
    );
    let (adv, ret, old_v) = (
        floats(&b["advantages"]),
        floats(&b["returns"]),
        floats(&b["old_values"]),
    );
    let mb = HostMinibatch {
        obs: &obs,
        actions: &actions,
        old_log_probs: &old_lp,
        advantages: &adv,
        returns: &ret,
        old_values: &old_v,
    };
    let mut weights = floats(&fx["weights"]);
    let mut grad = vec![0.0; layout.total_len];
    let mut engine = HostGradient::new(spec);
    let terms = engine.loss_and_grad(&weights, &mb, &config, config.clip_coef, &mut grad);
    let t = &fx["terms"];
    for (field, got) in [
        ("policy_loss", terms.policy_loss),
        ("value_loss", terms.value_loss),
        ("entropy", terms.entropy),
        ("approx_kl", terms.approx_kl),
        ("old_approx_kl", terms.old_approx_kl),
        ("clip_frac", terms.clip_frac),
        ("loss", terms.loss),
    ] {
        close(
            &format!("{name} (host): {field}"),
            got,
            t[field].as_f64().unwrap(),
            LOSS_TOLERANCE,
        );
    }
    for entry in &layout.entries {
        let expected = floats(&fx["grads"][entry.name.as_str()]);
        for (i, e) in expected.iter().enumerate() {
            close(
                &format!("{name} (host): d loss / d {}[{i}]", entry.name),
                grad[entry.offset + i] as f64,
                *e as f64,
                LOSS_TOLERANCE,
            );
        }
    }
    let norm = clip_grad_norm_host(&mut grad, fx["max_grad_norm"].as_f64().unwrap());
    close(
        &format!("{name} (host): gradient norm"),
        norm,
        fx["grad_norm"].as_f64().unwrap(),
        LOSS_TOLERANCE,
    );
    let mut adam = HostAdam::new(
        layout.total_len,
        0.9,
        0.999,
        fx["adam"]["eps"].as_f64().unwrap(),
    );
    adam.step(&mut weights, &grad, fx["adam"]["lr"].as_f64().unwrap());
    for (i, (got, e)) in weights
        .iter()
        .zip(floats(&fx["weights_after_step"]))
        .enumerate()
    {
        close(
            &format!("{name} (host): weight {i} after one Adam step"),
            *got as f64,
            e as f64,
            LOSS_TOLERANCE,
        );
    }
}

#[test]
fn host_ppo_gradient_matches_pytorch_for_a_categorical_policy() {
    check_host_fixture("ppo_loss_categorical");
}

#[test]
fn host_ppo_gradient_matches_pytorch_for_a_gaussian_policy() {
    check_host_fixture("ppo_loss_gaussian");
}

#[test]
fn host_unclipped_value_loss_without_advantage_normalisation_matches_pytorch() {
    check_host_fixture("ppo_loss_gaussian_plain");
}
