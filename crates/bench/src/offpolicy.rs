//! The off-policy learner's update, as `scripts/bench offpolicy` reports
//! it against this CPU's float32 limit:
//!
//! ```text
//! bench offpolicy-step [--algo sac|td3|dqn] [--device cpu|cuda] [--hidden 256,256]
//!     [--batch 256] [--threads N] [--seconds S]
//!     milliseconds per gradient step of the learner (replay sampling, noise,
//!     the update in libtorch), Pendulum-v1 shapes (CartPole-v1 for DQN),
//!     one step per chunk of one transition, as the zoo's SAC runs
//! ```

use std::time::Instant;

use rl_algo::algorithm::{Algorithm, RunSpec};
use rl_algo::device::{resolve_device, set_torch_threads, DeviceChoice};
use rl_algo::engine::agent::AgentAlgo;
use rl_algo::offpolicy::config::{DqnConfig, SacConfig, Td3Config};
use rl_algo::offpolicy::learner::OffPolicyLearner;
use rl_env::rng::Rng;
use rl_policy::{ActionHead, Activation, PolicySpec, Rollout};

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].as_str())
}

pub fn step(args: &[String]) -> Result<(), (u8, String)> {
    let algo = flag(args, "--algo").unwrap_or("sac");
    let device = resolve_device(
        flag(args, "--device")
            .unwrap_or("cpu")
            .parse::<DeviceChoice>()
            .map_err(|e| (2, e.to_string()))?,
    )
    .map_err(|e| (1, e.to_string()))?;
    let hidden: Vec<usize> = flag(args, "--hidden")
        .unwrap_or("256,256")
        .split(',')
        .map(|h| h.trim().parse().ok().filter(|h| *h > 0))
        .collect::<Option<_>>()
        .ok_or((2, "--hidden: expected sizes like 256,256".to_string()))?;
    let number = |name: &str, default: usize| -> Result<usize, (u8, String)> {
        flag(args, name).map_or(Ok(default), |v| {
            v.parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| (2, format!("{name} {v}: expected a positive integer")))
        })
    };
    let batch = number("--batch", 256)?;
    let threads = number("--threads", 1)?;
    let seconds: f64 = flag(args, "--seconds").map_or(Ok(5.0), |v| {
        v.parse().map_err(|_| (2, format!("--seconds {v}")))
    })?;
    let (obs_dim, head, agent) = match algo {
        "sac" => (
            3,
            ActionHead::SquashedGaussian { dim: 1 },
            AgentAlgo::Sac(SacConfig {
                batch_size: batch,
                learning_starts: 0,
                policy_frequency: 1,
                policy_lr: 1e-3,
                q_lr: 1e-3,
                ..SacConfig::default()
            }),
        ),
        "td3" => (
            3,
            ActionHead::Deterministic { dim: 1 },
            AgentAlgo::Td3(Td3Config {
                batch_size: batch,
                learning_starts: 0,
                ..Td3Config::default()
            }),
        ),
        "dqn" => (
            4,
            ActionHead::QValues { n: 2 },
            AgentAlgo::Dqn(DqnConfig {
                batch_size: batch,
                learning_starts: 0,
                train_frequency: 1,
                ..DqnConfig::default()
            }),
        ),
        other => return Err((2, format!("--algo {other}: expected sac, td3 or dqn"))),
    };
    let spec = PolicySpec {
        obs_dim,
        head,
        actor_hidden: hidden.clone(),
        critic_hidden: Vec::new(),
        activation: Activation::Relu,
    };
    let (low, high) = (vec![-2.0_f32], vec![2.0_f32]);
    let bounds = (!head.is_discrete()).then_some((low.as_slice(), high.as_slice()));
    let mut learner = OffPolicyLearner::new(
        spec,
        agent,
        hidden.clone(),
        bounds,
        &RunSpec::new(1, u64::MAX / 4, 1),
        device,
    )
    .map_err(|e| (1, e))?;
    set_torch_threads(threads);
    // One transition per chunk: each update adds it and takes one step.
    let mut rng = Rng::from_seed(5);
    let mut chunk = Rollout::default();
    chunk.reshape(1, 1, obs_dim, 1);
    chunk.keep_final_obs();
    let mut fill = |chunk: &mut Rollout| {
        for v in chunk.obs.iter_mut().chain(chunk.last_obs.iter_mut()) {
            *v = rng.standard_normal() as f32;
        }
        chunk.actions[0] = if head.is_discrete() {
            (rng.next_u64() % 2) as f32
        } else {
            rng.uniform(-2.0, 2.0) as f32
        };
        chunk.rewards[0] = rng.standard_normal() as f32;
    };
    for _ in 0..20 {
        fill(&mut chunk);
        learner
            .update(&chunk, &|| false)
            .map_err(|e| (1, e.to_string()))?;
    }
    let start = Instant::now();
    let mut steps = 0u32;
    while start.elapsed().as_secs_f64() < seconds || steps < 5 {
        fill(&mut chunk);
        learner
            .update(&chunk, &|| false)
            .map_err(|e| (1, e.to_string()))?;
        steps += 1;
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "offpolicy_step",
            "impl": "ferrorl",
            "algo": algo,
            "device": format!("{device:?}"),
            "threads": threads,
            "hidden": hidden,
            "batch": batch,
            "ms_per_step": start.elapsed().as_secs_f64() * 1e3 / f64::from(steps),
        })
    );
    Ok(())
}
