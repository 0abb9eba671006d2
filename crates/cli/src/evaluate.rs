//! `evaluate FILE [--episodes N] [--seed S] [--env ID] [--render]
//! [--video OUT.gif] [--obs CSV]`: plays a trained policy (a policy file or
//! a checkpoint) deterministically and prints each episode's return, then
//! their mean and std; `--video` records the episodes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rl_env::seeds::episode_seed;
use rl_env::{Action, Env, Registry, Space};
use rl_policy::{ActionHead, ObsNormalizer, Policy, PolicySpec};
use rl_runtime::storage::checkpoint::{Checkpoint, CHECKPOINT_FORMAT};
use rl_runtime::storage::policy_file::decode_policy;
use rl_runtime::storage::safetensors::SafeTensors;

use crate::train::exit;

/// Play a trained policy deterministically and report its returns.
#[derive(Debug, Parser)]
#[command(name = "evaluate", version, long_about = None)]
pub struct EvaluateArgs {
    /// A policy file (policy.safetensors, best_policy.safetensors) or a
    /// checkpoint (checkpoints/*.safetensors).
    pub file: PathBuf,
    /// Episodes to play (at most 1000000).
    #[arg(long, default_value_t = 10)]
    pub episodes: usize,
    /// Steps after which an episode is cut short (for an env without a
    /// time limit of its own; at most 100000000).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_episode_steps: u64,
    /// Base seed: episode k is reset with a seed derived from it and k.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Play in this env instead of the one the policy was trained on (its
    /// spaces must match).
    #[arg(long, value_name = "ID")]
    pub env: Option<String>,
    /// Draw the episodes in the terminal (CartPole-v1 and MountainCar-v0).
    #[arg(long)]
    pub render: bool,
    /// Record the episodes as an animated GIF (Gymnasium envs through
    /// `render_mode="rgb_array"`, the built-in envs drawn as Gymnasium
    /// draws them).
    #[arg(long, value_name = "OUT.gif")]
    pub video: Option<PathBuf>,
    /// Frames a second of the video.
    #[arg(long, default_value_t = 30.0)]
    pub video_fps: f64,
    /// Instead of playing, print the policy's outputs and deterministic
    /// action for each observation (one per line) of this CSV file, as JSON
    /// lines: for comparing with another implementation.
    #[arg(long, value_name = "CSV")]
    pub obs: Option<PathBuf>,
}

/// A policy read from a file, ready to act.
pub struct LoadedPolicy {
    pub policy: Policy,
    pub obs_norm: Option<ObsNormalizer>,
    pub env_id: String,
    /// The env's keyword arguments the policy was trained with.
    pub env_kwargs: rl_env::Kwargs,
    /// Whether a checksum vouched for the file (every checkpoint, and policy
    /// files from the version that added their checksum on).
    pub verified: bool,
}

/// The most episodes `evaluate` plays.
pub const MAX_EPISODES: usize = 1_000_000;
/// The longest episode `evaluate` lets run.
pub const MAX_EPISODE_STEPS: u64 = 100_000_000;

/// Reads a policy file or a checkpoint, with every check of either.
pub fn load_policy(file: &std::path::Path) -> Result<LoadedPolicy, String> {
    let name = file.display();
    let bytes = std::fs::read(file).map_err(|e| format!("{name}: {e}"))?;
    let st = SafeTensors::decode(&bytes).map_err(|e| format!("{name}: {e}"))?;
    let (spec, (env_id, env_kwargs), weights, obs_norm, verified) =
        if st.metadata.get("format").map(String::as_str) == Some(CHECKPOINT_FORMAT) {
            let c = Checkpoint::decode(&bytes).map_err(|e| format!("{name}: {e}"))?;
            let obs_norm = c
                .learner
                .obs_norm
                .zip(c.obs_norm_clip)
                .map(|(stats, clip)| ObsNormalizer { stats, clip });
            (
                c.spec,
                (c.env_id, c.env_kwargs),
                c.learner.weights,
                obs_norm,
                true,
            )
        } else {
            let p = decode_policy(&bytes).map_err(|e| {
                format!(
                "{name}: {e} (a policy file or a checkpoint ({CHECKPOINT_FORMAT}) was expected)"
            )
            })?;
            (
                p.spec,
                (p.env_id, p.env_kwargs),
                p.weights,
                p.obs_norm,
                p.verified,
            )
        };
    let mut policy = Policy::new(spec).map_err(|e| format!("{name}: {e}"))?;
    policy
        .set_weights(&weights)
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(LoadedPolicy {
        policy,
        obs_norm,
        env_id,
        env_kwargs,
        verified,
    })
}

