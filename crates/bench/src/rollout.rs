//! `bench rollout [--env ID] [--seconds S] [--workers N]...
//! [--envs-per-worker E]... [--num-steps T]`: env steps per second of
//! rollouts (CartPole-v1 unless `--env` names another, such as
//! `gymnasium:HalfCheetah-v5`) with the
//! 64-64 tanh actor-critic, collected by real worker processes and delivered
//! to a receiver that does all the learner does with them but the update
//! ([`rl_runtime::throughput`]); one JSON line per setting, after one line
//! for a collector in this process alone (no processes, no transport).

use std::time::Instant;

use rl_env::Registry;
use rl_policy::{Policy, Rollout, RolloutCollector};
use rl_runtime::{RunDir, TrainSettings};

struct Options {
    env: String,
    seconds: f64,
    workers: Vec<usize>,
    envs_per_worker: Vec<usize>,
    num_steps: usize,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        env: "CartPole-v1".to_string(),
        seconds: 3.0,
        workers: Vec::new(),
        envs_per_worker: Vec::new(),
        num_steps: 256,
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| -> Result<usize, String> {
            v.parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag} {v}: expected a positive integer"))
        };
        match flag.as_str() {
            "--seconds" => {
                o.seconds = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| format!("--seconds {value}: expected a positive number"))?
            }
            "--env" => o.env = value.clone(),
            "--workers" => o.workers.push(number(value)?),
            "--envs-per-worker" => o.envs_per_worker.push(number(value)?),
            "--num-steps" => o.num_steps = number(value)?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.workers.is_empty() {
        o.workers = vec![1, 2];
    }
    if o.envs_per_worker.is_empty() {
        o.envs_per_worker = vec![1, 8, 64, 256];
    }
    Ok(o)
}

fn settings(
    env: &str,
    workers: usize,
    envs_per_worker: usize,
    num_steps: usize,
) -> Result<TrainSettings, String> {
    let text = format!(
        "[env]\nid = {env:?}\nnum_envs = {}\n[network]\nactor_hidden = [64, 64]\ncritic_hidden = [64, 64]\nactivation = \"tanh\"\n[ppo]\nnum_steps = {num_steps}\nnum_minibatches = 1\n[run]\nnum_workers = {workers}\nworker_timeout_s = 60\n",
        workers * envs_per_worker
    );
    toml::from_str(&text).map_err(|e| e.to_string())
}

/// The collector alone, in this process.
fn in_process(
    registry: &Registry,
    env: &str,
    envs_per_worker: usize,
    num_steps: usize,
    seconds: f64,
) -> Result<(), String> {
    let s = settings(env, 1, envs_per_worker, num_steps)?;
    let spec = rl_runtime::spec_for(registry, &s).map_err(|e| e.to_string())?;
    let mut policy = Policy::new(spec.clone()).map_err(|e| e.to_string())?;
    policy
        .set_weights(&rl_algo::init::initial_weights(&spec, 1, 0.0))
        .map_err(|e| e.to_string())?;
    let envs = registry
        .make_vec(env, envs_per_worker)
        .map_err(|e| e.to_string())?;
    let mut collector = RolloutCollector::new(envs, policy, 1, 0).map_err(|e| e.to_string())?;
    let mut rollout = Rollout::default();
    collector
        .collect_into(num_steps, &mut rollout)
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut steps = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        collector
            .collect_into(num_steps, &mut rollout)
            .map_err(|e| e.to_string())?;
        steps += (num_steps * envs_per_worker) as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "bench": "rollout_collect",
            "impl": "ours",
            "env": env,
            "mode": "in_process",
            "workers": 0,
            "envs_per_worker": envs_per_worker,
            "num_steps": num_steps,
            "env_steps": steps,
            "seconds": elapsed,
            "steps_per_s": steps as f64 / elapsed,
        })
    );
    Ok(())
}

/// `bench rollout ARGS`; errors carry the exit code (2: bad usage).
pub fn run(args: &[String]) -> Result<(), (u8, String)> {
    let o = parse(args).map_err(|m| (2, m))?;
    measure(&o).map_err(|m| (1, m))
}

fn measure(o: &Options) -> Result<(), String> {
    let registry = crate::registry();
    for &e in &o.envs_per_worker {
        in_process(&registry, &o.env, e, o.num_steps, o.seconds.min(1.0))?;
    }
    let scratch = std::env::temp_dir().join(format!("ferrorl-bench-{}", std::process::id()));
    let run_dir = RunDir::create(&scratch).map_err(|e| e.to_string())?;
    let result = (|| {
        for &w in &o.workers {
            for &e in &o.envs_per_worker {
                let s = settings(&o.env, w, e, o.num_steps)?;
                let m = rl_runtime::processes::throughput::measure_rollout_throughput(
                    &registry, &s, &run_dir, o.seconds,
                )
                .map_err(|e| e.to_string())?;
                println!(
                    "{}",
                    serde_json::json!({
                        "bench": "rollout_collect",
                        "impl": "ours",
                        "env": o.env,
                        "mode": "processes",
                        "workers": m.num_workers,
                        "envs_per_worker": m.envs_per_worker,
                        "num_steps": m.num_steps,
                        "env_steps": m.env_steps,
                        "seconds": m.seconds,
                        "steps_per_s": m.steps_per_s(),
                    })
                );
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}
