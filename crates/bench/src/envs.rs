//! `bench envs [--seconds S] [--env ID]... [--num-envs N]...`
//!
//! Measures env steps per second, single-threaded, and prints one JSON line
//! per measurement:
//! `{"bench":"env_step","impl":"ours","env":"CartPole-v1","mode":"single","num_envs":1,"steps":..,"seconds":..,"steps_per_s":..}`
//! `mode` is `single` (one env through the checked `Env` interface, reset
//! when an episode ends) or `vector` (`VecEnv` with same-step autoreset).
//! Actions come from a fixed pseudo-random table, so no sampling cost is
//! measured; `scripts/bench` measures Gymnasium the same way.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rl_env::rng::Rng;
use rl_env::{Action, Actions, Env, EnvError, Registry, Space};

const ACTION_TABLE_LEN: usize = 4096;

struct Options {
    seconds: f64,
    env_ids: Vec<String>,
    sizes: Vec<usize>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        seconds: 1.0,
        env_ids: Vec::new(),
        sizes: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || {
            rest.next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .cloned()
        };
        match flag.as_str() {
            "--seconds" => {
                let v = value()?;
                options.seconds = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| format!("--seconds {v}: expected a positive number"))?;
            }
            "--env" => options.env_ids.push(value()?),
            "--num-envs" => {
                let v = value()?;
                options.sizes.push(
                    v.parse()
                        .ok()
                        .filter(|n: &usize| *n > 0)
                        .ok_or_else(|| format!("--num-envs {v}: expected a positive integer"))?,
                );
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(options)
}

/// `ACTION_TABLE_LEN` actions per env, drawn once.
fn action_table(space: &Space, num_envs: usize, seed: u64) -> (Vec<i64>, Vec<f32>) {
    let mut rng = Rng::from_seed(seed);
    let n = ACTION_TABLE_LEN * num_envs;
    match space {
        Space::Discrete { n: count } => (
            (0..n)
                .map(|_| (rng.next_u64() % *count as u64) as i64)
                .collect(),
            Vec::new(),
        ),
        Space::Box(b) => {
            let dim = b.flat_dim();
            let values = (0..n * dim)
                .map(|k| {
                    let (lo, hi) = (b.low[k % dim], b.high[k % dim]);
                    rng.uniform(lo as f64, hi as f64) as f32
                })
                .collect();
            (Vec::new(), values)
        }
    }
}

fn print_line(env: &str, mode: &str, num_envs: usize, steps: u64, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "bench": "env_step",
            "impl": "ours",
            "env": env,
            "mode": mode,
            "num_envs": num_envs,
            "steps": steps,
            "seconds": seconds,
            "steps_per_s": steps as f64 / seconds,
        })
    );
}

fn bench_single(registry: &Registry, id: &str, seconds: f64) -> Result<(), EnvError> {
    let mut env = registry.make(id)?;
    let dim = env.action_space().flat_dim();
    let (discrete, continuous) = action_table(env.action_space(), 1, 1);
    let mut obs = vec![0.0_f32; env.observation_space().flat_dim()];
    env.reset_into(Some(0), &mut obs)?;
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut steps: u64 = 0;
    while start.elapsed() < budget {
        for k in 0..ACTION_TABLE_LEN {
            let action = if discrete.is_empty() {
                Action::Continuous(&continuous[k * dim..(k + 1) * dim])
            } else {
                Action::Discrete(discrete[k])
            };
            let t = env.step_into(action, &mut obs)?;
            if t.terminated || t.truncated {
                env.reset_into(None, &mut obs)?;
            }
        }
        black_box(&obs);
        steps += ACTION_TABLE_LEN as u64;
    }
    print_line(id, "single", 1, steps, start.elapsed());
    Ok(())
}

fn bench_vector(
    registry: &Registry,
    id: &str,
    num_envs: usize,
    seconds: f64,
) -> Result<(), EnvError> {
    let mut envs = registry.make_vec(id, num_envs)?;
    envs.reset(0)?;
    let row = num_envs * envs.action_dim();
    let (discrete, continuous) = action_table(envs.action_space(), num_envs, 2);
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut calls: u64 = 0;
    let mut k = 0;
    while start.elapsed() < budget {
        for _ in 0..(4096 / num_envs).max(1) {
            if discrete.is_empty() {
                envs.step(Actions::Continuous(&continuous[k * row..(k + 1) * row]))?;
            } else {
                envs.step(Actions::Discrete(
                    &discrete[k * num_envs..(k + 1) * num_envs],
                ))?;
            }
            k = (k + 1) % ACTION_TABLE_LEN;
            calls += 1;
        }
        black_box(envs.obs());
    }
    print_line(
        id,
        "vector",
        num_envs,
        calls * num_envs as u64,
        start.elapsed(),
    );
    Ok(())
}

/// `bench envs ARGS`.
pub fn run(args: &[String]) -> Result<(), String> {
    let options = parse_args(args)?;
    let registry = Registry::with_builtins();
    let env_ids: Vec<String> = if options.env_ids.is_empty() {
        registry.ids().map(str::to_string).collect()
    } else {
        options.env_ids.clone()
    };
    let sizes = if options.sizes.is_empty() {
        vec![1, 8, 64, 256]
    } else {
        options.sizes.clone()
    };
    for id in &env_ids {
        bench_single(&registry, id, options.seconds)
            .and_then(|_| {
                sizes
                    .iter()
                    .try_for_each(|n| bench_vector(&registry, id, *n, options.seconds))
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
