use super::{discrete_action, state_array, write_obs, EnvRng};
use crate::{Action, BoxSpace, Env, EnvError, Space, Transition};

const MIN_POSITION: f64 = -1.2;
const MAX_POSITION: f64 = 0.6;
const MAX_SPEED: f64 = 0.07;
const GOAL_POSITION: f64 = 0.5;
const GOAL_VELOCITY: f64 = 0.0;
const FORCE: f64 = 0.001;
const GRAVITY: f64 = 0.0025;

/// `MountainCar-v0`: drive an under-powered car up a hill by accelerating
/// left (0), not at all (1) or right (2); -1 per step; terminates at
/// position >= 0.5; time limit 200.
///
/// State `[position, velocity]` in float64.
#[derive(Clone, Debug)]
pub struct MountainCar {
    state: [f64; 2],
    rng: EnvRng,
    observation_space: Space,
    action_space: Space,
}

impl MountainCar {
    pub const ID: &'static str = "MountainCar-v0";

    pub fn new() -> Self {
        MountainCar {
            state: [0.0; 2],
            rng: EnvRng::default(),
            observation_space: Space::Box(BoxSpace::new(
                vec![MIN_POSITION as f32, -MAX_SPEED as f32],
                vec![MAX_POSITION as f32, MAX_SPEED as f32],
                vec![2],
            )),
            action_space: Space::Discrete { n: 3 },
        }
    }

    fn obs(&self) -> [f32; 2] {
        self.state.map(|v| v as f32)
    }
}

impl Default for MountainCar {
    fn default() -> Self {
        MountainCar::new()
    }
}

impl Env for MountainCar {
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
        write_obs(Self::ID, obs, self.obs())
    }

    #[inline]
    fn step_into(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Transition, EnvError> {
        let action = discrete_action(Self::ID, &self.action_space, 3, action)?;
        let [mut position, mut velocity] = self.state;
        velocity += (action as f64 - 1.0) * FORCE + (3.0 * position).cos() * (-GRAVITY);
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED);
        position += velocity;
        position = position.clamp(MIN_POSITION, MAX_POSITION);
        if position == MIN_POSITION && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= GOAL_POSITION && velocity >= GOAL_VELOCITY;
        self.state = [position, velocity];
        write_obs(Self::ID, obs, self.obs())?;
        Ok(Transition {
            reward: -1.0,
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

    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<(), EnvError> {
        self.state = state_array(Self::ID, state)?;
        write_obs(Self::ID, obs, self.obs())
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(super::snapshot_state(&self.state, &self.rng))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), EnvError> {
        (self.state, self.rng) = super::restore_state(Self::ID, snapshot)?;
        Ok(())
    }
}
