//! The worker's forward pass both ways, one thread (CartPole shapes, 64-64
//! tanh actor and critic): libtorch (`tch`, no autograd, plain weight
//! tensors, tanh, Categorical sampling with `multinomial`) against the
//! plain-Rust `rl_policy::Policy` (actor outputs, values, sampling per row).
//! Prints one JSON line per batch size:
//! `cargo run --release -p rl-algo --example forward_timing`.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use rl_env::rng::Rng;
use rl_policy::{ActionHead, Activation, Policy, PolicySpec};
use tch::{Device, Kind, Tensor};

fn time_per_call(mut f: impl FnMut()) -> f64 {
    for _ in 0..200 {
        f();
    }
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed().as_secs_f64() < 1.0 {
        f();
        calls += 1;
    }
    start.elapsed().as_secs_f64() / f64::from(calls)
}

fn main() {
    tch::set_num_threads(1);
    let spec = PolicySpec {
        obs_dim: 4,
        head: ActionHead::Categorical { n: 2 },
        actor_hidden: vec![64, 64],
        critic_hidden: vec![64, 64],
        activation: Activation::Tanh,
    };
    let weights = rl_algo::init::initial_weights(&spec, 1, 0.0);
    let layout = spec.layout();
    let tensor = |name: &str| {
        let e = layout.get(name).unwrap();
        let shape: Vec<i64> = e.shape.iter().map(|d| *d as i64).collect();
        Tensor::from_slice(&weights[e.offset..e.offset + e.len]).view(shape.as_slice())
    };
    let layers = |prefix: &str| -> Vec<(Tensor, Tensor)> {
        (0..3)
            .map(|i| {
                (
                    tensor(&format!("{prefix}.{}.weight", 2 * i)),
                    tensor(&format!("{prefix}.{}.bias", 2 * i)),
                )
            })
            .collect()
    };
    let (actor, critic) = (layers("actor"), layers("critic"));
    let mlp = |layers: &[(Tensor, Tensor)], x: &Tensor| {
        let mut h = x.shallow_clone();
        for (i, (w, b)) in layers.iter().enumerate() {
            h = h.linear(w, Some(b));
            if i + 1 < layers.len() {
                h = h.tanh();
            }
        }
        h
    };
    let mut policy = Policy::new(spec.clone()).unwrap();
    policy.set_weights(&weights).unwrap();
    let mut rngs: Vec<Rng> = (0..256).map(Rng::from_seed).collect();
    for batch in [1usize, 8, 64, 256] {
        let obs: Vec<f32> = (0..batch * 4)
            .map(|i| (i % 17) as f32 * 0.05 - 0.4)
            .collect();
        let x = Tensor::from_slice(&obs).view([batch as i64, 4]);
        let torch = time_per_call(|| {
            tch::no_grad(|| {
                let logits = mlp(&actor, &x);
                let probs = logits.softmax(-1, Kind::Float);
                let action = probs.multinomial(1, true);
                let log_prob = probs.log().gather(1, &action, false);
                let value = mlp(&critic, &x);
                black_box((
                    Vec::<f32>::try_from(log_prob.view([-1])).unwrap(),
                    Vec::<f32>::try_from(value.view([-1])).unwrap(),
                ));
            })
        });
        let mut outputs = vec![0.0_f32; batch * 2];
        let mut values = vec![0.0_f32; batch];
        let mut action = [0.0_f32];
        let ours = time_per_call(|| {
            policy.actor_outputs(&obs, &mut outputs);
            policy.values(&obs, &mut values);
            for (i, rng) in rngs.iter_mut().take(batch).enumerate() {
                black_box(policy.sample_from_outputs(&outputs[i * 2..i * 2 + 2], rng, &mut action));
            }
            black_box(&values);
        });
        println!(
            "{}",
            serde_json::json!({
                "bench": "worker_forward",
                "batch": batch,
                "tch_us": torch * 1e6,
                "ours_us": ours * 1e6,
                "speedup": torch / ours,
                "device": format!("{:?}", Device::Cpu),
            })
        );
    }
}
