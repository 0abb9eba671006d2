//! Times the parts of one PPO minibatch step (CartPole shapes, batch 256,
//! 64-64 tanh actor and critic, one libtorch thread) and prints a JSON line:
//! `cargo run --release -p rl-algo --example update_timing`.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use rl_algo::ppo::config::PpoConfig;
use rl_policy::{ActionHead, Activation, PolicySpec};
use rl_torch::adam::{clip_grad_norm, Adam};
use rl_torch::engine::{ppo_loss, Minibatch};
use rl_torch::net::ActorCritic;
use tch::{Device, Kind, Tensor};

fn main() {
    tch::set_num_threads(1);
    let spec = PolicySpec {
        obs_dim: 4,
        head: ActionHead::Categorical { n: 2 },
        actor_hidden: vec![64, 64],
        critic_hidden: vec![64, 64],
        activation: Activation::Tanh,
    };
    let mut net = ActorCritic::new(spec, 0, 0.0, Device::Cpu);
    let mut adam = Adam::new(net.flat(), 0.9, 0.999, 1e-5);
    let b = 256;
    let obs = Tensor::randn([b, 4], (Kind::Float, Device::Cpu));
    let actions = Tensor::randint(2, [b, 1], (Kind::Float, Device::Cpu));
    let lp = Tensor::randn([b], (Kind::Float, Device::Cpu)) * 0.1 - 0.7;
    let adv = Tensor::randn([b], (Kind::Float, Device::Cpu));
    let ret = Tensor::randn([b], (Kind::Float, Device::Cpu));
    let vals = Tensor::randn([b], (Kind::Float, Device::Cpu));
    let cfg = PpoConfig::default();
    let n = 500;
    let (mut t_fwd, mut t_bwd, mut t_opt) = (0.0, 0.0, 0.0);
    for i in 0..n + 50 {
        let t0 = Instant::now();
        let mb = Minibatch {
            obs: &obs,
            actions: &actions,
            old_log_probs: &lp,
            advantages: &adv,
            returns: &ret,
            old_values: &vals,
        };
        let out = ppo_loss(&net, &mb, &cfg, 0.2);
        let t1 = Instant::now();
        net.zero_grad();
        out.loss.backward();
        let t2 = Instant::now();
        clip_grad_norm(net.flat(), 0.5);
        let mut flat = net.flat().shallow_clone();
        adam.step(&mut flat, 1e-4);
        let t3 = Instant::now();
        if i >= 50 {
            t_fwd += (t1 - t0).as_secs_f64();
            t_bwd += (t2 - t1).as_secs_f64();
            t_opt += (t3 - t2).as_secs_f64();
        }
    }
    let us = |t: f64| t / n as f64 * 1e6;
    println!(
        "{{\"bench\":\"ppo_minibatch_step\",\"batch\":{b},\"forward_loss_us\":{:.0},\"backward_us\":{:.0},\"clip_adam_us\":{:.0},\"total_us\":{:.0}}}",
        us(t_fwd),
        us(t_bwd),
        us(t_opt),
        us(t_fwd + t_bwd + t_opt)
    );
}
