use std::f64::consts::PI;

use super::{discrete_action, state_array, write_obs, EnvRng};
use crate::{Action, BoxSpace, Env, EnvError, Space, Transition};

const DT: f64 = 0.2;
const LINK_LENGTH_1: f64 = 1.0;
const LINK_MASS_1: f64 = 1.0;
const LINK_MASS_2: f64 = 1.0;
const LINK_COM_POS_1: f64 = 0.5;
const LINK_COM_POS_2: f64 = 0.5;
const LINK_MOI: f64 = 1.0;
const MAX_VEL_1: f64 = 4.0 * PI;
const MAX_VEL_2: f64 = 9.0 * PI;
const AVAIL_TORQUE: [f64; 3] = [-1.0, 0.0, 1.0];

/// `Acrobot-v1`: swing the tip of a two-link chain above a line by applying
/// torque -1 (0), 0 (1) or +1 (2) at the joint between the links; -1 per
/// step, 0 on the terminating one; time limit 500.
///
/// State `[theta1, theta2, dtheta1, dtheta2]`: float32 right after a reset,
/// float64 after a step (as in Gymnasium); the "book" dynamics integrated by
/// one classic RK4 step of 0.2 s, with Gymnasium's order of operations.
#[derive(Clone, Debug)]
pub struct Acrobot {
    state: [f64; 4],
    rng: EnvRng,
    observation_space: Space,
    action_space: Space,
}

impl Acrobot {
    pub const ID: &'static str = "Acrobot-v1";

    pub fn new() -> Self {
        let high = [1.0, 1.0, 1.0, 1.0, MAX_VEL_1 as f32, MAX_VEL_2 as f32];
        Acrobot {
            state: [0.0; 4],
            rng: EnvRng::default(),
            observation_space: Space::Box(BoxSpace::symmetric(&high)),
            action_space: Space::Discrete { n: 3 },
        }
    }

    fn obs(&self) -> [f32; 6] {
        let s = self.state;
        [
            s[0].cos() as f32,
            s[0].sin() as f32,
            s[1].cos() as f32,
            s[1].sin() as f32,
            s[2] as f32,
            s[3] as f32,
        ]
    }

    fn terminal(&self) -> bool {
        let s = self.state;
        -s[0].cos() - (s[1] + s[0]).cos() > 1.0
    }
}

impl Default for Acrobot {
    fn default() -> Self {
        Acrobot::new()
    }
}

/// The time derivative of the state under torque `a` (Gymnasium's `_dsdt`).
#[inline]
fn dsdt(s: [f64; 4], a: f64) -> [f64; 4] {
    let m1 = LINK_MASS_1;
    let m2 = LINK_MASS_2;
    let l1 = LINK_LENGTH_1;
    let lc1 = LINK_COM_POS_1;
    let lc2 = LINK_COM_POS_2;
    let i1 = LINK_MOI;
    let i2 = LINK_MOI;
    let g = 9.8;
    let [theta1, theta2, dtheta1, dtheta2] = s;
    let d1 =
        m1 * (lc1 * lc1) + m2 * (l1 * l1 + lc2 * lc2 + 2.0 * l1 * lc2 * theta2.cos()) + i1 + i2;
    let d2 = m2 * (lc2 * lc2 + l1 * lc2 * theta2.cos()) + i2;
    let phi2 = m2 * lc2 * g * (theta1 + theta2 - PI / 2.0).cos();
    let phi1 = -m2 * l1 * lc2 * (dtheta2 * dtheta2) * theta2.sin()
        - 2.0 * m2 * l1 * lc2 * dtheta2 * dtheta1 * theta2.sin()
        + (m1 * lc1 + m2 * l1) * g * (theta1 - PI / 2.0).cos()
        + phi2;
    let ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * (dtheta1 * dtheta1) * theta2.sin() - phi2)
        / (m2 * (lc2 * lc2) + i2 - (d2 * d2) / d1);
    let ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    [dtheta1, dtheta2, ddtheta1, ddtheta2]
}

#[inline]
fn add_scaled(y: [f64; 4], scale: f64, k: [f64; 4]) -> [f64; 4] {
    [
        y[0] + scale * k[0],
        y[1] + scale * k[1],
        y[2] + scale * k[2],
        y[3] + scale * k[3],
    ]
}

/// One RK4 step over `[0, DT]` (Gymnasium's `rk4` with `t = [0, dt]`).
#[inline]
fn rk4(y0: [f64; 4], a: f64) -> [f64; 4] {
    let dt = DT - 0.0;
    let dt2 = dt / 2.0;
    let k1 = dsdt(y0, a);
    let k2 = dsdt(add_scaled(y0, dt2, k1), a);
    let k3 = dsdt(add_scaled(y0, dt2, k2), a);
    let k4 = dsdt(add_scaled(y0, dt, k3), a);
    let mut out = [0.0; 4];
    for i in 0..4 {
        out[i] = y0[i] + dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
    }
    out
}

/// Gymnasium's `wrap`: shifts by whole periods into `[m, big_m]`.
#[inline]
fn wrap(mut x: f64, m: f64, big_m: f64) -> f64 {
    let diff = big_m - m;
    while x > big_m {
        x -= diff;
    }
    while x < m {
        x += diff;
    }
    x
}

#[inline]
fn bound(x: f64, m: f64, big_m: f64) -> f64 {
    x.max(m).min(big_m)
}

impl Env for Acrobot {
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
            *v = rng.uniform(-0.1, 0.1) as f32 as f64;
        }
        write_obs(Self::ID, obs, self.obs())
    }

    #[inline]
    fn step_into(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Transition, EnvError> {
        let action = discrete_action(Self::ID, &self.action_space, 3, action)?;
        let torque = AVAIL_TORQUE[action];
        let mut ns = rk4(self.state, torque);
        ns[0] = wrap(ns[0], -PI, PI);
        ns[1] = wrap(ns[1], -PI, PI);
        ns[2] = bound(ns[2], -MAX_VEL_1, MAX_VEL_1);
        ns[3] = bound(ns[3], -MAX_VEL_2, MAX_VEL_2);
        self.state = ns;
        let terminated = self.terminal();
        write_obs(Self::ID, obs, self.obs())?;
        Ok(Transition {
            reward: if terminated { 0.0 } else { -1.0 },
            terminated,
            truncated: false,
        })
    }

    fn render_rgb(&mut self) -> Result<Option<crate::Frame>, EnvError> {
        Ok(Some(crate::render::acrobot(
            &self.state,
            LINK_LENGTH_1,
            LINK_LENGTH_1,
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