fn check_spaces(spec: &PolicySpec, env_id: &str, env: &dyn Env) -> Result<(), String> {
    let head_fits = match env.action_space() {
        Space::Discrete { n } => spec.head.is_discrete() && spec.head.size() == *n,
        Space::Box(b) => !spec.head.is_discrete() && spec.head.size() == b.flat_dim(),
    };
    let obs_dim = env.observation_space().flat_dim();
    if !head_fits || obs_dim != spec.obs_dim {
        return Err(format!(
            "{env_id} has observations of {obs_dim} values and actions {}, the policy was made for {} and {:?}",
            env.action_space(),
            spec.obs_dim,
            spec.head
        ));
    }
    Ok(())
}

/// A text picture of CartPole (`[x, x_dot, theta, theta_dot]`) or
/// MountainCar (`[position, velocity]`), or `None` for other envs.
pub fn render(env_id: &str, state: &[f64]) -> Option<String> {
    const W: usize = 61;
    match env_id {
        "CartPole-v1" => {
            let (x, theta) = (state[0], state[2]);
            let col = (((x + 2.4) / 4.8) * (W - 1) as f64)
                .round()
                .clamp(0.0, (W - 1) as f64) as i64;
            let mut rows = vec![vec![' '; W]; 7];
            for (r, row) in rows.iter_mut().enumerate().take(6) {
                let height = (6 - r) as f64;
                let c = col + (height * theta.tan() * 2.0).round() as i64;
                if (0..W as i64).contains(&c) {
                    row[c as usize] = if r == 0 { 'o' } else { '|' };
                }
            }
            for dc in -2..=2 {
                let c = col + dc;
                if (0..W as i64).contains(&c) {
                    rows[6][c as usize] = '#';
                }
            }
            let mut out: Vec<String> = rows.into_iter().map(|r| r.into_iter().collect()).collect();
            out.push("=".repeat(W));
            out.push(format!("x {x:+.2}  angle {:+.1} deg", theta.to_degrees()));
            Some(out.join("\n"))
        }
        "MountainCar-v0" => {
            let pos = state[0];
            let h = 10usize;
            let height = |p: f64| (3.0 * p).sin() * 0.45 + 0.55;
            let mut rows = vec![vec![' '; W]; h + 1];
            let col_of = |p: f64| (((p + 1.2) / 1.8) * (W - 1) as f64).round() as usize;
            let row_of = |y: f64| h - ((y / 1.0) * h as f64).round().clamp(0.0, h as f64) as usize;
            for (c, col) in (0..W).map(|c| (c, -1.2 + 1.8 * c as f64 / (W - 1) as f64)) {
                rows[row_of(height(col))][c] = '.';
            }
            let flag = col_of(0.5);
            rows[row_of(height(0.5)).saturating_sub(1)][flag] = 'F';
            let car = col_of(pos.clamp(-1.2, 0.6)).min(W - 1);
            rows[row_of(height(pos)).saturating_sub(0)][car] = 'O';
            let mut out: Vec<String> = rows.into_iter().map(|r| r.into_iter().collect()).collect();
            out.push(format!("position {pos:+.3}  velocity {:+.4}", state[1]));
            Some(out.join("\n"))
        }
        _ => None,
    }
}

