use super::{discrete_action, state_array, write_obs, EnvRng};
use crate::snapshot::{SnapshotReader, SnapshotWriter};
use crate::{Action, BoxSpace, Env, EnvError, Space, Transition};

const GRAVITY: f64 = 9.8;
const MASSCART: f64 = 1.0;
const MASSPOLE: f64 = 0.1;
const LENGTH: f64 = 0.5; // Half the pole's length.
const FORCE_MAG: f64 = 10.0;
const TAU: f64 = 0.02; // Seconds between state updates.
const X_THRESHOLD: f64 = 2.4;

/// `CartPole-v1`: balance a pole on a cart by pushing it left (0) or right
/// (1); +1 per step including the terminating one; terminates when the pole
/// leans more than 12 degrees or the cart leaves [-2.4, 2.4]; time limit 500.
///
/// State `[x, x_dot, theta, theta_dot]` in float64, Euler integration.
#[derive(Clone, Debug)]
pub struct CartPole {
    state: [f64; 4],
    steps_beyond_terminated: Option<u32>,
    rng: EnvRng,
    observation_space: Space,
    action_space: Space,
}

impl CartPole {
    pub const ID: &'static str = "CartPole-v1";

    pub fn new() -> Self {
        let theta_threshold = 12.0 * 2.0 * std::f64::consts::PI / 360.0;
        let high = [
            (X_THRESHOLD * 2.0) as f32,
            f32::MAX,
            (theta_threshold * 2.0) as f32,
            f32::MAX,
        ];
        CartPole {
            state: [0.0; 4],
            steps_beyond_terminated: None,
            rng: EnvRng::default(),
            observation_space: Space::Box(BoxSpace::symmetric(&high)),
            action_space: Space::Discrete { n: 2 },
        }
    }

    fn obs(&self) -> [f32; 4] {
        self.state.map(|v| v as f32)
    }
}

impl Default for CartPole {
    fn default() -> Self {
        CartPole::new()
    }
}

impl Env for CartPole {
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
        for v in &mut self.state {
            *v = rng.uniform(-0.05, 0.05);
        }
        self.steps_beyond_terminated = None;
        write_obs(Self::ID, obs, self.obs())
    }

    #[inline]
    fn step_into(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Transition, EnvError> {
        let action = discrete_action(Self::ID, &self.action_space, 2, action)?;
        let total_mass = MASSPOLE + MASSCART;
        let polemass_length = MASSPOLE * LENGTH;
        let theta_threshold = 12.0 * 2.0 * std::f64::consts::PI / 360.0;

        let [mut x, mut x_dot, mut theta, mut theta_dot] = self.state;
        let force = if action == 1 { FORCE_MAG } else { -FORCE_MAG };
        let costheta = theta.cos();
        let sintheta = theta.sin();
        let temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) / total_mass;
        let thetaacc = (GRAVITY * sintheta - costheta * temp)
            / (LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / total_mass));
        let xacc = temp - polemass_length * thetaacc * costheta / total_mass;
        x += TAU * x_dot;
        x_dot += TAU * xacc;
        theta += TAU * theta_dot;
        theta_dot += TAU * thetaacc;
        self.state = [x, x_dot, theta, theta_dot];

        // Written as in Gymnasium rather than as a range check, which would
        // differ for NaN.
        #[allow(clippy::manual_range_contains)]
        let terminated = x < -X_THRESHOLD
            || x > X_THRESHOLD
            || theta < -theta_threshold
            || theta > theta_threshold;
        let reward = if !terminated {
            1.0
        } else if self.steps_beyond_terminated.is_none() {
            self.steps_beyond_terminated = Some(0);
            1.0
        } else {
            // Only reachable by stepping the unwrapped env past its end.
            self.steps_beyond_terminated = self.steps_beyond_terminated.map(|n| n + 1);
            0.0
        };
        write_obs(Self::ID, obs, self.obs())?;
        Ok(Transition {
            reward,
            terminated,
            truncated: false,
        })
    }

    fn render_rgb(&mut self) -> Result<Option<crate::Frame>, EnvError> {
        Ok(Some(crate::render::cartpole(
            &self.state,
            X_THRESHOLD,
            LENGTH,
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
        let mut w = SnapshotWriter::new();
        w.f64s(&self.state)
            .bool(self.steps_beyond_terminated.is_some())
            .u32(self.steps_beyond_terminated.unwrap_or(0))
            .optional_rng(self.rng.0.as_ref());
        Some(w.finish())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), EnvError> {
        let mut r = SnapshotReader::new(Self::ID, snapshot);
        let state = r.f64s()?;
        let beyond = (r.bool()?, r.u32()?);
        let rng = r.optional_rng()?;
        r.finish()?;
        self.state = state;
        self.steps_beyond_terminated = beyond.0.then_some(beyond.1);
        self.rng.0 = rng;
        Ok(())
    }
}
