//! The learner on a device, as `scripts/gpu-check` measures it:
//!
//! ```text
//! bench learner-compare [--device cpu|cuda]
//!     CUDA seen; one PPO update of the same rollout by the hand-written
//!     host engine, libtorch on the CPU and libtorch on the device; the
//!     largest weight difference between them
//! bench learner-time [--device cpu|cuda] [--hidden 64,64] [--batch 2048]
//!     [--minibatches 4] [--epochs 4] [--seconds S]
//!     milliseconds per minibatch step of the libtorch engine on the device
//!     (Pendulum-v1 shapes: a Gaussian actor and a critic of those hidden
//!     sizes), the figure `scripts/gpu_torch_timing.py` gives for PyTorch
//! ```
//!
//! One JSON line per result.

use std::time::Instant;

use rl_algo::algorithm::RunSpec;
use rl_algo::device::{cuda_available, resolve_device, DeviceChoice};
use rl_algo::engine::gradient::Backend;
use rl_algo::engine::gradient::Device;
use rl_algo::ppo::config::PpoConfig;
use rl_algo::ppo::learner::PpoLearner;
use rl_env::Registry;
use rl_policy::{ActionHead, Activation, Policy, PolicySpec, Rollout, RolloutCollector};

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].as_str())
}

fn device(args: &[String]) -> Result<Device, (u8, String)> {
    let choice: DeviceChoice = flag(args, "--device")
        .unwrap_or("cuda")
        .parse()
        .map_err(|e| (2, format!("{e}")))?;
    resolve_device(choice).map_err(|e| (1, e.to_string()))
}

fn number(args: &[String], name: &str, default: usize) -> Result<usize, (u8, String)> {
    match flag(args, name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| (2, format!("{name} {v}: expected a positive integer"))),
    }
}

/// A rollout of `env` collected with the initial weights of `learner`.
fn rollout(
    env: &str,
    spec: &PolicySpec,
    learner: &PpoLearner,
    envs: usize,
    steps: usize,
) -> Rollout {
    let registry = Registry::with_builtins();
    let vec_env = registry
        .make_vec(env, envs)
        .unwrap_or_else(|e| panic!("{env}: {e}"));
    let mut collector = RolloutCollector::new(
        vec_env,
        Policy::new(spec.clone()).unwrap_or_else(|e| panic!("{e}")),
        7,
        0,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    collector
        .set_policy(&learner.policy_weights(), learner.obs_norm.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    collector
        .collect(steps)
        .unwrap_or_else(|e| panic!("{env}: {e}"))
}

fn spec(obs_dim: usize, head: ActionHead, hidden: Vec<usize>) -> PolicySpec {
    PolicySpec {
        obs_dim,
        head,
        actor_hidden: hidden.clone(),
        critic_hidden: hidden,
        activation: Activation::Tanh,
    }
}

pub fn compare(args: &[String]) -> Result<(), (u8, String)> {
    println!(
        "{}",
        serde_json::json!({
            "check": "cuda_seen",
            "available": cuda_available(),
            "devices": tch::Cuda::device_count(),
        })
    );
    let device = device(args)?;
    for (env, obs_dim, head) in [
        ("CartPole-v1", 4, ActionHead::Categorical { n: 2 }),
        ("Pendulum-v1", 3, ActionHead::Gaussian { dim: 1 }),
    ] {
        let spec = spec(obs_dim, head, vec![64, 64]);
        let config = PpoConfig {
            num_steps: 128,
            num_minibatches: 4,
            update_epochs: 4,
            ..PpoConfig::default()
        };
        let run = RunSpec {
            obs_norm_clip: Some(10.0),
            ..RunSpec::new(8, 8 * 128 * 10, 3)
        };
        let learner = |backend| {
            PpoLearner::new(spec.clone(), config.clone(), &run, backend).map_err(|e| (1, e))
        };
        let mut engines = [
            ("host", learner(Backend::Host)?),
            ("torch-cpu", learner(Backend::Torch(Device::Cpu))?),
            ("torch-device", learner(Backend::Torch(device))?),
        ];
        let data = rollout(env, &spec, &engines[0].1, 8, config.num_steps);
        let mut weights = Vec::new();
        for (name, engine) in &mut engines {
            let start = Instant::now();
            engine
                .update(&data, &|| false)
                .map_err(|e| (1, format!("{env} {name}: {e}")))?;
            weights.push((*name, engine.policy_weights().into_owned(), start.elapsed()));
        }
        let diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0_f32, f32::max)
        };
        println!(
            "{}",
            serde_json::json!({
                "check": "one_update",
                "env": env,
                "device": format!("{device:?}"),
                "max_weight_diff_device_vs_host": diff(&weights[2].1, &weights[0].1),
                "max_weight_diff_device_vs_torch_cpu": diff(&weights[2].1, &weights[1].1),
                "max_weight_diff_torch_cpu_vs_host": diff(&weights[1].1, &weights[0].1),
                "update_ms": {
                    "host": weights[0].2.as_secs_f64() * 1e3,
                    "torch_cpu": weights[1].2.as_secs_f64() * 1e3,
                    "torch_device": weights[2].2.as_secs_f64() * 1e3,
                },
            })
        );
    }
    Ok(())
}

pub fn time(args: &[String]) -> Result<(), (u8, String)> {
    let device = device(args)?;
    let hidden: Vec<usize> = flag(args, "--hidden")
        .unwrap_or("64,64")
        .split(',')
        .map(|h| h.trim().parse().ok().filter(|h| *h > 0))
        .collect::<Option<_>>()
        .ok_or((2, "--hidden: expected sizes like 64,64".to_string()))?;
    let batch = number(args, "--batch", 2048)?;
    let minibatches = number(args, "--minibatches", 4)?;
    let epochs = number(args, "--epochs", 4)?;
    let seconds: f64 = flag(args, "--seconds").map_or(Ok(5.0), |v| {
        v.parse().map_err(|_| (2, format!("--seconds {v}")))
    })?;
    let envs = 8;
    if batch % (envs * minibatches) != 0 {
        return Err((
            2,
            format!("--batch {batch}: a multiple of {}", envs * minibatches),
        ));
    }
    let spec = spec(3, ActionHead::Gaussian { dim: 1 }, hidden.clone());
    let config = PpoConfig {
        num_steps: batch / envs,
        num_minibatches: minibatches,
        update_epochs: epochs,
        anneal_lr: false,
        ..PpoConfig::default()
    };
    let mut learner = PpoLearner::new(
        spec.clone(),
        config.clone(),
        &RunSpec::new(envs, u64::MAX / 4, 3),
        Backend::Torch(device),
    )
    .map_err(|e| (1, e))?;
    let data = rollout("Pendulum-v1", &spec, &learner, envs, config.num_steps);
    // One update to warm up (allocator, kernels), then as many as fit.
    learner
        .update(&data, &|| false)
        .map_err(|e| (1, e.to_string()))?;
    let start = Instant::now();
    let mut updates = 0u32;
    while start.elapsed().as_secs_f64() < seconds || updates < 2 {
        learner
            .update(&data, &|| false)
            .map_err(|e| (1, e.to_string()))?;
        updates += 1;
    }
    let steps = f64::from(updates) * (epochs * minibatches) as f64;
    println!(
        "{}",
        serde_json::json!({
            "bench": "learner_update",
            "impl": "ferrorl",
            "device": format!("{device:?}"),
            "hidden": hidden,
            "batch": batch,
            "minibatch": batch / minibatches,
            "ms_per_minibatch": start.elapsed().as_secs_f64() * 1e3 / steps,
        })
    );
    Ok(())
}
