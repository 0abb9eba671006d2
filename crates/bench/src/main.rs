//! `bench envs [--seconds S] [--env ID]... [--num-envs N]...`
//! `bench broadcast`
//! `bench transport`
//!
//! Measures env steps per second, single-threaded, and prints one JSON line
//! per measurement:
//! `{"bench":"env_step","impl":"ours","env":"CartPole-v1","mode":"single","num_envs":1,"steps":..,"seconds":..,"steps_per_s":..}`
//! `mode` is `single` (one env through the checked `Env` interface, reset
//! when an episode ends) or `vector` (`VecEnv` with same-step autoreset).
//! Actions come from a fixed pseudo-random table, so no sampling cost is
//! measured; `scripts/bench` measures Gymnasium the same way.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rl_env::rng::Rng;
use rl_env::{Action, Actions, Env, EnvError, Registry, Space};

const ACTION_TABLE_LEN: usize = 4096;

struct Options {
    seconds: f64,
    env_ids: Vec<String>,
    sizes: Vec<usize>,
}

fn usage() -> &'static str {
    "usage: bench envs [--seconds S] [--env ID]... [--num-envs N]...\n\
     \x20      bench broadcast\n\
     \x20      bench transport\n\
     Prints JSON lines: env steps per second; weight publish + read times next to memcpy."
}

/// `bench broadcast`: publishing a weight set into the shared-memory block
/// and reading it back (what a worker does), next to a plain copy of the
/// same bytes, for 10k, 1M and 10M parameters; median of repeated trials.
fn bench_broadcast() -> Result<(), String> {
    for &len in &[10_000usize, 1_000_000, 10_000_000] {
        let weights: Vec<f32> = (0..len).map(|i| i as f32 * 1e-3).collect();
        let mut out = vec![0.0_f32; len];
        let mut block = rl_ipc::WeightBlock::create(len).map_err(|e| e.to_string())?;
        let trials = if len >= 10_000_000 { 15 } else { 101 };
        let mut publish_read = Vec::with_capacity(trials);
        let mut memcpy = Vec::with_capacity(trials);
        for version in 1..=trials as u64 {
            let t = Instant::now();
            block
                .publish(&weights, version)
                .map_err(|e| e.to_string())?;
            let got = block.read_into(&mut out).map_err(|e| e.to_string())?;
            publish_read.push(t.elapsed().as_secs_f64());
            if got != Some(version) {
                return Err(format!("read version {got:?}, published {version}"));
            }
            let t = Instant::now();
            out.copy_from_slice(black_box(&weights));
            black_box(&out);
            memcpy.push(t.elapsed().as_secs_f64());
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (ours, copy) = (median(&mut publish_read), median(&mut memcpy));
        println!(
            "{}",
            serde_json::json!({
                "bench": "weight_broadcast",
                "params": len,
                "bytes": len * 4,
                "publish_and_read_us": ours * 1e6,
                "memcpy_us": copy * 1e6,
                "target_us": 2.0 * copy * 1e6 + 100.0,
                "ratio_to_memcpy": ours / copy,
            })
        );
    }
    Ok(())
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        seconds: 1.0,
        env_ids: Vec::new(),
        sizes: Vec::new(),
    };
    match args.first().map(String::as_str) {
        Some("envs") => {}
        Some(other) => {
            return Err(format!(
                "unknown benchmark '{other}'; known: envs, broadcast"
            ))
        }
        None => return Err("no benchmark named; known: envs, broadcast".to_string()),
    }
    let mut rest = args[1..].iter();
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

/// `bench transport`: rollouts written into a real pipe by one thread and
/// read and validated by another, in bytes per second of payload, next to
/// a plain copy of the same bytes.
fn bench_transport() -> Result<(), String> {
    use std::fs::File;
    for &payload_kib in &[64usize, 1024, 8 * 1024, 64 * 1024] {
        // A CartPole-shaped rollout (obs 4, action 1) of about that size:
        // 4 * (4 + 1 + 4) + 2 bytes per step of one env.
        let per_step = 4 * 9 + 2;
        let num_envs = 64;
        let num_steps = (payload_kib * 1024 / per_step / num_envs).max(1);
        let te = num_steps * num_envs;
        let rollout = rl_policy::Rollout {
            num_steps,
            num_envs,
            obs_dim: 4,
            action_dim: 1,
            obs: (0..te * 4).map(|i| i as f32 * 1e-3).collect(),
            actions: vec![1.0; te],
            log_probs: vec![-0.7; te],
            values: vec![0.5; te],
            rewards: vec![1.0; te],
            terminated: vec![false; te],
            truncated: vec![false; te],
            final_values: vec![0.0; te],
            last_obs: vec![0.1; num_envs * 4],
            last_values: vec![0.2; num_envs],
            episodes: Vec::new(),
        };
        let bytes = rl_ipc::frame::encode_rollout(
            rl_ipc::RolloutMeta {
                worker_id: 0,
                weights_version: 1,
            },
            &rollout,
        )
        .map_err(|e| e.to_string())?
        .len();
        let messages = (256 * 1024 * 1024 / bytes).clamp(4, 2000);
        let (read, write) = nix::unistd::pipe().map_err(|e| e.to_string())?;
        // As the runtime will: a 1 MiB pipe buffer instead of Linux's 64 KiB.
        let _ = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        let (mut reader, mut writer) = (File::from(read), File::from(write));
        let to_send = rollout.clone();
        let start = Instant::now();
        let sender = std::thread::spawn(move || -> Result<(), String> {
            let mut frames = rl_ipc::FrameWriter::default();
            for v in 1..=messages as u64 {
                let meta = rl_ipc::RolloutMeta {
                    worker_id: 0,
                    weights_version: v,
                };
                frames
                    .write(&mut writer, meta, &to_send)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let mut frames = rl_ipc::FrameReader::default();
        let mut received = rl_policy::Rollout::default();
        for _ in 0..messages {
            let got = frames
                .read(&mut reader, &mut received)
                .map_err(|e| e.to_string())?;
            black_box(got.ok_or("the pipe closed early")?);
        }
        let elapsed = start.elapsed().as_secs_f64();
        sender
            .join()
            .map_err(|_| "the writer thread panicked".to_string())??;
        let source = vec![7u8; bytes];
        let mut target = vec![0u8; bytes];
        let copies = messages.max(20);
        let t = Instant::now();
        for _ in 0..copies {
            target.copy_from_slice(black_box(&source));
            black_box(&target);
        }
        let memcpy = t.elapsed().as_secs_f64() / copies as f64;
        let pipe_bytes_per_s = (bytes * messages) as f64 / elapsed;
        let memcpy_bytes_per_s = bytes as f64 / memcpy;
        println!(
            "{}",
            serde_json::json!({
                "bench": "rollout_transport",
                "payload_bytes": bytes,
                "messages": messages,
                "pipe_bytes_per_s": pipe_bytes_per_s,
                "memcpy_bytes_per_s": memcpy_bytes_per_s,
                "fraction_of_memcpy": pipe_bytes_per_s / memcpy_bytes_per_s,
                "target_fraction": 0.25,
            })
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("transport") {
        return match bench_transport() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some("broadcast") {
        return match bench_broadcast() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match parse_args(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("bench: {message}\n{}", usage());
            return ExitCode::from(2);
        }
    };
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
        let result = bench_single(&registry, id, options.seconds).and_then(|_| {
            sizes
                .iter()
                .try_for_each(|n| bench_vector(&registry, id, *n, options.seconds))
        });
        if let Err(e) = result {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
