use std::f64::consts::PI;

use super::{continuous_action_1d, state_array, write_obs, EnvRng};
use crate::snapshot::{SnapshotReader, SnapshotWriter};
use crate::{Action, BoxSpace, Env, EnvError, Space, Transition};

const MAX_SPEED: f64 = 8.0;
const MAX_TORQUE: f32 = 2.0;
const DT: f64 = 0.05;
const G: f64 = 10.0;
const M: f64 = 1.0;
const L: f64 = 1.0;

/// `Pendulum-v1`: swing a pendulum up and keep it upright with a torque in
/// [-2, 2] (clipped); reward `-(theta^2 + 0.1 theta_dot^2 + 0.001 u^2)`;
/// never terminates; time limit 200.
///
/// State `[theta, theta_dot]` in float64. As in Gymnasium, a float32 action
/// keeps the torque terms in float32 (`0.001 * u^2` and `3 * u`).
#[derive(Clone, Debug)]
pub struct Pendulum {
    state: [f64; 2],
    last_u: Option<f32>,
    rng: EnvRng,
    observation_space: Space,
    action_space: Space,
}

impl Pendulum {
    pub const ID: &'static str = "Pendulum-v1";

    pub fn new() -> Self {
        Pendulum {
            state: [0.0; 2],
            last_u: None,
            rng: EnvRng::default(),
            observation_space: Space::Box(BoxSpace::symmetric(&[1.0, 1.0, MAX_SPEED as f32])),
            action_space: Space::Box(BoxSpace::uniform(-MAX_TORQUE, MAX_TORQUE, 1)),
        }
    }

    /// The last torque applied, after clipping (None right after a reset).
    pub fn last_torque(&self) -> Option<f32> {
        self.last_u
    }

    fn obs(&self) -> [f32; 3] {
        let [theta, theta_dot] = self.state;
        [theta.cos() as f32, theta.sin() as f32, theta_dot as f32]
    }
}

impl Default for Pendulum {
    fn default() -> Self {
        Pendulum::new()
    }
}

/// Python's (and NumPy's) floating-point `%`: the result takes the divisor's
/// sign, and a zero result is `+0.0` for a positive divisor.
#[inline]
pub(crate) fn python_mod(a: f64, b: f64) -> f64 {
    let m = a % b;
    if m != 0.0 {
        if (b < 0.0) != (m < 0.0) {
            m + b
        } else {
            m
        }
    } else {
        0.0_f64.copysign(b)
    }
}

#[inline]
fn angle_normalize(x: f64) -> f64 {
    python_mod(x + PI, 2.0 * PI) - PI
}

impl Env for Pendulum {
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
        self.state = [rng.uniform(-PI, PI), rng.uniform(-1.0, 1.0)];
        self.last_u = None;
        write_obs(Self::ID, obs, self.obs())
    }

    #[inline]
    fn step_into(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Transition, EnvError> {
        let u = continuous_action_1d(Self::ID, &self.action_space, action)?;
        let [th, thdot] = self.state;
        let u = u.clamp(-MAX_TORQUE, MAX_TORQUE);
        self.last_u = Some(u);

        let normalized = angle_normalize(th);
        // Gymnasium: angle_normalize(th)**2 + 0.1 * thdot**2 + 0.001 * (u**2),
        // where the last term stays float32 because `u` is float32.
        let costs = normalized * normalized + 0.1 * (thdot * thdot) + (0.001_f32 * (u * u)) as f64;
        // Gymnasium: thdot + (3 * g / (2 * l) * sin(th) + 3.0 / (m * l**2) * u) * dt,
        // where `3.0 / (m * l**2) * u` is again a float32 product.
        let torque_term = ((3.0 / (M * L * L)) as f32 * u) as f64;
        let newthdot = thdot + (3.0 * G / (2.0 * L) * th.sin() + torque_term) * DT;
        let newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED);
        let newth = th + newthdot * DT;
        self.state = [newth, newthdot];
        write_obs(Self::ID, obs, self.obs())?;
        Ok(Transition {
            reward: -costs,
            terminated: false,
            truncated: false,
        })
    }

    fn render_rgb(&mut self) -> Result<Option<crate::Frame>, EnvError> {
        Ok(Some(crate::render::pendulum(&self.state)))
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
            .bool(self.last_u.is_some())
            .f32(self.last_u.unwrap_or(0.0))
            .optional_rng(self.rng.0.as_ref());
        Some(w.finish())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), EnvError> {
        let mut r = SnapshotReader::new(Self::ID, snapshot);
        let state = r.f64s()?;
        let last_u = (r.bool()?, r.f32()?);
        let rng = r.optional_rng()?;
        r.finish()?;
        self.state = state;
        self.last_u = last_u.0.then_some(last_u.1);
        self.rng.0 = rng;
        Ok(())
    }
}
