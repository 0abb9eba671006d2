use super::{continuous_action_1d, state_array, write_obs, EnvRng};
use crate::snapshot::{SnapshotReader, SnapshotWriter};
use crate::{Action, BoxSpace, Env, EnvError, Space, Transition};

const MIN_ACTION: f32 = -1.0;
const MAX_ACTION: f32 = 1.0;
const MIN_POSITION: f64 = -1.2;
const MAX_POSITION: f64 = 0.6;
const MAX_SPEED: f64 = 0.07;
const GOAL_POSITION: f64 = 0.45;
const GOAL_VELOCITY: f64 = 0.0;
const POWER: f64 = 0.0015;

/// `MountainCarContinuous-v0`: drive the car up the hill with a force in
/// [-1, 1] (clipped); reward +100 on reaching position >= 0.45 minus
/// `0.1 * action^2` (of the unclipped action) every step; time limit 999.
///
/// Gymnasium keeps this env's state in float64 right after a reset and in
/// float32 after every step, and mixes float32 actions into the arithmetic
/// with NumPy 2's promotion rules; `step_into` follows both exactly.
#[derive(Clone, Debug)]
pub struct MountainCarContinuous {
    state: [f64; 2],
    /// False right after a reset or `set_state` (float64 state), true after a
    /// step (float32 state).
    state_is_f32: bool,
    rng: EnvRng,
    observation_space: Space,
    action_space: Space,
}

impl MountainCarContinuous {
    pub const ID: &'static str = "MountainCarContinuous-v0";

    pub fn new() -> Self {
        MountainCarContinuous {
            state: [0.0; 2],
            state_is_f32: false,
            rng: EnvRng::default(),
            observation_space: Space::Box(BoxSpace::new(
                vec![MIN_POSITION as f32, -MAX_SPEED as f32],
                vec![MAX_POSITION as f32, MAX_SPEED as f32],
                vec![2],
            )),
            action_space: Space::Box(BoxSpace::uniform(MIN_ACTION, MAX_ACTION, 1)),
        }
    }

    fn obs(&self) -> [f32; 2] {
        self.state.map(|v| v as f32)
    }

    /// `velocity += force * power - 0.0025 * cos(3 * position)`: a float32
    /// force (not clipped) keeps the right-hand side in float32; a clipped
    /// force is a Python float, which keeps it in float64.
    #[inline]
    fn velocity_change_f64(force: Force, position_term: f64) -> Either {
        let gravity_term = 0.0025 * position_term.cos();
        match force {
            Force::Unclipped(a) => Either::F32(a * POWER as f32 - gravity_term as f32),
            Force::Clipped(f) => Either::F64(f * POWER - gravity_term),
        }
    }

    fn step_from_f64_state(&mut self, force: Force) -> bool {
        let [mut position, mut velocity] = self.state;
        match Self::velocity_change_f64(force, 3.0 * position) {
            Either::F32(dv) => velocity += dv as f64,
            Either::F64(dv) => velocity += dv,
        }
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED);
        position += velocity;
        position = position.clamp(MIN_POSITION, MAX_POSITION);
        if position == MIN_POSITION && velocity < 0.0 {
            velocity = 0.0;
        }
        self.state = [position as f32 as f64, velocity as f32 as f64];
        position >= GOAL_POSITION && velocity >= GOAL_VELOCITY
    }

    fn step_from_f32_state(&mut self, force: Force) -> bool {
        // Every operation on a float32 NumPy scalar with a Python float
        // happens in float32, comparisons included (NumPy 2, NEP 50).
        let mut position = self.state[0] as f32;
        let mut velocity = self.state[1] as f32;
        let dv = match Self::velocity_change_f64(force, (3.0_f32 * position) as f64) {
            Either::F32(dv) => dv,
            Either::F64(dv) => dv as f32,
        };
        velocity += dv;
        velocity = velocity.clamp(-MAX_SPEED as f32, MAX_SPEED as f32);
        position += velocity;
        position = position.clamp(MIN_POSITION as f32, MAX_POSITION as f32);
        if position == MIN_POSITION as f32 && velocity < 0.0 {
            velocity = 0.0;
        }
        self.state = [position as f64, velocity as f64];
        position >= GOAL_POSITION as f32 && velocity >= GOAL_VELOCITY as f32
    }
}

#[derive(Clone, Copy)]
enum Force {
    Unclipped(f32),
    Clipped(f64),
}

enum Either {
    F32(f32),
    F64(f64),
}

impl Default for MountainCarContinuous {
    fn default() -> Self {
        MountainCarContinuous::new()
    }
}

impl Env for MountainCarContinuous {
    fn name(&self) -> &str {
        Self::ID
    }

    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        let rng = self.rng.for_reset(seed);
        self.state = [rng.uniform(-0.6, -0.4), 0.0];
        self.state_is_f32 = false;
        write_obs(Self::ID, obs, self.obs())
    }

    #[inline]
    fn step_into(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Transition, EnvError> {
        let a = continuous_action_1d(Self::ID, &self.action_space, action)?;
        // Gymnasium: min(max(action[0], -1.0), 1.0), which returns the
        // Python float bound when it clips and the float32 action otherwise.
        let force = if a < MIN_ACTION {
            Force::Clipped(MIN_ACTION as f64)
        } else if a > MAX_ACTION {
            Force::Clipped(MAX_ACTION as f64)
        } else {
            Force::Unclipped(a)
        };
        let terminated = if self.state_is_f32 {
            self.step_from_f32_state(force)
        } else {
            self.step_from_f64_state(force)
        };
        self.state_is_f32 = true;
        let a = a as f64;
        let reward = if terminated { 100.0 } else { 0.0 } - (a * a) * 0.1;
        write_obs(Self::ID, obs, self.obs())?;
        Ok(Transition {
            reward,
            terminated,
            truncated: false,
        })
    }

    fn render_rgb(&mut self) -> Result<Option<crate::Frame>, EnvError> {
        Ok(Some(crate::render::mountain_car(
            &self.state,
            MIN_POSITION,
            MAX_POSITION,
            GOAL_POSITION,
        )))
    }

    fn state(&self) -> Option<Vec<f64>> {
        Some(self.state.to_vec())
    }

    /// Sets a float64 state, as right after a reset.
    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<(), EnvError> {
        self.state = state_array(Self::ID, state)?;
        self.state_is_f32 = false;
        write_obs(Self::ID, obs, self.obs())
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        let mut w = SnapshotWriter::new();
        w.f64s(&self.state)
            .bool(self.state_is_f32)
            .optional_rng(self.rng.0.as_ref());
        Some(w.finish())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), EnvError> {
        let mut r = SnapshotReader::new(Self::ID, snapshot);
        let state = r.f64s()?;
        let state_is_f32 = r.bool()?;
        let rng = r.optional_rng()?;
        r.finish()?;
        self.state = state;
        self.state_is_f32 = state_is_f32;
        self.rng.0 = rng;
        Ok(())
    }
}
