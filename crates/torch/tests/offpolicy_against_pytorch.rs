//! SAC, TD3 and DQN updates against PyTorch: fixtures written by
//! `scripts/offpolicy_fixtures.py` with torch itself, from CleanRL's code
//! (initial networks, batches, the normal draws, three updates each).
//! Every tensor of the state after every update (networks, targets, Adam's
//! moments, which hold the gradients, and log_alpha), the Adam steps and
//! the reported statistics must match to 1e-5.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use rl_algo::engine::agent::{AgentAlgo, AgentSpec};
use rl_algo::offpolicy::config::{DqnConfig, SacConfig, Td3Config};
use rl_policy::Activation;
use rl_torch::agents::{Agent, Batch};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/fixtures/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/offpolicy_fixtures.py writes it)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn spec(fx: &Value) -> AgentSpec {
    let c = &fx["config"];
    let f = |k: &str| c[k].as_f64().unwrap();
    let algo = match fx["algo"].as_str().unwrap() {
        "sac" => AgentAlgo::Sac(SacConfig {
            gamma: f("gamma"),
            tau: f("tau"),
            q_lr: f("q_lr"),
            policy_lr: f("policy_lr"),
            policy_frequency: c["policy_frequency"].as_u64().unwrap(),
            target_network_frequency: c["target_network_frequency"].as_u64().unwrap(),
            alpha: f("alpha"),
            autotune: c["autotune"].as_bool().unwrap(),
            ..SacConfig::default()
        }),
        "td3" => AgentAlgo::Td3(Td3Config {
            gamma: f("gamma"),
            tau: f("tau"),
            learning_rate: f("learning_rate"),
            policy_noise: f("policy_noise"),
            noise_clip: f("noise_clip"),
            policy_frequency: c["policy_frequency"].as_u64().unwrap(),
            ..Td3Config::default()
        }),
        _ => AgentAlgo::Dqn(DqnConfig {
            gamma: f("gamma"),
            tau: f("tau"),
            learning_rate: f("learning_rate"),
            double_q: c["double_q"].as_bool().unwrap(),
            ..DqnConfig::default()
        }),
    };
    let hidden: Vec<usize> = fx["hidden"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_u64().unwrap() as usize)
        .collect();
    let (low, high) = (floats(&fx["low"]), floats(&fx["high"]));
    let discrete = matches!(algo, AgentAlgo::Dqn(_));
    AgentSpec {
        obs_dim: fx["obs_dim"].as_u64().unwrap() as usize,
        action_size: if discrete {
            fx["actions"].as_u64().unwrap() as usize
        } else {
            fx["action_dim"].as_u64().unwrap() as usize
        },
        actor_hidden: hidden.clone(),
        critic_hidden: hidden,
        activation: Activation::Relu,
        action_scale: if discrete {
            vec![]
        } else {
            low.iter().zip(&high).map(|(l, h)| (h - l) / 2.0).collect()
        },
        action_bias: if discrete {
            vec![]
        } else {
            low.iter().zip(&high).map(|(l, h)| (h + l) / 2.0).collect()
        },
        algo,
    }
}

fn close(ours: &[f32], theirs: &[f32], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "{what}[{i}]: ours {a}, PyTorch {b}"
        );
    }
}

fn check(name: &str) {
    let fx = fixture(name);
    let spec = spec(&fx);
    let mut agent = Agent::new(&spec, tch::Device::Cpu);
    let layout = agent.describe();
    for (index, (tensor, _)) in layout.tensors.iter().enumerate() {
        agent
            .set(index, &floats(&fx["initial"][tensor.as_str()]))
            .unwrap();
    }
    let batch_size = fx["batch"].as_u64().unwrap() as usize;
    for (k, step) in fx["steps"].as_array().unwrap().iter().enumerate() {
        let b = &step["batch"];
        let batch = Batch::new(
            &floats(&b["obs"]),
            &floats(&b["actions"]),
            &floats(&b["rewards"]),
            &floats(&b["next_obs"]),
            &floats(&b["dones"]),
            &floats(&step["noise"]),
            batch_size,
            spec.action_size,
            tch::Device::Cpu,
        );
        let stats = agent
            .update(
                &batch,
                step["update_actor"].as_bool().unwrap(),
                step["update_targets"].as_bool().unwrap(),
            )
            .unwrap();
        for (i, (ours, theirs)) in stats
            .iter()
            .zip(step["stats"].as_array().unwrap())
            .enumerate()
        {
            match theirs.as_f64() {
                None => assert!(
                    ours.is_nan(),
                    "{name} update {k}: stat {i} is {ours}, expected none"
                ),
                Some(t) => assert!(
                    (ours - t).abs() <= 1e-5 * t.abs().max(1.0),
                    "{name} update {k}: {} is {ours}, PyTorch {t}",
                    spec.stat_names()[i]
                ),
            }
        }
        for (index, (tensor, _)) in layout.tensors.iter().enumerate() {
            close(
                &agent.get(index).unwrap(),
                &floats(&step["after"][tensor.as_str()]),
                &format!("{name} update {k}: {tensor}"),
            );
        }
        let counters = agent.counters();
        for (counter, value) in layout.counters.iter().zip(counters) {
            let key = if counter.starts_with("qf") {
                "q_adam.step"
            } else {
                counter.as_str()
            };
            assert_eq!(
                Some(value),
                step["counters"][key].as_u64(),
                "{name} update {k}: {counter}"
            );
        }
    }
}

#[test]
fn sac_with_tuned_alpha_matches_pytorch() {
    check("offpolicy_sac");
}

#[test]
fn sac_with_fixed_alpha_matches_pytorch() {
    check("offpolicy_sac_fixed_alpha");
}

#[test]
fn td3_matches_pytorch() {
    check("offpolicy_td3");
}

#[test]
fn dqn_matches_pytorch() {
    check("offpolicy_dqn");
}

#[test]
fn double_dqn_matches_pytorch() {
    check("offpolicy_double_dqn");
}