fn run(registry: &Registry, args: &EvaluateArgs) -> Result<(), (u8, String)> {
    let failed = |m: String| (exit::FAILED, m);
    let usage = |m: String| (exit::USAGE, m);
    if !(1..=MAX_EPISODES).contains(&args.episodes) {
        return Err(usage(format!(
            "--episodes {}: expected 1 to {MAX_EPISODES}",
            args.episodes
        )));
    }
    if !(1..=MAX_EPISODE_STEPS).contains(&args.max_episode_steps) {
        return Err(usage(format!(
            "--max-episode-steps {}: expected 1 to {MAX_EPISODE_STEPS}",
            args.max_episode_steps
        )));
    }
    let mut loaded = load_policy(&args.file).map_err(usage)?;
    if !loaded.verified {
        errln!(
            "evaluate: {}: written before policy files had a checksum; it cannot be checked for damage",
            args.file.display()
        );
    }
    let env_id = args.env.clone().unwrap_or(loaded.env_id.clone());
    // Another env (--env) is made without the policy's env's kwargs.
    let mut kwargs = if args.env.is_some() {
        rl_env::Kwargs::new()
    } else {
        loaded.env_kwargs.clone()
    };
    let mut recorder = match &args.video {
        Some(path) => Some(crate::video::GifRecorder::new(path, args.video_fps).map_err(usage)?),
        None => None,
    };
    if recorder.is_some() && env_id.starts_with(rl_gym::PREFIX) {
        kwargs
            .entry("render_mode")
            .or_insert_with(|| serde_json::json!("rgb_array"));
    }
    let mut env = registry
        .make_with(&env_id, &kwargs)
        .map_err(|e| usage(e.to_string()))?;
    check_spaces(loaded.policy.spec(), &env_id, &env).map_err(usage)?;
    let spec = loaded.policy.spec().clone();
    let obs_dim = spec.obs_dim;
    let action_dim = spec.head.action_dim();
    let mut normalized = vec![0.0_f32; obs_dim];
    let normalize = |obs: &[f32], out: &mut [f32], norm: &Option<ObsNormalizer>| match norm {
        Some(n) => n.normalize(obs, out),
        None => out.copy_from_slice(obs),
    };

    if let Some(csv) = &args.obs {
        let table = rl_metrics::csv::read_table(csv)
            .map_err(|e| usage(format!("{}: {e}", csv.display())))?;
        if table.header.len() != obs_dim {
            return Err(usage(format!(
                "{}: {} columns, the policy takes observations of {obs_dim}",
                csv.display(),
                table.header.len()
            )));
        }
        let mut outputs = vec![0.0_f32; spec.head.actor_outputs()];
        let mut action = vec![0.0_f32; action_dim];
        for row in &table.rows {
            let obs: Vec<f32> = row.iter().map(|v| *v as f32).collect();
            normalize(&obs, &mut normalized, &loaded.obs_norm);
            loaded.policy.actor_outputs(&normalized, &mut outputs);
            loaded.policy.deterministic(&normalized, &mut action);
            let value = loaded.policy.value(&normalized);
            outln!(
                "{}",
                serde_json::json!({"outputs": outputs, "action": action, "value": value})
            );
        }
        return Ok(());
    }

    let bounds = match env.action_space() {
        Space::Box(b) => Some((b.low.clone(), b.high.clone())),
        Space::Discrete { .. } => None,
    };
    let live = args.render && std::io::stdout().is_terminal();
    if args.render && render(&env_id, &[0.0; 4]).is_none() {
        errln!("evaluate: no text rendering for {env_id}; playing without it");
    }
    let mut action = vec![0.0_f32; action_dim];
    let mut returns = Vec::with_capacity(args.episodes);
    outln!(
        "{}: {} on {env_id}",
        args.file.display(),
        spec_summary(&spec)
    );
    for k in 0..args.episodes {
        let mut obs = env
            .reset(Some(episode_seed(args.seed, k as u64)))
            .map_err(|e| failed(e.to_string()))?;
        let (mut total, mut steps) = (0.0, 0u64);
        if let Some(r) = recorder.as_mut() {
            record(&mut env, &env_id, r)?;
        }
        loop {
            if args.render {
                if let Some(picture) = env.state().and_then(|s| render(&env_id, &s)) {
                    if live {
                        print!("\x1b[H\x1b[2J");
                    }
                    outln!("episode {k}  step {steps}  return {total:.1}\n{picture}\n");
                    let _ = std::io::stdout().flush();
                    if live {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            normalize(&obs, &mut normalized, &loaded.obs_norm);
            loaded.policy.deterministic(&normalized, &mut action);
            let step = match &bounds {
                None => env.step(Action::Discrete(action[0] as i64)),
                Some((low, high)) => {
                    for d in 0..action_dim {
                        action[d] = action[d].clamp(low[d], high[d]);
                    }
                    env.step(Action::Continuous(&action))
                }
            }
            .map_err(|e| failed(e.to_string()))?;
            total += step.reward;
            steps += 1;
            obs = step.obs;
            if let Some(r) = recorder.as_mut() {
                record(&mut env, &env_id, r)?;
            }
            let cut = steps >= args.max_episode_steps;
            if step.terminated || step.truncated || cut {
                let how = if step.terminated {
                    "terminated"
                } else if step.truncated {
                    "truncated"
                } else {
                    "cut at --max-episode-steps"
                };
                outln!("episode {k}: return {total:.2} ({steps} steps, {how})");
                break;
            }
        }
        returns.push(total);
    }
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let std = (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
    outln!(
        "mean return {mean:.2} +- {std:.2} over {} episodes (min {:.2}, max {:.2})",
        returns.len(),
        returns.iter().cloned().fold(f64::INFINITY, f64::min),
        returns.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
    );
    if let Some(r) = recorder {
        let frames = r.frames;
        let path = r.finish().map_err(failed)?;
        outln!("video: {} ({frames} frames)", path.display());
    }
    Ok(())
}

fn spec_summary(spec: &PolicySpec) -> String {
    let head = match spec.head {
        ActionHead::Categorical { n } => format!("Categorical({n})"),
        ActionHead::Gaussian { dim } => format!("Gaussian({dim})"),
        ActionHead::SquashedGaussian { dim } => format!("SAC squashed Gaussian({dim})"),
        ActionHead::Deterministic { dim } => format!("TD3 deterministic({dim})"),
        ActionHead::QValues { n } => format!("DQN Q-values({n})"),
    };
    format!(
        "actor {:?}, critic {:?}, {}, {head}",
        spec.actor_hidden,
        spec.critic_hidden,
        spec.activation.torch_module()
    )
}

/// Parses arguments, evaluates, and maps the outcome to an exit code (0
/// done, 1 failure while playing, 2 bad usage or an unusable file).
pub fn evaluate_main(registry: &Registry) -> ExitCode {
    let registry = &crate::with_gymnasium(registry);
    let args = match crate::parse_args::<EvaluateArgs>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    match run(registry, &args) {
        Ok(()) => ExitCode::from(exit::DONE),
        Err((code, message)) => {
            errln!("evaluate: {message}");
            ExitCode::from(code)
        }
    }
}

/// Adds the env's current frame to the video.
fn record(
    env: &mut dyn Env,
    env_id: &str,
    recorder: &mut crate::video::GifRecorder,
) -> Result<(), (u8, String)> {
    match env.render_rgb() {
        Ok(Some(frame)) => recorder.push(&frame).map_err(|m| (exit::FAILED, m)),
        Ok(None) => Err((
            exit::USAGE,
            format!(
                "--video: {env_id} draws no frames; Gymnasium envs and the built-in classic-control envs do (an env of your own: implement Env::render_rgb)"
            ),
        )),
        Err(e) => Err((exit::FAILED, format!("--video: {e}"))),
    }
}
