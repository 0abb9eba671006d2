//! A user-defined environment, registered next to the built-ins, stepped
//! through the vectorised env and trained with PPO, without touching the
//! library: this binary is `train` with one more environment.
//!
//! ```sh
//! cargo run --release -p custom-env-example -- demo
//! cargo run --release -p custom-env-example -- --config examples/custom_env/corridor.toml
//! ```

use std::process::ExitCode;

use rl_env::rng::Rng;
use rl_env::snapshot::{SnapshotReader, SnapshotWriter};
use rl_env::{Action, Actions, BoxSpace, Env, EnvError, Registry, Space, Transition};

/// `Corridor-v0`: walk along a corridor of `length` cells to the exit on the
/// right. Actions: 0 = left, 1 = right. Reward -0.01 per step and +1 at the
/// exit, which terminates the episode. The start cell is random.
struct Corridor {
    length: u32,
    position: u32,
    rng: Option<Rng>,
    observation_space: Space,
    action_space: Space,
}

impl Corridor {
    fn new(length: u32) -> Self {
        Corridor {
            length,
            position: 0,
            rng: None,
            // Observation: [position / length, 1 if at the left wall].
            observation_space: Space::Box(BoxSpace::uniform(0.0, 1.0, 2)),
            action_space: Space::Discrete { n: 2 },
        }
    }

    fn write_obs(&self, obs: &mut [f32]) -> Result<(), EnvError> {
        let values = [
            self.position as f32 / self.length as f32,
            if self.position == 0 { 1.0 } else { 0.0 },
        ];
        if obs.len() != values.len() {
            return Err(EnvError::Custom {
                env: "Corridor-v0".into(),
                message: format!("observation buffer has {} slots, needs 2", obs.len()),
            });
        }
        obs.copy_from_slice(&values);
        Ok(())
    }
}

impl Env for Corridor {
    fn name(&self) -> &str {
        "Corridor-v0"
    }

    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        let rng = match seed {
            Some(seed) => self.rng.insert(Rng::from_seed(seed)),
            None => self.rng.get_or_insert_with(Rng::from_entropy),
        };
        self.position = (rng.next_u64() % (self.length as u64 / 2)) as u32;
        self.write_obs(obs)
    }

    fn step_into(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Transition, EnvError> {
        // The registry's wrapper has already checked the action against the
        // action space; the match still handles every case without panicking.
        match action {
            Action::Discrete(0) => self.position = self.position.saturating_sub(1),
            Action::Discrete(_) => self.position += 1,
            Action::Continuous(_) => {
                return Err(EnvError::Custom {
                    env: "Corridor-v0".into(),
                    message: "expects a discrete action".into(),
                })
            }
        }
        let terminated = self.position >= self.length;
        self.position = self.position.min(self.length);
        self.write_obs(obs)?;
        Ok(Transition {
            reward: if terminated { 1.0 } else { -0.01 },
            terminated,
            truncated: false,
        })
    }

    /// Everything the next step and reset depend on, so that
    /// `train --resume` continues this env exactly (optional: without it a
    /// resumed run starts new episodes).
    fn snapshot(&self) -> Option<Vec<u8>> {
        let mut w = SnapshotWriter::new();
        w.u32(self.position).optional_rng(self.rng.as_ref());
        Some(w.finish())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), EnvError> {
        let mut r = SnapshotReader::new("Corridor-v0", snapshot);
        let (position, rng) = (r.u32()?, r.optional_rng()?);
        r.finish()?;
        (self.position, self.rng) = (position, rng);
        Ok(())
    }
}

/// The registry this program trains with: the built-ins plus `Corridor-v0`.
fn registry() -> Result<Registry, EnvError> {
    let mut registry = Registry::with_builtins();
    registry.register("Corridor-v0", Some(100), || Corridor::new(10))?;
    Ok(registry)
}

/// `custom-env-example demo` steps the env through the vectorised env with a
/// fixed policy; any other arguments go to `train`, e.g.
/// `custom-env-example --config examples/custom_env/corridor.toml`.
fn main() -> ExitCode {
    let registry = match registry() {
        Ok(registry) => registry,
        Err(e) => {
            eprintln!("custom-env-example: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::args().nth(1).as_deref() == Some("demo") {
        return match demo(&registry) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("custom-env-example: {e}");
                ExitCode::FAILURE
            }
        };
    }
    rl_cli::train::train_main(&registry)
}

fn demo(registry: &Registry) -> Result<(), EnvError> {
    let num_envs = 16;
    let mut envs = registry.make_vec("Corridor-v0", num_envs)?;
    envs.reset(7)?;
    let mut rng = Rng::from_seed(1);
    let mut returns = Vec::new();
    for _ in 0..2_000 {
        // A policy that mostly walks right.
        let actions: Vec<i64> = (0..num_envs)
            .map(|_| i64::from(rng.next_f64() < 0.8))
            .collect();
        envs.step(Actions::Discrete(&actions))?;
        returns.extend(envs.finished_episodes().iter().map(|e| e.episode_return));
    }
    let mean = returns.iter().sum::<f64>() / returns.len().max(1) as f64;
    println!(
        "Corridor-v0: {} episodes over {num_envs} envs, mean return {mean:.3}; registered ids: {}",
        returns.len(),
        registry.ids().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
